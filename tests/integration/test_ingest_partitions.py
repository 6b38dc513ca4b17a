"""The ingest logic without Spark, against a real SecantusDB server: documents, batches,
quarantine, idempotence; plus the Mongo helpers and the shared job CLI (msdlib.cli)."""
import json
import shutil
from pathlib import Path

import boto3
import ingest_songs
import pymongo
import pytest
from pymongo import InsertOne, ReplaceOne, monitoring
from pymongo.errors import ServerSelectionTimeoutError

from corrupt_songs import make_corrupt_copies
from msdlib import cli, ingest
from msdlib.io import mongo
from msdlib.config import ConfigError, load_config
from msd_pipeline.staging.generator import generate_songs
from msdlib.core.ingest_accounting import IngestCounts, utc_now
from msdlib.ingest import convert_file, ingest_paths, make_task
from msdlib.io.song_writes import write_batch
from msdlib.io.sources import SourceReader

GOOD_SONGS = 10


@pytest.fixture(scope="module")
def song_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("songs")


@pytest.fixture(scope="module")
def good_paths(song_dir):
    return sorted(generate_songs(str(song_dir / "good"), GOOD_SONGS, seed=5))


@pytest.fixture(scope="module")
def bad_paths(song_dir, good_paths):
    return make_corrupt_copies(Path(good_paths[0]), song_dir / "bad")


def task_for(mongo_uri, db_name, run_id="run-1", mongo_overrides=None, **ingest_overrides):
    overrides = {"mongo.database": db_name}
    overrides.update({"ingest." + key: value for key, value in ingest_overrides.items()})
    overrides.update({"mongo." + key: value for key, value in (mongo_overrides or {}).items()})
    return make_task(load_config(overrides=overrides), mongo_uri, run_id, utc_now())


def ingest_counts(paths, task):
    return IngestCounts.of(ingest_paths(iter(paths), task))


@pytest.fixture
def db(mongo_uri, mongo_db_name):
    client = pymongo.MongoClient(mongo_uri)
    yield client[mongo_db_name]
    client.close()


# ---- one file ------------------------------------------------------------------------

def test_convert_file_builds_the_document_of_a_good_file(mongo_uri, good_paths):
    task = task_for(mongo_uri, "unused", run_id="run-7")
    document, error = convert_file(good_paths[0], SourceReader(), task)

    assert error is None
    assert document["_id"].startswith("TR")
    content = Path(good_paths[0]).read_bytes()
    assert document["source"]["path"] == good_paths[0]
    assert document["source"]["size"] == len(content)
    assert len(document["source"]["sha256"]) == 64
    assert document["source"]["run_id"] == "run-7"
    assert len(document["features"]["timbre"]) == 90


def test_convert_file_turns_each_bad_file_into_an_error_record(mongo_uri, bad_paths):
    task = task_for(mongo_uri, "unused")
    for path, reason in bad_paths.items():
        document, error = convert_file(path, SourceReader(), task)
        assert document is None
        assert error["_id"] == error["path"] == path
        assert error["reason"] == reason
        assert error["message"]
        assert error["run_id"] == "run-1"


def test_convert_file_records_a_vanished_file_as_unreadable(mongo_uri, tmp_path):
    task = task_for(mongo_uri, "unused")
    _, error = convert_file(str(tmp_path / "TRGONE.h5"), SourceReader(), task)
    assert error["reason"] == "unreadable"
    assert "FileNotFoundError" in error["message"]


# ---- a partition ---------------------------------------------------------------------

def test_partition_ingests_good_files_and_quarantines_bad_ones(
        mongo_uri, mongo_db_name, db, good_paths, bad_paths):
    paths = sorted(good_paths + list(bad_paths))
    counts = ingest_counts(paths, task_for(mongo_uri, mongo_db_name, batch_size=4))

    assert counts == IngestCounts(
        seen=len(paths), ingested=GOOD_SONGS, failed=len(bad_paths),
        reasons={reason: 1 for reason in bad_paths.values()})
    assert sorted(doc["source"]["path"] for doc in db.songs.find({}, {"source.path": 1})) \
        == good_paths
    errors = {record["_id"]: record for record in db.ingest_errors.find()}
    assert {path: record["reason"] for path, record in errors.items()} == bad_paths
    record = errors[next(iter(bad_paths))]
    assert set(record) == {"_id", "path", "reason", "message", "run_id", "recorded_at"}
    assert record["run_id"] == "run-1"


