"""The artist-disjoint split: disjoint, deterministic per seed, identical in Spark."""
import os
import sys

import pytest

from msdlib.core.splits import artist_fold, artist_unit, is_test_artist

ARTISTS = ["AR{:016d}".format(i) for i in range(2000)]
# Songs of each artist: several songs per artist, as in the MSD.
SONGS = [("TR{:05d}".format(i), ARTISTS[i % len(ARTISTS)]) for i in range(10000)]


def split(songs, seed, fraction=0.2):
    train, test = [], []
    for track, artist in songs:
        (test if is_test_artist(artist, seed, fraction) else train).append((track, artist))
    return train, test


def test_no_artist_on_both_sides():
    train, test = split(SONGS, seed=42)
    assert train and test
    assert not {a for _, a in train} & {a for _, a in test}
    assert len(train) + len(test) == len(SONGS)


def test_same_seed_same_split_whatever_the_order():
    first = split(SONGS, seed=7)
    second = split(list(reversed(SONGS)), seed=7)
    assert sorted(first[1]) == sorted(second[1])


def test_other_seed_other_split():
    assert {a for _, a in split(SONGS, 1)[1]} != {a for _, a in split(SONGS, 2)[1]}


def test_test_share_follows_fraction():
    test_artists = [a for a in ARTISTS if is_test_artist(a, 42, 0.25)]
    assert 0.21 < len(test_artists) / len(ARTISTS) < 0.29


def test_folds_cover_range_and_keep_artists_together():
    folds = {artist_fold(a, 42, 5) for a in ARTISTS}
    assert folds == {0, 1, 2, 3, 4}
    assert all(artist_fold(a, 42, 5) == artist_fold(a, 42, 5) for a in ARTISTS[:50])


def test_unit_is_in_unit_interval():
    values = [artist_unit(a, "split-42") for a in ARTISTS]
    assert all(0.0 <= v < 1.0 for v in values)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = SparkSession.builder.master("local[1]").appName("test-splits") \
        .config("spark.ui.enabled", "false").getOrCreate()
    yield session
    session.stop()


def test_spark_expressions_match_python(spark):
    from msdlib.core.splits import spark_artist_unit, spark_fold, spark_is_test

    artists = ARTISTS[:300]
    rows = spark.createDataFrame([(a,) for a in artists], ["artist_id"]).select(
        "artist_id", spark_artist_unit("artist_id", "split-42").alias("unit"),
        spark_is_test("artist_id", 42, 0.3).alias("is_test"),
        spark_fold("artist_id", 42, 4).alias("fold")).collect()
    for row in rows:
        assert row["unit"] == pytest.approx(artist_unit(row["artist_id"], "split-42"), abs=1e-15)
        assert row["is_test"] == is_test_artist(row["artist_id"], 42, 0.3)
        assert row["fold"] == artist_fold(row["artist_id"], 42, 4)
