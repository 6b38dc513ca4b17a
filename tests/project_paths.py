"""Paths the tests share: the project (from msd_pipeline.paths, its one definition) and the
real MSD songs of ../shared/msd, which may be absent."""
from msd_pipeline.paths import PROJECT_ROOT

SPARK_JOBS = PROJECT_ROOT / "spark_jobs"
SHARED_MSD = PROJECT_ROOT.parent / "shared" / "msd"
REAL_TRACKS = SHARED_MSD / "tracks"
