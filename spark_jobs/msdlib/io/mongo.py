"""MongoDB access shared by the jobs: the URI from the environment, connections, indexes,
batched unordered bulk writes, bounded retries of idempotent writes.

The URI comes only from the environment: $MSD_MONGO_URI (Airflow sets it from its
connection), or on EMR the run's secret (msdlib.io.emr_mongo); log it only through
``redact_uri``. A MongoClient cannot be pickled: every Spark partition
calls ``connect`` itself. Python 3.9 syntax: this module ships to EMR with the jobs.
"""
import itertools
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, TypeVar

from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

from msdlib import env_vars
from msdlib.config import ConfigError, PipelineConfig
from msdlib.io.emr_mongo import mongo_uri_on_emr

CONNECT_TIMEOUT_MS = 10000
MAX_BACKOFF_SECONDS = 30.0
Result = TypeVar("Result")

# The song fields the jobs filter or group on; "partition" drives parallel reads.
SONG_INDEX_FIELDS = ("features.year", "features.decade", "features.artist_id",
                     "features.partition")
ERROR_INDEX_FIELDS = ("run_id",)

_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/]*):[^@/]*@")


class MongoConfigError(ConfigError):
    """The Mongo connection is not configured."""


def mongo_uri_from_env(environ: Optional[Mapping[str, str]] = None) -> str:
    """$MSD_MONGO_URI; on an EMR cluster of the pipeline, where the step environment has
    no URI, the run's secret or the master node's MongoDB (msdlib.io.emr_mongo)."""
    env = os.environ if environ is None else environ
    uri = env.get(env_vars.MONGO_URI, "").strip() or mongo_uri_on_emr(env)
    if not uri:
        raise MongoConfigError(
            "${} is not set: export the MongoDB URI (Airflow sets it from its Mongo "
            "connection); it is never read from the command line or the config".format(
                env_vars.MONGO_URI))
    return uri


def redact_uri(uri: str) -> str:
    """``mongodb://user:secret@host/db`` → ``mongodb://user:***@host/db``."""
    return _USERINFO.sub(r"\g<scheme>\g<user>:***@", uri)


def connect(uri: str, **options: Any) -> MongoClient:
    """A client that gives up after 10 s without a server (pymongo waits 30 s), unless
    the URI or ``options`` set serverSelectionTimeoutMS themselves."""
    settings = {"appname": "msd-pipeline"}  # type: Dict[str, Any]
    if "serverselectiontimeoutms" not in uri.lower():
        settings["serverSelectionTimeoutMS"] = CONNECT_TIMEOUT_MS
    settings.update(options)
    return MongoClient(uri, **settings)


def retry_idempotent(write: Callable[[], Result], attempts: int, backoff_seconds: float,
                     sleep: Callable[[float], None] = time.sleep) -> Result:
    """Run ``write`` (which must be safe to repeat) up to ``attempts`` times while it fails
    with a connection error (ConnectionFailure: AutoReconnect, NetworkTimeout, server
    selection timeouts), waiting ``backoff_seconds``, then twice as long, ... (at most
    30 s) in between. The last error propagates; any other error at once."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except ConnectionFailure as exc:
            if attempt >= attempts:
                raise
            wait = min(backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            print("mongo write failed ({}: {}); attempt {} of {} in {:.1f} s".format(
                type(exc).__name__, exc, attempt + 1, attempts, wait),
                file=sys.stderr, flush=True)
            sleep(wait)
    raise ValueError("attempts must be at least 1, got {}".format(attempts))


def ensure_indexes(db: Database, config: PipelineConfig) -> List[str]:
    """Create the songs and ingest_errors indexes (idempotent); returns their names."""
    songs = db[config.mongo.songs_collection]
    errors = db[config.mongo.errors_collection]
    names = [songs.create_index([(field, ASCENDING)]) for field in SONG_INDEX_FIELDS]
    names += [errors.create_index([(field, ASCENDING)]) for field in ERROR_INDEX_FIELDS]
    return names


def batched(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    """Consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError("batch size must be at least 1, got {}".format(size))
    iterator = iter(items)
    while True:
        batch = list(itertools.islice(iterator, size))
        if not batch:
            return
        yield batch


@dataclass
class WriteCounts:
    """What a series of bulk writes did."""
    matched: int = 0
    modified: int = 0
    upserted: int = 0
    inserted: int = 0
    deleted: int = 0

    def add(self, result: Any) -> None:
        self.matched += result.matched_count
        self.modified += result.modified_count
        self.upserted += result.upserted_count
        self.inserted += result.inserted_count
        self.deleted += result.deleted_count


def bulk_write_batches(collection: Collection, operations: Iterable[Any],
                       batch_size: int) -> WriteCounts:
    """Send ``operations`` (pymongo write models) as unordered bulk writes of
    ``batch_size``; streams, so memory stays at one batch."""
    counts = WriteCounts()
    for batch in batched(operations, batch_size):
        counts.add(collection.bulk_write(batch, ordered=False))
    return counts
