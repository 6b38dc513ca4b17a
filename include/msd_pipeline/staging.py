"""Stage the MSD songs for ingest, for every target: one module, one resumable reader,
one "auto" rule, two sinks.

Sources (``staging.mode``):

* ``path``: an existing folder, glob, ``@list`` file or ``s3://`` prefix (``ingest.source``);
* ``generated``: MSD-format songs made by ``msd_devtools.generator`` (cached per count/seed);
* ``url``: the MSD subset archive (a ``.tar.gz``) downloaded from ``staging.archive_url``;
* ``auto``: the source when it exists, else the target's fallback (``resolve_mode``).

Sinks: a local folder (``FolderSink``: the local target) or an S3 prefix
(``S3PrefixSink``: the EMR target). The one reader, ``ResumableHttpStream``, reconnects
with ``Range: bytes=<pos>-`` where a connection breaks and hashes every byte. For a
folder, the archive is first downloaded to ``data/downloads`` (a ``.part`` file resumes
across runs) and its songs are then written out; for S3 the archive streams through
``tarfile`` straight into the prefix, with no local copy. Both sinks skip a song already
present with the same size and SHA-256, so re-runs are idempotent and cheap.

A slice (``SongSlice``) keeps some of the top-level ``X/`` letters and/or the first N
files; each source and slice has its own location ``<root>/<source_label>/<slice_key>/``
holding a ``_manifest.json`` of what it holds.
"""
import datetime
import glob
import hashlib
import http.client
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from msdlib.config import StagingSettings
from msdlib.io.sources import is_s3, split_s3_uri
from msd_pipeline.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

SONG_SUFFIX = ".h5"
MANIFEST_NAME = "_manifest.json"
COMPLETE_MARKER = ".staged"
SHA256_METADATA = "sha256"
CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60.0
MAX_RESUMES = 5
RETRY_PAUSE_SECONDS = 2.0
RESUMABLE_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
MODES = ("auto", "path", "url", "generated")


class StagingError(RuntimeError):
    """The songs could not be staged (missing source, bad download, bad archive)."""


class ChecksumMismatch(StagingError):
    """A downloaded archive does not match its configured checksum."""


# -- the "auto" rule and local sources -----------------------------------------------

def resolve_mode(mode: str, source: str, fallback: str) -> str:
    """``auto`` → ``path`` when ``source`` exists, else the target's ``fallback``
    (``generated`` locally, ``url`` on EMR); any other mode as it is."""
    if mode not in MODES:
        raise StagingError("unknown staging mode {!r} ({})".format(mode, ", ".join(MODES)))
    if mode != "auto":
        return mode
    resolved = "path" if source_exists(source) else fallback
    log.info("Staging mode auto resolved to %s for %s", resolved, source)
    return resolved


def absolute(source: str, project_root: str = str(PROJECT_ROOT)) -> str:
    """``source`` with a relative local path (or @list file) made absolute under the project."""
    if "://" in source:
        return source
    prefix, path = ("@", source[1:]) if source.startswith("@") else ("", source)
    return prefix + os.path.normpath(os.path.join(project_root, path))


def source_exists(source: str) -> bool:
    if "://" in source:
        return True
    if source.startswith("@"):
        return os.path.isfile(source[1:])
    if glob.has_magic(source):
        return bool(glob.glob(source, recursive=True))
    return os.path.isdir(source) and count_songs(source) > 0


def count_songs(folder: str) -> int:
    return sum(1 for _ in Path(folder).rglob("*" + SONG_SUFFIX))


def generated_songs(data_dir: str, count: int, seed: int) -> str:
    """The folder of ``count`` generated songs for ``seed``, made once and reused."""
    target = Path(data_dir) / "generated" / "n{}-seed{}".format(count, seed)
    if not (target / COMPLETE_MARKER).exists():
        from msd_devtools.generator import generate_songs

        scratch = _scratch_dir(target)
        generate_songs(str(scratch), count, seed=seed)
        (scratch / COMPLETE_MARKER).write_text("generated {} songs, seed {}\n".format(count, seed))
        _replace_dir(scratch, target)
        log.info("Generated %d songs in %s", count, target)
    return str(target)


# -- slices and the archive's songs -----------------------------------------------------

