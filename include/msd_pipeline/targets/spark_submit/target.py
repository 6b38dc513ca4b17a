"""The spark-submit target: spark-submit to a configurable master, files on a filesystem
the Airflow workers and every Spark process share.

The Spark master comes from the Airflow connection ``pipeline.spark_conn_id``
(``spark_default``): ``local[*]`` for the embedded default, ``spark://spark-master:7077``
under docker-compose, a standalone master started from pyspark in tests. Artifacts and
staged songs live on paths every Spark process can read (one machine, or the shared
volumes of docker-compose).

The Mongo URI is resolved from the ``mongo_default`` connection when the Spark step
executes and reaches the job only through the spark-submit process environment
(``MSD_MONGO_URI``): it is not a templated field, an argument, a log line or an XCom.
"""
import os
from typing import Any, Dict, List, Optional

from airflow.sdk import XComArg, task

from msdlib.config import PipelineConfig, load_config
from msd_pipeline.paths import SPARK_JOBS_DIR
from msd_pipeline.run_context import RunContext
from msd_pipeline.staging.rules import absolute
from msd_pipeline.targets.base import PipelineTarget, RunFiles, TaskLike
from msd_pipeline.targets.spark_submit.operators import (QUIET_SPARK_CONF,
                                                         PipelineSparkSubmitOperator)
from msd_pipeline.targets.spark_submit.staging import stage_songs


class LocalFiles(RunFiles):
    """Files on the shared filesystem."""

    def read_bytes(self, uri: str) -> Optional[bytes]:
        try:
            with open(uri, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def write_text(self, uri: str, text: str) -> None:
        os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
        with open(uri, "w", encoding="utf-8") as handle:
            handle.write(text)


class SparkSubmitTarget(PipelineTarget):
    """Runs the pipeline's Spark steps with spark-submit; files live on shared paths."""

    name = "spark_submit"

    def __init__(self, config: Optional[PipelineConfig] = None) -> None:
        self.config = config or load_config()

    def stage_data(self, run: XComArg) -> XComArg:
        @task(task_id="stage_data", multiple_outputs=False)
        def stage_data(run: Dict[str, Any]) -> Dict[str, Any]:
            """Stage the songs: a folder, generated songs, or the downloaded archive."""
            config = RunContext.from_xcom(run).config
            return stage_songs(config.staging, config.ingest.source)

        return stage_data(run)

    def spark_step(self, task_id: str, job: str, job_args: List[str],
                   engine: Optional[TaskLike] = None) -> PipelineSparkSubmitOperator:
        return PipelineSparkSubmitOperator(
            task_id=task_id,
            application=str(SPARK_JOBS_DIR / job),
            application_args=job_args,
            conn_id=self.config.pipeline.spark_conn_id,
            mongo_conn_id=self.config.mongo.airflow_conn_id,
            conf={**QUIET_SPARK_CONF, **self.config.spark.conf},
            name="msd-" + task_id.replace("_", "-"),
            doc_md="`spark-submit spark_jobs/{}` to the master of connection `{}`.".format(
                job, self.config.pipeline.spark_conn_id),
        )

    def resolve_artifacts_uri(self, config: PipelineConfig) -> str:
        return absolute(config.training.artifacts_uri)

    def files(self, run: RunContext) -> LocalFiles:
        return LocalFiles()

    def publish_job_config(self, run: RunContext, config_json: str) -> str:
        path = os.path.join(run.run_uri, "job_config.json")
        LocalFiles().write_text(path, config_json)
        return path

    def run_record_details(self, run: RunContext, context: Any) -> Dict[str, Any]:
        return {"spark_conn_id": run.config.pipeline.spark_conn_id}
