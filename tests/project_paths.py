"""Paths the tests share: the project (from msdlib.config, its one definition) and the
real MSD songs of ../shared/msd, which may be absent."""
from pathlib import Path

from msdlib.config import PROJECT_ROOT as _PROJECT_ROOT

PROJECT_ROOT = Path(_PROJECT_ROOT)
SPARK_JOBS = PROJECT_ROOT / "spark_jobs"
SHARED_MSD = PROJECT_ROOT.parent / "shared" / "msd"
REAL_TRACKS = SHARED_MSD / "tracks"
