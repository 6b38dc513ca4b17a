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

Anything that is not a readable MSD song raises :class:`SongFileError` whose
``reason`` is a short machine-friendly code (see ``REASONS``).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import io
import math
import os
from typing import Any, BinaryIO, Dict, Union

import h5py
import numpy as np

from msdlib.core.song_errors import REASONS, SongFileError

SongSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

MSD_GROUPS = ("metadata", "analysis", "musicbrainz")
SONGS_TABLE = "songs"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

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
    for name in MSD_GROUPS:
        node = h5.get(name)
        if not isinstance(node, h5py.Group):
            raise SongFileError("missing_group", "no /{} group".format(name))
        table = node.get(SONGS_TABLE)
        if not isinstance(table, h5py.Dataset) or table.dtype.names is None:
            raise SongFileError("missing_songs_table", "no compound /{}/songs".format(name))
        if table.shape[0] == 0:
            raise SongFileError("empty_songs_table", "/{}/songs has no row".format(name))
    song = {name: _read_group(node) for name, node in h5.items() if isinstance(node, h5py.Group)}
    if not song["analysis"]["songs"].get("track_id"):
        raise SongFileError("missing_track_id", REASONS["missing_track_id"])
    return song


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
