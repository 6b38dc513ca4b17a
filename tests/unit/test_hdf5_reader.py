"""msdlib.io.hdf5_reader on the real MSD files, on generated files, and on broken input."""
import io
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from msd_pipeline.staging.generator import generate_songs
from msdlib.core.song_errors import SongFileError
from msdlib.io.hdf5_reader import MSD_GROUPS, read_song
from project_paths import REAL_TRACKS, SHARED_MSD

SUMMARY_CSV = SHARED_MSD / "tabular" / "MillionSongSubset_summary_10k.csv"
needs_real_data = pytest.mark.skipif(
    not REAL_TRACKS.is_dir(), reason="real MSD files not found at {}".format(SHARED_MSD))


def real_paths():
    return sorted(REAL_TRACKS.glob("*/*/*/*.h5"))


@pytest.fixture(scope="module")
def generated_song(tmp_path_factory):
    return Path(generate_songs(str(tmp_path_factory.mktemp("songs")), 1, seed=11)[0])


@needs_real_data
def test_every_real_file_parses_and_matches_the_summary_table():
    summary = pd.read_csv(SUMMARY_CSV, usecols=["track_id", "title", "year", "artist_id"],
                          keep_default_na=False, na_filter=False).set_index("track_id")
    paths = real_paths()
    assert len(paths) == 456
    unmatched = []
    for path in paths:
        song = read_song(str(path))
        track_id = song["analysis"]["songs"]["track_id"]
        assert path.stem == track_id
        if track_id not in summary.index:
            unmatched.append(track_id)
            continue
        expected = summary.loc[track_id]
        assert song["musicbrainz"]["songs"]["year"] == int(expected["year"])
        assert song["metadata"]["songs"]["title"] == expected["title"]
        assert song["metadata"]["songs"]["artist_id"] == expected["artist_id"]
    assert len(unmatched) <= 1


@needs_real_data
def test_real_file_structure_becomes_plain_python():
    song = read_song(str(real_paths()[0]))
    assert set(song) == set(MSD_GROUPS)
    for group in song.values():
        assert all(isinstance(value, (int, float, str, type(None)))
                   for value in group["songs"].values())
    analysis = song["analysis"]
    assert analysis["segments_timbre"].dtype == np.float64
    assert analysis["segments_timbre"].shape[1] == 12
    assert {"bars_start", "beats_confidence", "sections_start", "segments_pitches",
            "segments_loudness_max_time", "tatums_confidence"} <= set(analysis)
    assert all(isinstance(term, str) for term in song["metadata"]["artist_terms"])
    assert song["musicbrainz"]["artist_mbtags_count"].dtype == np.int32


@needs_real_data
def test_nan_in_compound_tables_becomes_none():
    nan_hotttnesss = 0
    for path in real_paths()[:80]:
        with h5py.File(path, "r") as h5:
            raw = h5["metadata/songs"][0]["song_hotttnesss"]
        value = read_song(str(path))["metadata"]["songs"]["song_hotttnesss"]
        if np.isnan(raw):
            nan_hotttnesss += 1
            assert value is None
        else:
            assert value == pytest.approx(float(raw))
    assert nan_hotttnesss > 0


def test_path_bytes_and_file_object_give_the_same_song(generated_song):
    data = generated_song.read_bytes()
    from_path = read_song(generated_song)
    for song in (read_song(data), read_song(io.BytesIO(data))):
        assert song["metadata"]["songs"] == from_path["metadata"]["songs"]
        np.testing.assert_array_equal(song["analysis"]["segments_timbre"],
                                      from_path["analysis"]["segments_timbre"])


def assert_rejected(source, reason):
    with pytest.raises(SongFileError) as caught:
        read_song(source)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(reason)


def test_zero_byte_file_is_rejected(tmp_path):
    empty = tmp_path / "TREMPTY.h5"
    empty.write_bytes(b"")
    assert_rejected(str(empty), "empty_file")
    assert_rejected(b"", "empty_file")
    assert_rejected(io.BytesIO(b""), "empty_file")


