"""The EMR runtime tier with EMR Serverless's dependency archive: both jobs on EMR 7's
Python (3.9) and the release's Spark with no package installed but pyspark (and its py4j):
.venv-emr-spark, built by ``make setup-emr``. Every other package the jobs import comes from
the archive that targets/emr_serverless/dependencies.py builds for X86_64 (pip fetches the
wheels from PyPI) and stores in moto S3, shipped with the Spark properties it produces.

Spark is a standalone master and one 2-core worker started from the release's pyspark; the
jobs are submitted in client mode:

* executors: Spark fetches ``spark.archives`` and extracts it as ``./msd_deps`` in each
  executor's working directory, as on EMR Serverless, and ``spark.executorEnv.PYTHONPATH``
  puts it on the Python workers' path: the product's properties, unchanged, except that
  the archive's s3:// URI becomes the downloaded copy (pip's Spark reads no s3://).
* driver: EMR Serverless starts the driver in its own container, the archive extracted in
  the working directory and ``spark.emr-serverless.driverEnv.*`` in its environment. A
  client-mode driver gets archives only once its SparkContext runs, and in a temporary
  folder, not its working directory. So the harness plays EMR Serverless for the driver:
  it extracts the stored archive into the driver's working directory and exports the
  driverEnv properties.
* the run's Mongo secret reaches driver and executors as driverEnv / executorEnv
  properties; moto's endpoint and credentials stand in for the execution role.

``make test`` and ``make test-emr-runtime`` set $MSD_EMR_SPARK_PYTHON; without it these
tests skip.
"""
import os
import subprocess
import tarfile
import time
import uuid

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from emr_runtime_support import (check_ingest, check_training, fetch, inspect_python, interpreter,
                                 last_json_line, pick_songs, runtime_config, stage_run)
from emr_support import REGION, aws_env, moto_server
from msd_devtools import services
from msd_pipeline.targets.emr import releases
from msd_pipeline.targets.emr.layout import JOBS_ZIP
from msd_pipeline.targets.emr_serverless import dependencies
from msdlib import env_vars
from msdlib.config import load_config

BUCKET = "msd-emr-runtime-archive"
RUN_KEY = "emr_archive__" + uuid.uuid4().hex[:8]
ARCHITECTURE = "X86_64"
DRIVER_ENV = "spark.emr-serverless.driverEnv."
EXECUTOR_ENV = "spark.executorEnv."
JOB_TIMEOUT_SECONDS = 900

# Where the driver and each executor's Python workers import the jobs' packages from.
PROBE = """
import json, os
from pyspark.sql import SparkSession


def origins(_):
    import h5py, importlib_resources, numpy, pymongo, zipp
    yield {name: module.__file__ for name, module in
           [("h5py", h5py), ("importlib_resources", importlib_resources), ("numpy", numpy),
            ("pymongo", pymongo), ("zipp", zipp)]}


spark = SparkSession.builder.appName("probe").getOrCreate()
executors = spark.sparkContext.parallelize(range(2), 2).mapPartitions(origins).collect()
print(json.dumps({"driver": next(origins(None)), "executors": executors}))
spark.stop()
"""


@pytest.fixture(scope="module")
def spark_python():
    return interpreter("MSD_EMR_SPARK_PYTHON")


@pytest.fixture(scope="module")
def bare_runtime(spark_python):
    return inspect_python(spark_python)


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(BUCKET) as url:
        yield url


@pytest.fixture(scope="module")
def stored_archive(moto_url):
    """ensure_archive called twice: each call's URI, duration and the stored object's
    LastModified after it."""
    config = load_config()
    s3_root = "s3://{}/pipeline".format(BUCKET)
    python = releases.python_version(config.emr.release_label)
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_env(moto_url).items():
            patch.setenv(name, value)
        hook = S3Hook(aws_conn_id=None)
        for _ in range(2):
            started = time.monotonic()
            uri = dependencies.ensure_archive(hook, s3_root, python, ARCHITECTURE)
            seconds = time.monotonic() - started
            bucket, key = dependencies.split_s3_uri(uri)
            calls.append({"uri": uri, "seconds": seconds,
                          "stored": hook.head_object(key, bucket)["LastModified"]})
    return calls


