"""Prediction inputs → the columns the models read, with one clear error per bad song.

A song given as JSON::

    {"track_id": "TR...",            # optional, echoed back
     "timbre": [90 numbers],         # the UCI features (msdlib.core.features order)
     "loudness": -7.5, "tempo": 121.0}   # the analysis.songs fields the model uses

or as an uploaded MSD ``.h5`` file, read with msdlib's HDF5 reader and feature
extractor exactly as the ingest job does. The models' columns are the 90 timbre
features by name and ``song_<field>`` for each song field (msdlib.io.dataset).
"""
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from msdlib.core.features import FEATURE_COUNT, FEATURE_NAMES, timbre_features
from msdlib.core.song_errors import SongFileError
from msdlib.io.dataset import SONG_FEATURE_PREFIX
from msdlib.io.hdf5_reader import read_song

TIMBRE_KEY = "timbre"
ID_KEY = "track_id"


class InputError(ValueError):
    """A request the models cannot score; the message says which song and why."""


class ModelInputs:
    """What a model version reads: timbre columns and song fields, in model order."""

    def __init__(self, columns: Sequence[str], known_fields: Sequence[str] = ()) -> None:
        names = set(FEATURE_NAMES)
        unknown = [c for c in columns
                   if c not in names and not c.startswith(SONG_FEATURE_PREFIX)]
        if unknown:
            raise ValueError("the model reads columns no request provides: {}".format(
                ", ".join(unknown)))
        self.columns = list(columns)
        self.song_fields = [c[len(SONG_FEATURE_PREFIX):] for c in columns
                            if c.startswith(SONG_FEATURE_PREFIX)]
        # Fields of the training's song_features the model dropped (constant): accepted.
        self.accepted = {TIMBRE_KEY, ID_KEY} | set(self.song_fields) | set(known_fields)

    def describe(self) -> Dict[str, Any]:
        return {TIMBRE_KEY: FEATURE_COUNT, "song_fields": self.song_fields,
                "columns": self.columns}

    def frame(self, timbre: np.ndarray, fields: Mapping[str, np.ndarray]
              ) -> Dict[str, np.ndarray]:
        """The columns of ``timbre`` (songs x 90) and the song fields, by model name."""
        frame = {name: timbre[:, index] for index, name in enumerate(FEATURE_NAMES)}
        for field in self.song_fields:
            frame[SONG_FEATURE_PREFIX + field] = fields[field]
        return frame

    def from_json(self, songs: Any, max_songs: int
                  ) -> Tuple[List[Optional[str]], np.ndarray, Dict[str, np.ndarray]]:
        """(track ids, timbre matrix, song field arrays) of a JSON list of songs."""
        if not isinstance(songs, list):
            raise InputError("'songs' must be a list of song objects")
        if not songs:
            raise InputError("'songs' is empty: send at least one song")
        if len(songs) > max_songs:
            raise InputError("{} songs in one request; the limit is {}".format(
                len(songs), max_songs))
        ids, rows = [], []
        fields = {name: [] for name in self.song_fields}  # type: Dict[str, List[float]]
        for index, song in enumerate(songs):
            track_id, timbre, values = self._song(index, song)
            ids.append(track_id)
            rows.append(timbre)
            for name in self.song_fields:
                fields[name].append(values[name])
        return ids, np.array(rows, dtype=np.float64), \
            {name: np.array(values, dtype=np.float64) for name, values in fields.items()}

    def _song(self, index: int, song: Any) -> Tuple[Optional[str], List[float], Dict[str, float]]:
        where = "song {}".format(index)
        if not isinstance(song, dict):
            raise InputError("{}: expected an object with 'timbre' and {}".format(
                where, ", ".join(repr(f) for f in self.song_fields) or "no other field"))
        unknown = sorted(set(song) - self.accepted)
        if unknown:
            raise InputError("{}: unknown field(s) {} (accepted: {})".format(
                where, ", ".join(repr(k) for k in unknown), ", ".join(sorted(self.accepted))))
        track_id = song.get(ID_KEY)
        if track_id is not None and not isinstance(track_id, str):
            raise InputError("{}: 'track_id' must be a string".format(where))
        timbre = song.get(TIMBRE_KEY)
        if not isinstance(timbre, list):
            raise InputError("{}: 'timbre' must be a list of {} numbers".format(
                where, FEATURE_COUNT))
        if len(timbre) != FEATURE_COUNT:
            raise InputError("{}: 'timbre' has {} values, expected {} (the UCI timbre "
                             "features)".format(where, len(timbre), FEATURE_COUNT))
        if not all(type(value) is int or (type(value) is float and value - value == 0.0)
                   for value in timbre):  # not only plain finite numbers (inf - inf: nan)
            for position, value in enumerate(timbre):  # the first bad value, named
                _check_number("{}: timbre[{}]".format(where, position), value)
        values = {}
        for name in self.song_fields:
            if name not in song:
                raise InputError("{}: missing field {!r} (the served model reads {})".format(
                    where, name, ", ".join(self.song_fields)))
            values[name] = _check_number("{}: {!r}".format(where, name), song[name])
        return track_id, timbre, values

    def from_h5(self, name: str, content: bytes) -> Tuple[str, np.ndarray, Dict[str, float]]:
        """(track id, 90 features, song fields) of one uploaded MSD song file."""
        try:
            song = read_song(content)
            timbre = timbre_features(song["analysis"]["segments_timbre"])
        except SongFileError as exc:
            raise InputError("{}: not a usable MSD song file ({})".format(name, exc)) from exc
        table = song["analysis"]["songs"]
        values = {}
        for field in self.song_fields:
            value = table.get(field)
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise InputError("{}: analysis/songs.{} is missing or not a finite number"
                                 .format(name, field))
            values[field] = float(value)
        return table["track_id"], timbre, values


def _check_number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError("{} is {}, not a number".format(where, json_type(value)))
    if not math.isfinite(value):
        raise InputError("{} is {}: values must be finite".format(where, value))
    return float(value)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean"}.get(
        type(value), type(value).__name__)
