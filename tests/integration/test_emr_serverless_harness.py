"""The EMR Serverless harness (tests/emr_serverless_support.py) against a moto server in
this process, driven with plain boto3 as the product's hook will: a real PySpark entry
point runs on local Spark and its driver logs land where AWS puts them; a failed run, a
cancelled real process and a cancelled hanging run end as on AWS (one test starts Spark)."""
import contextlib
import gzip
import io
import json
import zipfile

import pytest

from emr_serverless_support import (FAILED_JOB_MARKER, JobRunDriver, RealJobRunner,
                                    SubmitParameters, failing_job, hanging_job, moto_as_aws,
                                    process_group_alive)
from emr_support import ACCOUNT_ID, client, moto_server, wait_until

BUCKET = "msd-serverless-harness"
LOG_URI = f"s3://{BUCKET}/logs/"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/msd-serverless-job"
SECRET_NAME = "msd/run-7/mongo"
DRIVER = {"workerCount": 1, "workerConfiguration": {"cpu": "2 vCPU", "memory": "4 GB", "disk": "20 GB"}}
EXECUTORS = {"workerCount": 2, "workerConfiguration": {"cpu": "4vCPU", "memory": "8 GB"}}
# Per hour of the application above: 1×2 + 2×4 vCPU, 1×4 + 2×8 GB memory, 1×20 + 2×20 GB disk.
APPLICATION_HOURLY = {"vCPUHour": 10.0, "memoryGBHour": 20.0, "storageGBHour": 60.0}