def test_truncated_copy_is_rejected(tmp_path, generated_song):
    data = generated_song.read_bytes()
    truncated = tmp_path / "TRHALF.h5"
    truncated.write_bytes(data[:len(data) // 2])
    assert_rejected(str(truncated), "truncated")
    assert_rejected(data[:len(data) // 2], "truncated")


def test_text_file_is_not_hdf5(tmp_path):
    text = tmp_path / "TRTEXT.h5"
    text.write_text("track_id,title\nTR1,not a song\n")
    assert_rejected(str(text), "not_hdf5")


def test_missing_path_is_unreadable(tmp_path):
    assert_rejected(str(tmp_path / "absent.h5"), "unreadable")


def copy_and_edit(source, target, edit):
    shutil.copy(source, target)
    with h5py.File(target, "r+") as h5:
        edit(h5)
    return str(target)


def test_hdf5_without_an_msd_group_is_rejected(tmp_path, generated_song):
    def drop_musicbrainz(h5):
        del h5["musicbrainz"]
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", drop_musicbrainz),
                    "missing_group")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["values"] = np.arange(3)
    assert_rejected(str(other), "missing_group")


def test_hdf5_without_songs_table_is_rejected(tmp_path, generated_song):
    def drop_table(h5):
        del h5["analysis/songs"]
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", drop_table),
                    "missing_songs_table")

    def empty_table(h5):
        dtype = h5["metadata/songs"].dtype
        del h5["metadata/songs"]
        h5["metadata"].create_dataset("songs", shape=(0,), dtype=dtype)
    assert_rejected(copy_and_edit(generated_song, tmp_path / "b.h5", empty_table),
                    "empty_songs_table")


def test_blank_track_id_is_rejected(tmp_path, generated_song):
    def blank_track_id(h5):
        row = h5["analysis/songs"][0]
        row["track_id"] = b""
        h5["analysis/songs"][0] = row
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", blank_track_id),
                    "missing_track_id")


def test_fixed_width_strings_decode_as_utf8_with_replacement(tmp_path, generated_song):
    def set_names(h5):
        row = h5["metadata/songs"][0]
        row["title"] = "Café über".encode("utf-8")
        row["release"] = b"bad \xff byte"
        h5["metadata/songs"][0] = row
    song = read_song(copy_and_edit(generated_song, tmp_path / "a.h5", set_names))
    assert song["metadata"]["songs"]["title"] == "Café über"
    assert song["metadata"]["songs"]["release"] == "bad \ufffd byte"


def replace_dataset(name, data):
    def edit(h5):
        del h5[name]
        h5.create_dataset(name, data=data)
    return edit


def timbre_of(path):
    with h5py.File(path, "r") as h5:
        return h5["analysis/segments_timbre"][()]


def test_missing_segments_timbre_is_a_missing_dataset(tmp_path, generated_song):
    def drop_timbre(h5):
        del h5["analysis/segments_timbre"]
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", drop_timbre),
                    "missing_dataset")


@pytest.mark.parametrize("reshape", [np.ravel, np.transpose, lambda t: t[:, :5],
                                     lambda t: t[..., np.newaxis]])
def test_timbre_of_the_wrong_shape_is_rejected(tmp_path, generated_song, reshape):
    timbre = reshape(timbre_of(generated_song))
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5",
                                  replace_dataset("analysis/segments_timbre", timbre)),
                    "bad_shape")


@pytest.mark.parametrize("dtype", ["S8", np.int32])
def test_timbre_of_the_wrong_dtype_is_rejected(tmp_path, generated_song, dtype):
    timbre = timbre_of(generated_song).astype(dtype)
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5",
                                  replace_dataset("analysis/segments_timbre", timbre)),
                    "bad_dtype")


def with_songs_field(group, name, dtype):
    """An edit that re-types (dtype) or drops (dtype None) one field of a songs table."""
    def edit(h5):
        table = h5[group + "/songs"][()]
        fields = [(field, dtype if field == name else table.dtype.fields[field][0])
                  for field in table.dtype.names if field != name or dtype is not None]
        new_table = np.zeros(table.shape, dtype=fields)
        for field in new_table.dtype.names:
            new_table[field] = table[field]
        replace_dataset(group + "/songs", new_table)(h5)
    return edit


def test_a_float_year_field_is_a_bad_dtype(tmp_path, generated_song):
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5",
                                  with_songs_field("musicbrainz", "year", "<f8")), "bad_dtype")