@dataclass(frozen=True)
class SongSlice:
    letters: Tuple[str, ...] = ()
    max_files: int = 0

    @classmethod
    def of(cls, letters: Sequence[str], max_files: int) -> "SongSlice":
        cleaned = tuple(sorted({letter.strip().upper() for letter in letters if letter.strip()}))
        bad = [letter for letter in cleaned if len(letter) != 1 or not letter.isalnum()]
        if bad or max_files < 0:
            raise StagingError("a slice is single letters/digits and max_files >= 0, got "
                               "letters={} max_files={}".format(list(letters), max_files))
        return cls(cleaned, max_files)

    @property
    def key(self) -> str:
        """A path segment naming the slice: ``all``, ``letters-AB``, ``first-100``, ..."""
        parts = []
        if self.letters:
            parts.append("letters-" + "".join(self.letters))
        if self.max_files:
            parts.append("first-{}".format(self.max_files))
        return "-".join(parts) or "all"

    def wants_letter(self, letter: str) -> bool:
        return not self.letters or letter.upper() in self.letters

    def is_full(self, count: int) -> bool:
        return bool(self.max_files) and count >= self.max_files


def song_key(member_name: str) -> Optional[str]:
    """``MillionSongSubset/data/A/B/C/TRABC12.h5`` → ``A/B/C/TRABC12.h5``; None for other
    members (folders, READMEs, files outside MSD's X/Y/Z tree, ``..`` tricks)."""
    parts = member_name.strip("/").split("/")
    if len(parts) < 4 or not parts[-1].endswith(SONG_SUFFIX) or parts[-1].startswith("."):
        return None
    tree = parts[-4:-1]
    if not all(len(part) == 1 and part.isalnum() for part in tree):
        return None
    return "/".join(parts[-4:])


def archive_label(url: str) -> str:
    """``http://host/x/millionsongsubset.tar.gz`` → ``millionsongsubset``."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "archive"
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def iter_archive_songs(stream: io.RawIOBase, song_slice: SongSlice) -> Iterator[Tuple[str, bytes]]:
    """(relative key, bytes) of the archive's songs in the slice, in archive order."""
    with tarfile.open(fileobj=io.BufferedReader(stream, CHUNK_BYTES), mode="r|*") as archive:
        count = 0
        for member in archive:
            key = song_key(member.name)
            if not member.isfile() or key is None or not song_slice.wants_letter(key[0]):
                continue
            yield key, archive.extractfile(member).read()
            count += 1
            if song_slice.is_full(count):
                return


def slice_keys(keys: List[str], key_prefix: str, song_slice: SongSlice) -> List[str]:
    """The keys (below ``key_prefix``) of the songs in the slice, sorted."""
    selected = []
    for key in sorted(keys):
        song = song_key(key[len(key_prefix):])
        if song is None or not song_slice.wants_letter(song[0]):
            continue
        selected.append(key)
        if song_slice.is_full(len(selected)):
            break
    return selected


# -- the one resumable reader ---------------------------------------------------------------

