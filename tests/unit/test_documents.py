"""msdlib.core.documents: the song document, both array encodings, BSON/JSON friendliness."""
import copy
import datetime
import json
from pathlib import Path

import bson
import numpy as np
import pytest
from bson.binary import Binary

from msdlib.core.documents import build_document, decode_array, encode_array
from msdlib.core.features import timbre_features
from msd_pipeline.staging.generator import generate_songs
from msdlib.core.song_errors import SongFileError
from msdlib.io.hdf5_reader import read_song
from project_paths import SHARED_MSD

INGESTED_AT = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
TUTORIAL_PROJECTION = ["analysis.segments_timbre", "analysis.songs.energy",
                       "metadata.songs.title", "metadata.songs.artist_name"]


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    paths = generate_songs(str(tmp_path_factory.mktemp("songs")), 12, seed=5,
                           unknown_year_fraction=0.3)
    return [(path, read_song(path)) for path in paths]


def build(song, path="songs/TR.h5", encoding="list"):
    return build_document(song, path=path, sha256="ab" * 32, size=1234, run_id="run-1",
                          ingested_at=INGESTED_AT, encoding=encoding, partition_buckets=16)


def dotted(document, key):
    for part in key.split("."):
        document = document[part]
    return document


@pytest.mark.parametrize("encoding", ["list", "float32"])
def test_document_keeps_the_tutorial_layout_and_adds_features(songs, encoding):
    path, song = songs[0]
    document = bson.decode(bson.encode(build(song, path, encoding)))
    assert document["_id"] == song["analysis"]["songs"]["track_id"]
    for key in TUTORIAL_PROJECTION + ["musicbrainz.songs.year", "metadata.artist_terms",
                                      "analysis.bars_start", "musicbrainz.artist_mbtags"]:
        dotted(document, key)
    assert document["metadata"]["songs"]["title"] == song["metadata"]["songs"]["title"]
    assert document["analysis"]["songs"]["energy"] == 0.0
    features = document["features"]
    np.testing.assert_allclose(features["timbre"],
                               timbre_features(song["analysis"]["segments_timbre"]))
    assert features["artist_id"] == song["metadata"]["songs"]["artist_id"]
    assert 0 <= features["partition"] < 16
    assert document["source"] == {
        "path": path, "paths": [path], "sha256": "ab" * 32, "size": 1234,
        "run_id": "run-1", "ingested_at": INGESTED_AT.replace(tzinfo=None),
        "encoding": encoding}


def test_year_and_decade_labels(songs):
    labels = [build(song)["features"] for _, song in songs]
    years = [song["musicbrainz"]["songs"]["year"] for _, song in songs]
    assert 0 in years and any(years)
    for label, year in zip(labels, years):
        if year == 0:
            assert label["year"] is None and label["decade"] is None
            assert label["year_status"] == "missing"
        else:
            assert label["year"] == year and label["decade"] == year // 10 * 10
            assert label["year_status"] == "known"


@pytest.mark.parametrize("raw_year, status", [(-5, "out_of_range"), (3000, "out_of_range"),
                                              (1899, "out_of_range"), (2031, "out_of_range")])
def test_implausible_year_is_unknown_and_kept_raw(songs, raw_year, status):
    song = copy.deepcopy(songs[0][1])
    song["musicbrainz"]["songs"]["year"] = raw_year
    document = build(song)
    assert document["features"]["year"] is None and document["features"]["decade"] is None
    assert document["features"]["year_status"] == status
    assert document["musicbrainz"]["songs"]["year"] == raw_year


def test_year_range_is_configurable(songs):
    song = copy.deepcopy(songs[0][1])
    song["musicbrainz"]["songs"]["year"] = 1890
    document = build_document(song, path="p", sha256="", size=0, run_id="r",
                              ingested_at=INGESTED_AT, year_range=(1850, 2030))
    assert (document["features"]["year"], document["features"]["year_status"]) == (
        1890, "known")


