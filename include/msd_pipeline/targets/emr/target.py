"""The EMR target of the pipeline's task graph (include/msd_pipeline/graph.py), in run order:

    cluster.preflight        the run can work (S3, IAM, release, network tags, zones,
                             quotas, Mongo, MLflow: targets/emr/preflight/), before any
                             cluster or secret exists
    cluster.ship_code        code, bootstrap, requirements → the run's S3 prefix; the run's
                             Mongo secret; the RunJobFlow request (XCom, no secrets)
    stage.stage_data         songs → S3 (archive streamed, local folder uploaded, or an
                             existing prefix, sliced)
    cluster.create_cluster   EmrCreateJobFlowOperator, once the songs are in S3; waits until
                             the cluster is WAITING
    spark.<step>             RunStepOperator: adds the command-runner.jar spark-submit step
                             and waits for it; a failed step's logs → the task log
    cluster.release_for_approval, cluster.reopen_for_impute   (approval required only) the
                             cluster ends before the human wait; imputation gets one again
    terminate_cluster        teardown: every cluster of the run terminated, secret deleted

The cluster is created after staging, so no node bills while songs stream to S3 (the run
record's ``idle_before_first_step_seconds`` shows what is left: creation's last poll and
scheduling the first step). ``preflight``, ``ship_code`` and ``create_cluster`` are the
teardown's setups: the teardown runs whenever one succeeded (so also when creation fails
half way; a failed preflight leaves nothing to end), a failed teardown fails the run, and
clearing a Spark step clears (re-runs) the setups, so the cleared step runs on a new
cluster. The DAG's failure callback
(``end_run_after_failure``) is the second backstop, for a run the scheduler ends without
its teardown (a run timeout skips it).
"""
import datetime
import functools
from typing import Any, Callable, Dict, List, Optional

from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.utils.waiter import WaitPolicy
from airflow.sdk import XComArg, task

from msdlib.config import EmrSettings, PipelineConfig, load_config
from msd_pipeline.run_context import RunContext
from msd_pipeline.staging.rules import SongSlice
from msd_pipeline.targets.base import (PREPARE_TASK_ID, PipelineTarget, RunFiles, TaskLike,
                                       target_task_group, task_id_of)
from msd_pipeline.targets.emr import code_shipping, cost, mongo_secret
from msd_pipeline.targets.emr.cluster import build_job_flow_request, requests_fleets, run_tags
from msd_pipeline.targets.emr.hook import PipelineEmrHook
from msd_pipeline.targets.emr.layout import ARTIFACTS_FOLDER, JOBS_ZIP, RunLayout, join_uri
from msd_pipeline.targets.emr.operators import (EndRunClusterOperator, ReleaseClustersOperator,
                                                ReuseOrCreateClusterOperator, RunStepOperator,
                                                end_run_after_failure, run_clusters)
from msd_pipeline.targets.emr.staging import stage_to_s3
from msd_pipeline.targets.emr.steps import CLIENT, CLUSTER, spark_step
from msd_pipeline.templates import xcom

