"""The EMR runtime tier: both Spark jobs end to end on EMR 7's Python (3.9), the Spark that
``emr.release_label`` ships and the exact Python packages the cluster's bootstrap installs
(.venv-emr, built by ``make setup-emr`` from include/emr/requirements-emr.txt with a 3.9
interpreter), the way a cluster runs them:

* the run's code (the msdlib zip, the job scripts) shipped to S3 as ``ship_code`` does,
  fetched back and started with the step's own spark-submit line (``--master yarn``
  becomes ``local[2]``) and the cluster request's spark-defaults as ``--conf``;
* the job configuration, the songs, the summaries and the artifacts in moto S3 (server
  mode); SecantusDB, with a user and password, as the database;
* the Mongo URI read from the run's Secrets Manager secret, named by the cluster
  request's spark-env exports: no MSD_MONGO_URI anywhere.

Real MSD songs from ../shared/msd when present, generated ones otherwise.
``make test`` and ``make test-emr-runtime`` set $MSD_EMR_PYTHON; without it these tests
skip.
"""
import json
import os
import subprocess
import uuid
from pathlib import Path

import pymongo
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from emr_support import aws_env, client, download_prefix, mongo_user_uri, moto_server
from msd_pipeline.staging.generator import generate_songs
from msd_pipeline.targets.emr import code_shipping, mongo_secret, releases, steps
from msd_pipeline.targets.emr.cluster import build_job_flow_request
from msd_pipeline.targets.emr.layout import JOBS_ZIP, REQUIREMENTS, RunLayout, split_s3_uri
from msdlib import env_vars
from msdlib.config import load_config
from project_paths import PROJECT_ROOT, REAL_TRACKS

BUCKET = "msd-emr-runtime"
RUN_KEY = "emr_runtime__" + uuid.uuid4().hex[:8]
SONGS = 200
MONGO_USER = "msd_emr_runtime"
MONGO_PASSWORD = "emr-Runtime-pw-93c1e7"
JOB_TIMEOUT_SECONDS = 900

# Reports the EMR interpreter's view: its version, pyspark's version and home.
INSPECT_EMR_PYTHON = """
import json, os, sys
import pyspark
print(json.dumps({"pyspark": pyspark.__version__, "spark_home": os.path.dirname(pyspark.__file__),
                  "python": sys.version_info[:2]}))
"""


@pytest.fixture(scope="module")
def emr_python():
    path = os.environ.get("MSD_EMR_PYTHON", "")
    if not path or not Path(path).exists():
        pytest.skip("no EMR runtime environment: run `make test-emr-runtime` "
                    "(builds .venv-emr and sets $MSD_EMR_PYTHON)")
    return path


@pytest.fixture(scope="module")
def emr_runtime(emr_python):
    """The interpreter's view, and what its pip reports installed (name → version)."""
    inspect = subprocess.run([emr_python, "-c", INSPECT_EMR_PYTHON], capture_output=True,
                             text=True, timeout=120, check=True)
    freeze = subprocess.run([emr_python, "-m", "pip", "freeze"], capture_output=True,
                            text=True, timeout=120, check=True)
    installed = {}
    for line in freeze.stdout.split():
        name, _, version = line.partition("==")
        installed[canonicalize_name(name)] = version
    return dict(json.loads(inspect.stdout), installed=installed)


def pins_for(python_version):
    """The pins of requirements-emr.txt that apply on ``python_version`` (name → version)."""
    pins = {}
    for line in (PROJECT_ROOT / "include" / "emr" / REQUIREMENTS).read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(
                {"python_version": python_version}):
            continue
        [pin] = requirement.specifier
        assert pin.operator == "==", text
        pins[canonicalize_name(requirement.name)] = pin.version
    return pins


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(BUCKET) as url:
        yield url


@pytest.fixture(scope="module")
def songs_dir(tmp_path_factory):
    """Real MSD songs when ../shared/msd is present, else generated ones."""
    real = sorted(REAL_TRACKS.glob("*/*/*/*.h5"))
    if real:
        return REAL_TRACKS, real[:SONGS]
    folder = tmp_path_factory.mktemp("emr-runtime-songs")
    return folder, sorted(Path(p) for p in generate_songs(str(folder), SONGS, seed=11))


@pytest.fixture(scope="module")
def mongo_with_password(mongo_uri):
    return mongo_user_uri(mongo_uri, MONGO_USER, MONGO_PASSWORD) + "/?authSource=admin"


