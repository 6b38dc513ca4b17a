"""The pipeline's one task graph, built for an executor ("target").

``build_pipeline_dag(dag_id, target)`` wires the whole lifecycle in one run:

    prepare_run → [setup] → stage.stage_data → stage.publish_job_config → [start engine]
      → spark.ingest → spark.songs_ingested (publishes the `songs` asset)
      → <retraining>  → report.collect_metrics → [teardown]

``build_retrain_dag(dag_id, target)`` wires the retraining alone, scheduled on the
`songs` asset or the ``[retraining] schedule`` cron, whichever comes first:

    prepare_run → check_trigger → [setup] → stage.publish_job_config → [start engine]
      → <retraining> → report.collect_metrics → [teardown]

where <retraining> is, in both:

    model.resolve_champion → spark.train_evaluate (scores the champion on the same split)
      → model.decide (MLflow run + challenger version, gate, decision record)
      → [release engine → model.approve] → model.promote → model.champion
      → [resume engine] → spark.impute (champion only)

The target's setup (checks, code) runs before staging and its engine (e.g. a cluster)
starts after it, so a paid engine never idles while songs stream; with approval required
the engine is released before the human wait and resumed for imputation. Every setup and
engine task is a setup of the teardown: the teardown runs once any of them succeeded, and
a failed teardown fails the run (through ``teardown_succeeded``, a plain leaf after it).
Each Spark step is one task: clearing it runs the job again. The run timeout is derived
from the task budgets (the longest path of execution timeouts and retries, plus
``RUN_TIMEOUT_MARGIN``), so it never cuts a run its tasks may still finish.

One ingest trains once: the pipeline's `songs` event says ``retrain: false`` when the
pipeline trains on its own songs (param ``train``), and msd_retrain's check_trigger skips
a run whose events all say so. The target (``msd_pipeline.targets``) decides how data is
staged, how a Spark job runs (spark-submit to a master, or an EMR step) and where files
live; the graph, the Params form (``msd_pipeline.params``), the run record and the
metrics collection are shared. What each shared task does lives in
``msd_pipeline.tasks``; the tasks exchange the run as ``msd_pipeline.run_context.RunContext``.
Building a DAG reads the configuration file and nothing else: no connection, no network.
"""
import datetime
from typing import Any, Dict, List, Optional, Sequence, Union

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import (DAG, Asset, AssetOrTimeSchedule, BaseOperator, CronTriggerTimetable,
                         TaskGroup, XComArg, chain, get_current_context, task)

from msdlib.config import PipelineConfig, load_config
from msd_pipeline import decisions, retraining, tasks
from msd_pipeline.budgets import RUN_TIMEOUT_MARGIN, run_budget
from msd_pipeline.params import pipeline_params
from msd_pipeline.run_context import RunContext
from msd_pipeline.targets.base import (IMPUTE_JOB, INGEST_JOB, PREPARE_TASK_ID, PUBLISH_TASK_ID,
                                       TRAIN_JOB, PipelineTarget, TaskLike, task_id_of)
from msd_pipeline.templates import xcom

TEARDOWN_CHECK_TASK_ID = "teardown_succeeded"
# Songs in MongoDB: every ingest publishes an event carrying its run, counts and source.
SONGS = Asset(name="songs", uri="msd://mongodb/songs", group="msd")
CHAMPION_TASK_ID = "model.champion"
DECIDE_TASK_ID = "model.decide"
RESOLVE_TASK_ID = "model.resolve_champion"
PROMOTE_TASK_ID = "model.promote"
APPROVE_TASK_ID = "model.approve"


def build_pipeline_dag(dag_id: str, target: PipelineTarget, *, description: str,
                       doc_md: Optional[str] = None, tags: Sequence[str] = (),
                       config: Optional[PipelineConfig] = None) -> DAG:
    """The whole-lifecycle DAG for ``target``; ``config`` defaults to the configuration
    file's (``msdlib.config.load_config``)."""
    config = config or load_config()
    with _dag(dag_id, target, config, description, doc_md, tags,
              schedule=config.pipeline.schedule or None,
              params=pipeline_params(config, target.name)) as dag:
        _wire_graph(target, config, retrain_only=False)
    dag.dagrun_timeout = run_budget(dag) + RUN_TIMEOUT_MARGIN
    return dag


