"""I/O: HDF5 files, song sources (local, S3), MongoDB, Secrets Manager, run artifacts."""