class ResumableHttpStream(io.RawIOBase):
    """A read-only stream of ``url`` (http(s) or file) from byte ``start`` that reconnects
    with ``Range: bytes=<pos>-`` when the connection fails, and hashes every byte it
    delivers (``digest``). ``restarted`` is True when the server ignored a Range request
    and the stream began again at byte 0."""

    def __init__(self, url: str, algorithm: str = "sha256", start: int = 0,
                 opener: Callable[..., Any] = urllib.request.urlopen,
                 max_resumes: int = MAX_RESUMES, pause_seconds: float = RETRY_PAUSE_SECONDS,
                 timeout: float = HTTP_TIMEOUT_SECONDS) -> None:
        super().__init__()
        self.url = url
        self.position = start
        self.resumes = 0
        self.restarted = False
        self.digest = hashlib.new(algorithm)
        self._opener = opener
        self._max_resumes = max_resumes
        self._pause_seconds = pause_seconds
        self._timeout = timeout
        self._expected_end = None  # type: Optional[int]
        self._response = None
        while self._response is None:
            try:
                self._response = self._open(first=True)
            except RESUMABLE_ERRORS as exc:
                self._retry(exc)

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
            self._resume(ConnectionError("connection closed {} bytes early".format(
                self._expected_end - self.position)))
        buffer[:len(data)] = data
        self.position += len(data)
        self.digest.update(data)
        return len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        super().close()

    def _open(self, first: bool = False):
        if urllib.parse.urlsplit(self.url).scheme == "file":
            handle = open(urllib.request.url2pathname(urllib.parse.urlsplit(self.url).path), "rb")
            handle.seek(self.position)
            self._expected_end = os.fstat(handle.fileno()).st_size
            return handle
        headers = {"Range": "bytes={}-".format(self.position)} if self.position else {}
        try:
            response = self._opener(urllib.request.Request(self.url, headers=headers),
                                    timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and self.position:  # nothing left after ``position``
                self._expected_end = self.position
                return io.BytesIO(b"")
            raise
        if self.position and response.status != 206:
            if not first:
                response.close()
                raise StagingError("{} does not support resuming (HTTP {} to a Range "
                                   "request)".format(self.url, response.status))
            log.info("Server ignored the Range request; reading %s from the start", self.url)
            self.position, self.restarted = 0, True
        length = response.headers.get("Content-Length")
        self._expected_end = self.position + int(length) if length else None
        return response

    def _resume(self, error: Exception) -> None:
        self._retry(error)
        self._response.close()
        self._response = self._open()

    def _retry(self, error: Exception) -> None:
        self.resumes += 1
        if self.resumes > self._max_resumes:
            raise StagingError("download of {} failed after {} attempts at byte {}: {}".format(
                self.url, self.resumes, self.position, error)) from error
        log.warning("Download of %s broke at byte %d (%s); resuming", self.url, self.position, error)
        time.sleep(self._pause_seconds)


def parse_checksum(checksum: Optional[str]) -> Tuple[str, Optional[str]]:
    """``"sha256:<hex>"`` / ``"md5:<hex>"`` → (algorithm, hex); None or "" → ("sha256", None)."""
    if not checksum:
        return "sha256", None
    algorithm, sep, value = checksum.partition(":")
    if not sep or algorithm not in ("sha256", "md5") or not value:
        raise StagingError("checksum must be sha256:<hex> or md5:<hex>, got {!r}".format(checksum))
    return algorithm, value.lower()


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: Path, checksum: Optional[str] = None,
             attempts: int = MAX_RESUMES, timeout: float = HTTP_TIMEOUT_SECONDS,
             pause_seconds: float = RETRY_PAUSE_SECONDS) -> str:
    """Download ``url`` to ``destination``, resuming any ``.part`` left by an earlier run;
    verify ``checksum``; return the file's sha256. A complete, verified file is not
    downloaded again."""
    algorithm, expected = parse_checksum(checksum)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        if expected is None or file_digest(destination, algorithm) == expected:
            log.info("Archive already downloaded: %s", destination)
            return file_digest(destination, "sha256")
        log.warning("Existing %s does not match %s; downloading again", destination, checksum)
        destination.unlink()
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    stream = ResumableHttpStream(url, start=offset, max_resumes=attempts - 1,
                                 pause_seconds=pause_seconds, timeout=timeout)
    with stream, open(partial, "wb" if stream.restarted or not offset else "ab") as out:
        if offset and not stream.restarted:
            log.info("Resuming %s at byte %d", url, offset)
        shutil.copyfileobj(stream, out, CHUNK_BYTES)
    if expected is not None:
        actual = file_digest(partial, algorithm)
        if actual != expected:
            partial.unlink()
            raise ChecksumMismatch("{} has {} {}, expected {}".format(url, algorithm, actual, expected))
    else:
        log.warning("No checksum configured for %s: download not verified", url)
    partial.rename(destination)
    return file_digest(destination, "sha256")


# -- the two sinks -----------------------------------------------------------------------------

