"""S3 staging for EMR against a moto server: the archive streamed from HTTP into S3 (with
a broken connection resumed), the skip rule on re-runs, slices, checksums, the manifest,
an existing prefix and a local folder, the progress lines of each transfer, and the EMR
entry point's report of the resolved mode and the delivery for every configured mode."""
import hashlib
import json
import logging

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from msdlib.config import StagingSettings
from msd_pipeline.staging import progress
from msd_pipeline.staging.generator import generate_songs
from msd_pipeline.staging.rules import SongSlice, StagingError
from msd_pipeline.staging.sinks import S3PrefixSink, stage_archive, stage_existing, stage_local_folder
from msd_pipeline.targets.emr.staging import stage_to_s3

from emr_support import ArchiveServer, ServedFile, aws_env, client, make_song_archive, moto_server

BUCKET = "msd-staging-test"
SONG_COUNT = 24


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(BUCKET) as url:
        yield url


@pytest.fixture
def s3_hook(moto_url, monkeypatch):
    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    return S3Hook(aws_conn_id=None)


@pytest.fixture(scope="module")
def songs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    generate_songs(str(folder), SONG_COUNT, seed=11)
    return folder


@pytest.fixture(scope="module")
def archive(songs_dir):
    return make_song_archive(songs_dir)


def relative_songs(songs_dir):
    return sorted(str(path.relative_to(songs_dir)) for path in songs_dir.rglob("*.h5"))


