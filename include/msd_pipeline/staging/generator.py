"""Generate synthetic songs in the exact Million Song Dataset HDF5 layout.

The files have the real files' groups, datasets, dtypes, compound-table fields,
fixed-width byte strings, gzip+shuffle chunking and PyTables attributes, at
``OUT/X/Y/Z/TRXYZ....h5`` (X, Y, Z = 3rd, 4th, 5th characters of the track id), so
``msdlib.io.hdf5_reader.read_song`` reads them like real songs.

What a model can learn: each song's timbre is drawn from a 12-dimensional Gaussian
whose mean and variances move with the release year (slopes fitted on the UCI
YearPredictionMSD rows, amplified), plus an artist offset and per-song noise. Years
run 1950-2010 with the real subset's skew towards the 2000s; each artist records
around a base year, so songs of one artist are alike (artist-disjoint splits matter).

The real quirks: year 0 (unknown) for a configurable share, NaN ``song_hotttnesss``
for about a third, ``energy`` and ``danceability`` 0 everywhere, segment counts from a
handful to thousands (log-normal, median ~300), empty MusicBrainz tag arrays.

The staging mode ``generated`` takes its songs from ``generated_songs``: one folder per
count and seed, made once and reused.

CLI: ``python -m msd_pipeline.staging.generator --out DIR --count N [--seed S]
[--unknown-year-fraction F] [--artists K] [--workers W]`` prints a JSON summary.
"""
import argparse
import json
import logging
import multiprocessing
import os
import shutil
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".staged"  # in a generated_songs folder once all its songs are written

# ---- the MSD file layout (read off the real files) -------------------------------

