"""The pure parts of ingest's robustness: year plausibility, the failure boundary,
bounded retries, label validation in the training reader, listing of odd paths
(folders named *.h5, symlinks, loops) and the crash exit code. Reason classes, tallies
and settings checks: tests/unit/test_ingest_accounting.py."""
import os

import numpy as np
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure

from msdlib import cli
from msdlib.config import ConfigError, load_config
from msdlib.core.features import FEATURE_NAMES, classify_year
from msdlib.core.ingest_accounting import utc_now
from msdlib.ingest import convert_file, make_task
from msdlib.io.dataset import SKIP_INVALID_YEAR, song_row
from msdlib.io.mongo import retry_idempotent
from msdlib.io.sources import list_sources


@pytest.mark.parametrize("value, expected", [
    (1994, (1994, "known")), (1900, (1900, "known")), (2030, (2030, "known")),
    (1994.0, (1994, "known")), (0, (None, "missing")), (None, (None, "missing")),
    (-5, (None, "out_of_range")), (3000, (None, "out_of_range")),
    (1899, (None, "out_of_range")), (2031, (None, "out_of_range")),
    (1994.5, (None, "invalid")), (float("nan"), (None, "invalid")),
    ("1994", (None, "invalid")), (True, (None, "invalid")), ([1994], (None, "invalid"))])
def test_classify_year(value, expected):
    assert classify_year(value) == expected


def test_classify_year_uses_the_configured_range():
    assert classify_year(1890, (1850, 2030)) == (1890, "known")
    assert classify_year(2026, (1900, 2020)) == (None, "out_of_range")


def task():
    return make_task(load_config(), "mongodb://unused", "run-1", utc_now())


class FailingReader:
    def __init__(self, exc):
        self.exc = exc

    def read(self, path):
        raise self.exc


def test_convert_file_keeps_any_exception_of_one_file_with_that_file():
    document, error = convert_file("/songs/TRX.h5", FailingReader(KeyError("timbre")), task())
    assert document is None
    assert (error["_id"], error["reason"]) == ("/songs/TRX.h5", "unexpected_error")
    assert error["message"] == "KeyError: 'timbre'"


def test_convert_file_records_a_garbage_file(tmp_path):
    path = tmp_path / "TRGARBAGE.h5"
    path.write_bytes(np.random.default_rng(3).bytes(2048))
    _, error = convert_file(str(path), ReaderOfFiles(), task())
    assert error["reason"] == "not_hdf5"


class ReaderOfFiles:
    def read(self, path):
        with open(path, "rb") as handle:
            return handle.read()


class FlakyWrite:
    def __init__(self, failures, exc=AutoReconnect("connection closed")):
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "written"


def test_retry_backs_off_exponentially_until_the_write_succeeds():
    write, waits = FlakyWrite(3, NetworkTimeout("timed out")), []
    assert retry_idempotent(write, 5, 0.5, sleep=waits.append) == "written"
    assert (write.calls, waits) == (4, [0.5, 1.0, 2.0])


def test_retry_gives_up_after_the_configured_attempts():
    write, waits = FlakyWrite(10), []
    with pytest.raises(AutoReconnect):
        retry_idempotent(write, 3, 1.0, sleep=waits.append)
    assert (write.calls, waits) == (3, [1.0, 2.0])


def test_retry_waits_at_most_30_seconds():
    waits = []
    retry_idempotent(FlakyWrite(8), 9, 1.0, sleep=waits.append)
    assert waits[-3:] == [30.0, 30.0, 30.0]


def test_other_errors_are_not_retried():
    write = FlakyWrite(1, OperationFailure("not authorized"))
    with pytest.raises(OperationFailure):
        retry_idempotent(write, 5, 0.0, sleep=lambda seconds: None)
    assert write.calls == 1


def song(year, decade=None):
    return {"_id": "TR1", "features": {"timbre": [0.5] * len(FEATURE_NAMES), "year": year,
                                       "decade": decade, "artist_id": "AR1"},
            "analysis": {"songs": {}}}


@pytest.mark.parametrize("year", [-5, 3000, 1994.5, "1994", True, float("nan")])
def test_an_invalid_year_is_never_a_label(year):
    assert song_row(song(year), [])[2:5] == (None, None, SKIP_INVALID_YEAR)


def test_a_valid_year_is_a_label_and_the_decade_derives_from_it():
    assert song_row(song(1994, decade="garbage"), [])[2:5] == (1994, 1990, None)
    assert song_row(song(1994.0), [])[2:5] == (1994, 1990, None)
    assert song_row(song(None), [])[2:5] == (None, None, None)  # unknown: imputed
    assert song_row(song(1890), [], (1850, 2030))[2:5] == (1890, 1890, None)


def test_a_non_string_artist_id_is_skipped_not_crashed_on():
    document = song(1994)
    document["features"]["artist_id"] = 42
    assert song_row(document, [])[1] is None
    assert song_row(document, [])[4] == "missing_artist_id"


def test_listing_records_folders_named_h5_and_follows_symlinks_once(tmp_path):
    songs = tmp_path / "songs"
    (songs / "A" / "folder.h5" / "inside").mkdir(parents=True)
    (songs / "A" / "TRGOOD.h5").write_bytes(b"x")
    (songs / "A" / "folder.h5" / "inside" / "TRHIDDEN.h5").write_bytes(b"x")
    os.symlink(songs / "A" / "TRGOOD.h5", songs / "A" / "link.h5")
    os.symlink(songs / "nowhere.h5", songs / "broken.h5")
    os.symlink(songs, songs / "A" / "loop")  # a cycle: listed once, no recursion
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "TRLINKED.h5").write_bytes(b"x")
    os.symlink(elsewhere, songs / "linked_folder")

    listed = list_sources(str(songs))

    assert [os.path.relpath(path, songs) for path in listed] == [
        "A/TRGOOD.h5", "A/folder.h5", "A/link.h5", "broken.h5",
        "linked_folder/TRLINKED.h5"]


def test_glob_listing_keeps_folders_named_h5(tmp_path):
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "TRGOOD.h5").write_bytes(b"x")
    assert list_sources(str(tmp_path / "*.h5")) == [
        str(tmp_path / "TRGOOD.h5"), str(tmp_path / "folder.h5")]


@pytest.mark.parametrize("overrides, message", [
    ({"ingest.year_min": 2000, "ingest.year_max": 1999}, "year_min"),
    ({"mongo.write_attempts": 0}, "write_attempts"),
    ({"mongo.retry_backoff_seconds": -1.0}, "retry_backoff_seconds")])
def test_bad_robustness_settings_are_usage_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_run_main_exit_codes(capsys):
    def crashes(argv):
        raise KeyError("segments_timbre")

    def misconfigured(argv):
        raise ConfigError("ingest.batch_size must be at least 1")

    assert cli.run_main(lambda argv: cli.EXIT_OK, []) == 0
    assert cli.run_main(lambda argv: cli.EXIT_FAILED_CHECKS, []) == 1
    assert cli.run_main(misconfigured, []) == cli.EXIT_USAGE == 2
    assert cli.run_main(crashes, []) == cli.EXIT_CRASH == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'segments_timbre'" in err
    assert "the job crashed (exit 3)" in err
