"""Stage the MSD songs in S3 for an EMR run.

Two ways:

* ``stage_archive``: stream the MSD subset archive (a ``.tar.gz`` at a URL) through
  ``tarfile`` straight into S3 — no local copy of the archive. The HTTP download resumes
  with a ``Range`` request where a connection broke; each song is uploaded with a managed
  (multipart above the threshold) upload carrying its SHA-256 as metadata, so a re-run
  skips every object already present with the same size and checksum. A manifest lists
  what the slice holds.
* ``stage_existing``: use songs already below an S3 prefix; a slice is copied server-side
  (no download) to its own prefix, with the same skip rule.
* ``stage_local_folder``: upload a local MSD tree (e.g. ../shared/msd/tracks or generated
  songs) with the same skip rule.

A slice is some of the top-level ``X/`` letters and/or the first N files (sorted; archive
order for an archive). Each source and slice has its own prefix
``<s3_root>/data/<source_label>/<slice_key>/`` so that ingesting that prefix reads
exactly the slice.
"""
import datetime
import hashlib
import http.client
import io
import json
import logging
import os
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from msd_pipeline.targets.emr.layout import join_uri, split_s3_uri
from msd_pipeline.staging import StagingError, parse_checksum

log = logging.getLogger(__name__)

SONG_SUFFIX = ".h5"
MANIFEST_NAME = "_manifest.json"
SHA256_METADATA = "sha256"
DOWNLOAD_CHUNK = 1024 * 1024
HTTP_TIMEOUT_SECONDS = 60
MAX_RESUMES = 5
RETRY_PAUSE_SECONDS = 2.0
RESUMABLE_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class SongSlice:
    letters: Tuple[str, ...] = ()
    max_files: int = 0

    @classmethod
    def of(cls, letters: Sequence[str], max_files: int) -> "SongSlice":
        cleaned = tuple(sorted({letter.strip().upper() for letter in letters if letter.strip()}))
        bad = [letter for letter in cleaned if len(letter) != 1 or not letter.isalnum()]
        if bad or max_files < 0:
            raise StagingError(f"a slice is single letters/digits and max_files >= 0, got "
                               f"letters={list(letters)} max_files={max_files}")
        return cls(cleaned, max_files)

    @property
    def key(self) -> str:
        """A path segment naming the slice: ``all``, ``letters-AB``, ``first-100``, ..."""
        parts = []
        if self.letters:
            parts.append("letters-" + "".join(self.letters))
        if self.max_files:
            parts.append(f"first-{self.max_files}")
        return "-".join(parts) or "all"

    def wants_letter(self, letter: str) -> bool:
        return not self.letters or letter.upper() in self.letters

    def is_full(self, count: int) -> bool:
        return bool(self.max_files) and count >= self.max_files


@dataclass
class StagingReport:
    source: str
    mode: str
    slice_key: str
    files: List[Dict[str, Any]] = field(default_factory=list)
    uploaded: int = 0
    skipped: int = 0
    uploaded_bytes: int = 0
    archive_digest: Optional[str] = None
    archive_verified: Optional[bool] = None

    def as_staged_data(self, manifest_uri: str) -> Dict[str, Any]:
        """The StagedData dict of the task graph (see graph-contract)."""
        return {"source": self.source, "mode": self.mode, "files": len(self.files),
                "detail": {"manifest_uri": manifest_uri, "slice": self.slice_key,
                           "uploaded": self.uploaded, "skipped": self.skipped,
                           "uploaded_bytes": self.uploaded_bytes,
                           "archive_digest": self.archive_digest,
                           "archive_verified": self.archive_verified}}


def song_key(member_name: str) -> Optional[str]:
    """``MillionSongSubset/data/A/B/C/TRABC12.h5`` → ``A/B/C/TRABC12.h5``; None for other
    members (folders, READMEs, files outside MSD's X/Y/Z tree)."""
    parts = member_name.strip("/").split("/")
    if len(parts) < 4 or not parts[-1].endswith(SONG_SUFFIX):
        return None
    tree = parts[-4:-1]
    if not all(len(part) == 1 and part.isalnum() for part in tree):
        return None
    return "/".join(parts[-4:])


def slice_prefix(data_prefix: str, source_label: str, song_slice: SongSlice) -> str:
    return join_uri(data_prefix, source_label, song_slice.key)