@dataclass
class StagingReport:
    """What one staging wrote into its sink; becomes the manifest and the StagedData."""
    source: str
    mode: str
    slice_key: str
    files: List[Dict[str, Any]] = field(default_factory=list)
    uploaded: int = 0
    skipped: int = 0
    uploaded_bytes: int = 0
    archive_digest: Optional[str] = None
    archive_verified: Optional[bool] = None

    def count(self, entry: Dict[str, Any], written: bool) -> None:
        self.files.append(entry)
        if written:
            self.uploaded += 1
            self.uploaded_bytes += entry["size"]
        else:
            self.skipped += 1

    def manifest(self, extra: Dict[str, Any]) -> Dict[str, Any]:
        return {"source": self.source, "mode": self.mode, "slice": self.slice_key,
                "files": self.files, "count": len(self.files), "uploaded": self.uploaded,
                "skipped": self.skipped, "uploaded_bytes": self.uploaded_bytes,
                "archive_digest": self.archive_digest,
                "archive_verified": self.archive_verified,
                "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), **extra}

    def as_staged_data(self, manifest_uri: str) -> Dict[str, Any]:
        """The StagedData dict of the task graph (see ``PipelineTarget.stage_data``)."""
        return {"source": self.source, "mode": self.mode, "files": len(self.files),
                "detail": {"manifest_uri": manifest_uri, "slice": self.slice_key,
                           "uploaded": self.uploaded, "skipped": self.skipped,
                           "uploaded_bytes": self.uploaded_bytes,
                           "archive_digest": self.archive_digest,
                           "archive_verified": self.archive_verified}}


class FolderSink:
    """Songs written below a local folder ``root`` (``<root>/<label>/<slice>/X/Y/Z/*.h5``)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def location(self, source_label: str, song_slice: SongSlice) -> str:
        return os.path.join(self.root, source_label, song_slice.key)

    def put(self, location: str, key: str, data: bytes) -> Tuple[Dict[str, Any], bool]:
        entry = {"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        path = Path(location) / key
        if path.is_file() and path.stat().st_size == len(data) \
                and file_digest(path, "sha256") == entry["sha256"]:
            return entry, False
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name("." + path.name + ".tmp")
        scratch.write_bytes(data)
        scratch.replace(path)
        return entry, True

    def write_manifest(self, location: str, manifest: Dict[str, Any]) -> str:
        path = os.path.join(location, MANIFEST_NAME)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
        return path

    def is_complete(self, location: str) -> bool:
        return os.path.isfile(os.path.join(location, MANIFEST_NAME))

    def read_manifest(self, location: str) -> Dict[str, Any]:
        with open(os.path.join(location, MANIFEST_NAME), encoding="utf-8") as handle:
            return json.load(handle)


class S3PrefixSink:
    """Songs uploaded below an S3 prefix ``root`` through the Amazon provider's S3Hook; each
    object carries its SHA-256 as metadata for the skip rule."""

    def __init__(self, s3_hook: Any, root: str) -> None:
        self.s3_hook = s3_hook
        self.root = root.rstrip("/")
        split_s3_uri(self.root)

    def location(self, source_label: str, song_slice: SongSlice) -> str:
        return "/".join([self.root, source_label, song_slice.key])

    def put(self, location: str, key: str, data: bytes) -> Tuple[Dict[str, Any], bool]:
        bucket, prefix = split_s3_uri(location)
        object_key = prefix.rstrip("/") + "/" + key
        digest = hashlib.sha256(data).hexdigest()
        entry = {"key": object_key, "size": len(data), "sha256": digest}
        head = self.s3_hook.head_object(key=object_key, bucket_name=bucket)
        if head is not None and head["ContentLength"] == len(data) \
                and head.get("Metadata", {}).get(SHA256_METADATA) == digest:
            return entry, False
        self.s3_hook.get_conn().upload_fileobj(
            io.BytesIO(data), bucket, object_key,
            ExtraArgs={"Metadata": {SHA256_METADATA: digest}}, Config=self.s3_hook.transfer_config)
        return entry, True

    def write_manifest(self, location: str, manifest: Dict[str, Any]) -> str:
        uri = location.rstrip("/") + "/" + MANIFEST_NAME
        bucket, key = split_s3_uri(uri)
        self.s3_hook.load_bytes(json.dumps(manifest, indent=2).encode("utf-8"), key=key,
                                bucket_name=bucket, replace=True)
        return uri


# -- staging into a sink ------------------------------------------------------------------------

def stage_songs(staging: StagingSettings, ingest_source: str, song_slice: SongSlice = SongSlice(),
                fallback: str = "generated", project_root: str = str(PROJECT_ROOT)) -> Dict[str, Any]:
    """Local staging (the folder sink) by ``staging.mode``; returns StagedData
    ``{"source", "mode", "files", "detail"}`` with ``source`` ready for ``ingest.source``.
    A local ``path`` is used where it is; a slice of it is the ingest's ``max_files``."""
    data_dir = absolute(staging.data_dir, project_root)
    source = absolute(ingest_source, project_root)
    mode = resolve_mode(staging.mode, source, fallback)
    if mode == "path":
        if not source_exists(source):
            raise StagingError("song source not found or empty: {}".format(source))
        local_folder = "://" not in source and os.path.isdir(source)
        return {"source": source, "mode": "path",
                "files": count_songs(source) if local_folder else None, "detail": {}}
    if mode == "generated":
        folder = generated_songs(data_dir, staging.generated_songs, staging.generated_seed)
        return {"source": folder, "mode": "generated", "files": count_songs(folder),
                "detail": {"count": staging.generated_songs, "seed": staging.generated_seed}}
    return stage_downloaded_archive(FolderSink(os.path.join(data_dir, "extracted")),
                                    staging.archive_url, os.path.join(data_dir, "downloads"),
                                    song_slice, staging.archive_checksum)


def stage_downloaded_archive(sink: FolderSink, url: str, downloads_dir: str,
                             song_slice: SongSlice, checksum: str = "") -> Dict[str, Any]:
    """Download the archive (resumable across runs, verified), then write its songs into
    the folder sink; a completed slice is reused as it is."""
    location = sink.location(archive_label(url), song_slice)
    if sink.is_complete(location):
        log.info("Archive songs already staged in %s", location)
        manifest = sink.read_manifest(location)
        return _manifest_as_staged_data(manifest, os.path.join(location, MANIFEST_NAME))
    archive = Path(downloads_dir) / (os.path.basename(urllib.parse.urlsplit(url).path) or "archive.tar.gz")
    digest = download(url, archive, checksum or None)
    report = StagingReport(source=location, mode="url", slice_key=song_slice.key,
                           archive_digest="sha256:" + digest, archive_verified=bool(checksum))
    try:
        with open(archive, "rb") as handle:
            for key, data in iter_archive_songs(handle, song_slice):
                report.count(*sink.put(location, key, data))
    except (tarfile.TarError, OSError) as exc:
        raise StagingError("cannot extract {}: {}".format(archive, exc)) from exc
    return _finish(sink, location, report, {"archive_url": url, "archive": str(archive)})


def stage_archive(sink: Any, url: str, song_slice: SongSlice, checksum: str = "",
                  stream_factory: Callable[..., ResumableHttpStream] = ResumableHttpStream
                  ) -> Dict[str, Any]:
    """Stream the archive at ``url`` through ``tarfile`` into the sink, with no local
    copy; ``checksum`` is ``sha256:<hex>`` / ``md5:<hex>`` or empty. Returns StagedData."""
    algorithm, expected = parse_checksum(checksum)
    location = sink.location(archive_label(url), song_slice)
    report = StagingReport(source=location + "/", mode="archive", slice_key=song_slice.key)
    stream = stream_factory(url, algorithm)
    try:
        for key, data in iter_archive_songs(stream, song_slice):
            report.count(*sink.put(location, key, data))
        read_to_end = not song_slice.is_full(len(report.files))
        if read_to_end:
            while stream.read(CHUNK_BYTES):
                pass
    finally:
        stream.close()
    if read_to_end:  # a first-N slice stops early: the archive's checksum cannot be known
        report.archive_digest = "{}:{}".format(algorithm, stream.digest.hexdigest())
        if expected:
            report.archive_verified = stream.digest.hexdigest() == expected
            if not report.archive_verified:
                raise StagingError("checksum mismatch for {}: expected {}:{}, got {}".format(
                    url, algorithm, expected, report.archive_digest))
    return _finish(sink, location, report, {"archive_url": url, "download_resumes": stream.resumes})


def stage_local_folder(sink: Any, folder: str, song_slice: SongSlice, source_label: str) -> Dict[str, Any]:
    """Copy the songs of a local MSD tree (``X/Y/Z/*.h5``) in the slice into the sink."""
    root = Path(folder)
    keys = slice_keys([str(path.relative_to(root)) for path in root.rglob("*" + SONG_SUFFIX)],
                      "", song_slice)
    location = sink.location(source_label, song_slice)
    report = StagingReport(source=location + "/", mode="local_folder", slice_key=song_slice.key)
    for key in keys:
        report.count(*sink.put(location, key, (root / key).read_bytes()))
    return _finish(sink, location, report, {"uploaded_from": str(root)})


def stage_existing(s3_hook: Any, existing_prefix: str, sink: S3PrefixSink,
                   song_slice: SongSlice) -> Dict[str, Any]:
    """Use the songs below an existing S3 prefix; a slice is copied server-side into the sink."""
    bucket, key_prefix = split_s3_uri(existing_prefix.rstrip("/") + "/")
    keys = slice_keys(s3_hook.list_keys(bucket_name=bucket, prefix=key_prefix), key_prefix, song_slice)
    if not keys:
        raise StagingError("{} holds no MSD song files for slice {}".format(existing_prefix, song_slice.key))
    if song_slice == SongSlice():
        report = StagingReport(source="s3://{}/{}".format(bucket, key_prefix), mode="s3_prefix",
                               slice_key=song_slice.key, files=[{"key": key} for key in keys])
        return report.as_staged_data(manifest_uri="")
    location = sink.location("s3-" + _label(key_prefix or bucket), song_slice)
    dest_bucket, dest_prefix = split_s3_uri(location)
    report = StagingReport(source=location + "/", mode="s3_prefix_slice", slice_key=song_slice.key)
    for key in keys:
        head = s3_hook.head_object(key=key, bucket_name=bucket)
        entry = {"key": "{}/{}".format(dest_prefix, key[len(key_prefix):]),
                 "size": head["ContentLength"], "etag": head["ETag"]}
        present = s3_hook.head_object(key=entry["key"], bucket_name=dest_bucket)
        copied = present is None or (present["ContentLength"], present["ETag"]) != (
            entry["size"], entry["etag"])
        if copied:
            s3_hook.copy_object(key, entry["key"], source_bucket_name=bucket,
                                dest_bucket_name=dest_bucket)
        report.count(entry, copied)
    return _finish(sink, location, report, {"copied_from": existing_prefix})


def stage_to_s3(staging: StagingSettings, ingest_source: str, s3_hook: Any, data_prefix: str,
                song_slice: SongSlice) -> Dict[str, Any]:
    """EMR staging (the S3 sink): an ``s3://`` source as it is (or a slice of it), a local
    or generated folder uploaded, or the archive streamed from its URL (auto: the source
    when it exists, else the archive)."""
    sink = S3PrefixSink(s3_hook, data_prefix)
    source = absolute(ingest_source)
    mode = resolve_mode(staging.mode, source, fallback="url")
    if mode == "url":
        return stage_archive(sink, staging.archive_url, song_slice, staging.archive_checksum)
    if mode == "path" and is_s3(source):
        return stage_existing(s3_hook, source, sink, song_slice)
    local = stage_songs(replace(staging, mode=mode), source)
    label = "local-" + local["source"].rstrip("/").rsplit("/", 1)[-1]
    return stage_local_folder(sink, local["source"], song_slice, label)


def _finish(sink: Any, location: str, report: StagingReport, extra: Dict[str, Any]) -> Dict[str, Any]:
    if not report.files:
        raise StagingError("{} holds no MSD song files for slice {}".format(
            extra.get("archive_url") or extra.get("uploaded_from") or location, report.slice_key))
    manifest_uri = sink.write_manifest(location, report.manifest(extra))
    log.info("Staged %d songs in %s (%d written, %d already there)", len(report.files),
             location, report.uploaded, report.skipped)
    return report.as_staged_data(manifest_uri)


def _manifest_as_staged_data(manifest: Dict[str, Any], manifest_uri: str) -> Dict[str, Any]:
    report = StagingReport(source=manifest["source"], mode=manifest["mode"],
                           slice_key=manifest["slice"], files=manifest["files"],
                           uploaded=manifest["uploaded"], skipped=manifest["skipped"],
                           uploaded_bytes=manifest["uploaded_bytes"],
                           archive_digest=manifest["archive_digest"],
                           archive_verified=manifest["archive_verified"])
    return report.as_staged_data(manifest_uri)


def _label(path: str) -> str:
    return "-".join(part for part in path.strip("/").split("/") if part) or "root"


def _scratch_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=str(target.parent)))


def _replace_dir(scratch: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    scratch.rename(target)
