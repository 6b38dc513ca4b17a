"""Parallel read of the songs' training features from MongoDB into a DataFrame.

The driver parallelizes the partition-key buckets (``features.partition``); each Spark
partition opens its own MongoClient and runs ONE query on its buckets with a
projection of the features, labels and artist id, so no raw segment array and no song
travels through the driver. Songs whose features are missing, of the wrong width or
non-finite stay in the DataFrame with a ``skip_reason`` so they are counted with one
small aggregation, then left out of training and imputation. Labels are validated
here too: a ``features.year`` that is not an integer in ``ingest.year_min..year_max``
(-5, 3000, 1994.5, "1994", written by an older ingest or by hand) is never a label:
the song is skipped as ``invalid_year``; the decade is always derived from the year.

Feature columns, in order: the 90 timbre features of ``msdlib.core.features.FEATURE_NAMES``
(UCI YearPredictionMSD layout), then ``song_<name>`` for each ``analysis.songs`` field
in ``training.song_features`` (the tutorial's energy and danceability by default).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import math
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from msdlib.core.features import (DEFAULT_YEAR_RANGE, FEATURE_NAMES, YEAR_INVALID,
                                  YEAR_OUT_OF_RANGE, classify_year, decade_of)
from msdlib.io.mongo import connect

SONG_FEATURE_PREFIX = "song_"
SKIP_MISSING = "missing_features"
SKIP_WIDTH = "wrong_width"
SKIP_NON_FINITE = "non_finite"
SKIP_NO_ARTIST = "missing_artist_id"
SKIP_INVALID_YEAR = "invalid_year"


def feature_columns(song_features: Sequence[str]) -> List[str]:
    """The documented feature order: 90 timbre features, then the song-level fields."""
    return list(FEATURE_NAMES) + [SONG_FEATURE_PREFIX + name for name in song_features]


def read_projection(song_features: Sequence[str]) -> Dict[str, int]:
    projection = {"features.timbre": 1, "features.year": 1, "features.decade": 1,
                  "features.artist_id": 1}
    for name in song_features:
        projection["analysis.songs." + name] = 1
    return projection


def song_row(document: Mapping[str, Any], song_features: Sequence[str],
             year_range: Tuple[int, int] = DEFAULT_YEAR_RANGE) -> Tuple[Any, ...]:
    """One DataFrame row: ids, labels, skip reason (or None), then the feature values.

    A skipped song keeps its ids and valid labels and gets null features.
    """
    features = document.get("features") or {}
    year, year_status = classify_year(features.get("year"), year_range)
    artist_id = features.get("artist_id")
    head = (str(document["_id"]), artist_id if isinstance(artist_id, str) else None,
            year, decade_of(year))
    values, reason = _feature_values(document, features, song_features)
    if reason is None and year_status in (YEAR_OUT_OF_RANGE, YEAR_INVALID):
        reason = SKIP_INVALID_YEAR
    if reason is None and not head[1]:
        reason = SKIP_NO_ARTIST
    if reason is not None:
        return head + (reason,) + (None,) * (len(FEATURE_NAMES) + len(song_features))
    return head + (None,) + tuple(values)


def _feature_values(document: Mapping[str, Any], features: Mapping[str, Any],
                    song_features: Sequence[str]) -> Tuple[List[float], Optional[str]]:
    timbre = features.get("timbre")
    if not timbre:
        return [], SKIP_MISSING
    if len(timbre) != len(FEATURE_NAMES):
        return [], SKIP_WIDTH
    song = (document.get("analysis") or {}).get("songs") or {}
    values = list(timbre) + [song.get(name) for name in song_features]
    if not all(_is_finite(value) for value in values):
        return [], SKIP_NON_FINITE
    return [float(value) for value in values], None


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def bucket_groups(buckets: int, partitions: int) -> List[List[int]]:
    """Spread bucket numbers 0..buckets-1 round-robin over at most ``partitions`` lists."""
    count = max(1, min(buckets, partitions))
    return [list(range(start, buckets, count)) for start in range(count)]


def read_partition(mongo_uri: str, database: str, collection: str,
                   song_features: Sequence[str], batch_size: int = 1000,
                   year_range: Tuple[int, int] = DEFAULT_YEAR_RANGE) -> Any:
    """The mapPartitions function: one client and one query per Spark partition."""
    projection = read_projection(song_features)

    def read(bucket_lists: Iterable[List[int]]) -> Iterator[Tuple[Any, ...]]:
        buckets = [bucket for group in bucket_lists for bucket in group]
        if not buckets:
            return
        client = connect(mongo_uri)
        try:
            cursor = client[database][collection].find(
                {"features.partition": {"$in": buckets}}, projection, batch_size=batch_size)
            for document in cursor:
                yield song_row(document, song_features, year_range)
        finally:
            client.close()

    return read


def songs_schema(song_features: Sequence[str]) -> Any:
    from pyspark.sql.types import (DoubleType, IntegerType, StringType, StructField,
                                   StructType)

    fields = [StructField("track_id", StringType(), False),
              StructField("artist_id", StringType(), True),
              StructField("year", IntegerType(), True),
              StructField("decade", IntegerType(), True),
              StructField("skip_reason", StringType(), True)]
    fields += [StructField(name, DoubleType(), True)
               for name in feature_columns(song_features)]
    return StructType(fields)


def load_songs(spark: Any, mongo_uri: str, database: str, collection: str,
               buckets: int, partitions: int, song_features: Sequence[str],
               year_range: Tuple[int, int] = DEFAULT_YEAR_RANGE) -> Any:
    """All songs that carry a partition key, as a DataFrame (lazy; cache it). Each
    partition is sorted by track id: the database returns its songs in whatever order
    they were written, and the seeded models (random forests sample rows) must see the
    same rows in the same order to train the same model twice."""
    groups = bucket_groups(buckets, partitions)
    rdd = spark.sparkContext.parallelize(groups, len(groups)).mapPartitions(
        read_partition(mongo_uri, database, collection, song_features,
                       year_range=year_range))
    return spark.createDataFrame(rdd, songs_schema(song_features)) \
        .sortWithinPartitions("track_id")


def count_unpartitioned(mongo_uri: str, database: str, collection: str) -> int:
    """Songs the partition queries cannot see (no features part): counted server-side."""
    client = connect(mongo_uri)
    try:
        return client[database][collection].count_documents(
            {"features.partition": {"$exists": False}})
    finally:
        client.close()


def summarize_songs(songs: Any) -> Dict[str, Any]:
    """Counts of labelled, unknown-year and skipped songs (by reason): one aggregation."""
    from pyspark.sql import functions as F

    rows = songs.groupBy(F.col("skip_reason"), F.col("year").isNotNull().alias("labelled")) \
        .count().collect()
    summary = {"labelled": 0, "unknown_year": 0, "skipped": 0,
               "skipped_by_reason": {}}  # type: Dict[str, Any]
    for row in rows:
        if row["skip_reason"] is not None:
            reasons = summary["skipped_by_reason"]
            reasons[row["skip_reason"]] = reasons.get(row["skip_reason"], 0) + row["count"]
            summary["skipped"] += row["count"]
        elif row["labelled"]:
            summary["labelled"] += row["count"]
        else:
            summary["unknown_year"] += row["count"]
    return summary


def constant_columns_from_ranges(ranges: Mapping[str, Tuple[Optional[float], Optional[float]]],
                                 columns: Sequence[str]) -> List[str]:
    """Columns whose min equals max (within rounding), in ``columns`` order."""
    constant = []
    for name in columns:
        low, high = ranges[name]
        if low is None or high - low <= 1e-12 * max(1.0, abs(high)):
            constant.append(name)
    return constant


def constant_columns(frame: Any, columns: Sequence[str]) -> List[str]:
    """Detect constant feature columns with one min/max aggregation."""
    from pyspark.sql import functions as F

    expressions = []
    for index, name in enumerate(columns):
        expressions.append(F.min(name).alias("min{}".format(index)))
        expressions.append(F.max(name).alias("max{}".format(index)))
    row = frame.agg(*expressions).first()
    ranges = {name: (row["min{}".format(i)], row["max{}".format(i)])
              for i, name in enumerate(columns)}
    return constant_columns_from_ranges(ranges, columns)