FILE_TITLE = "H5 Song File"
PYTABLES_FILTERS = 65793  # gzip level 1 + shuffle, as PyTables encodes it
GROUP_TITLES = {
    "metadata": "metadata about the song",
    "analysis": "Echo Nest analysis of the song",
    "musicbrainz": "data about the song coming from MusicBrainz",
}
SONGS_TABLES = {
    "metadata": ("table of metadata for one song", (3,), [
        ("analyzer_version", "S32"), ("artist_7digitalid", "<i4"),
        ("artist_familiarity", "<f8"), ("artist_hotttnesss", "<f8"), ("artist_id", "S32"),
        ("artist_latitude", "<f8"), ("artist_location", "S1024"),
        ("artist_longitude", "<f8"), ("artist_mbid", "S40"), ("artist_name", "S1024"),
        ("artist_playmeid", "<i4"), ("genre", "S1024"), ("idx_artist_terms", "<i4"),
        ("idx_similar_artists", "<i4"), ("release", "S1024"), ("release_7digitalid", "<i4"),
        ("song_hotttnesss", "<f8"), ("song_id", "S32"), ("title", "S1024"),
        ("track_7digitalid", "<i4")]),
    "analysis": ("table of Echo Nest analysis for one song", (37,), [
        ("analysis_sample_rate", "<i4"), ("audio_md5", "S32"), ("danceability", "<f8"),
        ("duration", "<f8"), ("end_of_fade_in", "<f8"), ("energy", "<f8"),
        ("idx_bars_confidence", "<i4"), ("idx_bars_start", "<i4"),
        ("idx_beats_confidence", "<i4"), ("idx_beats_start", "<i4"),
        ("idx_sections_confidence", "<i4"), ("idx_sections_start", "<i4"),
        ("idx_segments_confidence", "<i4"), ("idx_segments_loudness_max", "<i4"),
        ("idx_segments_loudness_max_time", "<i4"), ("idx_segments_loudness_start", "<i4"),
        ("idx_segments_pitches", "<i4"), ("idx_segments_start", "<i4"),
        ("idx_segments_timbre", "<i4"), ("idx_tatums_confidence", "<i4"),
        ("idx_tatums_start", "<i4"), ("key", "<i4"), ("key_confidence", "<f8"),
        ("loudness", "<f8"), ("mode", "<i4"), ("mode_confidence", "<f8"),
        ("start_of_fade_out", "<f8"), ("tempo", "<f8"), ("time_signature", "<i4"),
        ("time_signature_confidence", "<f8"), ("track_id", "S32")]),
    "musicbrainz": ("table of data coming from MusicBrainz", (1024,), [
        ("idx_artist_mbtags", "<i4"), ("year", "<i4")]),
}
# (group, dataset, dtype, chunk shape, TITLE attribute), in the real files' creation
# order (their EXTDIM attributes count up in this order).
ARRAYS = [
    ("metadata", "similar_artists", "S20", (409,), "array of similar artists Echo Nest id"),
    ("metadata", "artist_terms", "S256", (32,), "array of terms (Echo Nest tags) for an artist"),
    ("metadata", "artist_terms_freq", "<f8", (1024,),
     "array of term (Echo Nest tags) frequencies for an artist"),
    ("metadata", "artist_terms_weight", "<f8", (1024,),
     "array of term (Echo Nest tags) weights for an artist"),
    ("analysis", "segments_start", "<f8", (1024,), "array of start times of segments"),
    ("analysis", "segments_confidence", "<f8", (1024,), "array of confidence of segments"),
    ("analysis", "segments_pitches", "<f8", (85, 12), "array of pitches of segments (chromas)"),
    ("analysis", "segments_timbre", "<f8", (85, 12), "array of timbre of segments (MFCC-like)"),
    ("analysis", "segments_loudness_max", "<f8", (1024,), "array of max loudness of segments"),
    ("analysis", "segments_loudness_max_time", "<f8", (1024,),
     "array of max loudness time of segments"),
    ("analysis", "segments_loudness_start", "<f8", (1024,),
     "array of loudness of segments at start time"),
    ("analysis", "sections_start", "<f8", (1024,), "array of start times of sections"),
    ("analysis", "sections_confidence", "<f8", (1024,), "array of confidence of sections"),
    ("analysis", "beats_start", "<f8", (1024,), "array of start times of beats"),
    ("analysis", "beats_confidence", "<f8", (1024,), "array of confidence of sections"),
    ("analysis", "bars_start", "<f8", (1024,), "array of start times of bars"),
    ("analysis", "bars_confidence", "<f8", (1024,), "array of confidence of bars"),
    ("analysis", "tatums_start", "<f8", (1024,), "array of start times of tatums"),
    ("analysis", "tatums_confidence", "<f8", (1024,), "array of confidence of tatums"),
    ("musicbrainz", "artist_mbtags", "S256", (32,), "array of tags from MusicBrainz for an artist"),
    ("musicbrainz", "artist_mbtags_count", "<i4", (2048,),
     "array of tag counts from MusicBrainz for an artist"),
]
FIRST_EXTDIM = 1830  # the real files' EXTDIM values are consecutive numbers near this

# ---- the timbre model ---------------------------------------------------------------
# Fitted on the UCI YearPredictionMSD rows with t = (year - 1980) / 30: per-dimension
# mean and log-variance intercepts and slopes. Slopes are doubled and noise reduced
# so that a model learns the year from 90 features clearly.
MEAN_AT_1980 = np.array([41.1, -11.9, 20.1, 4.6, -13.9, 0.6, -4.2, -0.6, 3.2, 1.6, -0.9, 1.8])
MEAN_SLOPE = 2.0 * np.array([2.75, 15.7, -18.9, -0.8, 10.2, -12.5, 3.9, -1.7, 0.7, 1.1, 0.9, 0.7])
MEAN_SPREAD = np.array([6.4, 52.0, 38.0, 18.0, 23.0, 15.0, 15.0, 8.6, 10.5, 6.6, 4.9, 8.7])
ARTIST_SHARE, SONG_SHARE = 0.3, 0.4  # parts of MEAN_SPREAD given to artist and song noise
LOG_VAR_AT_1980 = np.array([3.32, 7.56, 7.56, 7.24, 6.63, 6.81, 6.3, 6.07, 5.88, 5.68, 5.67, 5.62])
LOG_VAR_SLOPE = 2.0 * np.array(
    [-0.10, 0.07, -0.14, -0.04, 0.11, -0.14, 0.02, 0.13, -0.01, 0.04, -0.06, -0.05])
