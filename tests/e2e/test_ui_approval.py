"""The human approval path of the champion/challenger gate through the real Airflow UI:
with ``retraining.require_approval`` on, headless Chromium triggers msd_local_pipeline
from its form with a non-default param, waits for model.approve to await input, clicks
Approve on the task's Required Actions tab and sees the run succeed with the param
applied and the challenger promoted and imputing. The screenshot is kept under
test-artifacts/."""
from pathlib import Path

import pymongo
import pytest

from msd_devtools import services
from ui_support import SCREENSHOTS, needs_browser, run_browser_script, running_ui

SCREENSHOT = SCREENSHOTS / "approve_promotion.png"
FORM_SONGS = 150  # not the configured staging.generated_songs (ui_support.GENERATED_SONGS)

pytestmark = needs_browser


@pytest.fixture(scope="module")
def ui(tmp_path_factory, mongo_uri):
    """Approval required, and an MLflow registry of its own: no champion from another
    test, so the first challenger passes the gate and waits for the approver."""
    with services.running_mlflow(tmp_path_factory.mktemp("ui_approval_mlflow")) as tracking_uri:
        with running_ui(tmp_path_factory, mongo_uri, tracking_uri,
                        {"retraining.require_approval": True}) as running:
            yield running


def test_a_promotion_approved_in_the_ui_promotes_the_challenger_and_imputes_with_it(
        ui, mongo_uri):
    """One run for two things: the form's non-default param reaches the run, and the
    approval in the UI promotes the challenger."""
    SCREENSHOT.unlink(missing_ok=True)
    outcome = run_browser_script(
        "approve_promotion.mjs", "--url", ui["url"], "--dag", "msd_local_pipeline",
        "--task", "model.approve", "--param", "generated_songs={}".format(FORM_SONGS),
        "--screenshot", str(SCREENSHOT), timeout_seconds=900)
    assert outcome["state"] == "success"
    assert outcome["response"]["chosen_options"] == ["Approve"]
    assert outcome["response"]["responded_by"]["name"] == "Anonymous"  # the all-admins login
    states = outcome["task_states"]
    assert states["model.approve"] == states["model.promote"] == states["spark.impute"] == \
        "success"
    assert SCREENSHOT.stat().st_size > 10_000

    database = pymongo.MongoClient(mongo_uri)[ui["database"]]
    decision = database.model_decisions.find_one({"airflow_run_id": outcome["run_id"]})
    assert decision["gate"]["outcome"] == "await_approval"
    assert decision["status"] == "promoted"
    assert (decision["approval"]["answer"], decision["approval"]["by"]) == ("Approve", "Anonymous")
    record = database.pipeline_runs.find_one({"airflow_run_id": outcome["run_id"]})
    assert record["params"]["generated_songs"] == FORM_SONGS
    assert record["data"]["files"] == FORM_SONGS
    assert database.songs.count_documents({}) == FORM_SONGS
    report = Path(record["artifacts"]["report_uri"]).read_text()
    assert "Approval: **Approve** by `Anonymous` at " in report
    label = decision["challenger"]["label"]
    unknown_year = database.songs.count_documents({"features.year": None})
    assert unknown_year > 0
    assert database.songs.count_documents({"predicted.model_version": label}) == unknown_year
    assert database.songs.distinct("predicted.model_version") == [label]
