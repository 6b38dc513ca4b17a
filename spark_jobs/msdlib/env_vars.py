"""The environment variables the jobs and the Airflow side agree on (one definition each).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
# Another configuration file instead of include/pipeline.toml.
CONFIG = "MSD_CONFIG"
# The MongoDB URI of a job (Airflow sets it from its Mongo connection).
MONGO_URI = "MSD_MONGO_URI"
# On EMR, exported to every Spark process by the cluster's spark-env classification:
# the run's Secrets Manager secret holding the URI, or MongoDB on the master node.
MONGO_SECRET_ID = "MSD_MONGO_SECRET_ID"
MONGO_SECRET_REGION = "MSD_MONGO_SECRET_REGION"
MONGO_ON_MASTER = "MSD_MONGO_ON_MASTER"
# The executors' interpreter when it differs from the driver's (docker-compose: python3).
PYSPARK_PYTHON = "MSD_PYSPARK_PYTHON"
# Native BLAS threads per Spark task. OpenBLAS's own default, a thread per core, competes
# with Spark's task threads for the same cores: the perceptron fit ran 0.79x as fast as
# Spark's Java BLAS with it and 1.29x as fast with one thread
# (benchmarks/bench_native_blas.py). Spark sets OMP_NUM_THREADS for executor processes;
# local mode's executor is the driver's JVM, which gets this.
OPENBLAS_THREADS = "OPENBLAS_NUM_THREADS"
SINGLE_THREADED_BLAS = {OPENBLAS_THREADS: "1"}
