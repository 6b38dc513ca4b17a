"""Pure logic: features, documents, splits, models, evaluation. No database, file, S3 or network I/O."""
