"""Benchmark: the ingest job on the same songs from local disk and from S3 with EMR-like
per-request latency (not a test; the last stdout line is JSON).

On EMR every S3 GET costs tens of milliseconds before the first byte; a partition that
reads its files one by one waits that long per song. The job reads ahead
(``ingest.read_ahead`` files in flight per partition) to hide it. In one run, on one
``local[N]`` Spark and one SecantusDB:

  local   msdlib.ingest.run_ingest over the songs' local paths;
  s3      the same over s3:// URIs, served by a moto server behind a proxy that holds
          every request ``--latency-ms`` before answering it (all on 127.0.0.1; the
          proxy keeps the songs' GET responses after a first pass, see LatencyProxy);
  s3 (read_ahead=1)   the same without read-ahead, for reference.

    .venv/bin/python benchmarks/bench_s3_ingest.py [--songs 400] [--latency-ms 30] \\
        [--cores 2] [--repeat 2] [--read-ahead 8] [--data-dir /tmp/msd-bench-songs]

Rounds are interleaved and each method's best round counts (other processes on the
machine slow some rounds). Last line:
``{"local_songs_per_s": …, "s3_songs_per_s": …, "latency_ms": …, "s3_vs_local": …}``.
Target: s3_vs_local ≥ 0.8.
"""
import argparse
import contextlib
import http.client
import http.server
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import boto3
import pymongo
from moto.server import ThreadedMotoServer

from bench_ingest import ensure_songs, spark_context, start_mongo
from msdlib.config import load_config
from msdlib.ingest import run_ingest
from msdlib.io.sources import SourceReader, list_sources

