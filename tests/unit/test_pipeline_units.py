"""Pure parts of the task graph: form → config overrides, run keys, the Mongo URI handed
to the jobs, and the run record."""
import dataclasses
import json

import pytest

from msdlib.config import PipelineConfig, parse_time_overrides
from msd_pipeline import params, run_records
from msd_pipeline.run_context import RunContext, run_key_for
from msd_pipeline.connections import mongo_uri_from_connection

RUN = RunContext(dag_id="msd_local_pipeline", airflow_run_id="manual__2026-01-01T00:00:00+00:00",
                 target="spark_submit", params={"folds": 3}, run_uri="/runs/r1",
                 config=PipelineConfig().with_overrides({"training.folds": 3}))
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
        "emr_core_on_spot": True,
        "config_overrides": {"training.folds": 4, "mongo.database": "x"}}, "spark_submit")
    assert overrides == {"training.folds": 4, "ingest.max_files": 50,
                         "staging.mode": "generated", "mongo.database": "x"}
    assert params.config_overrides({"emr_core_on_spot": True}, "emr") == {
        "emr.core_on_spot": True}


@pytest.mark.parametrize("target", ["spark_submit", "emr"])
@pytest.mark.parametrize("retrain_only", [False, True])
def test_the_form_comes_from_the_config_metadata(target, retrain_only):
    config = PipelineConfig()
    form = params.pipeline_params(config, target, retrain_only)
    settings = params.form_settings(target, retrain_only)
    extra = {params.OVERRIDES_PARAM} | (set() if retrain_only else {params.TRAIN_PARAM})
    assert {info.form.name for info in settings} | extra == set(form)
    assert ("emr_core_on_spot" in form) == (target == "emr")
    assert ("data_source" in form) != retrain_only
    values = {name: param.value for name, param in form.items()}
    assert config.with_overrides(params.config_overrides(values, target)) == config


def test_form_bounds_are_the_config_rules():
    form = params.pipeline_params(PipelineConfig(), "emr")
    folds = form["folds"].schema
    assert (folds["type"], folds["minimum"], folds["maximum"]) == ("integer", 2, 10)
    assert form["test_fraction"].schema["exclusiveMaximum"] == 1.0
    assert form["data_source"].schema["enum"] == ["auto", "path", "url", "generated"]
    assert form["classifiers"].schema["items"]["enum"][0] == "logistic_regression"
    assert form["emr_staging_letters"].schema["items"]["pattern"] == "[A-Za-z]"
    assert form["archive_checksum"].schema["type"] == ["null", "string"]
    assert form["archive_checksum"].value is None


def test_run_keys_are_path_and_s3_safe():
    assert run_key_for("manual__2026-11-23T19:12:57.883956+00:00") == \
        "manual__2026-11-23T19_12_57.883956_00_00"
    assert run_key_for("scheduled__2026-11-22T00:00:00+00:00").startswith("scheduled__")


def test_the_run_context_round_trips_through_xcom():
    data = json.loads(json.dumps(RUN.to_xcom()))
    assert RunContext.from_xcom(data) == RUN
    assert data["run_key"] == "manual__2026-01-01T00_00_00_00_00"
    assert data["metrics_uri"] == "/runs/r1/metrics.json"
    assert data["config"]["training"]["folds"] == 3


def test_a_run_cannot_override_what_the_dag_file_fixed():
    assert parse_time_overrides({"pipeline.retries": 0, "training.folds": 3, "emr": {},
                                 "emr.s3_root": "s3://b/p"}) == ["emr", "pipeline.retries"]


def test_mongo_uri_carries_credentials_and_extras(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MSD_TEST_MONGO", json.dumps({
        "conn_type": "mongo", "host": "db.example", "port": 27018, "login": "u",
        "password": "p@ss word", "extra": {"authSource": "admin", "tls": False}}))
    uri = mongo_uri_from_connection("msd_test_mongo")
    assert uri == "mongodb://u:p%40ss+word@db.example:27018/?authSource=admin&tls=false"


def test_an_srv_connection_gives_an_srv_uri_as_mongohook_connects(monkeypatch):
    """MongoHook takes ``srv`` out of the options and switches the scheme; the executors
    get the same URI (Atlas: no port)."""
    monkeypatch.setenv("AIRFLOW_CONN_MSD_TEST_ATLAS",
                       "mongo://u:secret-pw@cluster0.ab1cd.mongodb.net/msd?srv=true&w=majority")
    uri = mongo_uri_from_connection("msd_test_atlas")
    assert uri == "mongodb+srv://u:secret-pw@cluster0.ab1cd.mongodb.net/msd?w=majority"


def test_allow_insecure_becomes_the_uri_option_mongohook_sets(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MSD_TEST_TLS", json.dumps({
        "conn_type": "mongo", "host": "db.example", "extra": {"tls": True, "allow_insecure": True}}))
    assert mongo_uri_from_connection("msd_test_tls") == \
        "mongodb://db.example/?tls=true&tlsAllowInvalidCertificates=true"


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
    run = dataclasses.replace(RUN, params={"train": False})
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
