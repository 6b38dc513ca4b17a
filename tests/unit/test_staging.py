"""Staging: folders, generated songs, and the archive download (resume, checksum,
extraction) against a real HTTP server on 127.0.0.1 and file:// URLs."""
import hashlib
import http.server
import io
import tarfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from msdlib.config import StagingSettings
from msd_pipeline import staging


def make_archive(path: Path, songs: int = 3, padding: int = 200_000) -> bytes:
    """A tar.gz in the subset's layout (MillionSongSubset/A/B/C/*.h5); returns its bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for index in range(songs):
            data = bytes([index]) * 10 + hashlib.sha256(bytes([index])).digest() * (padding // 32)
            info = tarfile.TarInfo("MillionSongSubset/A/B/C/TRABC{:04d}.h5".format(index))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


class ArchiveServer:
    """Serves one file with HTTP Range support; can cut the first response short and
    records every request's Range header."""

    def __init__(self, payload: bytes, cut_first_response_at: int = 0, honour_range: bool = True):
        self.payload = payload
        self.cut_at = cut_first_response_at
        self.honour_range = honour_range
        self.ranges = []
        self.bytes_sent = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = int(requested[len("bytes="):].rstrip("-")) if requested else 0
                if not server.honour_range:
                    start = 0
                if start >= len(server.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", "bytes {}-{}/{}".format(
                        start, len(server.payload) - 1, len(server.payload)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_at and len(server.ranges) == 1:
                    body = body[:server.cut_at]  # the connection drops mid-transfer
                    self.close_connection = True
                self.wfile.write(body)
                server.bytes_sent += len(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}/millionsongsubset.tar.gz".format(self.httpd.server_port)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "source" / "millionsongsubset.tar.gz"
    path.parent.mkdir()
    payload = make_archive(path)
    return path, payload, "sha256:" + hashlib.sha256(payload).hexdigest()


@pytest.fixture
def serve(archive):
    servers = []

    def start(**options):
        servers.append(ArchiveServer(archive[1], **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_interrupted_download_resumes_with_range(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve(cut_first_response_at=len(payload) // 3)
    destination = tmp_path / "downloads" / "subset.tar.gz"
    digest = staging.download(server.url, destination, checksum)
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
    staging.download(server.url, destination, checksum)
    assert server.ranges == ["bytes=1000-"]
    assert destination.read_bytes() == payload


def test_server_ignoring_range_restarts_cleanly(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve(honour_range=False)
    destination = tmp_path / "subset.tar.gz"
    destination.with_name("subset.tar.gz.part").write_bytes(b"stale bytes")
    staging.download(server.url, destination, checksum)
    assert destination.read_bytes() == payload


def test_complete_verified_download_is_not_fetched_again(tmp_path, archive, serve):
    _, payload, checksum = archive
    server = serve()
    destination = tmp_path / "subset.tar.gz"
    staging.download(server.url, destination, checksum)
    staging.download(server.url, destination, checksum)
    assert len(server.ranges) == 1


def test_checksum_mismatch_fails_and_keeps_nothing(tmp_path, archive, serve):
    server = serve()
    destination = tmp_path / "downloads" / "subset.tar.gz"
    with pytest.raises(staging.ChecksumMismatch, match="expected 00ff"):
        staging.download(server.url, destination, "sha256:00ff")
    assert list(destination.parent.iterdir()) == []


def test_file_url_with_md5_and_resume(tmp_path, archive):
    path, payload, _ = archive
    destination = tmp_path / "subset.tar.gz"
    destination.with_name("subset.tar.gz.part").write_bytes(payload[:500])
    staging.download(path.as_uri(), destination, "md5:" + hashlib.md5(payload).hexdigest())
    assert destination.read_bytes() == payload


def test_bad_checksum_format_is_a_clear_error():
    with pytest.raises(staging.StagingError, match="sha256:<hex> or md5:<hex>"):
        staging.parse_checksum("crc32:1234")


def test_unreachable_url_fails_after_retries(tmp_path):
    from msd_devtools.services import free_port

    url = "http://127.0.0.1:{}/subset.tar.gz".format(free_port())
    with pytest.raises(staging.StagingError, match="failed after 2 attempts"):
        staging.download(url, tmp_path / "subset.tar.gz", attempts=2, timeout=5, pause_seconds=0)


def test_url_mode_downloads_and_writes_the_songs_once(tmp_path, archive, serve):
    _, _, checksum = archive
    server = serve()
    settings = StagingSettings(mode="url", archive_url=server.url, archive_checksum=checksum,
                               data_dir=str(tmp_path / "data"))
    staged = staging.stage_songs(settings, "unused")
    assert staged["mode"] == "url" and staged["files"] == 3
    assert staged["detail"]["archive_verified"] is True
    assert Path(staged["source"]) == tmp_path / "data" / "extracted" / "millionsongsubset" / "all"
    assert len(list(Path(staged["source"]).rglob("*.h5"))) == 3
    assert staging.stage_songs(settings, "unused") == staged
    assert len(server.ranges) == 1


def test_url_mode_takes_a_slice_of_the_archive(tmp_path, archive, serve):
    settings = StagingSettings(mode="url", archive_url=serve().url, data_dir=str(tmp_path))
    staged = staging.stage_songs(settings, "unused", staging.SongSlice.of([], 2))
    assert staged["files"] == 2 and Path(staged["source"]).name == "first-2"


def test_archive_members_never_escape_the_sink(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("../outside.h5", "A/B/../../../escaped.h5", "/abs/A/B/C/.hidden.h5"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    settings = StagingSettings(mode="url", archive_url=archive.as_uri(), data_dir=str(tmp_path / "d"))
    with pytest.raises(staging.StagingError, match="no MSD song files"):
        staging.stage_songs(settings, "unused")
    assert sorted(path.name for path in tmp_path.rglob("*.h5")) == []


def test_auto_rule_uses_the_source_or_the_targets_fallback(tmp_path):
    assert staging.resolve_mode("auto", str(tmp_path / "absent"), "url") == "url"
    assert staging.resolve_mode("auto", "s3://bucket/tracks", "generated") == "path"
    assert staging.resolve_mode("generated", "s3://bucket/tracks", "url") == "generated"
    with pytest.raises(staging.StagingError, match="unknown staging mode"):
        staging.resolve_mode("ftp", "x", "url")


def test_path_mode_uses_the_folder_and_counts_songs(tmp_path):
    folder = tmp_path / "tracks" / "A" / "B" / "C"
    folder.mkdir(parents=True)
    for name in ("TRA1.h5", "TRA2.h5"):
        (folder / name).write_bytes(b"")
    staged = staging.stage_songs(StagingSettings(mode="path"), "tracks", project_root=str(tmp_path))
    assert staged == {"source": str(tmp_path / "tracks"), "mode": "path", "files": 2, "detail": {}}


def test_path_mode_with_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(staging.StagingError, match="not found or empty"):
        staging.stage_songs(StagingSettings(mode="path"), str(tmp_path / "absent"))


def test_auto_mode_falls_back_to_generated_songs(tmp_path):
    settings = StagingSettings(mode="auto", data_dir=str(tmp_path / "data"), generated_songs=4)
    staged = staging.stage_songs(settings, str(tmp_path / "absent"))
    assert staged["mode"] == "generated" and staged["files"] == 4
    again = staging.stage_songs(replace(settings, mode="generated"), "unused")
    assert again["source"] == staged["source"]


def test_auto_mode_prefers_an_existing_source(real_tracks_dir, tmp_path):
    staged = staging.stage_songs(StagingSettings(mode="auto", data_dir=str(tmp_path)),
                                 str(real_tracks_dir))
    assert staged["mode"] == "path" and staged["files"] == len(list(real_tracks_dir.rglob("*.h5")))


def test_relative_sources_resolve_under_the_project():
    assert staging.absolute("data/x", "/project") == "/project/data/x"
    assert staging.absolute("@lists/songs.txt", "/project") == "@/project/lists/songs.txt"
    assert staging.absolute("s3://bucket/tracks", "/project") == "s3://bucket/tracks"
    assert staging.absolute("/abs/tracks", "/project") == "/abs/tracks"