LOG_VAR_NOISE = 0.35
LOUDNESS_WAR_PER_DECADE = 3.0  # extra mean of timbre 0 per decade after 1990 (non-linear)
# The strongest average correlations between timbre dimensions in the UCI rows.
TIMBRE_CORRELATIONS = {(0, 1): 0.18, (0, 2): 0.30, (0, 8): 0.11, (1, 6): -0.13,
                       (2, 5): 0.11, (3, 5): -0.17, (3, 6): -0.10, (3, 10): -0.16,
                       (7, 9): -0.13}

# Share of labelled songs per decade in the real 10k subset (1950s ... 2010).
DECADE_WEIGHTS = {1950: 0.014, 1960: 0.025, 1970: 0.038, 1980: 0.10, 1990: 0.235,
                  2000: 0.57, 2010: 0.018}
FIRST_YEAR, LAST_YEAR = 1950, 2010
ARTIST_YEAR_SPREAD = 4.0
MEDIAN_SEGMENTS, SEGMENT_SIGMA, MIN_SEGMENTS, MAX_SEGMENTS = 300, 0.8, 4, 4000
SECONDS_PER_SEGMENT = 0.25
NAN_HOTTTNESSS_SHARE = 0.33
TERMS = ["rock", "pop", "jazz", "blues", "soul", "hip hop", "electronic", "folk", "country",
         "metal", "punk", "reggae", "disco", "funk", "indie", "ambient", "house", "latin"]
WORDS = ["love", "night", "blue", "river", "fire", "dream", "city", "heart", "road", "sun",
         "rain", "gold", "ghost", "dance", "café", "über", "señor", "midnight", "echo", "home"]
LETTERS = np.array(list(string.ascii_uppercase))
HEX_DIGITS = np.array(list("0123456789ABCDEF"))


