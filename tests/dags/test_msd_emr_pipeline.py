"""dags/msd_emr_pipeline.py: the shared graph on the EMR target, with its teardown."""
from dag_parsing import PIPELINE_TASKS, shared_tasks

DAG_ID = "msd_emr_pipeline"


def test_the_emr_dag_is_the_shared_graph(parsed):
    """The EMR DAG swaps the executor, not the graph: it has every shared task (a target
    may turn a step into a task group of the same id)."""
    dag = parsed["dags"][DAG_ID]
    for shared in PIPELINE_TASKS:
        assert shared_tasks(dag, {shared}), shared
    assert {"msd", "spark", "emr", "aws"} <= set(dag["tags"])


def test_the_cluster_is_always_torn_down(parsed):
    tasks = parsed["dags"][DAG_ID]["tasks"]
    teardowns = [task_id for task_id, task in tasks.items() if task["is_teardown"]]
    assert teardowns == ["terminate_cluster"]
    assert "report.collect_metrics" in tasks["terminate_cluster"]["upstream"]
