"""The spark-submit target's staging: songs on a local path every Spark process can read.

``path`` uses the source where it is, ``generated`` makes (once) a folder of generated
songs, ``url`` downloads the archive to ``<data_dir>/downloads`` (a ``.part`` file
resumes across runs) and writes its songs below ``<data_dir>/extracted``; ``auto`` is
the source when it exists, else generated songs.
"""
import os
from typing import Any, Dict

from msdlib.config import StagingSettings
from msd_pipeline.paths import PROJECT_ROOT
from msd_pipeline.staging.generator import generated_songs
from msd_pipeline.staging.rules import (IN_PLACE, SongSlice, absolute, count_songs, require_source,
                                        resolve_mode, staged_data)
from msd_pipeline.staging.sinks import FolderSink, stage_downloaded_archive


def stage_songs(staging: StagingSettings, ingest_source: str, song_slice: SongSlice = SongSlice(),
                project_root: str = str(PROJECT_ROOT)) -> Dict[str, Any]:
    """Stage by ``staging.mode``; returns StagedData ``{"source", "mode", "files",
    "detail"}`` with ``source`` ready for ``ingest.source``. A local ``path`` is used
    where it is; a slice of it is the ingest's ``max_files``."""
    data_dir = absolute(staging.data_dir, project_root)
    source = absolute(ingest_source, project_root)
    mode = resolve_mode(staging.mode, source, fallback="generated")
    if mode == "path":
        require_source(source)
        local_folder = "://" not in source and os.path.isdir(source)
        return staged_data(source, "path", count_songs(source) if local_folder else None,
                           IN_PLACE, {})
    if mode == "generated":
        folder = generated_songs(data_dir, staging.generated_songs, staging.generated_seed)
        return staged_data(folder, "generated", count_songs(folder), IN_PLACE,
                           {"count": staging.generated_songs, "seed": staging.generated_seed})
    return stage_downloaded_archive(FolderSink(os.path.join(data_dir, "extracted")),
                                    staging.archive_url, os.path.join(data_dir, "downloads"),
                                    song_slice, staging.archive_checksum)
