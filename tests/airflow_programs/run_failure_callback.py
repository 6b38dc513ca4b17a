"""``python run_failure_callback.py DAG_ID RUN_ID``: the DAG processor's own code path for
a failure callback request (msg "timed_out", as the scheduler files one when a run exceeds
dagrun_timeout). Needs Airflow's environment (AIRFLOW_HOME, the metadata DB, the DAGs
folder)."""
import sys

import structlog
from airflow.callbacks.callback_requests import DagCallbackRequest
from airflow.dag_processing.dagbag import DagBag
from airflow.dag_processing.processor import _execute_dag_callbacks


def run_failure_callback(dag_id: str, run_id: str) -> None:
    request = DagCallbackRequest(filepath=dag_id + ".py", bundle_name="dags-folder",
                                 bundle_version=None, dag_id=dag_id, run_id=run_id,
                                 is_failure_callback=True, msg="timed_out")
    _execute_dag_callbacks(DagBag(), request, structlog.get_logger())


if __name__ == "__main__":
    run_failure_callback(*sys.argv[1:3])
