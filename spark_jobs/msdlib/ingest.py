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

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import datetime
import functools
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from pymongo import DeleteMany, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from msdlib.config import ConfigError, IngestSettings, MongoSettings, PipelineConfig
from msdlib.core.documents import build_document
from msdlib.core.features import YEAR_OUT_OF_RANGE
from msdlib.core.song_errors import SongFileError
from msdlib.io.hdf5_reader import read_song
from msdlib.io.mongo import batched, connect, ensure_indexes, retry_idempotent
from msdlib.io.sources import FileReader, SourceReader, list_sources, read_ahead

ARRAY_ENCODINGS = ("list", "float32")
MAX_ERROR_MESSAGE_CHARS = 500
# Reasons recorded by the job itself; read_song/build_document add SongFileError.reason.
REASON_UNREADABLE = "unreadable"
REASON_NOT_A_FILE = "not_a_file"
REASON_S3 = "s3_error"
REASON_WRITE_REJECTED = "write_rejected"
REASON_UNEXPECTED = "unexpected_error"
DUPLICATE_KEY = 11000


def _botocore_errors() -> Tuple[type, ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # local-only installs without boto3
        return ()
    return (BotoCoreError, ClientError)


BOTOCORE_ERRORS = _botocore_errors()


class FileOutcome(NamedTuple):
    """What became of one path: a song (``track_id`` set) or an error (``reason`` set)."""
    path: str
    track_id: Optional[str] = None
    reason: Optional[str] = None
    year_status: Optional[str] = None


@dataclass
class IngestCounts:
    """Per-path tallies (``ingested`` counts written paths, duplicates included);
    ``merged`` reduces them on the driver."""
    seen: int = 0
    ingested: int = 0
    failed: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)

    def add_failure(self, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def merged(self, other: "IngestCounts") -> "IngestCounts":
        reasons = dict(self.reasons)
        for reason, count in other.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
        return IngestCounts(self.seen + other.seen, self.ingested + other.ingested,
                            self.failed + other.failed, reasons)

    @classmethod
    def of(cls, outcomes: Iterable[FileOutcome]) -> "IngestCounts":
        counts = cls()
        for outcome in outcomes:
            counts.seen += 1
            if outcome.reason is None:
                counts.ingested += 1
            else:
                counts.add_failure(outcome.reason)
        return counts


@dataclass
class SongCounts:
    """Per-song tallies of a run: distinct songs (track ids), the extra paths of songs
    found under several paths, and the songs per ``features.year_status``."""
    songs: int = 0
    duplicates: int = 0
    by_year_status: Dict[str, int] = field(default_factory=dict)


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


def validate_settings(settings: IngestSettings) -> None:
    """Reject settings the job cannot run with (ConfigError → exit code 2)."""
    problems = []
    if settings.array_encoding not in ARRAY_ENCODINGS:
        problems.append("ingest.array_encoding must be one of {}, got {!r}".format(
            ", ".join(ARRAY_ENCODINGS), settings.array_encoding))
    if settings.batch_size < 1:
        problems.append("ingest.batch_size must be at least 1")
    if settings.partitions < 0:
        problems.append("ingest.partitions must be 0 (automatic) or more")
    if settings.partition_buckets < 1:
        problems.append("ingest.partition_buckets must be at least 1")
    if not 0.0 <= settings.max_failed_fraction <= 1.0:
        problems.append("ingest.max_failed_fraction must be between 0 and 1")
    if settings.max_files < 0:
        problems.append("ingest.max_files must be 0 (all) or more")
    if settings.read_ahead < 1:
        problems.append("ingest.read_ahead must be at least 1")
    if settings.year_min > settings.year_max:
        problems.append("ingest.year_min must not exceed ingest.year_max")
    if problems:
        raise ConfigError("; ".join(problems))


def validate_mongo_settings(settings: MongoSettings) -> None:
    """Reject retry settings the job cannot run with (ConfigError → exit code 2)."""
    if settings.write_attempts < 1 or settings.retry_backoff_seconds < 0:
        raise ConfigError("mongo.write_attempts must be at least 1 and "
                          "mongo.retry_backoff_seconds not negative")


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


def utc_now() -> datetime.datetime:
    """Millisecond precision, as BSON stores it, so re-read values compare equal."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def error_record(path: str, reason: str, message: str, run_id: str,
                 recorded_at: datetime.datetime) -> Dict[str, Any]:
    return {"_id": path, "path": path, "reason": reason,
            "message": message[:MAX_ERROR_MESSAGE_CHARS], "run_id": run_id,
            "recorded_at": recorded_at}


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
        reason = failure_reason(exc)
        message = str(exc) if isinstance(exc, SongFileError) else "{}: {}".format(
            type(exc).__name__, exc)
    return None, error_record(path, reason, message, task.run_id, utc_now())


def failure_reason(exc: Exception) -> str:
    """The reason class of an exception raised while reading or converting one file."""
    if isinstance(exc, SongFileError):
        return exc.reason
    if isinstance(exc, IsADirectoryError):
        return REASON_NOT_A_FILE
    if isinstance(exc, OSError):
        return REASON_UNREADABLE
    if BOTOCORE_ERRORS and isinstance(exc, BOTOCORE_ERRORS):
        return REASON_S3
    return REASON_UNEXPECTED


def write_batch(db: Any, task: PartitionTask, documents: List[Dict[str, Any]],
                errors: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Write ``documents`` and the error records; clear old records of written files.

    Returns one more error record per document the server rejected (e.g. over the
    16 MB BSON limit); those are stored with the others.
    """
    rejected = write_songs(db[task.songs_collection], documents, task)
    rejected_paths = {record["_id"] for record in rejected}
    written_paths = [doc["source"]["path"] for doc in documents
                     if doc["source"]["path"] not in rejected_paths]
    operations = [ReplaceOne({"_id": record["_id"]}, record, upsert=True)
                  for record in errors + rejected]
    if written_paths:
        operations.append(DeleteMany({"_id": {"$in": written_paths}}))
    if operations:
        db[task.errors_collection].bulk_write(operations, ordered=False)
    return rejected


def write_songs(songs: Any, documents: List[Dict[str, Any]],
                task: PartitionTask) -> List[Dict[str, Any]]:
    """Insert the new songs and replace the existing ones, unordered; returns the error
    records of documents the server rejected.

    The end state is that of an upsert of every document, but inserts are cheaper: on
    SecantusDB, replacing a large document costs the server 2-3x the work of inserting
    it (benchmarks/README.md). A song inserted meanwhile by another partition (the same
    track under two paths) is replaced instead.
    """
    if not documents:
        return []
    ids = [doc["_id"] for doc in documents]
    existing = {doc["_id"] for doc in songs.find({"_id": {"$in": ids}}, {"_id": 1})}
    failures = _bulk_failures(songs, [
        ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) if doc["_id"] in existing
        else InsertOne(doc) for doc in documents])
    duplicates = [index for index, item in failures.items() if item.get("code") == DUPLICATE_KEY]
    if duplicates:
        retried = _bulk_failures(songs, [
            ReplaceOne({"_id": documents[index]["_id"]}, documents[index], upsert=True)
            for index in duplicates])
        for position, index in enumerate(duplicates):
            if position in retried:
                failures[index] = retried[position]
            else:
                del failures[index]
    recorded_at = utc_now()
    return [error_record(documents[index]["source"]["path"], REASON_WRITE_REJECTED,
                         item.get("errmsg", ""), task.run_id, recorded_at)
            for index, item in sorted(failures.items())]


