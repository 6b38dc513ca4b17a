"""Shared by the EMR runtime tier (tests/emr_runtime/): the Python 3.9 interpreters that
``make setup-emr`` builds, one run's files in moto S3 as the Airflow side puts them before
the first Spark step (code, songs, job configuration, the Mongo secret), and the checks of
the ingest and training jobs' results."""
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import pymongo
import pytest
from packaging.utils import canonicalize_name

from emr_support import client
from msd_pipeline.staging.generator import generate_songs
from msd_pipeline.targets.emr import code_shipping, mongo_secret
from msd_pipeline.targets.emr.layout import RunLayout, split_s3_uri
from msdlib.config import PipelineConfig, load_config
from project_paths import REAL_TRACKS

SONGS = 200

# Reports the interpreter's view: its version, pyspark's version and home.
INSPECT_PYTHON = """
import json, os, sys
import pyspark
print(json.dumps({"pyspark": pyspark.__version__, "spark_home": os.path.dirname(pyspark.__file__),
                  "python": sys.version_info[:2]}))
"""


def interpreter(variable: str) -> str:
    """The interpreter ``make`` names in $``variable``; skips the test without one."""
    path = os.environ.get(variable, "")
    if not path or not Path(path).exists():
        pytest.skip(f"no EMR runtime environment: run `make test-emr-runtime` "
                    f"(builds it and sets ${variable})")
    return path


def inspect_python(path: str) -> dict:
    """The interpreter's view, and what its pip reports installed (name → version)."""
    inspect = subprocess.run([path, "-c", INSPECT_PYTHON], capture_output=True, text=True,
                             timeout=120, check=True)
    freeze = subprocess.run([path, "-m", "pip", "freeze"], capture_output=True, text=True,
                            timeout=120, check=True)
    installed = {}
    for line in freeze.stdout.split():
        name, _, version = line.partition("==")
        installed[canonicalize_name(name)] = version
    return dict(json.loads(inspect.stdout), installed=installed)


def pick_songs(folder: Path) -> Tuple[Path, List[Path]]:
    """Real MSD songs when ../shared/msd is present, else songs generated into ``folder``."""
    real = sorted(REAL_TRACKS.glob("*/*/*/*.h5"))
    if real:
        return REAL_TRACKS, real[:SONGS]
    return folder, sorted(Path(p) for p in generate_songs(str(folder), SONGS, seed=11))


def runtime_config(bucket: str, database: str) -> PipelineConfig:
    """The pipeline configuration of a small run below ``s3://bucket``."""
    return load_config().with_overrides({
        "mongo.database": database,
        "spark.master": "yarn",
        "emr.s3_root": "s3://{}/pipeline".format(bucket),
        "ingest.array_encoding": "float32",
        "training.artifacts_uri": "s3://{}/artifacts".format(bucket),
        "training.folds": 2,
        "training.parallelism": 1,
        "training.classifiers": ["logistic_regression"],
        "training.regressors": ["linear_regression"],
        "training.grids": {"logistic_regression": {"regParam": [0.01]},
                           "linear_regression": {"regParam": [0.1]}},
    })


@dataclass
class StagedRun:
    config: PipelineConfig
    layout: RunLayout
    secret_id: str
    songs: int


def stage_run(moto_url: str, config: PipelineConfig, run_key: str, songs: Tuple[Path, List[Path]],
              mongo_uri: str) -> StagedRun:
    """What a run has put in place before its first step: the code, the songs and the
    job configuration in S3, and the run's Mongo secret holding ``mongo_uri``."""
    layout = RunLayout(config.emr.s3_root, run_key)
    s3 = client("s3", moto_url)
    for name, data in code_shipping.code_files().items():
        bucket, key = split_s3_uri(layout.code_uri(name))
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    source = layout.data_prefix + "/songs"
    root, paths = songs
    bucket, prefix = split_s3_uri(source)
    for path in paths:
        s3.put_object(Bucket=bucket, Key=prefix + "/" + path.relative_to(root).as_posix(),
                      Body=path.read_bytes())
    config = config.with_overrides({"ingest.source": source + "/"})
    bucket, key = split_s3_uri(layout.job_config_uri)
    s3.put_object(Bucket=bucket, Key=key, Body=config.to_json().encode("utf-8"))
    secret_id = mongo_secret.secret_name(config.emr.mongo_secret_prefix, run_key)
    client("secretsmanager", moto_url).create_secret(Name=secret_id, SecretString=mongo_uri)
    return StagedRun(config, layout, secret_id, len(paths))


def fetch(moto_url: str, uri: str, folder: Path) -> Path:
    """The S3 object as a local file in ``folder`` (pip's Spark has no s3:// filesystem)."""
    bucket, key = split_s3_uri(uri)
    target = folder / key.rsplit("/", 1)[-1]
    client("s3", moto_url).download_file(bucket, key, str(target))
    return target


def last_json_line(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, "exit {}\n{}".format(result.returncode, result.stderr[-6000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_s3_json(moto_url: str, uri: str) -> dict:
    bucket, key = split_s3_uri(uri)
    return json.loads(client("s3", moto_url).get_object(Bucket=bucket, Key=key)["Body"].read())


def check_ingest(summary: dict, run: StagedRun, summary_uri: str, moto_url: str,
                 mongo_uri: str) -> None:
    """The ingest job read every staged song from S3 and stored (nearly) all of them."""
    assert summary["ok"] is True
    assert summary["files_seen"] == run.songs
    assert summary["files_ingested"] + summary["files_failed"] == run.songs
    assert summary["files_ingested"] >= 0.95 * run.songs
    assert read_s3_json(moto_url, summary_uri) == summary
    songs = pymongo.MongoClient(mongo_uri)[run.config.mongo.database][
        run.config.mongo.songs_collection]
    assert songs.count_documents({}) == summary["files_ingested"]
    bucket, _ = split_s3_uri(run.config.emr.s3_root)
    assert songs.count_documents({"source.path": {"$regex": "^s3://{}/".format(bucket)}}) == \
        summary["files_ingested"]


def check_training(summary: dict, run: StagedRun, summary_uri: str, moto_url: str,
                   mongo_uri: str) -> None:
    """The training job stored both tasks' models, the report and its plot, imputing none."""
    assert summary["status"] == "succeeded"
    assert read_s3_json(moto_url, summary_uri) == summary
    run_uri = summary["artifacts"]
    assert run_uri == "{}/{}".format(run.config.training.artifacts_uri, run.layout.run_key)
    metrics = read_s3_json(moto_url, run_uri + "/metrics.json")
    bucket, prefix = split_s3_uri(run_uri)
    keys = {item["Key"][len(prefix) + 1:] for page in client("s3", moto_url).get_paginator(
        "list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for item in page.get("Contents", [])}
    for task in ("decade", "year"):
        assert "{}/metadata/part-00000".format(metrics[task]["model_dir"]) in keys
    assert {"report.md", "plots/confusion_matrix.png"} <= keys
    songs = pymongo.MongoClient(mongo_uri)[run.config.mongo.database][
        run.config.mongo.songs_collection]
    assert songs.count_documents({"predicted": {"$exists": True}}) == 0  # training never imputes
