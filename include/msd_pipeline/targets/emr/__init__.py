"""EMR target: a run-scoped EMR cluster; files in S3; one hook owns the AWS verbs."""