def test_rerun_replaces_documents_without_duplicates(
        mongo_uri, mongo_db_name, db, good_paths, bad_paths):
    paths = good_paths + list(bad_paths)
    ingest_paths(iter(paths), task_for(mongo_uri, mongo_db_name, run_id="first"))
    first = {doc["_id"]: doc for doc in db.songs.find()}

    counts = ingest_counts(paths, task_for(mongo_uri, mongo_db_name, run_id="second"))

    second = {doc["_id"]: doc for doc in db.songs.find()}
    assert counts.ingested == GOOD_SONGS and counts.failed == len(bad_paths)
    assert db.songs.count_documents({}) == GOOD_SONGS
    assert db.ingest_errors.count_documents({}) == len(bad_paths)
    assert set(second) == set(first)
    for track_id, doc in second.items():
        assert doc["source"]["run_id"] == "second"
        assert doc["source"]["sha256"] == first[track_id]["source"]["sha256"]
        assert doc["analysis"] == first[track_id]["analysis"]
        assert doc["features"] == first[track_id]["features"]
    assert {record["run_id"] for record in db.ingest_errors.find()} == {"second"}


def test_a_file_that_later_succeeds_leaves_quarantine(
        mongo_uri, mongo_db_name, db, good_paths, tmp_path):
    path = tmp_path / "TRFIXEDLATER.h5"
    path.write_bytes(b"")
    ingest_paths(iter([str(path)]), task_for(mongo_uri, mongo_db_name))
    assert db.ingest_errors.find_one({"_id": str(path)})["reason"] == "empty_file"

    shutil.copyfile(good_paths[3], path)
    counts = ingest_counts([str(path)], task_for(mongo_uri, mongo_db_name))

    assert counts == IngestCounts(seen=1, ingested=1, failed=0)
    assert db.ingest_errors.count_documents({}) == 0
    assert db.songs.find_one({"source.path": str(path)}) is not None


class CommandLog(monitoring.CommandListener):
    def __init__(self):
        self.commands = []

    def started(self, event):
        self.commands.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_songs_are_inserted_then_replaced_in_unordered_bulk_batches(
        mongo_uri, mongo_db_name, db, good_paths, monkeypatch):
    log = CommandLog()
    monkeypatch.setattr(ingest, "connect",
                        lambda uri: mongo.connect(uri, event_listeners=[log]))
    task = task_for(mongo_uri, mongo_db_name, batch_size=4)

    ingest_paths(iter(good_paths), task)
    inserts = [command for command in log.commands if command.get("insert") == "songs"]
    log.commands.clear()
    ingest_paths(iter(good_paths), task)
    replaces = [command for command in log.commands if command.get("update") == "songs"]

    assert [len(command["documents"]) for command in inserts] == [4, 4, 2]
    assert [len(command["updates"]) for command in replaces] == [4, 4, 2]
    assert all(command["ordered"] is False for command in inserts + replaces)
    assert all(update["upsert"] for command in replaces for update in command["updates"])
    assert not any(command.get("insert") == "songs" for command in log.commands)
    assert db.songs.count_documents({}) == GOOD_SONGS


def test_the_same_track_twice_in_a_batch_ends_as_the_later_document(
        mongo_uri, mongo_db_name, db):
    task = task_for(mongo_uri, mongo_db_name)
    first = {"_id": "TRTWICE", "source": {"path": "/a/TRTWICE.h5"}}
    second = {"_id": "TRTWICE", "source": {"path": "/b/TRTWICE.h5"}}

    assert write_batch(db.songs, db.ingest_errors, [first, second], [], task.run_id) == []

    assert list(db.songs.find()) == [second]
    assert db.ingest_errors.count_documents({}) == 0


