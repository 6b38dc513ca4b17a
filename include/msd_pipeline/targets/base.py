"""The interface every target implements, and the task ids and job names the targets and
the graph share.

A target (``PipelineTarget``) decides how data is staged, how a Spark job runs
(spark-submit to a master, or an EMR step) and where files live; the graph factory
(``msd_pipeline.graph``) wires the same tasks for every target.
"""
import abc
import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from airflow.sdk import BaseOperator, TaskGroup, XComArg
from airflow.sdk.definitions._internal.contextmanager import DagContext

from msdlib.config import PipelineConfig
from msd_pipeline.run_context import RunContext

TaskLike = Union[BaseOperator, XComArg, TaskGroup]

PREPARE_TASK_ID = "prepare_run"
PUBLISH_TASK_ID = "stage.publish_job_config"
INGEST_JOB = "ingest_songs.py"
TRAIN_JOB = "train_models.py"
IMPUTE_JOB = "impute_years.py"
JOB_SCRIPTS = (INGEST_JOB, TRAIN_JOB, IMPUTE_JOB)


def task_id_of(task: Union[BaseOperator, XComArg]) -> str:
    """The task id of an operator or of the task behind an XComArg."""
    return task.operator.task_id if isinstance(task, XComArg) else task.task_id


@contextlib.contextmanager
def target_task_group(group_id: str, tooltip: str) -> Iterator[TaskGroup]:
    """The DAG's task group ``group_id`` of a target's tasks, created by the first
    builder that needs it (setup, engine, release and resume share one)."""
    dag = DagContext.get_current()
    group = dag.task_group.get_task_group_dict().get(group_id) if dag else None
    with group or TaskGroup(group_id, tooltip=tooltip) as current:
        yield current


class RunFiles(abc.ABC):
    """A run's files under its artifacts location, read and written with the run's own
    settings (connection, region)."""

    @abc.abstractmethod
    def read_bytes(self, uri: str) -> Optional[bytes]:
        """The file's bytes, or None when it is absent."""

    @abc.abstractmethod
    def write_text(self, uri: str, text: str) -> None:
        """Create or replace the file."""

    def read_text(self, uri: str) -> Optional[str]:
        data = self.read_bytes(uri)
        return data.decode("utf-8") if data is not None else None


class PipelineTarget(abc.ABC):
    """Where and how the pipeline's steps run.

    Builder methods run at parse time inside the DAG (and TaskGroup) context, with the
    configuration the DAG file was built from, and must not touch connections or the
    network; the others run inside the factory's tasks with the run's ``RunContext``.
    """

    name = "abstract"

    # -- parse-time builders -------------------------------------------------------
    def setup(self, run: XComArg) -> Optional[Union[TaskLike, Sequence[TaskLike]]]:
        """Operators (or XComArgs) that check the run's resources and prepare what costs
        nothing to keep (e.g. code in S3), chained in order after ``prepare_run`` and before
        staging. Each is a setup of ``teardown``."""
        return None

    def start_engine(self, run: XComArg) -> Optional[Union[TaskLike, Sequence[TaskLike]]]:
        """Operators (or XComArgs) starting the paid engine (e.g. a cluster), chained after
        the songs are staged and the job configuration is published, so that the engine
        never idles while songs stream; the Spark steps wait for the last. Each is a setup
        of ``teardown``."""
        return None

    @abc.abstractmethod
    def stage_data(self, run: XComArg) -> Union[BaseOperator, XComArg]:
        """Stage the songs. Returns the task (id ``stage_data``; chain any helpers before it)
        whose return value is a StagedData dict (``msd_pipeline.staging.rules.staged_data``):
        ``{"source": <ingest.source>, "mode": "path" | "url" | "generated", "files": int | None,
        "detail": {"delivery": ..., ...}}``."""

    @abc.abstractmethod
    def spark_step(self, task_id: str, job: str, job_args: List[str],
                   engine: Optional[TaskLike] = None) -> TaskLike:
        """One task running ``spark_jobs/<job>`` with the (templated) CLI ``job_args``; it
        fails when the job fails, and clearing it runs the job again. ``engine``: the task
        whose engine the step runs on when not the one ``start_engine`` started (the
        ``resume_after_wait`` task)."""

    def release_for_wait(self, run: XComArg) -> Optional[TaskLike]:
        """A task run before the run waits on a human (the promotion approval): it releases
        the paid engine, so that nothing is billed while the question is open."""
        return None

    def resume_after_wait(self, run: XComArg) -> Optional[TaskLike]:
        """A task run before the Spark steps that follow a human wait: the engine again
        (reused when still up); passed to those steps as ``engine``."""
        return None

    def teardown(self, run: XComArg) -> Optional[BaseOperator]:
        """A task releasing what ``setup`` created; the factory marks it as the teardown
        of every setup operator, failing the run when it fails."""
        return None

    def failure_callback(self) -> Optional[Callable[[Any], None]]:
        """The DAG's ``on_failure_callback``: a backstop releasing the run's resources when
        the scheduler ended the run without its teardown (a run timeout skips it). It gets
        only the callback context's ``dag`` and ``run_id``."""
        return None

    # -- run-time hooks ------------------------------------------------------------
    def run_overrides(self) -> Dict[str, Any]:
        """Dotted config overrides every run of this target gets (e.g. its Spark master)."""
        return {}

    @abc.abstractmethod
    def resolve_artifacts_uri(self, config: PipelineConfig) -> str:
        """The absolute location (path or URI) of ``training.artifacts_uri``."""

    @abc.abstractmethod
    def files(self, run: RunContext) -> RunFiles:
        """The run's files (job config, summaries, metrics, report, plots)."""

    @abc.abstractmethod
    def publish_job_config(self, run: RunContext, config_json: str) -> str:
        """Store the run's job configuration; return the jobs' ``--config`` value."""

    def run_record_details(self, run: RunContext, context: Any) -> Dict[str, Any]:
        """Target fields stored under ``target_details`` in the run record."""
        return {}
