"""The Amazon provider's EMR Serverless operators, extended for the pipeline:

* ``CreateRunApplicationOperator``: the run's application from the request ``ship_code``
  built (XCom); the provider's operator creates it, starts it and waits until STARTED.
* ``RunJobOperator``: one job run per Spark step (one task to clear), waiting deferred.
  The job run is cancelled on every way the task can end early: killed or timed out while
  it waits in the worker (the provider's ``on_kill``), killed while deferred (the
  provider's trigger), the deferral timed out (``resume_execution`` here: Airflow bounds
  the deferral by the task's execution_timeout and resumes it only to fail), the wait's
  attempts exhausted. A job run that fails gets its driver's stderr and stdout copied from
  the S3 log prefix into this task's log before the task fails.
* ``ReleaseApplicationsOperator``: with approval required, the application stops before
  the human wait (nothing bills while stopped); the impute job run starts it again
  (``autoStartConfiguration``, and the provider's operator starts a stopped application).
* ``DeleteApplicationsOperator`` (the DAG's teardown): every application of this DAG run
  (found by name and run tags) stopped and deleted, the run's Mongo secret deleted, the
  final cost over every job run recorded.
* ``end_run_after_failure``: the DAG's failure callback doing the same.

The AWS calls live in ``PipelineEmrServerlessHook`` (hook.py).
"""
from functools import cached_property
from typing import Any, Dict, List, Optional

from airflow.providers.amazon.aws.operators.emr import (EmrServerlessCreateApplicationOperator,
                                                        EmrServerlessStartJobOperator)
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from msdlib.config import PipelineConfig
from msd_pipeline import run_records
from msd_pipeline.run_context import RunContext, run_key_for
from msd_pipeline.targets.base import PREPARE_TASK_ID
from msd_pipeline.targets.emr import mongo_secret, step_logs
from msd_pipeline.targets.emr_serverless import cost, job_runs
from msd_pipeline.targets.emr_serverless.application import application_name
from msd_pipeline.targets.emr_serverless.hook import PipelineEmrServerlessHook

SHIP_TASK_ID = "serverless.ship_code"
JOB_RUN_KEY = "job_run_id"
# Airflow's next_method for a deferral that timed out (airflow.sdk.bases.operator).
TRIGGER_FAIL = "__fail__"


def shipped(context: Any) -> Dict[str, Any]:
    """What ``ship_code`` returned: code URIs, the requests' run-time parts."""
    return context["ti"].xcom_pull(task_ids=SHIP_TASK_ID)


