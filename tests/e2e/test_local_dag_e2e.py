"""End to end: ``airflow dags test msd_local_pipeline`` against a real Spark standalone
master + worker and a SecantusDB server, on generated songs; then a run whose Mongo is
unreachable, which must fail with the reason in the log."""
import json
import sqlite3
import uuid
from pathlib import Path

import pymongo
import pytest

from airflow_support import (DagTestResult, airflow_env, airflow_home, mongo_connection,
                             run_dags_test, spark_connection)

SONGS = 200
FAST_TRAINING = {
    "training.folds": 2,
    "training.grids": {"logistic_regression": {"regParam": [0.01]},
                       "linear_regression": {"regParam": [0.1]}},
}
FORM = {"data_source": "generated", "generated_songs": SONGS,
        "classifiers": ["logistic_regression"], "regressors": ["linear_regression"], "folds": 2}


@pytest.fixture(scope="module")
def mongo_user(mongo_uri):
    """A user with a password on the test server: the secret that must never leak."""
    user, password = "pipeline", "pw-" + uuid.uuid4().hex
    client = pymongo.MongoClient(mongo_uri)
    client.admin.command("createUser", user, pwd=password, roles=["root"])
    client.close()
    return user, password


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, mongo_uri, mongo_user, spark_master_url, mlflow_tracking_uri):
    work = tmp_path_factory.mktemp("local_dag")
    database = "e2e_" + uuid.uuid4().hex[:10]
    host = mongo_uri.split("//", 1)[1].rstrip("/")
    user, password = mongo_user
    env = airflow_env(
        airflow_home(),
        connections={
            "mongo_default": mongo_connection("mongodb://{}:{}@{}".format(user, password, host),
                                              authSource="admin"),
            "spark_default": spark_connection(spark_master_url),
        },
        config_overrides={"pipeline.retries": 0, "mongo.database": database,
                          "retraining.tracking_uri": mlflow_tracking_uri,
                          "staging.data_dir": str(work / "data"),
                          "training.artifacts_uri": str(work / "artifacts"), **FAST_TRAINING})
    result = run_dags_test("msd_local_pipeline", env, conf=FORM)
    client = pymongo.MongoClient(mongo_uri)
    yield {"result": result, "db": client[database], "work": work, "env": env,
           "password": password}
    client.drop_database(database)
    client.close()


def test_run_succeeds(pipeline_run):
    result: DagTestResult = pipeline_run["result"]
    assert result.state == "success", result.output[-5000:]
    assert result.returncode == 0


def test_songs_ingested_and_unknown_years_imputed(pipeline_run):
    songs = pipeline_run["db"].songs
    assert songs.count_documents({}) == SONGS
    unknown = songs.count_documents({"features.year": None})
    assert unknown > 0
    assert songs.count_documents({"predicted": {"$exists": True}}) == unknown
    assert songs.count_documents({"features.year": {"$ne": None},
                                  "predicted": {"$exists": True}}) == 0


def test_run_record_and_metrics(pipeline_run):
    records = list(pipeline_run["db"].pipeline_runs.find())
    assert len(records) == 1
    record = records[0]
    assert record["_id"] == "msd_local_pipeline:" + record["run_key"]
    assert record["schema_version"] == 1
    assert (record["target"], record["status"]) == ("spark_submit", "success")
    assert record["data"]["mode"] == "generated" and record["data"]["files"] == SONGS
    assert record["data"]["detail"]["delivery"] == "in_place"
    assert record["ingest"]["files_ingested"] == SONGS
    assert record["params"]["classifiers"] == ["logistic_regression"]
    assert record["config"]["training"]["folds"] == 2
    run_dir = Path(record["artifacts"]["run_uri"])
    assert run_dir.parent == pipeline_run["work"] / "artifacts"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert record["metrics"]["decade"]["chosen"] == metrics["decade"]["chosen"] == "logistic_regression"
    assert metrics["linear_algebra"]["openblas_threads"] == "1"  # spark-submit's driver JVM
    decade = record["training"]["decade"]
    assert decade["test"]["macro_f1"] > decade["baseline"]["macro_f1"]
    assert record["training"]["year"]["test"]["mae"] < record["training"]["year"]["baseline"]["mae"]
    report = Path(record["artifacts"]["report_uri"])
    assert report.is_file() and report.parent == run_dir


