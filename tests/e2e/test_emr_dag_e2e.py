"""``airflow dags test msd_emr_pipeline`` end to end against moto in server mode (S3, EMR,
Secrets Manager), with a real SecantusDB for the run record.

moto never advances EMR steps, so ``EmrStepDriver`` (tests/emr_support.py) plays the
cluster. On the success path it runs each step's real command — the spark-submit line
the DAG sent, with the code zip and job script downloaded from moto's S3 — on local
Spark, in the environment the cluster's spark-env classification exports (the Mongo
secret's name, not the URI), and ships the step's logs to LogUri as EMR does.

Paths: success; a failed step; cluster creation failing after the cluster id exists; a
step sensor timeout; clusters the run does not own; a missing price; a run timeout
ended by the failure callback; clearing a failed step (re-run on a new cluster); the
whole run and each policy statement under moto's IAM enforcement. Every path ends with
every cluster of the run terminated and the run secret deleted; the first four also
check that no secret (AWS keys, Mongo password) reached the task logs, the metadata DB
(XCom, rendered fields) or the step arguments.
"""
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pymongo
import pytest
from moto.core.exceptions import ServiceException
from moto.emr.models import Cluster, emr_backends

from msdlib.config import load_config
from msd_devtools import services
from msd_pipeline.staging.generator import generate_songs
from msd_pipeline.run_records import run_key_for

import airflow_support
from emr_support import (ACCOUNT_ID, FAKE_ACCESS_KEY, FAKE_SECRET_KEY, REGION, ArchiveServer,
                         Credentials, EmrStepDriver, ServedFile, StepOutcome, aws_env, client,
                         iam_user, latest_run, make_song_archive, metadata_db_path,
                         metadata_db_text, mongo_user_uri, moto_server, replace_user_policy,
                         set_iam_enforcement, task_log_text, task_states, wait_until)
from project_paths import PROJECT_ROOT

DAG_ID = "msd_emr_pipeline"
BUCKET = "msd-e2e"
MONGO_USER = "msd_e2e"
MONGO_PASSWORD = "e2e-Mongo-pw-5d1c9a"
FAILED_STEP_MARKER = "RuntimeError: simulated executor loss 7f3a"
SONGS = 120


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(BUCKET) as url:
        yield url


@pytest.fixture(scope="module")
def song_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e-songs")
    generate_songs(str(folder), SONGS, seed=5)
    return folder


@pytest.fixture(scope="module")
def song_archive(song_folder):
    served = ServedFile(make_song_archive(song_folder))
    with ArchiveServer({"/msd-e2e.tar.gz": served}) as server:
        yield server.url("/msd-e2e.tar.gz")


@pytest.fixture(scope="module")
def mongo_with_password(mongo_uri):
    """The session's SecantusDB reached with a user and password, like a real deployment."""
    return airflow_support.mongo_connection(mongo_user_uri(mongo_uri, MONGO_USER, MONGO_PASSWORD),
                                            authSource="admin")


@pytest.fixture
def mlflow_tracking_uri(tmp_path):
    """A registry of this test's own: every run here starts with no champion."""
    with services.running_mlflow(tmp_path / "mlflow") as uri:
        yield uri


@pytest.fixture
def airflow_env(moto_url, mongo_with_password, mlflow_tracking_uri):
    return airflow_env_for(moto_url, mongo_with_password, Credentials(), mlflow_tracking_uri)


def airflow_env_for(moto_url: str, mongo_connection: str, credentials: Credentials,
                    mlflow_tracking_uri: str) -> Dict[str, str]:
    """Airflow's environment: aws_default with ``credentials``, pointed at moto; the
    model registry on the test session's MLflow server."""
    aws_connection = json.dumps({
        "conn_type": "aws", "login": credentials.access_key, "password": credentials.secret_key,
        "extra": {"region_name": REGION, "endpoint_url": moto_url}})
    return airflow_support.airflow_env(airflow_support.airflow_home(), connections={
        "aws_default": aws_connection, "mongo_default": mongo_connection},
        extra={"MLFLOW_TRACKING_URI": mlflow_tracking_uri})


class RealStepRunner:
    """Runs an EMR step's spark-submit line on local Spark, like the master node would."""

    def __init__(self, moto_url: str, work_dir: Path, credentials: Credentials = Credentials()):
        self.moto_url = moto_url
        self.work_dir = work_dir
        self.credentials = credentials  # the cluster's instance profile

    def __call__(self, cluster: Any, step: Any) -> StepOutcome:
        args = list(step.args)
        py_files = args.index("--py-files")
        local_zip = self._download(args[py_files + 1], step.id)
        local_script = self._download(args[py_files + 2], step.id)
        spark_submit = os.path.join(os.path.dirname(__import__("pyspark").__file__), "bin", "spark-submit")
        command = [spark_submit, "--master", "local[2]", "--deploy-mode", "client",
                   "--py-files", local_zip, local_script, *args[py_files + 3:]]
        result = subprocess.run(command, env=self._node_env(cluster), capture_output=True,
                                text=True, timeout=600)
        return StepOutcome(result.returncode == 0, result.stdout, result.stderr)

    def _download(self, uri: str, step_id: str) -> str:
        bucket, _, key = uri[len("s3://"):].partition("/")
        target = self.work_dir / step_id / key.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        client("s3", self.moto_url, self.credentials).download_file(bucket, key, str(target))
        return str(target)

    def _node_env(self, cluster: Any) -> Dict[str, str]:
        """The node's environment: AWS via the instance profile (here: moto), plus what
        the cluster's spark-env classification exports. No MSD_MONGO_URI."""
        env = {key: value for key, value in os.environ.items() if key != "MSD_MONGO_URI"}
        env.update(aws_env(self.moto_url, self.credentials))
        env["PYSPARK_PYTHON"] = sys.executable
        for classification in cluster.configurations:
            if classification.get("Classification") == "spark-env":
                for nested in classification.get("Configurations", []):
                    env.update(nested.get("Properties", {}))
        return env


