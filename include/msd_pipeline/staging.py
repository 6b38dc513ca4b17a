"""Stage the songs for ingest: an existing folder (e.g. ../shared/msd/tracks), generated
songs, or the MSD subset archive downloaded from a URL and extracted.

Downloads resume after an interruption (HTTP ``Range`` on a ``.part`` file; file://
URLs resume by offset), are verified against a ``sha256:<hex>`` / ``md5:<hex>``
checksum when one is configured, and are extracted once (a marker file records it).
Everything is idempotent: a staged archive or generated set is reused by later runs.
"""
import glob
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from msdlib.config import PROJECT_ROOT, StagingSettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DOWNLOAD_ATTEMPTS = 3
COMPLETE_MARKER = ".staged"


class StagingError(RuntimeError):
    """The songs could not be staged (missing source, bad download, bad archive)."""


class ChecksumMismatch(StagingError):
    """A downloaded archive does not match its configured checksum."""


def stage_songs(staging: StagingSettings, ingest_source: str,
                project_root: str = PROJECT_ROOT) -> Dict[str, Any]:
    """Stage according to ``staging.mode``; returns StagedData
    ``{"source", "mode", "files", "detail"}`` with ``source`` ready for ``ingest.source``."""
    data_dir = Path(absolute(staging.data_dir, project_root))
    mode = staging.mode
    if mode == "auto":
        mode = "path" if source_exists(absolute(ingest_source, project_root)) else "generated"
        log.info("Staging mode auto resolved to %s", mode)
    if mode == "path":
        return _stage_path(absolute(ingest_source, project_root))
    if mode == "generated":
        return _stage_generated(data_dir, staging.generated_songs, staging.generated_seed)
    if mode == "url":
        return _stage_url(data_dir, staging.archive_url, staging.archive_checksum)
    raise StagingError("unknown staging mode {!r} (auto, path, url, generated)".format(mode))


def absolute(source: str, project_root: str = PROJECT_ROOT) -> str:
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
    return sum(1 for _ in Path(folder).rglob("*.h5"))


def _stage_path(source: str) -> Dict[str, Any]:
    if not source_exists(source):
        raise StagingError("song source not found or empty: {}".format(source))
    local_folder = "://" not in source and os.path.isdir(source)
    return {"source": source, "mode": "path",
            "files": count_songs(source) if local_folder else None, "detail": {}}


def _stage_generated(data_dir: Path, count: int, seed: int) -> Dict[str, Any]:
    target = data_dir / "generated" / "n{}-seed{}".format(count, seed)
    if not (target / COMPLETE_MARKER).exists():
        from msd_devtools.generator import generate_songs

        data_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".generating-", dir=str(data_dir)))
        generate_songs(str(scratch), count, seed=seed)
        (scratch / COMPLETE_MARKER).write_text("generated {} songs, seed {}\n".format(count, seed))
        _replace_dir(scratch, target)
        log.info("Generated %d songs in %s", count, target)
    return {"source": str(target), "mode": "generated", "files": count_songs(str(target)),
            "detail": {"count": count, "seed": seed}}


def _stage_url(data_dir: Path, url: str, checksum: str) -> Dict[str, Any]:
    archive_name = os.path.basename(urllib.parse.urlsplit(url).path) or "archive.tar.gz"
    archive = data_dir / "downloads" / archive_name
    digest = download(url, archive, checksum or None)
    extracted = extract_archive(archive, data_dir / "extracted" / _archive_stem(archive_name))
    return {"source": str(extracted), "mode": "url", "files": count_songs(str(extracted)),
            "detail": {"url": url, "archive": str(archive), "sha256": digest,
                       "checksum_verified": bool(checksum)}}


def download(url: str, destination: Path, checksum: Optional[str] = None,
             attempts: int = DOWNLOAD_ATTEMPTS, timeout: float = 60.0) -> str:
    """Download ``url`` to ``destination`` resuming any ``.part`` left by an earlier
    attempt; verify ``checksum``; return the file's sha256. A complete, verified file is
    not downloaded again."""
    algorithm, expected = parse_checksum(checksum)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        if expected is None or file_digest(destination, algorithm) == expected:
            log.info("Archive already downloaded: %s", destination)
            return file_digest(destination, "sha256")
        log.warning("Existing %s does not match %s; downloading again", destination, checksum)
        destination.unlink()
    partial = destination.with_name(destination.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            _fetch_into(url, partial, timeout)
            break
        except (OSError, http.client.HTTPException) as exc:
            if attempt == attempts:
                raise StagingError("download of {} failed after {} attempts: {}".format(
                    url, attempts, exc)) from exc
            log.warning("Download attempt %d of %s failed (%s); resuming", attempt, url, exc)
    if expected is not None:
        actual = file_digest(partial, algorithm)
        if actual != expected:
            partial.unlink()
            raise ChecksumMismatch("{} has {} {}, expected {}".format(url, algorithm, actual, expected))
    else:
        log.warning("No checksum configured for %s: download not verified", url)
    partial.rename(destination)
    return file_digest(destination, "sha256")


def _fetch_into(url: str, partial: Path, timeout: float) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    if urllib.parse.urlsplit(url).scheme == "file":
        _copy_local(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), partial, offset)
        return
    request = urllib.request.Request(url, headers={"Range": "bytes={}-".format(offset)} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            log.info("Server reports %s complete at %d bytes", url, offset)
            return
        raise
    with response:
        resumed = offset and response.status == 206
        if offset and not resumed:
            log.info("Server ignored the Range request; downloading %s from the start", url)
        elif resumed:
            log.info("Resuming %s at byte %d", url, offset)
        with open(partial, "ab" if resumed else "wb") as out:
            shutil.copyfileobj(response, out, CHUNK_BYTES)
        length = response.headers.get("Content-Length")
        expected = (offset if resumed else 0) + int(length) if length else None
        if expected is not None and partial.stat().st_size < expected:
            raise http.client.IncompleteRead(b"", expected - partial.stat().st_size)


def _copy_local(source: str, partial: Path, offset: int) -> None:
    with open(source, "rb") as src, open(partial, "ab") as out:
        src.seek(offset)
        shutil.copyfileobj(src, out, CHUNK_BYTES)


def parse_checksum(checksum: Optional[str]) -> Tuple[str, Optional[str]]:
    """``"sha256:<hex>"`` / ``"md5:<hex>"`` → (algorithm, hex); None → ("sha256", None)."""
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


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract a tar(.gz) archive into ``target`` once; members escaping it are refused."""
    if (target / COMPLETE_MARKER).exists():
        log.info("Archive already extracted in %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".extracting-", dir=str(target.parent)))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise StagingError("cannot extract {}: {}".format(archive, exc)) from exc
    (scratch / COMPLETE_MARKER).write_text("extracted from {}\n".format(archive.name))
    _replace_dir(scratch, target)
    log.info("Extracted %s into %s (%d songs)", archive, target, count_songs(str(target)))
    return target


def _replace_dir(scratch: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    scratch.rename(target)


def _archive_stem(name: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
