"""``airflow dags test msd_emr_pipeline`` against moto, on the paths a run takes: success
(every step run for real on local Spark), a failed step, cluster creation failing after the
cluster id exists, a step timeout. Each ends with every cluster of the run
terminated and the run secret deleted, and no secret (AWS keys, Mongo password) in the
task logs, the metadata DB (XCom, rendered fields) or the step arguments.
How moto plays EMR: tests/emr_dag_support.py."""
import uuid

import pymongo
from moto.emr.models import Cluster

from emr_dag_support import (BUCKET, FAILED_STEP_MARKER, SONGS, RealStepRunner,
                             assert_deferred, assert_no_secret_leaked, assert_run_cleaned_up,
                             failing_step, hanging_step, run_pipeline, write_config)
from emr_support import client


def test_success_path_records_metrics_and_terminates(emr_airflow_env, moto_url, song_archive,
                                                     mongo_uri, tmp_path):
    database = "emr_e2e_" + uuid.uuid4().hex[:8]
    config = write_config(tmp_path / "config.json", song_archive, database)
    run = run_pipeline(emr_airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url)

    assert run.state == "success", run.describe()
    db = pymongo.MongoClient(mongo_uri)[database]
    # Approval is off by default. A challenger the gate rejects is not promoted, and with
    # no champion at all there is nothing to impute with.
    promoted = db["model_decisions"].find_one()["status"] == "promoted"
    skipped = set() if promoted else {
        "model.promote", "spark.impute"}
    not_done = {task for task, state in run.tasks.items() if state != "success"}
    assert not_done - {"model.approve"} == skipped, run.tasks
    assert {run.tasks[task] for task in not_done} <= {"skipped"}, run.tasks
    assert_run_cleaned_up(run, moto_url)
    [cluster] = run.clusters
    # ingest, train_evaluate (challenger + champion on one split), impute (the champion)
    assert [step.state for step in cluster.steps] == ["COMPLETED"] * (3 if promoted else 2)

    assert db["songs"].count_documents({}) == SONGS
    record = db["pipeline_runs"].find_one()
    assert record["target"] == "emr" and record["status"] == "success"
    assert record["metrics"] and record["ingest"] and record["training"]
    details = record["target_details"]
    assert details["cluster_id"] == cluster.id
    assert details["cost"]["instance_hours"] > 0 and details["cost"]["estimated_usd"] > 0
    # Created after staging: the ready cluster waits only for the first step's scheduling.
    print("idle before the first step: %.1f s" % details["idle_before_first_step_seconds"])
    assert 0 <= details["idle_before_first_step_seconds"] < 30
    assert record["artifacts"]["metrics_uri"].startswith(f"s3://{BUCKET}/pipeline/artifacts/")
    assert "Report: s3://" in run.logs
    bucket, _, key = record["artifacts"]["report_uri"][len("s3://"):].partition("/")
    report = client("s3", moto_url).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert "**{}**: challenger `{}`".format(record["decision"]["status"],
                                           record["decision"]["challenger"]["label"]) in report
    assert_deferred(run)
    assert_no_secret_leaked(emr_airflow_env, run)


def test_failed_step_fails_the_run_shows_its_log_and_terminates(emr_airflow_env, moto_url,
                                                                song_archive, tmp_path):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_failed")
    run = run_pipeline(emr_airflow_env, config, failing_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["spark.ingest"] == "failed", run.describe()
    assert run.tasks["terminate_cluster"] == "success", run.describe()
    assert_run_cleaned_up(run, moto_url)
    assert FAILED_STEP_MARKER in run.logs  # the step's stderr, fetched from LogUri
    # No run record (collect_metrics never ran): the final cost is logged all the same.
    assert "Final cost estimate of run" in run.logs
    assert "the final cost is in this log only" in run.logs
    assert_no_secret_leaked(emr_airflow_env, run)


def test_creation_failing_after_the_cluster_exists_terminates_it(emr_airflow_env, moto_url,
                                                                  song_archive, tmp_path,
                                                                  monkeypatch):
    def stuck_bootstrapping(cluster):
        cluster.state = "BOOTSTRAPPING"

    monkeypatch.setattr(Cluster, "run_bootstrap_actions", stuck_bootstrapping)
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_create",
                          create_timeout_seconds=3)
    run = run_pipeline(emr_airflow_env, config, hanging_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["cluster.create_cluster"] == "failed", run.describe()
    assert run.tasks["terminate_cluster"] == "success", run.describe()
    # Deferred, the creator fails without pushing the cluster id: the teardown finds the
    # cluster by the run's name and tag.
    [cluster] = run.clusters
    assert f"Terminating cluster {cluster.id}" in run.logs
    assert_run_cleaned_up(run, moto_url)
    assert_no_secret_leaked(emr_airflow_env, run)


def test_step_timeout_fails_the_run_and_terminates(emr_airflow_env, moto_url, song_archive,
                                                   tmp_path):
    """Not deferred: the step task waits in the worker (emr.deferrable = false)."""
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_timeout",
                          step_timeout_seconds=4, deferrable=False)
    run = run_pipeline(emr_airflow_env, config, hanging_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["spark.ingest"] == "failed", run.describe()
    assert "max attempts reached" in run.logs, run.describe()
    assert "[DAG TEST] Trigger completed" not in run.output
    assert run.tasks["terminate_cluster"] == "success", run.describe()
    assert_run_cleaned_up(run, moto_url)
    assert_no_secret_leaked(emr_airflow_env, run)