def failing_step(cluster: Any, step: Any) -> StepOutcome:
    return StepOutcome(False, stdout="", stderr=(
        "Traceback (most recent call last):\n  File \"ingest_songs.py\", line 1\n"
        + FAILED_STEP_MARKER + "\n"))


def hanging_step(cluster: Any, step: Any) -> Optional[StepOutcome]:
    return None


def write_config(path: Path, archive_url: str, database: str, **emr: Any) -> Path:
    config = load_config().to_dict()
    config["mongo"]["database"] = database
    config["pipeline"].update(retries=0, retry_delay_minutes=0)
    config["staging"].update(mode="url", archive_url=archive_url)
    config["ingest"].update(partitions=2)
    # Few shuffle partitions: Spark's default 200 dominates on a few hundred songs.
    config["spark"]["conf"].update({"spark.sql.shuffle.partitions": "4",
                                    "spark.default.parallelism": "2"})
    config["training"].update(folds=2, classifiers=["logistic_regression"],
                              regressors=["linear_regression"], parallelism=1,
                              grids={"logistic_regression": {"regParam": [0.01]},
                                     "linear_regression": {"regParam": [0.1]}})
    config["emr"].update({"s3_root": f"s3://{BUCKET}/pipeline", "poll_seconds": 1,
                          "log_wait_seconds": 3, "create_timeout_seconds": 30,
                          "step_timeout_seconds": 600, **emr})
    path.write_text(json.dumps(config))
    return path


@dataclass
class PipelineRun:
    output: str                 # the `airflow dags test` output
    state: str                  # the DAG run's final state
    tasks: Dict[str, str]       # task id → final state
    clusters: List[Cluster]     # the clusters this run created
    logs: str                   # output and task log files together

    def describe(self) -> str:
        return f"tasks: {self.tasks}\n--- end of the logs ---\n{self.logs[-8000:]}"


def run_pipeline(airflow_env: Dict[str, str], config_path: Path, step_runner, moto_url: str,
                 logical_date: Optional[str] = None,
                 alongside: Optional[Callable[[], None]] = None,
                 node_credentials: Credentials = Credentials(),
                 dag_id: str = DAG_ID) -> PipelineRun:
    """Trigger the DAG once with ``airflow dags test`` while the driver plays EMR (and
    ``alongside`` runs in a thread: another AWS user, the scheduler's part, ...)."""
    before = set(emr_backend().clusters)
    driver = EmrStepDriver(moto_url, step_runner, credentials=node_credentials)
    driver.start()
    helper = threading.Thread(target=alongside, daemon=True) if alongside else None
    if helper:
        helper.start()
    try:
        result = airflow_support.run_dags_test(
            dag_id, {**airflow_env, "MSD_CONFIG": str(config_path)}, timeout=600,
            logical_date=logical_date)
    finally:
        driver.stop()
        if helper:
            helper.join(timeout=60)
    assert not driver.errors, driver.errors
    run_id, state = latest_run(dag_id, airflow_env)
    output = result.output
    clusters = [emr_backend().clusters[cid] for cid in sorted(set(emr_backend().clusters) - before)]
    return PipelineRun(output, state, task_states(dag_id, run_id, airflow_env), clusters,
                       output + "\n".join(task_log_text(airflow_env, dag_id, run_id).values()))


def emr_backend():
    return emr_backends[ACCOUNT_ID][REGION]


def assert_no_secret_leaked(airflow_env: Dict[str, str], run: PipelineRun) -> None:
    secrets = [FAKE_ACCESS_KEY, FAKE_SECRET_KEY, MONGO_PASSWORD]
    haystacks = {"task logs and output": run.logs,
                 "step arguments": json.dumps([step.args for c in run.clusters for step in c.steps]),
                 "cluster configuration": repr([c.configurations for c in run.clusters])}
    for table, text in metadata_db_text(airflow_env).items():
        haystacks["metadata table " + table] = text
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"


