"""Broken copies of a good song file, one per failure the ingest job must quarantine."""
import shutil
from pathlib import Path
from typing import Dict

import h5py
import numpy as np

# file name → the reason ingest_errors must record for it
EXPECTED_REASONS = {
    "TRZEROBYTE.h5": "empty_file",
    "TRTRUNCATED.h5": "truncated",
    "TRNOTHDF5.h5": "not_hdf5",
    "TRNOGROUP.h5": "missing_group",
    "TREMPTYTIMBRE.h5": "empty_timbre",
    "TRNANTIMBRE.h5": "nonfinite_timbre",
}


def make_corrupt_copies(good_song: Path, out_dir: Path) -> Dict[str, str]:
    """Write the broken files into ``out_dir``; returns path → expected reason."""
    out_dir.mkdir(parents=True, exist_ok=True)
    content = good_song.read_bytes()
    (out_dir / "TRZEROBYTE.h5").write_bytes(b"")
    (out_dir / "TRTRUNCATED.h5").write_bytes(content[: len(content) // 2])
    (out_dir / "TRNOTHDF5.h5").write_bytes(b"track_id,title\nTRX,not a song\n" * 50)
    with h5py.File(out_dir / "TRNOGROUP.h5", "w") as h5, h5py.File(good_song, "r") as good:
        good.copy("metadata", h5)
        good.copy("analysis", h5)
    _copy_with_timbre(good_song, out_dir / "TREMPTYTIMBRE.h5", np.zeros((0, 12)))
    with h5py.File(good_song, "r") as good:
        timbre = good["analysis/segments_timbre"][()]
    timbre[1, 3] = np.nan
    _copy_with_timbre(good_song, out_dir / "TRNANTIMBRE.h5", timbre)
    return {str(out_dir / name): reason for name, reason in EXPECTED_REASONS.items()}


def _copy_with_timbre(good_song: Path, target: Path, timbre: np.ndarray) -> None:
    shutil.copyfile(good_song, target)
    with h5py.File(target, "r+") as h5:
        del h5["analysis/segments_timbre"]
        h5["analysis"].create_dataset("segments_timbre", data=timbre, maxshape=(None, 12))