def test_a_songs_table_without_a_required_field_is_rejected(tmp_path, generated_song):
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5",
                                  with_songs_field("metadata", "artist_id", None)),
                    "missing_field")


def test_a_dataset_claiming_an_impossible_size_is_rejected(tmp_path, generated_song):
    def huge(h5):  # late allocation: the file stays small, the header claims 800 MB
        h5["analysis"].create_dataset("bars_huge", shape=(10 ** 8,), dtype="<f8")
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", huge), "bad_shape")


def test_an_extra_or_missing_optional_dataset_is_fine(tmp_path, generated_song):
    def edit(h5):
        del h5["analysis/bars_start"]
        h5["analysis"].create_dataset("extra", data=np.arange(4))
    song = read_song(copy_and_edit(generated_song, tmp_path / "a.h5", edit))
    assert "bars_start" not in song["analysis"] and list(song["analysis"]["extra"]) == [0, 1, 2, 3]


@pytest.mark.parametrize("where", ["analysis/nested", "/"])
def test_a_dataset_claiming_an_impossible_size_anywhere_is_rejected(tmp_path, generated_song,
                                                                     where):
    def huge(h5):
        h5.require_group(where).create_dataset("claims_800mb", shape=(10 ** 8,), dtype="<f8")
    path = copy_and_edit(generated_song, tmp_path / "a.h5", huge)
    assert_rejected(path, "bad_shape")
    assert_rejected(Path(path).read_bytes(), "bad_shape")


def test_a_two_dimensional_songs_table_is_a_bad_shape(tmp_path, generated_song):
    def reshape(h5):
        replace_dataset("musicbrainz/songs", h5["musicbrainz/songs"][()].reshape(1, 1))(h5)
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", reshape), "bad_shape")


def test_a_dangling_link_is_unreadable(tmp_path, generated_song):
    def dangle(h5):
        h5["metadata"]["dangling"] = h5py.SoftLink("/nowhere")
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5", dangle), "unreadable")


def test_a_corrupt_compressed_chunk_is_unreadable(tmp_path, generated_song):
    with h5py.File(generated_song, "r") as h5:
        chunk = h5["analysis/segments_timbre"].id.get_chunk_info(0)
    data = bytearray(generated_song.read_bytes())
    data[chunk.byte_offset:chunk.byte_offset + chunk.size] = b"\xa5" * chunk.size
    assert_rejected(bytes(data), "unreadable")


def test_uncommon_datasets_read_as_h5py_reads_them(tmp_path, generated_song):
    def add(h5):
        group = h5.create_group("extra")
        group["names"] = np.array(["a", "bé"], dtype=h5py.string_dtype())
        group["scalar"] = 3.5
        group["none"] = np.zeros((0, 3))
        group["big_endian"] = np.arange(3, dtype=">f8")
        group["nested/values"] = np.arange(4, dtype=np.int16)
    path = copy_and_edit(generated_song, tmp_path / "a.h5", add)
    for extra in (read_song(path)["extra"], read_song(Path(path).read_bytes())["extra"]):
        assert list(extra["names"]) == [b"a", "bé".encode("utf-8")]
        assert extra["scalar"] == 3.5 and extra["none"].shape == (0, 3)
        assert extra["big_endian"].dtype == np.dtype(">f8")
        np.testing.assert_array_equal(extra["big_endian"], [0.0, 1.0, 2.0])
        np.testing.assert_array_equal(extra["nested"]["values"], np.arange(4))


def test_a_retyped_table_is_read_with_its_own_type(tmp_path, generated_song):
    """Songs share types and the reader remembers them: a table whose type has the
    size of the one seen before (year float32 or uint32 instead of int32) must not be
    read with the remembered type."""
    year = read_song(generated_song)["musicbrainz"]["songs"]["year"]
    assert_rejected(copy_and_edit(generated_song, tmp_path / "a.h5",
                                  with_songs_field("musicbrainz", "year", "<f4")), "bad_dtype")
    song = read_song(copy_and_edit(generated_song, tmp_path / "b.h5",
                                   with_songs_field("musicbrainz", "year", "<u4")))
    assert song["musicbrainz"]["songs"]["year"] == year
