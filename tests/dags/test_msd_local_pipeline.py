"""dags/msd_local_pipeline.py: the shared graph on the local target."""
from dag_parsing import PIPELINE_TASKS


def test_local_pipeline_graph(parsed):
    dag = parsed["dags"]["msd_local_pipeline"]
    assert set(dag["tasks"]) == PIPELINE_TASKS
    upstream = {task_id: set(task["upstream"]) for task_id, task in dag["tasks"].items()}
    assert upstream["prepare_run"] == set()
    assert upstream["stage.stage_data"] == {"prepare_run"}
    assert "stage.publish_job_config" in upstream["spark.ingest"]
    assert upstream["spark.train_evaluate_impute"] == {"spark.ingest"}
    assert "spark.train_evaluate_impute" in upstream["report.collect_metrics"]
    assert {"msd", "spark", "local"} <= set(dag["tags"])


def test_scheduled_retraining_without_catchup(parsed):
    from msdlib.config import load_config

    dag = parsed["dags"]["msd_local_pipeline"]
    assert dag["schedule"] == load_config().pipeline.schedule != ""
    assert dag["catchup"] is False


def test_params_form_defaults_come_from_the_configuration(parsed):
    from msdlib.config import load_config

    config = load_config()
    params = parsed["dags"]["msd_local_pipeline"]["params"]
    assert params["folds"] == config.training.folds
    assert params["classifiers"] == list(config.training.classifiers)
    assert params["sample_size"] == config.ingest.max_files
    assert params["data_source"] == config.staging.mode
