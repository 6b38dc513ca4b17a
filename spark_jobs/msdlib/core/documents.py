"""Turn a song read by ``msdlib.io.hdf5_reader.read_song`` into a MongoDB document.

The document keeps the tutorial's nested layout (``metadata.songs.title``,
``analysis.segments_timbre``, ``musicbrainz.songs.year``, ...) and adds ``features``
(the 90 UCI timbre features and the labels training needs) and ``source`` (where the
document came from). See docs/ARCHITECTURE.md for the schema.

Arrays are encoded one of two ways, and ``decode_array`` reads both:

* ``"list"`` (default): nested lists of numbers; NaN/inf become ``None``;
* ``"float32"``: float arrays become ``{"dtype": "<f4", "shape": [...], "data":
  Binary}`` (little-endian float32, NaN kept); integer and string arrays stay lists.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import datetime
from typing import Any, Dict, Optional, Tuple

import bson
import numpy as np
from bson.binary import Binary
from bson.errors import InvalidDocument

from msdlib.config import ARRAY_ENCODINGS
from msdlib.core.features import (DEFAULT_YEAR_RANGE, classify_year, decade_of,
                                  partition_of, timbre_features)
from msdlib.core.song_errors import SongFileError

BINARY_DTYPE = "<f4"


def build_document(song: Dict[str, Dict[str, Any]], *, path: str, sha256: str, size: int,
                   run_id: str, ingested_at: datetime.datetime, encoding: str = "list",
                   partition_buckets: int = 64,
                   year_range: Tuple[int, int] = DEFAULT_YEAR_RANGE) -> Dict[str, Any]:
    """Build the ``songs`` document of one song; raises SongFileError for bad timbre.

    ``features.year`` is the year only when plausible (``classify_year``): a year of 0,
    -5 or 3000 is unknown there, with ``features.year_status`` saying why, while
    ``musicbrainz.songs.year`` keeps the value the file holds. A value BSON cannot
    store (an integer beyond 64 bits) raises SongFileError ``unencodable`` here, so it
    fails this file and not its whole batch write.
    """
    if encoding not in ARRAY_ENCODINGS:
        raise ValueError("unknown array encoding {!r}; expected one of {}".format(
            encoding, ", ".join(ARRAY_ENCODINGS)))
    track_id = song["analysis"]["songs"]["track_id"]
    timbre = timbre_features(song["analysis"]["segments_timbre"])
    year, year_status = classify_year(song["musicbrainz"]["songs"].get("year"), year_range)
    document = {"_id": track_id}  # type: Dict[str, Any]
    for group_name, group in song.items():
        document[group_name] = _encode_group(group, encoding)
    document["features"] = {
        "timbre": timbre.tolist(),
        "year": year,
        "year_status": year_status,
        "decade": decade_of(year),
        "artist_id": song["metadata"]["songs"].get("artist_id"),
        "partition": partition_of(track_id, partition_buckets),
    }
    document["source"] = {
        "path": path,
        "paths": [path],
        "sha256": sha256,
        "size": size,
        "ingested_at": ingested_at,
        "run_id": run_id,
        "encoding": encoding,
    }
    check_encodable(document)
    return document


def check_encodable(document: Dict[str, Any]) -> None:
    """Raise SongFileError("unencodable") unless BSON can store ``document``."""
    try:
        bson.encode(document)
    except (InvalidDocument, OverflowError) as exc:
        raise SongFileError("unencodable", "{}: {}".format(type(exc).__name__, exc)) from exc


def _encode_group(group: Dict[str, Any], encoding: str) -> Dict[str, Any]:
    encoded = {}  # type: Dict[str, Any]
    for name, value in group.items():
        if isinstance(value, np.ndarray):
            encoded[name] = encode_array(value, encoding)
        elif isinstance(value, dict):
            encoded[name] = _encode_group(value, encoding)
        else:
            encoded[name] = value
    return encoded


def encode_array(array: np.ndarray, encoding: str = "list") -> Any:
    """Encode a numeric array as nested lists (NaN -> None) or float32 binary."""
    if encoding == "float32" and array.dtype.kind == "f":
        return {
            "dtype": BINARY_DTYPE,
            "shape": list(array.shape),
            "data": Binary(np.ascontiguousarray(array, dtype=BINARY_DTYPE).tobytes()),
        }
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            with_none = array.astype(object)
            with_none[~finite] = None
            return with_none.tolist()
    return array.tolist()


def decode_array(value: Any, dtype: Optional[Any] = np.float64) -> np.ndarray:
    """Decode either encoding back to an array (None in lists -> NaN for float dtypes)."""
    if isinstance(value, dict):
        raw = np.frombuffer(bytes(value["data"]), dtype=value["dtype"])
        array = raw.reshape(value["shape"])
        return array.astype(dtype) if dtype is not None else array.copy()
    return np.array(value, dtype=dtype)
