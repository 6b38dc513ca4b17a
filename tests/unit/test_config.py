"""The typed configuration: defaults file, overrides, and clear errors."""
import json

import pytest

from msdlib.config import ConfigError, PipelineConfig, from_dict, load_config


def test_project_file_loads_and_matches_code_defaults_where_set():
    config = load_config()
    assert config.mongo.songs_collection == "songs"
    assert config.ingest.array_encoding in {"list", "float32"}
    assert config.training.folds >= 2


def test_overrides_use_dotted_keys_and_keep_types():
    config = PipelineConfig().with_overrides({"training.folds": 3, "ingest.max_failed_fraction": 0})
    assert config.training.folds == 3
    assert config.ingest.max_failed_fraction == 0.0
    assert isinstance(config.ingest.max_failed_fraction, float)


@pytest.mark.parametrize("overrides, message", [
    ({"training.fold": 3}, "unknown config key in override: training.fold"),
    ({"nosuch.folds": 3}, "unknown config section"),
    ({"training.folds": "3"}, "training.folds must be int"),
    ({"training.impute": 1}, "training.impute must be bool"),
])
def test_bad_overrides_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig().with_overrides(overrides)


def test_unknown_keys_in_file_are_rejected(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"ingest": {"sauce": "x"}}))
    with pytest.raises(ConfigError, match="unknown config keys: ingest.sauce"):
        load_config(str(path))


def test_json_round_trip_is_what_jobs_receive(tmp_path):
    config = load_config(overrides={"training.seed": 7})
    path = tmp_path / "job-config.json"
    path.write_text(config.to_json())
    assert load_config(str(path)) == config


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "absent.toml"))


def test_env_var_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "alt.json"
    path.write_text(json.dumps({"mongo": {"database": "alt"}}))
    monkeypatch.setenv("MSD_CONFIG", str(path))
    assert load_config().mongo.database == "alt"


def test_sections_must_be_tables():
    with pytest.raises(ConfigError, match="training must be a table"):
        from_dict({"training": 3})