def _bulk_failures(collection: Any, operations: List[Any]) -> Dict[int, Dict[str, Any]]:
    """Run an unordered bulk write; its per-operation write errors by operation index.
    Anything else (write concern, network, server down) raises."""
    try:
        collection.bulk_write(operations, ordered=False)
        return {}
    except BulkWriteError as exc:
        details = exc.details
        if details.get("writeConcernErrors") or not details.get("writeErrors"):
            raise
        return {item["index"]: item for item in details["writeErrors"]}


def ingest_paths(paths: Iterable[str], task: PartitionTask) -> List[FileOutcome]:
    """Ingest every path with one MongoClient; the body of one Spark partition."""
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
    rejected = task.retrying(lambda: write_batch(db, task, documents, errors))
    rejected_paths = {record["_id"] for record in rejected}
    return [FileOutcome(path=record["_id"], reason=record["reason"])
            for record in errors + rejected] + [
        FileOutcome(path=doc["source"]["path"], track_id=doc["_id"],
                    year_status=doc["features"]["year_status"])
        for doc in documents if doc["source"]["path"] not in rejected_paths]


def ingest_partition(paths: Iterator[str], task: PartitionTask) -> List[FileOutcome]:
    """``mapPartitions`` function: one FileOutcome per path."""
    return ingest_paths(paths, task)


