"""The EMR DAG's wiring: staging beside cluster creation, setups and teardown, what a
clear re-runs (Airflow's own subset logic), the run timeout derived from the budgets and
the failure callback. Offline: building the DAG touches no connection."""
import dataclasses
import datetime

import pytest

from msdlib.config import load_config
from msd_pipeline.budgets import RUN_TIMEOUT_MARGIN, run_budget
from msd_pipeline.graph import build_pipeline_dag
from msd_pipeline.targets.emr.target import EmrTarget
from msd_pipeline.targets.spark_submit.target import SparkSubmitTarget

SETUPS = {"cluster.preflight", "cluster.ship_code", "cluster.create_cluster"}


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def emr_dag(config):
    return build_pipeline_dag("emr_wiring", EmrTarget(config), description="wiring", config=config)


def upstream_closure(dag, task_id):
    seen, todo = set(), [task_id]
    while todo:
        for upstream in dag.get_task(todo.pop()).upstream_task_ids:
            if upstream not in seen:
                seen.add(upstream)
                todo.append(upstream)
    return seen


def test_staging_runs_beside_cluster_creation_and_the_steps_wait_for_both(emr_dag):
    assert not SETUPS & upstream_closure(emr_dag, "stage.stage_data")
    assert "stage.stage_data" not in upstream_closure(emr_dag, "cluster.create_cluster")
    assert {"cluster.create_cluster", "stage.publish_job_config"} <= \
        emr_dag.get_task("spark.ingest.add_step").upstream_task_ids


def test_both_setups_pair_with_the_teardown_which_fails_the_run(emr_dag):
    teardown = emr_dag.get_task("terminate_cluster")
    assert teardown.is_teardown
    # The run's state follows its leaves: the work's, and one failing with the teardown.
    check = emr_dag.get_task("teardown_succeeded")
    assert check.upstream_task_ids == {"terminate_cluster"} and not check.downstream_task_ids
    assert check.trigger_rule == "all_success" and not check.is_teardown
    assert {task.task_id for task in emr_dag.tasks if task.is_setup} == SETUPS
    assert SETUPS <= teardown.upstream_task_ids


def test_the_preflight_comes_before_anything_is_created(emr_dag):
    preflight = emr_dag.get_task("cluster.preflight")
    assert preflight.upstream_task_ids == {"prepare_run"} and preflight.retries == 0
    assert "cluster.preflight" in upstream_closure(emr_dag, "cluster.ship_code")
    assert "cluster.preflight" in upstream_closure(emr_dag, "cluster.create_cluster")


def test_clearing_a_spark_step_clears_the_cluster_setups_and_teardown_not_staging(emr_dag):
    """Airflow's clear (UI, CLI, API) takes this subset: the cluster is re-created."""
    cleared = emr_dag.partial_subset(["spark.ingest.add_step", "spark.ingest.wait_for_step"],
                                     include_downstream=True, include_upstream=False)
    assert SETUPS | {"terminate_cluster", "spark.train_evaluate.add_step",
                     "report.collect_metrics"} <= set(cleared.task_ids)
    assert not {"prepare_run", "stage.stage_data", "stage.publish_job_config"} & set(cleared.task_ids)


def test_the_run_timeout_covers_create_staging_both_steps_and_teardown(config, emr_dag):
    emr = config.emr
    steps = 2 * datetime.timedelta(seconds=emr.step_timeout_seconds + emr.log_wait_seconds)
    create_or_staging = max(datetime.timedelta(seconds=emr.create_timeout_seconds),
                            datetime.timedelta(minutes=config.pipeline.step_timeout_minutes))
    teardown = datetime.timedelta(seconds=emr.create_timeout_seconds)
    assert emr_dag.dagrun_timeout >= create_or_staging + steps + teardown + RUN_TIMEOUT_MARGIN
    assert emr_dag.dagrun_timeout == run_budget(emr_dag) + RUN_TIMEOUT_MARGIN


def test_the_run_timeout_follows_the_step_budget(config):
    longer = dataclasses.replace(config, emr=dataclasses.replace(
        config.emr, step_timeout_seconds=config.emr.step_timeout_seconds + 3600))
    base = build_pipeline_dag("emr_a", EmrTarget(config), description="a", config=config)
    more = build_pipeline_dag("emr_b", EmrTarget(longer), description="b", config=longer)
    assert more.dagrun_timeout - base.dagrun_timeout == datetime.timedelta(hours=3)  # three steps


def test_the_emr_dag_has_the_cleanup_callback_and_the_local_dag_none(config, emr_dag):
    assert emr_dag.on_failure_callback.func.__name__ == "end_run_after_failure"
    local = build_pipeline_dag("local_wiring", SparkSubmitTarget(), description="local", config=config)
    assert local.on_failure_callback is None
    assert not [task for task in local.tasks if task.is_setup or task.is_teardown]
    assert local.dagrun_timeout == run_budget(local) + RUN_TIMEOUT_MARGIN
