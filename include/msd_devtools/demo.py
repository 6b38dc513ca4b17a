"""``make demo``: the whole local pipeline on the embedded default.

Runs ``airflow dags test msd_local_pipeline`` with the local Airflow home of
``python -m msd_devtools.ui`` (sqlite), Spark ``local[*]`` and the SecantusDB server of
``python -m msd_devtools.services start mongo``, then prints where the run's report,
metrics and run record are. Data: the real songs of ../shared/msd when present,
generated songs otherwise (the DAG's ``auto`` data source).

    python -m msd_devtools.demo [--conf '{"folds": 3}']
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

import pymongo

from msd_devtools import services, ui
from msdlib.config import load_config

DAG_ID = "msd_local_pipeline"


def run_pipeline(conf: Dict[str, Any]) -> int:
    """``airflow dags test`` with its output streamed to the console; the exit code."""
    home, port = ui.DEFAULT_HOME, ui.DEFAULT_PORT
    ui.migrate(home, port)
    env = {**os.environ, **ui.ui_env(home, port)}
    command = [ui.AIRFLOW, "dags", "test", DAG_ID, "-c", json.dumps(conf)]
    return subprocess.run(command, env=env, cwd=str(home)).returncode


def run_record_since(started: datetime.datetime) -> Optional[Dict[str, Any]]:
    """The newest record of this DAG written after ``started``, if any."""
    config = load_config()
    client = pymongo.MongoClient(services.mongo_uri(), serverSelectionTimeoutMS=5000)
    try:
        runs = client[config.mongo.database][config.mongo.runs_collection]
        return runs.find_one({"dag_id": DAG_ID, "recorded_at": {"$gte": started}},
                             {"artifacts": 1, "airflow_run_id": 1},
                             sort=[("recorded_at", pymongo.DESCENDING)])
    finally:
        client.close()


def describe(record: Dict[str, Any]) -> List[str]:
    artifacts = record["artifacts"]
    return ["run:     {}".format(record["airflow_run_id"]),
            "report:  {}".format(artifacts.get("report_uri")),
            "metrics: {}".format(artifacts.get("metrics_uri")),
            "record:  pipeline_runs {}".format(record["_id"])]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msd_devtools.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", type=json.loads, default={},
                        help="DAG run params as JSON, e.g. '{\"folds\": 3}'")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    returncode = run_pipeline(args.conf)
    if returncode != 0:
        print("msd_local_pipeline failed (exit {}); see the task logs above".format(returncode),
              file=sys.stderr)
        return returncode
    record = run_record_since(started)
    if record is None:
        print("msd_local_pipeline did not succeed: no new record in pipeline_runs", file=sys.stderr)
        return 1
    print("\n".join(["", "msd_local_pipeline succeeded"] + describe(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
