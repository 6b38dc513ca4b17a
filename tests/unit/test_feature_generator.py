"""msd_devtools.feature_generator: ingested-schema documents without HDF5 files."""
import collections

import numpy as np

from msd_devtools.feature_generator import feature_documents
from msdlib.io.dataset import feature_columns, song_row

SONG_FEATURES = ["loudness", "tempo", "energy", "danceability"]


def test_same_seed_same_documents():
    first = list(feature_documents(50, seed=4))
    assert first == list(feature_documents(50, seed=4))
    assert first != list(feature_documents(50, seed=5))


def test_documents_are_read_like_ingested_songs():
    documents = list(feature_documents(600, seed=2, unknown_year_fraction=0.25))
    rows = [song_row(document, SONG_FEATURES) for document in documents]
    assert all(row[4] is None for row in rows)  # no skip reason: valid features
    assert all(len(row) == 5 + len(feature_columns(SONG_FEATURES)) for row in rows)
    unknown = sum(row[2] is None for row in rows) / len(rows)
    assert 0.18 < unknown < 0.32
    assert len({row[1] for row in rows}) == 100  # one artist per six songs
    decades = collections.Counter(row[3] for row in rows if row[3] is not None)
    assert decades.most_common(1)[0][0] == 2000 and set(decades) <= set(range(1950, 2020, 10))
    assert {document["_id"] for document in documents} == {row[0] for row in rows}


def test_timbre_moves_with_the_year():
    rows = [song_row(document, SONG_FEATURES)
            for document in feature_documents(800, seed=9, unknown_year_fraction=0)]
    years = np.array([row[2] for row in rows], dtype=float)
    first_mean = np.array([row[5] for row in rows])
    second_mean = np.array([row[6] for row in rows])
    assert abs(np.corrcoef(years, second_mean)[0, 1]) > 0.3 or \
        abs(np.corrcoef(years, first_mean)[0, 1]) > 0.3
