"""The EMR Serverless target of the pipeline's task graph (include/msd_pipeline/graph.py),
in run order:

    serverless.preflight           the run can work (targets/emr_serverless/preflight/),
                                   before anything exists
    serverless.ship_code           code → the run's S3 prefix (as on EMR); the dependency
                                   archive (dependencies="archive"); the run's Mongo secret;
                                   the CreateApplication request and the job runs' common
                                   parts (XCom, no secrets)
    stage.stage_data               songs → S3, exactly as the EMR target stages them
    serverless.create_application  the run's application, STARTED, once the songs are in S3
    spark.<step>                   one job run per Spark step, waiting deferred; cancelled
                                   when the task is killed or times out; a failed job run's
                                   driver logs → the task log
    serverless.release_for_approval (approval required only) the application stops before
                                   the human wait; the impute job run starts it again
    serverless.delete_application  teardown: every application of the run stopped and
                                   deleted, the secret deleted, the final cost recorded

Shared with the EMR target (``targets/emr/``, reused): the run layout in S3, code
shipping, staging, the Mongo secret, the run tags, the log tail. The AWS settings are
the ``[emr]`` section's (connection, region, S3 root, release label, tags, polling); the
application's are ``[emr_serverless]``. ``preflight``, ``ship_code`` and
``create_application`` are the teardown's setups; the DAG's failure callback
(``end_run_after_failure``) is the second backstop, for a run the scheduler ends without
its teardown (a run timeout skips it).
"""
import datetime
import functools
from typing import Any, Callable, Dict, List, Optional

from airflow.sdk import XComArg, task

from msdlib.config import EmrSettings, PipelineConfig, load_config
from msd_pipeline.run_context import RunContext
from msd_pipeline.targets.base import (PipelineTarget, TaskLike, target_task_group,
                                       task_id_of)
from msd_pipeline.targets.emr import code_shipping, mongo_secret, releases
from msd_pipeline.targets.emr.cluster import run_tags
from msd_pipeline.targets.emr.layout import JOBS_ZIP, RunLayout
from msd_pipeline.targets.emr.target import EmrTarget
from msd_pipeline.targets.emr_serverless import dependencies, job_runs
from msd_pipeline.targets.emr_serverless.application import (application_name,
                                                              application_tags,
                                                              create_application_request)
from msd_pipeline.targets.emr_serverless.hook import PipelineEmrServerlessHook
from msd_pipeline.targets.emr_serverless.operators import (SHIP_TASK_ID,
                                                           CreateRunApplicationOperator,
                                                           DeleteApplicationsOperator,
                                                           ReleaseApplicationsOperator,
                                                           RunJobOperator,
                                                           end_run_after_failure, run_cost)
from msd_pipeline.templates import xcom

SERVERLESS_GROUP = "serverless"
PREFLIGHT_TIMEOUT = datetime.timedelta(minutes=5)
# Building the dependency archive (once per pin set) dominates.
SHIP_TIMEOUT = datetime.timedelta(minutes=30)
CREATE_TASK_ID = "serverless.create_application"
APPLICATION_ID_FIELD = xcom(CREATE_TASK_ID)
# On top of a job run's own timeout: starting a stopped application, submitting, and AWS
# cancelling the job run at its executionTimeoutMinutes.
JOB_SLACK_SECONDS = 120
# Cancelling job runs, stopping and deleting, recording the cost, beyond the waits.
TEARDOWN_SLACK_SECONDS = 300


