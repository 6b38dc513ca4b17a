"""Generate song documents straight into MongoDB, with no HDF5 files: the scale path.

Same statistical model as ``msd_pipeline.staging.generator`` (artists around a base year, the
year-dependent 12-dimensional timbre Gaussian, the real subset's decade skew, a share
of unknown years, energy and danceability 0): each song's segments are drawn by that
module and reduced to the 90 UCI features by ``msdlib.core.features``, exactly as
ingest does. What is left out is what training never reads: the segment, beat and
tag arrays. The documents have the ingested schema's training part (``features``,
``metadata.songs``, ``analysis.songs``, ``musicbrainz.songs``) and a ``source`` naming
the generator, and go in with unordered bulk inserts.

CLI: ``python -m msd_devtools.feature_generator --count N [--seed S] [--database D]
[--collection C] [--unknown-year-fraction F]``, Mongo URI from $MSD_MONGO_URI; prints a
JSON summary.
"""
import argparse
import json
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from msd_pipeline.staging.generator import (MEAN_AT_1980, SECONDS_PER_SEGMENT, _assign_artists,
                                    _make_artist, _segment_count, _song_year, _timbre,
                                    _unique_ids)
from msdlib import env_vars
from msdlib.core.features import decade_of, partition_of, timbre_features
from msdlib.io.mongo import connect

GENERATOR_NAME = "msd_devtools.feature_generator"


def feature_documents(count: int, seed: int = 0, unknown_year_fraction: float = 0.2,
                      artists: Optional[int] = None, partition_buckets: int = 64
                      ) -> Iterator[Dict[str, Any]]:
    """``count`` song documents (same seed, same documents), one at a time."""
    if count < 0 or not 0.0 <= unknown_year_fraction <= 1.0:
        raise ValueError("count must be >= 0 and unknown_year_fraction in [0, 1]")
    if count == 0:
        return
    artist_count = max(1, min(count, artists if artists else max(1, count // 6)))
    rng = np.random.default_rng(seed)
    roster = [_make_artist(rng, index) for index in range(artist_count)]
    song_artists = _assign_artists(rng, count, artist_count)
    track_ids = _unique_ids(rng, "TR", count)
    for index in range(count):
        yield _document(np.random.default_rng([seed, index]), roster[song_artists[index]],
                        track_ids[index], unknown_year_fraction, partition_buckets, seed)


def _document(rng: np.random.Generator, artist: Dict[str, Any], track_id: str,
              unknown_year_fraction: float, partition_buckets: int, seed: int
              ) -> Dict[str, Any]:
    true_year = _song_year(rng, artist)
    segments = _segment_count(rng)
    timbre = timbre_features(_timbre(rng, true_year, artist, segments))
    year = None if rng.random() < unknown_year_fraction else true_year
    loudness = -10.0 + 0.5 * (timbre[0] - MEAN_AT_1980[0]) + rng.normal(0.0, 2.0)
    return {
        "_id": track_id,
        "metadata": {"songs": {"artist_id": artist["artist_id"],
                               "artist_name": artist["artist_name"],
                               "title": "Generated song {}".format(track_id[-6:])}},
        "analysis": {"songs": {
            "track_id": track_id, "loudness": float(loudness),
            "tempo": float(np.clip(rng.normal(120.0, 25.0), 50.0, 220.0)),
            "energy": 0.0, "danceability": 0.0,
            "duration": float(segments * SECONDS_PER_SEGMENT)}},
        "musicbrainz": {"songs": {"year": year or 0}},
        "features": {"timbre": timbre.tolist(), "year": year, "decade": decade_of(year),
                     "artist_id": artist["artist_id"],
                     "partition": partition_of(track_id, partition_buckets)},
        "source": {"generator": GENERATOR_NAME, "seed": seed},
    }


def insert_feature_songs(collection: Any, count: int, seed: int = 0,
                         unknown_year_fraction: float = 0.2, artists: Optional[int] = None,
                         batch_size: int = 1000, partition_buckets: int = 64) -> int:
    """Insert ``count`` generated songs in unordered batches; returns how many."""
    inserted = 0
    batch: List[Dict[str, Any]] = []
    for document in feature_documents(count, seed, unknown_year_fraction, artists,
                                       partition_buckets):
        batch.append(document)
        if len(batch) == batch_size:
            inserted += len(collection.insert_many(batch, ordered=False).inserted_ids)
            batch = []
    if batch:
        inserted += len(collection.insert_many(batch, ordered=False).inserted_ids)
    return inserted


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Insert generated song documents (features "
                                                 "only, no HDF5 files) into MongoDB.")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database", default="msd")
    parser.add_argument("--collection", default="songs")
    parser.add_argument("--unknown-year-fraction", type=float, default=0.2)
    args = parser.parse_args(argv)
    uri = os.environ.get(env_vars.MONGO_URI)
    if not uri:
        parser.error("set ${} to the MongoDB URI".format(env_vars.MONGO_URI))
    started = time.time()
    client = connect(uri)
    try:
        inserted = insert_feature_songs(client[args.database][args.collection], args.count,
                                        args.seed, args.unknown_year_fraction)
    except ValueError as exc:
        parser.error(str(exc))
    finally:
        client.close()
    print(json.dumps({"database": args.database, "collection": args.collection,
                      "songs": inserted, "seed": args.seed,
                      "seconds": round(time.time() - started, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
