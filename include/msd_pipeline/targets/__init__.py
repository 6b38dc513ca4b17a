"""The pipeline's targets: one PipelineTarget interface (base), side by side implementations."""
