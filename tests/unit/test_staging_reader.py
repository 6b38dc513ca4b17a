"""The resumable reader: the archive download (resume within a run and across runs, a
server ignoring Range, checksums, retries) against a real HTTP server on 127.0.0.1 and
file:// URLs."""
import hashlib
import logging

import pytest

from msd_pipeline.staging import progress
from msd_pipeline.staging.reader import ChecksumMismatch, download, parse_checksum
from msd_pipeline.staging.rules import StagingError


def test_interrupted_download_resumes_with_range(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve(cut_first_response_at=len(payload) // 3)
    destination = tmp_path / "downloads" / "subset.tar.gz"
    digest = download(server.url, destination, checksum)
    assert destination.read_bytes() == payload
    assert digest == checksum.split(":")[1]
    assert server.ranges == [None, "bytes={}-".format(len(payload) // 3)]
    assert server.bytes_sent == len(payload)
    assert not destination.with_name("subset.tar.gz.part").exists()


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve()
    destination = tmp_path / "subset.tar.gz"
    destination.with_name("subset.tar.gz.part").write_bytes(payload[:1000])
    download(server.url, destination, checksum)
    assert server.ranges == ["bytes=1000-"]
    assert destination.read_bytes() == payload


def test_download_logs_its_progress_against_the_servers_size(tmp_path, archive, serve, caplog,
                                                              monkeypatch):
    _, payload, checksum = archive
    server = serve()
    destination = tmp_path / "subset.tar.gz"
    destination.with_name("subset.tar.gz.part").write_bytes(payload[:1000])
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger=progress.__name__)
    download(server.url, destination, checksum)
    lines = [record.getMessage() for record in caplog.records if record.name == progress.__name__]
    size = progress.human_bytes(len(payload))
    assert lines[0].startswith("Download of {}: {} of {} (100.0%), ".format(server.url, size, size))
    assert lines[-1].startswith("Download of {}: done, {} in ".format(server.url, size))


def test_server_ignoring_range_restarts_cleanly(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve(honour_range=False)
    destination = tmp_path / "subset.tar.gz"
    destination.with_name("subset.tar.gz.part").write_bytes(b"stale bytes")
    download(server.url, destination, checksum)
    assert destination.read_bytes() == payload


def test_complete_verified_download_is_not_fetched_again(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve()
    destination = tmp_path / "subset.tar.gz"
    download(server.url, destination, checksum)
    download(server.url, destination, checksum)
    assert len(server.ranges) == 1


def test_checksum_mismatch_fails_and_keeps_nothing(tmp_path, archive, serve):
    server = serve()
    destination = tmp_path / "downloads" / "subset.tar.gz"
    with pytest.raises(ChecksumMismatch, match="expected 00ff"):
        download(server.url, destination, "sha256:00ff")
    assert list(destination.parent.iterdir()) == []


def test_file_url_with_md5_and_resume(tmp_path, archive):
    path, payload, _ = archive
    destination = tmp_path / "subset.tar.gz"
    destination.with_name("subset.tar.gz.part").write_bytes(payload[:500])
    download(path.as_uri(), destination, "md5:" + hashlib.md5(payload).hexdigest())
    assert destination.read_bytes() == payload


def test_bad_checksum_format_is_a_clear_error():
    with pytest.raises(StagingError, match="sha256:<hex> or md5:<hex>"):
        parse_checksum("crc32:1234")


def test_unreachable_url_fails_after_retries(tmp_path):
    from msd_devtools.services import free_port

    url = "http://127.0.0.1:{}/subset.tar.gz".format(free_port())
    with pytest.raises(StagingError, match="failed after 2 attempts"):
        download(url, tmp_path / "subset.tar.gz", attempts=2, timeout=5, pause_seconds=0)
