"""The EMR target of the pipeline's task graph (include/msd_pipeline/graph.py).

    cluster.preflight        the run can work (S3, IAM, release, network tags, zones,
                             quotas, Mongo, MLflow: targets/emr/preflight/), before any
                             cluster or secret exists
    cluster.ship_code        code, bootstrap, requirements → the run's S3 prefix; the run's
                             Mongo secret; the RunJobFlow request (XCom, no secrets)
    cluster.create_cluster   EmrCreateJobFlowOperator, waits until the cluster is WAITING
    stage.stage_data         songs → S3 (archive streamed, local folder uploaded, or an
                             existing prefix, sliced)
    spark.<step>.add_step    EmrAddStepsOperator: command-runner.jar spark-submit
    spark.<step>.wait_for_step   EmrStepSensor; a failed step's logs → the task log
    terminate_cluster        teardown: every cluster of the run terminated, secret deleted

Staging runs beside ``cluster``: the cluster is not billed idle while songs stream to S3,
and the Spark steps wait for both. ``preflight``, ``ship_code`` and ``create_cluster`` are
the teardown's setups: the teardown runs whenever one succeeded (so also when creation
fails half way; a failed preflight leaves nothing to end), a failed teardown fails the run, and clearing a Spark task clears (re-runs) the
setups, so the cleared steps run on a new cluster. The DAG's failure callback
(``end_run_after_failure``) is the second backstop, for a run the scheduler ends without
its teardown (a run timeout skips it).
"""
import datetime
import functools
from typing import Any, Callable, Dict, List, Optional

from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.utils.waiter import WaitPolicy
from airflow.sdk import TaskGroup, XComArg, task

from msdlib.config import EmrSettings, PipelineConfig, load_config
from msd_pipeline.run_context import RunContext
from msd_pipeline.staging.rules import SongSlice
from msd_pipeline.targets.base import PREPARE_TASK_ID, PipelineTarget, RunFiles
from msd_pipeline.targets.emr import code_shipping, cost, mongo_secret
from msd_pipeline.targets.emr.cluster import build_job_flow_request, run_tags
from msd_pipeline.targets.emr.hook import PipelineEmrHook
from msd_pipeline.targets.emr.layout import ARTIFACTS_FOLDER, JOBS_ZIP, RunLayout, join_uri
from msd_pipeline.targets.emr.operators import (EndRunClusterOperator, StepSensorWithLogs,
                                                end_run_after_failure)
from msd_pipeline.targets.emr.staging import stage_to_s3
from msd_pipeline.targets.emr.steps import spark_step
from msd_pipeline.templates import xcom

PREFLIGHT_TIMEOUT = datetime.timedelta(minutes=5)
SHIP_TASK_ID = "cluster.ship_code"
SHIP_TIMEOUT = datetime.timedelta(minutes=15)
ADD_STEP_TIMEOUT = datetime.timedelta(minutes=10)
# Deleting the run's secret and logging after the clusters are gone.
TEARDOWN_SLACK_SECONDS = 600
CREATE_TASK_ID = "cluster.create_cluster"
CLUSTER_ID_FIELD = xcom(CREATE_TASK_ID)


class S3Files(RunFiles):
    """A run's files in S3, through the run's AWS connection and region."""

    def __init__(self, emr: EmrSettings) -> None:
        self.hook = _hook(emr)

    def read_bytes(self, uri: str) -> Optional[bytes]:
        return self.hook.read_bytes(uri)

    def write_text(self, uri: str, text: str) -> None:
        self.hook.write_text(uri, text)


