"""The Amazon provider's EMR step sensor and terminate operator, extended for the pipeline:

* ``RunStepOperator``: adds a Spark step and waits for it (one task to clear); when the step
  fails, its stderr, stdout and controller logs are fetched from the cluster's LogUri into
  this task's log before the task fails.
* ``ReleaseClustersOperator`` / ``ReuseOrCreateClusterOperator``: with approval required, the
  cluster ends before the human wait, and imputation gets a cluster again afterwards.
* ``EndRunClusterOperator`` (the DAG's teardown): terminates the run's cluster — the one
  in XCom first, then any other cluster named and tagged like this DAG run (a creation
  that failed after the cluster id existed, a retried creation) — waits until they are
  terminated, deletes the run's Mongo secret, then records the final cost estimate over
  every cluster of the run (msd_pipeline.targets.emr.cost) in the run record.
* ``end_run_after_failure``: the DAG's failure callback doing the same without waiting.

The AWS calls live in ``PipelineEmrHook`` (hook.py).
"""
import datetime
from functools import cached_property
from typing import Any, Dict, List, Optional

from airflow.providers.amazon.aws.operators.emr import (EmrAddStepsOperator,
                                                        EmrCreateJobFlowOperator)
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.providers.amazon.aws.utils.waiter_with_logging import wait
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from msdlib.config import EmrSettings, PipelineConfig
from msd_pipeline import run_records
from msd_pipeline.run_context import RunContext, run_key_for
from msd_pipeline.targets.base import PREPARE_TASK_ID
from msd_pipeline.targets.emr import cost, mongo_secret, step_logs
from msd_pipeline.targets.emr.cluster import cluster_name
from msd_pipeline.targets.emr.hook import LIVE_CLUSTER_STATES, PipelineEmrHook

# The run's clusters are listed from the DAG run's start, less this for clocks that differ.
CLOCK_SKEW = datetime.timedelta(minutes=10)


STEP_ID_KEY = "step_id"


class RunStepOperator(EmrAddStepsOperator):
    """Adds one Spark step to the cluster and waits for it, in one task: clearing the task
    adds the step again, on the cluster its ``job_flow_id`` names at that time. When the
    step fails, its stderr, stdout and controller log are copied from LogUri into this
    task's log before the task fails."""

    def __init__(self, *, log_wait_seconds: int, log_tail_lines: int, mongo_conn_id: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_wait_seconds = log_wait_seconds
        self.log_tail_lines = log_tail_lines
        self.mongo_conn_id = mongo_conn_id

    def execute(self, context: Any) -> str:
        [step_id] = self.hook.add_job_flow_steps(job_flow_id=self.job_flow_id, steps=self.steps)
        self.log.info("Step %s added to cluster %s", step_id, self.job_flow_id)
        # For execute_complete (`airflow dags test` resumes with the event alone, without
        # defer's kwargs).
        context["ti"].xcom_push(key=STEP_ID_KEY, value=step_id)
        if self.deferrable:
            self.defer(trigger=EmrStepSensorTrigger(
                job_flow_id=self.job_flow_id, step_id=step_id, waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts, aws_conn_id=self.aws_conn_id,
                region_name=self.region_name, verify=self.verify,
                botocore_config=self.botocore_config),
                method_name="execute_complete")
        try:
            wait(waiter=self.hook.get_waiter("step_wait_for_terminal"),
                 waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts,
                 args={"ClusterId": self.job_flow_id, "StepId": step_id},
                 failure_message=f"Step {step_id} did not complete",
                 status_message=f"Step {step_id} is", status_args=["Step.Status.State"])
        except AirflowException:
            self.log_step_logs(step_id)
            raise
        return step_id

    def execute_complete(self, context: Any, event: Optional[Dict[str, Any]] = None) -> str:
        step_id = context["ti"].xcom_pull(task_ids=self.task_id, key=STEP_ID_KEY)
        if not event or event.get("status") != "success":
            self.log_step_logs(step_id)
            raise AirflowException(f"Step {step_id} did not complete: {event}")
        self.log.info("Step %s completed", step_id)
        return step_id

    def log_step_logs(self, step_id: str) -> None:
        """Write the step's stderr and controller log (tails) into this task's log."""
        from msd_pipeline.connections import mongo_uri_from_connection

        mongo_uri_from_connection(self.mongo_conn_id)  # masks the URI should a log echo it
        hook = PipelineEmrHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                               verify=self.verify)
        log_uri = hook.describe_cluster(self.job_flow_id).get("LogUri")
        if not log_uri:
            self.log.error("Step %s failed; cluster %s has no LogUri", step_id, self.job_flow_id)
            return
        logs = step_logs.fetch_step_logs(hook.s3, log_uri, self.job_flow_id, step_id,
                                         wait_seconds=self.log_wait_seconds,
                                         poll_seconds=min(10.0, max(self.log_wait_seconds, 1)))
        uris = step_logs.step_log_uris(log_uri, self.job_flow_id, step_id)
        self.log.error("Step %s on cluster %s failed; its logs from %s:", step_id,
                       self.job_flow_id, log_uri)
        for block in step_logs.format_step_logs(logs, uris, self.log_tail_lines):
            self.log.error("%s", block)


