"""Every DAG file imports cleanly, quickly, and without touching connections or the
network; the pipeline DAGs carry owner, retries, tags, docs and a sane graph."""
import json
import subprocess
import sys
import textwrap

import pytest

from airflow_support import DAGS_FOLDER, airflow_env, airflow_home

# Parsing happens in a fresh interpreter with guards that fail any socket use and any
# connection lookup, so a DAG file that reaches out at parse time shows up as an import
# error or a recorded violation.
PARSE_PROBE = textwrap.dedent("""
    import json, socket, sys
    violations = []

    def refuse(what):
        def guard(*args, **kwargs):
            violations.append(what)
            raise RuntimeError("parse-time " + what + " is not allowed")
        return guard

    socket.socket.connect = refuse("socket connect")
    socket.create_connection = refuse("network connection")
    socket.getaddrinfo = refuse("DNS lookup")
    from airflow.sdk import BaseHook, Connection
    BaseHook.get_connection = classmethod(refuse("connection lookup"))
    Connection.get = classmethod(refuse("connection lookup"))

    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "tags": sorted(dag.tags), "doc_md": bool(dag.doc_md),
            "schedule": dag.schedule if isinstance(dag.schedule, str) else None, "catchup": dag.catchup,
            "params": {key: param.value for key, param in dag.params.items()},
            "tasks": {task.task_id: {
                "owner": task.owner, "retries": task.retries,
                "timeout": task.execution_timeout.total_seconds() if task.execution_timeout else None,
                "upstream": sorted(task.upstream_task_ids), "is_teardown": task.is_teardown,
            } for task in dag.tasks},
        }
    print(json.dumps({
        "errors": {path: str(error) for path, error in bag.import_errors.items()},
        "violations": violations,
        "dags": dags,
        "parse_seconds": {stat.file: stat.duration.total_seconds() for stat in bag.dagbag_stats},
    }))
""")
PIPELINE_TASKS = {"prepare_run", "stage.stage_data", "stage.publish_job_config",
                  "spark.ingest", "spark.train_evaluate_impute", "report.collect_metrics"}
# DAG files import Airflow itself in well under a second once it is loaded; a file
# doing real work at parse time (reading data, calling services) blows well past this.
MAX_PARSE_SECONDS = 5.0


@pytest.fixture(scope="module")
def parsed():
    env = airflow_env(airflow_home())
    completed = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS_FOLDER)], env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert "msd_local_pipeline" in parsed["dags"]


def test_no_connection_or_network_access_at_parse_time(parsed):
    assert parsed["violations"] == []


def test_parse_time_is_small(parsed):
    assert parsed["parse_seconds"], "no DAG file was parsed"
    slow = {path: seconds for path, seconds in parsed["parse_seconds"].items()
            if seconds > MAX_PARSE_SECONDS}
    assert slow == {}


def test_every_task_has_an_owner_retries_and_a_timeout(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag["tags"], dag_id
        assert dag["doc_md"], dag_id
        for task_id, task in dag["tasks"].items():
            assert task["owner"] not in ("", "airflow"), (dag_id, task_id)
            assert task["retries"] >= 0, (dag_id, task_id)
            assert task["timeout"], (dag_id, task_id)
        # Tasks may opt out of retries (e.g. creating a cluster); the shared ones retry.
        for task_id in _shared_tasks(dag, {"prepare_run", "report.collect_metrics"}):
            assert dag["tasks"][task_id]["retries"] >= 1, (dag_id, task_id)


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


def test_every_pipeline_dag_is_the_same_graph(parsed):
    """The EMR DAG swaps the executor, not the graph: it has every shared task (a target
    may turn a step into a task group of the same id)."""
    pipelines = {dag_id: dag for dag_id, dag in parsed["dags"].items()
                 if dag_id.startswith("msd_") and dag_id.endswith("_pipeline")}
    for dag_id, dag in pipelines.items():
        for shared in PIPELINE_TASKS:
            assert _shared_tasks(dag, {shared}), (dag_id, shared)


def _shared_tasks(dag, names):
    """Task ids of ``dag`` that are one of ``names`` or inside a group of that name."""
    return [task_id for task_id in dag["tasks"]
            if any(task_id == name or task_id.startswith(name + ".") for name in names)]