class EmrTarget(PipelineTarget):
    """Runs the Spark steps on a run-scoped EMR cluster; files live in S3."""

    name = "emr"

    def __init__(self, config: Optional[PipelineConfig] = None) -> None:
        self.config = config or load_config()
        self.emr = self.config.emr

    # -- parse-time builders ---------------------------------------------------------
    def setup(self, run: XComArg) -> List[Any]:
        with TaskGroup("cluster", tooltip="Ship the code and create the run's EMR cluster"):
            checked = _preflight_task(run)
            shipped = _ship_code_task(run)
            checked >> shipped
            create = EmrCreateJobFlowOperator(
                task_id="create_cluster",
                job_flow_overrides=xcom(SHIP_TASK_ID, "job_flow_request"),
                emr_conn_id=None,
                aws_conn_id=self.emr.aws_conn_id,
                region_name=self.emr.region,
                wait_policy=WaitPolicy.WAIT_FOR_COMPLETION,
                waiter_delay=self.emr.poll_seconds,
                waiter_max_attempts=max(1, self.emr.create_timeout_seconds // self.emr.poll_seconds),
                deferrable=self.emr.deferrable,
                retries=0,
                execution_timeout=datetime.timedelta(seconds=self.emr.create_timeout_seconds + 300),
                doc_md="RunJobFlow with the request built by ship_code; waits until the "
                       "cluster is WAITING and terminates it when that wait fails.",
            )
            shipped >> create
        return [checked, shipped, create]

    def stage_data(self, run: XComArg) -> XComArg:
        return _stage_data_task(run)

    def spark_step(self, task_id: str, job: str, job_args: List[str]) -> TaskGroup:
        with TaskGroup(task_id, tooltip=f"EMR step: spark_jobs/{job}") as group:
            add_step = EmrAddStepsOperator(
                task_id="add_step",
                job_flow_id=CLUSTER_ID_FIELD,
                steps=[_step_template(task_id, job, job_args)],
                aws_conn_id=self.emr.aws_conn_id,
                region_name=self.emr.region,
                retries=0,
                execution_timeout=ADD_STEP_TIMEOUT,
                doc_md=f"Adds the `spark_jobs/{job}` step (command-runner.jar spark-submit).",
            )
            wait = StepSensorWithLogs(
                task_id="wait_for_step",
                job_flow_id=CLUSTER_ID_FIELD,
                step_id=xcom(add_step.task_id, 0),
                aws_conn_id=self.emr.aws_conn_id,
                region_name=self.emr.region,
                poke_interval=self.emr.poll_seconds,
                timeout=self.emr.step_timeout_seconds,
                max_attempts=max(1, self.emr.step_timeout_seconds // self.emr.poll_seconds),
                deferrable=self.emr.deferrable,
                log_wait_seconds=self.emr.log_wait_seconds,
                log_tail_lines=self.emr.log_tail_lines,
                mongo_conn_id=self.config.mongo.airflow_conn_id,
                retries=0,
                execution_timeout=datetime.timedelta(
                    seconds=self.emr.step_timeout_seconds + self.emr.log_wait_seconds + 300),
                doc_md="Waits for the step; when it fails, its stderr and controller log "
                       "are copied from LogUri into this log.",
            )
            add_step >> wait
        return group

    def teardown(self, run: XComArg) -> EndRunClusterOperator:
        return EndRunClusterOperator(
            task_id="terminate_cluster",
            job_flow_id=CLUSTER_ID_FIELD,
            aws_conn_id=self.emr.aws_conn_id,
            region_name=self.emr.region,
            poll_seconds=self.emr.poll_seconds,
            terminate_timeout_seconds=self.emr.create_timeout_seconds,
            retries=1,
            execution_timeout=datetime.timedelta(
                seconds=self.emr.create_timeout_seconds + TEARDOWN_SLACK_SECONDS),
            doc_md="Teardown: terminates the cluster in XCom, then any other cluster named "
                   "and tagged like this DAG run, waits until they are terminated, deletes "
                   "the run's Mongo secret. Fails (and fails the run) when a cluster could "
                   "not be terminated.",
        )

    def failure_callback(self) -> Callable[[Any], None]:
        return functools.partial(end_run_after_failure, self.config)

    # -- run-time hooks ------------------------------------------------------------------
    def run_overrides(self) -> Dict[str, Any]:
        return {"spark.master": "yarn"}

    def resolve_artifacts_uri(self, config: PipelineConfig) -> str:
        artifacts_uri = config.training.artifacts_uri
        if artifacts_uri.startswith("s3://"):
            return artifacts_uri.rstrip("/")
        return join_uri(config.emr.s3_root, ARTIFACTS_FOLDER)

    def files(self, run: RunContext) -> S3Files:
        return S3Files(run.config.emr)

    def publish_job_config(self, run: RunContext, config_json: str) -> str:
        uri = RunLayout(run.config.emr.s3_root, run.run_key).job_config_uri
        self.files(run).write_text(uri, config_json)
        return uri

    def run_record_details(self, run: RunContext, context: Any) -> Dict[str, Any]:
        emr = run.config.emr
        cluster_id = context["ti"].xcom_pull(task_ids=CREATE_TASK_ID)
        cluster = _hook(emr).describe_cluster(cluster_id)
        estimate = cost.estimate_cost(emr, cost.cluster_hours(cluster["Status"]["Timeline"]))
        return {"cluster_id": cluster_id, "cluster_name": cluster["Name"],
                "release_label": cluster.get("ReleaseLabel"), "log_uri": cluster.get("LogUri"),
                "region": emr.region, "instance_layout": emr.instance_layout, "cost": estimate}


def _hook(emr: EmrSettings) -> PipelineEmrHook:
    return PipelineEmrHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)


def _step_template(task_id: str, job: str, job_args: List[str]) -> Dict[str, Any]:
    return spark_step(name=f"{task_id} {xcom(PREPARE_TASK_ID, 'run_key')}",
                      script_uri=xcom(SHIP_TASK_ID, "code", job),
                      jobs_zip_uri=xcom(SHIP_TASK_ID, "code", JOBS_ZIP),
                      job_args=job_args)


@task(task_id="preflight", retries=0, execution_timeout=PREFLIGHT_TIMEOUT)
def _preflight_task(run: Dict[str, Any]) -> None:
    """Fail the run, one line per problem and its fix, before anything is paid for."""
    from msd_pipeline.targets.emr import preflight

    findings = preflight.run_checks(RunContext.from_xcom(run).config)
    for finding in findings:
        print(finding.line())
    preflight.require_ready(findings)


@task(task_id="ship_code", retries=2, execution_timeout=SHIP_TIMEOUT)
def _ship_code_task(run: Dict[str, Any]) -> Dict[str, Any]:
    """Upload the run's code; create its Mongo secret; build the RunJobFlow request."""
    from msd_pipeline.connections import mongo_uri_from_connection

    context = RunContext.from_xcom(run)
    emr = context.config.emr
    layout = RunLayout(emr.s3_root, context.run_key)
    secret_id = (mongo_secret.secret_name(emr.mongo_secret_prefix, context.run_key)
                 if emr.mongo_mode == "secret" else None)
    # Validate the request first: nothing is created for a configuration that cannot work.
    request = build_job_flow_request(emr, layout, dag_id=context.dag_id,
                                     airflow_run_id=context.airflow_run_id,
                                     mongo_secret_id=secret_id)
    hook = _hook(emr)
    code = code_shipping.ship_code(hook.s3, layout)
    if secret_id:
        hook.put_run_secret(secret_id,
                            mongo_uri_from_connection(context.config.mongo.airflow_conn_id),
                            run_tags(emr, context.dag_id, context.airflow_run_id))
    return {"code": code, "job_flow_request": request, "mongo_secret_id": secret_id,
            "log_uri": layout.log_uri}


@task(task_id="stage_data")
def _stage_data_task(run: Dict[str, Any]) -> Dict[str, Any]:
    """Songs → S3: an s3:// source as is (or a slice of it), a local or generated folder
    uploaded, or the MSD subset archive streamed from its URL (auto: the source when
    it exists, else the archive)."""
    context = RunContext.from_xcom(run)
    config, emr = context.config, context.config.emr
    song_slice = SongSlice.of(emr.staging_letters, config.ingest.max_files)
    data_prefix = RunLayout(emr.s3_root, context.run_key).data_prefix
    return stage_to_s3(config.staging, config.ingest.source, _hook(emr).s3, data_prefix, song_slice)
