"""The ingest job's accounting, without I/O: what became of each path, the reason class
of a failure, the tallies the driver reduces and the JSON summary.

Every path ends as exactly one ``FileOutcome``: a song (``track_id`` set; a second path
of the same track id is a duplicate) or an error (``reason`` set, one ``ingest_errors``
record). So ``files_seen == files_ingested + files_duplicate + files_failed``.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

from msdlib.config import PipelineConfig
from msdlib.core.features import YEAR_OUT_OF_RANGE
from msdlib.core.song_errors import SongFileError

MAX_ERROR_MESSAGE_CHARS = 500
# Reasons recorded by the job itself; the reader and the document builder add
# SongFileError.reason (msdlib.core.song_errors.REASONS).
REASON_UNREADABLE = "unreadable"
REASON_NOT_A_FILE = "not_a_file"
REASON_S3 = "s3_error"
REASON_WRITE_REJECTED = "write_rejected"
REASON_UNEXPECTED = "unexpected_error"


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


def utc_now() -> datetime.datetime:
    """Millisecond precision, as BSON stores it, so re-read values compare equal."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def error_record(path: str, reason: str, message: str, run_id: str,
                 recorded_at: datetime.datetime) -> Dict[str, Any]:
    """The ``ingest_errors`` record of one path (``_id`` = path)."""
    return {"_id": path, "path": path, "reason": reason,
            "message": message[:MAX_ERROR_MESSAGE_CHARS], "run_id": run_id,
            "recorded_at": recorded_at}


def failure_record(path: str, exc: Exception, run_id: str,
                   recorded_at: datetime.datetime) -> Dict[str, Any]:
    """The error record of an exception raised while reading or converting one file."""
    message = str(exc) if isinstance(exc, SongFileError) else "{}: {}".format(
        type(exc).__name__, exc)
    return error_record(path, failure_reason(exc), message, run_id, recorded_at)


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


def batch_outcomes(documents: List[Dict[str, Any]], errors: List[Dict[str, Any]],
                   rejected: List[Dict[str, Any]]) -> List[FileOutcome]:
    """One outcome per path of a written batch: its error records, the records of the
    documents the server rejected, and the songs of the other documents."""
    rejected_paths = {record["_id"] for record in rejected}
    return [FileOutcome(path=record["_id"], reason=record["reason"])
            for record in errors + rejected] + [
        FileOutcome(path=doc["source"]["path"], track_id=doc["_id"],
                    year_status=doc["features"]["year_status"])
        for doc in documents if doc["source"]["path"] not in rejected_paths]


def partition_count(configured: int, default_parallelism: int, files: int) -> int:
    """``ingest.partitions`` or twice Spark's parallelism, never more than the files."""
    wanted = configured if configured > 0 else 2 * default_parallelism
    return max(1, min(wanted, files))


def failed_fraction(counts: IngestCounts) -> float:
    return counts.failed / counts.seen if counts.seen else 0.0


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
