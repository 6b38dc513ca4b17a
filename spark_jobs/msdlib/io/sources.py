"""Where the song files come from: list them on the driver, read them in the executors.

A source is one of

* a local folder, searched recursively for ``*.h5`` (MSD's ``X/Y/Z/TR....h5`` tree);
  symlinks to files and folders are followed (a folder reached twice is listed once),
* a glob (``/data/**/*.h5``; ``**`` crosses folders),
* a list file ``@/path/list.txt``: one local path or s3:// URI per line; blank lines
  and ``#`` comments are skipped, relative paths are relative to the list file,
* an S3 prefix ``s3://bucket/prefix``: every ``*.h5`` key below it.

Relative local sources resolve against the checkout holding spark_jobs/
(``msdlib.config.CHECKOUT_DIR``), like the default ``../shared/msd/tracks``. Listings are deterministic: sorted
paths (a list file keeps its own order), duplicates dropped, optionally capped.
A local entry named ``*.h5`` that is not a regular file (a folder, a broken symlink) is
listed all the same, so the job records it as an error instead of ignoring it.

The S3 endpoint is boto3's default unless ``endpoint_url`` or $AWS_ENDPOINT_URL_S3 /
$AWS_ENDPOINT_URL name another (moto in tests).

Executors read files with ``read_ahead``: a bounded thread pool per partition keeps the
next files' GETs in flight while the current file is parsed, so a partition is not
bound by S3's per-request latency. Python 3.9 syntax.
"""
import collections
import glob
import itertools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Iterable, Iterator, List, Optional, Tuple, Union

from msdlib.config import CHECKOUT_DIR, ConfigError

SONG_SUFFIX = ".h5"
S3_PAGE_SIZE = 1000  # keys per ListObjectsV2 call (the S3 maximum)
GLOB_CHARACTERS = "*?["


class SourceError(ConfigError):
    """The configured source does not exist or holds no song files."""


def is_s3(path: str) -> bool:
    return path.startswith("s3://")


def split_s3_uri(uri: str) -> Tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")``."""
    if not is_s3(uri):
        raise SourceError("not an s3:// URI: {}".format(uri))
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise SourceError("s3 URI without a bucket: {}".format(uri))
    return bucket, key