BUCKET = "bench-s3-ingest"
TARGET_S3_VS_LOCAL = 0.8
# Headers that belong to one connection, not to the forwarded message.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class LatencyProxy:
    """An HTTP proxy on 127.0.0.1 that waits ``latency_ms`` before forwarding each request
    to ``upstream`` (host, port): S3's time to first byte, on a local moto server.

    Successful GETs of whole objects are answered from memory after the first one (the
    songs do not change during the benchmark): real S3 serves from other machines, and
    moto's few milliseconds of Python per GET would otherwise compete with the
    executors for this machine's cores."""

    def __init__(self, upstream_host: str, upstream_port: int, latency_ms: float):
        handler = self._handler(upstream_host, upstream_port, latency_ms / 1000.0)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:{}".format(self.httpd.server_address[1])

    def __enter__(self) -> "LatencyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _handler(host: str, port: int, delay: float):
        local = threading.local()
        cached = {}  # type: Dict[str, Tuple[int, str, list, bytes]]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                time.sleep(delay)
                cacheable = self.command == "GET" and "Range" not in self.headers
                if cacheable and self.path in cached:
                    self._respond(*cached[self.path])
                    return
                if getattr(local, "upstream", None) is None:
                    local.upstream = http.client.HTTPConnection(host, port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    local.upstream.request(self.command, self.path, body=body, headers=headers)
                    response = local.upstream.getresponse()
                except (http.client.HTTPException, OSError):
                    local.upstream.close()
                    local.upstream = http.client.HTTPConnection(host, port, timeout=60)
                    local.upstream.request(self.command, self.path, body=body, headers=headers)
                    response = local.upstream.getresponse()
                answer = (response.status, response.reason, response.getheaders(),
                          response.read())
                if cacheable and response.status == 200:
                    cached[self.path] = answer
                self._respond(*answer)

            def _respond(self, status: int, reason: str, headers: list, payload: bytes) -> None:
                self.send_response(status, reason)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        return Handler


@contextlib.contextmanager
def s3_with_latency(latency_ms: float) -> Iterator[Dict[str, str]]:
    """A moto server and the latency proxy in front of it; yields both URLs."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with LatencyProxy(host, port, latency_ms) as proxy:
            yield {"direct": "http://{}:{}".format(host, port), "proxied": proxy.url}
    finally:
        server.stop()


def upload_songs(folder: Path, endpoint: str) -> str:
    """Copy the songs below s3://BUCKET/songs/ (directly, no latency); returns the prefix."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted(folder.rglob("*.h5")):
        s3.put_object(Bucket=BUCKET, Key="songs/" + path.relative_to(folder).as_posix(),
                      Body=path.read_bytes())
    return "s3://{}/songs/".format(BUCKET)


def prime_proxy(paths: List[str], proxied: str, threads: int = 16) -> None:
    """GET every song once through the proxy, so every timed round is served alike."""
    reader = SourceReader(proxied, max_connections=threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(reader.read, paths))


def timed_ingest(sc, uri: str, paths: List[str], read_ahead: int,
                 endpoint: str = None) -> Tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one ingest into a fresh database.
    This process's CPU is the driver's plus, for S3, the proxy's: work that shares the
    cores with the executors here and that S3 does elsewhere."""
    database = "bench_s3_" + uuid.uuid4().hex[:8]
    config = load_config(overrides={"mongo.database": database,
                                    "ingest.array_encoding": "float32",
                                    "ingest.read_ahead": read_ahead})
    started, cpu_started = time.monotonic(), time.process_time()
    summary = run_ingest(sc, config, "bench-s3", uri, paths, s3_endpoint_url=endpoint)
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    pymongo.MongoClient(uri).drop_database(database)
    assert summary["files_ingested"] == len(paths), summary
    return seconds, cpu_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--read-ahead", type=int, default=load_config().ingest.read_ahead)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "msd-bench-songs"))
    args = parser.parse_args()
    folder = ensure_songs(Path(args.data_dir), args.songs)
    # The executors' boto3 finds these (no real AWS is ever reached); Spark binds its
    # driver and UI to 127.0.0.1.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", SPARK_LOCAL_IP="127.0.0.1")
    best = {}  # type: Dict[str, float]
    with tempfile.TemporaryDirectory(prefix="bench-s3-ingest-") as state, \
            s3_with_latency(args.latency_ms) as s3:
        uri, server = start_mongo(Path(state))
        try:
            prefix = upload_songs(folder, s3["direct"])
            local_paths = list_sources(str(folder))
            s3_paths = list_sources(prefix, endpoint_url=s3["proxied"])
            prime_proxy(s3_paths, s3["proxied"])
            spark = spark_context(args.cores)
            sc = spark.sparkContext
            timed_ingest(sc, uri, local_paths[:20], args.read_ahead)  # warm-up
            methods = {
                "local": lambda: timed_ingest(sc, uri, local_paths, args.read_ahead),
                "s3": lambda: timed_ingest(sc, uri, s3_paths, args.read_ahead, s3["proxied"]),
                "s3 (read_ahead=1)": lambda: timed_ingest(sc, uri, s3_paths, 1, s3["proxied"]),
            }
            for round_number in range(1, args.repeat + 1):
                for name, run in methods.items():
                    seconds, cpu_seconds = run()
                    best[name] = min(seconds, best.get(name, seconds))
                    print("  round {} {:18s} {:6.1f} s {:7.1f} songs/s   driver+S3 server "
                          "CPU {:5.1f} s".format(round_number, name, seconds,
                                                 args.songs / seconds, cpu_seconds), flush=True)
            spark.stop()
        finally:
            server.stop()
    rates = {name: args.songs / seconds for name, seconds in best.items()}
    print("\n== ingest, {} generated songs, local[{}], read_ahead={}, S3 latency {} ms ==".format(
        args.songs, args.cores, args.read_ahead, args.latency_ms))
    for name, rate in rates.items():
        print("{:18s} {:7.1f} songs/s  ({:.2f} x local)".format(name, rate, rate / rates["local"]))
    print("(best of {} rounds; target s3/local >= {})".format(args.repeat, TARGET_S3_VS_LOCAL))
    print(json.dumps({"local_songs_per_s": round(rates["local"], 1),
                      "s3_songs_per_s": round(rates["s3"], 1),
                      "latency_ms": args.latency_ms,
                      "s3_vs_local": round(rates["s3"] / rates["local"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