class ReuseOrCreateClusterOperator(EmrCreateJobFlowOperator):
    """The run's cluster again after a human wait: ``live_cluster_id`` when it is still up
    (WAITING or RUNNING), else a new cluster from the run's RunJobFlow request (same name
    and tags, so the teardown ends it too)."""

    template_fields = (*EmrCreateJobFlowOperator.template_fields, "live_cluster_id")

    def __init__(self, *, live_cluster_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.live_cluster_id = live_cluster_id

    def execute(self, context: Any) -> Optional[str]:
        if cluster_id_or_none(self.live_cluster_id):
            state = self.hook.conn.describe_cluster(
                ClusterId=self.live_cluster_id)["Cluster"]["Status"]["State"]
            if state in LIVE_CLUSTER_STATES:
                self.log.info("Cluster %s is %s: the next steps run on it",
                              self.live_cluster_id, state)
                return self.live_cluster_id
            self.log.info("Cluster %s is %s: creating a new one", self.live_cluster_id, state)
        return super().execute(context)


class _RunClustersOperator(BaseOperator):
    """An operator ending the clusters of this DAG run: the one ``job_flow_id`` names
    first (the creator's XCom; it renders as "None" when creation failed), then any other
    cluster named and tagged like this run."""

    template_fields = ("job_flow_id",)
    ui_color = "#f9c915"

    def __init__(self, *, job_flow_id: str, aws_conn_id: Optional[str],
                 region_name: Optional[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_flow_id = job_flow_id
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    @cached_property
    def hook(self) -> PipelineEmrHook:
        return PipelineEmrHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def terminate_run_clusters(self, run: RunContext, context: Any) -> List[str]:
        """Terminate every cluster of the run (no wait); their ids."""
        return self.hook.terminate_run_clusters(
            cluster_id_or_none(self.job_flow_id), cluster_name(run.config.emr, run.run_key),
            context["dag"].dag_id, context["run_id"])


class ReleaseClustersOperator(_RunClustersOperator):
    """Terminates every cluster of this DAG run before the run waits on a human; the run's
    secret stays (imputation needs it on the next cluster)."""

    def execute(self, context: Any) -> List[str]:
        run = RunContext.from_xcom(context["ti"].xcom_pull(task_ids=PREPARE_TASK_ID))
        ended = self.terminate_run_clusters(run, context)
        self.log.info("Released before the approval wait: %s", ", ".join(ended) or "none")
        return ended


class EndRunClusterOperator(_RunClustersOperator):
    """Teardown of an EMR run: every cluster of this DAG run terminated, the secret gone.

    The task fails (and, as the DAG's teardown, fails the run) when a cluster could not be
    terminated.
    """

    def __init__(self, *, poll_seconds: int, terminate_timeout_seconds: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_seconds = poll_seconds
        self.terminate_timeout_seconds = terminate_timeout_seconds

    def execute(self, context: Any) -> List[str]:
        run = RunContext.from_xcom(context["ti"].xcom_pull(task_ids=PREPARE_TASK_ID))
        emr = run.config.emr
        try:
            cluster_ids = self.terminate_run_clusters(run, context)
            self.hook.wait_until_ended(cluster_ids, self.poll_seconds, self.terminate_timeout_seconds)
        finally:  # the secret goes even when a cluster could not be terminated
            delete_run_secret(self.hook, emr, run.run_key, self.log)
        if not cluster_ids:
            self.log.info("No cluster of run %s to terminate", context["run_id"])
        self.record_final_cost(run, context)
        return cluster_ids

    def record_final_cost(self, run: RunContext, context: Any) -> None:
        """The cost over every cluster of the run, each up to its end, into this log and
        the run record (``target_details.cost``, ``final: true``). Best effort: a run
        that failed before collect_metrics has no record, and nothing here fails the
        teardown."""
        emr = run.config.emr
        try:
            clusters = run_clusters(self.hook, run, context)
            final = cost.run_cost(emr, clusters, final=True)
            self.log.info("Final cost estimate of run %s: %s over %d cluster(s), %s "
                          "instance-hours", context["run_id"], cost.usd_text(final),
                          len(clusters), final["instance_hours"])
            record_id = run.identity()["_id"]
            if run_records.set_target_detail(record_id, "cost", final, run.config.mongo):
                self.log.info("Final cost stored in run record %s", record_id)
            else:
                self.log.info("No run record %s (the run ended before collect_metrics): "
                              "the final cost is in this log only", record_id)
        except Exception:  # the clusters are gone: a cost left unrecorded must not fail that
            self.log.warning("Final cost of run %s not recorded", context["run_id"],
                             exc_info=True)


def cluster_id_or_none(rendered: Any) -> Optional[str]:
    """A rendered cluster-id template: the id, or None (it renders "None" when the
    creating task pushed nothing)."""
    return rendered if str(rendered or "").startswith("j-") else None


def run_clusters(hook: PipelineEmrHook, run: RunContext, context: Any) -> List[Dict[str, Any]]:
    """Every cluster of this DAG run, in any state (``DescribeCluster`` results)."""
    started = context["dag_run"].start_date
    return hook.describe_run_clusters(
        cluster_name(run.config.emr, run.run_key), context["dag"].dag_id, context["run_id"],
        created_after=started - CLOCK_SKEW if started else None)


def end_run_after_failure(config: PipelineConfig, context: Any) -> None:
    """DAG ``on_failure_callback``: the second backstop after the teardown task, for runs
    the scheduler ended without it (a run timeout skips every unfinished task, the
    teardown included). Works from the callback context's DAG and run id alone:
    terminates the clusters named and tagged with the run (no wait) and deletes the
    run's secret."""
    emr = config.emr
    run_id = context["run_id"]
    run_key = run_key_for(run_id)
    hook = PipelineEmrHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)
    try:
        ended = hook.terminate_run_clusters(None, cluster_name(emr, run_key),
                                            context["dag"].dag_id, run_id)
        hook.log.info("Run %s failed (%s): clusters terminated: %s", run_id,
                      context.get("reason", "failure"), ended or "none left")
    finally:
        delete_run_secret(hook, emr, run_key, hook.log)


def delete_run_secret(hook: PipelineEmrHook, emr: EmrSettings, run_key: str, log: Any) -> None:
    if emr.mongo_mode != "secret":
        return
    name = mongo_secret.secret_name(emr.mongo_secret_prefix, run_key)
    deleted = hook.delete_run_secret(name)
    log.info("Mongo secret %s %s", name, "deleted" if deleted else "was not there")
