"""The EMR DAG's wiring: the cluster created after staging, setups and teardown, what a
clear re-runs (Airflow's own subset logic), the cluster released before an approval and
imputation's cluster after it, the run timeout derived from the budgets and the failure
callback. Offline: building the DAG touches no connection."""
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


def test_the_cluster_is_created_after_staging_and_the_steps_wait_for_it(emr_dag):
    assert {"cluster.ship_code", "stage.stage_data", "stage.publish_job_config"} <= \
        upstream_closure(emr_dag, "cluster.create_cluster")
    assert "cluster.create_cluster" not in upstream_closure(emr_dag, "stage.stage_data")
    assert {"cluster.create_cluster", "stage.publish_job_config"} <= \
        emr_dag.get_task("spark.ingest").upstream_task_ids


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
    """Airflow's clear (UI, CLI, API) takes this subset: the step is one task, and the
    cluster is re-created for it."""
    cleared = emr_dag.partial_subset(["spark.ingest"], include_downstream=True,
                                     include_upstream=False)
    assert SETUPS | {"spark.ingest", "terminate_cluster", "spark.train_evaluate",
                     "report.collect_metrics"} <= set(cleared.task_ids)
    assert not {"prepare_run", "stage.stage_data", "stage.publish_job_config"} & set(cleared.task_ids)


def test_with_approval_the_cluster_ends_before_the_wait_and_imputation_gets_one(config):
    approval = dataclasses.replace(config, retraining=dataclasses.replace(
        config.retraining, require_approval=True))
    dag = build_pipeline_dag("emr_approval", EmrTarget(approval), description="approval",
                             config=approval)
    assert dag.get_task("model.approve").upstream_task_ids == {"cluster.release_for_approval"}
    assert dag.get_task("cluster.release_for_approval").upstream_task_ids == {"model.decide"}
    reopen = dag.get_task("cluster.reopen_for_impute")
    assert reopen.upstream_task_ids == {"model.champion"}
    impute = dag.get_task("spark.impute")
    assert impute.upstream_task_ids == {"cluster.reopen_for_impute"}
    assert "cluster.reopen_for_impute" in impute.job_flow_id
    assert "cluster.create_cluster" in dag.get_task("spark.train_evaluate").job_flow_id
    # Neither is a setup: clearing a step re-creates the cluster through create_cluster.
    assert not reopen.is_setup and not dag.get_task("cluster.release_for_approval").is_setup
    assert "cluster.release_for_approval" not in build_pipeline_dag(
        "emr_no_approval", EmrTarget(config), description="d", config=config).task_ids


def test_the_run_timeout_covers_staging_create_three_steps_and_teardown(config, emr_dag):
    emr = config.emr
    steps = 3 * datetime.timedelta(seconds=emr.step_timeout_seconds + emr.log_wait_seconds)
    staging = datetime.timedelta(minutes=config.pipeline.step_timeout_minutes)
    create = datetime.timedelta(seconds=emr.create_timeout_seconds)
    teardown = datetime.timedelta(seconds=emr.create_timeout_seconds)
    assert emr_dag.dagrun_timeout >= staging + create + steps + teardown + RUN_TIMEOUT_MARGIN
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
