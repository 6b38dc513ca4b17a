"""``airflow dags test msd_emr_pipeline`` against moto, on what a first real run showed to
be holes: a cluster that ended with errors, the final cost over every cluster of a run, a
termination that is denied, a run timeout (the scheduler's part applied to the metadata
DB, then the DAG processor's own failure-callback code). Clusters the run does not own, in
a spot run whose final cost the teardown records: the success path of
tests/e2e/test_emr_run_paths.py; a missing price: the run of tests/e2e/test_emr_iam.py.
How moto plays EMR: tests/emr_dag_support.py."""
import datetime
import sqlite3
import uuid
from pathlib import Path
from typing import Dict, List

import pytest

from emr_dag_support import (DAG_ID, EmrAccessDenied, RealStepRunner, assert_run_cleaned_up,
                             create_cluster, emr_backend, hanging_step, run_airflow_program,
                             run_pipeline, write_config)
from emr_support import REGION, aws_env, client, latest_run, metadata_db_path, wait_until
from msdlib.config import load_config


def test_teardown_accepts_a_cluster_that_ended_with_errors(moto_url, monkeypatch):
    """A cluster that died by itself (e.g. a failed bootstrap) counts as ended."""
    from msd_pipeline.targets.emr.hook import PipelineEmrHook

    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    emr = client("emr", moto_url)
    cluster_id = emr.run_job_flow(Name="ended-with-errors", ReleaseLabel="emr-7.5.0",
                                  Instances={"KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
    cluster = emr_backend().clusters[cluster_id]
    try:
        cluster.state = "TERMINATED_WITH_ERRORS"
        hook = PipelineEmrHook(aws_conn_id=None, region_name=REGION)
        hook.wait_until_ended([cluster_id], poll_seconds=1, timeout_seconds=2)  # a warning
        cluster.state = "WAITING"
        with pytest.raises(Exception, match="[Ww]aiter"):
            hook.wait_until_ended([cluster_id], poll_seconds=1, timeout_seconds=2)
    finally:  # the next tests check that no cluster is left active
        cluster.terminate()


def test_the_final_cost_counts_every_cluster_of_the_run_ended_or_not(moto_url, monkeypatch):
    """A cluster the run already ended (released before an approval) and a second one
    (imputation, or a retried creation) both count, each over its own timeline; another
    run's cluster of the same name does not."""
    from msd_pipeline.targets.emr import cost
    from msd_pipeline.targets.emr.cluster import DAG_TAG, RUN_TAG
    from msd_pipeline.targets.emr.hook import PipelineEmrHook

    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    run_id = "manual__cost-" + uuid.uuid4().hex[:8]
    name = "msd-pipeline-" + run_id
    ours = {DAG_TAG: DAG_ID, RUN_TAG: run_id}
    released, impute = create_cluster(moto_url, name, ours), create_cluster(moto_url, name, ours)
    other_run = create_cluster(moto_url, name, {DAG_TAG: DAG_ID, RUN_TAG: "another-run"})
    backend = emr_backend()
    try:
        backend.clusters[released].terminate()
        hook = PipelineEmrHook(aws_conn_id=None, region_name=REGION)
        clusters = hook.describe_run_clusters(name, DAG_ID, run_id, created_after=started)
        estimate = cost.run_cost(load_config().emr, clusters, final=True)
        assert sorted(item["cluster_id"] for item in estimate["clusters"]) == sorted([released, impute])
        assert estimate["estimated_usd"] is not None and estimate["missing_prices"] == []
        assert estimate["instance_hours"] == pytest.approx(
            sum(item["instance_hours"] for item in estimate["clusters"]))
    finally:  # the next tests check that no cluster is left active
        for cluster_id in (released, impute, other_run):
            backend.clusters[cluster_id].terminate()


def test_a_failed_termination_fails_a_run_whose_work_succeeded(emr_airflow_env, moto_url,
                                                               song_archive, tmp_path,
                                                               monkeypatch):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_terminate_denied")
    backend = emr_backend()

    def terminate_denied(job_flow_ids):
        raise EmrAccessDenied("User is not authorized to perform: "
                              "elasticmapreduce:TerminateJobFlows")

    monkeypatch.setattr(backend, "terminate_job_flows", terminate_denied)
    try:
        run = run_pipeline(emr_airflow_env, config, RealStepRunner(moto_url, tmp_path),
                           moto_url)
    finally:
        monkeypatch.undo()
    [cluster] = run.clusters
    cluster.terminate()

    assert run.state == "failed", run.describe()
    assert run.tasks["report.collect_metrics"] == "success", run.describe()
    assert run.tasks["terminate_cluster"] == "failed", run.describe()
    assert run.tasks["teardown_succeeded"] == "upstream_failed", run.describe()
    assert "could not terminate every cluster" in run.logs
    assert not client("secretsmanager", moto_url).list_secrets()["SecretList"]


UNFINISHED = ("scheduled", "queued", "running", "restarting", "up_for_retry",
              "up_for_reschedule", "deferred", "awaiting_input")


def time_out_run(airflow_env: Dict[str, str], run_id: str) -> None:
    """What the scheduler does when a run exceeds dagrun_timeout: the running task killed,
    the run FAILED, every unfinished task SKIPPED (the teardown included), a failure
    callback requested. `airflow dags test` plays the scheduler here, so it is the
    process killed (it would otherwise re-evaluate the run)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline()[-3:-1] == ["dags", "test"]:
                child.kill()
                child.wait(timeout=60)
        except psutil.NoSuchProcess:
            continue
    marks = ",".join("?" * len(UNFINISHED))
    with sqlite3.connect(str(metadata_db_path(airflow_env)), timeout=60) as db:
        db.execute("UPDATE task_instance SET state = 'skipped' WHERE dag_id = ? AND run_id = ? "
                   f"AND (state IS NULL OR state IN ({marks}))", (DAG_ID, run_id, *UNFINISHED))
        db.execute("UPDATE dag_run SET state = 'failed' WHERE dag_id = ? AND run_id = ?",
                   (DAG_ID, run_id))


def run_failure_callback_as_the_dag_processor(airflow_env: Dict[str, str], config: Path,
                                              run_id: str) -> str:
    """The DAG processor's own code path for a DagCallbackRequest (msg "timed_out")."""
    return run_airflow_program("run_failure_callback.py", [DAG_ID, run_id],
                               {**airflow_env, "MSD_CONFIG": str(config)}, timeout=300)


def test_a_run_timeout_skips_the_teardown_and_the_failure_callback_ends_the_cluster(
        emr_airflow_env, moto_url, song_archive, tmp_path):
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_run_timeout",
                          step_timeout_seconds=20)
    before = set(emr_backend().clusters)
    timed_out: List[str] = []

    def scheduler_times_the_run_out():
        wait_until(lambda: any(step.state == "RUNNING" for cid, c in emr_backend().clusters.items()
                               if cid not in before for step in c.steps),
                   timeout=300, message="the ingest step never started")
        run_id, _ = latest_run(DAG_ID, emr_airflow_env)
        time_out_run(emr_airflow_env, run_id)
        timed_out.append(run_id)

    run = run_pipeline(emr_airflow_env, config, hanging_step, moto_url,
                       alongside=scheduler_times_the_run_out)
    [run_id] = timed_out
    [cluster] = run.clusters
    try:
        assert run.state == "failed", run.describe()
        assert run.tasks["terminate_cluster"] == "skipped", run.describe()
        assert cluster.state in ("RUNNING", "WAITING")  # the teardown never ran
        assert client("secretsmanager", moto_url).list_secrets()["SecretList"]

        output = run_failure_callback_as_the_dag_processor(emr_airflow_env, config, run_id)
        assert cluster.state == "TERMINATED", output
        assert_run_cleaned_up(run, moto_url)
    finally:  # a failure here must not leave the next tests a live cluster or secret
        cluster.terminate()
        secrets = client("secretsmanager", moto_url)
        for secret in secrets.list_secrets()["SecretList"]:
            secrets.delete_secret(SecretId=secret["Name"], ForceDeleteWithoutRecovery=True)
