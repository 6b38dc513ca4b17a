"""The database restarts in the middle of an ingest: the job retries its idempotent batch
writes and completes with exact counts.

SecantusDB runs on a free port with its storage on disk, so what it acknowledged before
the restart is still there after it. The last path of the source is a named pipe: the
partition reading it blocks until the test writes a song into it, which the test does
only once that partition has opened it and the server is down. So that partition's last
batch write (and any other in flight) meets a stopped server (connections refused,
server selection failing after 1 s) and has to retry until the server is back on the
same port and storage: deterministic, no timing guesswork.
"""
import errno
import os
import threading
import time

import pymongo

from msd_devtools import services
from msd_pipeline.staging.generator import generate_songs
from msdlib.config import load_config
from msdlib.ingest import list_ingest_paths, run_ingest

SONGS = 24
DOWNTIME_SECONDS = 4.0
DEADLINE_SECONDS = 180.0


def test_ingest_survives_a_database_restart_with_exact_counts(tmp_path, local_spark):
    port = services.free_port()
    server = services.mongo_service(tmp_path / "state", port,
                                    storage=str(tmp_path / "mongo-data"))
    uri = services.mongo_uri(port) + "?serverSelectionTimeoutMS=1000"
    paths = sorted(generate_songs(str(tmp_path / "songs"), SONGS + 1, seed=11))
    held_back = paths.pop()
    pipe = tmp_path / "TRPIPE.h5"
    os.mkfifo(pipe)
    list_file = tmp_path / "songs.txt"
    list_file.write_text("\n".join(paths + [str(pipe)]) + "\n")
    config = load_config(overrides={
        "mongo.database": "restart", "ingest.source": "@" + str(list_file),
        "ingest.batch_size": 4, "ingest.partitions": 2,
        "mongo.write_attempts": 8, "mongo.retry_backoff_seconds": 0.5})

    server.start()
    try:
        job = JobThread(local_spark, config, uri, list_ingest_paths(config))
        job.start()
        writer = open_pipe_for_writing(pipe)  # the job is mid-way: the pipe's song is due
        server.stop()
        with open(held_back, "rb") as song, os.fdopen(writer, "wb") as handle:
            handle.write(song.read())
        time.sleep(DOWNTIME_SECONDS)  # the pipe's partition now retries its last batch
        server.start()
        job.join(DEADLINE_SECONDS)
        assert not job.is_alive(), "the ingest did not finish after the restart"
        assert job.error is None, repr(job.error)

        summary = job.summary
        assert (summary["files_seen"], summary["files_ingested"], summary["files_failed"],
                summary["files_duplicate"]) == (SONGS + 1, SONGS + 1, 0, 0)
        client = pymongo.MongoClient(uri)
        try:
            assert client.restart.songs.count_documents({}) == SONGS + 1
            assert client.restart.songs.count_documents({"source.path": str(pipe)}) == 1
            assert client.restart.ingest_errors.count_documents({}) == 0
        finally:
            client.close()
    finally:
        server.stop()


class JobThread(threading.Thread):
    """``run_ingest`` in the background; keeps its summary or its exception."""

    def __init__(self, spark_context, config, uri, paths):
        super().__init__(daemon=True)
        self.args = (spark_context, config, "restart-1", uri, paths)
        self.summary = None
        self.error = None

    def run(self):
        try:
            self.summary = run_ingest(*self.args)
        except Exception as exc:  # reported by the test
            self.error = exc


def open_pipe_for_writing(pipe):
    """A blocking write descriptor of the named pipe, once its reader (the job) opened it."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            descriptor = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: no reader yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        else:
            os.set_blocking(descriptor, True)
            return descriptor
