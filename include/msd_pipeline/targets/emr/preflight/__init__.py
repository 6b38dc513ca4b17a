"""The preflight of an EMR run: before anything is paid for, check with the run's own
connections and settings that the run can work, and say per check "ok", "problem" (with
its fix) or "not verified" (the check's own API was denied or is missing: check by hand).
Nothing is created but a short-lived probe object in S3, deleted again.

    python -m msd_pipeline.targets.emr.preflight [--config PATH]

The first setup task of every EMR run (``cluster.preflight``) fails the run on a problem.
"""
from typing import List

from msdlib.config import PipelineConfig
from msd_pipeline.targets.emr.preflight.findings import (NOT_VERIFIED, OK, PROBLEM, Finding,
                                                         PreflightError, require_ready)

__all__ = ["Finding", "PreflightError", "require_ready", "run_checks", "OK", "PROBLEM",
           "NOT_VERIFIED"]


def run_checks(config: PipelineConfig) -> List[Finding]:
    """Every check, in the order a run needs them."""
    from msd_pipeline.targets.emr.preflight import capacity, checks, iam, services
    from msd_pipeline.targets.emr.preflight.aws import PreflightHook

    emr = config.emr
    hook = PreflightHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)
    network, zones = checks.check_network(emr, hook)
    return [checks.check_s3(emr, hook),
            *iam.check_iam(config, hook),
            *checks.check_release(emr, hook),
            network,
            capacity.check_offered(emr, hook, zones),
            *capacity.check_quotas(emr, hook),
            services.check_mongo(config),
            services.check_mlflow(config)]
