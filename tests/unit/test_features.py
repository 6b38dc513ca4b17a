"""The 90 timbre features: layout and scale against the UCI YearPredictionMSD rows."""
import zlib
from pathlib import Path

import numpy as np
import pytest

from msdlib.core.features import (
    COVARIANCE_ORDER, FEATURE_NAMES, decade_of, partition_of, timbre_features)
from msdlib.core.song_errors import SongFileError
from msdlib.io.hdf5_reader import read_song
from project_paths import SHARED_MSD

UCI_CSV = SHARED_MSD / "tabular" / "YearPredictionMSD_first1176rows.csv"
needs_real_data = pytest.mark.skipif(
    not UCI_CSV.is_file(), reason="real MSD tables not found at {}".format(SHARED_MSD))


def covariance_matrices(rows, order):
    """Rebuild symmetric 12 x 12 matrices from 78 covariance columns in ``order``."""
    matrices = np.zeros((len(rows), 12, 12))
    for column, (row, col) in enumerate(order):
        matrices[:, row, col] = matrices[:, col, row] = rows[:, column]
    return matrices


def share_positive_semidefinite(matrices):
    smallest = np.linalg.eigvalsh(matrices)[:, 0]
    largest = np.abs(matrices).max(axis=(1, 2))
    return float(np.mean(smallest >= -1e-6 * largest))


@pytest.fixture(scope="module")
def uci_rows():
    return np.loadtxt(UCI_CSV, delimiter=",")


def test_features_are_means_then_covariances_diagonal_by_diagonal():
    rng = np.random.default_rng(0)
    timbre = rng.normal(size=(50, 12)) * np.arange(1, 13)
    features = timbre_features(timbre)
    covariance = np.cov(timbre, rowvar=False, ddof=1)
    assert features.shape == (90,) and features.dtype == np.float64
    np.testing.assert_allclose(features[:12], timbre.mean(axis=0))
    np.testing.assert_allclose(features[12:24], np.diag(covariance))
    np.testing.assert_allclose(features[24:35], np.diag(covariance, 1))
    assert features[-1] == pytest.approx(covariance[0, 11])
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 90
    assert FEATURE_NAMES[12] == "timbre_cov_00_00" and FEATURE_NAMES[24] == "timbre_cov_00_01"


@needs_real_data
def test_covariance_order_matches_the_uci_rows(uci_rows):
    covariances = uci_rows[:, 13:]
    assert share_positive_semidefinite(covariance_matrices(covariances, COVARIANCE_ORDER)) == 1.0
    row_by_row = [(row, col) for row in range(12) for col in range(row, 12)]
    assert share_positive_semidefinite(covariance_matrices(covariances, row_by_row)) < 0.01


@needs_real_data
def test_real_songs_features_have_the_uci_scale(uci_rows):
    paths = sorted((SHARED_MSD / "tracks").glob("*/*/*/*.h5"))[::3]
    ours = np.array([timbre_features(read_song(str(path))["analysis"]["segments_timbre"])
                     for path in paths])
    uci = uci_rows[:, 1:]
    ours_iqr = np.subtract(*np.percentile(ours, [75, 25], axis=0))
    uci_iqr = np.subtract(*np.percentile(uci, [75, 25], axis=0))
    ours_median, uci_median = np.median(ours, axis=0), np.median(uci, axis=0)
    assert np.corrcoef(ours_median, uci_median)[0, 1] > 0.99
    assert np.all(np.abs(ours_median - uci_median) < 0.5 * uci_iqr)
    assert np.all((ours_iqr / uci_iqr > 0.5) & (ours_iqr / uci_iqr < 2.0))


@pytest.mark.parametrize("timbre, reason", [
    (np.zeros((0, 12)), "empty_timbre"),
    (np.ones((1, 12)), "too_few_segments"),
    (np.ones((5, 11)), "bad_timbre_shape"),
    (np.ones(12), "bad_timbre_shape"),
    (np.where(np.eye(12, dtype=bool)[:3], np.nan, 1.0), "nonfinite_timbre"),
    (np.full((3, 12), np.inf), "nonfinite_timbre"),
])
def test_unusable_timbre_is_a_song_file_error(timbre, reason):
    with pytest.raises(SongFileError) as caught:
        timbre_features(timbre)
    assert caught.value.reason == reason


@pytest.mark.parametrize("year, decade", [
    (0, None), (None, None), (-5, None), (1950, 1950), (1969, 1960), (2010, 2010)])
def test_decade_of(year, decade):
    assert decade_of(year) == decade


def test_partition_is_stable_crc32_bucket():
    assert partition_of("TRAAAAW128F429D538", 64) == zlib.crc32(b"TRAAAAW128F429D538") % 64
    buckets = {partition_of("TR{:016d}".format(index), 8) for index in range(200)}
    assert buckets == set(range(8))
