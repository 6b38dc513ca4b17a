import pytest

from dag_parsing import parse_dags_folder


@pytest.fixture(scope="session")
def parsed():
    """The DAG folder, parsed once for the session."""
    return parse_dags_folder()
