"""dags/msd_local_pipeline.py: the shared graph on the local target."""
from dag_parsing import PIPELINE_TASKS


def test_local_pipeline_graph(parsed):
    dag = parsed["dags"]["msd_local_pipeline"]
    assert set(dag["tasks"]) == PIPELINE_TASKS
    upstream = {task_id: set(task["upstream"]) for task_id, task in dag["tasks"].items()}
    assert upstream["prepare_run"] == set()
    assert upstream["stage.stage_data"] == {"prepare_run"}
    assert "stage.publish_job_config" in upstream["spark.ingest"]
    assert upstream["spark.songs_ingested"] == {"prepare_run", "spark.ingest"}
    assert "spark.songs_ingested" in upstream["model.resolve_champion"]
    assert upstream["spark.train_evaluate"] == {"model.resolve_champion"}
    assert upstream["model.champion"] == {"prepare_run", "model.decide", "model.promote"}
    assert upstream["spark.impute"] == {"model.champion"}
    assert "spark.impute" in upstream["report.collect_metrics"]
    assert {"msd", "spark", "spark_submit"} <= set(dag["tags"])


def test_the_whole_lifecycle_runs_on_demand_retraining_is_msd_retrain(parsed):
    from msdlib.config import load_config

    dag = parsed["dags"]["msd_local_pipeline"]
    assert load_config().pipeline.schedule == "" and dag["schedule"] is None
    assert dag["catchup"] is False
    assert dag["params"]["train"] is True


def test_params_form_defaults_come_from_the_configuration(parsed):
    from msdlib.config import load_config

    config = load_config()
    params = parsed["dags"]["msd_local_pipeline"]["params"]
    assert params["folds"] == config.training.folds
    assert params["classifiers"] == list(config.training.classifiers)
    assert params["sample_size"] == config.ingest.max_files
    assert params["data_source"] == config.staging.mode