def build_retrain_dag(dag_id: str, target: PipelineTarget, *, description: str,
                      doc_md: Optional[str] = None, tags: Sequence[str] = (),
                      config: Optional[PipelineConfig] = None) -> DAG:
    """The retraining DAG for ``target``: on a `songs` event or the cron, whichever first."""
    config = config or load_config()
    cron = config.retraining.schedule
    schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"),
                                   assets=SONGS) if cron else SONGS
    with _dag(dag_id, target, config, description, doc_md, ("retrain",) + tuple(tags),
              schedule=schedule,
              params=pipeline_params(config, target.name, retrain_only=True)) as dag:
        _wire_graph(target, config, retrain_only=True)
    dag.dagrun_timeout = run_budget(dag) + RUN_TIMEOUT_MARGIN
    return dag


def _dag(dag_id: str, target: PipelineTarget, config: PipelineConfig, description: str,
         doc_md: Optional[str], tags: Sequence[str], *, schedule: Any,
         params: Dict[str, Any]) -> DAG:
    settings = config.pipeline
    step_timeout = datetime.timedelta(minutes=settings.step_timeout_minutes)
    return DAG(
        dag_id=dag_id,
        description=description,
        doc_md=doc_md,
        schedule=schedule,
        start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        catchup=False,
        max_active_runs=1,
        on_failure_callback=target.failure_callback(),
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": datetime.timedelta(minutes=settings.retry_delay_minutes),
            "execution_timeout": step_timeout,
        },
        params=params,
        tags=["msd", "spark", target.name, *tags],
    )


def _wire_graph(target: PipelineTarget, config: PipelineConfig, retrain_only: bool) -> None:
    @task(task_id=PREPARE_TASK_ID, multiple_outputs=False,
          execution_timeout=datetime.timedelta(minutes=5))
    def prepare_run() -> Dict[str, Any]:
        """Resolve this run's configuration from the configuration file and the form."""
        return tasks.prepare_run(target, get_current_context()).to_xcom()

    @task(task_id="publish_job_config", execution_timeout=datetime.timedelta(minutes=5))
    def publish_job_config(run: Dict[str, Any], staged: Optional[Dict[str, Any]]) -> str:
        """Write the job configuration (with the staged source); return its location."""
        return tasks.publish_job_config(target, RunContext.from_xcom(run), staged)

    @task(task_id="collect_metrics", multiple_outputs=False, trigger_rule="none_failed",
          execution_timeout=datetime.timedelta(minutes=10))
    def collect_metrics(run: Dict[str, Any], staged: Optional[Dict[str, Any]],
                        config_uri: str) -> Dict[str, Any]:
        """Summaries, metrics and the decision → the run record and the report."""
        context = get_current_context()
        decision = context["ti"].xcom_pull(task_ids=DECIDE_TASK_ID, key="decision")
        return tasks.collect_metrics(target, RunContext.from_xcom(run), staged, config_uri,
                                     decision, context)

    @task.short_circuit(task_id="songs_ingested", outlets=[SONGS],
                        ignore_downstream_trigger_rules=False,
                        execution_timeout=datetime.timedelta(minutes=5))
    def songs_ingested(run: Dict[str, Any]) -> bool:
        """Publish the `songs` asset event; go on to training when param ``train`` is set
        (else msd_retrain trains on these songs)."""
        return tasks.announce_songs(target, RunContext.from_xcom(run),
                                    get_current_context()["outlet_events"][SONGS])

    run = prepare_run()
    setup_tasks = _as_list(target.setup(run))
    groups = _Groups()
    if retrain_only:
        first = check_trigger()
        with TaskGroup("stage", tooltip="Publish the job configuration"):
            staged = None
            config_uri = publish_job_config(run, None)
        chain(run, first, *setup_tasks, config_uri)
    else:
        with TaskGroup("stage", tooltip="Stage the songs and publish the job configuration"):
            staged = _as_xcom_arg(target.stage_data(run))
            config_uri = publish_job_config(run, staged)
        chain(run, *setup_tasks, staged)
    engine_tasks = _as_list(target.start_engine(run))
    chain(config_uri, *engine_tasks)
    ready = [config_uri, *engine_tasks[-1:]]
    if retrain_only:
        trained_after = ready
    else:
        with groups.spark:
            ingest = target.spark_step("ingest", INGEST_JOB, _job_args("ingest_summary_uri"))
            announced = songs_ingested(run)
            chain(ingest, announced)
        chain(ready, ingest)
        trained_after = announced
    setup_tasks += engine_tasks
    last = _wire_retraining(target, config, groups, run, trained_after)
    with TaskGroup("report", tooltip="Metrics, decision, run record and report location"):
        summary = collect_metrics(run, staged, config_uri)
    chain(last, summary)
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


@task.short_circuit(task_id="check_trigger", ignore_downstream_trigger_rules=True,
                    execution_timeout=datetime.timedelta(minutes=5))
