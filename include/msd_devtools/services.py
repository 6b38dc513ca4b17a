"""Embedded services for local runs and tests: a SecantusDB server, a Spark
standalone master + worker started from the pip-installed pyspark, the MLflow
tracking server (SQLite backend, artifacts served from the state folder) and the
prediction service (uvicorn; MLflow's champion, or a run folder with --run-uri).

Every service binds to 127.0.0.1, keeps a pid file and a log under the state folder,
starts idempotently (a running service is left alone), waits until it is ready, and
fails with a clear error when its port is taken by another process.

    python -m msd_devtools.services start mongo|spark|mlflow|serving|all
    python -m msd_devtools.services status
    python -m msd_devtools.services stop
"""
import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pyspark

from msd_pipeline.paths import PROJECT_ROOT


DEFAULT_STATE_DIR = PROJECT_ROOT / ".state"
HOST = "127.0.0.1"
# The MLflow tracking server the prediction service asks for the champion by default.
DEFAULT_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI", f"http://{HOST}:5000")


class ServiceError(RuntimeError):
    """A service could not be started or stopped."""


@dataclass
class ManagedProcess:
    """A daemon process owned through a pid file in ``state_dir``."""

    name: str
    argv: List[str]
    port: int
    state_dir: Path
    is_ready: Callable[[], bool]
    env: Dict[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> Optional[int]:
        """The pid from the pid file if that process is alive; clears a stale file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if _process_alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self) -> int:
        pid = self.pid()
        if pid is not None:
            self._wait_ready(pid)
            return pid
        if port_in_use(self.port):
            raise ServiceError(
                f"{self.name}: port {HOST}:{self.port} is taken by another process; "
                f"stop it or choose another port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        self._wait_ready(process.pid)
        return process.pid

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the process by pid; True when one was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _process_alive(pid):
            _signal_group(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> Dict[str, object]:
        pid = self.pid()
        return {"name": self.name, "pid": pid, "port": self.port,
                "running": pid is not None, "ready": pid is not None and self.is_ready(),
                "log": str(self.log_file)}

    def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not _process_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"{self.name} exited during start-up; see {self.log_file}:\n"
                                   + _tail(self.log_file))
            if self.is_ready():
                return
            time.sleep(0.3)
        raise ServiceError(f"{self.name} not ready after {self.start_timeout:.0f}s; "
                           f"see {self.log_file}")


def mongo_service(state_dir: Path = DEFAULT_STATE_DIR, port: int = 27017,
                  storage: Optional[str] = None) -> ManagedProcess:
    """SecantusDB in standalone mode (no oplog); ``storage=':memory:'`` for tests."""
    storage = storage or str(state_dir / "mongo-data")
    argv = [_venv_script("secantusd-py"), "--standalone", "--host", HOST, "--port", str(port),
            "--storage-path", storage, "--log-level", "WARNING"]
    return ManagedProcess("mongo", argv, port, state_dir, lambda: _mongo_ready(port))


def mongo_uri(port: int = 27017) -> str:
    return f"mongodb://{HOST}:{port}/"


def spark_master_service(state_dir: Path = DEFAULT_STATE_DIR, port: int = 7077,
                         webui_port: int = 8090,
                         spark_dir: Optional[str] = None) -> ManagedProcess:
    """``spark_dir``: another Spark installation than this venv's pyspark."""
    argv = [_spark_class(spark_dir), "org.apache.spark.deploy.master.Master",
            "--host", HOST, "--port", str(port), "--webui-port", str(webui_port)]
    return ManagedProcess("spark-master", argv, port, state_dir,
                          lambda: _master_state(webui_port) is not None,
                          env=_spark_env(spark_dir))


def spark_worker_service(state_dir: Path = DEFAULT_STATE_DIR, master_port: int = 7077,
                         master_webui_port: int = 8090, webui_port: int = 8091,
                         cores: int = 2, memory: str = "2g",
                         spark_dir: Optional[str] = None) -> ManagedProcess:
    argv = [_spark_class(spark_dir), "org.apache.spark.deploy.worker.Worker",
            "--host", HOST, "--webui-port", str(webui_port), "--cores", str(cores),
            "--memory", memory, "--work-dir", str(state_dir / "spark-work"),
            spark_master_url(master_port)]
    return ManagedProcess("spark-worker", argv, webui_port, state_dir,
                          lambda: _alive_workers(master_webui_port) > 0,
                          env=_spark_env(spark_dir))


def mlflow_service(state_dir: Path = DEFAULT_STATE_DIR, port: int = 5000) -> ManagedProcess:
    """The MLflow tracking server and model registry: SQLite in ``state_dir``, artifacts
    served over HTTP from ``state_dir/mlflow-artifacts``, one worker."""
    argv = [_venv_script("mlflow"), "server", "--host", HOST, "--port", str(port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{state_dir / 'mlflow.db'}",
            "--artifacts-destination", str(state_dir / "mlflow-artifacts")]
    return ManagedProcess("mlflow", argv, port, state_dir,
                          lambda: _http_answers(f"{mlflow_uri(port)}/health"), start_timeout=120.0)


@contextlib.contextmanager
def running_mlflow(state_dir: Path) -> Iterator[str]:
    """An MLflow server of its own on a free port, for the duration of the block: its URI."""
    server = mlflow_service(state_dir, free_port())
    server.start()
    try:
        yield mlflow_uri(server.port)
    finally:
        server.stop()


def mlflow_uri(port: int = 5000) -> str:
    return f"http://{HOST}:{port}"


def serving_service(state_dir: Path = DEFAULT_STATE_DIR, port: int = 8000,
                    run_uri: str = "", tracking_uri: str = "",
                    poll_seconds: float = 30.0, env: Optional[Dict[str, str]] = None,
                    workers: int = 1, api_keys_file: str = "") -> ManagedProcess:
    """The prediction service (uvicorn): a run folder, or MLflow's champion alias.
    API keys reach it as in docker-compose: the file named by
    $MSD_SERVING_API_KEYS_FILE (``api_keys_file``) and/or $MSD_SERVING_API_KEYS, from
    this environment or ``env``. Ready once /health/live answers, with or without a
    model (the alias may be unset: /health/ready says 503)."""
    argv = [sys.executable, "-m", "msd_serving.app", "--host", HOST, "--port", str(port),
            "--poll-seconds", str(poll_seconds), "--workers", str(workers)]
    argv += ["--run-uri", run_uri] if run_uri else [
        "--tracking-uri", tracking_uri or DEFAULT_TRACKING_URI]
    service_env = dict(env or {})
    if api_keys_file:
        service_env["MSD_SERVING_API_KEYS_FILE"] = str(Path(api_keys_file).resolve())
    return ManagedProcess("serving", argv, port, state_dir,
                          lambda: _http_answers(f"{serving_uri(port)}/health/live"),
                          env=service_env)


def serving_uri(port: int = 8000) -> str:
    return f"http://{HOST}:{port}"


def spark_master_url(port: int = 7077) -> str:
    return f"spark://{HOST}:{port}"


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def spark_home() -> str:
    return os.path.dirname(pyspark.__file__)


def _venv_script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _spark_class(spark_dir: Optional[str] = None) -> str:
    return os.path.join(spark_dir or spark_home(), "bin", "spark-class")


def _spark_env(spark_dir: Optional[str] = None) -> Dict[str, str]:
    return {"SPARK_HOME": spark_dir or spark_home(), "SPARK_LOCAL_IP": HOST,
            "PYSPARK_PYTHON": sys.executable}


def _mongo_ready(port: int) -> bool:
    import pymongo
    from pymongo.errors import PyMongoError

    client = pymongo.MongoClient(mongo_uri(port), serverSelectionTimeoutMS=500)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _http_answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _master_state(webui_port: int) -> Optional[dict]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{webui_port}/json/", timeout=1) as reply:
            return json.load(reply)
    except (OSError, ValueError):
        return None


def _alive_workers(master_webui_port: int) -> int:
    state = _master_state(master_webui_port) or {}
    return int(state.get("aliveworkers", 0))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: pid is the group leader
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _services(args: argparse.Namespace) -> List[ManagedProcess]:
    state_dir = Path(args.state_dir)
    mongo = mongo_service(state_dir, args.mongo_port)
    spark = [spark_master_service(state_dir, args.spark_port, args.spark_webui_port),
             spark_worker_service(state_dir, args.spark_port, args.spark_webui_port,
                                  args.spark_webui_port + 1)]
    mlflow = mlflow_service(state_dir, args.mlflow_port)
    serving = serving_service(state_dir, args.serving_port, args.run_uri,
                              workers=args.serving_workers,
                              api_keys_file=args.serving_api_keys_file)
    return {"mongo": [mongo], "spark": spark, "mlflow": [mlflow], "serving": [serving],
            "all": [mongo] + spark + [mlflow, serving]}[args.which]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msd_devtools.services",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("which", nargs="?",
                        choices=["mongo", "spark", "mlflow", "serving", "all"], default="all")
    parser.add_argument("--state-dir", default=os.environ.get("MSD_STATE_DIR", DEFAULT_STATE_DIR))
    parser.add_argument("--mongo-port", type=int, default=int(os.environ.get("MSD_MONGO_PORT", 27017)))
    parser.add_argument("--spark-port", type=int, default=7077)
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MSD_MLFLOW_PORT", 5000)))
    parser.add_argument("--spark-webui-port", type=int, default=8090)
    parser.add_argument("--serving-port", type=int,
                        default=int(os.environ.get("MSD_SERVING_PORT", 8000)))
    parser.add_argument("--run-uri", default=os.environ.get("MSD_SERVING_RUN_URI", ""),
                        help="serving: this training run folder instead of MLflow's "
                             "champion ($MLFLOW_TRACKING_URI, default 127.0.0.1:5000)")
    parser.add_argument("--serving-api-keys-file",
                        default=os.environ.get("MSD_SERVING_API_KEYS_FILE", ""),
                        help="serving: file of API keys, one per line (or keys in "
                             "$MSD_SERVING_API_KEYS); /predict and /model then need one")
    parser.add_argument("--serving-workers", type=int,
                        default=int(os.environ.get("MSD_SERVING_WORKERS", 1)),
                        help="serving: worker processes")
    args = parser.parse_args(argv)
    services = _services(args)
    try:
        if args.action == "start":
            for service in services:
                print(f"{service.name}: running, pid {service.start()}, port {service.port}")
        elif args.action == "stop":
            for service in reversed(services):
                print(f"{service.name}: {'stopped' if service.stop() else 'was not running'}")
        else:
            print(json.dumps([service.status() for service in services], indent=2))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
