"""Pure parts of the training job: features, rows, labels, weights, settings, reports."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from msdlib.config import ConfigError, load_config
from msdlib.io.dataset import (SKIP_MISSING, SKIP_NO_ARTIST, SKIP_NON_FINITE, SKIP_WIDTH,
                            bucket_groups, constant_columns_from_ranges, feature_columns,
                            read_projection, song_row)
from msdlib.core.features import FEATURE_NAMES
from msdlib.io.imputation import prediction_update
from msdlib.core.models import (CLASSIFIERS, REGRESSORS, TrainingError, check_model_names,
                           class_weights, merge_rare_decades, training_partitions)
from msdlib.core.selection import held_out_folds, resolve_grid_strategy
from msdlib.io.report import RunArtifacts, decade_verdict, render_report, run_uri
from project_paths import PROJECT_ROOT

SONG_FEATURES = ["loudness", "tempo", "energy", "danceability"]


def song(timbre=None, year=1994, artist="AR1", **analysis):
    fields = {"loudness": -7.5, "tempo": 120.0, "energy": 0.0, "danceability": 0.0}
    fields.update(analysis)
    return {"_id": "TR1", "analysis": {"songs": fields},
            "features": {"timbre": [float(i) for i in range(90)] if timbre is None else timbre,
                         "year": year, "decade": None if year is None else year // 10 * 10,
                         "artist_id": artist, "partition": 3}}


def test_feature_vector_is_90_timbre_features_then_song_fields():
    columns = feature_columns(SONG_FEATURES)
    assert len(columns) == 94
    assert columns[:90] == list(FEATURE_NAMES)
    assert columns[:12] == ["timbre_mean_{:02d}".format(i) for i in range(12)]
    assert columns[12] == "timbre_cov_00_00"
    assert columns[90:] == ["song_loudness", "song_tempo", "song_energy", "song_danceability"]


def test_row_keeps_feature_order():
    row = song_row(song(), SONG_FEATURES)
    assert row[:5] == ("TR1", "AR1", 1994, 1990, None)
    assert list(row[5:95]) == [float(i) for i in range(90)]
    assert list(row[95:]) == [-7.5, 120.0, 0.0, 0.0]


def test_projection_reads_only_features_labels_and_song_fields():
    assert read_projection(["energy"]) == {
        "features.timbre": 1, "features.year": 1, "features.decade": 1,
        "features.artist_id": 1, "analysis.songs.energy": 1}


@pytest.mark.parametrize("document, reason", [
    ({"_id": "TR1"}, SKIP_MISSING),
    (song(timbre=[]), SKIP_MISSING),
    (song(timbre=[1.0] * 89), SKIP_WIDTH),
    (song(timbre=[1.0] * 89 + [math.inf]), SKIP_NON_FINITE),
    (song(timbre=[1.0] * 89 + [None]), SKIP_NON_FINITE),
    (song(tempo=None), SKIP_NON_FINITE),
    (song(artist=""), SKIP_NO_ARTIST),
])
def test_bad_songs_are_kept_with_a_reason_and_no_features(document, reason):
    row = song_row(document, SONG_FEATURES)
    assert row[4] == reason
    assert row[5:] == (None,) * 94


def test_unknown_year_song_is_usable():
    row = song_row(song(year=None), SONG_FEATURES)
    assert row[2:5] == (None, None, None)
    assert row[5] == 0.0


def test_bucket_groups_cover_every_bucket_once():
    groups = bucket_groups(64, 6)
    assert len(groups) == 6
    assert sorted(b for group in groups for b in group) == list(range(64))
    assert bucket_groups(4, 10) == [[0], [1], [2], [3]]


def test_constant_columns():
    ranges = {"a": (0.0, 0.0), "b": (1.0, 2.0), "c": (None, None), "d": (5e6, 5e6)}
    assert constant_columns_from_ranges(ranges, ["a", "b", "c", "d"]) == ["a", "c", "d"]


def test_rare_decades_merge_into_nearest_kept_decade():
    counts = {1950: 2, 1960: 4, 1970: 30, 1980: 3, 1990: 50, 2000: 80, 2010: 5}
    assert merge_rare_decades(counts, 10) == {
        1950: 1970, 1960: 1970, 1970: 1970,
        1980: 1990,  # 1970 and 1990 are equally near: the bigger one wins
        1990: 1990, 2000: 2000, 2010: 2000}


def test_no_decade_with_enough_songs_is_a_training_error():
    with pytest.raises(TrainingError, match="min_decade_songs"):
        merge_rare_decades({1990: 3, 2000: 4}, 10)


def test_balanced_class_weights_give_every_class_equal_total_weight():
    counts = {0: 10, 1: 30, 2: 60}
    weights = class_weights(counts)
    totals = {label: weights[label] * count for label, count in counts.items()}
    assert all(total == pytest.approx(100 / 3) for total in totals.values())


def test_training_partitions():
    assert training_partitions(380, 8, 20000) == 1
    assert training_partitions(50000, 8, 20000) == 3
    assert training_partitions(10 ** 7, 8, 20000) == 8


def test_default_config_names_known_models_and_grids():
    training = load_config().training
    check_model_names(training.classifiers, training.regressors, training.grids)
    assert set(training.grids) == set(CLASSIFIERS + REGRESSORS)


@pytest.mark.parametrize("classifiers, regressors, grids, message", [
    (["random_forest"], ["linear_regression"], {}, "unknown classifier"),
    (["logistic_regression"], ["random_forest_classifier"], {}, "unknown regressor"),
    (["logistic_regression"], ["linear_regression"], {"svm": {}}, "unknown model"),
    (["logistic_regression"], ["linear_regression"],
     {"linear_regression": {"regParam": []}}, "non-empty list"),
    (["logistic_regression"], ["linear_regression"],
     {"logistic_regression": {"hidden_layers": [[8]]}}, "multilayer_perceptron only"),
    (["multilayer_perceptron"], ["linear_regression"],
     {"multilayer_perceptron": {"hidden_layers": [8, 4]}}, "lists of positive"),
    (["multilayer_perceptron"], ["linear_regression"],
     {"multilayer_perceptron": {"hidden_layers": [[0]]}}, "lists of positive"),
    ([], ["linear_regression"], {}, "must not be empty"),
])
def test_bad_model_settings_are_rejected(classifiers, regressors, grids, message):
    with pytest.raises(ValueError, match=message):
        check_model_names(classifiers, regressors, grids)


def test_prediction_update_sets_only_predicted():
    import datetime

    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    update = prediction_update("TR1", 1987.6, "1980", "run/lr+rf", when, (1950, 2010))
    assert update._filter == {"_id": "TR1", "predicted.model_version": {"$ne": "run/lr+rf"}}
    assert update._doc == {"$set": {"predicted": {
        "year": 1988, "decade": 1980, "model_version": "run/lr+rf", "predicted_at": when}}}


def test_predicted_year_stays_in_the_labelled_range():
    import datetime

    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    late = prediction_update("TR1", 2021.4, "2010", "v", when, (1950, 2010))
    early = prediction_update("TR1", 1931.0, "1950", "v", when, (1950, 2010))
    assert late._doc["$set"]["predicted"]["year"] == 2010
    assert early._doc["$set"]["predicted"]["year"] == 1950


def test_run_uri_is_run_scoped():
    assert run_uri("s3://bucket/artifacts/", "r1") == "s3://bucket/artifacts/r1"
    assert run_uri("/tmp/a", "r1") == "/tmp/a/r1"
    assert run_uri("artifacts", "r1") == str(PROJECT_ROOT / "artifacts" / "r1")


def test_artifacts_upload_to_s3(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://{}:{}".format(host, port))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        client = boto3.client("s3", endpoint_url="http://{}:{}".format(host, port))
        client.create_bucket(Bucket="art")
        artifacts = RunArtifacts("s3://art/runs", "r7")
        assert artifacts.write_json("metrics.json", {"schema_version": 1}) \
            == "s3://art/runs/r7/metrics.json"
        artifacts.write_text("plots/x.txt", "x")
        assert artifacts.publish() == "s3://art/runs/r7"
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="art")["Contents"])
        assert keys == ["runs/r7/metrics.json", "runs/r7/plots/x.txt"]
        body = client.get_object(Bucket="art", Key="runs/r7/metrics.json")["Body"].read()
        assert json.loads(body) == {"schema_version": 1}
    finally:
        server.stop()


def test_report_links_plots_metrics_and_models():
    task = {"cv_metric": "rmse", "chosen": "m", "model_dir": "models/year_m",
            "candidates": [{"name": "m", "cv_score": 1.0, "best_params": {}, "seconds": 1}],
            "test": {"mae": 1.0, "rmse": 2.0, "r2": 0.5, "accuracy": 0.5, "macro_f1": 0.4,
                     "weighted_f1": 0.4,
                     "per_class": {"1990": {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                            "support": 3}}},
            "baseline": {"name": "b", "mae": 2.0, "rmse": 3.0, "r2": 0.0, "accuracy": 0.3,
                         "macro_f1": 0.1, "weighted_f1": 0.2}}
    decade = dict(task, cv_metric="macro_f1", model_dir="models/decade_m",
                  classes=[1990, 2000], decade_mapping={"1980": 1990, "1990": 1990},
                  min_decade_songs=10, class_weights={"1990": 1.0},
                  baseline=decade_baseline(0.6, 0.2), train_class_counts={"1990": 8})
    metrics = {"run_id": "r1", "created_at": "now", "schema_version": 1,
               "data": {"labelled": 10, "unknown_year": 2, "skipped": 1,
                        "skipped_by_reason": {"non_finite": 1}, "train": 8, "test": 2,
                        "train_artists": 4, "test_artists": 1},
               "features": {"count": 94, "used": ["a"], "constant_dropped": ["song_energy"]},
               "decade": decade, "year": task,
               "training_settings": {"class_weighting": True,
                                     "decade_selection_metric": "macro_f1"},
               "selection": {"grid_strategy": "cv", "held_out_folds": [0, 1, 2], "folds": 3,
                             "parallelism": 2}}
    text = render_report(metrics)
    assert "cross-validation on artist folds (3 of 3 folds" in text
    for link in ("(metrics.json)", "(plots/confusion_matrix.png)", "(plots/f1_per_decade.png)",
                 "(plots/year_predicted_vs_actual.png)", "(models/decade_m)", "(models/year_m)"):
        assert link in text
    assert "1980→1990" in text and "song_energy" in text and "non_finite 1" in text


def test_unknown_classifier_is_a_usage_error_before_spark_starts():
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "train_models.py"),
         "--set", 'training.classifiers=["svm"]'],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "MSD_MONGO_URI": "mongodb://127.0.0.1:1"})
    assert result.returncode == 2
    assert "training.classifiers items must be among" in result.stderr
    assert "got 'svm'" in result.stderr


@pytest.mark.parametrize("strategy, songs, expected", [
    ("auto", 365, "cv"), ("auto", 50000, "cv"), ("auto", 50001, "split"),
    ("cv", 10 ** 6, "cv"), ("split", 100, "split"),
])
def test_grid_strategy_auto_switches_to_one_split_above_cv_max_songs(strategy, songs,
                                                                     expected):
    assert resolve_grid_strategy(strategy, songs, cv_max_songs=50000) == expected


def test_cv_holds_out_every_fold_and_split_only_fold_0():
    assert held_out_folds("cv", 5) == [0, 1, 2, 3, 4]
    assert held_out_folds("split", 5) == [0]
    with pytest.raises(ValueError, match="grid_strategy"):
        resolve_grid_strategy("bootstrap", 10, 50000)


@pytest.mark.parametrize("setting, message", [
    ({"grid_strategy": "bootstrap"}, "training.grid_strategy must be one of auto, cv, split"),
    ({"decade_selection_metric": "f1"}, "training.decade_selection_metric must be one of"),
    ({"classifiers": ["svm"]}, "training.classifiers items must be among"),
    ({"classifiers": []}, "must not be empty"),
    ({"grids": {"svm": {}}}, "unknown model 'svm'"),
    ({"folds": 1}, "training.folds must be at least 2"),
    ({"test_fraction": 1.0}, "training.test_fraction must be below 1"),
])
def test_training_settings_are_configuration_errors(setting, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"training." + k: v for k, v in setting.items()})


def decade_baseline(accuracy, macro_f1):
    return {"name": "majority_decade", "predicted_label": 2000, "count": 10,
            "accuracy": accuracy, "macro_f1": macro_f1, "weighted_f1": 0.3,
            "per_class": {"2000": {"support": 6}}}


@pytest.mark.parametrize("accuracy, macro_f1, expected", [
    (0.7, 0.5, "beats it on both"),
    (0.5, 0.5, "loses on accuracy"),
    (0.7, 0.1, "loses on macro-F1"),
    (0.5, 0.1, "beats it on neither"),
])
def test_report_says_plainly_how_the_decade_model_compares_to_the_majority(
        accuracy, macro_f1, expected):
    decade = {"test": {"accuracy": accuracy, "macro_f1": macro_f1},
              "baseline": decade_baseline(0.6, 0.2), "train_class_counts": {"2000": 30}}
    text = decade_verdict(decade, {"class_weighting": True,
                                   "decade_selection_metric": "macro_f1"})
    assert "(2000s, 60% of the test songs): accuracy {:.3f} vs 0.600".format(accuracy) in text
    assert expected in text
    if expected == "loses on accuracy":
        assert 'decade_selection_metric = "accuracy"' in text
