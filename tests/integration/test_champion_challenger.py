"""Champion scoring and champion-only imputation with the real Spark jobs: a second
training run scores the first run's models on its own test split (same digest, same
scores), the gate rejects it, and imputing with the kept champion leaves every stored
prediction untouched; a new champion then replaces them."""
import json
import os
import subprocess
import sys
import uuid

import pymongo
import pytest

from msd_pipeline.staging.generator import generate_songs
from msd_pipeline.gate import REJECT, GateSettings, decide, scores_from_metrics
from project_paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

INGEST_JOB = PROJECT_ROOT / "spark_jobs" / "ingest_songs.py"
TRAIN_JOB = PROJECT_ROOT / "spark_jobs" / "train_models.py"
IMPUTE_JOB = PROJECT_ROOT / "spark_jobs" / "impute_years.py"
FAST_TRAINING = ["spark.master=local[2]", "training.folds=2",
                 'training.classifiers=["logistic_regression"]',
                 'training.regressors=["linear_regression"]',
                 'training.grids.logistic_regression={"regParam": [0.01], "maxIter": [30]}',
                 'training.grids.linear_regression={"regParam": [0.1]}']


def _run(job, mongo_uri, database, run_id, settings, *args):
    """A Spark job in a subprocess on local[2]; (exit code, JSON summary, stderr)."""
    command = [sys.executable, str(job), "--run-id", run_id, "--set",
               "mongo.database=" + database, *args]
    for setting in settings:
        command += ["--set", setting]
    env = dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                          cwd=str(PROJECT_ROOT))
    lines = done.stdout.strip().splitlines()
    assert lines, "no summary; stderr:\n" + done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mongo_uri):
    database = "champion_" + uuid.uuid4().hex[:10]
    songs_dir = tmp_path_factory.mktemp("songs")
    artifacts = tmp_path_factory.mktemp("artifacts")
    generate_songs(str(songs_dir), 240, seed=5, unknown_year_fraction=0.25)
    _run(INGEST_JOB, mongo_uri, database, "ingest", ["spark.master=local[2]",
                                                     "ingest.source=" + str(songs_dir)])
    settings = FAST_TRAINING + ["training.artifacts_uri=" + str(artifacts)]
    first = _run(TRAIN_JOB, mongo_uri, database, "first", settings)
    second = _run(TRAIN_JOB, mongo_uri, database, "second", settings,
                  "--champion-uri", str(artifacts / "first"))
    client = pymongo.MongoClient(mongo_uri)
    yield {"first": first, "second": second, "artifacts": artifacts, "db": client[database],
           "database": database, "settings": settings}
    client.drop_database(database)
    client.close()


def _metrics(runs, run_id):
    return json.loads((runs["artifacts"] / run_id / "metrics.json").read_text())


def test_champion_is_scored_on_the_same_split(runs):
    first, second = _metrics(runs, "first"), _metrics(runs, "second")
    assert first["champion"] is None
    assert first["evaluation_split"] == second["evaluation_split"]
    assert first["evaluation_split"]["hash"].startswith("sha256-sum60:")
    assert first["evaluation_split"]["songs"] == first["data"]["test"]
    champion = second["champion"]
    assert champion["uri"] == str(runs["artifacts"] / "first")
    assert champion["run_id"] == "first"
    # the same models on the same songs: the champion's scores are the first run's own
    assert champion["year"]["rmse"] == pytest.approx(first["year"]["test"]["rmse"], rel=1e-9)
    assert champion["decade"]["macro_f1"] == pytest.approx(first["decade"]["test"]["macro_f1"],
                                                           rel=1e-9)
    assert runs["second"]["champion"]["year"]["rmse"] == champion["year"]["rmse"]


def test_an_equal_challenger_is_rejected_by_the_margin(runs):
    scores = scores_from_metrics(_metrics(runs, "second"))
    decision = decide(scores["challenger"], scores["baseline"], scores["champion"],
                      GateSettings(year_rmse_margin=0.25, decade_f1_tolerance=0.01))
    assert decision.outcome == REJECT
    assert [c.rule for c in decision.checks if not c.passed] == ["year_rmse"]


def test_an_unreadable_champion_is_reported_not_fatal(runs, mongo_uri, tmp_path):
    summary = _run(TRAIN_JOB, mongo_uri, runs["database"], "third", runs["settings"],
                   "--champion-uri", str(tmp_path / "missing"))
    assert summary["champion"]["uri"] == str(tmp_path / "missing")
    assert "error" in summary["champion"]


def _impute(runs, mongo_uri, run_id, label):
    return _run(IMPUTE_JOB, mongo_uri, runs["database"], "impute-" + label.replace("/", "-"),
                ["spark.master=local[2]"], "--model-uri", str(runs["artifacts"] / run_id),
                "--model-label", label)


def _predictions(db):
    return {doc["_id"]: doc["predicted"] for doc in db.songs.find(
        {"predicted": {"$exists": True}}, {"predicted": 1})}


def test_imputation_with_the_kept_champion_leaves_predictions_unchanged(runs, mongo_uri):
    unknown = runs["db"].songs.count_documents({"features.year": None,
                                                "features.partition": {"$exists": True}})
    first = _impute(runs, mongo_uri, "first", "msd-song-year/1")
    assert first["imputed"] == first["unknown_year"] > 0
    before = _predictions(runs["db"])
    assert len(before) == first["imputed"] <= unknown
    assert {p["model_version"] for p in before.values()} == {"msd-song-year/1"}

    again = _impute(runs, mongo_uri, "first", "msd-song-year/1")  # challenger rejected
    assert (again["imputed"], again["already_current"]) == (0, first["imputed"])
    assert _predictions(runs["db"]) == before

    promoted = _impute(runs, mongo_uri, "second", "msd-song-year/2")
    assert promoted["imputed"] == first["imputed"]
    after = _predictions(runs["db"])
    assert after.keys() == before.keys()
    assert {p["model_version"] for p in after.values()} == {"msd-song-year/2"}
