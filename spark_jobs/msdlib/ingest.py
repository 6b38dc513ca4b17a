"""HDF5 song files → MongoDB ``songs``, one Spark partition at a time.

The driver lists the file paths (nothing else), Spark spreads them over partitions,
and every partition opens its own MongoClient, reads and parses its files and writes
them in unordered bulk writes of ``ingest.batch_size`` documents (new songs inserted,
existing ones replaced: the effect of an upsert, at insert speed).

Every path ends as exactly one of:

* a song: its document is written (``_id`` = track id);
* a duplicate: another path of this run holds the same track id. The song is stored
  once and ``source.paths`` lists every path it came from (``source.path`` is the one
  whose content is stored); the summary counts the extra paths in ``files_duplicate``;
* an error: one record in ``ingest_errors`` (``_id`` = path) with a ``reason`` class
  and the exception text. A file that later succeeds has its record removed.

One failure boundary per file: whatever reading, validating or converting one file
raises (SongFileError from the structural checks, OSError, botocore errors, anything
h5py or numpy raise) becomes that file's error record; unforeseen exceptions get the
reason ``unexpected_error``. Only infrastructure failures (the database, the S3
listing) fail the job, after ``mongo.write_attempts`` tries of each idempotent batch
write. So ``files_seen == files_ingested + files_duplicate + files_failed``.

Partitions return one small ``FileOutcome`` per path; the driver gets only counts
(Spark aggregations), never song data. Re-runs are idempotent: each write replaces
the whole document and ``source.paths`` is set, not appended to.

This module is the I/O loop: listing, reading, the Spark partitions and the driver's
aggregations. The accounting (outcomes, reason classes, tallies, summary) is pure, in
msdlib.core.ingest_accounting; the MongoDB writes are in msdlib.io.song_writes.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import datetime
import functools
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from msdlib.config import PipelineConfig
from msdlib.core.documents import build_document
from msdlib.core.ingest_accounting import (FileOutcome, IngestCounts, SongCounts,
                                           batch_outcomes, build_summary, failure_record,
                                           partition_count, utc_now)
from msdlib.io.hdf5_reader import read_song
from msdlib.io.mongo import batched, connect, ensure_indexes, retry_idempotent
from msdlib.io.song_writes import set_source_paths, write_batch
from msdlib.io.sources import FileReader, SourceReader, list_sources, read_ahead


@dataclass(frozen=True)
class PartitionTask:
    """Everything a partition needs, pickled into the Spark closure.

    The Mongo URI travels here rather than in ``spark.executorEnv.MSD_MONGO_URI``:
    executorEnv settings are shown in the Spark UI's Environment tab and written to the
    event log (Spark's default redaction pattern does not match that name), while a
    task closure is only ever sent, serialized, to the executors.
    """
    mongo_uri: str = field(repr=False)
    database: str
    songs_collection: str
    errors_collection: str
    run_id: str
    ingested_at: datetime.datetime
    encoding: str
    partition_buckets: int
    batch_size: int
    year_range: Tuple[int, int]
    write_attempts: int
    retry_backoff_seconds: float
    s3_endpoint_url: Optional[str] = None
    read_ahead: int = 1

    def retrying(self, write: Any) -> Any:
        """``write()`` with the bounded retries of idempotent writes."""
        return retry_idempotent(write, self.write_attempts, self.retry_backoff_seconds)


def make_task(config: PipelineConfig, mongo_uri: str, run_id: str,
              ingested_at: datetime.datetime,
              s3_endpoint_url: Optional[str] = None) -> PartitionTask:
    return PartitionTask(
        mongo_uri=mongo_uri, database=config.mongo.database,
        songs_collection=config.mongo.songs_collection,
        errors_collection=config.mongo.errors_collection,
        run_id=run_id, ingested_at=ingested_at, encoding=config.ingest.array_encoding,
        partition_buckets=config.ingest.partition_buckets,
        batch_size=config.ingest.batch_size, year_range=config.ingest.year_range,
        write_attempts=config.mongo.write_attempts,
        retry_backoff_seconds=config.mongo.retry_backoff_seconds,
        s3_endpoint_url=s3_endpoint_url, read_ahead=config.ingest.read_ahead)


def song_document(path: str, data: bytes, task: PartitionTask) -> Dict[str, Any]:
    """The ``songs`` document of one file's bytes; raises SongFileError for bad files."""
    return build_document(
        read_song(data), path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        run_id=task.run_id, ingested_at=task.ingested_at, encoding=task.encoding,
        partition_buckets=task.partition_buckets, year_range=task.year_range)


def convert_file(path: str, reader: FileReader,
                 task: PartitionTask) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """``(document, None)`` for a good file, ``(None, error record)`` for a bad one:
    the failure boundary of one file."""
    try:
        return song_document(path, reader.read(path), task), None
    except Exception as exc:  # noqa: BLE001 - anything one file causes stays with it
        return None, failure_record(path, exc, task.run_id, utc_now())


def ingest_paths(paths: Iterable[str], task: PartitionTask) -> List[FileOutcome]:
    """Ingest every path with one MongoClient: the ``mapPartitions`` function of one
    Spark partition, one FileOutcome per path."""
    outcomes = []  # type: List[FileOutcome]
    reader = SourceReader(task.s3_endpoint_url, max_connections=task.read_ahead)
    client = connect(task.mongo_uri)
    try:
        db = client[task.database]
        documents = []  # type: List[Dict[str, Any]]
        errors = []  # type: List[Dict[str, Any]]
        for path, song_file in read_ahead(reader, paths, task.read_ahead):
            document, error = convert_file(path, song_file, task)
            if document is not None:
                documents.append(document)
            else:
                errors.append(error)
            if len(documents) + len(errors) >= task.batch_size:
                outcomes.extend(_flush(db, task, documents, errors))
                documents, errors = [], []
        outcomes.extend(_flush(db, task, documents, errors))
    finally:
        client.close()
    return outcomes


def _flush(db: Any, task: PartitionTask, documents: List[Dict[str, Any]],
           errors: List[Dict[str, Any]]) -> List[FileOutcome]:
    rejected = task.retrying(lambda: write_batch(
        db[task.songs_collection], db[task.errors_collection], documents, errors,
        task.run_id))
    return batch_outcomes(documents, errors, rejected)


def record_duplicates(groups: Iterable[Tuple[str, List[str]]],
                      task: PartitionTask) -> Iterator[int]:
    """Set ``source.paths`` of songs found under several paths (``(track_id, paths)``
    groups); yields the number of extra paths of each group."""
    client = None
    try:
        for batch in batched(groups, task.batch_size):
            client = client or connect(task.mongo_uri)
            songs = client[task.database][task.songs_collection]
            task.retrying(lambda: set_source_paths(songs, batch))
            for _, paths in batch:
                yield len(paths) - 1
    finally:
        if client is not None:
            client.close()


def list_ingest_paths(config: PipelineConfig,
                      s3_endpoint_url: Optional[str] = None) -> List[str]:
    """The driver's listing of ``ingest.source`` (paths only), capped by ``ingest.max_files``."""
    return list_sources(config.ingest.source, config.ingest.max_files, s3_endpoint_url)


def run_ingest(spark_context: Any, config: PipelineConfig, run_id: str, mongo_uri: str,
               paths: List[str], s3_endpoint_url: Optional[str] = None) -> Dict[str, Any]:
    """Ingest ``paths`` into MongoDB with Spark; returns the job summary."""
    from pyspark import StorageLevel

    started = time.monotonic()
    task = make_task(config, mongo_uri, run_id, utc_now(), s3_endpoint_url)
    client = connect(mongo_uri)
    try:
        db = client[config.mongo.database]
        task.retrying(lambda: ensure_indexes(db, config))
        partitions = partition_count(config.ingest.partitions,
                                     spark_context.defaultParallelism, len(paths))
        outcomes = (spark_context.parallelize(paths, partitions)
                    .mapPartitions(functools.partial(ingest_paths, task=task))
                    .persist(StorageLevel.MEMORY_AND_DISK))
        try:
            counts, songs = tally_outcomes(outcomes, task)
        finally:
            outcomes.unpersist()
        songs_total = task.retrying(
            lambda: db[config.mongo.songs_collection].estimated_document_count())
    finally:
        client.close()
    summary = build_summary(counts, songs, time.monotonic() - started, config, run_id)
    summary.update(partitions=partitions, songs_in_collection=songs_total,
                   spark_master=spark_context.master)
    return summary


def tally_outcomes(outcomes: Any, task: PartitionTask) -> Tuple[IngestCounts, SongCounts]:
    """Per-path and per-song counts of the outcomes RDD, with Spark aggregations only;
    records the paths of songs found under several paths."""
    counts = outcomes.mapPartitions(lambda part: [IngestCounts.of(part)]) \
        .reduce(lambda left, right: left.merged(right))
    by_track = outcomes.filter(lambda outcome: outcome.track_id is not None) \
        .map(lambda outcome: (outcome.track_id, ([outcome.path], outcome.year_status))) \
        .reduceByKey(lambda left, right: (left[0] + right[0], left[1]))
    years = by_track.map(lambda item: item[1][1]).countByValue()
    duplicates = by_track.filter(lambda item: len(item[1][0]) > 1) \
        .map(lambda item: (item[0], item[1][0])) \
        .mapPartitions(functools.partial(record_duplicates, task=task)).sum()
    return counts, SongCounts(sum(years.values()), int(duplicates),
                              {status: int(count) for status, count in years.items()})
