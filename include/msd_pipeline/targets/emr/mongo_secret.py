"""The run-scoped AWS Secrets Manager secret carrying the Mongo URI to the EMR jobs.

Why a secret rather than an SSE-KMS object in S3: the cluster's instance profile can be
limited to ``secretsmanager:GetSecretValue`` on the pipeline's secret names only (see
include/emr/iam-policy.json), while the run's S3 prefixes must stay readable for code
and data; a secret never shows up in object listings, bucket replication or access logs;
every read is in CloudTrail; and ``ForceDeleteWithoutRecovery`` removes it at teardown
at once, with no KMS key to manage. The URI comes from the Airflow Mongo connection at
execute time and is registered with the secrets masker before anything is logged; only
the secret's name travels (cluster configuration, XCom).
"""
from typing import Dict, List


def secret_name(prefix: str, run_key: str) -> str:
    return f"{prefix}{run_key}/mongo-uri"


def put_run_secret(secrets_hook, name: str, uri: str, tags: List[Dict[str, str]]) -> None:
    """Create the secret, or replace its value when a retried task finds it."""
    client = secrets_hook.conn
    try:
        client.create_secret(Name=name, SecretString=uri, Tags=tags,
                             Description="MSD pipeline: MongoDB URI for one EMR run")
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=uri)


def delete_run_secret(secrets_hook, name: str) -> bool:
    """Delete the secret now (no recovery window); False when it does not exist."""
    client = secrets_hook.conn
    try:
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True
