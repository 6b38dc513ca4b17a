"""The serving package's pure parts: Spark's vector/matrix encodings, tree walking,
the perceptron's weight layout, request validation, the response rounding, settings,
API keys, request ids and the model metrics."""
import numpy as np
import pytest

from msd_serving import stages
from msd_serving.app import predictions
from msd_serving.champion import ChampionWatcher, ModelSourceError, VersionRef
from msd_serving.inputs import InputError, ModelInputs
from msd_serving.observability import ServiceMetrics, request_id
from msd_serving.security import ApiKeys
from msd_serving.settings import ServingSettings, SettingsError
from msd_serving.spark_format import matrix, vector
from msdlib.core.features import FEATURE_NAMES


def test_dense_and_sparse_vectors():
    assert vector({"type": 1, "size": None, "indices": None, "values": [1.0, 2.0]}).tolist() \
        == [1.0, 2.0]
    assert vector({"type": 0, "size": 4, "indices": [1, 3], "values": [5.0, 6.0]}).tolist() \
        == [0.0, 5.0, 0.0, 6.0]


@pytest.mark.parametrize("encoded", [
    {"type": 1, "numRows": 2, "numCols": 3, "isTransposed": False,
     "values": [1, 4, 2, 5, 3, 6], "colPtrs": None, "rowIndices": None},
    {"type": 1, "numRows": 2, "numCols": 3, "isTransposed": True,
     "values": [1, 2, 3, 4, 5, 6], "colPtrs": None, "rowIndices": None},
    {"type": 0, "numRows": 2, "numCols": 3, "isTransposed": False,  # CSC
     "values": [1, 4, 2, 5, 3, 6], "colPtrs": [0, 2, 4, 6], "rowIndices": [0, 1] * 3},
    {"type": 0, "numRows": 2, "numCols": 3, "isTransposed": True,  # CSR
     "values": [1, 2, 3, 4, 5, 6], "colPtrs": [0, 3, 6], "rowIndices": [0, 1, 2] * 2},
])
def test_matrix_layouts(encoded):
    assert matrix(encoded).tolist() == [[1, 2, 3], [4, 5, 6]]


def node(node_id, left=-1, right=-1, feature=0, threshold=0.0, prediction=0.0):
    return {"id": node_id, "leftChild": left, "rightChild": right, "prediction": prediction,
            "impurityStats": [], "split": {"featureIndex": feature,
                                           "leftCategoriesOrThreshold": [threshold],
                                           "numCategories": -1}}


def test_trees_walk_left_on_less_or_equal_and_sum_weighted():
    # tree 0: x0 <= 1 → 10, else (x1 <= 0 → 20, else 30); tree 1: a single leaf 5.
    tree0 = [node(0, 1, 2, feature=0, threshold=1.0), node(1, prediction=10.0),
             node(2, 3, 4, feature=1, threshold=0.0), node(3, prediction=20.0),
             node(4, prediction=30.0)]
    tree1 = [node(0, prediction=5.0)]
    trees = stages.flatten_trees([tree0, tree1], [1.0, 0.5], lambda n: n["prediction"])
    assert trees.depth == 2
    x = np.array([[1.0, 9.0], [1.5, 0.0], [2.0, 0.1]])
    assert trees.weighted_sum(x).tolist() == [12.5, 22.5, 32.5]
    forest = stages.RandomForestRegressor("f", "p", trees=trees)
    assert forest.predict(x).tolist() == [6.25, 11.25, 16.25]


def test_categorical_splits_are_refused():
    tree = [node(0, 1, 2), node(1), node(2)]
    tree[0]["split"]["numCategories"] = 3
    with pytest.raises(stages.UnsupportedModelError, match="categorical"):
        stages.flatten_trees([tree], [1.0], lambda n: 0.0)


def test_class_distribution_normalises_counts():
    assert stages.class_distribution({"impurityStats": [1.0, 3.0]}) == [0.25, 0.75]
    assert stages.class_distribution({"impurityStats": [0.0, 0.0]}) == [0.0, 0.0]


def test_perceptron_reads_column_major_layers():
    # 2 inputs → 2 hidden (sigmoid) → 2 outputs; Spark stores W (out x in) column-major.
    w1, b1 = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -0.5])
    w2, b2 = np.array([[1.0, -1.0], [2.0, 0.0]]), np.array([0.0, 1.0])
    weights = np.concatenate([w1.T.ravel(), b1, w2.T.ravel(), b2])
    mlp = stages.MultilayerPerceptron("f", "p", layers=[2, 2, 2], weights=weights)
    x = np.array([[0.3, -0.2]])
    hidden = 1.0 / (1.0 + np.exp(-(w1 @ x[0] + b1)))
    assert np.allclose(mlp.raw(x)[0], w2 @ hidden + b2)
    with pytest.raises(stages.UnsupportedModelError, match="do not fit"):
        stages.MultilayerPerceptron("f", "p", layers=[2, 3], weights=weights)


