"""The preflight of an EMR Serverless run: the EMR preflight's findings (ok, problem
with its fix, "not verified", warning) for this target's needs: the S3 root, the
execution role and its trust, both principals' permissions, the release, the network
the job runs reach MongoDB through, the custom image, MongoDB and MLflow. Nothing is
created but a short-lived probe object in S3, deleted again.

    python -m msd_pipeline.targets.emr_serverless.preflight [--config PATH]
"""
from typing import List, Optional

from msdlib.config import PipelineConfig
from msd_pipeline.targets.emr.preflight.findings import (NOT_VERIFIED, OK, PROBLEM, WARNING,
                                                         Finding, PreflightError, require_ready)

__all__ = ["Finding", "PreflightError", "require_ready", "run_checks", "OK", "PROBLEM",
           "NOT_VERIFIED", "WARNING"]


def run_checks(config: PipelineConfig) -> List[Finding]:
    """Every check, in the order a run needs them."""
    from msd_pipeline.targets.emr.preflight import checks as emr_checks, services
    from msd_pipeline.targets.emr_serverless.preflight import checks, iam
    from msd_pipeline.targets.emr_serverless.preflight.aws import ServerlessPreflightHook

    emr, serverless = config.emr, config.emr_serverless
    hook = ServerlessPreflightHook(aws_conn_id=emr.aws_conn_id, region_name=emr.region)
    return [emr_checks.check_s3(emr, hook, iam.POLICY_BY_PRINCIPAL[iam.actions.AIRFLOW]),
            *iam.check_iam(config, hook),
            *checks.check_release(emr, hook),
            *checks.check_network(serverless, emr, hook, _mongo_hosts(config)),
            *checks.check_image(serverless, emr, hook),
            services.check_mongo(config),
            services.check_mlflow(config)]


def _mongo_hosts(config: PipelineConfig) -> Optional[List[str]]:
    """The Mongo connection's hosts; None when it cannot be read ('mongo connection'
    says why)."""
    from airflow.exceptions import AirflowException
    from msd_pipeline.connections import mongo_uri_from_connection
    from msd_pipeline.targets.emr_serverless.preflight.checks import mongo_hosts

    try:
        return mongo_hosts(mongo_uri_from_connection(config.mongo.airflow_conn_id))
    except (AirflowException, ValueError, IndexError):
        return None