class EmrServerlessTarget(EmrTarget):
    """Runs the Spark steps as job runs of a run-scoped EMR Serverless application; files
    live in S3 as on EMR (``EmrTarget``'s staging, files, job configuration and artifacts
    location are inherited; the engine's tasks are this class's)."""

    name = "emr_serverless"

    def __init__(self, config: Optional[PipelineConfig] = None) -> None:
        super().__init__(config)
        self.serverless = self.config.emr_serverless

    # -- parse-time builders ---------------------------------------------------------
    def setup(self, run: XComArg) -> List[Any]:
        with _serverless_group():
            checked = _preflight_task(run)
            shipped = _ship_code_task(run)
            checked >> shipped
        return [checked, shipped]

    def start_engine(self, run: XComArg) -> CreateRunApplicationOperator:
        with _serverless_group():
            return CreateRunApplicationOperator(
                task_id="create_application",
                aws_conn_id=self.emr.aws_conn_id,
                region_name=self.emr.region,
                wait_for_completion=True,
                waiter_delay=self.emr.poll_seconds,
                waiter_max_attempts=max(
                    1, self.serverless.create_timeout_seconds // self.emr.poll_seconds),
                deferrable=self.emr.deferrable,
                retries=0,
                # Creation and start each wait up to create_timeout_seconds.
                execution_timeout=datetime.timedelta(
                    seconds=2 * self.serverless.create_timeout_seconds + 120),
                doc_md="CreateApplication with the request built by ship_code, once the "
                       "songs are staged; starts it and waits until it is STARTED.")

    def spark_step(self, task_id: str, job: str, job_args: List[str],
                   engine: Optional[TaskLike] = None) -> RunJobOperator:
        emr = self.emr
        timeout = job_execution_timeout(self.config)
        return RunJobOperator(
            task_id=task_id,
            job=job,
            job_args=job_args,
            application_id=xcom(task_id_of(engine)) if engine is not None
            else APPLICATION_ID_FIELD,
            job_timeout_minutes=self.serverless.job_timeout_minutes,
            aws_conn_id=emr.aws_conn_id,
            region_name=emr.region,
            waiter_delay=emr.poll_seconds,
            # The execution timeout bounds the wait, not the waiter (see operators.py).
            waiter_max_attempts=int(timeout.total_seconds()) // emr.poll_seconds + 1,
            deferrable=emr.deferrable,
            cancel_on_kill=True,
            log_wait_seconds=emr.log_wait_seconds,
            log_tail_lines=emr.log_tail_lines,
            mongo_conn_id=self.config.mongo.airflow_conn_id,
            retries=0,
            execution_timeout=timeout,
            doc_md=f"Starts the `spark_jobs/{job}` job run and waits for it; cancels it "
                   "when this task is killed or times out; a failed job run's driver "
                   "stderr and stdout are copied from S3 into this log. Clearing this task "
                   "runs the job again.")

    def release_for_wait(self, run: XComArg) -> ReleaseApplicationsOperator:
        with _serverless_group():
            return ReleaseApplicationsOperator(
                task_id="release_for_approval",
                retries=1,
                execution_timeout=datetime.timedelta(
                    seconds=self.serverless.create_timeout_seconds + TEARDOWN_SLACK_SECONDS),
                doc_md="Stops the run's application before the approval waits (a stopped "
                       "application bills nothing); the impute job run starts it again.",
                **self._end_arguments())

    def resume_after_wait(self, run: XComArg) -> None:
        """Nothing: the application starts again on the impute job run (auto-start, and
        the provider's StartJobRun operator starts a stopped application and waits)."""
        return None

    def teardown(self, run: XComArg) -> DeleteApplicationsOperator:
        with _serverless_group():
            return DeleteApplicationsOperator(
                task_id="delete_application",
                retries=1,
                execution_timeout=datetime.timedelta(
                    seconds=self.serverless.create_timeout_seconds + TEARDOWN_SLACK_SECONDS),
                doc_md="Teardown: stops (its job runs cancelled) and deletes every "
                       "application named and tagged like this DAG run, deletes the run's "
                       "Mongo secret and records the final cost estimate. Fails (and fails "
                       "the run) when an application could not be deleted.",
                **self._end_arguments())

    def _end_arguments(self) -> Dict[str, Any]:
        return dict(aws_conn_id=self.emr.aws_conn_id, region_name=self.emr.region,
                    poll_seconds=self.emr.poll_seconds,
                    end_timeout_seconds=self.serverless.create_timeout_seconds)

    def failure_callback(self) -> Callable[[Any], None]:
        return functools.partial(end_run_after_failure, self.config)

    # -- run-time hooks ------------------------------------------------------------------
    def run_overrides(self) -> Dict[str, Any]:
        return {}  # EMR Serverless chooses the jobs' master itself

    def run_record_details(self, run: RunContext, context: Any) -> Dict[str, Any]:
        emr = run.config.emr
        application_id = context["ti"].xcom_pull(task_ids=CREATE_TASK_ID)
        hook = _hook(emr)
        application = hook.get_application(application_id)
        return {"application_id": application_id, "application_name": application["name"],
                "release_label": application.get("releaseLabel"),
                "architecture": application.get("architecture"),
                "log_uri": RunLayout(emr.s3_root, run.run_key).log_uri, "region": emr.region,
                "dependencies": run.config.emr_serverless.dependencies,
                # Provisional: imputation may follow; the teardown records the final cost.
                "cost": run_cost(hook, run, context, final=False)}


def job_execution_timeout(config: PipelineConfig) -> datetime.timedelta:
    """A job run task's budget: the job run's own timeout, the slack around it, and the
    wait for a failed job run's logs."""
    return datetime.timedelta(seconds=config.emr_serverless.job_timeout_minutes * 60
                              + JOB_SLACK_SECONDS + config.emr.log_wait_seconds)


def _serverless_group():
    """The DAG's ``serverless`` task group."""
    return target_task_group(SERVERLESS_GROUP, "The run's EMR Serverless application: "
                                               "checks, code, creation, release, deletion")


def _hook(emr: EmrSettings) -> PipelineEmrServerlessHook:
    return PipelineEmrServerlessHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)


