"""Helpers for tests that run Airflow for real (``airflow dags test`` in a subprocess).

One temporary AIRFLOW_HOME with a migrated sqlite database per test session
(``airflow_home()``, cached), connections passed as ``AIRFLOW_CONN_*`` environment
variables, and the pipeline configuration as a JSON file named by $MSD_CONFIG.

    home = airflow_home()
    env = airflow_env(home, connections={"mongo_default": mongo_connection(uri)},
                      config_overrides={"pipeline.retries": 0})
    result = run_dags_test("msd_local_pipeline", env, conf={"folds": 2})
    assert result.returncode == 0 and dag_run_state(result.output) == "success"
"""
import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

from msdlib.config import load_config
from project_paths import PROJECT_ROOT

DAGS_FOLDER = PROJECT_ROOT / "dags"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
_RUN_STATE = re.compile(r"DagRun Finished: .*?state=(\w+)")


@dataclass
class DagTestResult:
    returncode: int
    output: str

    @property
    def state(self) -> Optional[str]:
        """The DAG run's final state as logged by ``airflow dags test``."""
        match = _RUN_STATE.search(self.output)
        return match.group(1) if match else None


@functools.lru_cache(maxsize=None)
def airflow_home() -> Path:
    """A temporary AIRFLOW_HOME with a migrated sqlite database, once per process."""
    home = Path(tempfile.mkdtemp(prefix="msd-airflow-home-"))
    atexit.register(shutil.rmtree, home, True)
    env = airflow_env(home)
    completed = subprocess.run([AIRFLOW, "db", "migrate"], env=env, cwd=home,
                               capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError("airflow db migrate failed:\n" + completed.stdout + completed.stderr)
    return home


def airflow_env(home: Path, connections: Optional[Mapping[str, str]] = None,
                config_overrides: Optional[Mapping[str, Any]] = None,
                extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for an Airflow subprocess: ``home``, the project's dags, sqlite,
    ``connections`` ({conn_id: URI or JSON}), and when ``config_overrides`` is given a
    pipeline configuration file with them applied ($MSD_CONFIG)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW_", "AIRFLOW__", "MSD_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///{}".format(home / "airflow.db"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "PATH": str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""),
    })
    for conn_id, value in (connections or {}).items():
        env["AIRFLOW_CONN_" + conn_id.upper()] = value
    if config_overrides is not None:
        env["MSD_CONFIG"] = str(write_config(home, config_overrides))
    env.update(extra or {})
    return env


def write_config(directory: Path, overrides: Mapping[str, Any]) -> Path:
    """include/pipeline.toml with ``overrides`` applied, as a JSON file in ``directory``."""
    config = load_config(overrides=dict(overrides))
    fd, path = tempfile.mkstemp(prefix="pipeline-", suffix=".json", dir=str(directory))
    with os.fdopen(fd, "w") as handle:
        handle.write(config.to_json())
    return Path(path)


def run_dags_test(dag_id: str, env: Mapping[str, str], conf: Optional[Mapping[str, Any]] = None,
                  timeout: float = 900, logical_date: Optional[str] = None) -> DagTestResult:
    """``airflow dags test dag_id [logical_date] -c conf``; returns the exit code and
    combined output (the run id follows the clock, not ``logical_date``)."""
    command = [AIRFLOW, "dags", "test", dag_id]
    if logical_date is not None:
        command.append(logical_date)
    if conf is not None:
        command += ["-c", json.dumps(conf)]
    completed = subprocess.run(command, env=dict(env), cwd=env["AIRFLOW_HOME"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout)
    return DagTestResult(completed.returncode, completed.stdout)


def mongo_connection(uri: str, **extras: Any) -> str:
    """An Airflow connection (JSON form) for a ``mongodb://[user:pw@]host:port[/db]`` URI."""
    parts = urlsplit(uri)
    connection = {"conn_type": "mongo", "host": parts.hostname, "port": parts.port}
    if parts.username:
        connection.update(login=parts.username, password=parts.password)
    if parts.path.strip("/"):
        connection["schema"] = parts.path.strip("/")
    if extras:
        connection["extra"] = extras
    return json.dumps(connection)


def spark_connection(master: str) -> str:
    """An Airflow Spark connection (JSON form) for ``local[*]`` or ``spark://host:port``."""
    return json.dumps({"conn_type": "spark", "host": master})
