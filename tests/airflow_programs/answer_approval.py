"""``python answer_approval.py DAG_ID TASK_ID``: the approver of an ``airflow dags test``
run. Waits until TASK_ID of a DAG_ID run awaits input, prints ``awaiting RUN_ID``, reads
the option to choose (e.g. ``Approve``) from stdin and records it with the function behind
the HITL REST route (what the Required Actions page calls), in process on this metadata
DB: ``dag.test`` then resumes the task as after an api-server's answer. Prints
``answered``. Needs Airflow's environment (AIRFLOW_HOME, the metadata DB)."""
import sys
import time

from airflow import settings
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
from airflow.models.taskinstance import TaskInstance
from airflow.utils.state import TaskInstanceState

POLL_SECONDS = 1.0
WAIT_SECONDS = 900


def awaiting_run(dag_id: str, task_id: str) -> str:
    """The run id whose TASK_ID awaits input, once it does."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with settings.Session() as session:
            waiting = session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT).first()
            if waiting is not None:
                return waiting.run_id
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{dag_id} {task_id} did not await input within {WAIT_SECONDS} s")


def answer(dag_id: str, run_id: str, task_id: str, option: str) -> None:
    with settings.Session() as session:
        update_hitl_detail(dag_id=dag_id, dag_run_id=run_id, task_id=task_id,
                           update_hitl_detail_payload=UpdateHITLDetailPayload(
                               chosen_options=[option]),
                           user=SimpleAuthManagerUser(username="e2e-approver", role="admin"),
                           session=session)
        session.commit()


if __name__ == "__main__":
    dag, task = sys.argv[1:3]
    run = awaiting_run(dag, task)
    print("awaiting", run, flush=True)
    answer(dag, run, task, sys.stdin.readline().strip())
    print("answered", flush=True)
