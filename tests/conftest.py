"""Session-wide real services for the tests: a SecantusDB server (MongoDB wire
protocol) and a Spark standalone master + worker, all on 127.0.0.1 and free ports,
stopped by pid at the end of the session."""
import logging
import uuid
from pathlib import Path

import pymongo
import pytest

from msd_devtools import services
from project_paths import PROJECT_ROOT, REAL_TRACKS

TIERS = ("unit", "dags", "integration", "e2e", "emr_runtime")

# py4j logs at INFO from __del__ after pytest has closed its streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def real_tracks_dir() -> Path:
    """The real MSD songs of ../shared/msd/tracks; skips when they are absent."""
    if not any(REAL_TRACKS.glob("*/*/*/*.h5")):
        pytest.skip(f"real MSD songs not found at {REAL_TRACKS} (../shared/msd is absent)")
    return REAL_TRACKS


@pytest.fixture(scope="session")
def services_state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def mongo_uri(services_state_dir) -> str:
    """URI of a SecantusDB server started for this test session."""
    port = services.free_port()
    server = services.mongo_service(services_state_dir, port, storage=":memory:")
    server.start()
    yield services.mongo_uri(port)
    server.stop()


@pytest.fixture
def mongo_db_name(mongo_uri) -> str:
    """A fresh database name for one test; dropped afterwards."""
    name = "test_" + uuid.uuid4().hex[:12]
    yield name
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database(name)
    client.close()


@pytest.fixture
def mongo_env(mongo_uri, monkeypatch) -> str:
    """Exposes the test server to jobs the way Airflow does: $MSD_MONGO_URI."""
    monkeypatch.setenv("MSD_MONGO_URI", mongo_uri)
    return mongo_uri


@pytest.fixture(scope="module")
def local_spark():
    """The jobs' own session builder on local[2]: one SparkContext per test module."""
    from msdlib.cli import create_spark_session
    from msdlib.config import load_config

    spark = create_spark_session(load_config(overrides={"spark.master": "local[2]"}),
                                 "msd-tests")
    yield spark.sparkContext
    spark.stop()


@pytest.fixture(scope="session")
def spark_master_url(services_state_dir) -> str:
    """A Spark standalone master and one 2-core worker started from pyspark's wheel."""
    master_port, webui_port, worker_webui_port = (services.free_port() for _ in range(3))
    master = services.spark_master_service(services_state_dir, master_port, webui_port)
    worker = services.spark_worker_service(services_state_dir, master_port, webui_port,
                                           worker_webui_port, cores=2, memory="2g")
    master.start()
    try:
        worker.start()
        yield services.spark_master_url(master_port)
    finally:
        worker.stop()
        master.stop()


@pytest.fixture(scope="session")
def mlflow_tracking_uri(services_state_dir) -> str:
    """An MLflow tracking server (SQLite backend) started for this test session."""
    with services.running_mlflow(services_state_dir / "mlflow") as uri:
        yield uri


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """A moto server (in-process, server mode) as the AWS endpoint, on 127.0.0.1."""
    from emr_support import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch) -> str:
    """Credentials and endpoint for boto3, as the jobs see them on EMR."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def pytest_collection_modifyitems(items):
    """Mark each test with its tier: the folder of tests/ it lives in."""
    for item in items:
        tier = Path(str(item.fspath)).relative_to(PROJECT_ROOT / "tests").parts[0]
        if tier in TIERS:
            item.add_marker(tier)
