"""An order-independent digest of the evaluation split's track ids.

Two training runs evaluated on the same songs get the same digest, whatever the
partitioning: each track id maps to the first 60 bits of its SHA-256, and the digest is
their sum modulo 2**60 plus the count. Spark computes the sum as a 38-digit decimal, so
only two numbers reach the driver.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import hashlib
from typing import Any, Dict, Iterable

_HEX_DIGITS = 15  # 60 bits
_MODULUS = 16 ** _HEX_DIGITS


def track_value(track_id: str) -> int:
    return int(hashlib.sha256(track_id.encode("utf-8")).hexdigest()[:_HEX_DIGITS], 16)


def format_digest(total: int, count: int) -> Dict[str, Any]:
    return {"hash": "sha256-sum60:{}:{:015x}".format(count, total % _MODULUS), "songs": count}


def split_digest(track_ids: Iterable[str]) -> Dict[str, Any]:
    """The digest of ``track_ids`` (duplicates count twice, as in Spark)."""
    total = count = 0
    for track_id in track_ids:
        total += track_value(track_id)
        count += 1
    return format_digest(total, count)


def spark_split_digest(frame: Any, id_col: str = "track_id") -> Dict[str, Any]:
    """The same digest over a DataFrame column, aggregated by Spark."""
    from pyspark.sql import functions as F

    value = F.conv(F.substring(F.sha2(F.col(id_col), 256), 1, _HEX_DIGITS), 16, 10) \
        .cast("decimal(38,0)")
    total, count = frame.agg(F.sum(value), F.count(F.lit(1))).first()
    return format_digest(int(total or 0), int(count))
