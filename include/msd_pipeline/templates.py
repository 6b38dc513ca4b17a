"""The one way templated fields refer to another task's XCom."""
from typing import Optional, Union


def xcom(task_id: str, *path: Union[str, int], key: Optional[str] = None) -> str:
    """Jinja for the XCom of ``task_id`` (``key``: a named XCom), indexed by ``path``:
    ``xcom("prepare_run", "run_key")`` → ``{{ ti.xcom_pull(task_ids='prepare_run')['run_key'] }}``."""
    pull = "ti.xcom_pull(task_ids=%r%s)" % (task_id, ", key=%r" % key if key else "")
    return "{{ %s%s }}" % (pull, "".join("[%r]" % part for part in path))
