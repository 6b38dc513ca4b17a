"""The 90 timbre features of the UCI YearPredictionMSD table, and small labels.

Layout, checked against ``YearPredictionMSD_first1176rows.csv`` (tests/unit/test_features.py)
and identical to the MSD authors' ``avgcov`` code (MSongsDB,
Tasks_Demos/YearPrediction/ismir11/compress_feat.py):

* columns 0-11: the mean of each of the 12 timbre dimensions over all segments;
* columns 12-89: the 78 entries of the upper triangle of the 12 x 12 timbre
  covariance matrix (sample covariance, ddof=1, numpy's ``np.cov`` default),
  **diagonal by diagonal**: the 12 variances, then the 11 covariances (i, i+1), then
  the 10 covariances (i, i+2), ..., ending with (0, 11).

Row-by-row order does not fit the UCI rows: rebuilt that way, none of the 1,176
matrices is positive semi-definite; rebuilt diagonal by diagonal, all of them are.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import zlib
from typing import Any, List, Optional, Tuple

import numpy as np

from msdlib.core.song_errors import SongFileError

TIMBRE_DIMS = 12
MIN_SEGMENTS = 2  # a sample covariance (ddof=1) needs two segments
DEFAULT_YEAR_RANGE = (1900, 2030)  # ingest.year_min / year_max
# features.year_status values: only "known" years are labels.
YEAR_KNOWN = "known"
YEAR_MISSING = "missing"  # MSD stores 0 for an unknown year
YEAR_OUT_OF_RANGE = "out_of_range"
YEAR_INVALID = "invalid"  # not an integer


def _covariance_order() -> List[tuple]:
    return [(row, row + offset)
            for offset in range(TIMBRE_DIMS) for row in range(TIMBRE_DIMS - offset)]


COVARIANCE_ORDER = _covariance_order()
_COV_ROWS = np.array([row for row, _ in COVARIANCE_ORDER])
_COV_COLS = np.array([col for _, col in COVARIANCE_ORDER])

FEATURE_NAMES = (
    ["timbre_mean_{:02d}".format(dim) for dim in range(TIMBRE_DIMS)]
    + ["timbre_cov_{:02d}_{:02d}".format(row, col) for row, col in COVARIANCE_ORDER])
FEATURE_COUNT = len(FEATURE_NAMES)  # 90


def timbre_features(segments_timbre: np.ndarray) -> np.ndarray:
    """Return the 90 UCI features (float64) of an n x 12 segments_timbre array."""
    timbre = np.asarray(segments_timbre, dtype=np.float64)
    if timbre.ndim != 2 or timbre.shape[1] != TIMBRE_DIMS:
        raise SongFileError("bad_timbre_shape", "segments_timbre has shape {}".format(
            timbre.shape))
    if timbre.shape[0] == 0:
        raise SongFileError("empty_timbre", "segments_timbre has no segment")
    if timbre.shape[0] < MIN_SEGMENTS:
        raise SongFileError("too_few_segments", "segments_timbre has {} segment".format(
            timbre.shape[0]))
    if not np.isfinite(timbre).all():
        raise SongFileError("nonfinite_timbre", "segments_timbre holds NaN or inf")
    covariance = np.cov(timbre, rowvar=False)
    return np.concatenate([timbre.mean(axis=0), covariance[_COV_ROWS, _COV_COLS]])


def classify_year(value: Any, year_range: Tuple[int, int] = DEFAULT_YEAR_RANGE
                  ) -> Tuple[Optional[int], str]:
    """``(year, status)``: the year when it is a plausible integer in ``year_range``
    (inclusive), else ``(None, why)``; integral floats (1994.0) count as integers."""
    if value is None or (value == 0 and not isinstance(value, (bool, str))):
        return None, YEAR_MISSING
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None, YEAR_INVALID
    low, high = year_range
    if not low <= value <= high:
        return None, YEAR_OUT_OF_RANGE
    return value, YEAR_KNOWN


def decade_of(year: Optional[int]) -> Optional[int]:
    """1994 -> 1990; None for an unknown year (MSD stores 0)."""
    if not year or year <= 0:
        return None
    return int(year) // 10 * 10


def partition_of(track_id: str, buckets: int) -> int:
    """A stable bucket in [0, buckets) for parallel reads: crc32(track_id) % buckets."""
    return zlib.crc32(track_id.encode("utf-8")) % buckets
