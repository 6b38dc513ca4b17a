"""A job run's end, offline: a failed job run's driver logs (gzip, waited for) copied into
the task log, and the job run cancelled on every way its task ends early — a failed or
exhausted wait, a deferral that timed out — with the provider's operator underneath."""
import gzip
from typing import Dict

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferralTimeout

from msd_pipeline.targets.emr import step_logs
from msd_pipeline.targets.emr_serverless import job_runs
from msd_pipeline.targets.emr_serverless.operators import JOB_RUN_KEY, RunJobOperator

LOG_URI = "s3://b/msd/logs/"
MARKER = "RuntimeError: simulated executor loss 7f3a"


class FakeS3:
    """S3Hook's two read calls over a dict; objects appear after ``arrive_after`` polls."""

    def __init__(self, objects: Dict[str, bytes], arrive_after: int = 0):
        self.objects = objects
        self.polls = 0
        self.arrive_after = arrive_after

    def check_for_key(self, key, bucket_name):
        self.polls += 1
        return self.polls > self.arrive_after and f"s3://{bucket_name}/{key}" in self.objects

    def get_key(self, key, bucket_name):
        data = self.objects[f"s3://{bucket_name}/{key}"]
        return type("Obj", (), {"get": lambda self: {"Body": type("B", (), {
            "read": lambda self: data})()}})()


def driver_logs(stderr: str) -> Dict[str, bytes]:
    uris = job_runs.driver_log_uris(LOG_URI, "00app", "00run")
    return {uris["stderr"]: gzip.compress(stderr.encode()),
            uris["stdout"]: gzip.compress(b'{"status": "failed"}\n')}


def test_the_driver_logs_are_waited_for_and_their_tail_kept():
    stderr = "\n".join(f"line {n}" for n in range(500)) + "\n" + MARKER
    s3 = FakeS3(driver_logs(stderr), arrive_after=4)
    slept = []
    uris = job_runs.driver_log_uris(LOG_URI, "00app", "00run")
    logs = step_logs.fetch_logs(s3, uris, wait_seconds=30, poll_seconds=10, sleep=slept.append)
    assert slept == [10, 10] and logs["stderr"].endswith(MARKER)
    [stderr_block, stdout_block] = step_logs.format_step_logs(logs, uris, lines=3)
    assert stderr_block.splitlines()[1:] == ["line 498", "line 499", MARKER]
    assert '"status": "failed"' in stdout_block


def test_logs_that_never_arrive_say_where_they_were_expected():
    uris = job_runs.driver_log_uris(LOG_URI, "00app", "00run")
    logs = step_logs.fetch_logs(FakeS3({}), uris, wait_seconds=5, poll_seconds=5,
                                sleep=lambda s: None)
    assert step_logs.format_step_logs(logs, uris, 10)[0] == \
        f"--- stderr: not found at {uris['stderr']}"


class FakeHook:
    def __init__(self, state="RUNNING"):
        self.state = state
        self.cancelled = []
        self.s3 = FakeS3(driver_logs(MARKER))

    def get_job_run(self, application_id, job_run_id):
        return {"state": self.state, "stateDetails": "Job failed",
                "configurationOverrides": job_runs.configuration_overrides(LOG_URI)}

    def cancel_job_run(self, application_id, job_run_id):
        self.cancelled.append(job_run_id)
        return self.state


class FakeTi:
    def xcom_pull(self, task_ids, key=None):
        return "00run" if key == JOB_RUN_KEY else None


@pytest.fixture
def operator(monkeypatch):
    monkeypatch.setattr("msd_pipeline.connections.mongo_uri_from_connection", lambda c: "")
    task = RunJobOperator(task_id="ingest", job="ingest_songs.py", job_args=[],
                          application_id="00app", job_timeout_minutes=1, log_wait_seconds=0,
                          log_tail_lines=5, mongo_conn_id="mongo_default", aws_conn_id=None,
                          region_name="us-east-1")
    task.__dict__["run_hook"] = FakeHook()
    return task


def test_a_failed_deferred_wait_cancels_the_job_run_and_logs_the_driver(operator, capsys):
    with pytest.raises(AirflowException, match="00run"):
        operator.execute_complete({"ti": FakeTi()}, {"status": "failure", "message": "x"})
    assert operator.run_hook.cancelled == ["00run"]
    logged = capsys.readouterr().out  # the task logger (structlog) writes to stdout here
    assert MARKER in logged and "SPARK_DRIVER/stderr.gz" in logged


def test_a_deferral_that_timed_out_cancels_the_job_run(operator):
    with pytest.raises(TaskDeferralTimeout):
        operator.resume_execution("__fail__", {"error": "Trigger timeout"}, {"ti": FakeTi()})
    assert operator.run_hook.cancelled == ["00run"]


def test_a_successful_job_run_is_left_alone(operator):
    assert operator.execute_complete({"ti": FakeTi()}, {"status": "success"}) == "00run"
    assert operator.run_hook.cancelled == []
