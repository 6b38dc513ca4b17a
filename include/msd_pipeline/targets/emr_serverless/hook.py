"""The AWS verbs of the EMR Serverless target, in one hook over the provider's
``EmrServerlessHook``: find, stop and delete a run's applications, its job runs, and
(through the EMR target's hook, on the same connection) its files in S3 and its Mongo
secret.

A run's applications are found by name first: ``ListApplications`` returns every
application's name, so only those named like the run are read (``GetApplication``), and
only those tagged with this DAG run are stopped and deleted. A read that is denied (the
policy allows it on the pipeline's tagged applications only) means the application is
not the pipeline's: it is logged and left alone.
"""
from functools import cached_property
from typing import Any, Dict, List, Optional

from botocore.exceptions import ClientError, WaiterError

from airflow.providers.amazon.aws.hooks.emr import EmrServerlessHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from msd_pipeline.targets.emr.cluster import DAG_TAG, RUN_TAG
from msd_pipeline.targets.emr.hook import ACCESS_DENIED_CODES, PipelineEmrHook, RunTeardownError

ENDED_APPLICATION_STATE = "TERMINATED"
# States from which StopApplication applies, and those a stop passes through.
RUNNING_APPLICATION_STATES = ("STARTING", "STARTED")
# DeleteApplication applies to CREATED and STOPPED applications only.
DELETABLE_APPLICATION_STATES = ("CREATED", "STOPPED")


class PipelineEmrServerlessHook(EmrServerlessHook):
    """EMR Serverless, S3 and Secrets Manager calls of one pipeline run."""

    def __init__(self, aws_conn_id: Optional[str], region_name: Optional[str],
                 **kwargs: Any) -> None:
        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, **kwargs)

    # -- the run's files and secret (the EMR target's, on this connection) ---------------
    @cached_property
    def run_files(self) -> PipelineEmrHook:
        """S3 and the run's Mongo secret, as the EMR target reaches them."""
        return PipelineEmrHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name,
                               verify=self.verify)

    @property
    def s3(self) -> S3Hook:
        return self.run_files.s3

    # -- applications --------------------------------------------------------------------
    def run_applications(self, name: str, dag_id: str, run_id: str) -> List[Dict[str, Any]]:
        """Every application of this DAG run in any state (``GetApplication`` results)."""
        found = []
        for page in self.conn.get_paginator("list_applications").paginate():
            for summary in page["applications"]:
                application = self._run_application(summary, name, dag_id, run_id)
                if application:
                    found.append(application)
        return found

    def _run_application(self, summary: Dict[str, Any], name: str, dag_id: str,
                         run_id: str) -> Optional[Dict[str, Any]]:
        if summary["name"] != name:
            return None
        try:
            application = self.get_application(summary["id"])
        except ClientError as error:
            if error.response["Error"]["Code"] not in ACCESS_DENIED_CODES:
                raise
            self.log.warning("Application %s has this run's name but may not be read (%s): "
                             "not the pipeline's, left alone", summary["id"],
                             error.response["Error"]["Code"])
            return None
        tags = application.get("tags") or {}
        return application if tags.get(RUN_TAG) == run_id and tags.get(DAG_TAG) == dag_id \
            else None

    def get_application(self, application_id: str) -> Dict[str, Any]:
        return self.conn.get_application(applicationId=application_id)["application"]

    def stop_run_applications(self, name: str, dag_id: str, run_id: str, *, delete: bool,
                              poll_seconds: int, timeout_seconds: int) -> List[str]:
        """Stop every live application of the run (its job runs cancelled first) and, with
        ``delete``, delete it. Raises RunTeardownError, after trying every application,
        when one could not be ended."""
        ended: List[str] = []
        failures: List[str] = []
        try:
            applications = self.run_applications(name, dag_id, run_id)
        except ClientError as error:
            raise RunTeardownError(f"listing the applications of run {run_id}: {error}") from error
        for application in applications:
            if application["state"] == ENDED_APPLICATION_STATE:
                continue
            try:
                self._end(application, delete, poll_seconds, timeout_seconds)
                ended.append(application["applicationId"])
            except (ClientError, WaiterError) as error:
                self.log.error("Ending application %s failed: %s",
                               application["applicationId"], error)
                failures.append(f"{application['applicationId']}: {error}")
        if failures:
            raise RunTeardownError("could not {} every application of run {}: {}".format(
                "delete" if delete else "stop", run_id, "; ".join(failures)))
        return ended

    def _end(self, application: Dict[str, Any], delete: bool, poll_seconds: int,
             timeout_seconds: int) -> None:
        application_id, state = application["applicationId"], application["state"]
        waiter_config = {"Delay": poll_seconds,
                         "MaxAttempts": max(1, timeout_seconds // poll_seconds)}
        if state == "CREATING":
            self.get_waiter("serverless_app_created").wait(applicationId=application_id,
                                                           WaiterConfig=waiter_config)
        if state in RUNNING_APPLICATION_STATES + ("STOPPING",):
            if state != "STOPPING":
                self.cancel_running_jobs(application_id, waiter_config)
                self.log.info("Stopping application %s (%s)", application_id, state)
                self.conn.stop_application(applicationId=application_id)
            self.get_waiter("serverless_app_stopped").wait(applicationId=application_id,
                                                           WaiterConfig=waiter_config)
        if delete:
            self.log.info("Deleting application %s", application_id)
            self.conn.delete_application(applicationId=application_id)
            self.get_waiter("serverless_app_terminated").wait(applicationId=application_id,
                                                              WaiterConfig=waiter_config)

    # -- job runs ------------------------------------------------------------------------
    def get_job_run(self, application_id: str, job_run_id: str) -> Dict[str, Any]:
        return self.conn.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]

    def cancel_job_run(self, application_id: str, job_run_id: str) -> str:
        """Cancel the job run unless it has ended; its state before."""
        state = self.get_job_run(application_id, job_run_id)["state"]
        if state not in self.JOB_TERMINAL_STATES:
            self.log.info("Cancelling job run %s of application %s (%s)", job_run_id,
                          application_id, state)
            self.conn.cancel_job_run(applicationId=application_id, jobRunId=job_run_id)
        return state

    def run_job_runs(self, applications: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Every job run on the run's applications (``GetJobRun`` results, with their
        billed utilization), oldest first."""
        runs = [self.get_job_run(application["applicationId"], summary["id"])
                for application in applications
                for page in self.conn.get_paginator("list_job_runs").paginate(
                    applicationId=application["applicationId"])
                for summary in page["jobRuns"]]
        return sorted(runs, key=lambda job_run: job_run["createdAt"])

    # -- the run's Mongo secret -----------------------------------------------------------
    def put_run_secret(self, name: str, uri: str, tags: List[Dict[str, str]]) -> None:
        self.run_files.put_run_secret(name, uri, tags)

    def delete_run_secret(self, name: str) -> bool:
        return self.run_files.delete_run_secret(name)
