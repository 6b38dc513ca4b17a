"""The spark-submit target's staging: a folder used where it is, generated songs, and the archive
downloaded from a real HTTP server on 127.0.0.1 (or a file:// URL) and written out once."""
import io
import logging
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from msdlib.config import StagingSettings
from msd_pipeline.staging.progress import human_bytes
from msd_pipeline.staging.rules import SongSlice, StagingError
from msd_pipeline.targets.spark_submit.staging import stage_songs


def test_url_mode_downloads_and_writes_the_songs_once(tmp_path, archive, serve, caplog):
    _, payload, checksum = archive
    server = serve()
    caplog.set_level(logging.INFO, logger="msd_pipeline.staging.progress")
    settings = StagingSettings(mode="url", archive_url=server.url, archive_checksum=checksum,
                               data_dir=str(tmp_path / "data"))
    staged = stage_songs(settings, "unused")
    assert staged["mode"] == "url" and staged["detail"]["delivery"] == "extracted"
    assert staged["files"] == 3
    assert staged["detail"]["archive_verified"] is True
    assert Path(staged["source"]) == tmp_path / "data" / "extracted" / "millionsongsubset" / "all"
    assert len(list(Path(staged["source"]).rglob("*.h5"))) == 3
    size = human_bytes(len(payload))
    archive_file = tmp_path / "data" / "downloads" / "millionsongsubset.tar.gz"
    assert [record.getMessage().split(" in ")[0] for record in caplog.records
            if record.name == "msd_pipeline.staging.progress"] == [
        "Download of {}: done, {}".format(server.url, size),
        "Extraction of {} to {}: done, {}".format(archive_file, staged["source"], size)]
    assert stage_songs(settings, "unused") == staged
    assert len(server.ranges) == 1


def test_url_mode_takes_a_slice_of_the_archive(tmp_path, archive, serve):
    settings = StagingSettings(mode="url", archive_url=serve().url, data_dir=str(tmp_path))
    staged = stage_songs(settings, "unused", SongSlice.of([], 2))
    assert staged["files"] == 2 and Path(staged["source"]).name == "first-2"


def test_archive_members_never_escape_the_sink(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("../outside.h5", "A/B/../../../escaped.h5", "/abs/A/B/C/.hidden.h5"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    settings = StagingSettings(mode="url", archive_url=archive.as_uri(), data_dir=str(tmp_path / "d"))
    with pytest.raises(StagingError, match="no MSD song files"):
        stage_songs(settings, "unused")
    assert sorted(path.name for path in tmp_path.rglob("*.h5")) == []


def test_path_mode_uses_the_folder_and_counts_songs(tmp_path):
    folder = tmp_path / "tracks" / "A" / "B" / "C"
    folder.mkdir(parents=True)
    for name in ("TRA1.h5", "TRA2.h5"):
        (folder / name).write_bytes(b"")
    staged = stage_songs(StagingSettings(mode="path"), "tracks", project_root=str(tmp_path))
    assert staged == {"source": str(tmp_path / "tracks"), "mode": "path", "files": 2,
                      "detail": {"delivery": "in_place"}}


def test_path_mode_with_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StagingError, match="not found or empty"):
        stage_songs(StagingSettings(mode="path"), str(tmp_path / "absent"))


def test_auto_mode_falls_back_to_generated_songs(tmp_path):
    settings = StagingSettings(mode="auto", data_dir=str(tmp_path / "data"), generated_songs=4)
    staged = stage_songs(settings, str(tmp_path / "absent"))
    assert staged["mode"] == "generated" and staged["detail"]["delivery"] == "in_place"
    assert staged["files"] == 4
    again = stage_songs(replace(settings, mode="generated"), "unused")
    assert again["source"] == staged["source"]


def test_auto_mode_prefers_an_existing_source(real_tracks_dir, tmp_path):
    staged = stage_songs(StagingSettings(mode="auto", data_dir=str(tmp_path)), str(real_tracks_dir))
    assert staged["mode"] == "path" and staged["files"] == len(list(real_tracks_dir.rglob("*.h5")))