def generate_songs(out_dir: str, count: int, seed: int = 0,
                   unknown_year_fraction: float = 0.2,
                   artists: Optional[int] = None, workers: int = 1) -> List[str]:
    """Write ``count`` songs under ``out_dir`` and return their paths (same seed, same files).

    ``artists`` is the number of distinct artists (default: one per six songs);
    ``workers`` > 1 writes the songs from that many processes (same files).
    """
    if count < 0 or not 0.0 <= unknown_year_fraction <= 1.0 or workers < 1:
        raise ValueError("count must be >= 0, unknown_year_fraction in [0, 1], workers >= 1")
    if count == 0:
        return []
    artist_count = max(1, min(count, artists if artists else max(1, count // 6)))
    rng = np.random.default_rng(seed)
    roster = [_make_artist(rng, index) for index in range(artist_count)]
    song_artists = _assign_artists(rng, count, artist_count)
    track_ids = _unique_ids(rng, "TR", count)
    song_ids = _unique_ids(rng, "SO", count)
    tasks = [(out_dir, seed, index, roster[song_artists[index]], track_ids[index],
              song_ids[index], unknown_year_fraction) for index in range(count)]
    if workers == 1:
        return [_write_generated_song(task) for task in tasks]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return pool.map(_write_generated_song, tasks, chunksize=64)


def _write_generated_song(task: Tuple[Any, ...]) -> str:
    out_dir, seed, index, artist, track_id, song_id, unknown_year_fraction = task
    song = _make_song(np.random.default_rng([seed, index]), artist, track_id, song_id,
                      unknown_year_fraction)
    path = song_path(out_dir, track_id)
    write_song(path, song)
    return path


def song_path(out_dir: str, track_id: str) -> str:
    """MSD's layout: OUT/X/Y/Z/TRXYZ....h5 with X, Y, Z the 3rd-5th id characters."""
    return os.path.join(out_dir, track_id[2], track_id[3], track_id[4], track_id + ".h5")


def write_song(path: str, song: Dict[str, Any]) -> None:
    """Write one song (``{"tables": {group: row}, "arrays": {(group, name): array}}``)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w", libver="earliest", track_order=False) as h5:
        _set_attrs(h5, CLASS="GROUP", FILTERS=np.int64(PYTABLES_FILTERS),
                   PYTABLES_FORMAT_VERSION="2.0", TITLE=FILE_TITLE, VERSION="1.0")
        for group_name, title in GROUP_TITLES.items():
            group = h5.create_group(group_name)
            _set_attrs(group, CLASS="GROUP", FILTERS=np.int64(PYTABLES_FILTERS),
                       TITLE=title, VERSION="1.0")
            _write_table(group, group_name, song["tables"][group_name])
        extdim = FIRST_EXTDIM + int(song["extdim_offset"])
        for position, (group_name, name, dtype, chunks, title) in enumerate(ARRAYS):
            data = _as_array(song["arrays"][(group_name, name)], dtype)
            dataset = h5[group_name].create_dataset(
                name, data=data, maxshape=(None,) + data.shape[1:], chunks=chunks,
                compression="gzip", compression_opts=1, shuffle=True)
            _set_attrs(dataset, CLASS="EARRAY", EXTDIM=np.int32(extdim + position),
                       TITLE=title, VERSION="1.0")


def _write_table(group: h5py.Group, group_name: str, row: Dict[str, Any]) -> None:
    title, chunks, fields = SONGS_TABLES[group_name]
    dtype = np.dtype(fields)
    values = tuple(_field_value(row[name], field_type) for name, field_type in fields)
    table = group.create_dataset("songs", data=np.array([values], dtype=dtype),
                                 maxshape=(None,), chunks=chunks, compression="gzip",
                                 compression_opts=1, shuffle=True)
    attrs = {"CLASS": "TABLE", "NROWS": np.int64(1), "TITLE": title, "VERSION": "2.6"}
    for position, (name, field_type) in enumerate(fields):
        attrs["FIELD_{}_NAME".format(position)] = name
        attrs["FIELD_{}_FILL".format(position)] = _fill_value(field_type)
    _set_attrs(table, **attrs)


def _field_value(value: Any, field_type: str) -> Any:
    if field_type.startswith("S"):
        return value.encode("utf-8")[:int(field_type[1:])]
    return value


def _fill_value(field_type: str) -> Any:
    if field_type.startswith("S"):
        return np.bytes_(b"")
    return np.zeros((), dtype=field_type)[()]


_SCALAR_SPACE = h5py.h5s.create(h5py.h5s.SCALAR)


def _set_attrs(node: Any, **attrs: Any) -> None:
    """Write scalar attributes through h5py's low-level API (the high-level one is slow)."""
    for name, value in attrs.items():
        array = np.asarray(np.bytes_(value.encode("ascii")) if isinstance(value, str) else value)
        attribute = h5py.h5a.create(node.id, name.encode("ascii"),
                                    h5py.h5t.py_create(array.dtype), _SCALAR_SPACE)
        attribute.write(array)


# ---- song content -------------------------------------------------------------------

def _make_artist(rng: np.random.Generator, index: int) -> Dict[str, Any]:
    decades = list(DECADE_WEIGHTS)
    weights = np.array(list(DECADE_WEIGHTS.values()))
    decade = decades[rng.choice(len(decades), p=weights / weights.sum())]
    has_location = rng.random() < 0.45
    return {
        "artist_id": _echo_nest_id(rng, "AR"),
        "artist_name": "Synthetic Artist {:05d}".format(index),
        "base_year": decade + rng.uniform(0, 10 if decade < LAST_YEAR else 1),
        "timbre_offset": rng.normal(0.0, ARTIST_SHARE * MEAN_SPREAD),
        "artist_7digitalid": int(rng.integers(1, 800000)),
        "artist_familiarity": float(rng.beta(5, 3)),
        "artist_hotttnesss": float(rng.beta(4, 5)),
        "artist_latitude": float(rng.uniform(-40, 60)) if has_location else float("nan"),
        "artist_longitude": float(rng.uniform(-120, 140)) if has_location else float("nan"),
        "artist_location": "Synthetic City {}".format(index % 97) if has_location else "",
        "artist_mbid": _uuid(rng) if rng.random() < 0.8 else "",
        "artist_playmeid": int(rng.integers(1, 200000)) if rng.random() < 0.6 else -1,
        "terms": list(rng.choice(TERMS, size=int(rng.integers(3, 12)), replace=False)),
        "mbtags": list(rng.choice(TERMS, size=int(rng.integers(1, 4)), replace=False))
        if rng.random() < 0.55 else [],
    }


def _assign_artists(rng: np.random.Generator, count: int, artist_count: int) -> np.ndarray:
    """Every artist gets a song; the rest go to artists with skewed (log-normal) odds."""
    popularity = rng.lognormal(0.0, 1.0, artist_count)
    extra = rng.choice(artist_count, size=count - artist_count, p=popularity / popularity.sum())
    return rng.permutation(np.concatenate([np.arange(artist_count), extra]))


def _unique_ids(rng: np.random.Generator, prefix: str, count: int) -> List[str]:
    ids = []  # type: List[str]
    seen = set()
    while len(ids) < count:
        candidate = _echo_nest_id(rng, prefix)
        if candidate not in seen:
            seen.add(candidate)
            ids.append(candidate)
    return ids


def _echo_nest_id(rng: np.random.Generator, prefix: str) -> str:
    """Like TRAMGPM128F9311196: a prefix, 5 letters, 11 upper-case hex digits."""
    return prefix + "".join(rng.choice(LETTERS, 5)) + _hex(rng, 11)


def _hex(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(HEX_DIGITS, length))


def _uuid(rng: np.random.Generator) -> str:
    digits = _hex(rng, 32).lower()
    return "-".join([digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]])


def _timbre_correlation() -> np.ndarray:
    correlation = np.eye(12)
    for (row, col), value in TIMBRE_CORRELATIONS.items():
        correlation[row, col] = correlation[col, row] = value
    return correlation


_CORRELATION_FACTOR = np.linalg.cholesky(_timbre_correlation())


def _song_year(rng: np.random.Generator, artist: Dict[str, Any]) -> int:
    """The artist's base year plus noise, reflected at the ends (no pile-up at 2010)."""
    year = artist["base_year"] + rng.normal(0.0, ARTIST_YEAR_SPREAD)
    if year > LAST_YEAR:
        year = 2 * LAST_YEAR - year
    if year < FIRST_YEAR:
        year = 2 * FIRST_YEAR - year
    return int(np.clip(round(year), FIRST_YEAR, LAST_YEAR))


def _timbre(rng: np.random.Generator, year: int, artist: Dict[str, Any],
            segments: int) -> np.ndarray:
    t = (year - 1980) / 30.0
    mean = (MEAN_AT_1980 + MEAN_SLOPE * t + artist["timbre_offset"]
            + rng.normal(0.0, SONG_SHARE * MEAN_SPREAD))
    mean[0] += LOUDNESS_WAR_PER_DECADE * max(0.0, year - 1990) / 10.0
    std = np.exp(0.5 * (LOG_VAR_AT_1980 + LOG_VAR_SLOPE * t + rng.normal(0.0, LOG_VAR_NOISE, 12)))
    return mean + (rng.standard_normal((segments, 12)) @ _CORRELATION_FACTOR.T) * std


def _segment_count(rng: np.random.Generator) -> int:
    count = rng.lognormal(np.log(MEDIAN_SEGMENTS), SEGMENT_SIGMA)
    return int(np.clip(count, MIN_SEGMENTS, MAX_SEGMENTS))


def _make_song(rng: np.random.Generator, artist: Dict[str, Any], track_id: str, song_id: str,
               unknown_year_fraction: float) -> Dict[str, Any]:
    """One song: ``{"tables": {group: row}, "arrays": {(group, name): array}}``."""
    year = _song_year(rng, artist)
    segments = _segments(rng, year, artist)
    duration = float(segments["segments_start"][-1] + rng.gamma(4.0, SECONDS_PER_SEGMENT / 4.0))
    rhythm, tempo, time_signature = _rhythm(rng, duration)
    title = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)))).title()
    analysis_row = {name: 0 for name, _ in SONGS_TABLES["analysis"][2] if name.startswith("idx_")}
    analysis_row.update({
        "analysis_sample_rate": 22050, "audio_md5": _hex(rng, 32).lower(),
        "danceability": 0.0, "energy": 0.0, "duration": duration,
        "end_of_fade_in": float(rng.uniform(0.0, 2.0)),
        "start_of_fade_out": max(0.0, duration - float(rng.uniform(0.0, 10.0))),
        "key": int(rng.integers(0, 12)), "key_confidence": float(rng.random()),
        "loudness": float(-10.0 + 0.5 * (segments["segments_timbre"][:, 0].mean()
                                         - MEAN_AT_1980[0]) + rng.normal(0.0, 2.0)),
        "mode": int(rng.integers(0, 2)), "mode_confidence": float(rng.random()),
        "tempo": tempo, "time_signature": time_signature,
        "time_signature_confidence": float(rng.random()), "track_id": track_id,
    })
    tables = {
        "metadata": _metadata_row(rng, artist, song_id, title),
        "analysis": analysis_row,
        "musicbrainz": {"idx_artist_mbtags": 0,
                        "year": 0 if rng.random() < unknown_year_fraction else year},
    }
    arrays = {("analysis", name): values for name, values in segments.items()}
    arrays.update({("analysis", name): values for name, values in rhythm.items()})
    arrays.update(_artist_arrays(rng, artist))
    return {"tables": tables, "arrays": arrays, "extdim_offset": rng.integers(0, 150)}


