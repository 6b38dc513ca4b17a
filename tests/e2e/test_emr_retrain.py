"""``airflow dags test msd_retrain_emr`` against moto, on songs already in the database,
with approval required: the training step, the gate, the cluster released before the
approval waits, the answer, imputation with the new champion on a short cluster, the
teardown. How moto plays EMR: tests/emr_dag_support.py."""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict

import pymongo

from msd_pipeline.staging.generator import generate_songs

from emr_dag_support import (AIRFLOW_PROGRAMS, SONGS, RealStepRunner, assert_run_cleaned_up,
                             emr_backend, run_pipeline, write_config)
from project_paths import PROJECT_ROOT


RETRAIN_DAG_ID = "msd_retrain_emr"
# Songs on which the first challenger beats both baselines (as in the UI approval test),
# so that the gate asks for approval.
GATE_PASSING_SEED = 7


def ingest_locally(song_folder: Path, mongo_uri: str, database: str) -> None:
    """Songs already in the database, as an earlier pipeline run leaves them."""
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "ingest_songs.py"), "--run-id", "seed",
         "--set", "ingest.source=" + str(song_folder), "--set", "mongo.database=" + database,
         "--set", "spark.master=local[2]"],
        env=dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable),
        capture_output=True, text=True, timeout=600, cwd=str(PROJECT_ROOT))
    assert done.returncode == 0, done.stderr[-3000:]


class Approver:
    """Answers the run's approval (tests/airflow_programs/answer_approval.py) and records
    the state of every cluster at the moment the question was waiting."""

    def __init__(self, env: Dict[str, str], answer: str):
        self.env, self.answer = env, answer
        self.clusters_while_waiting: Dict[str, str] = {}
        self.output = ""

    def __call__(self) -> None:
        program = subprocess.Popen(
            [sys.executable, str(AIRFLOW_PROGRAMS / "answer_approval.py"), RETRAIN_DAG_ID,
             "model.approve"], env=self.env, cwd=self.env["AIRFLOW_HOME"], text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        before = []
        for line in program.stdout:  # warnings may come first
            before.append(line)
            if line.startswith("awaiting "):
                self.clusters_while_waiting = {cluster_id: cluster.state for cluster_id, cluster
                                               in emr_backend().clusters.items()}
                break
        rest, _ = program.communicate(self.answer + "\n", timeout=120)
        self.output = "".join(before) + rest


def test_retraining_with_approval_ends_the_cluster_before_the_wait_and_imputes_on_a_new_one(
        emr_airflow_env, moto_url, mongo_uri, tmp_path):
    """msd_retrain_emr on songs already in the database, approval required: the training
    step on the run's cluster, the gate (no champion yet: the challenger passes), the
    cluster terminated before model.approve waits, the approval, imputation on a cluster
    of its own, the teardown."""
    database = "emr_e2e_retrain_" + uuid.uuid4().hex[:8]
    songs = tmp_path / "songs"
    generate_songs(str(songs), SONGS, seed=GATE_PASSING_SEED)
    ingest_locally(songs, mongo_uri, database)
    config = write_config(tmp_path / "config.json", "http://unused.invalid/songs.tar.gz",
                          database)
    settings = json.loads(config.read_text())
    settings["retraining"]["require_approval"] = True
    config.write_text(json.dumps(settings))
    approver = Approver({**emr_airflow_env, "MSD_CONFIG": str(config)}, "Approve")
    run = run_pipeline(emr_airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url,
                       dag_id=RETRAIN_DAG_ID, alongside=approver)

    assert run.state == "success", run.describe() + approver.output
    assert run.tasks["cluster.release_for_approval"] == "success", run.tasks
    assert run.tasks["model.approve"] == run.tasks["model.promote"] == "success", run.tasks
    training_cluster, impute_cluster = run.clusters
    # While the question was open, no cluster of the run was up.
    assert approver.clusters_while_waiting[training_cluster.id] == "TERMINATED", \
        approver.clusters_while_waiting
    assert impute_cluster.id not in approver.clusters_while_waiting
    assert [step.name.split()[0] for step in training_cluster.steps] == ["train_evaluate"]
    assert [step.name.split()[0] for step in impute_cluster.steps] == ["impute"]
    assert [step.state for step in training_cluster.steps + impute_cluster.steps] == \
        ["COMPLETED", "COMPLETED"]
    assert f"Cluster {training_cluster.id} is TERMINATED: creating a new one" in run.logs

    db = pymongo.MongoClient(mongo_uri)[database]
    decision = db["pipeline_runs"].find_one({"dag_id": RETRAIN_DAG_ID})["decision"]
    assert decision["status"] == "promoted" and decision["champion"] is None
    assert decision["approval"]["answer"] == "Approve"
    unknown = db["songs"].count_documents({"features.year": None})
    assert db["songs"].distinct("predicted.model_version") == [decision["challenger"]["label"]]
    assert db["songs"].count_documents({"predicted": {"$exists": True}}) == unknown
    assert_run_cleaned_up(run, moto_url)