class CreateRunApplicationOperator(EmrServerlessCreateApplicationOperator):
    """Creates the run's application from ``ship_code``'s request, starts it and waits
    until it is STARTED (the provider's operator)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(release_label="", job_type="SPARK", **kwargs)

    def execute(self, context: Any) -> Optional[str]:
        request = dict(shipped(context)["application_request"])
        self.release_label = request.pop("releaseLabel")
        self.config = request
        return super().execute(context)


class RunJobOperator(EmrServerlessStartJobOperator):
    """Starts one job run of ``spark_jobs/<job>`` on the application ``application_id``
    names and waits for it; see the module's docstring for cancellation and logs."""

    template_fields = (*EmrServerlessStartJobOperator.template_fields, "job_args")

    def __init__(self, *, job: str, job_args: List[str], job_timeout_minutes: int,
                 log_wait_seconds: int, log_tail_lines: int, mongo_conn_id: str,
                 **kwargs: Any) -> None:
        super().__init__(execution_role_arn="", job_driver={}, **kwargs)
        self.job = job
        self.job_args = job_args
        self.job_timeout_minutes = job_timeout_minutes
        self.log_wait_seconds = log_wait_seconds
        self.log_tail_lines = log_tail_lines
        self.mongo_conn_id = mongo_conn_id

    @cached_property
    def run_hook(self) -> PipelineEmrServerlessHook:
        return PipelineEmrServerlessHook(aws_conn_id=self.aws_conn_id,
                                         region_name=self.region_name, verify=self.verify)

    def execute(self, context: Any, event: Optional[Dict[str, Any]] = None) -> Optional[str]:
        code = shipped(context)
        run_key = context["ti"].xcom_pull(task_ids=PREPARE_TASK_ID)["run_key"]
        self.execution_role_arn = code["execution_role_arn"]
        self.job_driver = job_runs.job_driver(code["code"][self.job], self.job_args,
                                              code["spark_submit_parameters"])
        self.configuration_overrides = job_runs.configuration_overrides(code["log_uri"])
        self.config = job_runs.start_job_run_extras(self.job_timeout_minutes, code["tags"])
        self.name = job_runs.job_run_name(self.task_id, run_key)
        try:
            return super().execute(context, event)
        except AirflowException:
            if self.job_id:  # the job run failed or the wait gave up (then it cancelled it)
                self.log_driver_logs(self.application_id, self.job_id)
            raise

    def persist_links(self, context: Any) -> None:
        # Called once the job run exists: its id → XCom, for the resumed (deferred) task.
        context["ti"].xcom_push(key=JOB_RUN_KEY, value=self.job_id)
        super().persist_links(context)

    def execute_complete(self, context: Any, event: Optional[Dict[str, Any]] = None) -> str:
        job_run_id = context["ti"].xcom_pull(task_ids=self.task_id, key=JOB_RUN_KEY)
        if event and event.get("status") == "success":
            self.log.info("Job run %s succeeded", job_run_id)
            return job_run_id
        self.run_hook.cancel_job_run(self.application_id, job_run_id)
        self.log_driver_logs(self.application_id, job_run_id)
        raise AirflowException(f"Job run {job_run_id} did not succeed: {event}")

    def resume_execution(self, next_method: str, next_kwargs: Optional[Dict[str, Any]],
                         context: Any) -> Any:
        if next_method == TRIGGER_FAIL:  # the deferral timed out: the job must not go on
            job_run_id = context["ti"].xcom_pull(task_ids=self.task_id, key=JOB_RUN_KEY)
            if job_run_id:
                state = self.run_hook.cancel_job_run(self.application_id, job_run_id)
                self.log.error("The wait for job run %s timed out (%s): cancelled",
                               job_run_id, state)
        return super().resume_execution(next_method, next_kwargs, context)

    def log_driver_logs(self, application_id: str, job_run_id: str) -> None:
        """The job run's state and its driver's stderr and stdout (tails) → this log."""
        from msd_pipeline.connections import mongo_uri_from_connection

        mongo_uri_from_connection(self.mongo_conn_id)  # masks the URI should a log echo it
        job_run = self.run_hook.get_job_run(application_id, job_run_id)
        self.log.error("Job run %s of application %s: %s %s", job_run_id, application_id,
                       job_run["state"], job_run.get("stateDetails") or "")
        log_uri = job_runs.log_uri_of(job_run)
        if not log_uri:
            self.log.error("Job run %s has no S3 log location", job_run_id)
            return
        uris = job_runs.driver_log_uris(log_uri, application_id, job_run_id)
        logs = step_logs.fetch_logs(self.run_hook.s3, uris, wait_seconds=self.log_wait_seconds,
                                    poll_seconds=min(10.0, max(self.log_wait_seconds, 1)))
        self.log.error("The driver's logs from %s:", log_uri)
        for block in step_logs.format_step_logs(logs, uris, self.log_tail_lines):
            self.log.error("%s", block)


