"""The spark-submit target's operator: SparkSubmitOperator that hands the job the Mongo URI
through the spark-submit process environment (``MSD_MONGO_URI``) — never a templated
field, an argument, a log line or an XCom."""
import os
import sys
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from msdlib import env_vars
from msd_pipeline.connections import mongo_uri_from_connection

# Spark's INFO logging floods the task log (tens of thousands of lines per training run).
QUIET_SPARK_CONF = {"spark.log.level": "WARN"}


class PipelineSparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator that hands the job the Mongo URI of ``mongo_conn_id`` through
    the spark-submit environment, and runs this interpreter's spark-submit and Python
    (executors: $MSD_PYSPARK_PYTHON when set)."""

    def __init__(self, *, mongo_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mongo_conn_id = mongo_conn_id

    def execute(self, context: Any) -> None:
        bin_dir = os.path.dirname(sys.executable)
        blas = {name: os.environ.get(name, value)  # local mode: the executors' JVM
                for name, value in env_vars.SINGLE_THREADED_BLAS.items()}
        self.env_vars = {
            **blas,
            **(self.env_vars or {}),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYSPARK_PYTHON": os.environ.get(env_vars.PYSPARK_PYTHON, sys.executable),
            env_vars.MONGO_URI: mongo_uri_from_connection(self.mongo_conn_id),
        }
        return super().execute(context)
