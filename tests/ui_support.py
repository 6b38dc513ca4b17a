"""The Airflow UI for browser tests: ``python -m msd_devtools.ui`` on a free port of
127.0.0.1 with an Airflow home, a pipeline configuration and a Mongo database of its
own, driven in headless Chromium by the node scripts of tests/browser/.

    with running_ui(tmp_path_factory, mongo_uri, tracking_uri) as ui:
        outcome = run_browser_script("asset_retrain.mjs", "--url", ui["url"], ...,
                                     timeout_seconds=1200)
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional

import pymongo
import pytest

from airflow_support import mongo_connection, spark_connection, write_config
from msd_devtools import services
from project_paths import PROJECT_ROOT

BROWSER_DIR = PROJECT_ROOT / "tests" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "ui"
GENERATED_SONGS = 120
# Margin of a node script's subprocess over the script's own --timeout-seconds.
SCRIPT_TIMEOUT_MARGIN_SECONDS = 120

needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()
    or shutil.which("node") is None,
    reason="needs /usr/bin/chromium (apt-get install chromium), node, and playwright-core "
           "(npm ci --prefix tests/browser)")


def _ui_config(work: Path, database: str, tracking_uri: str) -> Dict[str, Any]:
    """Manual runs only, generated songs, and one model of each kind on one grid point
    with two folds (a training of about a minute)."""
    return {
        "pipeline.schedule": "", "pipeline.retries": 0, "mongo.database": database,
        "retraining.schedule": "", "retraining.tracking_uri": tracking_uri,
        "staging.mode": "generated", "staging.generated_songs": GENERATED_SONGS,
        "staging.data_dir": str(work / "data"), "training.artifacts_uri": str(work / "artifacts"),
        "training.folds": 2, "training.classifiers": ["logistic_regression"],
        "training.regressors": ["linear_regression"],
        "training.grids": {"logistic_regression": {"regParam": [0.01]},
                           "linear_regression": {"regParam": [0.1]}},
    }


@contextlib.contextmanager
def running_ui(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, tracking_uri: str,
               overrides: Optional[Mapping[str, Any]] = None) -> Iterator[Dict[str, Any]]:
    """The UI serving the project's DAGs, configured by ``_ui_config`` and ``overrides``;
    yields {url, database, status (one dict per component)}; stops it and drops the
    database afterwards."""
    home = tmp_path_factory.mktemp("ui_airflow_home")
    work = tmp_path_factory.mktemp("ui_data")
    database = "ui_" + uuid.uuid4().hex[:10]
    config = write_config(work, {**_ui_config(work, database, tracking_uri), **(overrides or {})})
    port = services.free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW_", "AIRFLOW__", "MSD_"))}
    env.update(MSD_CONFIG=str(config),
               AIRFLOW_CONN_MONGO_DEFAULT=mongo_connection(mongo_uri),
               AIRFLOW_CONN_SPARK_DEFAULT=spark_connection("local[2]"))
    command = [sys.executable, "-m", "msd_devtools.ui"]
    options = ["--port", str(port), "--home", str(home)]
    started = subprocess.run(command + ["start"] + options, env=env, capture_output=True,
                             text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = subprocess.run(command + ["status"] + options, env=env, capture_output=True,
                                text=True, timeout=60)
        yield {"url": "http://127.0.0.1:{}".format(port), "database": database,
               "status": [json.loads(line) for line in status.stdout.splitlines()]}
    finally:
        subprocess.run(command + ["stop"] + options, env=env, timeout=120)
        pymongo.MongoClient(mongo_uri).drop_database(database)


def run_browser_script(script: str, *arguments: str, timeout_seconds: int) -> Dict[str, Any]:
    """``node tests/browser/<script> ... --timeout-seconds N``: the JSON line it prints last,
    once it exited 0 (else the assertion shows its output)."""
    completed = subprocess.run(
        ["node", str(BROWSER_DIR / script), *arguments, "--timeout-seconds", str(timeout_seconds)],
        cwd=BROWSER_DIR, capture_output=True, text=True,
        timeout=timeout_seconds + SCRIPT_TIMEOUT_MARGIN_SECONDS)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])
