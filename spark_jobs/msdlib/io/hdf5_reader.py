"""Read one Million Song Dataset per-song HDF5 file into plain Python structures.

``read_song(source)`` walks the whole file and returns one dict per top-level group::

    {"metadata": {...}, "analysis": {...}, "musicbrainz": {...}}

Inside a group:

* the compound table ``songs`` (one row) becomes a dict of plain Python values:
  fixed-width bytes are decoded to ``str`` (UTF-8, undecodable bytes replaced),
  numpy integers become ``int`` and numpy floats ``float``;
* **NaN rule**: a non-finite float in a compound table (NaN ``song_hotttnesss``,
  ``artist_latitude``, ...) becomes ``None``, so the row is valid JSON and stores as
  BSON null;
* numeric datasets (``segments_timbre``, ``bars_start``, ...) stay numpy arrays, exactly
  as stored (float64 / int32; NaN inside arrays is left to the document encoder);
* fixed-width byte-string datasets (``artist_terms``, ``similar_artists``,
  ``artist_mbtags``) become lists of ``str``;
* a nested group, should a file have one, becomes a nested dict.

Before reading, ``check_structure`` validates what the pipeline relies on (the three
groups and their ``songs`` tables, the fields in ``REQUIRED_FIELDS`` with their dtype
kinds, ``analysis/segments_timbre`` as a float n x 12 array, no dataset larger than
``MAX_DATASET_BYTES``), so a damaged file is rejected with a specific reason rather
than a KeyError later. Anything that is not a readable MSD song raises
:class:`SongFileError` whose ``reason`` is a short machine-friendly code (see
``REASONS``).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import io
import math
import os
from typing import Any, BinaryIO, Dict, Tuple, Union

import h5py
import numpy as np

from msdlib.core.song_errors import REASONS, SongFileError

SongSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

MSD_GROUPS = ("metadata", "analysis", "musicbrainz")
SONGS_TABLE = "songs"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
TIMBRE_PATH = "analysis/segments_timbre"
TIMBRE_DIMS = 12
# (group, field of its songs table) → accepted numpy dtype kinds.
REQUIRED_FIELDS = {
    ("analysis", "track_id"): "SU",
    ("metadata", "artist_id"): "SU",
    ("musicbrainz", "year"): "iu",
}
# A song's largest dataset is a few hundred kB; a header claiming more is damaged.
MAX_DATASET_BYTES = 64 * 1024 * 1024

def read_song(source: SongSource) -> Dict[str, Dict[str, Any]]:
    """Parse an MSD song file given as a path, its bytes, or a seekable binary file object."""
    handle = _open_input(source)
    try:
        h5 = h5py.File(handle, "r")
    except OSError as exc:
        raise _open_error(exc) from exc
    try:
        with h5:
            return _read_groups(h5)
    except SongFileError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise SongFileError("unreadable", "{}: {}".format(type(exc).__name__, exc)) from exc


def _open_input(source: SongSource) -> Union[str, BinaryIO]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise SongFileError("empty_file", REASONS["empty_file"])
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise SongFileError("unreadable", str(exc)) from exc
        if size == 0:
            raise SongFileError("empty_file", REASONS["empty_file"])
        return path
    position = source.tell()
    is_empty = not source.read(1)
    source.seek(position)
    if is_empty:
        raise SongFileError("empty_file", REASONS["empty_file"])
    return source


def _open_error(exc: OSError) -> SongFileError:
    text = str(exc)
    if "signature not found" in text:
        return SongFileError("not_hdf5", text)
    if "truncated file" in text:
        return SongFileError("truncated", text)
    return SongFileError("unreadable", text)


def _read_groups(h5: h5py.File) -> Dict[str, Dict[str, Any]]:
    check_structure(h5)
    song = {name: _read_group(node) for name, node in h5.items() if isinstance(node, h5py.Group)}
    if not song["analysis"]["songs"].get("track_id"):
        raise SongFileError("missing_track_id", REASONS["missing_track_id"])
    return song


def check_structure(h5: h5py.Group) -> None:
    """Raise SongFileError unless ``h5`` has the MSD structure the pipeline reads."""
    for name in MSD_GROUPS:
        node = h5.get(name)
        if not isinstance(node, h5py.Group):
            raise SongFileError("missing_group", "no /{} group".format(name))
        table = node.get(SONGS_TABLE)
        if not isinstance(table, h5py.Dataset) or table.dtype.names is None:
            raise SongFileError("missing_songs_table", "no compound /{}/songs".format(name))
        if table.ndim != 1:
            raise SongFileError("bad_shape", "/{}/songs has shape {}".format(name, table.shape))
        if table.shape[0] == 0:
            raise SongFileError("empty_songs_table", "/{}/songs has no row".format(name))
    for (group, name), kinds in REQUIRED_FIELDS.items():
        check_field(group, h5[group][SONGS_TABLE].dtype, name, kinds)
    timbre = h5.get(TIMBRE_PATH)
    if not isinstance(timbre, h5py.Dataset):
        raise SongFileError("missing_dataset", "no /{} dataset".format(TIMBRE_PATH))
    check_array(TIMBRE_PATH, timbre.dtype, timbre.shape, "f")
    h5.visititems(_check_size)


def check_field(group: str, table_dtype: np.dtype, name: str, kinds: str) -> None:
    """A required field of a compound ``songs`` table exists and has a dtype of ``kinds``."""
    if name not in (table_dtype.names or ()):
        raise SongFileError("missing_field", "/{}/songs has no {} field".format(group, name))
    kind = table_dtype.fields[name][0].kind
    if kind not in kinds:
        raise SongFileError("bad_dtype", "/{}/songs.{} has dtype kind {!r}".format(
            group, name, kind))


def check_array(path: str, dtype: np.dtype, shape: Tuple[int, ...], kinds: str) -> None:
    """``segments_timbre``-style arrays: dtype of ``kinds`` and shape n x 12."""
    if dtype.kind not in kinds:
        raise SongFileError("bad_dtype", "/{} has dtype {}".format(path, dtype))
    if len(shape) != 2 or shape[1] != TIMBRE_DIMS:
        raise SongFileError("bad_shape", "/{} has shape {}, expected n x {}".format(
            path, shape, TIMBRE_DIMS))


def _check_size(name: str, node: Any) -> None:
    if isinstance(node, h5py.Dataset) and node.size * node.dtype.itemsize > MAX_DATASET_BYTES:
        raise SongFileError("bad_shape", "/{} claims shape {} of {}".format(
            name, node.shape, node.dtype))


def _read_group(group: h5py.Group) -> Dict[str, Any]:
    values = {}  # type: Dict[str, Any]
    for name, node in group.items():
        if isinstance(node, h5py.Group):
            values[name] = _read_group(node)
        else:
            values[name] = _read_dataset(node)
    return values


def _read_dataset(dataset: h5py.Dataset) -> Any:
    dtype = dataset.dtype
    data = np.asarray(dataset[()], dtype=dtype)
    if dtype.names is not None:
        return _row_to_dict(data[0] if data.ndim else data[()])
    if dtype.kind == "S":
        return _plain_value(data.tolist()) if data.ndim == 0 else [
            item.decode("utf-8", errors="replace") for item in data.tolist()]
    return data


def _row_to_dict(row: np.void) -> Dict[str, Any]:
    return {name: _plain_value(value) for name, value in zip(row.dtype.names, row.tolist())}


def _plain_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
