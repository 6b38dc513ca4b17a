"""The rules of staging: the modes and the ``auto`` rule, local sources, slices of the MSD
tree, the labels of a staged location, and the report that becomes its manifest and the
StagedData of the task graph.

Modes (``staging.mode``):

* ``path``: an existing folder, glob, ``@list`` file or ``s3://`` prefix (``ingest.source``);
* ``generated``: MSD-format songs made by ``msd_pipeline.staging.generator`` (cached per
  count/seed);
* ``url``: the MSD subset archive (a ``.tar.gz``) downloaded from ``staging.archive_url``;
* ``auto``: the source when it exists, else the target's fallback (``resolve_mode``).

The StagedData a target returns reports the resolved mode (``path``, ``url`` or
``generated``) and, in ``detail["delivery"]``, how the songs reached the location ingest
reads (``DELIVERIES``).

A slice (``SongSlice``) keeps some of the top-level ``X/`` letters and/or the first N
files; each source and slice has its own location ``<root>/<source_label>/<slice_key>/``
holding a ``_manifest.json`` of what it holds.
"""
import datetime
import glob
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from msd_pipeline.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

SONG_SUFFIX = ".h5"
MANIFEST_NAME = "_manifest.json"
MODES = ("auto", "path", "url", "generated")
RESOLVED_MODES = ("path", "url", "generated")

# How the songs reached the location ingest reads: StagedData ``detail["delivery"]``.
IN_PLACE = "in_place"    # read where they are: a local path, generated songs, a whole S3 prefix
EXTRACTED = "extracted"  # the archive downloaded, then its songs written to a local folder
STREAMED = "streamed"    # the archive streamed into an S3 prefix, with no local copy
UPLOADED = "uploaded"    # a local folder (a path or generated songs) uploaded to an S3 prefix
COPIED = "copied"        # a slice of an existing S3 prefix copied server-side to its own prefix
DELIVERIES = (IN_PLACE, EXTRACTED, STREAMED, UPLOADED, COPIED)


class StagingError(RuntimeError):
    """The songs could not be staged (missing source, bad download, bad archive)."""


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


def require_source(source: str) -> None:
    """Fail clearly when the ``path`` mode's source is missing or holds no songs."""
    if not source_exists(source):
        raise StagingError("song source not found or empty: {}".format(source))


def count_songs(folder: str) -> int:
    return sum(1 for _ in Path(folder).rglob("*" + SONG_SUFFIX))


# -- slices, song keys and labels -------------------------------------------------------

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


def archive_label(url: str) -> str:
    """``http://host/x/millionsongsubset.tar.gz`` → ``millionsongsubset``."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "archive"
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def path_label(path: str) -> str:
    """``tracks/msd/`` → ``tracks-msd``: a path as one path segment."""
    return "-".join(part for part in path.strip("/").split("/") if part) or "root"


# -- what one staging wrote ---------------------------------------------------------------

def staged_data(source: str, mode: str, files: Optional[int], delivery: str,
                detail: Dict[str, Any]) -> Dict[str, Any]:
    """The StagedData dict of the task graph (see ``PipelineTarget.stage_data``)."""
    if mode not in RESOLVED_MODES or delivery not in DELIVERIES:
        raise StagingError("staged data reports mode {!r} and delivery {!r}: the mode is one "
                           "of {} and the delivery one of {}".format(
                               mode, delivery, RESOLVED_MODES, DELIVERIES))
    return {"source": source, "mode": mode, "files": files,
            "detail": dict(detail, delivery=delivery)}


@dataclass
class StagingReport:
    """What one staging wrote into its sink; becomes the manifest and the StagedData."""
    source: str
    mode: str
    delivery: str
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
        return {"source": self.source, "mode": self.mode, "delivery": self.delivery,
                "slice": self.slice_key, "files": self.files, "count": len(self.files),
                "uploaded": self.uploaded,
                "skipped": self.skipped, "uploaded_bytes": self.uploaded_bytes,
                "archive_digest": self.archive_digest,
                "archive_verified": self.archive_verified,
                "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), **extra}

    def as_staged_data(self, manifest_uri: str) -> Dict[str, Any]:
        return staged_data(self.source, self.mode, len(self.files), self.delivery, {
            "manifest_uri": manifest_uri, "slice": self.slice_key, "uploaded": self.uploaded,
            "skipped": self.skipped, "uploaded_bytes": self.uploaded_bytes,
            "archive_digest": self.archive_digest, "archive_verified": self.archive_verified})

    @classmethod
    def from_manifest(cls, manifest: Dict[str, Any], mode: str, delivery: str) -> "StagingReport":
        """The report of an earlier staging, from its manifest, staged by ``mode`` and
        ``delivery`` (manifests written before the delivery was recorded lack it)."""
        return cls(source=manifest["source"], mode=mode, delivery=delivery,
                   slice_key=manifest["slice"], files=manifest["files"], uploaded=manifest["uploaded"],
                   skipped=manifest["skipped"], uploaded_bytes=manifest["uploaded_bytes"],
                   archive_digest=manifest["archive_digest"],
                   archive_verified=manifest["archive_verified"])
