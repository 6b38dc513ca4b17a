"""Clearing the failed step task of an ``msd_emr_pipeline`` run (one task: add the step and
wait for it): the setups (code, cluster) re-run and the step runs again on the new cluster. The first attempt runs with ``airflow dags test``; the
cleared run resumes as the scheduler would (tests/airflow_programs/resume_cleared_run.py).
How moto plays EMR: tests/emr_dag_support.py."""
import subprocess
import uuid
from typing import Any

import pymongo

from msd_pipeline.run_context import run_key_for

import airflow_support
from emr_dag_support import (DAG_ID, SONGS, RealStepRunner, emr_backend, failing_step,
                             run_airflow_program, run_pipeline, write_config)
from emr_support import EmrStepDriver, StepOutcome, client, latest_run, task_states


class FirstIngestFails:
    """The first step fails (a lost executor, say); every later step runs for real."""

    def __init__(self, real: RealStepRunner):
        self.real = real
        self.failed = False

    def __call__(self, cluster: Any, step: Any) -> StepOutcome:
        if not self.failed:
            self.failed = True
            return failing_step(cluster, step)
        return self.real(cluster, step)


def test_clearing_a_failed_step_reruns_it_on_a_new_cluster(emr_airflow_env, moto_url,
                                                          song_archive, mongo_uri, tmp_path):
    logical_date = "2026-11-05T00:00:00+00:00"  # what `airflow tasks clear` selects by
    database = "emr_e2e_clear_" + uuid.uuid4().hex[:8]
    config = write_config(tmp_path / "config.json", song_archive, database)
    env = {**emr_airflow_env, "MSD_CONFIG": str(config)}
    runner = FirstIngestFails(RealStepRunner(moto_url, tmp_path))
    first = run_pipeline(emr_airflow_env, config, runner, moto_url, logical_date=logical_date)
    assert first.state == "failed" and first.tasks["terminate_cluster"] == "success", first.describe()
    [old_cluster] = first.clusters
    run_id, _ = latest_run(DAG_ID, emr_airflow_env)

    cleared = subprocess.run(
        [airflow_support.AIRFLOW, "tasks", "clear", DAG_ID, "-t", "spark.ingest",
         "-s", logical_date, "-e", logical_date, "-d", "-y"],
        env=env, cwd=env["AIRFLOW_HOME"], capture_output=True, text=True, timeout=300)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    states = task_states(DAG_ID, run_id, emr_airflow_env)
    assert {task: states[task] for task in ("cluster.ship_code", "cluster.create_cluster",
                                            "terminate_cluster")} == dict.fromkeys(
        ("cluster.ship_code", "cluster.create_cluster", "terminate_cluster"), None), states
    assert states["stage.stage_data"] == "success", states

    before = set(emr_backend().clusters)
    driver = EmrStepDriver(moto_url, runner)
    driver.start()
    try:
        output = run_airflow_program("resume_cleared_run.py", [DAG_ID, run_id], env,
                                     timeout=900)
    finally:
        driver.stop()
    assert not driver.errors, driver.errors
    assert latest_run(DAG_ID, emr_airflow_env) == (run_id, "success"), output[-6000:]
    [new_cluster] = [emr_backend().clusters[cid] for cid in set(emr_backend().clusters) - before]
    assert [step.state for step in new_cluster.steps] == ["COMPLETED", "COMPLETED"]
    assert [step.state for step in old_cluster.steps] == ["FAILED"]
    assert old_cluster.state == new_cluster.state == "TERMINATED"
    assert pymongo.MongoClient(mongo_uri)[database]["songs"].count_documents({}) == SONGS
    run_key = run_key_for(run_id)
    assert not [secret["Name"] for secret in client("secretsmanager", moto_url).list_secrets()
                ["SecretList"] if run_key in secret["Name"]]
