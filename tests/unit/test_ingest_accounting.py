"""msdlib.core.ingest_accounting: outcomes, reason classes, tallies and the summary of the
ingest job, on fixtures (no file, database or Spark); and the jobs' exit code when the
Mongo URI is not configured."""
import datetime
import json

import impute_years
import pytest
import train_models

from msdlib import cli
from msdlib.config import ConfigError, load_config
from msdlib.core.ingest_accounting import (
    MAX_ERROR_MESSAGE_CHARS, FileOutcome, IngestCounts, SongCounts, batch_outcomes,
    build_summary, failure_reason, failure_record, partition_count, utc_now)
from msdlib.core.song_errors import SongFileError

RECORDED_AT = datetime.datetime(2026, 1, 10, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("exc, reason", [
    (SongFileError("missing_dataset", "no /analysis/segments_timbre"), "missing_dataset"),
    (IsADirectoryError(21, "Is a directory"), "not_a_file"),
    (FileNotFoundError(2, "No such file"), "unreadable"),
    (KeyError("segments_timbre"), "unexpected_error"),
    (MemoryError(), "unexpected_error"),
    (RuntimeError("h5py internal"), "unexpected_error")])
def test_failure_reason_classes(exc, reason):
    assert failure_reason(exc) == reason


def test_a_botocore_error_is_an_s3_error():
    from botocore.exceptions import EndpointConnectionError
    assert failure_reason(EndpointConnectionError(endpoint_url="http://s3")) == "s3_error"


def test_failure_record_of_a_song_file_error_keeps_its_message():
    record = failure_record("/s/TRA.h5", SongFileError("truncated", "eof"), "r1", RECORDED_AT)
    assert record == {"_id": "/s/TRA.h5", "path": "/s/TRA.h5", "reason": "truncated",
                      "message": "truncated: eof", "run_id": "r1", "recorded_at": RECORDED_AT}


def test_failure_record_names_other_exceptions_and_caps_the_message():
    record = failure_record("/s/TRB.h5", KeyError("x" * 1000), "r1", RECORDED_AT)
    assert record["reason"] == "unexpected_error"
    assert record["message"].startswith("KeyError: 'xxx")
    assert len(record["message"]) == MAX_ERROR_MESSAGE_CHARS


def test_utc_now_has_millisecond_precision():
    now = utc_now()
    assert now.tzinfo is datetime.timezone.utc and now.microsecond % 1000 == 0


def song_document(track_id, path, year_status="known"):
    return {"_id": track_id, "source": {"path": path}, "features": {"year_status": year_status}}


def test_batch_outcomes_account_for_every_path_of_a_batch_once():
    documents = [song_document("TRA", "/a.h5"), song_document("TRB", "/b.h5", "out_of_range"),
                 song_document("TRA", "/a2.h5")]
    errors = [failure_record("/c.h5", SongFileError("not_hdf5", "x"), "r", RECORDED_AT)]
    rejected = [{"_id": "/b.h5", "reason": "write_rejected"}]

    outcomes = batch_outcomes(documents, errors, rejected)

    assert sorted(outcomes) == sorted([
        FileOutcome("/c.h5", reason="not_hdf5"), FileOutcome("/b.h5", reason="write_rejected"),
        FileOutcome("/a.h5", "TRA", year_status="known"),
        FileOutcome("/a2.h5", "TRA", year_status="known")])
    assert IngestCounts.of(outcomes) == IngestCounts(
        4, 2, 2, {"not_hdf5": 1, "write_rejected": 1})


def test_counts_of_outcomes():
    outcomes = [FileOutcome("/a.h5", "TRA", year_status="known"),
                FileOutcome("/b.h5", reason="truncated"), FileOutcome("/c.h5", "TRA"),
                FileOutcome("/d.h5", reason="truncated")]
    assert IngestCounts.of(outcomes) == IngestCounts(4, 2, 2, {"truncated": 2})


def test_counts_merge_adds_tallies_and_reasons():
    left = IngestCounts(3, 2, 1, {"truncated": 1})
    right = IngestCounts(4, 2, 2, {"truncated": 1, "not_hdf5": 1})
    assert left.merged(right) == IngestCounts(7, 4, 3, {"truncated": 2, "not_hdf5": 1})
    assert left == IngestCounts(3, 2, 1, {"truncated": 1})


@pytest.mark.parametrize("configured, parallelism, files, expected", [
    (0, 2, 1000, 4), (0, 8, 5, 5), (7, 2, 1000, 7), (7, 2, 3, 3), (0, 2, 0, 1)])
def test_partition_count(configured, parallelism, files, expected):
    assert partition_count(configured, parallelism, files) == expected


def test_summary_fails_its_check_above_the_failed_share():
    config = load_config(overrides={"ingest.max_failed_fraction": 0.1})
    passing = build_summary(IngestCounts(10, 9, 1, {"truncated": 1}),
                            SongCounts(9, 0, {"known": 9}), 2.0, config, "r")
    failing = build_summary(IngestCounts(10, 8, 2, {"truncated": 2}),
                            SongCounts(7, 1, {"known": 5, "out_of_range": 2}), 2.0, config,
                            "r")

    assert passing["ok"] is True and failing["ok"] is False
    assert failing["failed_fraction"] == 0.2
    assert failing["failure_reasons"] == {"truncated": 2}
    assert passing["songs_per_second"] == 4.5
    assert (failing["files_ingested"], failing["files_duplicate"]) == (7, 1)
    assert failing["files_seen"] == (failing["files_ingested"] + failing["files_duplicate"]
                                     + failing["files_failed"])
    assert failing["songs_by_year_status"] == {"known": 5, "out_of_range": 2}
    assert failing["years_out_of_range"] == 2 and failing["year_range"] == [1900, 2030]
    assert {"files_seen", "files_ingested", "files_failed", "seconds", "run_id",
            "encoding"} <= set(passing)
    json.dumps(passing)


def test_summary_of_no_file_passes_with_no_rate():
    summary = build_summary(IngestCounts(), SongCounts(), 0.0, load_config(), "r")
    assert summary["ok"] is True and summary["failed_fraction"] == 0.0
    assert summary["songs_per_second"] is None


@pytest.mark.parametrize("overrides, message", [
    ({"ingest.array_encoding": "float16"}, "array_encoding"),
    ({"ingest.batch_size": 0}, "batch_size"),
    ({"ingest.partitions": -1}, "partitions"),
    ({"ingest.max_failed_fraction": 1.5}, "max_failed_fraction"),
    ({"ingest.partition_buckets": 0}, "partition_buckets"),
    ({"ingest.max_files": -1}, "max_files"),
    ({"ingest.read_ahead": 0}, "read_ahead"),
    ({"ingest.year_min": 2000, "ingest.year_max": 1999}, "year_min")])
def test_invalid_ingest_settings_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


@pytest.mark.parametrize("job, argv", [
    (train_models, []), (impute_years, ["--model-uri", "/runs/r1", "--model-label", "m/1"])])
def test_jobs_exit_2_without_a_mongo_uri(job, argv, monkeypatch, capsys):
    monkeypatch.delenv("MSD_MONGO_URI", raising=False)
    assert cli.run_main(job.main, argv) == cli.EXIT_USAGE
    assert "MSD_MONGO_URI is not set" in capsys.readouterr().err