def record_duplicates(groups: Iterable[Tuple[str, List[str]]],
                      task: PartitionTask) -> Iterator[int]:
    """Set ``source.paths`` of songs found under several paths (``(track_id, paths)``
    groups); yields the number of extra paths of each group."""
    client = None
    try:
        for batch in batched(groups, task.batch_size):
            client = client or connect(task.mongo_uri)
            songs = client[task.database][task.songs_collection]
            operations = [UpdateOne({"_id": track_id},
                                    {"$set": {"source.paths": sorted(paths)}})
                          for track_id, paths in batch]
            task.retrying(lambda: songs.bulk_write(operations, ordered=False))
            for _, paths in batch:
                yield len(paths) - 1
    finally:
        if client is not None:
            client.close()


def partition_count(configured: int, default_parallelism: int, files: int) -> int:
    """``ingest.partitions`` or twice Spark's parallelism, never more than the files."""
    wanted = configured if configured > 0 else 2 * default_parallelism
    return max(1, min(wanted, files))


def failed_fraction(counts: IngestCounts) -> float:
    return counts.failed / counts.seen if counts.seen else 0.0


def list_ingest_paths(config: PipelineConfig,
                      s3_endpoint_url: Optional[str] = None) -> List[str]:
    """The driver's listing of ``ingest.source`` (paths only), capped by ``ingest.max_files``."""
    return list_sources(config.ingest.source, config.ingest.max_files, s3_endpoint_url)


def run_ingest(spark_context: Any, config: PipelineConfig, run_id: str, mongo_uri: str,
               paths: List[str], s3_endpoint_url: Optional[str] = None) -> Dict[str, Any]:
    """Ingest ``paths`` into MongoDB with Spark; returns the job summary."""
    from pyspark import StorageLevel

    validate_settings(config.ingest)
    validate_mongo_settings(config.mongo)
    started = time.monotonic()
    task = make_task(config, mongo_uri, run_id, utc_now(), s3_endpoint_url)
    client = connect(mongo_uri)
    try:
        db = client[config.mongo.database]
        task.retrying(lambda: ensure_indexes(db, config))
        partitions = partition_count(config.ingest.partitions,
                                     spark_context.defaultParallelism, len(paths))
        outcomes = (spark_context.parallelize(paths, partitions)
                    .mapPartitions(functools.partial(ingest_partition, task=task))
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


def build_summary(counts: IngestCounts, songs: SongCounts, seconds: float,
                  config: PipelineConfig, run_id: str) -> Dict[str, Any]:
    """The JSON summary; ``ok`` is False when the failed share exceeds the threshold.

    ``files_seen == files_ingested + files_duplicate + files_failed``: each path is one
    song, one more path of a song, or one error. ``songs_by_year_status`` splits the
    songs by ``features.year_status`` (years outside ``ingest.year_min..year_max`` are
    ``out_of_range``: stored as unknown, never labels).
    """
    fraction = failed_fraction(counts)
    return {
        "job": "ingest_songs",
        "run_id": run_id,
        "ok": fraction <= config.ingest.max_failed_fraction,
        "source": config.ingest.source,
        "database": config.mongo.database,
        "encoding": config.ingest.array_encoding,
        "files_seen": counts.seen,
        "files_ingested": songs.songs,
        "files_duplicate": songs.duplicates,
        "files_failed": counts.failed,
        "failed_fraction": round(fraction, 6),
        "max_failed_fraction": config.ingest.max_failed_fraction,
        "failure_reasons": dict(sorted(counts.reasons.items())),
        "songs_by_year_status": dict(sorted(songs.by_year_status.items())),
        "years_out_of_range": songs.by_year_status.get(YEAR_OUT_OF_RANGE, 0),
        "year_range": list(config.ingest.year_range),
        "seconds": round(seconds, 3),
        "songs_per_second": round(songs.songs / seconds, 2) if seconds > 0 else None,
    }