def test_a_document_the_server_rejects_is_quarantined_and_the_rest_go_in(
        mongo_uri, mongo_db_name, db):
    task = task_for(mongo_uri, mongo_db_name)
    small = {"_id": "TRSMALL", "source": {"path": "/songs/TRSMALL.h5"}}
    huge = {"_id": "TRHUGE", "source": {"path": "/songs/TRHUGE.h5"},
            "analysis": {"padding": "x" * (17 * 1024 * 1024)}}

    rejected = write_batch(db.songs, db.ingest_errors, [small, huge], [], task.run_id)

    assert [record["_id"] for record in rejected] == ["/songs/TRHUGE.h5"]
    assert rejected[0]["reason"] == "write_rejected"
    assert [doc["_id"] for doc in db.songs.find({}, {"_id": 1})] == ["TRSMALL"]
    assert db.ingest_errors.find_one({"_id": "/songs/TRHUGE.h5"})["reason"] == "write_rejected"


def test_a_database_outage_fails_the_partition_after_the_retries(good_paths, capsys):
    closed_port_uri = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"
    task = task_for(closed_port_uri, "outage",
                    mongo_overrides={"write_attempts": 3, "retry_backoff_seconds": 0.01})
    with pytest.raises(ServerSelectionTimeoutError):
        ingest_paths(iter(good_paths[:2]), task)
    assert capsys.readouterr().err.count("mongo write failed") == 2


def test_partition_reads_songs_from_s3(s3_env, mongo_uri, mongo_db_name, db, good_paths):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="msd-ingest")
    uris = []
    for path in good_paths[:3]:
        key = "tracks/" + Path(path).name
        s3.upload_file(path, "msd-ingest", key)
        uris.append("s3://msd-ingest/" + key)
    missing = "s3://msd-ingest/tracks/TRMISSING.h5"

    counts = ingest_counts(uris + [missing], task_for(mongo_uri, mongo_db_name))

    assert counts == IngestCounts(seen=4, ingested=3, failed=1, reasons={"s3_error": 1})
    assert sorted(doc["source"]["path"] for doc in db.songs.find()) == sorted(uris)
    assert "NoSuchKey" in db.ingest_errors.find_one({"_id": missing})["message"]


def test_task_repr_hides_the_mongo_uri():
    task = make_task(load_config(), "mongodb://user:s3cret@db:27017", "r", utc_now())
    assert "s3cret" not in repr(task)


# ---- msdlib.io.mongo --------------------------------------------------------------------

def test_mongo_uri_comes_from_the_environment():
    assert mongo.mongo_uri_from_env({"MSD_MONGO_URI": "mongodb://h:1"}) == "mongodb://h:1"
    with pytest.raises(mongo.MongoConfigError, match="MSD_MONGO_URI"):
        mongo.mongo_uri_from_env({})
    with pytest.raises(ConfigError):
        mongo.mongo_uri_from_env({"MSD_MONGO_URI": "  "})
    on_master = mongo.mongo_uri_from_env({"MSD_MONGO_ON_MASTER": "1"})
    assert on_master.startswith("mongodb://") and on_master.endswith(":27017/")


@pytest.mark.parametrize("uri, redacted", [
    ("mongodb://user:p%40ss@db1:27017,db2/msd?authSource=admin",
     "mongodb://user:***@db1:27017,db2/msd?authSource=admin"),
    ("mongodb+srv://app:secret@cluster.example.net/", "mongodb+srv://app:***@cluster.example.net/"),
    ("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017"),
    ("mongodb://onlyuser@db/", "mongodb://onlyuser@db/"),
])
def test_redact_uri_hides_the_password(uri, redacted):
    assert mongo.redact_uri(uri) == redacted


def test_ensure_indexes_is_idempotent(db):
    config = load_config()
    mongo.ensure_indexes(db, config)
    mongo.ensure_indexes(db, config)
    song_keys = {index["key"][0][0] for index in db.songs.index_information().values()}
    assert song_keys == {"_id", "features.year", "features.decade", "features.artist_id",
                         "features.partition"}
    error_keys = {index["key"][0][0] for index in db.ingest_errors.index_information().values()}
    assert error_keys == {"_id", "run_id"}