def s3_endpoint_url(endpoint_url: Optional[str] = None) -> Optional[str]:
    return (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL") or None)


def s3_client(endpoint_url: Optional[str] = None, max_connections: int = 0) -> Any:
    """An S3 client; ``max_connections`` > 0 sizes its connection pool (default 10)."""
    import boto3  # imported lazily: local runs never need it
    from botocore.config import Config

    config = Config(max_pool_connections=max_connections) if max_connections > 0 else None
    return boto3.client("s3", endpoint_url=s3_endpoint_url(endpoint_url), config=config)


def list_sources(source: str, max_files: int = 0,
                 endpoint_url: Optional[str] = None) -> List[str]:
    """All song file paths/URIs of ``source``, in a deterministic order, at most ``max_files``
    (0 = no cap). Raises SourceError when the source is missing or empty."""
    source = source.strip()
    if not source:
        raise SourceError("ingest.source is empty")
    if source.startswith("@"):
        paths = _list_file(_resolve_local(source[1:]))
    elif is_s3(source):
        paths = _list_s3(source, endpoint_url)
    elif any(char in source for char in GLOB_CHARACTERS):
        paths = _list_glob(_resolve_local(source))
    else:
        paths = _list_folder(_resolve_local(source))
    if not paths:
        raise SourceError("no {} files in source {}".format(SONG_SUFFIX, source))
    paths = _unique(paths)
    return paths[:max_files] if max_files > 0 else paths


def _resolve_local(path: str, base: str = CHECKOUT_DIR) -> str:
    path = os.path.expanduser(path.strip())
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _list_folder(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        raise SourceError("source folder does not exist: {}".format(folder))
    paths = []
    visited = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in visited:  # a symlink loop or a second link to one folder
            dirs[:] = []
            continue
        visited.add(real_root)
        paths.extend(os.path.join(root, name) for name in files + dirs
                     if name.endswith(SONG_SUFFIX))
        dirs[:] = sorted(name for name in dirs if not name.endswith(SONG_SUFFIX))
    return sorted(paths)


def _list_glob(pattern: str) -> List[str]:
    return sorted(path for path in glob.glob(pattern, recursive=True)
                  if os.path.isfile(path) or path.endswith(SONG_SUFFIX))


def _list_file(list_path: str) -> List[str]:
    try:
        with open(list_path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise SourceError("cannot read list file {}: {}".format(list_path, exc)) from exc
    base = os.path.dirname(list_path)
    entries = (line.strip() for line in lines)
    return [entry if is_s3(entry) else _resolve_local(entry, base)
            for entry in entries if entry and not entry.startswith("#")]


def _list_s3(prefix_uri: str, endpoint_url: Optional[str]) -> List[str]:
    bucket, prefix = split_s3_uri(prefix_uri)
    paginator = s3_client(endpoint_url).get_paginator("list_objects_v2")
    keys = []
    pages = paginator.paginate(Bucket=bucket, Prefix=prefix,
                               PaginationConfig={"PageSize": S3_PAGE_SIZE})
    for page in pages:
        keys.extend(item["Key"] for item in page.get("Contents", [])
                    if item["Key"].endswith(SONG_SUFFIX))
    return ["s3://{}/{}".format(bucket, key) for key in sorted(keys)]


def _unique(paths: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(paths))


class SourceReader:
    """Reads song files as bytes; one per Spark partition (boto3 clients are not picklable,
    so the S3 client is created on first use, in the executor, and shared by its threads:
    boto3 clients are thread-safe)."""

    def __init__(self, endpoint_url: Optional[str] = None, max_connections: int = 0):
        self.endpoint_url = endpoint_url
        self.max_connections = max_connections
        self._s3 = None  # type: Any
        self._lock = threading.Lock()

    def read(self, path: str) -> bytes:
        """The whole file: h5py opens it from memory. Raises OSError or botocore errors."""
        if not is_s3(path):
            with open(path, "rb") as handle:
                return handle.read()
        bucket, key = split_s3_uri(path)
        return self._client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = s3_client(self.endpoint_url, self.max_connections)
            return self._s3


class PrefetchedRead:
    """One file read ahead: ``read(path)`` returns its bytes or raises its read error,
    exactly as ``SourceReader.read`` would have."""

    def __init__(self, future: "Future[bytes]"):
        self._future = future

    def read(self, path: str) -> bytes:
        return self._future.result()


# What ``read_ahead`` hands out with each path: something whose ``read(path)`` gives the bytes.
FileReader = Union[SourceReader, PrefetchedRead]


def read_ahead(reader: SourceReader, paths: Iterable[str],
               in_flight: int) -> Iterator[Tuple[str, FileReader]]:
    """``(path, file)`` pairs in the order of ``paths``; ``file.read(path)`` gives the bytes.

    With ``in_flight`` > 1, a pool of that many threads reads the next files while the
    caller works on the current one; at most ``in_flight`` files are being read or held,
    the one handed out included. With 1, each file is read when the caller asks for it.
    A read error stays with its own file (raised by its ``read``).
    """
    if in_flight <= 1:
        for path in paths:
            yield path, reader
        return
    pending = iter(paths)
    window = collections.deque()  # type: Deque[Tuple[str, Future]]
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="msd-read-ahead")
    try:
        for path in itertools.islice(pending, in_flight):
            window.append((path, pool.submit(reader.read, path)))
        while window:
            path, future = window.popleft()
            yield path, PrefetchedRead(future)
            for next_path in itertools.islice(pending, 1):
                window.append((next_path, pool.submit(reader.read, next_path)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_bytes(path: str, endpoint_url: Optional[str] = None) -> bytes:
    """One file's bytes (local or s3://). For many files use one SourceReader."""
    return SourceReader(endpoint_url).read(path)
