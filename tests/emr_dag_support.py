"""Running the EMR DAGs end to end (``airflow dags test``) against moto in server mode (S3,
EMR, Secrets Manager), with a real SecantusDB for the run record: what the
tests/e2e/test_emr_*.py files share (their fixtures are in tests/e2e/conftest.py).

moto never advances EMR steps, so ``EmrStepDriver`` (tests/emr_support.py) plays the
cluster with a step runner. ``RealStepRunner`` runs each step's real command — the
spark-submit line the DAG sent, with the code zip and job script downloaded from moto's
S3 — on local Spark, in the environment the cluster's spark-env classification exports
(the Mongo secret's name, not the URI); the driver ships the step's logs to LogUri as EMR
does. ``failing_step`` and ``hanging_step`` play a failed step and one that never ends.
Scheduler and DAG-processor code paths that ``airflow dags test`` does not take run as the
programs of tests/airflow_programs/ (``run_airflow_program``).
"""
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from moto.core.exceptions import ServiceException
from moto.emr.models import Cluster, emr_backends

from msdlib.config import load_config

import airflow_support
from emr_support import (ACCOUNT_ID, FAKE_ACCESS_KEY, FAKE_SECRET_KEY, REGION, Credentials,
                         EmrStepDriver, StepOutcome, aws_connection, client, download_object,
                         latest_run, local_spark_env, localize_model_uri, metadata_db_text,
                         spark_submit, task_log_text, task_states)

DAG_ID = "msd_emr_pipeline"
BUCKET = "msd-e2e"
MONGO_USER = "msd_e2e"
MONGO_PASSWORD = "e2e-Mongo-pw-5d1c9a"
FAILED_STEP_MARKER = "RuntimeError: simulated executor loss 7f3a"
SONGS = 120
AIRFLOW_PROGRAMS = Path(__file__).parent / "airflow_programs"


