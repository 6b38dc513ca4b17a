"""The AWS verbs of the EMR target, in one hook (the Amazon provider's model: thin
operators over a hook): find, terminate and describe a run's clusters, its Mongo secret,
its files in S3.

A run's clusters are found by name first: ``ListClusters`` returns every active cluster's
name, so only clusters named like this run's are described (``DescribeCluster`` is allowed
only on clusters tagged ``project=msd-pipeline``; see include/emr/iam-policy.json), and
only those tagged with this DAG run are terminated. A describe that is denied means the
cluster is not the pipeline's: it is logged and left alone.
"""
import datetime
from typing import Any, Dict, Iterable, List, Optional

from botocore.exceptions import ClientError, WaiterError

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

from msdlib.io.sources import split_s3_uri
from msd_pipeline.targets.emr import mongo_secret
from msd_pipeline.targets.emr.cluster import DAG_TAG, RUN_TAG

ACTIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING"]
# A cluster that takes steps now.
LIVE_CLUSTER_STATES = ("RUNNING", "WAITING")
ENDED_WITH_ERRORS = "TERMINATED_WITH_ERRORS"
ENDED_CLUSTER_STATES = ["TERMINATED", ENDED_WITH_ERRORS]
ACCESS_DENIED_CODES = {"AccessDenied", "AccessDeniedException"}


class RunTeardownError(RuntimeError):
    """Some cluster of the run could not be terminated."""