CLUSTER_GROUP = "cluster"
PREFLIGHT_TIMEOUT = datetime.timedelta(minutes=5)
SHIP_TASK_ID = "cluster.ship_code"
SHIP_TIMEOUT = datetime.timedelta(minutes=15)
# Adding a step and the last state poll, on top of the step's own timeout.
ADD_STEP_SECONDS = 600
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
        with _cluster_group():
            checked = _preflight_task(run)
            shipped = _ship_code_task(run)
            checked >> shipped
        return [checked, shipped]

    def stage_data(self, run: XComArg) -> XComArg:
        return _stage_data_task(run)

    def start_engine(self, run: XComArg) -> EmrCreateJobFlowOperator:
        with _cluster_group():
            return EmrCreateJobFlowOperator(
                task_id="create_cluster",
                doc_md="RunJobFlow with the request built by ship_code, once the songs are "
                       "staged; waits until the cluster is WAITING and terminates it when "
                       "that wait fails.",
                **self._create_arguments())

    def spark_step(self, task_id: str, job: str, job_args: List[str],
                   engine: Optional[TaskLike] = None) -> RunStepOperator:
        emr = self.emr
        return RunStepOperator(
            task_id=task_id,
            job_flow_id=xcom(task_id_of(engine)) if engine is not None else CLUSTER_ID_FIELD,
            steps=[_step_template(task_id, job, job_args, emr)],
            aws_conn_id=emr.aws_conn_id,
            region_name=emr.region,
            waiter_delay=emr.poll_seconds,
            waiter_max_attempts=max(1, emr.step_timeout_seconds // emr.poll_seconds),
            deferrable=emr.deferrable,
            log_wait_seconds=emr.log_wait_seconds,
            log_tail_lines=emr.log_tail_lines,
            mongo_conn_id=self.config.mongo.airflow_conn_id,
            retries=0,
            execution_timeout=datetime.timedelta(
                seconds=ADD_STEP_SECONDS + emr.step_timeout_seconds + emr.log_wait_seconds),
            doc_md=f"Adds the `spark_jobs/{job}` step (command-runner.jar spark-submit) and "
                   "waits for it; a failed step's stderr and controller log are copied from "
                   "LogUri into this log. Clearing this task runs the step again.",
        )

    def release_for_wait(self, run: XComArg) -> ReleaseClustersOperator:
        with _cluster_group():
            return ReleaseClustersOperator(
                task_id="release_for_approval",
                job_flow_id=CLUSTER_ID_FIELD,
                aws_conn_id=self.emr.aws_conn_id,
                region_name=self.emr.region,
                retries=1,
                execution_timeout=datetime.timedelta(minutes=10),
                doc_md="Terminates the run's cluster before the approval waits, so that no "
                       "node bills while the question is open.")

    def resume_after_wait(self, run: XComArg) -> ReuseOrCreateClusterOperator:
        with _cluster_group():
            return ReuseOrCreateClusterOperator(
                task_id="reopen_for_impute",
                live_cluster_id=CLUSTER_ID_FIELD,
                doc_md="Imputation's cluster: the run's cluster when it is still up (no "
                       "approval was asked), else a new one from the same request.",
                **self._create_arguments())

    def _create_arguments(self) -> Dict[str, Any]:
        emr = self.emr
        return dict(
            job_flow_overrides=xcom(SHIP_TASK_ID, "job_flow_request"),
            emr_conn_id=None,
            aws_conn_id=emr.aws_conn_id,
            region_name=emr.region,
            wait_policy=WaitPolicy.WAIT_FOR_COMPLETION,
            waiter_delay=emr.poll_seconds,
            waiter_max_attempts=max(1, emr.create_timeout_seconds // emr.poll_seconds),
            deferrable=emr.deferrable,
            retries=0,
            execution_timeout=datetime.timedelta(seconds=emr.create_timeout_seconds + 300))

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
                   "the run's Mongo secret and records the final cost estimate. Fails (and "
                   "fails the run) when a cluster could not be terminated.",
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
        hook = _hook(emr)
        cluster = hook.describe_cluster(cluster_id)
        # Provisional: a cluster is still up; the teardown records the final cost.
        estimate = cost.run_cost(emr, run_clusters(hook, run, context), final=False)
        return {"cluster_id": cluster_id, "cluster_name": cluster["Name"],
                "release_label": cluster.get("ReleaseLabel"), "log_uri": cluster.get("LogUri"),
                "region": emr.region,
                "instance_layout": "fleets" if requests_fleets(emr) else "groups",
                "cost": estimate,
                "idle_before_first_step_seconds": cost.idle_seconds(
                    cluster["Status"]["Timeline"].get("ReadyDateTime"),
                    hook.first_step_created(cluster_id))}


def _cluster_group():
    """The DAG's ``cluster`` task group."""
    return target_task_group(CLUSTER_GROUP, "The run's EMR cluster: checks, code, creation, "
                                            "release")


def _hook(emr: EmrSettings) -> PipelineEmrHook:
    return PipelineEmrHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)


def _step_template(task_id: str, job: str, job_args: List[str],
                   emr: EmrSettings) -> Dict[str, Any]:
    return spark_step(name=f"{task_id} {xcom(PREPARE_TASK_ID, 'run_key')}",
                      script_uri=xcom(SHIP_TASK_ID, "code", job),
                      jobs_zip_uri=xcom(SHIP_TASK_ID, "code", JOBS_ZIP),
                      job_args=job_args,
                      deploy_mode=CLUSTER if emr.container_image else CLIENT)


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
