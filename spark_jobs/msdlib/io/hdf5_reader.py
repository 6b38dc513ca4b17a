"""Read one Million Song Dataset per-song HDF5 file into plain Python structures.

``read_song(source)`` reads every top-level group and returns one dict per group::

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

One pass per file, through h5py's low-level API: every object is opened and described
(dtype, shape) once. The structure is checked on those descriptions before any data is
read: the three groups and their ``songs`` tables, the fields in ``REQUIRED_FIELDS``
with their dtype kinds, ``analysis/segments_timbre`` as a float n x 12 array, no dataset
larger than ``MAX_DATASET_BYTES``. Then each dataset is read once into an array
allocated from its description. A damaged file is rejected with a specific reason
rather than a KeyError later: anything that is not a readable MSD song raises
:class:`SongFileError` whose ``reason`` is a short machine-friendly code (see
``REASONS``). File bytes are opened as an in-memory file image (HDF5's core driver),
not through a Python file object.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import math
import os
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

import h5py
import numpy as np
from h5py import h5f, h5o, h5p, h5s, h5t

from msdlib.core.song_errors import REASONS, SongFileError

SongSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

MSD_GROUPS = ("metadata", "analysis", "musicbrainz")
SONGS_TABLE = "songs"
TIMBRE_GROUP, TIMBRE_NAME = "analysis", "segments_timbre"
TIMBRE_PATH = TIMBRE_GROUP + "/" + TIMBRE_NAME
TIMBRE_DIMS = 12
# (group, field of its songs table) → accepted numpy dtype kinds.
REQUIRED_FIELDS = {
    ("analysis", "track_id"): "SU",
    ("metadata", "artist_id"): "SU",
    ("musicbrainz", "year"): "iu",
}
# A song's largest dataset is a few hundred kB; a header claiming more is damaged.
MAX_DATASET_BYTES = 64 * 1024 * 1024
# HDF5 keeps open files by name; an in-memory image needs one, never touched on disk.
IMAGE_NAME = b"msd-song-image"
UNREADABLE_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)
# HDF5 types already translated to numpy, by (class, size): [(type, dtype, memory type)].
KNOWN_TYPES_PER_KEY = 8
KNOWN_TYPE_KEYS = 64
_known_types = {}  # type: Dict[Tuple[int, int], List[Tuple[Any, np.dtype, Any]]]


def describe_type(type_id: Any) -> Tuple[np.dtype, Any]:
    """The numpy dtype of an HDF5 type and the memory type to read it with (``None``:
    h5py's high-level read). Songs share a handful of types, so an equal type seen
    before (H5Tequal) answers from memory; translating a compound type costs more."""
    key = (type_id.get_class(), type_id.get_size())
    known = _known_types.get(key, [])
    for file_type, dtype, memory_type in known:
        if file_type.equal(type_id):
            return dtype, memory_type
    dtype = type_id.dtype
    memory_type = None if dtype.hasobject else h5t.py_create(dtype)
    if len(known) < KNOWN_TYPES_PER_KEY and (known or len(_known_types) < KNOWN_TYPE_KEYS):
        _known_types[key] = known + [(type_id.copy(), dtype, memory_type)]
    return dtype, memory_type


class DatasetInfo:
    """One open dataset and its description, taken once: ``dtype``, the memory type to
    read it with, and ``shape`` (``None`` for an HDF5 null dataspace)."""
    __slots__ = ("path", "id", "dtype", "memory_type", "shape")

    def __init__(self, path: str, dataset_id: Any) -> None:
        self.path = path
        self.id = dataset_id
        self.dtype, self.memory_type = describe_type(dataset_id.get_type())
        space = dataset_id.get_space()
        self.shape = (None if space.get_simple_extent_type() == h5s.NULL
                      else space.shape)  # type: Optional[Tuple[int, ...]]

    @property
    def claimed_bytes(self) -> int:
        return int(np.prod(self.shape or (), dtype=np.float64)) * self.dtype.itemsize


# A group as described: member name → DatasetInfo, or a nested group's members.
Members = Dict[str, Any]


def read_song(source: SongSource) -> Dict[str, Dict[str, Any]]:
    """Parse an MSD song file given as a path, its bytes, or a binary file object
    (read from its current position to the end)."""
    file_id = _open(source)
    try:
        return _read_file(file_id)
    except SongFileError:
        raise
    except UNREADABLE_ERRORS as exc:
        raise SongFileError("unreadable", "{}: {}".format(type(exc).__name__, exc)) from exc
    finally:
        file_id.close()


def _open(source: SongSource) -> Any:
    """The low-level FileID of ``source``, closing its objects with it."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5f.CLOSE_STRONG)
    if isinstance(source, (str, os.PathLike)):
        name = os.fsencode(source)
        try:
            size = os.path.getsize(name)
        except OSError as exc:
            raise SongFileError("unreadable", str(exc)) from exc
    else:
        image = source if isinstance(source, (bytes, bytearray, memoryview)) else source.read()
        size = len(image)
        if size:
            fapl.set_fapl_core(backing_store=False)
            fapl.set_file_image(image)
        name = IMAGE_NAME
    if size == 0:
        raise SongFileError("empty_file", REASONS["empty_file"])
    try:
        return h5f.open(name, h5f.ACC_RDONLY, fapl=fapl)
    except OSError as exc:
        raise _open_error(exc) from exc


def _open_error(exc: OSError) -> SongFileError:
    text = str(exc)
    if "signature not found" in text:
        return SongFileError("not_hdf5", text)
    if "truncated file" in text:
        return SongFileError("truncated", text)
    return SongFileError("unreadable", text)


def _read_file(file_id: Any) -> Dict[str, Dict[str, Any]]:
    root = describe_group(h5o.open(file_id, b"/"), "")
    check_structure(root)
    song = {name: read_group(members) for name, members in root.items()
            if isinstance(members, dict)}
    if not song["analysis"]["songs"].get("track_id"):
        raise SongFileError("missing_track_id", REASONS["missing_track_id"])
    return song


def describe_group(group_id: Any, path: str) -> Members:
    """Open every member of a group once (nested groups too) and describe its datasets;
    reads no data. A named datatype or any other object is unreadable."""
    members = {}  # type: Members
    for raw_name in group_id:
        name = raw_name.decode("utf-8", errors="replace")
        member_path = path + "/" + name
        node = h5o.open(group_id, raw_name)
        if isinstance(node, h5py.h5g.GroupID):
            members[name] = describe_group(node, member_path)
        elif isinstance(node, h5py.h5d.DatasetID):
            members[name] = DatasetInfo(member_path, node)
        else:
            raise SongFileError("unreadable", "{} is not a group or dataset".format(
                member_path))
    return members


def check_structure(root: Members) -> None:
    """Raise SongFileError unless the described file has the MSD structure the pipeline
    reads; in this order: groups and their songs tables, required fields, timbre, sizes."""
    for name in MSD_GROUPS:
        group = root.get(name)
        if not isinstance(group, dict):
            raise SongFileError("missing_group", "no /{} group".format(name))
        table = group.get(SONGS_TABLE)
        if not isinstance(table, DatasetInfo) or table.dtype.names is None:
            raise SongFileError("missing_songs_table", "no compound /{}/songs".format(name))
        if table.shape is None or len(table.shape) != 1:
            raise SongFileError("bad_shape", "/{}/songs has shape {}".format(name, table.shape))
        if table.shape[0] == 0:
            raise SongFileError("empty_songs_table", "/{}/songs has no row".format(name))
    for (group, name), kinds in REQUIRED_FIELDS.items():
        check_field(group, root[group][SONGS_TABLE].dtype, name, kinds)
    timbre = root[TIMBRE_GROUP].get(TIMBRE_NAME)
    if not isinstance(timbre, DatasetInfo):
        raise SongFileError("missing_dataset", "no /{} dataset".format(TIMBRE_PATH))
    check_array(TIMBRE_PATH, timbre.dtype, timbre.shape, "f")
    for dataset in datasets_of(root):
        check_size(dataset)


def check_field(group: str, table_dtype: np.dtype, name: str, kinds: str) -> None:
    """A required field of a compound ``songs`` table exists and has a dtype of ``kinds``."""
    if name not in (table_dtype.names or ()):
        raise SongFileError("missing_field", "/{}/songs has no {} field".format(group, name))
    kind = table_dtype.fields[name][0].kind
    if kind not in kinds:
        raise SongFileError("bad_dtype", "/{}/songs.{} has dtype kind {!r}".format(
            group, name, kind))


def check_array(path: str, dtype: np.dtype, shape: Optional[Tuple[int, ...]],
                kinds: str) -> None:
    """``segments_timbre``-style arrays: dtype of ``kinds`` and shape n x 12."""
    if dtype.kind not in kinds:
        raise SongFileError("bad_dtype", "/{} has dtype {}".format(path, dtype))
    if shape is None or len(shape) != 2 or shape[1] != TIMBRE_DIMS:
        raise SongFileError("bad_shape", "/{} has shape {}, expected n x {}".format(
            path, shape, TIMBRE_DIMS))


def check_size(dataset: DatasetInfo) -> None:
    """A dataset's header may not claim more than ``MAX_DATASET_BYTES``."""
    if dataset.claimed_bytes > MAX_DATASET_BYTES:
        raise SongFileError("bad_shape", "{} claims shape {} of {}".format(
            dataset.path, dataset.shape, dataset.dtype))


def datasets_of(members: Members) -> Iterator[DatasetInfo]:
    for member in members.values():
        if isinstance(member, dict):
            yield from datasets_of(member)
        else:
            yield member


def read_group(members: Members) -> Dict[str, Any]:
    return {name: read_group(member) if isinstance(member, dict) else read_dataset(member)
            for name, member in members.items()}


def read_dataset(dataset: DatasetInfo) -> Any:
    """The dataset's values, read once into an array allocated from its description
    (variable-length and null-dataspace datasets through h5py's high-level read)."""
    if dataset.memory_type is None or dataset.shape is None:
        data = np.asarray(h5py.Dataset(dataset.id)[()], dtype=dataset.dtype)
    else:
        data = np.empty(dataset.shape, dtype=dataset.dtype)
        if data.size:
            dataset.id.read(h5s.ALL, h5s.ALL, data, mtype=dataset.memory_type)
    if dataset.dtype.names is not None:
        return _row_to_dict(data[0] if data.ndim else data[()])
    if dataset.dtype.kind == "S":
        return _plain_value(data.tolist()) if data.ndim == 0 else _decoded(data.tolist())
    return data


def _decoded(items: List[bytes]) -> List[str]:
    return [item.decode("utf-8", errors="replace") for item in items]


def _row_to_dict(row: np.void) -> Dict[str, Any]:
    return {name: _plain_value(value) for name, value in zip(row.dtype.names, row.tolist())}


def _plain_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