def assert_run_cleaned_up(run: PipelineRun, moto_url: str) -> None:
    assert run.clusters, "the run created no cluster"
    assert all(cluster.state == "TERMINATED" for cluster in run.clusters), \
        [(c.id, c.state) for c in run.clusters]
    assert not [c for c in emr_backend().clusters.values()
                if c.state not in ("TERMINATED", "TERMINATED_WITH_ERRORS")]
    secrets = client("secretsmanager", moto_url).list_secrets()["SecretList"]
    assert not secrets, [s["Name"] for s in secrets]


def test_success_path_records_metrics_and_terminates(airflow_env, moto_url, song_archive,
                                                     mongo_uri, tmp_path):
    database = "emr_e2e_" + uuid.uuid4().hex[:8]
    config = write_config(tmp_path / "config.json", song_archive, database)
    run = run_pipeline(airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url)

    assert run.state == "success", run.describe()
    db = pymongo.MongoClient(mongo_uri)[database]
    # Approval is off by default. A challenger the gate rejects is not promoted, and with
    # no champion at all there is nothing to impute with.
    promoted = db["model_decisions"].find_one()["status"] == "promoted"
    skipped = set() if promoted else {
        "model.promote", "spark.impute.add_step", "spark.impute.wait_for_step"}
    not_done = {task for task, state in run.tasks.items() if state != "success"}
    assert not_done - {"model.approve"} == skipped, run.tasks
    assert {run.tasks[task] for task in not_done} <= {"skipped"}, run.tasks
    assert_run_cleaned_up(run, moto_url)
    [cluster] = run.clusters
    # ingest, train_evaluate (challenger + champion on one split), impute (the champion)
    assert [step.state for step in cluster.steps] == ["COMPLETED"] * (3 if promoted else 2)

    assert db["songs"].count_documents({}) == SONGS
    record = db["pipeline_runs"].find_one()
    assert record["target"] == "emr" and record["status"] == "success"
    assert record["metrics"] and record["ingest"] and record["training"]
    details = record["target_details"]
    assert details["cluster_id"] == cluster.id
    assert details["cost"]["instance_hours"] > 0 and details["cost"]["estimated_usd"] > 0
    assert record["artifacts"]["metrics_uri"].startswith(f"s3://{BUCKET}/pipeline/artifacts/")
    assert "Report: s3://" in run.logs
    bucket, _, key = record["artifacts"]["report_uri"][len("s3://"):].partition("/")
    report = client("s3", moto_url).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert "**{}**: challenger `{}`".format(record["decision"]["status"],
                                           record["decision"]["challenger"]["label"]) in report
    assert_deferred(run)
    assert_no_secret_leaked(airflow_env, run)


def ingest_locally(song_folder: Path, mongo_uri: str, database: str) -> None:
    """Songs already in the database, as an earlier pipeline run leaves them."""
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "ingest_songs.py"), "--run-id", "seed",
         "--set", "ingest.source=" + str(song_folder), "--set", "mongo.database=" + database,
         "--set", "spark.master=local[2]"],
        env=dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable),
        capture_output=True, text=True, timeout=600, cwd=str(PROJECT_ROOT))
    assert done.returncode == 0, done.stderr[-3000:]


def test_retraining_on_emr_trains_decides_and_imputes_with_the_champion(
        airflow_env, moto_url, song_folder, mongo_uri, tmp_path):
    """msd_retrain_emr on songs already in the database: a cluster of its own, the training
    step, the gate (no champion yet), imputation with the champion, the teardown."""
    database = "emr_e2e_retrain_" + uuid.uuid4().hex[:8]
    ingest_locally(song_folder, mongo_uri, database)
    config = write_config(tmp_path / "config.json", "http://unused.invalid/songs.tar.gz",
                          database)
    run = run_pipeline(airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url,
                       dag_id="msd_retrain_emr")

    assert run.state == "success", run.describe()
    db = pymongo.MongoClient(mongo_uri)[database]
    record = db["pipeline_runs"].find_one({"dag_id": "msd_retrain_emr"})
    assert record["data"] is None and record["ingest"] is None and record["metrics"]
    decision = record["decision"]
    promoted = decision["status"] == "promoted"
    assert promoted == decision["gate"]["passed"] and decision["champion"] is None
    [cluster] = run.clusters
    # train_evaluate, then impute with the champion when there is one
    assert [step.state for step in cluster.steps] == ["COMPLETED"] * (2 if promoted else 1)
    unknown = db["songs"].count_documents({"features.year": None})
    labels = db["songs"].distinct("predicted.model_version")
    assert labels == ([decision["challenger"]["label"]] if promoted else [])
    assert db["songs"].count_documents({"predicted": {"$exists": True}}) == \
        (unknown if promoted else 0)
    # the create wait and each step's sensor deferred
    assert run.output.count("[DAG TEST] Trigger completed") >= 1 + len(cluster.steps)
    assert_run_cleaned_up(run, moto_url)


def assert_deferred(run: PipelineRun) -> None:
    """The create wait and both step sensors deferred, and their triggers (aiobotocore
    against moto) ran to completion: `airflow dags test` runs triggers in line."""
    assert run.output.count("[DAG TEST] Trigger completed") >= 3, run.describe()


