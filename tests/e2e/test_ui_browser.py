"""The UI command serves Airflow on 127.0.0.1 only; headless Chromium triggers
msd_local_pipeline from the UI's form with a non-default param and sees it succeed;
then an ingest-only run's `songs` event makes the scheduler start msd_retrain_local,
which the Assets view shows. Screenshots are kept under test-artifacts/."""
import json

import psutil
import pymongo
import pytest

from ui_support import (GENERATED_SONGS, SCREENSHOTS, needs_browser, run_browser_script,
                        running_ui)

SCREENSHOT = SCREENSHOTS / "msd_local_pipeline_run.png"
ASSETS_SCREENSHOT = SCREENSHOTS / "songs_asset_retrain.png"
FORM_SONGS = 150

pytestmark = needs_browser


@pytest.fixture(scope="module")
def ui(tmp_path_factory, mongo_uri, mlflow_tracking_uri):
    with running_ui(tmp_path_factory, mongo_uri, mlflow_tracking_uri) as running:
        yield running


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
    outcome = run_browser_script(
        "trigger_dag.mjs", "--url", ui["url"], "--dag", "msd_local_pipeline",
        "--param", "generated_songs={}".format(FORM_SONGS), "--screenshot", str(SCREENSHOT),
        timeout_seconds=600)
    assert outcome["state"] == "success"
    assert SCREENSHOT.stat().st_size > 10_000
    database = pymongo.MongoClient(mongo_uri)[ui["database"]]
    record = database.pipeline_runs.find_one({"airflow_run_id": outcome["run_id"]})
    assert record["params"]["generated_songs"] == FORM_SONGS
    assert record["data"]["files"] == FORM_SONGS
    assert database.songs.count_documents({}) == FORM_SONGS


def test_an_ingest_event_triggers_retraining_seen_in_the_assets_view(ui, mongo_uri):
    ASSETS_SCREENSHOT.unlink(missing_ok=True)
    outcome = run_browser_script(
        "asset_retrain.mjs", "--url", ui["url"], "--ingest-dag", "msd_local_pipeline",
        "--retrain-dag", "msd_retrain_local", "--conf", json.dumps({"train": False}),
        "--screenshot", str(ASSETS_SCREENSHOT), timeout_seconds=1200)
    extra = outcome["event"]["extra"]
    assert extra["run_id"] == outcome["ingest_run_id"] and extra["retrain"] is True
    assert extra["counts"]["files_ingested"] == GENERATED_SONGS
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