def archive_label(url: str) -> str:
    """``http://host/x/millionsongsubset.tar.gz`` → ``millionsongsubset``."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "archive"
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


# -- the resumable HTTP stream -----------------------------------------------------

class ResumableHttpStream(io.RawIOBase):
    """A read-only stream of ``url`` that reconnects with ``Range: bytes=<pos>-`` when the
    connection fails, and hashes every byte it delivers (``digest``, ``algorithm``)."""

    def __init__(self, url: str, algorithm: str = "sha256",
                 opener: Callable[..., Any] = urllib.request.urlopen,
                 max_resumes: int = MAX_RESUMES, pause_seconds: float = RETRY_PAUSE_SECONDS):
        super().__init__()
        self.url = url
        self.position = 0
        self.resumes = 0
        self.digest = hashlib.new(algorithm)
        self._opener = opener
        self._max_resumes = max_resumes
        self._pause_seconds = pause_seconds
        self._expected_end: Optional[int] = None
        self._response = self._open()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            try:
                data = self._response.read(len(buffer))
            except RESUMABLE_ERRORS as exc:
                self._resume(exc)
                continue
            if data or self._expected_end is None or self.position >= self._expected_end:
                break
            self._resume(ConnectionError(f"connection closed {self._expected_end - self.position} "
                                         f"bytes early"))
        buffer[:len(data)] = data
        self.position += len(data)
        self.digest.update(data)
        return len(data)

    def close(self) -> None:
        self._response.close()
        super().close()

    def _open(self):
        headers = {"Range": f"bytes={self.position}-"} if self.position else {}
        request = urllib.request.Request(self.url, headers=headers)
        response = self._opener(request, timeout=HTTP_TIMEOUT_SECONDS)
        if self.position and response.status != 206:
            response.close()
            raise StagingError(f"{self.url} does not support resuming (HTTP {response.status} "
                               f"to a Range request)")
        length = response.headers.get("Content-Length")
        self._expected_end = self.position + int(length) if length else None
        return response

    def _resume(self, error: Exception) -> None:
        self.resumes += 1
        if self.resumes > self._max_resumes:
            raise StagingError(f"download of {self.url} failed {self.resumes} times at byte "
                               f"{self.position}: {error}") from error
        log.warning("Download of %s broke at byte %d (%s); resuming", self.url, self.position, error)
        self._response.close()
        time.sleep(self._pause_seconds)
        self._response = self._open()


# -- uploads with the skip rule ---------------------------------------------------------

def object_matches(s3_hook, bucket: str, key: str, size: int, sha256: str) -> bool:
    """True when ``key`` exists with this size and SHA-256 metadata."""
    head = s3_hook.head_object(key=key, bucket_name=bucket)
    return (head is not None and head["ContentLength"] == size
            and head.get("Metadata", {}).get(SHA256_METADATA) == sha256)


def upload_song(s3_hook, bucket: str, key: str, data: bytes) -> Tuple[Dict[str, Any], bool]:
    """Upload one song unless it is already there; returns (manifest entry, uploaded?)."""
    digest = hashlib.sha256(data).hexdigest()
    entry = {"key": key, "size": len(data), "sha256": digest}
    if object_matches(s3_hook, bucket, key, len(data), digest):
        return entry, False
    s3_hook.get_conn().upload_fileobj(io.BytesIO(data), bucket, key,
                                      ExtraArgs={"Metadata": {SHA256_METADATA: digest}},
                                      Config=s3_hook.transfer_config)
    return entry, True


def write_manifest(s3_hook, prefix_uri: str, report: StagingReport, extra: Dict[str, Any]) -> str:
    manifest = {"source": report.source, "mode": report.mode, "slice": report.slice_key,
                "files": report.files, "count": len(report.files), "uploaded": report.uploaded,
                "skipped": report.skipped, "archive_digest": report.archive_digest,
                "archive_verified": report.archive_verified,
                "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), **extra}
    uri = join_uri(prefix_uri, MANIFEST_NAME)
    bucket, key = split_s3_uri(uri)
    s3_hook.load_bytes(json.dumps(manifest, indent=2).encode("utf-8"), key=key,
                       bucket_name=bucket, replace=True)
    return uri


# -- the two modes ------------------------------------------------------------------------

def iter_archive_songs(stream: io.RawIOBase, song_slice: SongSlice) -> Iterator[Tuple[str, bytes]]:
    """(relative key, bytes) of the archive's songs in the slice, in archive order."""
    with tarfile.open(fileobj=io.BufferedReader(stream, DOWNLOAD_CHUNK), mode="r|gz") as archive:
        count = 0
        for member in archive:
            key = song_key(member.name)
            if not member.isfile() or key is None or not song_slice.wants_letter(key[0]):
                continue
            handle = archive.extractfile(member)
            yield key, handle.read()
            count += 1
            if song_slice.is_full(count):
                return


def stage_archive(s3_hook, url: str, data_prefix: str, song_slice: SongSlice,
                  checksum: str = "",
                  stream_factory: Callable[..., ResumableHttpStream] = ResumableHttpStream
                  ) -> Dict[str, Any]:
    """Stream the archive at ``url`` into the slice's prefix; ``checksum`` is
    ``sha256:<hex>`` / ``md5:<hex>`` or empty. Returns StagedData."""
    algorithm, expected = parse_checksum(checksum)
    prefix = slice_prefix(data_prefix, archive_label(url), song_slice)
    bucket, key_prefix = split_s3_uri(prefix)
    report = StagingReport(source=prefix + "/", mode="archive", slice_key=song_slice.key)
    stream = stream_factory(url, algorithm)
    try:
        for relative_key, data in iter_archive_songs(stream, song_slice):
            entry, uploaded = upload_song(s3_hook, bucket, f"{key_prefix}/{relative_key}", data)
            _count(report, entry, uploaded)
        read_to_end = not song_slice.is_full(len(report.files))
        if read_to_end:
            _drain(stream)
    finally:
        stream.close()
    if not report.files:
        raise StagingError(f"{url} holds no MSD song files for slice {song_slice.key}")
    _verify_archive(report, stream, read_to_end, algorithm, expected, url)
    manifest_uri = write_manifest(s3_hook, prefix, report,
                                  {"archive_url": url, "download_resumes": stream.resumes})
    log.info("Staged %d songs from %s in %s (%d uploaded, %d already there)",
             len(report.files), url, prefix, report.uploaded, report.skipped)
    return report.as_staged_data(manifest_uri)