def _segments(rng: np.random.Generator, year: int, artist: Dict[str, Any]) -> Dict[str, Any]:
    count = _segment_count(rng)
    lengths = rng.gamma(4.0, SECONDS_PER_SEGMENT / 4.0, count)
    pitches = rng.random((count, 12)) ** 2
    loudness_start = rng.normal(-22.0, 6.0, count)
    return {
        "segments_start": np.concatenate([[0.0], np.cumsum(lengths[:-1])]),
        "segments_confidence": rng.random(count),
        "segments_pitches": pitches / pitches.max(axis=1, keepdims=True),
        "segments_timbre": _timbre(rng, year, artist, count),
        "segments_loudness_start": loudness_start,
        "segments_loudness_max": loudness_start + rng.gamma(2.0, 3.0, count),
        "segments_loudness_max_time": rng.random(count) * lengths,
    }


def _rhythm(rng: np.random.Generator, duration: float) -> Tuple[Dict[str, Any], float, int]:
    """Beats, bars, tatums and sections over ``duration``, with tempo and time signature."""
    tempo = float(np.clip(rng.normal(120.0, 25.0), 50.0, 220.0))
    time_signature = int(rng.choice([1, 3, 4, 4, 4, 4, 5, 7]))
    first_beat = rng.uniform(0.0, 0.5)
    starts = {
        "beats": np.arange(first_beat, duration, 60.0 / tempo),
        "tatums": np.arange(first_beat, duration, 30.0 / tempo),
        "sections": np.arange(0.0, duration, rng.uniform(15.0, 40.0)),
    }
    starts["bars"] = starts["beats"][::time_signature]
    rhythm = {}  # type: Dict[str, Any]
    for unit, times in starts.items():
        rhythm[unit + "_start"] = times
        rhythm[unit + "_confidence"] = rng.random(len(times))
    return rhythm, tempo, time_signature