def test_one_vs_rest_takes_each_models_positive_score():
    class Fixed(stages.Classifier):
        def __init__(self, score):
            super().__init__("f", "p")
            self.score = score

        def raw(self, features):
            return np.column_stack([-self.score * features[:, 0], self.score * features[:, 0]])

    ovr = stages.OneVsRest("f", "p", models=[Fixed(1.0), Fixed(3.0), Fixed(2.0)])
    out = ovr.transform({"f": np.array([[1.0], [-1.0]])})
    assert out["p"].tolist() == [1.0, 0.0]


def test_scaler_multiplies_by_inverse_std_and_zeroes_constant_features():
    scaler = stages.StandardScaler("in", "out", mean=np.array([1.0, 2.0]),
                                   std=np.array([2.0, 0.0]))
    assert scaler.transform({"in": np.array([[3.0, 7.0]])})["out"].tolist() == [[1.0, 0.0]]


def test_assembler_refuses_nan_like_sparks_error_mode():
    assembler = stages.VectorAssembler(["a", "b"], "v")
    with pytest.raises(ValueError, match="NaN"):
        assembler.transform({"a": np.array([1.0]), "b": np.array([np.nan])})


def inputs():
    return ModelInputs(list(FEATURE_NAMES[:3]) + ["song_tempo"], known_fields=["energy"])


def test_json_songs_become_model_columns():
    ids, timbre, fields = inputs().from_json(
        [{"track_id": "T1", "timbre": [1.0] * 90, "tempo": 100, "energy": 0.0}], 10)
    frame = inputs().frame(timbre, fields)
    assert ids == ["T1"]
    assert frame["song_tempo"].tolist() == [100.0]
    assert frame[FEATURE_NAMES[89]].tolist() == [1.0]


