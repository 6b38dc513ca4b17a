"""The typed configuration: defaults file, overrides, and clear errors."""
import json

import pytest

from msdlib.config import (DEFAULT_CONFIG_PATH, ConfigError, PipelineConfig, from_dict,
                           load_config, settings_info)


def test_the_shipped_file_overrides_nothing():
    assert load_config(DEFAULT_CONFIG_PATH) == PipelineConfig()


@pytest.mark.parametrize("name, text", [("empty.json", "{}"), ("empty.toml", ""),
                                        ("sections.toml", "[training]\n[emr]\n")])
def test_an_empty_file_is_exactly_the_defaults(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert load_config(str(path)) == PipelineConfig()


def test_a_file_sets_only_what_it_names(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[training]\nfolds = 4\n[training.grids.linear_regression]\n'
                    'regParam = [0.5]\n[spark.conf]\n"spark.executor.cores" = "2"\n')
    config = load_config(str(path))
    defaults = PipelineConfig()
    assert config.training.folds == 4
    assert config.training.grids["linear_regression"] == {"regParam": [0.5]}
    assert config.training.grids["gbt_regressor"] == defaults.training.grids["gbt_regressor"]
    assert config.spark.conf == {**defaults.spark.conf, "spark.executor.cores": "2"}
    assert config.training.seed == defaults.training.seed


def test_every_setting_is_described_once():
    infos = settings_info()
    assert len({info.key for info in infos}) == len(infos)
    forms = [info.form.name for info in infos if info.form]
    assert len(set(forms)) == len(forms)
    assert from_dict({}) == PipelineConfig()  # every default passes its own rule


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
    ({"ingest.array_encoding": "f16"}, "ingest.array_encoding must be one of list, float32"),
    ({"ingest.max_failed_fraction": 1.5}, "ingest.max_failed_fraction must be at most 1.0"),
    ({"ingest.year_min": 2031}, "ingest.year_min must not exceed ingest.year_max"),
    ({"staging.mode": "ftp"}, "staging.mode must be one of auto, path, url, generated"),
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
