"""The interface every target implements, and the task ids and XCom templates the
targets and the graph share.

A target (``PipelineTarget``) decides how data is staged, how a Spark job runs
(spark-submit to a master, or an EMR step) and where files live; the graph factory
(``msd_pipeline.graph``) wires the same tasks for every target.
"""
import abc
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from airflow.sdk import BaseOperator, Param, TaskGroup, XComArg

from msdlib.config import PROJECT_ROOT

TaskLike = Union[BaseOperator, XComArg, TaskGroup]

PREPARE_TASK_ID = "prepare_run"
STAGE_TASK_ID = "stage.stage_data"
PUBLISH_TASK_ID = "stage.publish_job_config"
INGEST_JOB = "ingest_songs.py"
TRAIN_JOB = "train_models.py"
IMPUTE_JOB = "impute_years.py"
JOB_SCRIPTS = (INGEST_JOB, TRAIN_JOB, IMPUTE_JOB)
SPARK_JOBS_DIR = os.path.join(PROJECT_ROOT, "spark_jobs")


def run_field(key: str) -> str:
    """Jinja expression for one field of the ``prepare_run`` result (templated fields)."""
    return "{{ ti.xcom_pull(task_ids='%s')['%s'] }}" % (PREPARE_TASK_ID, key)


def staged_field(key: str) -> str:
    """Jinja expression for one field of the StagedData returned by ``stage.stage_data``."""
    return "{{ ti.xcom_pull(task_ids='%s')['%s'] }}" % (STAGE_TASK_ID, key)


def job_config_field() -> str:
    """Jinja expression for the ``--config`` value published for this run."""
    return "{{ ti.xcom_pull(task_ids='%s') }}" % PUBLISH_TASK_ID


class PipelineTarget(abc.ABC):
    """Where and how the pipeline's steps run.

    Builder methods run at parse time inside the DAG (and TaskGroup) context and must
    not touch connections or the network; the others run inside the factory's tasks.
    """

    name = "abstract"

    # -- parse-time builders -------------------------------------------------------
    def setup(self, run: XComArg) -> Optional[Union[TaskLike, Sequence[TaskLike]]]:
        """Operators (or XComArgs) creating run-scoped resources (e.g. a cluster), chained in
        order after ``prepare_run`` and beside staging; the Spark steps wait for the last.
        Each is a setup of ``teardown``."""
        return None

    @abc.abstractmethod
    def stage_data(self, run: XComArg) -> Union[BaseOperator, XComArg]:
        """Stage the songs. Returns the task (id ``stage_data``; chain any helpers before it)
        whose return value is a StagedData dict (``msd_pipeline.staging.rules.staged_data``):
        ``{"source": <ingest.source>, "mode": "path" | "url" | "generated", "files": int | None,
        "detail": {"delivery": ..., ...}}``."""

    @abc.abstractmethod
    def spark_step(self, task_id: str, job: str, job_args: List[str]) -> TaskLike:
        """Tasks running ``spark_jobs/<job>`` with the (templated) CLI ``job_args``; they
        fail when the job fails."""

    def teardown(self, run: XComArg) -> Optional[BaseOperator]:
        """A task releasing what ``setup`` created; the factory marks it as the teardown
        of every setup operator, failing the run when it fails."""
        return None

    def failure_callback(self) -> Optional[Callable[[Any], None]]:
        """The DAG's ``on_failure_callback``: a backstop releasing the run's resources when
        the scheduler ended the run without its teardown (a run timeout skips it). It gets
        only the callback context's ``dag`` and ``run_id``."""
        return None

    def extra_params(self) -> Dict[str, Param]:
        """Target-specific fields of the Params form."""
        return {}

    # -- run-time hooks ------------------------------------------------------------
    def overrides_from_params(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Dotted config overrides derived from ``extra_params`` values."""
        return {}

    @abc.abstractmethod
    def resolve_artifacts_uri(self, artifacts_uri: str) -> str:
        """The absolute location (path or URI) of ``training.artifacts_uri``."""

    @abc.abstractmethod
    def publish_job_config(self, run: Dict[str, Any], config_json: str) -> str:
        """Store the run's job configuration; return the jobs' ``--config`` value."""

    @abc.abstractmethod
    def read_text(self, uri: str) -> Optional[str]:
        """The text of a file under the artifacts location, or None when it is absent."""

    @abc.abstractmethod
    def write_text(self, uri: str, text: str) -> None:
        """Replace a file under the artifacts location (the report, with the decision)."""

    def read_bytes(self, uri: str) -> Optional[bytes]:
        """The bytes of a file under the artifacts location (plots logged to the model
        registry), or None when it is absent."""
        text = self.read_text(uri)
        return text.encode("utf-8") if text is not None else None

    def run_record_details(self, run: Dict[str, Any], context: Any) -> Dict[str, Any]:
        """Target fields stored under ``target_details`` in the run record."""
        return {}