@pytest.mark.parametrize("songs,message", [
    ([], "empty"),
    ({"timbre": []}, "must be a list"),
    ([{"timbre": [1.0] * 90, "tempo": 1.0}] * 3, "3 songs in one request; the limit is 2"),
    ([[1.0] * 90], "song 0: expected an object"),
    ([{"timbre": [1.0] * 90}], "missing field 'tempo'"),
    ([{"timbre": [1.0] * 90, "tempo": True}], "is a boolean, not a number"),
    ([{"timbre": [1.0] * 90, "tempo": None}], "is null"),
    ([{"timbre": [1.0] * 90, "tempo": 1.0, "track_id": 7}], "'track_id' must be a string"),
    ([{"timbre": "1,2", "tempo": 1.0}], "'timbre' must be a list of 90"),
])
def test_bad_json_songs_are_named(songs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        inputs().from_json(songs, 2)


def test_a_model_reading_unknown_columns_is_refused():
    with pytest.raises(ValueError, match="artist_hotness"):
        ModelInputs(["artist_hotness"])


def test_non_msd_upload_is_named():
    with pytest.raises(InputError, match="x.h5: not a usable MSD song file .not_hdf5"):
        inputs().from_h5("x.h5", b"plain text, not HDF5")


def test_predictions_round_and_clip_to_the_training_years():
    out = predictions(["a", None], np.array([1969.6, 2031.2]), np.array([1970, 2000]),
                      [1965, 2010])
    assert out == [{"track_id": "a", "year": 1969.6, "year_rounded": 1970, "decade": 1970},
                   {"track_id": None, "year": 2031.2, "year_rounded": 2010, "decade": 2000}]


def test_settings_need_a_model_source():
    with pytest.raises(ValueError, match="no model source"):
        ServingSettings.from_env({}).source()
    assert ServingSettings.from_env({"MSD_SERVING_RUN_URI": "runs/r1"}).source().run_uri \
        == "runs/r1"


class Source:
    def __init__(self):
        self.refs = []

    def describe(self):
        return "test source"

    def resolve(self):
        ref = self.refs[0]
        if isinstance(ref, Exception):
            raise ref
        return ref


def test_watcher_swaps_only_on_a_new_version_and_keeps_serving_on_errors():
    source, loaded, swaps, failures = Source(), [], [], []

    def loader(ref):
        loaded.append(ref)
        if ref.run_uri == "broken":
            raise OSError("no model files")
        return type("Served", (), {"ref": ref, "label": ref.run_uri})()

    watcher = ChampionWatcher(source, poll_seconds=60, loader=loader,
                              on_swap=lambda model: swaps.append(model.label),
                              on_failure=failures.append)
    source.refs = [ModelSourceError("no champion yet")]
    assert watcher.refresh() is False and watcher.model is None
    assert "no champion yet" in watcher.last_error
    source.refs = [VersionRef("run-1", ("1",))]
    assert watcher.refresh() is True and watcher.refresh() is False
    assert len(loaded) == 1 and watcher.last_error is None
    source.refs = [VersionRef("run-2", ("2",))]
    assert watcher.refresh() is True and watcher.model.ref.run_uri == "run-2"
    source.refs = [OSError("registry down")]
    assert watcher.refresh() is False and watcher.model.ref.run_uri == "run-2"
    assert "registry down" in watcher.last_error
    source.refs = [VersionRef("broken", ("3",))]
    assert watcher.refresh() is False and watcher.model.ref.run_uri == "run-2"
    assert swaps == ["run-1", "run-2"] and failures == ["resolve", "resolve", "load"]


def test_settings_come_from_the_environment_and_round_trip():
    settings = ServingSettings.from_env({"MSD_SERVING_RUN_URI": "runs/r1",
                                         "MSD_SERVING_POLL_SECONDS": "2.5",
                                         "MSD_SERVING_REQUIRE_KEYS": "true",
                                         "MSD_SERVING_WORKERS": "3"})
    assert (settings.poll_seconds, settings.require_keys, settings.workers) == (2.5, True, 3)
    assert ServingSettings.from_env(settings.to_env()) == settings
    assert ServingSettings.from_env({"MSD_SERVING_REQUIRE_KEYS": "auto"}).require_keys is None
    with pytest.raises(SettingsError, match="MSD_SERVING_REQUIRE_KEYS='maybe'"):
        ServingSettings.from_env({"MSD_SERVING_REQUIRE_KEYS": "maybe"})


def test_api_keys_come_from_the_named_file_and_variable(tmp_path):
    (tmp_path / "keys").write_text("# team A\nkey-a1\n\n  key-a2  \n")
    settings = ServingSettings(api_keys_file=str(tmp_path / "keys"), api_keys_env="TEAM_KEYS")
    assert settings.api_keys({"TEAM_KEYS": "key-b1, key-b2", "MSD_SERVING_API_KEYS": "x"}) \
        == ["key-a1", "key-a2", "key-b1", "key-b2"]
    with pytest.raises(SettingsError, match="MSD_SERVING_API_KEYS_FILE.*unreadable"):
        ServingSettings(api_keys_file=str(tmp_path / "missing")).api_keys({})


@pytest.mark.parametrize("require,configured,expected", [
    (None, 0, False), (None, 2, True), (False, 2, False), (True, 1, True)])
def test_predict_needs_a_key_when_required_or_keys_exist(require, configured, expected):
    assert ServingSettings(require_keys=require).keys_required(configured) is expected


def test_required_keys_without_any_key_refuse_to_start():
    with pytest.raises(SettingsError, match="no API key is configured"):
        ServingSettings(require_keys=True).keys_required(0)


def test_api_keys_answer_401_without_and_403_with_a_wrong_key():
    from fastapi import HTTPException

    keys = ApiKeys(["first-key", "second-key"])
    assert keys.matches("second-key") and not keys.matches("second-key ")
    keys.check("first-key", "POST /predict")
    for presented, status, message in [(None, 401, "POST /predict needs an API key"),
                                       ("", 401, "X-API-Key header"),
                                       ("guess", 403, "not valid")]:
        with pytest.raises(HTTPException) as refused:
            keys.check(presented, "POST /predict")
        assert refused.value.status_code == status and message in refused.value.detail
        assert "first-key" not in refused.value.detail
    with pytest.raises(HTTPException, match="none is configured"):
        ApiKeys([]).check("anything", "POST /model/refresh")


def test_request_ids_are_kept_when_plain_and_replaced_otherwise():
    assert request_id({"headers": [(b"x-request-id", b"lb-7f3a.01")]}) == "lb-7f3a.01"
    for unsafe in (b"has space", b"x" * 200, b"line\nbreak"):
        generated = request_id({"headers": [(b"x-request-id", unsafe)]})
        assert len(generated) == 32 and generated != unsafe.decode()


def test_model_metrics_follow_swaps_and_failures():
    from prometheus_client.parser import text_string_to_metric_families

    metrics = ServiceMetrics()
    for run_id in ("run-1", "run-2"):
        metrics.swapped(type("Served", (), {"label": run_id + "/m", "run_id": run_id,
                                            "ref": VersionRef(run_id, (run_id,))})())
    metrics.failed("load")
    samples = {(s.name, s.labels.get("run_id") or s.labels.get("stage")): s.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               for s in family.samples}
    assert samples[("msd_serving_model_info", "run-1")] == 0
    assert samples[("msd_serving_model_info", "run-2")] == 1
    assert samples[("msd_serving_model_load_failures_total", "load")] == 1
    assert samples[("msd_serving_model_last_swap_timestamp_seconds", None)] > 0
