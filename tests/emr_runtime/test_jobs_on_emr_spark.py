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
import os
import subprocess
import uuid

import pymongo
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from emr_runtime_support import (check_ingest, check_training, fetch, inspect_python, interpreter,
                                 last_json_line, pick_songs, runtime_config, stage_run)
from emr_support import aws_env, download_prefix, mongo_user_uri, moto_server
from msd_pipeline.targets.emr import releases, steps
from msd_pipeline.targets.emr.cluster import build_job_flow_request
from msd_pipeline.targets.emr.layout import JOBS_ZIP, REQUIREMENTS
from msdlib import env_vars
from msdlib.config import load_config
from project_paths import PROJECT_ROOT

BUCKET = "msd-emr-runtime"
RUN_KEY = "emr_runtime__" + uuid.uuid4().hex[:8]
MONGO_USER = "msd_emr_runtime"
MONGO_PASSWORD = "emr-Runtime-pw-93c1e7"
JOB_TIMEOUT_SECONDS = 900


@pytest.fixture(scope="module")
def emr_python():
    return interpreter("MSD_EMR_PYTHON")


@pytest.fixture(scope="module")
def emr_runtime(emr_python):
    return inspect_python(emr_python)


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
def mongo_with_password(mongo_uri):
    return mongo_user_uri(mongo_uri, MONGO_USER, MONGO_PASSWORD) + "/?authSource=admin"


@pytest.fixture(scope="module")
def cluster_run(moto_url, mongo_with_password, tmp_path_factory):
    """Everything a run has put in place before its first step (code, songs and job
    config in S3, the Mongo secret), and the cluster request (spark-defaults, spark-env)."""
    config = runtime_config(BUCKET, "emr_runtime_" + uuid.uuid4().hex[:8])
    songs = pick_songs(tmp_path_factory.mktemp("emr-runtime-songs"))
    staged = stage_run(moto_url, config, RUN_KEY, songs, mongo_with_password)
    request = build_job_flow_request(staged.config.emr, staged.layout, dag_id="msd_emr_pipeline",
                                     airflow_run_id="manual__emr_runtime",
                                     mongo_secret_id=staged.secret_id)
    return {"staged": staged, "request": request,
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
        layout = self.run["staged"].layout
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
        return str(fetch(self.moto_url, uri, self.run["work_dir"]))


@pytest.fixture(scope="module")
def node(emr_python, emr_runtime, moto_url, cluster_run):
    return Node(emr_python, emr_runtime, moto_url, cluster_run)


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
    staged = cluster_run["staged"]
    layout = staged.layout

    ingest_uri = layout.run_prefix + "/ingest-summary.json"
    ingest = node.run_step("ingest " + RUN_KEY, "ingest_songs.py", ingest_uri)
    ingest_summary = last_json_line(ingest)
    check_ingest(ingest_summary, staged, ingest_uri, moto_url, mongo_uri)
    # Partitions from the cluster layout's parallelism, not the driver's 2 cores.
    parallelism = int(node.spark_defaults()["spark.default.parallelism"])
    assert ingest_summary["partitions"] == min(staged.songs, 2 * parallelism)

    train_uri = layout.run_prefix + "/train-summary.json"
    train = node.run_step("train " + RUN_KEY, "train_models.py", train_uri)
    train_summary = last_json_line(train)
    check_training(train_summary, staged, train_uri, moto_url, mongo_uri)
    run_uri = train_summary["artifacts"]
    db = pymongo.MongoClient(mongo_uri)[staged.config.mongo.database]

    # Spark from pip cannot read s3:// (EMR's EMRFS can): the job loads a local copy.
    run_copy = download_prefix(moto_url, run_uri, cluster_run["work_dir"] / "run-copy")
    impute_uri = layout.run_prefix + "/impute-summary.json"
    impute = node.run_step("impute " + RUN_KEY, "impute_years.py", impute_uri,
                           ["--model-uri", str(run_copy), "--model-label", RUN_KEY])
    impute_summary = last_json_line(impute)
    songs = db[staged.config.mongo.songs_collection]
    imputed = songs.count_documents({"predicted": {"$exists": True}})
    assert impute_summary["imputed"] == imputed > 0

    # The URI came from the secret: its password is in no argument and no log line.
    for result in (ingest, train, impute):
        assert MONGO_PASSWORD not in " ".join(result.args)
        assert MONGO_PASSWORD not in result.stdout + result.stderr
