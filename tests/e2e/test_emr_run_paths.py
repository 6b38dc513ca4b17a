"""``airflow dags test msd_emr_pipeline`` against moto, on the paths a run takes: success
(every step run for real on local Spark, beside clusters the run does not own, with its
core nodes on spot), a failed step, cluster creation failing after the cluster id exists,
a step timeout. Each ends with every cluster of the run terminated and the run secret
deleted, and no secret (AWS keys, Mongo password) in the task logs, the metadata DB
(XCom, rendered fields) or the step arguments.
How moto plays EMR: tests/emr_dag_support.py."""
import uuid
from dataclasses import dataclass
from typing import Callable, List

import pymongo
import pytest
from moto.emr.models import Cluster

from emr_dag_support import (BUCKET, FAILED_STEP_MARKER, SONGS, EmrAccessDenied,
                             RealStepRunner, assert_deferred, assert_no_secret_leaked,
                             assert_run_cleaned_up, create_cluster, emr_backend, failing_step,
                             hanging_step, run_pipeline, write_config)
from emr_support import client, wait_until


@dataclass
class ClustersNotOwned:
    others: str                  # another team's active cluster, made before the run
    same_name: List[str]         # another Airflow's cluster named like the run's, made during it
    described: List[str]         # every cluster id DescribeCluster was asked about
    alongside: Callable[[], None]  # makes ``same_name`` once the run has its cluster

    @property
    def ids(self) -> set:
        return {self.others, *self.same_name}

    def terminate(self) -> None:
        for cluster_id in self.ids:
            emr_backend().clusters[cluster_id].terminate()


@pytest.fixture
def clusters_not_owned(moto_url, monkeypatch):
    """Clusters the run must leave alone; DescribeCluster denied, as the policy does, on
    the one named like the run but without the pipeline's tag."""
    backend = emr_backend()
    before = set(backend.clusters)
    others = create_cluster(moto_url, "analytics-nightly", {"team": "analytics"})
    same_name: List[str] = []
    described: List[str] = []

    def another_airflow_starts_a_cluster_named_like_the_run():
        wait_until(lambda: set(backend.clusters) - before - {others}, timeout=300,
                   message="the run never created its cluster")
        [ours] = [backend.clusters[cid] for cid in set(backend.clusters) - before - {others}]
        same_name.append(create_cluster(moto_url, ours.name, {"team": "other-airflow"}))

    real_describe = backend.describe_cluster

    def describe_as_the_policy_allows(cluster_id):
        described.append(cluster_id)
        if cluster_id in same_name:
            raise EmrAccessDenied("User is not authorized to perform: "
                                  "elasticmapreduce:DescribeCluster on " + cluster_id)
        return real_describe(cluster_id)

    monkeypatch.setattr(backend, "describe_cluster", describe_as_the_policy_allows)
    clusters = ClustersNotOwned(others, same_name, described,
                                another_airflow_starts_a_cluster_named_like_the_run)
    yield clusters
    clusters.terminate()  # the next tests check that no cluster is left active


def test_success_path_records_metrics_and_terminates(emr_airflow_env, moto_url, song_archive,
                                                     mongo_uri, tmp_path, clusters_not_owned):
    """The run succeeds and its own cluster is terminated. Another team's active cluster
    is never described; one carrying this run's name but not the pipeline's tag is skipped
    with a warning; both stay up. Its core nodes are on spot: the final cost, recorded by
    the teardown, counts its own cluster only, up to its termination, with the EMR fee
    undiscounted."""
    database = "emr_e2e_" + uuid.uuid4().hex[:8]
    # The spot timeout (at least 5 minutes) must end within the create timeout.
    config = write_config(tmp_path / "config.json", song_archive, database,
                          core_on_spot=True, spot_timeout_minutes=5, create_timeout_seconds=600,
                          spot_price_fraction=0.5, ec2_hourly_prices={"m5.xlarge": 0.2},
                          emr_hourly_fees={"m5.xlarge": 0.05})
    run = run_pipeline(emr_airflow_env, config, RealStepRunner(moto_url, tmp_path), moto_url,
                       alongside=clusters_not_owned.alongside)

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
    [cluster] = [c for c in run.clusters if c.id not in clusters_not_owned.ids]
    assert cluster.state == "TERMINATED"
    assert_left_alone(clusters_not_owned, run)
    clusters_not_owned.terminate()
    assert_run_cleaned_up(run, moto_url)
    # ingest, train_evaluate (challenger + champion on one split), impute (the champion)
    assert [step.state for step in cluster.steps] == ["COMPLETED"] * (3 if promoted else 2)

    assert db["songs"].count_documents({}) == SONGS
    record = db["pipeline_runs"].find_one()
    assert record["target"] == "emr" and record["status"] == "success"
    assert record["metrics"] and record["ingest"] and record["training"]
    details = record["target_details"]
    assert details["cluster_id"] == cluster.id
    assert_spot_cost_of_its_own_cluster(details["cost"], cluster)
    assert "Final cost stored in run record" in run.logs
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


def assert_left_alone(clusters: ClustersNotOwned, run) -> None:
    assert clusters.others not in clusters.described
    assert clusters.same_name[0] in clusters.described
    assert "may not be described" in run.logs
    assert [emr_backend().clusters[cid].state for cid in sorted(clusters.ids)] == \
        ["WAITING", "WAITING"]


def assert_spot_cost_of_its_own_cluster(cost, own: Cluster) -> None:
    assert cost["final"] is True and [c["cluster_id"] for c in cost["clusters"]] == [own.id]
    hours = (own.end_datetime - own.creation_datetime).total_seconds() / 3600
    assert cost["hours"] == pytest.approx(hours, abs=1e-4)
    assert cost["instance_hours"] > 0 and cost["estimated_usd"] > 0
    master, core = cost["clusters"][0]["lines"]
    assert (core["market"], core["ec2_usd_per_hour"], core["emr_usd_per_hour"]) == (
        "SPOT", 0.1, 0.05)
    # master 0.2 + 0.05 on demand; two core nodes at 0.2 × 0.5 + 0.05 on spot
    assert cost["estimated_usd"] == pytest.approx(hours * (0.25 + 2 * 0.15), abs=1e-3)


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
