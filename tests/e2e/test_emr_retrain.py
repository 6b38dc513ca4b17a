"""``airflow dags test msd_retrain_emr`` against moto, on songs already in the database: a
cluster of its own, the training step, the gate, imputation with the champion, the
teardown. How moto plays EMR: tests/emr_dag_support.py."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pymongo

from emr_dag_support import RealStepRunner, assert_run_cleaned_up, run_pipeline, write_config
from project_paths import PROJECT_ROOT


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
        emr_airflow_env, moto_url, song_folder, mongo_uri, tmp_path):
    """msd_retrain_emr on songs already in the database: a cluster of its own, the training
    step, the gate (no champion yet), imputation with the champion, the teardown."""
    database = "emr_e2e_retrain_" + uuid.uuid4().hex[:8]
    ingest_locally(song_folder, mongo_uri, database)
    config = write_config(tmp_path / "config.json", "http://unused.invalid/songs.tar.gz",
                          database)
    run = run_pipeline(emr_airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url,
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
