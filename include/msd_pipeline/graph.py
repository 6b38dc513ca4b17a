"""The pipeline's one task graph, built for an executor ("target").

``build_pipeline_dag(dag_id, target)`` wires the same tasks for every target:

    prepare_run → stage.stage_data → stage.publish_job_config ─┬→ spark.ingest
                → [setup] ──────────────────────────────────────┘
      spark.ingest → spark.train_evaluate_impute → report.collect_metrics → [teardown]

Staging runs beside the target's setup (e.g. creating a cluster); the Spark steps wait
for both. Every setup task is a setup of the teardown: the teardown runs once any of them
succeeded, clearing a task re-runs them, and a failed teardown fails the run (through
``teardown_succeeded``, a plain leaf after it). The run
timeout is derived from the task budgets (the longest path of execution timeouts and
retries, plus ``RUN_TIMEOUT_MARGIN``), so it never cuts a run its tasks may still finish.

The target (``msd_pipeline.targets``) decides how data is staged, how a Spark job runs
(spark-submit to a master, or an EMR step) and where files live; the graph, the
Params form (``msd_pipeline.params``), the run record and the metrics collection are
shared. Building the DAG
reads ``include/pipeline.toml`` and nothing else: no connection, no network.
"""
import datetime
import json
import logging
import re
from typing import Any, Dict, List, Optional, Sequence, Union

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, BaseOperator, TaskGroup, XComArg, chain, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from msdlib.config import ConfigError, PipelineConfig, from_dict, load_config
from msd_pipeline import run_records
from msd_pipeline.params import config_overrides, pipeline_params
from msd_pipeline.targets.base import (INGEST_JOB, PREPARE_TASK_ID, TRAIN_JOB, PipelineTarget,
                                       TaskLike, job_config_field, run_field)

log = logging.getLogger(__name__)

TEARDOWN_CHECK_TASK_ID = "teardown_succeeded"
# Scheduling latency and queueing on top of the tasks' own budgets.
RUN_TIMEOUT_MARGIN = datetime.timedelta(minutes=30)


def build_pipeline_dag(dag_id: str, target: PipelineTarget, *, description: str,
                       doc_md: Optional[str] = None, tags: Sequence[str] = (),
                       config: Optional[PipelineConfig] = None) -> DAG:
    """The pipeline DAG for ``target``; ``config`` defaults to include/pipeline.toml."""
    config = config or load_config()
    settings = config.pipeline
    step_timeout = datetime.timedelta(minutes=settings.step_timeout_minutes)
    default_args = {
        "owner": settings.owner,
        "retries": settings.retries,
        "retry_delay": datetime.timedelta(minutes=settings.retry_delay_minutes),
        "execution_timeout": step_timeout,
    }
    with DAG(
        dag_id=dag_id,
        description=description,
        doc_md=doc_md,
        schedule=settings.schedule or None,
        start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        on_failure_callback=target.failure_callback(),
        params={**pipeline_params(config), **target.extra_params()},
        tags=["msd", "spark", target.name, *tags],
    ) as dag:
        _wire_graph(target)
    dag.dagrun_timeout = run_budget(dag) + RUN_TIMEOUT_MARGIN
    return dag


def run_budget(dag: DAG) -> datetime.timedelta:
    """The longest path through ``dag``, each task weighted by what all its tries may take."""
    finish: Dict[str, datetime.timedelta] = {}

    def finish_of(task_id: str) -> datetime.timedelta:
        if task_id not in finish:
            task = dag.get_task(task_id)
            start = max((finish_of(upstream) for upstream in task.upstream_task_ids),
                        default=datetime.timedelta(0))
            finish[task_id] = start + _task_budget(task)
        return finish[task_id]

    return max((finish_of(task_id) for task_id in dag.task_ids), default=datetime.timedelta(0))


def _task_budget(task: BaseOperator) -> datetime.timedelta:
    if task.execution_timeout is None:
        raise ValueError(f"task {task.task_id} has no execution_timeout: the run timeout "
                         "cannot be derived")
    return (task.retries + 1) * task.execution_timeout + task.retries * task.retry_delay