PROBE_JOB = """
import json, os, sys
import boto3
import probe_helpers
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("probe").getOrCreate()
model_dir = sys.argv[sys.argv.index("--model-uri") + 1]
print(json.dumps({
    "args": sys.argv[1:],
    "from_executors": spark.sparkContext.parallelize(range(4), 2)
        .map(lambda _: probe_helpers.greeting()).distinct().collect(),
    "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
    "archives": spark.conf.get("spark.archives", None),
    "secret_id": os.environ.get("MSD_MONGO_SECRET_ID"),
    "secret_region": os.environ.get("MSD_MONGO_SECRET_REGION"),
    "mongo_uri_seen": "MSD_MONGO_URI" in os.environ,
    "pythonpath": os.environ.get("PYTHONPATH", ""),
    "model_files": sorted(os.listdir(model_dir)),
    "s3_object": boto3.client("s3").get_object(Bucket=sys.argv[2], Key="inputs/hello.txt")["Body"]
        .read().decode(),
}))
spark.stop()
"""
WAITING_JOB = """
import time
print("waiting for the cancel", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(BUCKET) as url, moto_as_aws():
        yield url


@pytest.fixture
def emr(moto_url):
    return client("emr-serverless", moto_url)


@contextlib.contextmanager
def playing(moto_url, job_runner):
    driver = JobRunDriver(moto_url, job_runner)
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()
    assert not driver.errors, driver.errors


def create_application(emr, name: str) -> str:
    return emr.create_application(name=name, releaseLabel="emr-7.5.0", type="SPARK", initialCapacity={
        "DRIVER": DRIVER, "EXECUTOR": EXECUTORS})["applicationId"]


def start_job_run(emr, application_id: str, entry_point: str, arguments=(), parameters: str = "",
                  log_uri: str = LOG_URI) -> str:
    spark_submit = {"entryPoint": entry_point, "entryPointArguments": list(arguments)}
    if parameters:
        spark_submit["sparkSubmitParameters"] = parameters
    return emr.start_job_run(
        applicationId=application_id, executionRoleArn=ROLE, name="probe",
        jobDriver={"sparkSubmit": spark_submit},
        configurationOverrides={"monitoringConfiguration": {
            "s3MonitoringConfiguration": {"logUri": log_uri}}})["jobRunId"]


def wait_for_state(emr, application_id: str, job_run_id: str, *states: str, timeout: float = 300) -> dict:
    def job_run():
        return emr.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]
    wait_until(lambda: job_run()["state"] in states, timeout,
               f"job run {job_run_id} never reached {states}")
    return job_run()


def driver_log(moto_url: str, application_id: str, job_run_id: str, stream: str) -> str:
    """The log as AWS lays it out, read with plain S3 calls."""
    key = f"logs/applications/{application_id}/jobs/{job_run_id}/SPARK_DRIVER/{stream}.gz"
    body = client("s3", moto_url).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return gzip.decompress(body).decode("utf-8")


def upload(moto_url: str, key: str, body: bytes) -> str:
    client("s3", moto_url).put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def helpers_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe_helpers.py", "def greeting():\n    return 'from --py-files'\n")
    return buffer.getvalue()


def assert_bill(job_run: dict, billed_seconds: float) -> None:
    hours = billed_seconds / 3600
    assert job_run["billedResourceUtilization"] == pytest.approx(
        {name: hours * per_hour for name, per_hour in APPLICATION_HOURLY.items()}, rel=0.02)


def test_a_real_entry_point_runs_on_local_spark_and_logs_where_aws_does(moto_url, emr, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("MSD_MONGO_URI", "mongodb://must-not-reach-the-job")
    entry_point = upload(moto_url, "code/probe_job.py", PROBE_JOB.encode())
    helpers = upload(moto_url, "code/probe_helpers.zip", helpers_zip())
    upload(moto_url, "inputs/hello.txt", b"read through moto")
    upload(moto_url, "models/m1/metadata/part-00000", b"{}")
    parameters = " ".join([
        f"--py-files {helpers}",
        "--conf spark.sql.shuffle.partitions=3",
        f"--conf spark.archives=s3://{BUCKET}/deps/absent.tar.gz#environment",
        "--conf spark.emr-serverless.driverEnv.PYTHONPATH=./environment/lib/python3.9/site-packages",
        "--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON=./environment/bin/python",
        "--conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        f"--conf spark.emr-serverless.driverEnv.MSD_MONGO_SECRET_ID={SECRET_NAME}",
        f"--conf spark.executorEnv.MSD_MONGO_SECRET_ID={SECRET_NAME}",
        "--conf spark.emr-serverless.driverEnv.MSD_MONGO_SECRET_REGION=us-east-1",
        "--conf spark.driver.memory=16g"])
    with playing(moto_url, RealJobRunner(moto_url, tmp_path)) as driver:
        application_id = create_application(emr, "msd-pipeline-probe")
        job_run_id = start_job_run(emr, application_id, entry_point, parameters=parameters,
                                   arguments=["--bucket", BUCKET, "--model-uri", f"s3://{BUCKET}/models/m1"])
        first = emr.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]
        assert first["state"] in ("SUBMITTED", "RUNNING")  # not moto's instant SUCCESS
        job_run = wait_for_state(emr, application_id, job_run_id, "SUCCESS", "FAILED")
        # Created CREATED (moto_as_aws); moto does not auto-start it on a job run as AWS does.
        assert driver.application_states() == {"msd-pipeline-probe": "CREATED"}
        assert [run.id for run in driver.job_runs()] == [job_run_id]
    stdout = driver_log(moto_url, application_id, job_run_id, "stdout")
    assert job_run["state"] == "SUCCESS", driver_log(moto_url, application_id, job_run_id, "stderr")[-4000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["args"][:3] == ["--bucket", BUCKET, "--model-uri"]
    assert report["args"][3].startswith(str(tmp_path)) and report["model_files"] == ["metadata"]
    assert report["from_executors"] == ["from --py-files"]
    assert report["shuffle_partitions"] == "3" and report["archives"] is None
    assert (report["secret_id"], report["secret_region"]) == (SECRET_NAME, "us-east-1")
    assert not report["mongo_uri_seen"] and "environment" not in report["pythonpath"]
    assert report["s3_object"] == "read through moto"
    assert "SparkContext" in driver_log(moto_url, application_id, job_run_id, "stderr")
    seconds = job_run["totalExecutionDurationSeconds"]
    assert seconds > 0 and job_run["startedAt"] <= job_run["endedAt"]
    assert_bill(job_run, max(seconds, 60))


def test_a_failed_run_is_failed_with_its_stderr_at_the_log_uri(moto_url, emr):
    with playing(moto_url, failing_job):
        application_id = create_application(emr, "msd-pipeline-fails")
        assert emr.list_job_runs(applicationId=application_id)["jobRuns"] == []
        job_run_id = start_job_run(emr, application_id, f"s3://{BUCKET}/code/ingest_songs.py")
        job_run = wait_for_state(emr, application_id, job_run_id, "SUCCESS", "FAILED", timeout=30)
    assert job_run["state"] == "FAILED"
    assert [run["state"] for run in emr.list_job_runs(applicationId=application_id)["jobRuns"]] == ["FAILED"]
    assert FAILED_JOB_MARKER in job_run["stateDetails"]
    assert FAILED_JOB_MARKER in driver_log(moto_url, application_id, job_run_id, "stderr")
    assert driver_log(moto_url, application_id, job_run_id, "stdout") == ""
    assert_bill(job_run, 60)  # the minimum


def test_cancelling_a_running_job_ends_its_local_processes(moto_url, emr, tmp_path):
    entry_point = upload(moto_url, "code/waiting_job.py", WAITING_JOB.encode())
    runner = RealJobRunner(moto_url, tmp_path)
    with playing(moto_url, runner):
        application_id = create_application(emr, "msd-pipeline-cancel")
        job_run_id = start_job_run(emr, application_id, entry_point)
        wait_for_state(emr, application_id, job_run_id, "RUNNING", timeout=30)
        stdout_path, _ = runner.log_paths(job_run_id)
        wait_until(lambda: stdout_path.exists()
                   and "waiting for the cancel" in stdout_path.read_text(), 120,
                   "the job's Python never started")
        assert process_group_alive(runner.processes[job_run_id])
        emr.cancel_job_run(applicationId=application_id, jobRunId=job_run_id)
        wait_until(lambda: not process_group_alive(runner.processes[job_run_id]), 60,
                   "the cancelled job's processes are still running")
        job_run = wait_for_state(emr, application_id, job_run_id, "CANCELLED")
        wait_until(lambda: "endedAt" in emr.get_job_run(
            applicationId=application_id, jobRunId=job_run_id)["jobRun"], 30, "never ended")
    job_run = emr.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]
    assert job_run["state"] == "CANCELLED"
    assert "waiting for the cancel" in driver_log(moto_url, application_id, job_run_id, "stdout")


def test_a_hanging_run_stays_running_until_cancelled(moto_url, emr):
    with playing(moto_url, hanging_job) as driver:
        application_id = create_application(emr, "msd-pipeline-hangs")
        job_run_id = start_job_run(emr, application_id, f"s3://{BUCKET}/code/ingest_songs.py")
        wait_for_state(emr, application_id, job_run_id, "RUNNING", timeout=30)
        emr.cancel_job_run(applicationId=application_id, jobRunId=job_run_id)
        wait_until(lambda: "endedAt" in emr.get_job_run(
            applicationId=application_id, jobRunId=job_run_id)["jobRun"], 30, "never ended")
        emr.stop_application(applicationId=application_id)
        emr.delete_application(applicationId=application_id)
        assert driver.application_states() == {"msd-pipeline-hangs": "TERMINATED"}
    job_run = emr.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]
    assert job_run["state"] == "CANCELLED"
    assert_bill(job_run, 60)


def test_submit_parameters_split_into_local_conf_and_environment():
    parameters = SubmitParameters.parse(
        "--py-files s3://b/a.zip,s3://b/b.zip --conf spark.sql.shuffle.partitions=4 "
        "--conf spark.archives=s3://b/env.tar.gz#environment "
        "--conf spark.emr-serverless.driverEnv.MSD_MONGO_SECRET_ID=msd/x "
        "--conf spark.executorEnv.PYTHONPATH=./environment/lib "
        "--conf spark.emr-serverless.executor.disk=30g --conf spark.hadoop.a=b=c")
    assert parameters.py_files == ["s3://b/a.zip", "s3://b/b.zip"]
    assert parameters.conf == {"spark.sql.shuffle.partitions": "4", "spark.hadoop.a": "b=c"}
    assert parameters.environment == {"MSD_MONGO_SECRET_ID": "msd/x"}
    with pytest.raises(ValueError, match="--jars"):
        SubmitParameters.parse("--jars s3://b/x.jar")