@task(task_id="preflight", retries=0, execution_timeout=PREFLIGHT_TIMEOUT)
def _preflight_task(run: Dict[str, Any]) -> None:
    """Fail the run, one line per problem and its fix, before anything is paid for."""
    from msd_pipeline.targets.emr.preflight.findings import require_ready
    from msd_pipeline.targets.emr_serverless import preflight

    findings = preflight.run_checks(RunContext.from_xcom(run).config)
    for finding in findings:
        print(finding.line())
    require_ready(findings)


@task(task_id="ship_code", retries=2, execution_timeout=SHIP_TIMEOUT)
def _ship_code_task(run: Dict[str, Any]) -> Dict[str, Any]:
    """Upload the run's code (and the dependency archive when absent); create its Mongo
    secret; build the CreateApplication request and the job runs' common parts."""
    from msd_pipeline.connections import mongo_uri_from_connection

    context = RunContext.from_xcom(run)
    emr, serverless = context.config.emr, context.config.emr_serverless
    layout = RunLayout(emr.s3_root, context.run_key)
    secret_id = mongo_secret.secret_name(emr.mongo_secret_prefix, context.run_key)
    tags = application_tags(emr, context.dag_id, context.airflow_run_id)
    request = {"releaseLabel": emr.release_label, **create_application_request(
        serverless, emr, application_name(serverless, context.run_key), tags)}
    hook = _hook(emr)
    code = code_shipping.ship_code(hook.s3, layout)
    properties = job_runs.mongo_secret_properties(secret_id, emr.region)
    archive_uri = None
    if serverless.dependencies == "archive":
        archive_uri = dependencies.ensure_archive(
            hook.s3, emr.s3_root, releases.python_version(emr.release_label),
            serverless.architecture)
        properties.update(dependencies.spark_properties(archive_uri))
    hook.put_run_secret(secret_id,
                        mongo_uri_from_connection(context.config.mongo.airflow_conn_id),
                        run_tags(emr, context.dag_id, context.airflow_run_id))
    return {"code": code, "application_request": request,
            "execution_role_arn": serverless.execution_role_arn,
            "spark_submit_parameters": job_runs.spark_submit_parameters(code[JOBS_ZIP],
                                                                        properties),
            "log_uri": layout.log_uri, "tags": tags, "mongo_secret_id": secret_id,
            "dependency_archive": archive_uri}