def stage_existing(s3_hook, existing_prefix: str, data_prefix: str,
                   song_slice: SongSlice) -> Dict[str, Any]:
    """Use the songs below ``existing_prefix``; a slice is copied server-side to its prefix."""
    bucket, key_prefix = split_s3_uri(existing_prefix.rstrip("/") + "/")
    keys = _slice_keys(s3_hook.list_keys(bucket_name=bucket, prefix=key_prefix), key_prefix,
                       song_slice)
    if not keys:
        raise StagingError(f"{existing_prefix} holds no MSD song files for slice {song_slice.key}")
    if song_slice == SongSlice():
        report = StagingReport(source=f"s3://{bucket}/{key_prefix}", mode="s3_prefix",
                               slice_key=song_slice.key,
                               files=[{"key": key} for key in keys])
        return report.as_staged_data(manifest_uri="")
    prefix = slice_prefix(data_prefix, "s3-" + _label(key_prefix or bucket), song_slice)
    dest_bucket, dest_prefix = split_s3_uri(prefix)
    report = StagingReport(source=prefix + "/", mode="s3_prefix_slice", slice_key=song_slice.key)
    for key in keys:
        head = s3_hook.head_object(key=key, bucket_name=bucket)
        entry = {"key": f"{dest_prefix}/{key[len(key_prefix):]}", "size": head["ContentLength"],
                 "etag": head["ETag"]}
        present = s3_hook.head_object(key=entry["key"], bucket_name=dest_bucket)
        copied = present is None or (present["ContentLength"], present["ETag"]) != (
            entry["size"], entry["etag"])
        if copied:
            s3_hook.copy_object(key, entry["key"], source_bucket_name=bucket,
                                dest_bucket_name=dest_bucket)
        _count(report, entry, copied)
    manifest_uri = write_manifest(s3_hook, prefix, report, {"copied_from": existing_prefix})
    return report.as_staged_data(manifest_uri)


def stage_local_folder(s3_hook, folder: str, data_prefix: str, song_slice: SongSlice,
                       source_label: str) -> Dict[str, Any]:
    """Upload the songs of a local MSD tree (``X/Y/Z/*.h5``) in the slice."""
    root = Path(folder)
    relative = [str(path.relative_to(root)) for path in root.rglob("*" + SONG_SUFFIX)]
    keys = _slice_keys(relative, "", song_slice)
    if not keys:
        raise StagingError(f"{folder} holds no MSD song files for slice {song_slice.key}")
    prefix = slice_prefix(data_prefix, source_label, song_slice)
    bucket, key_prefix = split_s3_uri(prefix)
    report = StagingReport(source=prefix + "/", mode="local_folder", slice_key=song_slice.key)
    for key in keys:
        entry, uploaded = upload_song(s3_hook, bucket, f"{key_prefix}/{key}",
                                      (root / key).read_bytes())
        _count(report, entry, uploaded)
    manifest_uri = write_manifest(s3_hook, prefix, report, {"uploaded_from": str(root)})
    log.info("Staged %d songs from %s in %s (%d uploaded, %d already there)",
             len(keys), folder, prefix, report.uploaded, report.skipped)
    return report.as_staged_data(manifest_uri)


def _label(path: str) -> str:
    return "-".join(part for part in path.strip("/").split("/") if part) or "root"


def _slice_keys(keys: List[str], key_prefix: str, song_slice: SongSlice) -> List[str]:
    selected = []
    for key in sorted(keys):
        song = song_key(key[len(key_prefix):])
        if song is None or not song_slice.wants_letter(song[0]):
            continue
        selected.append(key)
        if song_slice.is_full(len(selected)):
            break
    return selected


def _count(report: StagingReport, entry: Dict[str, Any], uploaded: bool) -> None:
    report.files.append(entry)
    if uploaded:
        report.uploaded += 1
        report.uploaded_bytes += entry["size"]
    else:
        report.skipped += 1


def _drain(stream: io.RawIOBase) -> None:
    while stream.read(DOWNLOAD_CHUNK):
        pass


def _verify_archive(report: StagingReport, stream: ResumableHttpStream, read_to_end: bool,
                    algorithm: str, expected: Optional[str], url: str) -> None:
    if not read_to_end:
        return  # a first-N slice stops early: the archive's checksum cannot be known
    report.archive_digest = f"{algorithm}:{stream.digest.hexdigest()}"
    if expected:
        report.archive_verified = stream.digest.hexdigest() == expected
        if not report.archive_verified:
            raise StagingError(f"checksum mismatch for {url}: expected {algorithm}:{expected}, "
                               f"got {report.archive_digest}")
