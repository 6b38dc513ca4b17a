"""The embedded services: idempotent start, readiness, port conflicts, stop by pid."""
import json

import pymongo
import pytest

from msd_devtools import services


@pytest.fixture
def mongo(tmp_path):
    server = services.mongo_service(tmp_path, services.free_port())
    yield server
    server.stop()


def test_mongo_starts_ready_and_is_idempotent(mongo, tmp_path):
    pid = mongo.start()
    assert mongo.start() == pid
    client = pymongo.MongoClient(services.mongo_uri(mongo.port))
    assert client.admin.command("ping")["ok"] == 1.0
    client.close()
    assert (tmp_path / "mongo-data").is_dir()
    assert mongo.status()["ready"] is True


def test_port_taken_by_another_process_is_a_clear_error(mongo, tmp_path):
    mongo.start()
    intruder = services.mongo_service(tmp_path / "other", mongo.port)
    with pytest.raises(services.ServiceError, match="is taken by another process"):
        intruder.start()


def test_stop_by_pid_clears_pid_file(mongo):
    pid = mongo.start()
    assert mongo.stop() is True
    assert not services._process_alive(pid)
    assert not mongo.pid_file.exists()
    assert mongo.stop() is False
    assert not services.port_in_use(mongo.port)


def test_stale_pid_file_is_ignored(mongo):
    mongo.state_dir.mkdir(parents=True, exist_ok=True)
    mongo.pid_file.write_text("999999")
    assert mongo.pid() is None
    assert not mongo.pid_file.exists()


def test_cli_status_reports_json(tmp_path, capsys):
    port = services.free_port()
    assert services.main(["status", "mongo", "--state-dir", str(tmp_path),
                          "--mongo-port", str(port)]) == 0
    [status] = json.loads(capsys.readouterr().out)
    assert status == {"name": "mongo", "pid": None, "port": port, "running": False,
                      "ready": False, "log": str(tmp_path / "mongo.log")}


def test_spark_standalone_cluster_has_a_worker(spark_master_url):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(spark_master_url).appName("services-test")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    try:
        assert spark.sparkContext.parallelize(range(10), 2).sum() == 45
    finally:
        spark.stop()
