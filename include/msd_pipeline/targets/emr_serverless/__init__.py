"""The EMR Serverless target: a run-scoped application, one job run per Spark step."""