def test_report_location_in_log_and_summary_in_xcom(pipeline_run):
    result = pipeline_run["result"]
    record = pipeline_run["db"].pipeline_runs.find_one()
    assert "Report: {}".format(record["artifacts"]["report_uri"]) in result.output
    summary = _decode(_xcom_values(pipeline_run["env"], "report.collect_metrics",
                                   record["airflow_run_id"])[0])
    assert summary["run_record_id"] == record["_id"]
    assert summary["ingest"]["files_ingested"] == SONGS
    assert summary["report_uri"] == record["artifacts"]["report_uri"]


def test_mongo_password_never_leaks(pipeline_run):
    password = pipeline_run["password"]
    assert password not in pipeline_run["result"].output
    env = pipeline_run["env"]
    for value in _xcom_values(env) + _rendered_fields(env):
        assert password not in value


def test_unreachable_mongo_fails_the_run_with_the_reason(tmp_path, spark_master_url):
    closed_port = _closed_port()
    env = airflow_env(
        airflow_home(),
        connections={
            "mongo_default": mongo_connection("mongodb://127.0.0.1:{}".format(closed_port),
                                              serverSelectionTimeoutMS=1500),
            "spark_default": spark_connection("local[1]"),
        },
        config_overrides={"pipeline.retries": 0, "staging.data_dir": str(tmp_path / "data"),
                          "training.artifacts_uri": str(tmp_path / "artifacts")})
    result = run_dags_test("msd_local_pipeline", env,
                           conf={"data_source": "generated", "generated_songs": 5})
    assert result.state == "failed"
    assert result.returncode != 0
    assert "Cannot execute" in result.output  # the spark-submit step failed ...
    assert "127.0.0.1:{}".format(closed_port) in result.output  # ... and says where
    assert "ServerSelectionTimeoutError" in result.output or "Connection refused" in result.output
    assert "[DAG TEST] starting task_id=report.collect_metrics" not in result.output


def _closed_port() -> int:
    from msd_devtools.services import free_port

    return free_port()


def _airflow_db(env):
    return sqlite3.connect(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"][len("sqlite:///"):])


def _xcom_values(env, task_id=None, run_id=None):
    query, args = "SELECT value FROM xcom WHERE dag_id = 'msd_local_pipeline'", []
    if task_id:
        query, args = query + " AND task_id = ? AND key = 'return_value'", args + [task_id]
    if run_id:
        query, args = query + " AND run_id = ?", args + [run_id]
    with _airflow_db(env) as db:
        return [str(row[0]) for row in db.execute(query, args)]


def _decode(stored):
    """An XCom value as stored by Airflow 3 (JSON, possibly JSON-encoded twice)."""
    value = json.loads(stored)
    return json.loads(value) if isinstance(value, str) else value


def _rendered_fields(env):
    with _airflow_db(env) as db:
        return [str(row[0]) for row in db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields "
            "WHERE dag_id = 'msd_local_pipeline'")]


def test_ingest_publishes_the_songs_asset_with_its_run_counts_and_source(pipeline_run):
    record = pipeline_run["db"].pipeline_runs.find_one()
    with _airflow_db(pipeline_run["env"]) as db:
        rows = db.execute(
            "SELECT e.extra, e.source_dag_id, e.source_run_id FROM asset_event e "
            "JOIN asset a ON a.id = e.asset_id WHERE a.name = 'songs' AND e.source_run_id = ?",
            (record["airflow_run_id"],)).fetchall()
    assert len(rows) == 1
    extra, source_dag_id, source_run_id = rows[0]
    extra = json.loads(extra)
    assert (source_dag_id, source_run_id) == ("msd_local_pipeline", record["airflow_run_id"])
    assert extra["run_id"] == record["airflow_run_id"]
    assert extra["counts"]["files_ingested"] == SONGS
    assert extra["source"] == record["data"]["source"]
    assert extra["retrain"] is False  # this run trains on its own songs


