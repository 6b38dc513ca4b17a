"""The rules of staging: the auto rule, relative sources, slices, song keys, and the
StagedData's report of the resolved mode and the delivery."""
import pytest

from msd_pipeline.staging.rules import (MODES, RESOLVED_MODES, SongSlice, StagingError, absolute,
                                        resolve_mode, song_key, staged_data)


def test_auto_rule_uses_the_source_or_the_targets_fallback(tmp_path):
    assert resolve_mode("auto", str(tmp_path / "absent"), "url") == "url"
    assert resolve_mode("auto", "s3://bucket/tracks", "generated") == "path"
    assert resolve_mode("generated", "s3://bucket/tracks", "url") == "generated"
    with pytest.raises(StagingError, match="unknown staging mode"):
        resolve_mode("ftp", "x", "url")


def test_relative_sources_resolve_under_the_project():
    assert absolute("data/x", "/project") == "/project/data/x"
    assert absolute("@lists/songs.txt", "/project") == "@/project/lists/songs.txt"
    assert absolute("s3://bucket/tracks", "/project") == "s3://bucket/tracks"
    assert absolute("/abs/tracks", "/project") == "/abs/tracks"


@pytest.mark.parametrize("letters, max_files", [(["AB"], 0), (["-"], 0), ([], -1)])
def test_invalid_slices_are_rejected(letters, max_files):
    with pytest.raises(StagingError, match="slice"):
        SongSlice.of(letters, max_files)


def test_song_keys_follow_the_msd_tree():
    assert song_key("MillionSongSubset/data/A/B/C/TRABC123.h5") == "A/B/C/TRABC123.h5"
    assert song_key("MillionSongSubset/AdditionalFiles/x.h5") is None
    assert song_key("data/A/B/C/notes.txt") is None


def test_staged_data_reports_the_resolved_mode_and_the_delivery_in_detail():
    assert staged_data("s3://b/data/x/letters-A/", "path", 3, "copied", {"slice": "letters-A"}) == {
        "source": "s3://b/data/x/letters-A/", "mode": "path", "files": 3,
        "detail": {"slice": "letters-A", "delivery": "copied"}}
    assert set(RESOLVED_MODES) == set(MODES) - {"auto"}


@pytest.mark.parametrize("mode, delivery", [("auto", "in_place"), ("archive", "streamed"),
                                            ("s3_prefix_slice", "copied"), ("path", "local_folder")])
def test_staged_data_rejects_anything_but_a_resolved_mode_and_a_known_delivery(mode, delivery):
    with pytest.raises(StagingError, match="staged data reports mode"):
        staged_data("/songs", mode, 1, delivery, {})
