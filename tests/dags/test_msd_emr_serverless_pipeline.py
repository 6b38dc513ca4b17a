"""dags/msd_emr_serverless_pipeline.py and dags/msd_retrain_emr_serverless.py: the shared
graph on the EMR Serverless target — the application created after staging, the job runs
on it, the teardown paired with every setup, a timeout on every task, the run timeout
derived from the budgets, the failure callback. The parsed DAG folder (no connection, no
network) and the factory offline."""
import dataclasses
import datetime

import pytest

from dag_parsing import PIPELINE_TASKS, RETRAIN_TASKS, shared_tasks
from msdlib.config import load_config
from msd_pipeline.budgets import RUN_TIMEOUT_MARGIN, run_budget
from msd_pipeline.graph import build_pipeline_dag
from msd_pipeline.targets.emr_serverless.target import EmrServerlessTarget

DAG_ID = "msd_emr_serverless_pipeline"
RETRAIN_DAG_ID = "msd_retrain_emr_serverless"
TEARDOWN = "serverless.delete_application"
SETUPS = {"serverless.preflight", "serverless.ship_code", "serverless.create_application"}
RUN_ORDER = ["prepare_run", "serverless.preflight", "serverless.ship_code", "stage.stage_data",
             "stage.publish_job_config", "serverless.create_application", "spark.ingest"]


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def dag(config):
    return build_pipeline_dag("serverless_wiring", EmrServerlessTarget(config),
                              description="wiring", config=config)


def test_both_dags_are_the_shared_graph(parsed):
    pipeline, retrain = parsed["dags"][DAG_ID], parsed["dags"][RETRAIN_DAG_ID]
    for shared in PIPELINE_TASKS:
        assert shared_tasks(pipeline, {shared}), shared
    for shared in RETRAIN_TASKS:
        assert shared_tasks(retrain, {shared}), shared
    assert {"msd", "spark", "emr_serverless", "aws"} <= set(pipeline["tags"])
    assert "serverless.preflight" in retrain["tasks"]["serverless.ship_code"]["upstream"]


def test_the_run_order_puts_the_application_after_staging(parsed):
    tasks = parsed["dags"][DAG_ID]["tasks"]
    for before, after in zip(RUN_ORDER, RUN_ORDER[1:]):
        assert before in tasks[after]["upstream"], (before, after)


def test_the_application_is_always_deleted_and_every_task_has_a_timeout(parsed):
    for dag_id in (DAG_ID, RETRAIN_DAG_ID):
        tasks = parsed["dags"][dag_id]["tasks"]
        assert [task_id for task_id, task in tasks.items() if task["is_teardown"]] == [TEARDOWN]
        assert "report.collect_metrics" in tasks[TEARDOWN]["upstream"]
        assert SETUPS <= set(tasks[TEARDOWN]["upstream"])
        assert tasks["teardown_succeeded"]["upstream"] == [TEARDOWN]
        assert all(task["timeout"] for task in tasks.values()), dag_id


def test_the_job_runs_wait_on_the_application_and_cancel_when_killed(config, dag):
    for step in ("spark.ingest", "spark.train_evaluate", "spark.impute"):
        task = dag.get_task(step)
        assert "serverless.create_application" in task.application_id
        assert task.cancel_on_kill and task.retries == 0
        assert task.job_timeout_minutes == config.emr_serverless.job_timeout_minutes
        # The execution timeout, not the waiter, bounds the wait.
        assert task.waiter_max_attempts * task.waiter_delay > task.execution_timeout.total_seconds()
        assert task.execution_timeout > datetime.timedelta(
            minutes=config.emr_serverless.job_timeout_minutes)
    assert {task.task_id for task in dag.tasks if task.is_setup} == SETUPS


def test_the_run_timeout_covers_create_three_job_runs_and_teardown(config, dag):
    serverless = config.emr_serverless
    job_runs = 3 * datetime.timedelta(minutes=serverless.job_timeout_minutes)
    create = datetime.timedelta(seconds=serverless.create_timeout_seconds)
    assert dag.dagrun_timeout >= create + job_runs + create + RUN_TIMEOUT_MARGIN
    assert dag.dagrun_timeout == run_budget(dag) + RUN_TIMEOUT_MARGIN
    longer = dataclasses.replace(config, emr_serverless=dataclasses.replace(
        serverless, job_timeout_minutes=serverless.job_timeout_minutes + 60))
    more = build_pipeline_dag("serverless_longer", EmrServerlessTarget(longer),
                              description="longer", config=longer)
    assert more.dagrun_timeout - dag.dagrun_timeout == datetime.timedelta(hours=3)


def test_with_approval_the_application_stops_before_the_wait(config):
    approval = dataclasses.replace(config, retraining=dataclasses.replace(
        config.retraining, require_approval=True))
    dag = build_pipeline_dag("serverless_approval", EmrServerlessTarget(approval),
                             description="approval", config=approval)
    assert dag.get_task("model.approve").upstream_task_ids == {"serverless.release_for_approval"}
    assert not dag.get_task("serverless.release_for_approval").is_setup
    # Imputation runs on the same application: its job run starts it again.
    assert "serverless.create_application" in dag.get_task("spark.impute").application_id
    assert dag.get_task("spark.impute").upstream_task_ids == {"model.champion"}


def test_the_failure_callback_is_the_second_backstop(dag):
    assert dag.on_failure_callback.func.__name__ == "end_run_after_failure"
    assert dag.on_failure_callback.func.__module__.endswith("emr_serverless.operators")