def _metadata_row(rng: np.random.Generator, artist: Dict[str, Any], song_id: str,
                  title: str) -> Dict[str, Any]:
    row = {name: artist[name] for name in (
        "artist_7digitalid", "artist_familiarity", "artist_hotttnesss", "artist_id",
        "artist_latitude", "artist_location", "artist_longitude", "artist_mbid",
        "artist_name", "artist_playmeid")}
    row.update({
        "analyzer_version": "", "genre": "", "idx_artist_terms": 0, "idx_similar_artists": 0,
        "release": "Release of " + title, "release_7digitalid": int(rng.integers(1, 900000)),
        "song_hotttnesss": float("nan") if rng.random() < NAN_HOTTTNESSS_SHARE
        else float(rng.beta(2, 3)),
        "song_id": song_id, "title": title, "track_7digitalid": int(rng.integers(1, 9000000)),
    })
    return row


def _artist_arrays(rng: np.random.Generator, artist: Dict[str, Any]) -> Dict[Tuple[str, str], Any]:
    terms, mbtags = artist["terms"], artist["mbtags"]
    return {
        ("metadata", "similar_artists"): [_echo_nest_id(rng, "AR")
                                          for _ in range(int(rng.integers(0, 20)))],
        ("metadata", "artist_terms"): terms,
        ("metadata", "artist_terms_freq"): np.sort(rng.random(len(terms)))[::-1],
        ("metadata", "artist_terms_weight"): np.sort(rng.random(len(terms)))[::-1],
        ("musicbrainz", "artist_mbtags"): mbtags,
        ("musicbrainz", "artist_mbtags_count"): rng.integers(1, 10, len(mbtags)),
    }