@pytest.fixture(scope="module")
def spark_master(bare_runtime, tmp_path_factory):
    """A standalone master and one worker of the release's Spark; the worker's executors
    run in ``spark-work/<app>/<executor>`` below the state folder."""
    state_dir = tmp_path_factory.mktemp("spark-standalone")
    master_port, webui_port, worker_webui_port = (services.free_port() for _ in range(3))
    spark_dir = bare_runtime["spark_home"]
    master = services.spark_master_service(state_dir, master_port, webui_port, spark_dir)
    worker = services.spark_worker_service(state_dir, master_port, webui_port,
                                           worker_webui_port, cores=2, memory="2g",
                                           spark_dir=spark_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONPATH", raising=False)  # the executors' path: the archive's only
        master.start()
        try:
            worker.start()
            yield {"url": services.spark_master_url(master_port),
                   "work_dir": state_dir / "spark-work"}
        finally:
            worker.stop()
            master.stop()


@pytest.fixture(scope="module")
def staged_run(moto_url, mongo_uri, tmp_path_factory):
    config = runtime_config(BUCKET, "emr_archive_" + uuid.uuid4().hex[:8])
    songs = pick_songs(tmp_path_factory.mktemp("emr-archive-songs"))
    return stage_run(moto_url, config, RUN_KEY, songs, mongo_uri)


class ServerlessDriver:
    """Plays EMR Serverless for a job run: its driver's container (working directory with
    the archive extracted, driverEnv exported) and spark-submit of the job's code with the
    run's Spark properties, on the standalone master."""

    def __init__(self, spark_python, bare_runtime, spark_master, moto_url, run, archive_uri,
                 work_dir):
        self.spark_python = spark_python
        self.spark_home = bare_runtime["spark_home"]
        self.master_url = spark_master["url"]
        self.moto_url = moto_url
        self.run = run
        self.work_dir = work_dir
        self.archive = fetch(moto_url, archive_uri, work_dir)
        self.properties = self._job_run_properties(archive_uri)
        with tarfile.open(self.archive) as tar:
            tar.extractall(work_dir / dependencies.ALIAS)

    def run_job(self, job, summary_uri):
        layout = self.run.layout
        job_args = ["--config", layout.job_config_uri, "--run-id", RUN_KEY,
                    "--summary-path", summary_uri]
        return self.submit(str(fetch(self.moto_url, layout.code_uri(job), self.work_dir)),
                           job_args)

    def submit(self, script, args=()):
        command = [os.path.join(self.spark_home, "bin", "spark-submit"),
                   "--master", self.master_url, "--deploy-mode", "client"]
        for key, value in self.properties.items():
            if not key.startswith(DRIVER_ENV):
                command += ["--conf", "{}={}".format(key, value)]
        jobs_zip = fetch(self.moto_url, self.run.layout.code_uri(JOBS_ZIP), self.work_dir)
        command += ["--py-files", str(jobs_zip), script, *args]
        return subprocess.run(command, env=self._driver_environment(), capture_output=True,
                              text=True, timeout=JOB_TIMEOUT_SECONDS, cwd=str(self.work_dir))

    def _job_run_properties(self, archive_uri):
        """The product's archive properties (the archive's URI made local), the Mongo
        secret's name for driver and executors, moto for the executors' AWS calls."""
        properties = dependencies.spark_properties(archive_uri)
        uri, alias = properties["spark.archives"].split("#")
        assert uri == archive_uri and alias == dependencies.ALIAS
        properties["spark.archives"] = "{}#{}".format(self.archive.as_uri(), alias)
        secret = {env_vars.MONGO_SECRET_ID: self.run.secret_id,
                  env_vars.MONGO_SECRET_REGION: REGION}
        for name, value in secret.items():
            properties[DRIVER_ENV + name] = value
            properties[EXECUTOR_ENV + name] = value
        for name, value in aws_env(self.moto_url).items():
            properties[EXECUTOR_ENV + name] = value
        properties["spark.pyspark.python"] = self.spark_python
        return properties

    def _driver_environment(self):
        env = {key: value for key, value in os.environ.items()
               if key not in (env_vars.MONGO_URI, "PYTHONPATH", "SPARK_HOME",
                              "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
        env.update(aws_env(self.moto_url))
        env.update({key[len(DRIVER_ENV):]: value for key, value in self.properties.items()
                    if key.startswith(DRIVER_ENV)})
        env.update(SPARK_HOME=self.spark_home, PYSPARK_PYTHON=self.spark_python,
                   PYSPARK_DRIVER_PYTHON=self.spark_python, SPARK_LOCAL_IP="127.0.0.1")
        return env


@pytest.fixture(scope="module")
def driver(spark_python, bare_runtime, spark_master, moto_url, staged_run, stored_archive,
           tmp_path_factory):
    return ServerlessDriver(spark_python, bare_runtime, spark_master, moto_url, staged_run,
                            stored_archive[0]["uri"],
                            tmp_path_factory.mktemp("emr-serverless-driver"))


def test_the_runtime_has_the_releases_pyspark_and_nothing_else(bare_runtime):
    assert tuple(bare_runtime["python"]) == releases.EMR_PYTHON_VERSION
    expected_spark = releases.spark_version(load_config().emr.release_label)
    installed = dict(bare_runtime["installed"])
    assert installed.pop("pyspark") == bare_runtime["pyspark"] == expected_spark
    installed.pop("py4j")  # pyspark's own dependency
    assert installed == {}


def test_the_archive_is_built_once_then_reused(stored_archive):
    built, reused = stored_archive
    pins = dependencies.resolved_pins("3.9", ARCHITECTURE)
    assert built["uri"] == reused["uri"] == dependencies.archive_uri(
        "s3://{}/pipeline".format(BUCKET), dependencies.content_hash(pins, "3.9", ARCHITECTURE))
    assert reused["stored"] == built["stored"]  # not uploaded again
    print("archive built and stored in {:.1f} s, reused in {:.2f} s".format(
        built["seconds"], reused["seconds"]))


def test_driver_and_executors_import_the_packages_from_the_archive(driver, spark_master):
    probe = driver.work_dir / "probe.py"
    probe.write_text(PROBE)
    origins = last_json_line(driver.submit(str(probe)))
    extracted_for_driver = str(driver.work_dir / dependencies.ALIAS) + os.sep
    assert all(path.startswith(extracted_for_driver) for path in origins["driver"].values())
    assert len(origins["executors"]) == 2
    # Spark's own extraction, in the executor's working directory on the worker.
    executor_dirs = str(spark_master["work_dir"]) + os.sep
    for modules in origins["executors"]:
        for name, path in modules.items():
            assert path.startswith(executor_dirs), path
            relative = path[len(executor_dirs):].split(os.sep)
            assert relative[2] == dependencies.ALIAS and relative[3] == name, path


def test_ingest_then_training_with_the_archive(driver, staged_run, moto_url, mongo_uri):
    layout = staged_run.layout
    ingest_uri = layout.run_prefix + "/ingest-summary.json"
    ingest = last_json_line(driver.run_job("ingest_songs.py", ingest_uri))
    check_ingest(ingest, staged_run, ingest_uri, moto_url, mongo_uri)

    train_uri = layout.run_prefix + "/train-summary.json"
    train = last_json_line(driver.run_job("train_models.py", train_uri))
    check_training(train, staged_run, train_uri, moto_url, mongo_uri)
