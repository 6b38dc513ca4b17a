"""The ingest job end to end against a SecantusDB server: in-process Spark on local[2],
and spark-submit (as Airflow runs it) on a standalone master + worker with --py-files."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pymongo
import pytest

from corrupt_songs import make_corrupt_copies
from msd_pipeline.targets.emr.code_shipping import build_jobs_zip
from msdlib.config import load_config
from msdlib.core.documents import decode_array
from msd_pipeline.staging.generator import generate_songs
from msdlib.ingest import list_ingest_paths, run_ingest
from project_paths import PROJECT_ROOT

SPARK_JOBS = PROJECT_ROOT / "spark_jobs"
GENERATED_SONGS = 200
REAL_SONGS = 456
REAL_SONGS_WITH_YEAR = 366
TUTORIAL_QUERY = {"musicbrainz.songs.year": {"$gte": 1920}}
TUTORIAL_PROJECTION = {"analysis.segments_timbre": 1, "analysis.songs.energy": 1,
                       "metadata.songs.title": 1, "metadata.songs.artist_name": 1}


@pytest.fixture(scope="module")
def generated_paths(tmp_path_factory):
    return sorted(generate_songs(str(tmp_path_factory.mktemp("generated")), GENERATED_SONGS,
                                 seed=21))


@pytest.fixture(scope="module")
def corrupt_paths(tmp_path_factory, generated_paths):
    return make_corrupt_copies(Path(generated_paths[0]), tmp_path_factory.mktemp("corrupt"))


@pytest.fixture(scope="module")
def mixed_source(tmp_path_factory, generated_paths, corrupt_paths):
    """A list file (@path) of the generated songs and the corrupt copies."""
    list_file = tmp_path_factory.mktemp("lists") / "songs.txt"
    list_file.write_text("\n".join(generated_paths + sorted(corrupt_paths)) + "\n")
    return "@" + str(list_file)


@pytest.fixture
def db(mongo_uri, mongo_db_name):
    client = pymongo.MongoClient(mongo_uri)
    yield client[mongo_db_name]
    client.close()


def job_config(db_name, source, **ingest_overrides):
    overrides = {"mongo.database": db_name, "ingest.source": source}
    overrides.update({"ingest." + key: value for key, value in ingest_overrides.items()})
    return load_config(overrides=overrides)


def checksums(db):
    return {doc["_id"]: doc["source"]["sha256"]
            for doc in db.songs.find({}, {"source.sha256": 1})}


def test_local_real_songs_tutorial_query_and_idempotent_rerun(
        local_spark, mongo_uri, mongo_db_name, db, real_tracks_dir):
    config = job_config(mongo_db_name, str(real_tracks_dir), array_encoding="float32")
    paths = list_ingest_paths(config)

    first = run_ingest(local_spark, config, "real-1", mongo_uri, paths)

    assert (first["files_seen"], first["files_ingested"], first["files_failed"]) == (
        REAL_SONGS, REAL_SONGS, 0)
    assert first["ok"] and first["songs_in_collection"] == REAL_SONGS
    assert first["spark_master"] == "local[2]" and first["partitions"] == 4
    songs = list(db.songs.find(TUTORIAL_QUERY, TUTORIAL_PROJECTION))
    assert len(songs) == REAL_SONGS_WITH_YEAR
    assert all(decode_array(song["analysis"]["segments_timbre"]).shape[1] == 12
               for song in songs)
    assert all(set(song["metadata"]["songs"]) == {"title", "artist_name"} for song in songs)
    assert all(song["analysis"]["songs"]["energy"] == 0.0 for song in songs)
    sample = db.songs.find_one({"_id": "TRAACER128F4290F96"},
                               {"source": 1, "analysis.segments_timbre": 1})
    assert sample["source"]["sha256"] == hashlib.sha256(
        Path(sample["source"]["path"]).read_bytes()).hexdigest()
    with h5py.File(sample["source"]["path"], "r") as h5:
        timbre = h5["analysis/segments_timbre"][()]
    np.testing.assert_array_equal(decode_array(sample["analysis"]["segments_timbre"]),
                                  timbre.astype(np.float32))
    before = checksums(db)

    second = run_ingest(local_spark, config, "real-2", mongo_uri, paths)

    assert (second["files_seen"], second["files_ingested"]) == (REAL_SONGS, REAL_SONGS)
    assert db.songs.count_documents({}) == REAL_SONGS
    assert checksums(db) == before
    assert db.songs.distinct("source.run_id") == ["real-2"]
    assert len(db.songs.distinct("source.path")) == REAL_SONGS
    assert db.ingest_errors.count_documents({}) == 0


def test_local_list_encoding_quarantines_corrupt_copies_and_keeps_every_good_song(
        local_spark, mongo_uri, mongo_db_name, db, mixed_source, generated_paths,
        corrupt_paths):
    config = job_config(mongo_db_name, mixed_source, array_encoding="list", batch_size=40)

    summary = run_ingest(local_spark, config, "mixed-1", mongo_uri, list_ingest_paths(config))

    assert summary["files_seen"] == GENERATED_SONGS + len(corrupt_paths)
    assert summary["files_ingested"] == GENERATED_SONGS
    assert summary["files_failed"] == len(corrupt_paths)
    assert summary["failure_reasons"] == {reason: 1 for reason in corrupt_paths.values()}
    assert summary["ok"] and summary["encoding"] == "list"
    assert sorted(db.songs.distinct("source.path")) == generated_paths
    errors = {record["_id"]: record for record in db.ingest_errors.find()}
    assert {path: record["reason"] for path, record in errors.items()} == corrupt_paths
    assert {record["run_id"] for record in errors.values()} == {"mixed-1"}

    song = db.songs.find_one({"source.path": generated_paths[5]})
    with h5py.File(generated_paths[5], "r") as h5:
        timbre = h5["analysis/segments_timbre"][()]
    np.testing.assert_array_equal(np.array(song["analysis"]["segments_timbre"]), timbre)
    assert len(db.songs.find_one(TUTORIAL_QUERY, TUTORIAL_PROJECTION)["analysis"]
               ["segments_timbre"][0]) == 12
    assert len(song["features"]["timbre"]) == 90


def spark_submit(master_url, py_files, mongo_uri, args):
    env = dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", master_url,
               "--conf", "spark.executor.memory=1g", "--py-files", str(py_files),
               str(SPARK_JOBS / "ingest_songs.py")] + args
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def last_json_line(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_spark_submit_on_standalone_master_with_threshold_exit_codes(
        spark_master_url, mongo_uri, mongo_db_name, db, mixed_source, generated_paths,
        corrupt_paths, tmp_path):
    py_files = tmp_path / "msdlib.zip"  # the zip the EMR steps ship
    py_files.write_bytes(build_jobs_zip())
    summary_path = tmp_path / "summaries" / "ingest.json"
    args = ["--set", "mongo.database=" + mongo_db_name, "--set", "ingest.source=" + mixed_source,
            "--set", "ingest.array_encoding=float32", "--run-id", "standalone-1",
            "--summary-path", str(summary_path)]

    passing = spark_submit(spark_master_url, py_files, mongo_uri, args)

    assert passing.returncode == 0, passing.stderr[-3000:]
    summary = last_json_line(passing.stdout)
    assert summary == json.loads(summary_path.read_text())
    assert (summary["files_seen"], summary["files_ingested"], summary["files_failed"]) == (
        GENERATED_SONGS + len(corrupt_paths), GENERATED_SONGS, len(corrupt_paths))
    assert summary["run_id"] == "standalone-1"
    assert summary["spark_master"] == spark_master_url
    assert db.songs.count_documents({}) == GENERATED_SONGS
    before = checksums(db)

    failing = spark_submit(spark_master_url, py_files, mongo_uri, args + [
        "--set", "ingest.max_failed_fraction=0.01", "--run-id", "standalone-2"])

    assert failing.returncode == 1, failing.stderr[-3000:]
    summary = last_json_line(failing.stdout)
    assert summary["ok"] is False and summary["max_failed_fraction"] == 0.01
    assert summary["files_ingested"] == GENERATED_SONGS
    assert db.songs.count_documents({}) == GENERATED_SONGS
    assert checksums(db) == before
    assert db.ingest_errors.count_documents({}) == len(corrupt_paths)