@pytest.fixture(scope="module")
def cluster_run(moto_url, songs_dir, mongo_with_password, tmp_path_factory):
    """Everything a run has put in place before its first step: code, songs and job
    config in S3, the Mongo secret, and the cluster request (spark-defaults, spark-env)."""
    database = "emr_runtime_" + uuid.uuid4().hex[:8]
    config = load_config().with_overrides({
        "mongo.database": database,
        "spark.master": "yarn",
        "emr.s3_root": "s3://{}/pipeline".format(BUCKET),
        "ingest.array_encoding": "float32",
        "training.artifacts_uri": "s3://{}/artifacts".format(BUCKET),
        "training.folds": 2,
        "training.parallelism": 1,
        "training.classifiers": ["logistic_regression"],
        "training.regressors": ["linear_regression"],
        "training.grids": {"logistic_regression": {"regParam": [0.01]},
                           "linear_regression": {"regParam": [0.1]}},
    })
    layout = RunLayout(config.emr.s3_root, RUN_KEY)
    s3 = client("s3", moto_url)
    for name, data in code_shipping.code_files().items():
        s3.put_object(Bucket=BUCKET, Key=split_s3_uri(layout.code_uri(name))[1], Body=data)
    source = layout.data_prefix + "/songs"
    root, paths = songs_dir
    for path in paths:
        key = split_s3_uri(source)[1] + "/" + path.relative_to(root).as_posix()
        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    config = config.with_overrides({"ingest.source": source + "/"})
    s3.put_object(Bucket=BUCKET, Key=split_s3_uri(layout.job_config_uri)[1],
                  Body=config.to_json().encode("utf-8"))
    secret_id = mongo_secret.secret_name(config.emr.mongo_secret_prefix, RUN_KEY)
    client("secretsmanager", moto_url).create_secret(Name=secret_id,
                                                     SecretString=mongo_with_password)
    request = build_job_flow_request(config.emr, layout, dag_id="msd_emr_pipeline",
                                     airflow_run_id="manual__emr_runtime",
                                     mongo_secret_id=secret_id)
    return {"config": config, "layout": layout, "request": request, "songs": len(paths),
            "work_dir": tmp_path_factory.mktemp("emr-runtime-node")}