def stored_keys(moto_url, prefix):
    pages = client("s3", moto_url).get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_archive_streams_into_s3_resumes_a_broken_download_and_skips_on_rerun(
        s3_hook, moto_url, songs_dir, archive):
    data_prefix = f"s3://{BUCKET}/run1/data"
    served = ServedFile(archive, break_after=len(archive) // 3)
    sha256 = hashlib.sha256(archive).hexdigest()
    with ArchiveServer({"/subset.tar.gz": served}) as server:
        staged = stage_archive(S3PrefixSink(s3_hook, data_prefix), server.url("/subset.tar.gz"),
                               SongSlice(), checksum=f"sha256:{sha256}")
        assert served.range_requests == 1  # the broken connection was resumed, not restarted
        assert staged["source"] == f"{data_prefix}/subset/all/"
        assert staged["files"] == SONG_COUNT
        assert staged["detail"]["uploaded"] == SONG_COUNT and staged["detail"]["skipped"] == 0
        assert staged["detail"]["archive_verified"] is True
        keys = stored_keys(moto_url, "run1/data/subset/all/")
        assert keys == sorted([f"run1/data/subset/all/{name}" for name in relative_songs(songs_dir)]
                              + ["run1/data/subset/all/_manifest.json"])
        one = relative_songs(songs_dir)[0]
        head = client("s3", moto_url).head_object(Bucket=BUCKET, Key=f"run1/data/subset/all/{one}")
        assert head["Metadata"]["sha256"] == hashlib.sha256((songs_dir / one).read_bytes()).hexdigest()
        manifest = json.loads(s3_hook.read_key("run1/data/subset/all/_manifest.json", BUCKET))
        assert manifest["count"] == SONG_COUNT and manifest["archive_digest"] == f"sha256:{sha256}"

        # A changed object is uploaded again; everything else is skipped.
        client("s3", moto_url).put_object(Bucket=BUCKET, Key=f"run1/data/subset/all/{one}", Body=b"x")
        again = stage_archive(S3PrefixSink(s3_hook, data_prefix), server.url("/subset.tar.gz"), SongSlice())
        assert again["detail"]["uploaded"] == 1 and again["detail"]["skipped"] == SONG_COUNT - 1


def test_archive_slices_by_letter_and_count(s3_hook, moto_url, songs_dir, archive):
    letters = sorted({name[0] for name in relative_songs(songs_dir)})[:2]
    with ArchiveServer({"/subset.tar.gz": ServedFile(archive)}) as server:
        by_letter = stage_archive(S3PrefixSink(s3_hook, f"s3://{BUCKET}/run2"),
                                  server.url("/subset.tar.gz"), SongSlice.of(letters, 0))
        first_three = stage_archive(S3PrefixSink(s3_hook, f"s3://{BUCKET}/run2"),
                                    server.url("/subset.tar.gz"), SongSlice.of([], 3))
    expected = [name for name in relative_songs(songs_dir) if name[0] in letters]
    slice_key = "letters-" + "".join(letters)
    assert by_letter["files"] == len(expected)
    assert stored_keys(moto_url, f"run2/subset/{slice_key}/") == sorted(
        [f"run2/subset/{slice_key}/{name}" for name in expected]
        + [f"run2/subset/{slice_key}/_manifest.json"])
    assert first_three["files"] == 3 and first_three["source"].endswith("/subset/first-3/")
    assert first_three["detail"]["archive_verified"] is None  # stopped early: not checkable


def test_checksum_mismatch_fails_with_both_digests(s3_hook, archive):
    with ArchiveServer({"/subset.tar.gz": ServedFile(archive)}) as server:
        with pytest.raises(StagingError, match="checksum mismatch.*expected sha256:00ff"):
            stage_archive(S3PrefixSink(s3_hook, f"s3://{BUCKET}/run3"), server.url("/subset.tar.gz"),
                          SongSlice(), checksum="sha256:00ff")


def test_archive_without_songs_is_an_error(s3_hook, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no songs here")
    with ArchiveServer({"/empty.tar.gz": ServedFile(make_song_archive(tmp_path))}) as server:
        with pytest.raises(StagingError, match="no MSD song files"):
            stage_archive(S3PrefixSink(s3_hook, f"s3://{BUCKET}/run4"), server.url("/empty.tar.gz"),
                          SongSlice())


def test_local_folder_then_existing_prefix_slice_copied_server_side(s3_hook, moto_url, songs_dir):
    sink = S3PrefixSink(s3_hook, f"s3://{BUCKET}/run5")
    uploaded = stage_local_folder(sink, str(songs_dir), SongSlice(), "local-songs", "path")
    assert uploaded["files"] == SONG_COUNT and uploaded["source"] == f"s3://{BUCKET}/run5/local-songs/all/"
    existing = uploaded["source"]

    whole = stage_existing(s3_hook, existing, sink, SongSlice())
    assert whole["source"] == existing and whole["files"] == SONG_COUNT  # used as is, no copy

    letter = relative_songs(songs_dir)[0][0]
    sliced = stage_existing(s3_hook, existing, sink, SongSlice.of([letter], 0))
    expected = [name for name in relative_songs(songs_dir) if name[0] == letter]
    assert sliced["files"] == len(expected) and sliced["detail"]["uploaded"] == len(expected)
    copy_prefix = sliced["source"][len(f"s3://{BUCKET}/"):]
    assert [key for key in stored_keys(moto_url, copy_prefix) if key.endswith(".h5")] == sorted(
        copy_prefix + name for name in expected)
    again = stage_existing(s3_hook, existing, sink, SongSlice.of([letter], 0))
    assert again["detail"]["skipped"] == len(expected) and again["detail"]["uploaded"] == 0


def test_each_transfer_logs_its_progress(s3_hook, songs_dir, archive, caplog, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger=progress.__name__)
    sink = S3PrefixSink(s3_hook, f"s3://{BUCKET}/run6")
    stage_local_folder(sink, str(songs_dir), SongSlice(), "local-songs", "path")
    with ArchiveServer({"/subset.tar.gz": ServedFile(archive)}) as server:
        stage_archive(sink, server.url("/subset.tar.gz"), SongSlice())
    letter = relative_songs(songs_dir)[0][0]
    stage_existing(s3_hook, f"s3://{BUCKET}/run6/local-songs/all/", sink, SongSlice.of([letter], 0))
    lines = [record.getMessage() for record in caplog.records if record.name == progress.__name__]
    folder_bytes = progress.human_bytes(sum(path.stat().st_size for path in songs_dir.rglob("*.h5")))
    upload = f"Upload of {songs_dir} to s3://{BUCKET}/run6/local-songs/all"
    streamed = f"Archive {server.url('/subset.tar.gz')} to s3://{BUCKET}/run6/subset/all"
    copy = (f"Copy of s3://{BUCKET}/run6/local-songs/all/ to "
            f"s3://{BUCKET}/run6/s3-run6-local-songs-all/letters-{letter}")
    assert f"{upload}: {folder_bytes} of {folder_bytes} (100.0%)" in " ".join(lines)
    assert f"{upload}: done, {folder_bytes} in " in " ".join(lines)
    archive_size = progress.human_bytes(len(archive))
    assert f"{streamed}: {archive_size} of {archive_size} (100.0%)" in " ".join(lines)
    assert any(line.startswith(f"{streamed}: done, {archive_size} in ") for line in lines)
    assert any(line.startswith(f"{copy}: done, ") for line in lines)


@pytest.mark.parametrize("mode, source, letters, reported", [
    ("url", "unused", [], ("url", "streamed")),
    ("auto", "absent-folder", [], ("url", "streamed")),
    ("path", "local", [], ("path", "uploaded")),
    ("auto", "local", [], ("path", "uploaded")),
    ("path", "s3", [], ("path", "in_place")),
    ("path", "s3", ["first letter"], ("path", "copied")),
    ("generated", "unused", [], ("generated", "uploaded")),
])
def test_emr_staging_reports_the_resolved_mode_and_the_delivery(
        s3_hook, songs_dir, archive, tmp_path, mode, source, letters, reported):
    existing = stage_local_folder(S3PrefixSink(s3_hook, f"s3://{BUCKET}/run7/songs"),
                                  str(songs_dir), SongSlice(), "local-songs", "path")["source"]
    sources = {"local": str(songs_dir), "s3": existing, "absent-folder": str(tmp_path / "absent")}
    letters = [relative_songs(songs_dir)[0][0]] if letters else []
    with ArchiveServer({"/subset.tar.gz": ServedFile(archive)}) as server:
        settings = StagingSettings(mode=mode, archive_url=server.url("/subset.tar.gz"),
                                   data_dir=str(tmp_path / "data"), generated_songs=3)
        staged = stage_to_s3(settings, sources.get(source, source), s3_hook,
                             f"s3://{BUCKET}/run7/data", SongSlice.of(letters, 0))
    assert (staged["mode"], staged["detail"]["delivery"]) == reported
    in_slice = [name for name in relative_songs(songs_dir) if not letters or name[0] in letters]
    assert staged["files"] == (3 if mode == "generated" else len(in_slice))
