"""Ship one run's code to its S3 prefix: the msdlib zip (``--py-files``), the job
scripts, the bootstrap scripts and the EMR requirements they install (the GPU profile's
too: a few hundred bytes, shipped whatever the profile)."""
import io
import zipfile
from pathlib import Path
from typing import Dict

from msdlib.io.sources import split_s3_uri
from msd_pipeline.paths import EMR_DIR, SPARK_JOBS_DIR
from msd_pipeline.targets.base import JOB_SCRIPTS
from msd_pipeline.targets.emr.layout import (BOOTSTRAP_SCRIPT, GPU_CGROUP_SCRIPT,
                                             GPU_REQUIREMENTS, JOBS_ZIP, REQUIREMENTS,
                                             RunLayout)

# A fixed timestamp makes the zip's bytes depend on the sources only.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def build_jobs_zip(spark_jobs_dir: Path = SPARK_JOBS_DIR) -> bytes:
    """The ``msdlib`` package as a zip for ``--py-files`` (sources only, sorted)."""
    buffer = io.BytesIO()
    package = spark_jobs_dir / "msdlib"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*.py")):
            info = zipfile.ZipInfo(str(path.relative_to(spark_jobs_dir)), ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_files(spark_jobs_dir: Path = SPARK_JOBS_DIR, emr_dir: Path = EMR_DIR) -> Dict[str, bytes]:
    """File name → bytes of everything a run ships."""
    files = {JOBS_ZIP: build_jobs_zip(spark_jobs_dir),
             BOOTSTRAP_SCRIPT: (emr_dir / BOOTSTRAP_SCRIPT).read_bytes(),
             REQUIREMENTS: (emr_dir / REQUIREMENTS).read_bytes()}
    for name in (GPU_CGROUP_SCRIPT, GPU_REQUIREMENTS):
        files[name] = (emr_dir / name).read_bytes()
    for script in JOB_SCRIPTS:
        files[script] = (spark_jobs_dir / script).read_bytes()
    return files


def ship_code(s3_hook, layout: RunLayout) -> Dict[str, str]:
    """Upload the run's code below ``layout.code_prefix``; returns name → s3:// URI."""
    uris = {}
    for name, data in code_files().items():
        uri = layout.code_uri(name)
        bucket, key = split_s3_uri(uri)
        s3_hook.load_bytes(data, key=key, bucket_name=bucket, replace=True)
        uris[name] = uri
    return uris
