"""The training job end to end, and imputation with its models: real SecantusDB, real
Spark (local[2] and standalone), songs generated in the MSD layout and ingested by the
ingest job, then the real songs of ../shared/msd when present."""
import ctypes.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pymongo
import pytest

from msd_pipeline.staging.generator import generate_songs
from project_paths import PROJECT_ROOT

INGEST_JOB = PROJECT_ROOT / "spark_jobs" / "ingest_songs.py"
TRAIN_JOB = PROJECT_ROOT / "spark_jobs" / "train_models.py"
IMPUTE_JOB = PROJECT_ROOT / "spark_jobs" / "impute_years.py"

# Small grids and two folds keep the module within a few minutes on 2 cores.
FAST_SETTINGS = [
    "spark.master=local[2]",
    "training.folds=2",
    'training.grids.logistic_regression={"regParam": [0.01], "maxIter": [30]}',
    'training.grids.random_forest_classifier={"numTrees": [20], "maxDepth": [6]}',
    'training.grids.gbt_classifier={"maxIter": [3], "maxDepth": [2]}',
    'training.grids.multilayer_perceptron={"hidden_layers": [[16]], "maxIter": [30]}',
    'training.grids.linear_regression={"regParam": [0.1]}',
    'training.grids.random_forest_regressor={"numTrees": [20], "maxDepth": [6]}',
]


def run_job(job, mongo_uri, database, run_id, settings, timeout=600, extra_args=()):
    command = [sys.executable, str(job), "--run-id", run_id,
               "--set", "mongo.database=" + database, *extra_args]
    for setting in settings:
        command += ["--set", setting]
    env = dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable)
    result = subprocess.run(command, capture_output=True, text=True, env=env,
                            timeout=timeout, cwd=str(PROJECT_ROOT))
    lines = result.stdout.strip().splitlines()
    assert lines, "no summary; stderr:\n" + result.stderr[-3000:]
    return result.returncode, json.loads(lines[-1]), result.stderr


def ingest(mongo_uri, database, source):
    code, summary, stderr = run_job(INGEST_JOB, mongo_uri, database, "ingest-" + database,
                                    ["spark.master=local[2]", "ingest.source=" + str(source)])
    assert code == 0, stderr[-3000:]
    return summary


@pytest.fixture(scope="module")
def database(mongo_uri):
    name = "train_" + uuid.uuid4().hex[:10]
    client = pymongo.MongoClient(mongo_uri)
    yield client[name]
    client.drop_database(name)
    client.close()


BAD_SONGS = [
    # no features part at all: the partition queries cannot see it
    {"_id": "TRBAD0000000000001", "metadata": {"songs": {"title": "no features"}}},
    # wrong width
    {"_id": "TRBAD0000000000002", "features": {
        "timbre": [1.0] * 12, "year": 1999, "decade": 1990, "artist_id": "ARBAD",
        "partition": 1}},
    # non-finite value, unknown year: skipped, never imputed
    {"_id": "TRBAD0000000000003", "features": {
        "timbre": [1.0] * 89 + [float("inf")], "year": None, "decade": None,
        "artist_id": "ARBAD", "partition": 2}},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mongo_uri, database):
    """Generated songs ingested, three bad songs added, then one training run."""
    songs_dir = tmp_path_factory.mktemp("generated")
    generate_songs(str(songs_dir), 300, seed=11, unknown_year_fraction=0.2)
    ingest(mongo_uri, database.name, songs_dir)
    database.songs.insert_many(BAD_SONGS)
    before = {doc["_id"]: doc for doc in database.songs.find()}
    artifacts = tmp_path_factory.mktemp("artifacts")
    code, summary, stderr = run_job(
        TRAIN_JOB, mongo_uri, database.name, "run-1",
        FAST_SETTINGS + ["training.artifacts_uri=" + str(artifacts)])
    assert code == 0, stderr[-3000:]
    return {"summary": summary, "before": before, "run_dir": artifacts / "run-1"}


def test_beats_both_baselines(trained):
    summary = trained["summary"]
    decade, year = summary["decade"], summary["year"]
    assert decade["test"]["macro_f1"] > decade["baseline"]["macro_f1"]
    assert year["test"]["mae"] < year["baseline"]["mae"]
    assert decade["chosen"] in decade["cv_scores"]
    assert set(decade["cv_scores"]) == {"logistic_regression", "random_forest_classifier",
                                        "multilayer_perceptron"}
    assert decade["cv_metric"] == "macro_f1" and summary["grid_strategy"] == "cv"
    assert year["chosen"] == min(year["cv_scores"], key=year["cv_scores"].get)


def test_counts_skip_bad_songs(trained, database):
    counts = trained["summary"]["counts"]
    known = database.songs.count_documents({"features.year": {"$ne": None}})
    assert counts["skipped"] == 3
    assert counts["skipped_by_reason"] == {"missing_features": 1, "wrong_width": 1,
                                           "non_finite": 1}
    assert counts["labelled"] == known - 1  # the wrong-width song has a year
    assert counts["train"] + counts["test"] == counts["labelled"]
    assert counts["unknown_year"] == database.songs.count_documents(
        {"features.year": None, "features.partition": {"$exists": True}}) - 1
    assert trained["summary"]["constant_features_dropped"] == ["song_energy",
                                                               "song_danceability"]


