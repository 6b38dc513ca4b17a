"""The UI command serves Airflow on 127.0.0.1 only; in headless Chromium an ingest-only
run's `songs` event makes the scheduler start msd_retrain_local, which the Assets view
shows. The screenshot is kept under test-artifacts/. (A run triggered from the UI's form
with a non-default param: tests/e2e/test_ui_approval.py, whose run also awaits approval.)"""
import json

import psutil
import pymongo
import pytest

from ui_support import (GENERATED_SONGS, SCREENSHOTS, needs_browser, run_browser_script,
                        running_ui)

ASSETS_SCREENSHOT = SCREENSHOTS / "songs_asset_retrain.png"

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