class Node:
    """The master node running a step: fetches the step's code from S3 and runs its
    spark-submit line with the release's Spark in the environment the cluster sets."""

    def __init__(self, emr_python, emr_runtime, moto_url, run):
        self.emr_python = emr_python
        self.spark_home = emr_runtime["spark_home"]
        self.moto_url = moto_url
        self.run = run

    def run_step(self, name, job, summary_uri, extra_args=()):
        layout = self.run["layout"]
        job_args = ["--config", layout.job_config_uri, "--run-id", RUN_KEY,
                    "--summary-path", summary_uri, *extra_args]
        step = steps.spark_step(name, layout.code_uri(job), layout.code_uri(JOBS_ZIP), job_args)
        args = step["HadoopJarStep"]["Args"]
        return subprocess.run(self._command(args), env=self._environment(), capture_output=True,
                              text=True, timeout=JOB_TIMEOUT_SECONDS,
                              cwd=str(self.run["work_dir"]))

    def _command(self, args):
        assert args[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "client"]
        py_files = args.index("--py-files")
        command = [os.path.join(self.spark_home, "bin", "spark-submit"),
                   "--master", "local[2]", "--deploy-mode", "client"]
        for key, value in self.spark_defaults().items():
            command += ["--conf", "{}={}".format(key, value)]
        return command + ["--py-files", self._fetch(args[py_files + 1]),
                          self._fetch(args[py_files + 2]), *args[py_files + 3:]]

    def spark_defaults(self):
        """The cluster's spark-defaults classification, but with .venv-emr's interpreter:
        the bootstrap's environment it names exists on EMR's nodes only."""
        properties = self._classification("spark-defaults")["Properties"]
        return dict(properties, **{"spark.pyspark.python": self.emr_python})

    def _environment(self):
        exports = self._classification("spark-env")["Configurations"][0]["Properties"]
        env = {key: value for key, value in os.environ.items()
               if key not in (env_vars.MONGO_URI, "PYTHONPATH", "SPARK_HOME",
                              "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
        env.update(aws_env(self.moto_url))
        env.update(exports)  # PYSPARK_PYTHON names the nodes' environment: replaced below
        env.update(SPARK_HOME=self.spark_home, PYSPARK_PYTHON=self.emr_python,
                   PYSPARK_DRIVER_PYTHON=self.emr_python, SPARK_LOCAL_IP="127.0.0.1")
        return env

    def _classification(self, name):
        [found] = [c for c in self.run["request"]["Configurations"] if c["Classification"] == name]
        return found

    def _fetch(self, uri):
        bucket, key = split_s3_uri(uri)
        target = self.run["work_dir"] / key.rsplit("/", 1)[-1]
        client("s3", self.moto_url).download_file(bucket, key, str(target))
        return str(target)


@pytest.fixture(scope="module")
def node(emr_python, emr_runtime, moto_url, cluster_run):
    return Node(emr_python, emr_runtime, moto_url, cluster_run)


def last_json_line(result):
    assert result.returncode == 0, "exit {}\n{}".format(result.returncode, result.stderr[-6000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_s3_json(moto_url, uri):
    bucket, key = split_s3_uri(uri)
    return json.loads(client("s3", moto_url).get_object(Bucket=bucket, Key=key)["Body"].read())


def test_the_runtime_is_emr_7s_python_with_the_releases_spark(emr_runtime):
    assert tuple(emr_runtime["python"]) == releases.EMR_PYTHON_VERSION
    release = load_config().emr.release_label
    assert emr_runtime["pyspark"] == releases.spark_version(release)


def test_installed_are_exactly_the_bootstrap_pins_for_python_3_9(emr_runtime):
    expected = pins_for("{}.{}".format(*releases.EMR_PYTHON_VERSION))
    assert {"h5py", "numpy", "pymongo", "matplotlib", "boto3"} <= set(expected)
    # The pins only 3.9 installs are among them.
    only_before_3_10 = set(expected) - set(pins_for("3.11"))
    assert only_before_3_10 == {"importlib-resources", "zipp"}
    installed = dict(emr_runtime["installed"])
    assert installed.pop("pyspark") == emr_runtime["pyspark"]
    installed.pop("py4j")  # pyspark's own dependency
    assert installed == expected


def test_ingest_then_training_on_emr_spark(node, cluster_run, moto_url, mongo_uri):
    config, layout = cluster_run["config"], cluster_run["layout"]
    songs = cluster_run["songs"]

    ingest_uri = layout.run_prefix + "/ingest-summary.json"
    ingest = node.run_step("ingest " + RUN_KEY, "ingest_songs.py", ingest_uri)
    ingest_summary = last_json_line(ingest)
    assert ingest_summary["ok"] is True
    assert ingest_summary["files_seen"] == songs
    assert ingest_summary["files_ingested"] + ingest_summary["files_failed"] == songs
    assert ingest_summary["files_ingested"] >= 0.95 * songs
    # Partitions from the cluster layout's parallelism, not the driver's 2 cores.
    parallelism = int(node.spark_defaults()["spark.default.parallelism"])
    assert ingest_summary["partitions"] == min(songs, 2 * parallelism)
    assert read_s3_json(moto_url, ingest_uri) == ingest_summary

    db = pymongo.MongoClient(mongo_uri)[config.mongo.database]
    assert db[config.mongo.songs_collection].count_documents({}) == \
        ingest_summary["files_ingested"]
    assert db[config.mongo.songs_collection].count_documents(
        {"source.path": {"$regex": "^s3://{}/".format(BUCKET)}}) == ingest_summary["files_ingested"]

    train_uri = layout.run_prefix + "/train-summary.json"
    train = node.run_step("train " + RUN_KEY, "train_models.py", train_uri)
    train_summary = last_json_line(train)
    assert train_summary["status"] == "succeeded"
    assert read_s3_json(moto_url, train_uri) == train_summary
    run_uri = train_summary["artifacts"]
    assert run_uri == "s3://{}/artifacts/{}".format(BUCKET, RUN_KEY)
    metrics = read_s3_json(moto_url, run_uri + "/metrics.json")
    bucket, prefix = split_s3_uri(run_uri)
    keys = {item["Key"][len(prefix) + 1:] for page in client("s3", moto_url).get_paginator(
        "list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for item in page.get("Contents", [])}
    for task in ("decade", "year"):
        assert "{}/metadata/part-00000".format(metrics[task]["model_dir"]) in keys
    assert {"report.md", "plots/confusion_matrix.png"} <= keys
    assert db[config.mongo.songs_collection].count_documents(
        {"predicted": {"$exists": True}}) == 0  # training never imputes

    # Spark from pip cannot read s3:// (EMR's EMRFS can): the job loads a local copy.
    run_copy = download_prefix(moto_url, run_uri, cluster_run["work_dir"] / "run-copy")
    impute_uri = layout.run_prefix + "/impute-summary.json"
    impute = node.run_step("impute " + RUN_KEY, "impute_years.py", impute_uri,
                           ["--model-uri", str(run_copy), "--model-label", RUN_KEY])
    impute_summary = last_json_line(impute)
    imputed = db[config.mongo.songs_collection].count_documents({"predicted": {"$exists": True}})
    assert impute_summary["imputed"] == imputed > 0

    # The URI came from the secret: its password is in no argument and no log line.
    for result in (ingest, train, impute):
        assert MONGO_PASSWORD not in " ".join(result.args)
        assert MONGO_PASSWORD not in result.stdout + result.stderr
