"""The UI command serves Airflow on 127.0.0.1 only; headless Chromium triggers
msd_local_pipeline from the UI's form with a non-default param and sees it succeed;
then an ingest-only run's `songs` event makes the scheduler start msd_retrain_local,
which the Assets view shows. Screenshots are kept under test-artifacts/."""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pymongo
import pytest

from airflow_support import PROJECT_ROOT, spark_connection, mongo_connection, write_config
from msd_devtools import services

BROWSER_DIR = PROJECT_ROOT / "tests" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = PROJECT_ROOT / "test-artifacts" / "ui" / "msd_local_pipeline_run.png"
ASSETS_SCREENSHOT = PROJECT_ROOT / "test-artifacts" / "ui" / "songs_asset_retrain.png"
DEFAULT_SONGS, FORM_SONGS = 120, 150

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()
    or shutil.which("node") is None,
    reason="needs /usr/bin/chromium (apt-get install chromium), node, and playwright-core "
           "(npm ci --prefix tests/browser)")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, mongo_uri, mlflow_tracking_uri):
    home = tmp_path_factory.mktemp("ui_airflow_home")
    work = tmp_path_factory.mktemp("ui_data")
    database = "ui_" + uuid.uuid4().hex[:10]
    config = write_config(work, {
        "pipeline.schedule": "", "pipeline.retries": 0, "mongo.database": database,
        "retraining.schedule": "", "retraining.tracking_uri": mlflow_tracking_uri,
        "staging.mode": "generated", "staging.generated_songs": DEFAULT_SONGS,
        "staging.data_dir": str(work / "data"), "training.artifacts_uri": str(work / "artifacts"),
        "training.folds": 2, "training.classifiers": ["logistic_regression"],
        "training.regressors": ["linear_regression"],
        "training.grids": {"logistic_regression": {"regParam": [0.01]},
                           "linear_regression": {"regParam": [0.1]}}})
    port = services.free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW_", "AIRFLOW__", "MSD_"))}
    env.update(MSD_CONFIG=str(config),
               AIRFLOW_CONN_MONGO_DEFAULT=mongo_connection(mongo_uri),
               AIRFLOW_CONN_SPARK_DEFAULT=spark_connection("local[2]"))
    command = [sys.executable, "-m", "msd_devtools.ui"]
    options = ["--port", str(port), "--home", str(home)]
    started = subprocess.run(command + ["start"] + options, env=env, capture_output=True,
                             text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = subprocess.run(command + ["status"] + options, env=env, capture_output=True,
                                text=True, timeout=60)
        yield {"url": "http://127.0.0.1:{}".format(port), "database": database,
               "status": [json.loads(line) for line in status.stdout.splitlines()]}
    finally:
        subprocess.run(command + ["stop"] + options, env=env, timeout=120)
        pymongo.MongoClient(mongo_uri).drop_database(database)


def test_ui_components_run_and_listen_only_on_localhost(ui):
    names = {entry["name"]: entry for entry in ui["status"]}
    assert set(names) == {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                          "airflow-triggerer"}
    assert all(entry["running"] and entry["ready"] for entry in names.values())
    listening = set()
    for entry in names.values():
        root = psutil.Process(entry["pid"])
        for process in [root] + root.children(recursive=True):
            listening |= {conn.laddr.ip for conn in process.net_connections(kind="inet")
                          if conn.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}


def test_trigger_from_the_ui_with_a_non_default_param(ui, mongo_uri):
    SCREENSHOT.unlink(missing_ok=True)
    completed = subprocess.run(
        ["node", str(BROWSER_DIR / "trigger_dag.mjs"), "--url", ui["url"],
         "--dag", "msd_local_pipeline", "--param", "generated_songs={}".format(FORM_SONGS),
         "--screenshot", str(SCREENSHOT), "--timeout-seconds", "600"],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=720)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "success"
    assert SCREENSHOT.stat().st_size > 10_000
    database = pymongo.MongoClient(mongo_uri)[ui["database"]]
    record = database.pipeline_runs.find_one({"airflow_run_id": outcome["run_id"]})
    assert record["params"]["generated_songs"] == FORM_SONGS
    assert record["data"]["files"] == FORM_SONGS
    assert database.songs.count_documents({}) == FORM_SONGS


def test_an_ingest_event_triggers_retraining_seen_in_the_assets_view(ui, mongo_uri):
    ASSETS_SCREENSHOT.unlink(missing_ok=True)
    completed = subprocess.run(
        ["node", str(BROWSER_DIR / "asset_retrain.mjs"), "--url", ui["url"],
         "--ingest-dag", "msd_local_pipeline", "--retrain-dag", "msd_retrain_local",
         "--conf", json.dumps({"train": False}), "--screenshot", str(ASSETS_SCREENSHOT),
         "--timeout-seconds", "1200"],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=1320)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    extra = outcome["event"]["extra"]
    assert extra["run_id"] == outcome["ingest_run_id"] and extra["retrain"] is True
    assert extra["counts"]["files_ingested"] == DEFAULT_SONGS
    assert outcome["assets_view_shows_retrain"] is True
    assert ASSETS_SCREENSHOT.stat().st_size > 10_000
    database = pymongo.MongoClient(mongo_uri)[ui["database"]]
    ingest_only = database.pipeline_runs.find_one({"airflow_run_id": outcome["ingest_run_id"]})
    assert ingest_only["training"] is None and ingest_only["decision"] is None
    decision = database.model_decisions.find_one(
        {"airflow_run_id": outcome["retrain_run_id"]})
    assert decision["run_type"] == "asset_triggered"
    assert outcome["ingest_run_id"] in [e["source_run_id"] for e in decision["asset_events"]]
    assert decision["status"] in ("promoted", "rejected")
