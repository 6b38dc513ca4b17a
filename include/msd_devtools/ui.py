"""Serve the Airflow UI for local use: api-server on 127.0.0.1, scheduler, dag-processor
and triggerer as separate processes with pid files (not ``airflow standalone``, which
opens log servers on every address).

    python -m msd_devtools.ui start [--port 8300]   # then open http://127.0.0.1:8300
    python -m msd_devtools.ui status
    python -m msd_devtools.ui stop

Login: local dev skips it — SimpleAuthManager with ``simple_auth_manager_all_admins``
makes every visitor an admin, which is safe only because the api-server listens on
127.0.0.1. ``--login`` turns it off: user ``admin``, password in
``<AIRFLOW_HOME>/simple_auth_manager_passwords.json.generated``.

AIRFLOW_HOME defaults to ``.state/airflow`` (sqlite, LocalExecutor, the project's dags).
Connections come from the environment when set (``AIRFLOW_CONN_MONGO_DEFAULT``,
``AIRFLOW_CONN_SPARK_DEFAULT``); otherwise the embedded defaults: the SecantusDB of
``python -m msd_devtools.services start`` on 127.0.0.1:27017 and Spark ``local[*]``.
The scheduler and triggerer run with ``--skip-serve-logs``: the api-server reads task
logs from the local log folder.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from msd_devtools.services import HOST, ManagedProcess, ServiceError
from msd_pipeline.paths import PROJECT_ROOT


DEFAULT_HOME = PROJECT_ROOT / ".state" / "airflow"
DEFAULT_PORT = 8300
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EMBEDDED_CONNECTIONS = {
    "AIRFLOW_CONN_MONGO_DEFAULT": json.dumps(
        {"conn_type": "mongo", "host": HOST, "port": 27017}),
    "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[*]"}),
}
# Components started after the api-server, with the name its health endpoint uses.
BACKGROUND_COMPONENTS = (("scheduler", "scheduler"), ("dag-processor", "dag_processor"),
                         ("triggerer", "triggerer"))


def ui_env(home: Path, port: int, login: bool = False) -> Dict[str, str]:
    """Environment of every UI process (on top of os.environ)."""
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///{}".format(home / "airflow.db"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://{}:{}/execution/".format(HOST, port),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": "http://{}:{}".format(HOST, port),
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(not login),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    for name, value in EMBEDDED_CONNECTIONS.items():
        env[name] = os.environ.get(name, value)
    return env


def components(home: Path, port: int, login: bool = False) -> List[ManagedProcess]:
    """The api-server first (its health endpoint tells when the others are up)."""
    env = ui_env(home, port, login)
    state_dir = home / "run"
    api = ManagedProcess("airflow-api-server", [AIRFLOW, "api-server", "--host", HOST,
                                                "--port", str(port)],
                         port, state_dir, lambda: component_health(port) is not None,
                         env=env, start_timeout=180)
    others = []
    for command, health_name in BACKGROUND_COMPONENTS:
        argv = [AIRFLOW, command] + (["--skip-serve-logs"] if command != "dag-processor" else [])
        others.append(ManagedProcess(
            "airflow-" + command, argv, 0, state_dir,
            lambda name=health_name: (component_health(port) or {}).get(name) == "healthy",
            env=env, start_timeout=180))
    return [api] + others


def component_health(port: int) -> Optional[Dict[str, str]]:
    """``{"metadatabase": "healthy", "scheduler": ..., ...}`` from the api-server, or None."""
    url = "http://{}:{}/api/v2/monitor/health".format(HOST, port)
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            health = json.load(reply)
    except (OSError, ValueError):
        return None
    return {name: (part or {}).get("status") for name, part in health.items()}


def migrate(home: Path, port: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run([AIRFLOW, "db", "migrate"], env={**os.environ, **ui_env(home, port)},
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise ServiceError("airflow db migrate failed:\n" + completed.stdout[-2000:]
                           + completed.stderr[-2000:])


def start(home: Path, port: int, login: bool = False) -> List[ManagedProcess]:
    processes = components(home, port, login)
    if processes[0].pid() is None:
        migrate(home, port)
    for process in processes:
        process.start()
    return processes


def stop(home: Path, port: int) -> None:
    """Stop every component at once: each may take its grace period to exit."""
    processes = components(home, port)
    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
        list(pool.map(lambda process: process.stop(), processes))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msd_devtools.ui",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("MSD_UI_PORT", DEFAULT_PORT)))
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("MSD_AIRFLOW_HOME", DEFAULT_HOME)))
    parser.add_argument("--login", action="store_true",
                        help="require login (user admin; password in "
                             "<home>/simple_auth_manager_passwords.json.generated)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start(args.home, args.port, args.login)
            print("Airflow UI: http://{}:{}  (AIRFLOW_HOME {})".format(HOST, args.port, args.home))
        elif args.action == "stop":
            stop(args.home, args.port)
            print("Airflow UI stopped")
        else:
            for process in components(args.home, args.port):
                print(json.dumps(process.status()))
    except ServiceError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