def _as_array(values: Any, dtype: str) -> np.ndarray:
    if dtype.startswith("S"):
        return np.array([value.encode("utf-8") for value in values], dtype=dtype)
    return np.asarray(values, dtype=dtype)


def generated_songs(data_dir: str, count: int, seed: int) -> str:
    """The folder of ``count`` generated songs for ``seed`` below ``data_dir``, made once
    (in a scratch folder renamed when complete) and reused."""
    target = Path(data_dir) / "generated" / "n{}-seed{}".format(count, seed)
    if not (target / COMPLETE_MARKER).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".staging-", dir=str(target.parent)))
        generate_songs(str(scratch), count, seed=seed)
        (scratch / COMPLETE_MARKER).write_text("generated {} songs, seed {}\n".format(count, seed))
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
        log.info("Generated %d songs in %s", count, target)
    return str(target)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic songs in the MSD HDF5 layout.")
    parser.add_argument("--out", required=True, help="output folder (MSD X/Y/Z tree)")
    parser.add_argument("--count", type=int, required=True, help="number of songs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unknown-year-fraction", type=float, default=0.2,
                        help="share of songs stored with year 0 (unknown)")
    parser.add_argument("--artists", type=int, default=0,
                        help="number of distinct artists (default: count / 6)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing songs")
    args = parser.parse_args(argv)
    started = time.time()
    try:
        paths = generate_songs(args.out, args.count, seed=args.seed,
                               unknown_year_fraction=args.unknown_year_fraction,
                               artists=args.artists or None, workers=args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps({"out": os.path.abspath(args.out), "songs": len(paths),
                      "seed": args.seed, "seconds": round(time.time() - started, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