def test_bulk_write_batches_streams_in_batches(db):
    counts = mongo.bulk_write_batches(db.items, (InsertOne({"_id": n}) for n in range(7)), 3)
    assert counts.inserted == 7
    counts = mongo.bulk_write_batches(
        db.items, (ReplaceOne({"_id": n}, {"_id": n, "v": 1}, upsert=True) for n in range(9)), 4)
    assert (counts.matched, counts.modified, counts.upserted) == (7, 7, 2)
    assert list(mongo.batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        list(mongo.batched(range(5), 0))


# ---- msdlib.cli and the entry point's usage errors -----------------------------------

def test_parse_overrides_reads_json_values_and_keeps_strings():
    overrides = cli.parse_overrides([
        "ingest.batch_size=50", "ingest.max_failed_fraction=0.5", "training.impute=false",
        'training.classifiers=["gbt"]', "ingest.source=/data/a=b/*.h5",
        "ingest.array_encoding=float32", "ingest.batch_size=60"])
    assert overrides == {
        "ingest.batch_size": 60, "ingest.max_failed_fraction": 0.5, "training.impute": False,
        "training.classifiers": ["gbt"], "ingest.source": "/data/a=b/*.h5",
        "ingest.array_encoding": "float32"}


@pytest.mark.parametrize("item", ["batch_size=5", "ingest.batch_size", "=5"])
def test_parse_overrides_rejects_malformed_items(item):
    with pytest.raises(cli.UsageError):
        cli.parse_overrides([item])


def test_job_config_applies_overrides_to_the_config_file(tmp_path):
    config_file = tmp_path / "conf.json"
    config_file.write_text(json.dumps({"ingest": {"batch_size": 7, "source": "/x"}}))
    args = cli.build_parser("test").parse_args(
        ["--config", str(config_file), "--set", "ingest.source=/y", "--run-id", "r9"])
    config = cli.load_job_config(args)
    assert (config.ingest.batch_size, config.ingest.source) == (7, "/y")
    assert cli.resolve_run_id(args.run_id) == "r9"
    assert cli.resolve_run_id(None).startswith("manual__")
    with pytest.raises(cli.UsageError):
        cli.resolve_run_id(" ")


def test_emit_summary_prints_last_line_and_writes_local_and_s3(tmp_path, capsys, s3_env):
    summary = {"ok": True, "files_seen": 3}
    cli.emit_summary(summary, str(tmp_path / "out" / "summary.json"))
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == summary
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary

    boto3.client("s3").create_bucket(Bucket="msd-runs")
    cli.emit_summary(summary, "s3://msd-runs/runs/r1/ingest.json")
    body = boto3.client("s3").get_object(Bucket="msd-runs", Key="runs/r1/ingest.json")["Body"]
    assert json.loads(body.read()) == summary


@pytest.mark.parametrize("argv, message", [
    (["--set", "ingest.no_such_key=1"], "unknown config key"),
    (["--set", "ingest.array_encoding=float16"], "array_encoding"),
    (["--set", "ingest.batch_size=many"], "batch_size must be int"),
    (["--config", "/no/such/config.json"], "cannot read config file"),
    ([], "MSD_MONGO_URI is not set"),
])
def test_entry_point_exits_2_on_bad_usage_before_starting_spark(argv, message, monkeypatch,
                                                                capsys):
    monkeypatch.delenv("MSD_MONGO_URI", raising=False)
    assert cli.run_main(ingest_songs.main, argv) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_entry_point_exits_2_on_a_missing_source_and_logs_the_uri_redacted(
        monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MSD_MONGO_URI", "mongodb://user:s3cret@127.0.0.1:9")
    argv = ["--set", "ingest.source=" + str(tmp_path / "none")]
    assert cli.run_main(ingest_songs.main, argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "source folder does not exist" in err
    assert "s3cret" not in err and "user:***@" in err


def test_entry_point_exits_3_when_the_database_is_unreachable(monkeypatch, capsys,
                                                               good_paths):
    monkeypatch.setenv("MSD_MONGO_URI",
                       "mongodb://user:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=300")
    argv = ["--set", "ingest.source=" + str(Path(good_paths[0]).parent),
            "--set", "spark.master=local[1]", "--set", "mongo.write_attempts=2",
            "--set", "mongo.retry_backoff_seconds=0.01"]
    assert cli.run_main(ingest_songs.main, argv) == cli.EXIT_CRASH
    captured = capsys.readouterr()
    assert "ServerSelectionTimeoutError" in captured.err
    assert "the job crashed (exit 3)" in captured.err
    assert "s3cret" not in captured.err + captured.out
