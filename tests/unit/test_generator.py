"""msd_pipeline.staging.generator: real MSD layout, the real quirks, and a learnable year signal."""
import collections
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from msd_pipeline.staging import generator
from msdlib.core.features import timbre_features
from msd_pipeline.staging.generator import generate_songs, song_path
from msdlib.io.hdf5_reader import read_song
from project_paths import SHARED_MSD

SONG_COUNT = 300


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    paths = generate_songs(str(out), SONG_COUNT, seed=7, unknown_year_fraction=0.2, artists=40)
    return out, paths, [read_song(path) for path in paths]


def layout(path):
    """Every group and dataset with dtype, chunking, compression and attribute types."""
    def attributes(node):
        return sorted((name, np.asarray(value).dtype.kind) for name, value in node.attrs.items())

    with h5py.File(path, "r") as h5:
        found = {"/": attributes(h5)}

        def visit(name, node):
            if isinstance(node, h5py.Group):
                found[name] = ("group", attributes(node))
            else:
                found[name] = (node.dtype.descr, node.shape[1:], node.maxshape, node.chunks,
                               node.compression, node.compression_opts, node.shuffle,
                               attributes(node))
        h5.visititems(visit)
    return found


@pytest.mark.skipif(not (SHARED_MSD / "tracks").is_dir(),
                    reason="real MSD files not found at {}".format(SHARED_MSD))
def test_generated_files_have_the_real_layout(generated):
    _, paths, _ = generated
    real = layout(sorted((SHARED_MSD / "tracks").glob("*/*/*/*.h5"))[0])
    for path in paths[:5]:
        assert layout(path) == real


def test_files_sit_in_the_msd_tree_and_read_back(generated):
    out, paths, songs = generated
    assert len(paths) == SONG_COUNT
    track_ids = [song["analysis"]["songs"]["track_id"] for song in songs]
    assert len(set(track_ids)) == SONG_COUNT
    for path, track_id in zip(paths, track_ids):
        assert path == song_path(str(out), track_id)
        assert Path(path).relative_to(out).parts[:3] == (track_id[2], track_id[3], track_id[4])
        assert len(track_id) == 18 and track_id.startswith("TR") and track_id[2:7].isalpha()


def test_same_seed_gives_identical_files(tmp_path):
    first = generate_songs(str(tmp_path / "first"), 3, seed=7)
    again = generate_songs(str(tmp_path / "again"), 3, seed=7)
    other = generate_songs(str(tmp_path / "other"), 3, seed=8)
    digest = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()  # noqa: E731
    assert [Path(path).name for path in again] == [Path(path).name for path in first]
    assert [digest(path) for path in again] == [digest(path) for path in first]
    assert not {Path(path).name for path in other} & {Path(path).name for path in first}
    parallel = generate_songs(str(tmp_path / "parallel"), 3, seed=7, workers=2)
    assert [digest(path) for path in parallel] == [digest(path) for path in first]


def test_real_quirks(generated):
    _, _, songs = generated
    years = np.array([song["musicbrainz"]["songs"]["year"] for song in songs])
    known = years[years > 0]
    assert 0.1 < np.mean(years == 0) < 0.3
    assert known.min() >= 1950 and known.max() <= 2010
    decades = collections.Counter(known // 10 * 10)
    assert decades[2000] > decades[1990] > decades[1960]
    hotttnesss = [song["metadata"]["songs"]["song_hotttnesss"] for song in songs]
    assert 0.15 < np.mean([value is None for value in hotttnesss]) < 0.5
    assert all(song["analysis"]["songs"]["energy"] == 0.0 for song in songs)
    assert all(song["analysis"]["songs"]["danceability"] == 0.0 for song in songs)
    assert any(not song["musicbrainz"]["artist_mbtags"] for song in songs)


def test_segment_counts_range_from_a_handful_to_thousands():
    rng = np.random.default_rng(1)
    counts = np.array([generator._segment_count(rng) for _ in range(5000)])
    assert counts.min() <= 40 and counts.max() >= 2000
    assert 200 < np.median(counts) < 450


def test_artists_have_several_songs(generated):
    _, _, songs = generated
    per_artist = collections.Counter(song["metadata"]["songs"]["artist_id"] for song in songs)
    assert len(per_artist) == 40
    assert max(per_artist.values()) >= 10
    assert all(artist.startswith("AR") and len(artist) == 18 for artist in per_artist)


def ridge_rmse(train_x, train_y, test_x, test_y, penalty=30.0):
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0)
    standardized = (train_x - mean) / scale
    weights = np.linalg.solve(standardized.T @ standardized + penalty * np.eye(train_x.shape[1]),
                              standardized.T @ (train_y - train_y.mean()))
    predicted = (test_x - mean) / scale @ weights + train_y.mean()
    return np.sqrt(np.mean((predicted - test_y) ** 2))


def test_year_is_learnable_from_the_features_across_artists(generated):
    """Artist-grouped 4-fold CV: ridge on the 90 features beats the mean-year baseline."""
    _, _, songs = generated
    labelled = [song for song in songs if song["musicbrainz"]["songs"]["year"]]
    features = np.array([timbre_features(song["analysis"]["segments_timbre"])
                         for song in labelled])
    years = np.array([song["musicbrainz"]["songs"]["year"] for song in labelled], dtype=float)
    artists = np.array([song["metadata"]["songs"]["artist_id"] for song in labelled])
    model_rmse, baseline_rmse = [], []
    for fold in range(4):
        is_test = np.isin(artists, np.unique(artists)[fold::4])
        train, test = ~is_test, is_test
        model_rmse.append(ridge_rmse(features[train], years[train], features[test], years[test]))
        baseline_rmse.append(np.sqrt(np.mean((years[train].mean() - years[test]) ** 2)))
    assert np.mean(model_rmse) < 0.75 * np.mean(baseline_rmse)


def test_cli_writes_songs_and_prints_a_summary(tmp_path, capsys):
    assert generator.main(["--out", str(tmp_path), "--count", "4", "--seed", "3",
                           "--unknown-year-fraction", "0", "--artists", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["songs"] == 4
    songs = [read_song(path) for path in sorted(tmp_path.glob("*/*/*/*.h5"))]
    assert len(songs) == 4
    assert all(song["musicbrainz"]["songs"]["year"] for song in songs)
    assert len({song["metadata"]["songs"]["artist_id"] for song in songs}) == 2


@pytest.mark.parametrize("arguments", [{"count": -1}, {"count": 2, "workers": 0},
                                       {"count": 2, "unknown_year_fraction": -0.1}])
def test_bad_arguments_are_rejected(tmp_path, arguments):
    with pytest.raises(ValueError):
        generate_songs(str(tmp_path), **arguments)


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit) as caught:
        generator.main(["--out", str(tmp_path), "--count", "3",
                        "--unknown-year-fraction", "1.5"])
    assert caught.value.code == 2