class PipelineEmrHook(EmrHook):
    """EMR, S3 and Secrets Manager calls of one pipeline run, over one AWS connection."""

    def __init__(self, aws_conn_id: Optional[str], region_name: Optional[str], **kwargs: Any) -> None:
        super().__init__(emr_conn_id=None, aws_conn_id=aws_conn_id, region_name=region_name,
                         **kwargs)

    # -- clusters ------------------------------------------------------------------------
    def find_run_clusters(self, cluster_name: str, dag_id: str, run_id: str) -> List[str]:
        """Active clusters named ``cluster_name`` and tagged with this DAG run."""
        return [cluster["Id"] for cluster in
                self._run_clusters(cluster_name, dag_id, run_id, ACTIVE_CLUSTER_STATES)]

    def describe_run_clusters(self, cluster_name: str, dag_id: str, run_id: str,
                              created_after: Optional[datetime.datetime]) -> List[Dict[str, Any]]:
        """Every cluster of this DAG run in any state (``DescribeCluster`` results), those
        already terminated included; ``created_after`` bounds the listing."""
        return self._run_clusters(cluster_name, dag_id, run_id,
                                  ACTIVE_CLUSTER_STATES + ENDED_CLUSTER_STATES, created_after)

    def _run_clusters(self, cluster_name: str, dag_id: str, run_id: str, states: List[str],
                      created_after: Optional[datetime.datetime] = None) -> List[Dict[str, Any]]:
        found = []
        listing: Dict[str, Any] = {"ClusterStates": states}
        if created_after:
            listing["CreatedAfter"] = created_after
        for page in self.conn.get_paginator("list_clusters").paginate(**listing):
            for summary in page["Clusters"]:
                cluster = self._run_cluster(summary, cluster_name, dag_id, run_id)
                if cluster:
                    found.append(cluster)
        return found

    def _run_cluster(self, summary: Dict[str, Any], cluster_name: str, dag_id: str,
                     run_id: str) -> Optional[Dict[str, Any]]:
        """The described cluster when ``summary`` is one of this run's, else None."""
        if summary["Name"] != cluster_name:
            return None
        try:
            cluster = self.describe_cluster(summary["Id"])
        except ClientError as error:
            if error.response["Error"]["Code"] not in ACCESS_DENIED_CODES:
                raise
            self.log.warning("Cluster %s has this run's name but may not be described (%s): "
                             "not the pipeline's, left alone", summary["Id"],
                             error.response["Error"]["Code"])
            return None
        tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
        return cluster if tags.get(RUN_TAG) == run_id and tags.get(DAG_TAG) == dag_id else None

    def terminate_run_clusters(self, known_cluster_id: Optional[str], cluster_name: str,
                               dag_id: str, run_id: str) -> List[str]:
        """Terminate the run's cluster known from XCom first, then any other cluster of the
        run (found by name and run tag). Raises RunTeardownError, after trying every
        cluster, when one could not be terminated."""
        ids: List[str] = []
        failures: List[str] = []
        if known_cluster_id:
            ids.append(known_cluster_id)
            self._terminate(known_cluster_id, failures)
        try:
            lost = [cid for cid in self.find_run_clusters(cluster_name, dag_id, run_id) if cid not in ids]
        except ClientError as error:
            failures.append(f"listing the run's clusters: {error}")
            lost = []
        for cluster_id in lost:
            ids.append(cluster_id)
            self._terminate(cluster_id, failures)
        if failures:
            raise RunTeardownError("could not terminate every cluster of run {}: {}".format(
                run_id, "; ".join(failures)))
        return ids

    def _terminate(self, cluster_id: str, failures: List[str]) -> None:
        self.log.info("Terminating cluster %s", cluster_id)
        try:
            self.conn.terminate_job_flows(JobFlowIds=[cluster_id])
        except ClientError as error:
            self.log.error("Terminating cluster %s failed: %s", cluster_id, error)
            failures.append(f"{cluster_id}: {error}")

    def wait_until_ended(self, cluster_ids: Iterable[str], poll_seconds: int,
                         timeout_seconds: int) -> None:
        """Wait for TERMINATED; TERMINATED_WITH_ERRORS (e.g. a failed bootstrap) also means
        the cluster is gone, and is logged rather than raised."""
        for cluster_id in cluster_ids:
            try:
                self.get_waiter("job_flow_terminated").wait(
                    ClusterId=cluster_id,
                    WaiterConfig={"Delay": poll_seconds,
                                  "MaxAttempts": max(1, timeout_seconds // poll_seconds)})
            except WaiterError:
                status = self.describe_cluster(cluster_id)["Status"]
                if status["State"] != ENDED_WITH_ERRORS:
                    raise
                self.log.warning("Cluster %s ended with errors: %s", cluster_id,
                                 status.get("StateChangeReason", {}).get("Message"))
                continue
            self.log.info("Cluster %s terminated", cluster_id)

    def describe_cluster(self, cluster_id: str) -> Dict[str, Any]:
        return self.conn.describe_cluster(ClusterId=cluster_id)["Cluster"]

    def first_step_created(self, cluster_id: str) -> Optional[datetime.datetime]:
        """When the cluster's first step was added (None: no step yet)."""
        created = [step["Status"]["Timeline"]["CreationDateTime"]
                   for page in self.conn.get_paginator("list_steps").paginate(ClusterId=cluster_id)
                   for step in page["Steps"]]
        return min(created, default=None)

    # -- the run's Mongo secret ----------------------------------------------------------------
    @property
    def secrets(self) -> SecretsManagerHook:
        return SecretsManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                                  verify=self.verify)

    def put_run_secret(self, name: str, uri: str, tags: List[Dict[str, str]]) -> None:
        mongo_secret.put_run_secret(self.secrets, name, uri, tags)

    def delete_run_secret(self, name: str) -> bool:
        return mongo_secret.delete_run_secret(self.secrets, name)

    # -- files in S3 --------------------------------------------------------------------------
    @property
    def s3(self) -> S3Hook:
        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify)

    def read_bytes(self, uri: str) -> Optional[bytes]:
        """The object's bytes, or None when it is absent (a 404: the policies grant
        ListBucket, without which S3 answers 403 for a missing key)."""
        bucket, key = split_s3_uri(uri)
        s3 = self.s3
        if not s3.check_for_key(key, bucket_name=bucket):
            return None
        return s3.get_key(key, bucket_name=bucket).get()["Body"].read()

    def write_text(self, uri: str, text: str) -> None:
        bucket, key = split_s3_uri(uri)
        self.s3.load_string(text, key=key, bucket_name=bucket, replace=True)
