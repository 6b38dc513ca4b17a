"""A DAG's run timeout derived from its tasks' budgets, so that it never cuts a run whose
tasks may still finish (on a run timeout the scheduler skips every unfinished task, the
teardown included)."""
import datetime
from typing import Dict

from airflow.sdk import DAG, BaseOperator

# Scheduling latency and queueing on top of the tasks' own budgets.
RUN_TIMEOUT_MARGIN = datetime.timedelta(minutes=30)


def run_budget(dag: DAG) -> datetime.timedelta:
    """The longest path through ``dag``, each task weighted by what all its tries may take."""
    finish: Dict[str, datetime.timedelta] = {}

    def finish_of(task_id: str) -> datetime.timedelta:
        if task_id not in finish:
            task = dag.get_task(task_id)
            start = max((finish_of(upstream) for upstream in task.upstream_task_ids),
                        default=datetime.timedelta(0))
            finish[task_id] = start + _task_budget(task)
        return finish[task_id]

    return max((finish_of(task_id) for task_id in dag.task_ids), default=datetime.timedelta(0))


def _task_budget(task: BaseOperator) -> datetime.timedelta:
    timeout = task.execution_timeout or getattr(task, "response_timeout", None)  # approval
    if timeout is None:
        raise ValueError(f"task {task.task_id} has no execution_timeout: the run timeout "
                         "cannot be derived")
    return (task.retries + 1) * timeout + task.retries * task.retry_delay