@pytest.mark.parametrize("encoding", ["list", "float32"])
def test_arrays_round_trip_through_bson(songs, encoding):
    _, song = songs[1]
    document = bson.decode(bson.encode(build(song, encoding=encoding)))
    tolerance = 1e-6 if encoding == "float32" else 0.0
    for name in ("segments_timbre", "segments_start", "bars_confidence"):
        original = song["analysis"][name]
        decoded = decode_array(document["analysis"][name])
        assert decoded.shape == original.shape
        np.testing.assert_allclose(decoded, original, rtol=tolerance)
    assert document["metadata"]["artist_terms"] == song["metadata"]["artist_terms"]
    np.testing.assert_array_equal(decode_array(document["musicbrainz"]["artist_mbtags_count"]),
                                  song["musicbrainz"]["artist_mbtags_count"])


def test_float32_encoding_is_compact_binary(songs):
    _, song = songs[2]
    timbre = build(song, encoding="float32")["analysis"]["segments_timbre"]
    assert timbre["dtype"] == "<f4"
    assert timbre["shape"] == list(song["analysis"]["segments_timbre"].shape)
    assert isinstance(timbre["data"], Binary)
    assert len(timbre["data"]) == 4 * song["analysis"]["segments_timbre"].size
    listed = len(bson.encode(build(song, encoding="list")))
    assert len(bson.encode(build(song, encoding="float32"))) < listed / 2


def test_list_documents_hold_no_nan(songs):
    _, song = songs[3]
    song = dict(song, analysis=dict(song["analysis"]))
    loudness = song["analysis"]["segments_loudness_max"].copy()
    loudness[:2] = [np.nan, np.inf]
    song["analysis"]["segments_loudness_max"] = loudness
    document = build(song)
    json.dumps(document, allow_nan=False, default=str)  # raises on NaN/inf
    assert document["analysis"]["segments_loudness_max"][:2] == [None, None]
    decoded = decode_array(document["analysis"]["segments_loudness_max"])
    assert np.isnan(decoded[:2]).all()
    np.testing.assert_array_equal(decoded[2:], loudness[2:])
    binary = decode_array(build(song, encoding="float32")["analysis"]["segments_loudness_max"])
    assert np.isnan(binary[0]) and np.isinf(binary[1])


def test_encode_array_forms():
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert encode_array(matrix) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert encode_array(np.array([1, 2], dtype=np.int32), "float32") == [1, 2]
    np.testing.assert_array_equal(decode_array(encode_array(matrix, "float32")), matrix)
    assert decode_array([]).shape == (0,)


@pytest.mark.parametrize("reason, timbre", [
    ("empty_timbre", np.zeros((0, 12))),
    ("nonfinite_timbre", np.full((4, 12), np.nan)),
])
def test_bad_timbre_has_no_document(songs, reason, timbre):
    _, song = songs[4]
    song = dict(song, analysis=dict(song["analysis"], segments_timbre=timbre))
    with pytest.raises(SongFileError) as caught:
        build(song)
    assert caught.value.reason == reason


def test_unknown_encoding_is_rejected(songs):
    with pytest.raises(ValueError, match="encoding"):
        build(songs[0][1], encoding="float16")


@pytest.mark.skipif(not (SHARED_MSD / "tracks").is_dir(),
                    reason="real MSD files not found at {}".format(SHARED_MSD))
def test_real_song_documents_are_valid_json_with_nan_as_null():
    paths = sorted((SHARED_MSD / "tracks").glob("*/*/*/*.h5"))[:20]
    nulls = 0
    for path in paths:
        document = build(read_song(str(path)), str(path))
        decoded = json.loads(json.dumps(document, allow_nan=False, default=str))
        nulls += sum(value is None for value in decoded["metadata"]["songs"].values())
    assert nulls > 0


def test_a_value_bson_cannot_store_fails_the_song_not_the_batch(songs):
    song = copy.deepcopy(songs[0][1])
    song["analysis"]["huge"] = np.array([2 ** 64 - 1], dtype=np.uint64)
    with pytest.raises(SongFileError) as caught:
        build(song)
    assert caught.value.reason == "unencodable"
