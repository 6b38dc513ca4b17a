"""Pure parts of the task graph: form → config overrides, run keys, the Mongo URI handed
to the jobs, and the run record."""
import json

import pytest

from msd_pipeline import params, run_records
from msd_pipeline.connections import mongo_uri_from_connection

RUN = {"dag_id": "msd_local_pipeline", "airflow_run_id": "manual__2026-01-01T00:00:00+00:00",
       "run_key": "manual__2026-01-01T00_00_00_00_00", "target": "local", "params": {"folds": 3},
       "config": {"training": {"folds": 3}}, "run_uri": "/runs/r1",
       "ingest_summary_uri": "/runs/r1/ingest_summary.json",
       "train_summary_uri": "/runs/r1/train_summary.json", "metrics_uri": "/runs/r1/metrics.json",
       "impute_summary_uri": "/runs/r1/impute_summary.json"}
OUTPUTS = {
    "/runs/r1/ingest_summary.json": {"files_seen": 10, "files_ingested": 9, "files_failed": 1},
    "/runs/r1/train_summary.json": {"decade": {"chosen": "logistic_regression",
                                               "test": {"macro_f1": 0.5}, "cv_scores": {}},
                                    "year": {"chosen": "linear_regression"}},
    "/runs/r1/impute_summary.json": {"imputed": 2, "model_version": "msd-song-year/1"},
    "/runs/r1/metrics.json": {"schema_version": 1, "decade": {"chosen": "logistic_regression"}},
}


def test_form_values_become_dotted_overrides():
    overrides = params.config_overrides({
        "folds": 3, "sample_size": 50, "archive_checksum": None, "data_source": "generated",
        "config_overrides": {"training.folds": 4, "mongo.database": "x"}})
    assert overrides == {"training.folds": 4, "ingest.max_files": 50,
                         "staging.mode": "generated", "mongo.database": "x"}


def test_every_form_field_maps_to_a_real_config_key():
    from msdlib.config import load_config

    config = load_config()
    form = params.pipeline_params(config)
    assert set(params.PARAM_CONFIG_KEYS) | {"config_overrides", "train"} == set(form)
    values = {name: param.value for name, param in form.items()}
    assert config.with_overrides(params.config_overrides(values)) == config


def test_run_keys_are_path_and_s3_safe():
    assert run_records.run_key_for("manual__2026-11-23T19:12:57.883956+00:00") == \
        "manual__2026-11-23T19_12_57.883956_00_00"
    assert run_records.run_key_for("scheduled__2026-11-22T00:00:00+00:00").startswith("scheduled__")


def test_mongo_uri_carries_credentials_and_extras(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MSD_TEST_MONGO", json.dumps({
        "conn_type": "mongo", "host": "db.example", "port": 27018, "login": "u",
        "password": "p@ss word", "extra": {"authSource": "admin", "tls": False}}))
    uri = mongo_uri_from_connection("msd_test_mongo")
    assert uri == "mongodb://u:p%40ss+word@db.example:27018/?authSource=admin&tls=false"


def test_run_record_from_the_jobs_outputs():
    record = run_records.build_run_record(
        RUN, {"source": "/songs", "mode": "path", "files": 10, "detail": {}}, "/runs/r1/job.json",
        read_json=OUTPUTS.get, started_at=None, target_details={"spark_conn_id": "spark_default"},
        report_exists=lambda uri: uri == "/runs/r1/report.md")
    assert record["_id"] == "msd_local_pipeline:manual__2026-01-01T00_00_00_00_00"
    assert record["artifacts"] == {"run_uri": "/runs/r1", "metrics_uri": "/runs/r1/metrics.json",
                                   "report_uri": "/runs/r1/report.md",
                                   "config_uri": "/runs/r1/job.json"}
    assert record["ingest"]["files_failed"] == 1
    summary = run_records.summarize(record)
    assert summary["decade"] == {"chosen": "logistic_regression", "test": {"macro_f1": 0.5}}
    assert summary["ingest"] == {"files_seen": 10, "files_ingested": 9, "files_failed": 1}
    assert summary["imputed"] == 2
    json.dumps(summary)  # XCom-safe


def test_run_record_of_an_ingest_only_run():
    run = dict(RUN, params={"train": False})
    outputs = {"/runs/r1/ingest_summary.json": OUTPUTS["/runs/r1/ingest_summary.json"]}
    record = run_records.build_run_record(
        run, {"source": "/songs", "mode": "path", "files": 10, "detail": {}}, "/runs/r1/job.json",
        read_json=outputs.get, started_at=None, target_details={},
        report_exists=lambda uri: False)
    assert record["ingest"]["files_ingested"] == 9
    assert (record["training"], record["metrics"], record["imputation"], record["decision"]) == (
        None, None, None, None)
    summary = run_records.summarize(record)
    assert summary["decision"] is None and summary["ingest"]["files_seen"] == 10


def test_missing_job_output_is_a_clear_error():
    outputs = dict(OUTPUTS)
    del outputs["/runs/r1/metrics.json"]
    with pytest.raises(run_records.MissingOutputError, match="metrics.json not found at /runs/r1"):
        run_records.build_run_record(RUN, {}, "c", read_json=outputs.get, started_at=None,
                                     target_details={}, report_exists=lambda uri: False)
