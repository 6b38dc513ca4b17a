"""The two sinks and the ways songs get into one.

Sinks: a local folder (``FolderSink``: the spark-submit target) or an S3 prefix
(``S3PrefixSink``: the EMR target). Both skip a song already present with the same size
and SHA-256, so re-runs are idempotent and cheap, and both keep a ``_manifest.json`` per
location. Songs get into a sink from the archive downloaded first
(``stage_downloaded_archive``), the archive streamed through ``tarfile``
(``stage_archive``), a local folder (``stage_local_folder``) or, for S3, an existing
prefix sliced server-side (``stage_existing``). Each transfer logs its progress
(``progress``) at a bounded rate.
"""
import hashlib
import io
import json
import logging
import os
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Tuple

from msdlib.io.sources import split_s3_uri
from msd_pipeline.staging.progress import MeteredReader, Progress
from msd_pipeline.staging.reader import (CHUNK_BYTES, ResumableHttpStream, download, file_digest,
                                         iter_archive_songs, parse_checksum)
from msd_pipeline.staging.rules import (COPIED, EXTRACTED, IN_PLACE, MANIFEST_NAME, SONG_SUFFIX,
                                        STREAMED, UPLOADED, SongSlice, StagingError, StagingReport,
                                        archive_label, path_label, slice_keys)

log = logging.getLogger(__name__)

SHA256_METADATA = "sha256"


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


# -- songs into a sink ---------------------------------------------------------------------------

def stage_downloaded_archive(sink: FolderSink, url: str, downloads_dir: str,
                             song_slice: SongSlice, checksum: str = "") -> Dict[str, Any]:
    """Download the archive (resumable across runs, verified), then write its songs into
    the folder sink; a completed slice is reused as it is."""
    location = sink.location(archive_label(url), song_slice)
    if sink.is_complete(location):
        log.info("Archive songs already staged in %s", location)
        report = StagingReport.from_manifest(sink.read_manifest(location), "url", EXTRACTED)
        return report.as_staged_data(os.path.join(location, MANIFEST_NAME))
    archive = Path(downloads_dir) / (os.path.basename(urllib.parse.urlsplit(url).path) or "archive.tar.gz")
    digest = download(url, archive, checksum or None)
    report = StagingReport(source=location, mode="url", delivery=EXTRACTED, slice_key=song_slice.key,
                           archive_digest="sha256:" + digest, archive_verified=bool(checksum))
    try:
        with open(archive, "rb") as handle:
            extraction = Progress("Extraction of {} to {}".format(archive, location),
                                  total=os.fstat(handle.fileno()).st_size)
            for key, data in iter_archive_songs(MeteredReader(handle, extraction), song_slice):
                report.count(*sink.put(location, key, data))
    except (tarfile.TarError, OSError) as exc:
        raise StagingError("cannot extract {}: {}".format(archive, exc)) from exc
    return _finish(sink, location, report, {"archive_url": url, "archive": str(archive)})


def stage_archive(sink: Any, url: str, song_slice: SongSlice, checksum: str = "") -> Dict[str, Any]:
    """Stream the archive at ``url`` through ``tarfile`` into the sink, with no local
    copy; ``checksum`` is ``sha256:<hex>`` / ``md5:<hex>`` or empty. Returns StagedData."""
    algorithm, expected = parse_checksum(checksum)
    location = sink.location(archive_label(url), song_slice)
    report = StagingReport(source=location + "/", mode="url", delivery=STREAMED,
                           slice_key=song_slice.key)
    stream = ResumableHttpStream(url, algorithm)
    metered = MeteredReader(stream, Progress("Archive {} to {}".format(url, location),
                                             total=stream.size))
    try:
        for key, data in iter_archive_songs(metered, song_slice):
            report.count(*sink.put(location, key, data))
        read_to_end = not song_slice.is_full(len(report.files))
        if read_to_end:
            while metered.read(CHUNK_BYTES):
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


def stage_local_folder(sink: Any, folder: str, song_slice: SongSlice, source_label: str,
                       mode: str) -> Dict[str, Any]:
    """Copy the songs of a local MSD tree (``X/Y/Z/*.h5``) in the slice into the sink;
    ``mode`` is the staging mode that chose the folder (``path`` or ``generated``)."""
    root = Path(folder)
    keys = slice_keys([str(path.relative_to(root)) for path in root.rglob("*" + SONG_SUFFIX)],
                      "", song_slice)
    location = sink.location(source_label, song_slice)
    report = StagingReport(source=location + "/", mode=mode, delivery=UPLOADED,
                           slice_key=song_slice.key)
    upload = Progress("Upload of {} to {}".format(root, location),
                      total=sum((root / key).stat().st_size for key in keys))
    for key in keys:
        data = (root / key).read_bytes()
        report.count(*sink.put(location, key, data))
        upload.advance(len(data))
    upload.finish()
    return _finish(sink, location, report, {"uploaded_from": str(root)})


def stage_existing(s3_hook: Any, existing_prefix: str, sink: S3PrefixSink,
                   song_slice: SongSlice) -> Dict[str, Any]:
    """Use the songs below an existing S3 prefix; a slice is copied server-side into the sink."""
    bucket, key_prefix = split_s3_uri(existing_prefix.rstrip("/") + "/")
    keys = slice_keys(s3_hook.list_keys(bucket_name=bucket, prefix=key_prefix), key_prefix, song_slice)
    if not keys:
        raise StagingError("{} holds no MSD song files for slice {}".format(existing_prefix, song_slice.key))
    if song_slice == SongSlice():
        report = StagingReport(source="s3://{}/{}".format(bucket, key_prefix), mode="path",
                               delivery=IN_PLACE, slice_key=song_slice.key,
                               files=[{"key": key} for key in keys])
        return report.as_staged_data(manifest_uri="")
    location = sink.location("s3-" + path_label(key_prefix or bucket), song_slice)
    dest_bucket, dest_prefix = split_s3_uri(location)
    report = StagingReport(source=location + "/", mode="path", delivery=COPIED,
                           slice_key=song_slice.key)
    copy = Progress("Copy of {} to {}".format(existing_prefix, location))
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
        copy.advance(entry["size"])
    copy.finish()
    return _finish(sink, location, report, {"copied_from": existing_prefix})


def _finish(sink: Any, location: str, report: StagingReport, extra: Dict[str, Any]) -> Dict[str, Any]:
    if not report.files:
        raise StagingError("{} holds no MSD song files for slice {}".format(
            extra.get("archive_url") or extra.get("uploaded_from") or location, report.slice_key))
    manifest_uri = sink.write_manifest(location, report.manifest(extra))
    log.info("Staged %d songs in %s (%d written, %d already there)", len(report.files),
             location, report.uploaded, report.skipped)
    return report.as_staged_data(manifest_uri)

