"""The one resumable reader and what reads through it: ``ResumableHttpStream`` (http(s) or
file URLs) reconnects with ``Range: bytes=<pos>-`` where a connection breaks and hashes
every byte; ``download`` keeps a ``.part`` file that resumes across runs and verifies
the archive's checksum; ``iter_archive_songs`` yields the songs of a ``.tar.gz`` read
as a stream, with no local copy.
"""
import hashlib
import http.client
import io
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

from msd_pipeline.staging.progress import MeteredReader, Progress
from msd_pipeline.staging.rules import SongSlice, StagingError, song_key

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60.0
MAX_RESUMES = 5
RETRY_PAUSE_SECONDS = 2.0
RESUMABLE_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class ChecksumMismatch(StagingError):
    """A downloaded archive does not match its configured checksum."""


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

    @property
    def size(self) -> Optional[int]:
        """The stream's total bytes (from byte 0) when the server said, else None."""
        return self._expected_end

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
    progress = Progress("Download of " + url, total=stream.size, done=stream.position)
    with stream, open(partial, "wb" if stream.restarted or not offset else "ab") as out:
        if offset and not stream.restarted:
            log.info("Resuming %s at byte %d", url, offset)
        shutil.copyfileobj(MeteredReader(stream, progress), out, CHUNK_BYTES)
    if expected is not None:
        actual = file_digest(partial, algorithm)
        if actual != expected:
            partial.unlink()
            raise ChecksumMismatch("{} has {} {}, expected {}".format(url, algorithm, actual, expected))
    else:
        log.warning("No checksum configured for %s: download not verified", url)
    partial.rename(destination)
    return file_digest(destination, "sha256")


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
