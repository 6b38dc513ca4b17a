"""Every DAG file imports cleanly, quickly, and without touching connections or the
network; every DAG carries owner, retries, timeouts, tags and docs."""
import pytest

from airflow_support import DAGS_FOLDER

from dag_parsing import shared_tasks

# DAG files import Airflow itself in well under a second once it is loaded; a file
# doing real work at parse time (reading data, calling services) blows well past this.
MAX_PARSE_SECONDS = 5.0
DAG_FILES = sorted(path.name for path in DAGS_FOLDER.glob("*.py"))


def test_every_dag_file_imports_without_errors(parsed):
    assert parsed["errors"] == {}


def test_no_connection_or_network_access_at_parse_time(parsed):
    assert parsed["violations"] == []


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_each_dag_file_parses_quickly(parsed, dag_file):
    seconds = {path.rsplit("/", 1)[-1]: value for path, value in parsed["parse_seconds"].items()}
    assert dag_file in seconds, "{} was not parsed".format(dag_file)
    assert seconds[dag_file] <= MAX_PARSE_SECONDS


def test_every_task_has_an_owner_retries_and_a_timeout(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag["tags"], dag_id
        assert dag["doc_md"], dag_id
        for task_id, task in dag["tasks"].items():
            assert task["owner"] not in ("", "airflow"), (dag_id, task_id)
            assert task["retries"] >= 0, (dag_id, task_id)
            assert task["timeout"], (dag_id, task_id)
        # Tasks may opt out of retries (e.g. creating a cluster); the shared ones retry.
        for task_id in shared_tasks(dag, {"prepare_run", "report.collect_metrics"}):
            assert dag["tasks"][task_id]["retries"] >= 1, (dag_id, task_id)