def test_first_model_promoted_and_imputation_names_its_version(pipeline_run):
    record = pipeline_run["db"].pipeline_runs.find_one()
    decision = record["decision"]
    assert decision["status"] == "promoted"
    assert decision["champion"] is None
    assert (decision["airflow_run_id"], decision["run_type"]) == (record["airflow_run_id"],
                                                                  "manual")
    assert decision["dag_version_id"]
    assert [check["rule"] for check in decision["gate"]["checks"]] == ["absolute", "first_model"]
    assert decision["evaluation_split"]["songs"] == record["metrics"]["data"]["test"]
    label = decision["challenger"]["label"]
    assert pipeline_run["db"].model_decisions.find_one({"_id": record["_id"]})["status"] == \
        "promoted"
    versions = pipeline_run["db"].songs.distinct("predicted.model_version")
    assert versions == [label]
    assert record["imputation"]["model_version"] == label
    report = Path(record["artifacts"]["report_uri"]).read_text()
    assert "**promoted**: challenger `{}`".format(label) in report
    assert "- [x] first_model:" in report


def test_the_registry_keeps_the_report_with_its_decision(pipeline_run, mlflow_tracking_uri):
    from mlflow.tracking import MlflowClient

    decision = pipeline_run["db"].pipeline_runs.find_one()["decision"]
    client = MlflowClient(mlflow_tracking_uri)
    logged = client.download_artifacts(decision["challenger"]["mlflow_run_id"], "run/report.md",
                                       str(pipeline_run["work"]))
    assert "**promoted**: challenger `{}`".format(decision["challenger"]["label"]) in \
        Path(logged).read_text()


@pytest.fixture(scope="module")
def retrain_run(pipeline_run):
    """msd_retrain_local on the same songs: its challenger ties the champion."""
    db = pipeline_run["db"]
    before = {doc["_id"]: doc["predicted"] for doc in db.songs.find(
        {"predicted": {"$exists": True}}, {"predicted": 1})}
    result = run_dags_test("msd_retrain_local", pipeline_run["env"],
                           conf={"classifiers": ["logistic_regression"],
                                 "regressors": ["linear_regression"], "folds": 2})
    return {"result": result, "before": before}


def test_retrain_rejects_a_challenger_no_better_than_the_champion(pipeline_run, retrain_run):
    result = retrain_run["result"]
    assert result.state == "success", result.output[-5000:]
    db = pipeline_run["db"]
    record = db.pipeline_runs.find_one({"dag_id": "msd_retrain_local"})
    decision = record["decision"]
    assert decision["status"] == "rejected"
    first = db.pipeline_runs.find_one({"dag_id": "msd_local_pipeline"})["decision"]
    assert decision["champion"]["label"] == first["challenger"]["label"]
    assert decision["evaluation_split"] == first["evaluation_split"]
    failed = [check["rule"] for check in decision["gate"]["checks"] if not check["passed"]]
    assert failed == ["year_rmse"]  # same songs, same split: no margin gained
    assert record["data"] is None and record["ingest"] is None
    assert "**rejected**" in Path(record["artifacts"]["report_uri"]).read_text()


def test_imputation_after_a_rejected_challenger_leaves_predictions_unchanged(
        pipeline_run, retrain_run):
    db = pipeline_run["db"]
    after = {doc["_id"]: doc["predicted"] for doc in db.songs.find(
        {"predicted": {"$exists": True}}, {"predicted": 1})}
    assert after == retrain_run["before"] and after
    record = db.pipeline_runs.find_one({"dag_id": "msd_retrain_local"})
    assert record["imputation"]["imputed"] == 0
    assert record["imputation"]["already_current"] == len(after)
