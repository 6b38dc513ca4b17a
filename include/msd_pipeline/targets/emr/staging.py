"""The EMR target's staging: songs into the run's S3 data prefix, where the cluster
reads them.

``url`` streams the archive through ``tarfile`` straight into the prefix (no local
copy); ``path`` with an ``s3://`` source uses it as it is, a slice of it copied
server-side; ``path`` with a local source, or ``generated``, uploads that folder;
``auto`` is the source when it exists, else the archive.
"""
from typing import Any, Dict

from msdlib.config import StagingSettings
from msdlib.io.sources import is_s3
from msd_pipeline.staging.generator import generated_songs
from msd_pipeline.staging.rules import SongSlice, absolute, require_source, resolve_mode
from msd_pipeline.staging.sinks import S3PrefixSink, stage_archive, stage_existing, stage_local_folder


def stage_to_s3(staging: StagingSettings, ingest_source: str, s3_hook: Any, data_prefix: str,
                song_slice: SongSlice) -> Dict[str, Any]:
    """Stage by ``staging.mode`` below ``data_prefix`` with the Amazon provider's
    ``s3_hook``; returns StagedData."""
    sink = S3PrefixSink(s3_hook, data_prefix)
    source = absolute(ingest_source)
    mode = resolve_mode(staging.mode, source, fallback="url")
    if mode == "url":
        return stage_archive(sink, staging.archive_url, song_slice, staging.archive_checksum)
    if mode == "path" and is_s3(source):
        return stage_existing(s3_hook, source, sink, song_slice)
    if mode == "generated":
        folder = generated_songs(absolute(staging.data_dir), staging.generated_songs,
                                 staging.generated_seed)
    else:
        require_source(source)
        folder = source
    label = "local-" + folder.rstrip("/").rsplit("/", 1)[-1]
    return stage_local_folder(sink, folder, song_slice, label, mode)
