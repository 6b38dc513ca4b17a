"""The Amazon provider's EMR step sensor and terminate operator, extended for the pipeline:

* ``StepSensorWithLogs``: when the step fails, its stderr, stdout and controller logs are fetched
  from the cluster's LogUri into this task's log before the task fails.
* ``EndRunClusterOperator`` (the DAG's teardown): terminates the run's cluster — the one
  in XCom and any other cluster tagged with this DAG run (a creation that failed after
  the cluster id existed, a retried creation) — waits until they are terminated, then
  deletes the run's Mongo secret.
"""
from typing import Any, Dict, List, Optional, Set

from botocore.exceptions import WaiterError

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook
from airflow.providers.amazon.aws.operators.emr import EmrTerminateJobFlowOperator
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor

from msdlib.config import PipelineConfig, from_dict
from msd_pipeline.targets.emr import mongo_secret, step_logs
from msd_pipeline.targets.emr.cluster import DAG_TAG, RUN_TAG
from msd_pipeline.targets.base import PREPARE_TASK_ID

ACTIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]


class StepSensorWithLogs(EmrStepSensor):
    """EmrStepSensor that copies a failed step's logs from LogUri into the task log."""

    def __init__(self, *, log_wait_seconds: int, log_tail_lines: int, mongo_conn_id: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_wait_seconds = log_wait_seconds
        self.log_tail_lines = log_tail_lines
        self.mongo_conn_id = mongo_conn_id
        self._last_state: Optional[str] = None

    def get_emr_response(self, context: Any) -> Dict[str, Any]:
        response = super().get_emr_response(context)
        self._last_state = self.state_from_response(response)
        return response

    def poke(self, context: Any) -> bool:
        try:
            return super().poke(context)
        except Exception:
            if self._last_state in self.failed_states:
                self.log_step_logs()
            raise

    def execute_complete(self, context: Any, event: Optional[Dict[str, Any]] = None) -> None:
        if not event or event.get("status") != "success":
            self.log_step_logs()
        super().execute_complete(context, event)

    def log_step_logs(self) -> None:
        """Write the step's stderr and controller log (tails) into this task's log."""
        from msd_pipeline.connections import mongo_uri_from_connection

        mongo_uri_from_connection(self.mongo_conn_id)  # masks the URI should a log echo it
        cluster = self.hook.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]
        log_uri = cluster.get("LogUri")
        if not log_uri:
            self.log.error("Step %s failed; cluster %s has no LogUri", self.step_id, self.job_flow_id)
            return
        s3_hook = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                         verify=self.verify)
        logs = step_logs.fetch_step_logs(s3_hook, log_uri, self.job_flow_id, self.step_id,
                                         wait_seconds=self.log_wait_seconds,
                                         poll_seconds=min(10.0, max(self.log_wait_seconds, 1)))
        uris = step_logs.step_log_uris(log_uri, self.job_flow_id, self.step_id)
        self.log.error("Step %s on cluster %s failed; its logs from %s:", self.step_id,
                       self.job_flow_id, log_uri)
        for block in step_logs.format_step_logs(logs, uris, self.log_tail_lines):
            self.log.error("%s", block)


class EndRunClusterOperator(EmrTerminateJobFlowOperator):
    """Teardown of an EMR run: every cluster of this DAG run terminated, the secret gone.

    ``job_flow_id`` is the creator's XCom (may render as "None" when creation failed);
    clusters tagged with this DAG run are found and terminated as well. The console links
    live on the creator and the step tasks; this task may have no cluster to link to.
    """

    operator_extra_links = ()

    def __init__(self, *, poll_seconds: int, terminate_timeout_seconds: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_seconds = poll_seconds
        self.terminate_timeout_seconds = terminate_timeout_seconds

    def execute(self, context: Any) -> List[str]:
        run = context["ti"].xcom_pull(task_ids=PREPARE_TASK_ID)
        cluster_ids = sorted(self._run_cluster_ids(context))
        for cluster_id in cluster_ids:
            self.log.info("Terminating cluster %s of run %s", cluster_id, context["run_id"])
            self.hook.conn.terminate_job_flows(JobFlowIds=[cluster_id])
        for cluster_id in cluster_ids:
            self._wait_until_ended(cluster_id)
        if not cluster_ids:
            self.log.info("No cluster of run %s to terminate", context["run_id"])
        if run:
            self._delete_secret(from_dict(run["config"]), run["run_key"])
        return cluster_ids

    def _wait_until_ended(self, cluster_id: str) -> None:
        """Wait for TERMINATED; TERMINATED_WITH_ERRORS (e.g. a failed bootstrap) also means
        the cluster is gone, and is logged rather than failing the teardown."""
        try:
            self.hook.get_waiter("job_flow_terminated").wait(
                ClusterId=cluster_id,
                WaiterConfig={"Delay": self.poll_seconds,
                              "MaxAttempts": max(1, self.terminate_timeout_seconds // self.poll_seconds)})
        except WaiterError:
            status = self.hook.conn.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
            if status["State"] != "TERMINATED_WITH_ERRORS":
                raise
            self.log.warning("Cluster %s ended with errors: %s", cluster_id,
                             status.get("StateChangeReason", {}).get("Message"))
            return
        self.log.info("Cluster %s terminated", cluster_id)

    def _run_cluster_ids(self, context: Any) -> Set[str]:
        ids = {self.job_flow_id} if str(self.job_flow_id or "").startswith("j-") else set()
        paginator = self.hook.conn.get_paginator("list_clusters")
        for page in paginator.paginate(ClusterStates=ACTIVE_CLUSTER_STATES):
            for summary in page["Clusters"]:
                if summary["Id"] not in ids and self._belongs_to_run(summary["Id"], context):
                    ids.add(summary["Id"])
        return ids

    def _belongs_to_run(self, cluster_id: str, context: Any) -> bool:
        cluster = self.hook.conn.describe_cluster(ClusterId=cluster_id)["Cluster"]
        tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
        return tags.get(RUN_TAG) == context["run_id"] and tags.get(DAG_TAG) == context["dag"].dag_id

    def _delete_secret(self, config: PipelineConfig, run_key: str) -> None:
        if config.emr.mongo_mode != "secret":
            return
        name = mongo_secret.secret_name(config.emr.mongo_secret_prefix, run_key)
        hook = SecretsManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                                  verify=self.verify)
        deleted = mongo_secret.delete_run_secret(hook, name)
        self.log.info("Mongo secret %s %s", name, "deleted" if deleted else "was not there")