def run_key_for(run_id: str) -> str:
    """The Airflow run id made safe for paths and S3 keys."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def _wire_graph(target: PipelineTarget) -> None:
    @task(task_id=PREPARE_TASK_ID, multiple_outputs=False,
          execution_timeout=datetime.timedelta(minutes=5))
    def prepare_run() -> Dict[str, Any]:
        """Resolve this run's configuration from pipeline.toml and the form."""
        context = get_current_context()
        params = dict(context["params"])
        overrides = {**config_overrides(params), **target.overrides_from_params(params)}
        try:
            config = load_config(overrides=overrides)
        except ConfigError as exc:  # a bad form value: retrying cannot help
            raise AirflowFailException("invalid run configuration: {}".format(exc)) from exc
        run_uri_root = target.resolve_artifacts_uri(config.training.artifacts_uri)
        config = config.with_overrides({"training.artifacts_uri": run_uri_root})
        run_id = context["run_id"]
        run_key = run_key_for(run_id)
        run_uri = run_uri_root.rstrip("/") + "/" + run_key
        return {
            "dag_id": context["dag"].dag_id,
            "airflow_run_id": run_id,
            "run_key": run_key,
            "target": target.name,
            "params": params,
            "config": config.to_dict(),
            "run_uri": run_uri,
            "ingest_summary_uri": run_uri + "/ingest_summary.json",
            "train_summary_uri": run_uri + "/train_summary.json",
            "metrics_uri": run_uri + "/metrics.json",
        }

    @task(task_id="publish_job_config", execution_timeout=datetime.timedelta(minutes=5))
    def publish_job_config(run: Dict[str, Any], staged: Dict[str, Any]) -> str:
        """Write the job configuration with the staged source; return its location."""
        config = from_dict(run["config"]).with_overrides(
            {"ingest.source": staged["source"]})
        location = target.publish_job_config(run, config.to_json())
        log.info("Job configuration for run %s: %s", run["run_key"], location)
        return location

    @task(task_id="collect_metrics", multiple_outputs=False,
          execution_timeout=datetime.timedelta(minutes=10))
    def collect_metrics(run: Dict[str, Any], staged: Dict[str, Any], config_uri: str) -> Dict[str, Any]:
        """Summaries and metrics → a pipeline_runs record; the report's location → the log."""
        context = get_current_context()
        record = run_records.build_run_record(
            run, staged, config_uri, read_json=lambda uri: _read_json(target, uri),
            started_at=context["dag_run"].start_date,
            target_details=target.run_record_details(run, context),
            report_exists=lambda uri: target.read_text(uri) is not None)
        run_records.save_run_record(record, from_dict(run["config"]).mongo)
        log.info("Run record %s stored in pipeline_runs", record["_id"])
        log.info("Report: %s", record["artifacts"]["report_uri"] or "(none written)")
        return run_records.summarize(record)

    run = prepare_run()
    setup_tasks = _as_list(target.setup(run))
    with TaskGroup("stage", tooltip="Stage the songs and publish the job configuration"):
        staged = _as_xcom_arg(target.stage_data(run))
        config_uri = publish_job_config(run, staged)
    with TaskGroup("spark", tooltip="Spark jobs: ingest, then train + evaluate + impute"):
        ingest = target.spark_step("ingest", INGEST_JOB, _job_args("ingest_summary_uri"))
        train = target.spark_step("train_evaluate_impute", TRAIN_JOB, _job_args("train_summary_uri"))
        chain(ingest, train)
    with TaskGroup("report", tooltip="Metrics, run record and report location"):
        summary = collect_metrics(run, staged, config_uri)
    chain(run, *setup_tasks)
    chain([config_uri, *setup_tasks[-1:]], ingest)
    chain(train, summary)
    teardown = target.teardown(run)
    if teardown is not None:
        chain(summary, teardown)
        teardown.as_teardown(setups=_operators(setup_tasks))
        # Airflow ignores a teardown's outcome for the run's state, and with
        # on_failure_fail_dagrun it ignores the teardown's upstreams instead (a failed step
        # would end SUCCESS). A plain leaf after the teardown fails the run when it failed.
        chain(teardown, EmptyOperator(task_id=TEARDOWN_CHECK_TASK_ID, retries=0,
                                      execution_timeout=datetime.timedelta(minutes=1),
                                      doc_md="Upstream-failed (so the run fails) when the "
                                             "teardown failed."))


def _job_args(summary_field: str) -> List[str]:
    return ["--config", job_config_field(), "--run-id", run_field("run_key"),
            "--summary-path", run_field(summary_field)]


def _read_json(target: PipelineTarget, uri: str) -> Optional[Dict[str, Any]]:
    text = target.read_text(uri)
    return json.loads(text) if text is not None else None


def _as_list(items: Any) -> List[TaskLike]:
    if items is None:
        return []
    return list(items) if isinstance(items, (list, tuple)) else [items]


def _as_xcom_arg(produced: Union[BaseOperator, XComArg]) -> XComArg:
    return produced if isinstance(produced, XComArg) else XComArg(produced)


def _operators(tasks: List[TaskLike]) -> List[BaseOperator]:
    if any(isinstance(task, TaskGroup) for task in tasks):
        raise TypeError("PipelineTarget.setup must return operators or XComArgs, not TaskGroups")
    return [task.operator if isinstance(task, XComArg) else task for task in tasks]