class _RunApplicationsOperator(BaseOperator):
    """An operator acting on every application of this DAG run (named and tagged like it)."""

    ui_color = "#f9c915"

    def __init__(self, *, aws_conn_id: Optional[str], region_name: Optional[str],
                 poll_seconds: int, end_timeout_seconds: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_seconds = poll_seconds
        self.end_timeout_seconds = end_timeout_seconds

    @cached_property
    def hook(self) -> PipelineEmrServerlessHook:
        return PipelineEmrServerlessHook(aws_conn_id=self.aws_conn_id,
                                         region_name=self.region_name)

    def end_run_applications(self, run: RunContext, context: Any, delete: bool) -> List[str]:
        return self.hook.stop_run_applications(
            application_name(run.config.emr_serverless, run.run_key), context["dag"].dag_id,
            context["run_id"], delete=delete, poll_seconds=self.poll_seconds,
            timeout_seconds=self.end_timeout_seconds)


class ReleaseApplicationsOperator(_RunApplicationsOperator):
    """Stops the run's applications before the run waits on a human; the secret stays."""

    def execute(self, context: Any) -> List[str]:
        run = RunContext.from_xcom(context["ti"].xcom_pull(task_ids=PREPARE_TASK_ID))
        stopped = self.end_run_applications(run, context, delete=False)
        self.log.info("Stopped before the approval wait: %s", ", ".join(stopped) or "none")
        return stopped


class DeleteApplicationsOperator(_RunApplicationsOperator):
    """Teardown of an EMR Serverless run: every application of this DAG run stopped and
    deleted, the secret gone, the final cost recorded. Fails (and fails the run) when an
    application could not be deleted."""

    def execute(self, context: Any) -> List[str]:
        run = RunContext.from_xcom(context["ti"].xcom_pull(task_ids=PREPARE_TASK_ID))
        try:
            deleted = self.end_run_applications(run, context, delete=True)
        finally:  # the secret goes even when an application could not be deleted
            delete_run_secret(self.hook, run.config, run.run_key, self.log)
        self.log.info("Applications of run %s deleted: %s", context["run_id"],
                      ", ".join(deleted) or "none")
        self.record_final_cost(run, context)
        return deleted

    def record_final_cost(self, run: RunContext, context: Any) -> None:
        """The cost over every job run of the run into this log and the run record
        (``target_details.cost``, ``final: true``). Best effort, as on EMR."""
        try:
            estimate = run_cost(self.hook, run, context, final=True)
            self.log.info("Final cost estimate of run %s: %s over %d job run(s)",
                          context["run_id"], cost.usd_text(estimate), len(estimate["job_runs"]))
            for line in cost.job_run_lines(estimate):
                self.log.info("  %s", line)
            record_id = run.identity()["_id"]
            if run_records.set_target_detail(record_id, "cost", estimate, run.config.mongo):
                self.log.info("Final cost stored in run record %s", record_id)
            else:
                self.log.info("No run record %s (the run ended before collect_metrics): "
                              "the final cost is in this log only", record_id)
        except Exception:  # the applications are gone: a cost left unrecorded must not fail that
            self.log.warning("Final cost of run %s not recorded", context["run_id"],
                             exc_info=True)


def run_cost(hook: PipelineEmrServerlessHook, run: RunContext, context: Any, *,
             final: bool) -> Dict[str, Any]:
    """The cost estimate over every job run of every application of this DAG run."""
    config = run.config
    applications = hook.run_applications(application_name(config.emr_serverless, run.run_key),
                                         context["dag"].dag_id, context["run_id"])
    return cost.run_cost(config.emr_serverless, config.emr.region,
                         hook.run_job_runs(applications), final=final)


def end_run_after_failure(config: PipelineConfig, context: Any) -> None:
    """DAG ``on_failure_callback``: the second backstop after the teardown task, for runs
    the scheduler ended without it (a run timeout skips every unfinished task, the
    teardown included). Works from the callback context's DAG and run id alone: stops
    and deletes the applications named and tagged with the run, deletes its secret."""
    emr, serverless = config.emr, config.emr_serverless
    run_id = context["run_id"]
    run_key = run_key_for(run_id)
    hook = PipelineEmrServerlessHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)
    try:
        deleted = hook.stop_run_applications(
            application_name(serverless, run_key), context["dag"].dag_id, run_id, delete=True,
            poll_seconds=emr.poll_seconds, timeout_seconds=serverless.create_timeout_seconds)
        hook.log.info("Run %s failed (%s): applications deleted: %s", run_id,
                      context.get("reason", "failure"), deleted or "none left")
    finally:
        delete_run_secret(hook, config, run_key, hook.log)


def delete_run_secret(hook: PipelineEmrServerlessHook, config: PipelineConfig, run_key: str,
                      log: Any) -> None:
    name = mongo_secret.secret_name(config.emr.mongo_secret_prefix, run_key)
    deleted = hook.delete_run_secret(name)
    log.info("Mongo secret %s %s", name, "deleted" if deleted else "was not there")
