"""The DAG folder parsed in a fresh interpreter, with guards that fail any socket use and
any connection lookup (the Astro template's integrity check), and what the pipeline DAGs
share."""
import json
import subprocess
import sys
import textwrap

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
RETRAINING_TASKS = {"model.resolve_champion", "spark.train_evaluate", "model.decide",
                    "model.promote", "model.champion", "spark.impute", "report.collect_metrics"}
PIPELINE_TASKS = {"prepare_run", "stage.stage_data", "stage.publish_job_config",
                  "spark.ingest", "spark.songs_ingested"} | RETRAINING_TASKS
RETRAIN_TASKS = {"prepare_run", "check_trigger", "stage.publish_job_config"} | RETRAINING_TASKS


def parse_dags_folder() -> dict:
    env = airflow_env(airflow_home())
    completed = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS_FOLDER)], env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def shared_tasks(dag, names):
    """Task ids of ``dag`` that are one of ``names`` or inside a group of that name."""
    return [task_id for task_id in dag["tasks"]
            if any(task_id == name or task_id.startswith(name + ".") for name in names)]
