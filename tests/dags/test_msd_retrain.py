"""dags/msd_retrain_local.py and dags/msd_retrain_emr.py: the retraining graph on both
targets, scheduled on the `songs` asset or the cron, whichever comes first."""
from dag_parsing import RETRAIN_TASKS, shared_tasks


def test_local_retrain_graph(parsed):
    dag = parsed["dags"]["msd_retrain_local"]
    assert set(dag["tasks"]) == RETRAIN_TASKS
    upstream = {task_id: set(task["upstream"]) for task_id, task in dag["tasks"].items()}
    assert upstream["check_trigger"] == {"prepare_run"}
    assert "check_trigger" in upstream["stage.publish_job_config"]
    assert upstream["spark.train_evaluate"] == {"model.resolve_champion"}
    assert {"msd", "spark", "spark_submit", "retrain"} <= set(dag["tags"])
    assert "data_source" not in dag["params"] and "folds" in dag["params"]


def test_emr_retrain_is_the_same_graph_and_checks_the_trigger_before_the_cluster(parsed):
    dag = parsed["dags"]["msd_retrain_emr"]
    for shared in RETRAIN_TASKS:
        assert shared_tasks(dag, {shared}), shared
    cluster_roots = [task_id for task_id in shared_tasks(dag, {"cluster"})
                     if "check_trigger" in dag["tasks"][task_id]["upstream"]]
    assert cluster_roots


def test_scheduled_on_songs_or_the_cron():
    from airflow.sdk import AssetOrTimeSchedule

    from msd_pipeline.graph import SONGS, build_retrain_dag
    from msd_pipeline.targets.spark_submit.target import SparkSubmitTarget
    from msdlib.config import load_config

    config = load_config()
    dag = build_retrain_dag("r", SparkSubmitTarget(), description="schedule check")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.asset_condition == SONGS
    assert dag.timetable.timetable.expression.startswith("0 0")  # @weekly
    assert config.retraining.schedule == "@weekly"
    assert dag.catchup is False


def test_without_a_cron_only_songs_events_trigger():
    from msd_pipeline.graph import SONGS, build_retrain_dag
    from msd_pipeline.targets.spark_submit.target import SparkSubmitTarget
    from msdlib.config import load_config

    config = load_config(overrides={"retraining.schedule": ""})
    dag = build_retrain_dag("r", SparkSubmitTarget(config), description="d", config=config)
    assert dag.timetable.asset_condition == SONGS
    assert not hasattr(dag.timetable, "timetable")


def test_approval_step_only_behind_the_setting():
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from msd_pipeline.graph import build_retrain_dag
    from msd_pipeline.targets.spark_submit.target import SparkSubmitTarget
    from msdlib.config import load_config

    config = load_config(overrides={"retraining.require_approval": True})
    dag = build_retrain_dag("r", SparkSubmitTarget(config), description="d", config=config)
    approve = dag.get_task("model.approve")
    assert isinstance(approve, ApprovalOperator)
    assert approve.upstream_task_ids == {"model.decide"}
    assert dag.get_task("model.promote").upstream_task_ids == {"model.approve", "prepare_run"}
    default = build_retrain_dag("r2", SparkSubmitTarget(), description="d")
    assert "model.approve" not in default.task_ids