def test_failed_step_fails_the_run_shows_its_log_and_terminates(airflow_env, moto_url,
                                                                 song_archive, tmp_path):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_failed")
    run = run_pipeline(airflow_env, config, failing_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["spark.ingest.wait_for_step"] == "failed", run.describe()
    assert run.tasks["terminate_cluster"] == "success", run.describe()
    assert_run_cleaned_up(run, moto_url)
    assert FAILED_STEP_MARKER in run.logs  # the step's stderr, fetched from LogUri
    assert_no_secret_leaked(airflow_env, run)


def test_creation_failing_after_the_cluster_exists_terminates_it(airflow_env, moto_url, song_archive,
                                                                  tmp_path, monkeypatch):
    def stuck_bootstrapping(cluster):
        cluster.state = "BOOTSTRAPPING"

    monkeypatch.setattr(Cluster, "run_bootstrap_actions", stuck_bootstrapping)
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_create",
                          create_timeout_seconds=3)
    run = run_pipeline(airflow_env, config, hanging_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["cluster.create_cluster"] == "failed", run.describe()
    assert run.tasks["terminate_cluster"] == "success", run.describe()
    # Deferred, the creator fails without pushing the cluster id: the teardown finds the
    # cluster by the run's name and tag.
    [cluster] = run.clusters
    assert f"Terminating cluster {cluster.id}" in run.logs
    assert_run_cleaned_up(run, moto_url)
    assert_no_secret_leaked(airflow_env, run)


def test_sensor_timeout_fails_the_run_and_terminates(airflow_env, moto_url, song_archive, tmp_path):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_timeout",
                          step_timeout_seconds=4)
    run = run_pipeline(airflow_env, config, hanging_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["spark.ingest.wait_for_step"] == "failed", run.describe()
    assert run.tasks["terminate_cluster"] == "success", run.describe()
    assert_run_cleaned_up(run, moto_url)
    assert_no_secret_leaked(airflow_env, run)


def test_teardown_accepts_a_cluster_that_ended_with_errors(moto_url, monkeypatch):
    """A cluster that died by itself (e.g. a failed bootstrap) counts as ended."""
    from msd_pipeline.targets.emr.hook import PipelineEmrHook

    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    emr = client("emr", moto_url)
    cluster_id = emr.run_job_flow(Name="ended-with-errors", ReleaseLabel="emr-7.5.0",
                                  Instances={"KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
    cluster = emr_backend().clusters[cluster_id]
    try:
        cluster.state = "TERMINATED_WITH_ERRORS"
        hook = PipelineEmrHook(aws_conn_id=None, region_name=REGION)
        hook.wait_until_ended([cluster_id], poll_seconds=1, timeout_seconds=2)  # a warning
        cluster.state = "WAITING"
        with pytest.raises(Exception, match="[Ww]aiter"):
            hook.wait_until_ended([cluster_id], poll_seconds=1, timeout_seconds=2)
    finally:  # the next tests check that no cluster is left active
        cluster.terminate()


# -- teardown, failure callback and cost: the holes of a first real run --------------------------

def create_cluster(moto_url: str, name: str, tags: Dict[str, str]) -> str:
    """An active cluster made outside the DAG (another user, another run)."""
    return client("emr", moto_url).run_job_flow(
        Name=name, ReleaseLabel="emr-7.5.0", Instances={"KeepJobFlowAliveWhenNoSteps": True},
        Tags=[{"Key": key, "Value": value} for key, value in tags.items()])["JobFlowId"]


class EmrAccessDenied(ServiceException):
    code = "AccessDeniedException"


def test_clusters_the_run_does_not_own_are_left_alone(airflow_env, moto_url, song_archive,
                                                       mongo_uri, tmp_path, monkeypatch):
    """Another team's active cluster is never described; one carrying this run's name but
    not the pipeline's tag (so DescribeCluster is denied by the policy) is skipped with a
    warning. Both stay up; the run succeeds and its own cluster is terminated."""
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_foreign")
    backend = emr_backend()
    before = set(backend.clusters)
    others = create_cluster(moto_url, "analytics-nightly", {"team": "analytics"})
    same_name: List[str] = []

    def another_airflow_starts_a_cluster_named_like_the_run():
        wait_until(lambda: set(backend.clusters) - before - {others}, timeout=300,
                   message="the run never created its cluster")
        [ours] = [backend.clusters[cid] for cid in set(backend.clusters) - before - {others}]
        same_name.append(create_cluster(moto_url, ours.name, {"team": "other-airflow"}))

    described: List[str] = []
    real_describe = backend.describe_cluster

    def describe_as_the_policy_allows(cluster_id):
        described.append(cluster_id)
        if cluster_id in same_name:
            raise EmrAccessDenied("User is not authorized to perform: "
                                 "elasticmapreduce:DescribeCluster on " + cluster_id)
        return real_describe(cluster_id)

    monkeypatch.setattr(backend, "describe_cluster", describe_as_the_policy_allows)
    try:
        run = run_pipeline(airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url,
                           alongside=another_airflow_starts_a_cluster_named_like_the_run)
        assert run.state == "success", run.describe()
        assert others not in described and same_name[0] in described
        assert "may not be described" in run.logs
        foreign = {others, *same_name}
        assert [c.state for c in run.clusters if c.id not in foreign] == ["TERMINATED"]
        assert [backend.clusters[cid].state for cid in sorted(foreign)] == ["WAITING", "WAITING"]
    finally:
        for cluster_id in (others, *same_name):
            backend.clusters[cluster_id].terminate()


def test_a_missing_price_leaves_the_cost_unknown_and_the_run_green(airflow_env, moto_url,
                                                                  song_archive, mongo_uri, tmp_path):
    database = "emr_e2e_price_" + uuid.uuid4().hex[:8]
    config = write_config(tmp_path / "config.json", song_archive, database,
                          hourly_prices={"m5.2xlarge": 0.48})
    run = run_pipeline(airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url)

    assert run.state == "success", run.describe()
    assert run.tasks["report.collect_metrics"] == "success"
    assert "No price for m5.xlarge in emr.hourly_prices" in run.logs
    cost = pymongo.MongoClient(mongo_uri)[database]["pipeline_runs"].find_one()["target_details"]["cost"]
    assert cost["estimated_usd"] is None and cost["missing_prices"] == ["m5.xlarge"]
    assert cost["instance_hours"] > 0
    assert_run_cleaned_up(run, moto_url)


def test_a_failed_termination_fails_a_run_whose_work_succeeded(airflow_env, moto_url,
                                                                song_archive, tmp_path, monkeypatch):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_terminate_denied")
    backend = emr_backend()

    def terminate_denied(job_flow_ids):
        raise EmrAccessDenied("User is not authorized to perform: "
                              "elasticmapreduce:TerminateJobFlows")

    monkeypatch.setattr(backend, "terminate_job_flows", terminate_denied)
    try:
        run = run_pipeline(airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url)
    finally:
        monkeypatch.undo()
    [cluster] = run.clusters
    cluster.terminate()

    assert run.state == "failed", run.describe()
    assert run.tasks["report.collect_metrics"] == "success", run.describe()
    assert run.tasks["terminate_cluster"] == "failed", run.describe()
    assert run.tasks["teardown_succeeded"] == "upstream_failed", run.describe()
    assert "could not terminate every cluster" in run.logs
    assert not client("secretsmanager", moto_url).list_secrets()["SecretList"]


UNFINISHED = ("scheduled", "queued", "running", "restarting", "up_for_retry",
              "up_for_reschedule", "deferred", "awaiting_input")


def time_out_run(airflow_env: Dict[str, str], run_id: str) -> None:
    """What the scheduler does when a run exceeds dagrun_timeout: the running task killed,
    the run FAILED, every unfinished task SKIPPED (the teardown included), a failure
    callback requested. `airflow dags test` plays the scheduler here, so it is the
    process killed (it would otherwise re-evaluate the run)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline()[-3:-1] == ["dags", "test"]:
                child.kill()
                child.wait(timeout=60)
        except psutil.NoSuchProcess:
            continue
    marks = ",".join("?" * len(UNFINISHED))
    with sqlite3.connect(str(metadata_db_path(airflow_env)), timeout=60) as db:
        db.execute("UPDATE task_instance SET state = 'skipped' WHERE dag_id = ? AND run_id = ? "
                   f"AND (state IS NULL OR state IN ({marks}))", (DAG_ID, run_id, *UNFINISHED))
        db.execute("UPDATE dag_run SET state = 'failed' WHERE dag_id = ? AND run_id = ?",
                   (DAG_ID, run_id))


CALLBACK_SCRIPT = """
import sys, structlog
from airflow.callbacks.callback_requests import DagCallbackRequest
from airflow.dag_processing.dagbag import DagBag
from airflow.dag_processing.processor import _execute_dag_callbacks

dag_id, run_id = sys.argv[1:3]
request = DagCallbackRequest(filepath=dag_id + ".py", bundle_name="dags-folder",
                             bundle_version=None, dag_id=dag_id, run_id=run_id,
                             is_failure_callback=True, msg="timed_out")
_execute_dag_callbacks(DagBag(), request, structlog.get_logger())
"""


def run_failure_callback_as_the_dag_processor(airflow_env: Dict[str, str], config: Path,
                                              run_id: str) -> str:
    """The DAG processor's own code path for a DagCallbackRequest (msg "timed_out")."""
    completed = subprocess.run([sys.executable, "-c", CALLBACK_SCRIPT, DAG_ID, run_id],
                               env={**airflow_env, "MSD_CONFIG": str(config)},
                               cwd=airflow_env["AIRFLOW_HOME"], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout + completed.stderr


def test_a_run_timeout_skips_the_teardown_and_the_failure_callback_ends_the_cluster(
        airflow_env, moto_url, song_archive, tmp_path):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_run_timeout",
                          step_timeout_seconds=20)
    before = set(emr_backend().clusters)
    timed_out: List[str] = []

    def scheduler_times_the_run_out():
        wait_until(lambda: any(step.state == "RUNNING" for cid, c in emr_backend().clusters.items()
                               if cid not in before for step in c.steps),
                   timeout=300, message="the ingest step never started")
        run_id, _ = latest_run(DAG_ID, airflow_env)
        time_out_run(airflow_env, run_id)
        timed_out.append(run_id)

    run = run_pipeline(airflow_env, config, hanging_step, moto_url,
                       alongside=scheduler_times_the_run_out)
    [run_id] = timed_out
    [cluster] = run.clusters
    try:
        assert run.state == "failed", run.describe()
        assert run.tasks["terminate_cluster"] == "skipped", run.describe()
        assert cluster.state in ("RUNNING", "WAITING")  # the teardown never ran
        assert client("secretsmanager", moto_url).list_secrets()["SecretList"]

        output = run_failure_callback_as_the_dag_processor(airflow_env, config, run_id)
        assert cluster.state == "TERMINATED", output
        assert_run_cleaned_up(run, moto_url)
    finally:  # a failure here must not leave the next tests a live cluster or secret
        cluster.terminate()
        secrets = client("secretsmanager", moto_url)
        for secret in secrets.list_secrets()["SecretList"]:
            secrets.delete_secret(SecretId=secret["Name"], ForceDeleteWithoutRecovery=True)


# -- IAM tested, not assumed ------------------------------------------------------------------------
#
# Moto's IAM enforcement (moto/core/authorization.py, moto/iam/access_control.py), as of
# moto 5.2: every request is signed and matched against the caller's policies by action.
# S3 requests are matched against the bucket or object ARN as well. Every other service
# is matched against Resource "*", so a statement scoped to EMR cluster or secret ARNs
# never matches there: ``moto_enforceable`` widens those statements' Resource to "*" (the
# ARNs and tag conditions are checked in AWS only: docs/emr.md's simulate-principal-policy
# commands). Conditions (tags, s3:prefix) are not evaluated; iam:PassRole is never checked;
# a HEAD of a missing key is a 404 whatever the ListBucket grant.

AIRFLOW_USER = "msd-airflow"
NODE_USER = "msd-emr-instance-profile"
SOURCE_BUCKET = "msd-songs-of-another-owner"
POLICIES = {AIRFLOW_USER: "iam-policy.json", NODE_USER: "iam-instance-profile-policy.json"}
NOT_ENFORCED_BY_MOTO = {"PassTheEmrRoles"}


def moto_enforceable(user: str, drop: Optional[str] = None) -> Dict[str, Any]:
    """The user's policy from include/emr/ with the placeholders filled in for this test's
    account, bucket and prefix (as docs/emr.md says to), without the statement ``drop``."""
    text = (PROJECT_ROOT / "include" / "emr" / POLICIES[user]).read_text()
    text = (text.replace("ACCOUNT_ID", ACCOUNT_ID)
            .replace("CHANGE-ME-msd-bucket/msd-pipeline/", f"{BUCKET}/pipeline/")
            .replace("CHANGE-ME-msd-bucket", BUCKET)
            .replace("CHANGE-ME-source-bucket", SOURCE_BUCKET))
    policy = json.loads(text)
    statements = []
    for statement in policy["Statement"]:
        if statement["Sid"] == drop:
            continue
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        if not all(action.startswith("s3:") for action in actions):
            statement = {**statement, "Resource": "*"}
        statements.append(statement)
    assert drop is None or len(statements) == len(policy["Statement"]) - 1, drop
    return {**policy, "Statement": statements}


@pytest.fixture(scope="module")
def iam_users(moto_url):
    """The Airflow principal and the instance profile as IAM users holding the repo's two
    policies; a source bucket of another owner. Made before enforcement is on."""
    users = {user: iam_user(moto_url, user, moto_enforceable(user)) for user in POLICIES}
    s3 = client("s3", moto_url)
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    s3.put_object(Bucket=SOURCE_BUCKET, Key="songs/A/B/C/TRABC00000000001.h5", Body=b"x")
    yield users
    set_iam_enforcement(moto_url, False)


@contextlib.contextmanager
def iam_enforced(moto_url: str):
    set_iam_enforcement(moto_url, True)
    try:
        yield
    finally:
        set_iam_enforcement(moto_url, False)


def test_every_call_of_a_run_is_allowed_by_the_two_policies(moto_url, iam_users, song_archive,
                                                           mongo_with_password, mongo_uri,
                                                           mlflow_tracking_uri, tmp_path):
    """The whole run under IAM enforcement: Airflow's calls as the Airflow principal, the
    jobs' calls (and EMR's log pushing) as the instance profile."""
    database = "emr_e2e_iam_" + uuid.uuid4().hex[:8]
    config = write_config(tmp_path / "config.json", song_archive, database)
    env = airflow_env_for(moto_url, mongo_with_password, iam_users[AIRFLOW_USER],
                          mlflow_tracking_uri)
    node = iam_users[NODE_USER]
    with iam_enforced(moto_url):
        run = run_pipeline(env, config, RealStepRunner(moto_url, tmp_path, node), moto_url,
                           node_credentials=node)

    assert run.state == "success", run.describe()
    assert "AccessDenied" not in run.logs and "not authorized" not in run.logs
    assert_deferred(run)  # the triggers' calls were checked too
    assert pymongo.MongoClient(mongo_uri)[database]["songs"].count_documents({}) == SONGS
    assert_run_cleaned_up(run, moto_url)


@dataclass
class Probe:
    """One call of the pipeline's code that a statement exists for."""
    user: str
    sid: str
    call: Callable[[Dict[str, str]], Any]


def probe_calls(moto_url: str) -> List[Probe]:
    from msdlib.io import emr_mongo, sources
    from msd_pipeline.targets.emr.cluster import build_job_flow_request
    from msd_pipeline.targets.emr.hook import PipelineEmrHook
    from msd_pipeline.targets.emr.layout import RunLayout

    emr_settings = load_config(overrides={"emr.s3_root": f"s3://{BUCKET}/pipeline"}).emr
    layout = RunLayout(emr_settings.s3_root, "iam-probe")

    def hook() -> PipelineEmrHook:
        return PipelineEmrHook(aws_conn_id=None, region_name=REGION)

    def create_cluster(world):
        request = build_job_flow_request(emr_settings, layout, dag_id=DAG_ID,
                                         airflow_run_id="iam-probe", mongo_secret_id="s")
        return hook().conn.run_job_flow(**request)

    return [
        Probe(AIRFLOW_USER, "CreateTaggedPipelineClusters", create_cluster),
        Probe(AIRFLOW_USER, "DriveAndEndPipelineClusters",
              lambda world: hook().describe_cluster(world["cluster_id"])),
        Probe(AIRFLOW_USER, "FindRunClustersByName",
              lambda world: hook().find_run_clusters("msd-pipeline-iam-probe", DAG_ID, "iam-probe")),
        Probe(AIRFLOW_USER, "ListThePipelineBucketSoMissingKeysAre404",
              lambda world: hook().s3.list_keys(BUCKET, prefix="pipeline/runs/iam-probe/")),
        Probe(AIRFLOW_USER, "ReadWriteThePipelinePrefix",
              lambda world: hook().read_text(layout.job_config_uri)),
        Probe(AIRFLOW_USER, "RunScopedMongoSecrets",
              lambda world: hook().put_run_secret(world["secret_id"], "mongodb://probe", [])),
        Probe(AIRFLOW_USER, "OptionalReadSourceBucketOfAnotherOwner",
              lambda world: hook().s3.list_keys(SOURCE_BUCKET, prefix="songs/")),
        Probe(NODE_USER, "ListThePipelineBucketSoMissingKeysAre404",
              lambda world: sources.list_sources(layout.code_prefix + "/")),
        Probe(NODE_USER, "CodeDataArtifactsAndLogs",
              lambda world: sources.read_bytes(layout.job_config_uri)),
        Probe(NODE_USER, "ReadTheRunsMongoSecret",
              lambda world: emr_mongo.secret_string.__wrapped__(world["secret_id"], REGION)),
        Probe(NODE_USER, "OptionalReadSourceBucketOfAnotherOwner",
              lambda world: sources.read_bytes(f"s3://{SOURCE_BUCKET}/songs/A/B/C/TRABC00000000001.h5")),
    ]


def test_every_statement_has_a_probe():
    probed = {(probe.user, probe.sid) for probe in probe_calls("http://unused")}
    for user, name in POLICIES.items():
        sids = {statement["Sid"] for statement in
                json.loads((PROJECT_ROOT / "include" / "emr" / name).read_text())["Statement"]}
        assert sids - NOT_ENFORCED_BY_MOTO == {sid for who, sid in probed if who == user}, name


@pytest.fixture(scope="module")
def probe_world(moto_url, iam_users):
    """What the probes read: a pipeline cluster, the run's config and code, its secret."""
    s3 = client("s3", moto_url)
    s3.put_object(Bucket=BUCKET, Key="pipeline/runs/iam-probe/job-config.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="pipeline/runs/iam-probe/code/A/B/C/TRABC00000000002.h5",
                  Body=b"x")
    secret_id = "msd-pipeline/iam-probe/mongo-uri"
    client("secretsmanager", moto_url).create_secret(Name=secret_id, SecretString="mongodb://probe")
    cluster_id = create_cluster(moto_url, "msd-pipeline-iam-probe",
                                {"project": "msd-pipeline", "airflow:dag_id": DAG_ID,
                                 "airflow:dag_run_id": "iam-probe"})
    yield {"cluster_id": cluster_id, "secret_id": secret_id}
    for cluster in emr_backend().clusters.values():
        if cluster.name == "msd-pipeline-iam-probe":
            cluster.terminate()
    client("secretsmanager", moto_url).delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)


@pytest.mark.parametrize("index", range(len(probe_calls("http://unused"))),
                         ids=[f"{p.user}-{p.sid}" for p in probe_calls("http://unused")])
def test_dropping_a_statement_denies_the_call_it_grants(moto_url, iam_users, probe_world,
                                                        index, monkeypatch):
    probe = probe_calls(moto_url)[index]
    for name, value in aws_env(moto_url, iam_users[probe.user]).items():
        monkeypatch.setenv(name, value)
    with iam_enforced(moto_url):
        probe.call(probe_world)  # allowed with the whole policy
    replace_user_policy(moto_url, probe.user, moto_enforceable(probe.user, drop=probe.sid))
    try:
        with iam_enforced(moto_url), pytest.raises(Exception) as denied:
            probe.call(probe_world)
    finally:
        replace_user_policy(moto_url, probe.user, moto_enforceable(probe.user))
    assert is_access_denied(denied.value), repr(denied.value)


def is_access_denied(error: BaseException) -> bool:
    """A botocore ClientError saying "denied" (403; AccessDenied...) in ``error``'s chain."""
    from botocore.exceptions import ClientError

    while error is not None:
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code.startswith("AccessDenied") or code in ("403", "Forbidden") or status == 403
        error = error.__cause__ or error.__context__
    return False


# -- clearing a failed step: setups re-run, the steps target a new cluster -------------------------

RESUME_SCRIPT = """
import sys
from airflow import settings
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.sdk.definitions.dag import _run_task
from airflow.serialization.serialized_objects import DagSerialization
from airflow.utils.state import DagRunState, TaskInstanceState

dag_id, run_id = sys.argv[1:3]
dag = DagBag().dags[dag_id]
scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
session = settings.Session()
run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
run.state = DagRunState.RUNNING
session.commit()
while run.state == DagRunState.RUNNING:
    session.expire_all()
    run.dag = scheduler_dag
    schedulable, _ = run.update_state(session=session, execute_callbacks=False)
    for ti in schedulable:
        if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
            ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
    session.commit()
    for ti in run.get_task_instances(session=session):
        if ti.state == TaskInstanceState.SCHEDULED:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
print("DagRun Finished: state=%s" % run.state)
"""


def resume_cleared_run(env: Dict[str, str], run_id: str) -> str:
    """Run the cleared tasks of ``run_id`` with the loop ``airflow dags test`` uses (dag.test
    clears the whole run first, so it cannot resume one): what the scheduler would do."""
    completed = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, DAG_ID, run_id], env=env,
                               cwd=env["AIRFLOW_HOME"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-6000:]
    return completed.stdout


class FirstIngestFails:
    """The first step fails (a lost executor, say); every later step runs for real."""

    def __init__(self, real: RealStepRunner):
        self.real = real
        self.failed = False

    def __call__(self, cluster: Any, step: Any) -> StepOutcome:
        if not self.failed:
            self.failed = True
            return failing_step(cluster, step)
        return self.real(cluster, step)


def test_clearing_a_failed_step_reruns_it_on_a_new_cluster(airflow_env, moto_url, song_archive,
                                                          mongo_uri, tmp_path):
    logical_date = "2026-11-05T00:00:00+00:00"  # what `airflow tasks clear` selects by
    database = "emr_e2e_clear_" + uuid.uuid4().hex[:8]
    config = write_config(tmp_path / "config.json", song_archive, database)
    env = {**airflow_env, "MSD_CONFIG": str(config)}
    runner = FirstIngestFails(RealStepRunner(moto_url, tmp_path))
    first = run_pipeline(airflow_env, config, runner, moto_url, logical_date=logical_date)
    assert first.state == "failed" and first.tasks["terminate_cluster"] == "success", first.describe()
    [old_cluster] = first.clusters
    run_id, _ = latest_run(DAG_ID, airflow_env)

    cleared = subprocess.run(
        [airflow_support.AIRFLOW, "tasks", "clear", DAG_ID, "-t", "spark.ingest.",
         "-s", logical_date, "-e", logical_date, "-d", "-y"],
        env=env, cwd=env["AIRFLOW_HOME"], capture_output=True, text=True, timeout=300)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    states = task_states(DAG_ID, run_id, airflow_env)
    assert {task: states[task] for task in ("cluster.ship_code", "cluster.create_cluster",
                                            "terminate_cluster")} == dict.fromkeys(
        ("cluster.ship_code", "cluster.create_cluster", "terminate_cluster"), None), states
    assert states["stage.stage_data"] == "success", states

    before = set(emr_backend().clusters)
    driver = EmrStepDriver(moto_url, runner)
    driver.start()
    try:
        output = resume_cleared_run(env, run_id)
    finally:
        driver.stop()
    assert not driver.errors, driver.errors
    assert latest_run(DAG_ID, airflow_env) == (run_id, "success"), output[-6000:]
    [new_cluster] = [emr_backend().clusters[cid] for cid in set(emr_backend().clusters) - before]
    assert [step.state for step in new_cluster.steps] == ["COMPLETED", "COMPLETED"]
    assert [step.state for step in old_cluster.steps] == ["FAILED"]
    assert old_cluster.state == new_cluster.state == "TERMINATED"
    assert pymongo.MongoClient(mongo_uri)[database]["songs"].count_documents({}) == SONGS
    run_key = run_key_for(run_id)
    assert not [secret["Name"] for secret in client("secretsmanager", moto_url).list_secrets()
                ["SecretList"] if run_key in secret["Name"]]