def airflow_env_for(moto_url: str, mongo_connection: str, credentials: Credentials,
                    mlflow_tracking_uri: str) -> Dict[str, str]:
    """Airflow's environment: aws_default with ``credentials``, pointed at moto; the
    model registry at ``mlflow_tracking_uri``."""
    return airflow_support.airflow_env(airflow_support.airflow_home(), connections={
        "aws_default": aws_connection(moto_url, credentials), "mongo_default": mongo_connection},
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
        step_dir = self.work_dir / step.id
        local_zip = download_object(self.moto_url, args[py_files + 1], step_dir, self.credentials)
        local_script = download_object(self.moto_url, args[py_files + 2], step_dir, self.credentials)
        job_args = localize_model_uri(self.moto_url, args[py_files + 3:], step_dir / "model",
                                      self.credentials)
        command = [spark_submit(), "--master", "local[2]", "--deploy-mode", "client",
                   "--py-files", str(local_zip), str(local_script), *job_args]
        env = local_spark_env(self.moto_url, self.credentials, spark_env_exports(cluster))
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        return StepOutcome(result.returncode == 0, result.stdout, result.stderr)


def spark_env_exports(cluster: Any) -> Dict[str, str]:
    """What the cluster's spark-env classification exports to every Spark process (the
    Mongo secret's name, not the URI; msdlib.config.EMR_VENV_PYTHON, which
    ``local_spark_env`` replaces by this interpreter)."""
    exports: Dict[str, str] = {}
    for classification in cluster.configurations:
        if classification.get("Classification") == "spark-env":
            for nested in classification.get("Configurations", []):
                exports.update(nested.get("Properties", {}))
    return exports


def failing_step(cluster: Any, step: Any) -> StepOutcome:
    return StepOutcome(False, stdout="", stderr=(
        "Traceback (most recent call last):\n  File \"ingest_songs.py\", line 1\n"
        + FAILED_STEP_MARKER + "\n"))


def hanging_step(cluster: Any, step: Any) -> Optional[StepOutcome]:
    return None


def write_config(path: Path, archive_url: str, database: str,
                 serverless: Optional[Dict[str, Any]] = None, **emr: Any) -> Path:
    """The e2e configuration: ``emr`` overrides [emr], ``serverless`` [emr_serverless]."""
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
    config["emr_serverless"].update(serverless or {})
    path.write_text(json.dumps(config))
    return path


@dataclass
class PipelineRun:
    output: str                 # the `airflow dags test` output
    state: str                  # the DAG run's final state
    tasks: Dict[str, str]       # task id → final state
    clusters: List[Cluster]     # the clusters this run created, oldest first
    logs: str                   # output and task log files together

    def describe(self) -> str:
        return f"tasks: {self.tasks}\n--- end of the logs ---\n{self.logs[-8000:]}"


def run_pipeline(airflow_env: Dict[str, str], config_path: Path, step_runner, moto_url: str,
                 logical_date: Optional[str] = None,
                 alongside: Optional[Callable[[], None]] = None,
                 node_credentials: Credentials = Credentials(),
                 dag_id: str = DAG_ID, driver: Any = None) -> PipelineRun:
    """Trigger the DAG once with ``airflow dags test`` while the driver plays EMR (and
    ``alongside`` runs in a thread: another AWS user, the scheduler's part, ...).
    ``driver``: another engine's driver (EMR Serverless's JobRunDriver) instead of the EMR
    step driver over ``step_runner``."""
    before = set(emr_backend().clusters)
    driver = driver or EmrStepDriver(moto_url, step_runner, credentials=node_credentials)
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
    clusters = sorted((emr_backend().clusters[cid] for cid in set(emr_backend().clusters) - before),
                      key=lambda cluster: cluster.creation_datetime)
    return PipelineRun(output, state, task_states(dag_id, run_id, airflow_env), clusters,
                       output + "\n".join(task_log_text(airflow_env, dag_id, run_id).values()))


def emr_backend():
    return emr_backends[ACCOUNT_ID][REGION]


def enforceable_policy(policy_path: Path, drop: Optional[str] = None,
                       source_bucket: str = "msd-songs-of-another-owner") -> Dict[str, Any]:
    """A policy of include/ as moto can enforce it: the placeholders filled in for this
    account, bucket and prefix (as the docs say to), statements on other services than
    S3 widened to Resource "*" (moto 5.2 matches them against "*" only; the ARNs and tag
    conditions are checked on AWS by the preflight's iam:SimulatePrincipalPolicy), without
    the statement ``drop``."""
    text = (policy_path.read_text().replace("ACCOUNT_ID", ACCOUNT_ID)
            .replace("CHANGE-ME-msd-bucket/msd-pipeline/", f"{BUCKET}/pipeline/")
            .replace("CHANGE-ME-msd-bucket", BUCKET)
            .replace("CHANGE-ME-source-bucket", source_bucket))
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


def assert_no_secret_leaked(airflow_env: Dict[str, str], run: PipelineRun,
                            sent: Optional[Dict[str, str]] = None) -> None:
    """No AWS key or Mongo password in the logs, the metadata DB, what the clusters got,
    nor in ``sent`` (where → text: what another engine got)."""
    secrets = [FAKE_ACCESS_KEY, FAKE_SECRET_KEY, MONGO_PASSWORD]
    haystacks = {"task logs and output": run.logs,
                 "step arguments": json.dumps([step.args for c in run.clusters for step in c.steps]),
                 "cluster configuration": repr([c.configurations for c in run.clusters]),
                 **(sent or {})}
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


def assert_deferred(run: PipelineRun) -> None:
    """The create wait and both step sensors deferred, and their triggers (aiobotocore
    against moto) ran to completion: `airflow dags test` runs triggers in line."""
    assert run.output.count("[DAG TEST] Trigger completed") >= 3, run.describe()


class EmrAccessDenied(ServiceException):
    """What EMR answers a call the caller's policy does not allow (raised in moto's backend)."""
    code = "AccessDeniedException"


def create_cluster(moto_url: str, name: str, tags: Dict[str, str]) -> str:
    """An active cluster made outside the DAG (another user, another run)."""
    return client("emr", moto_url).run_job_flow(
        Name=name, ReleaseLabel="emr-7.5.0", Instances={"KeepJobFlowAliveWhenNoSteps": True},
        Tags=[{"Key": key, "Value": value} for key, value in tags.items()])["JobFlowId"]


def run_airflow_program(name: str, args: List[str], env: Dict[str, str], timeout: float) -> str:
    """``python tests/airflow_programs/<name> args...`` in ``env`` from AIRFLOW_HOME; its
    output (stdout and stderr together), asserting that it exited 0."""
    completed = subprocess.run([sys.executable, str(AIRFLOW_PROGRAMS / name), *args], env=env,
                               cwd=env["AIRFLOW_HOME"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-6000:]
    return completed.stdout