def check_trigger() -> bool:
    """Skip the run when every `songs` event that triggered it comes from a pipeline run
    that trains on its own songs (one ingest, one training)."""
    return tasks.should_retrain(get_current_context())


class _Groups:
    """The task groups tasks are added to in several places (a group id is unique)."""

    def __init__(self) -> None:
        self.spark = TaskGroup("spark", tooltip="Spark jobs: ingest, train + evaluate, impute")
        self.model = TaskGroup("model", tooltip="Champion/challenger: registry, gate, promotion")


def _wire_retraining(target: PipelineTarget, config: PipelineConfig, groups: _Groups,
                     run: XComArg, after: TaskLike) -> TaskLike:
    """resolve_champion → train_evaluate → decide → [release, approve] → promote →
    champion → [resume] → impute; returns the last task."""
    approve_task = APPROVE_TASK_ID if config.retraining.require_approval else None
    # With approval, the target releases its engine before the wait and resumes it after.
    released = target.release_for_wait(run) if approve_task else None
    resumed = target.resume_after_wait(run) if approve_task else None
    approval_path = task_id_of(released) if released else approve_task

    @task(task_id="resolve_champion", execution_timeout=datetime.timedelta(minutes=5))
    def resolve_champion(run: Dict[str, Any]) -> Dict[str, str]:
        """The champion's registry version and run folder (empty: no champion yet)."""
        return tasks.resolve_champion(RunContext.from_xcom(run))

    @task.branch(task_id="decide", execution_timeout=datetime.timedelta(minutes=15))
    def decide(run: Dict[str, Any], champion: Dict[str, str]) -> List[str]:
        """Log + register the challenger, apply the gate, store the decision record."""
        record = tasks.decide(target, RunContext.from_xcom(run), champion,
                              get_current_context())
        return decisions.next_tasks(record, PROMOTE_TASK_ID, approval_path, CHAMPION_TASK_ID)

    @task(task_id="promote", execution_timeout=datetime.timedelta(minutes=5))
    def promote(run: Dict[str, Any]) -> Dict[str, Any]:
        """Move the `champion` alias to the challenger (`previous`: the old champion)."""
        record = get_current_context()["ti"].xcom_pull(task_ids=DECIDE_TASK_ID,
                                                       key="decision")
        return retraining.promote(RunContext.from_xcom(run), record)

    @task.short_circuit(task_id="champion", trigger_rule="none_failed_min_one_success",
                        ignore_downstream_trigger_rules=False,
                        execution_timeout=datetime.timedelta(minutes=5))
    def champion(run: Dict[str, Any]) -> Optional[Dict[str, str]]:
        """The champion after the decision: imputation's model (none: imputation skips)."""
        ti = get_current_context()["ti"]
        return tasks.serving_champion(
            RunContext.from_xcom(run), ti.xcom_pull(task_ids=DECIDE_TASK_ID, key="decision"),
            promoted=ti.xcom_pull(task_ids=PROMOTE_TASK_ID) is not None,
            approval=ti.xcom_pull(task_ids=APPROVE_TASK_ID) if approve_task else None)

    with groups.model:
        current = resolve_champion(run)
    with groups.spark:
        train = target.spark_step("train_evaluate", TRAIN_JOB, _job_args("train_summary_uri") + [
            "--champion-uri", xcom(RESOLVE_TASK_ID, "artifacts_uri")])
    with groups.model:
        decided = decide(run, current)
        promoted = promote(run)
        serving = champion(run)
        if approve_task:
            approval = ApprovalOperator(
                task_id="approve",
                subject="Promote the challenger of run {{ run_id }} to champion?",
                body=xcom(DECIDE_TASK_ID, key="approval_body"),
                defaults="Reject",
                response_timeout=datetime.timedelta(
                    hours=config.retraining.approval_timeout_hours),
                execution_timeout=None)
            chain(decided, *_as_list(released), approval, promoted)
        else:
            chain(decided, promoted)
        chain([decided, promoted], serving)
    with groups.spark:
        impute = target.spark_step("impute", IMPUTE_JOB, _job_args("impute_summary_uri") + [
            "--model-uri", xcom(CHAMPION_TASK_ID, "artifacts_uri"),
            "--model-label", xcom(CHAMPION_TASK_ID, "label")], engine=resumed)
    chain(after, current, train, decided)
    chain(serving, *_as_list(resumed), impute)
    return impute


def _job_args(summary_field: str) -> List[str]:
    return ["--config", xcom(PUBLISH_TASK_ID), "--run-id", xcom(PREPARE_TASK_ID, "run_key"),
            "--summary-path", xcom(PREPARE_TASK_ID, summary_field)]


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
