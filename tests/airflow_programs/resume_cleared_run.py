"""``python resume_cleared_run.py DAG_ID RUN_ID``: runs the cleared tasks of an existing DAG
run to its end, with the loop ``airflow dags test`` uses (``dag.test`` clears the whole run
first, so it cannot resume one): what the scheduler would do after ``airflow tasks clear``.
Prints ``DagRun Finished: state=...`` like ``airflow dags test``. Needs Airflow's
environment (AIRFLOW_HOME, the metadata DB, the DAGs folder)."""
import sys

from airflow import settings
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.sdk.definitions.dag import _run_task
from airflow.serialization.serialized_objects import DagSerialization
from airflow.utils.state import DagRunState, TaskInstanceState


def resume(dag_id: str, run_id: str) -> str:
    """Sets the run RUNNING and runs its schedulable tasks until it ends; its final state."""
    dag = DagBag().dags[dag_id]
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    session = settings.Session()
    run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
    run.state = DagRunState.RUNNING
    session.commit()
    while run.state == DagRunState.RUNNING:
        session.expire_all()
        run.dag = scheduler_dag
        schedulable, _ = run.update_state(session=session, execute_callbacks=False)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        for ti in run.get_task_instances(session=session):
            if ti.state == TaskInstanceState.SCHEDULED:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    return run.state


if __name__ == "__main__":
    print("DagRun Finished: state=%s" % resume(*sys.argv[1:3]))
