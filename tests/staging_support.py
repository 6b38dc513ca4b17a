"""A song archive over HTTP for the staging tests: a tar.gz in the subset's layout and a
server on 127.0.0.1 with HTTP Range support that can cut its first response short,
ignore Range requests, and records every request's Range header."""
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path


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


class RangeServer:
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
                server.bytes_sent += len(body)  # before the write: the client may finish first
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}/millionsongsubset.tar.gz".format(self.httpd.server_port)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def archive_with_checksum(folder: Path):
    """(path, bytes, "sha256:<hex>") of a new archive ``folder/millionsongsubset.tar.gz``."""
    path = folder / "millionsongsubset.tar.gz"
    folder.mkdir(parents=True, exist_ok=True)
    payload = make_archive(path)
    return path, payload, "sha256:" + hashlib.sha256(payload).hexdigest()


class RangeServers:
    """Starts RangeServers of one payload on demand (``start(**options)``); stops them all."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.servers = []

    def start(self, **options) -> RangeServer:
        self.servers.append(RangeServer(self.payload, **options))
        return self.servers[-1]

    def close(self) -> None:
        for server in self.servers:
            server.close()