def test_artifacts_are_written(trained):
    run_dir = trained["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["schema_version"] == 1
    assert metrics["run_id"] == "run-1"
    assert metrics["data"]["train_artists"] > 0 and metrics["data"]["test_artists"] > 0
    assert sum(map(sum, metrics["decade"]["test"]["confusion_matrix"])) \
        == metrics["data"]["test"]
    for plot in metrics["plots"].values():
        if isinstance(plot, str):
            assert (run_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for task in ("decade", "year"):
        model_dir = run_dir / metrics[task]["model_dir"]
        assert (model_dir / "metadata").is_dir() and (model_dir / "stages").is_dir()
    report = (run_dir / "report.md").read_text()
    assert "(plots/confusion_matrix.png)" in report and "(metrics.json)" in report


def test_fits_use_native_blas_one_thread_per_task(trained):
    linear_algebra = trained["summary"]["linear_algebra"]
    assert linear_algebra["openblas_threads"] == "1"
    if ctypes.util.find_library("blas") is None:
        pytest.skip("no system BLAS (Debian: libopenblas0-pthread); Spark uses Java's")
    assert linear_algebra["blas"] == "JNIBLAS"


def assert_imputed_only_unknown(database, before, model_version):
    predicted = list(database.songs.find({"predicted": {"$exists": True}}))
    expected = {doc_id for doc_id, doc in before.items()
                if doc.get("features", {}).get("year", 0) is None
                and doc_id != "TRBAD0000000000003"}
    assert {doc["_id"] for doc in predicted} == expected
    for doc in predicted:
        prediction = doc.pop("predicted")
        assert set(prediction) == {"year", "decade", "model_version", "predicted_at"}
        assert 1950 <= prediction["year"] <= 2010  # the generated years' range
        assert prediction["decade"] % 10 == 0
        assert prediction["model_version"] == model_version
        assert doc == before[doc["_id"]]  # original fields untouched
    assert database.songs.count_documents({}) == len(before)


def impute(mongo_uri, database, run_dir, label, master="local[2]"):
    code, summary, stderr = run_job(IMPUTE_JOB, mongo_uri, database, "impute-" + label,
                                    ["spark.master=" + master], extra_args=[
                                        "--model-uri", str(run_dir), "--model-label", label])
    assert code == 0, stderr[-3000:]
    return summary


def test_training_leaves_the_songs_untouched(trained, database):
    assert "imputed" not in trained["summary"]
    assert {doc["_id"]: doc for doc in database.songs.find()} == trained["before"]


def test_imputation_touches_only_unknown_year_songs(trained, database, mongo_uri):
    summary = impute(mongo_uri, database.name, trained["run_dir"], "run-1")
    assert summary["imputed"] == summary["unknown_year"] \
        == trained["summary"]["counts"]["unknown_year"] > 0
    assert_imputed_only_unknown(database, trained["before"], "run-1")


def test_rerun_on_standalone_cluster_replaces_predictions(trained, database, mongo_uri,
                                                          spark_master_url, tmp_path):
    code, summary, stderr = run_job(
        TRAIN_JOB, mongo_uri, database.name, "run-2",
        FAST_SETTINGS + ["spark.master=" + spark_master_url,
                         'training.classifiers=["logistic_regression"]',
                         'training.regressors=["linear_regression"]',
                         "training.artifacts_uri=" + str(tmp_path)])
    assert code == 0, stderr[-3000:]
    imputed = impute(mongo_uri, database.name, tmp_path / "run-2", "run-2", spark_master_url)
    assert imputed["imputed"] == trained["summary"]["counts"]["unknown_year"]
    assert_imputed_only_unknown(database, trained["before"], "run-2")


def test_too_few_labelled_songs_fails_with_exit_code_1(trained, database, mongo_uri, tmp_path):
    code, summary, stderr = run_job(
        TRAIN_JOB, mongo_uri, database.name, "run-3",
        FAST_SETTINGS + ["training.min_labelled_songs=100000",
                         "training.artifacts_uri=" + str(tmp_path)])
    assert code == 1
    assert summary["status"] == "failed"
    assert "training.min_labelled_songs is 100000" in summary["error"]
    assert not (tmp_path / "run-3").exists()


def test_real_songs_train(real_tracks_dir, mongo_uri, mongo_db_name, tmp_path):
    ingest(mongo_uri, mongo_db_name, real_tracks_dir)
    code, summary, stderr = run_job(
        TRAIN_JOB, mongo_uri, mongo_db_name, "real-1",
        FAST_SETTINGS + ['training.classifiers=["logistic_regression"]',
                         'training.regressors=["linear_regression"]',
                         "training.artifacts_uri=" + str(tmp_path)])
    assert code == 0, stderr[-3000:]
    client = pymongo.MongoClient(mongo_uri)
    songs = client[mongo_db_name].songs
    assert summary["counts"]["labelled"] + summary["counts"]["skipped"] \
        + summary["counts"]["unknown_year"] == songs.count_documents({})
    assert summary["counts"]["labelled"] == songs.count_documents(
        {"features.year": {"$ne": None}})
    # energy and danceability are 0 in every real MSD file
    assert {"song_energy", "song_danceability"} <= set(summary["constant_features_dropped"])
    assert (tmp_path / "real-1" / "metrics.json").is_file()
    client.close()
