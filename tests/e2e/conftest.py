"""Fixtures of the EMR end-to-end tests (test_emr_*.py; their helpers are in
tests/emr_dag_support.py): one moto server for the session with the pipeline's bucket and
the account prepared as docs/emr.md says (V2 tags, EMR roles) so runs pass the preflight,
generated songs served as an archive over HTTP, the session's SecantusDB reached with a
password, and Airflow's environment with a model registry emptied for each test (one
MLflow server for these tests, apart from the session's)."""
import pytest

import airflow_support
from emr_dag_support import BUCKET, MONGO_PASSWORD, MONGO_USER, SONGS, airflow_env_for
from emr_support import ArchiveServer, Credentials, ServedFile, make_song_archive, \
    mongo_user_uri, moto_server, prepare_account
from msd_devtools import services
from msd_pipeline.staging.generator import generate_songs


@pytest.fixture(scope="session")
def moto_url():
    with moto_server(BUCKET) as url:
        prepare_account(url)
        yield url


@pytest.fixture(scope="session")
def song_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e-songs")
    generate_songs(str(folder), SONGS, seed=5)
    return folder


@pytest.fixture(scope="session")
def song_archive(song_folder):
    served = ServedFile(make_song_archive(song_folder))
    with ArchiveServer({"/msd-e2e.tar.gz": served}) as server:
        yield server.url("/msd-e2e.tar.gz")


@pytest.fixture(scope="session")
def mongo_with_password(mongo_uri):
    """The session's SecantusDB reached with a user and password, like a real deployment."""
    return airflow_support.mongo_connection(mongo_user_uri(mongo_uri, MONGO_USER, MONGO_PASSWORD),
                                            authSource="admin")


@pytest.fixture(scope="session")
def emr_registry_server(tmp_path_factory):
    with services.running_mlflow(tmp_path_factory.mktemp("emr_mlflow")) as uri:
        yield uri


@pytest.fixture
def empty_registry_uri(emr_registry_server):
    """The EMR tests' MLflow server without the pipeline's registered model (its versions
    and aliases go with it): every run here starts with no champion."""
    from mlflow.exceptions import MlflowException

    from msd_pipeline import registry

    try:
        registry.client(emr_registry_server).delete_registered_model(registry.MODEL_NAME)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    return emr_registry_server


@pytest.fixture
def emr_airflow_env(moto_url, mongo_with_password, empty_registry_uri):
    """Airflow's environment for the EMR DAGs: aws_default with the fake keys, pointed at
    moto; mongo_default with a password; the test's own model registry."""
    return airflow_env_for(moto_url, mongo_with_password, Credentials(), empty_registry_uri)
