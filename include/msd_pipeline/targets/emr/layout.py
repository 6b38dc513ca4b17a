"""Where one run's files live in S3, all below ``emr.s3_root``:

    <s3_root>/runs/<run_key>/code/      msdlib.zip, the job scripts, the bootstraps, requirements
    <s3_root>/runs/<run_key>/job-config.json
    <s3_root>/logs/                     the clusters' LogUri (EMR appends the cluster id)
    <s3_root>/data/                     staged songs, shared by runs (staging is resumable)
    <s3_root>/artifacts/<run_key>/      training artifacts, unless training.artifacts_uri is s3://
    <s3_root>/preflight/                the preflight's probe object, deleted again
    <s3_root>/dependencies/<sha256>/    the EMR Serverless dependency archive, one per pin set
"""
from dataclasses import dataclass

from msdlib.io.sources import SourceError, split_s3_uri

JOBS_ZIP = "msdlib.zip"
BOOTSTRAP_SCRIPT = "bootstrap.sh"
REQUIREMENTS = "requirements-emr.txt"
# [emr] profile "gpu": the cgroup bootstrap and the GPU estimators' requirements.
GPU_CGROUP_SCRIPT = "bootstrap-gpu-cgroup.sh"
GPU_REQUIREMENTS = "requirements-emr-gpu.txt"
ARTIFACTS_FOLDER = "artifacts"
PREFLIGHT_FOLDER = "preflight"


class LayoutError(ValueError):
    """The S3 root is not a usable s3:// prefix."""


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts)])


@dataclass(frozen=True)
class RunLayout:
    s3_root: str
    run_key: str

    def __post_init__(self):
        try:
            split_s3_uri(self.s3_root)
        except SourceError as exc:
            raise LayoutError(str(exc)) from exc
        if not self.run_key or "/" in self.run_key:
            raise LayoutError(f"run key must be a non-empty path segment: {self.run_key!r}")

    @property
    def bucket(self) -> str:
        return split_s3_uri(self.s3_root)[0]

    @property
    def run_prefix(self) -> str:
        return join_uri(self.s3_root, "runs", self.run_key)

    @property
    def code_prefix(self) -> str:
        return join_uri(self.run_prefix, "code")

    def code_uri(self, name: str) -> str:
        return join_uri(self.code_prefix, name)

    @property
    def job_config_uri(self) -> str:
        return join_uri(self.run_prefix, "job-config.json")

    @property
    def log_uri(self) -> str:
        return join_uri(self.s3_root, "logs") + "/"

    @property
    def data_prefix(self) -> str:
        return join_uri(self.s3_root, "data")
