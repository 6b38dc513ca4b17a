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
