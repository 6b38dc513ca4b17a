"""Local target: spark-submit to a configurable master; files on local paths."""
