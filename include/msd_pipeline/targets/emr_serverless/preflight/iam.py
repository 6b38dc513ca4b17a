"""IAM of the EMR Serverless target: the execution role exists and trusts
``emr-serverless.amazonaws.com``, and ``iam:SimulatePrincipalPolicy`` allows every action
of the table (actions.py) for the Airflow principal and for the execution role, on the
run's own resources (a tagged application and its job runs, the S3 root, the secret name
pattern, the execution role passed to EMR Serverless)."""
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from msdlib.config import PipelineConfig
from msdlib.io.sources import split_s3_uri
from msd_pipeline.targets.emr import mongo_secret
from msd_pipeline.targets.emr.layout import ARTIFACTS_FOLDER, PREFLIGHT_FOLDER, RunLayout, join_uri
from msd_pipeline.targets.emr.preflight.aws import AWS_ERRORS, is_not_found, unavailable
from msd_pipeline.targets.emr.preflight.findings import Finding, not_verified, ok, problem
from msd_pipeline.targets.emr.preflight.iam import (PREFLIGHT_RUN_KEY, SECRET_SUFFIX,
                                                    SimulationRequest, airflow_principal,
                                                    context_entry, simulate_principal)
from msd_pipeline.targets.emr_serverless.preflight import actions
from msd_pipeline.targets.emr_serverless.preflight.aws import ServerlessPreflightHook

ROLE_CHECK = "execution role"
CHECK_BY_PRINCIPAL = {actions.AIRFLOW: "iam airflow principal",
                      actions.EXECUTION_ROLE: "iam execution role"}
POLICY_BY_PRINCIPAL = {
    actions.AIRFLOW: "include/emr_serverless/iam-policy.json",
    actions.EXECUTION_ROLE: "include/emr_serverless/iam-execution-role-policy.json"}
TRUST_POLICY = "include/emr_serverless/execution-role-trust-policy.json"
SERVICE = "emr-serverless.amazonaws.com"
# The dependency archive's folder below emr.s3_root (targets/emr_serverless/dependencies.py).
DEPENDENCIES_FOLDER = "dependencies"
# Stand-ins for ids AWS assigns: an application and one of its job runs.
APPLICATION_ID = "00preflight"
JOB_RUN_ID = "00preflightjob"
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/(?:.*/)?([\w+=,.@-]+)")


@dataclass(frozen=True)
class ServerlessScope:
    """The run's resources, as ARNs."""
    partition: str
    account: str
    config: PipelineConfig

    def arns(self, resource: str) -> List[str]:
        emr = self.config.emr
        application = (f"arn:{self.partition}:emr-serverless:{emr.region}:{self.account}:"
                       f"/applications/{APPLICATION_ID}")
        layout = RunLayout(emr.s3_root, PREFLIGHT_RUN_KEY)
        uris = {actions.READ_OBJECTS: [layout.code_uri("object"), layout.job_config_uri,
                                       join_uri(layout.data_prefix, "object"),
                                       join_uri(emr.s3_root, DEPENDENCIES_FOLDER, "object")],
                actions.WRITE_OBJECTS: [join_uri(layout.log_uri, "object"),
                                        join_uri(self._artifacts_uri(), PREFLIGHT_RUN_KEY, "object")],
                actions.PROBE: [join_uri(emr.s3_root, PREFLIGHT_FOLDER, "probe")]}
        uris[actions.OBJECTS] = uris[actions.READ_OBJECTS] + uris[actions.WRITE_OBJECTS]
        if resource in uris:
            return [self._object_arn(uri) for uri in uris[resource]]
        if resource == actions.ANY:
            return ["*"]
        if resource == actions.APPLICATION:
            return [application]
        if resource == actions.JOB_RUN:
            return [f"{application}/jobruns/{JOB_RUN_ID}"]
        if resource == actions.BUCKET:
            return [f"arn:{self.partition}:s3:::{split_s3_uri(emr.s3_root)[0]}"]
        if resource == actions.SECRET:
            name = mongo_secret.secret_name(emr.mongo_secret_prefix, PREFLIGHT_RUN_KEY)
            return [f"arn:{self.partition}:secretsmanager:{emr.region}:{self.account}:"
                    f"secret:{name}{SECRET_SUFFIX}"]
        if resource == actions.PASSED_ROLE:
            return [self.config.emr_serverless.execution_role_arn
                    or f"arn:{self.partition}:iam::{self.account}:role/unset-execution-role"]
        raise ValueError(f"no ARN for resource {resource!r}")

    def _artifacts_uri(self) -> str:
        artifacts = self.config.training.artifacts_uri
        return artifacts if artifacts.startswith("s3://") else \
            join_uri(self.config.emr.s3_root, ARTIFACTS_FOLDER)

    def _object_arn(self, uri: str) -> str:
        bucket, key = split_s3_uri(uri)
        return f"arn:{self.partition}:s3:::{bucket}/{key}"

    def context(self, resource: str) -> List[Dict[str, Any]]:
        entries = [context_entry(condition, str(value))
                   for key, value in self.config.emr.tags.items()
                   for condition in (f"aws:RequestTag/{key}", f"aws:ResourceTag/{key}")]
        if resource == actions.PASSED_ROLE:
            entries.append(context_entry("iam:PassedToService", SERVICE))
        return entries


def trusts(document: Dict[str, Any], service: str, action: str = "sts:AssumeRole") -> bool:
    """Whether a resource or trust policy lets the AWS service principal ``service`` do
    ``action`` (an Allow naming it, no Deny naming it; conditions such as
    aws:SourceAccount are the account's own business and not evaluated)."""
    verdict = False
    for statement in _as_list(document.get("Statement", [])):
        if not _names_service(statement.get("Principal"), service):
            continue
        if not any(_action_matches(pattern, action) for pattern in _as_list(statement.get("Action", []))):
            continue
        if statement.get("Effect") == "Deny":
            return False
        verdict = verdict or statement.get("Effect") == "Allow"
    return verdict


def _names_service(principal: Any, service: str) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and service in _as_list(principal.get("Service", []))


def _action_matches(pattern: str, action: str) -> bool:
    regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, action.lower()) is not None


def _as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, list) else [value]


def check_iam(config: PipelineConfig, hook: ServerlessPreflightHook) -> List[Finding]:
    """The execution role finding and one simulation finding per principal."""
    emr = config.emr
    try:
        caller = hook.caller_arn()
    except AWS_ERRORS as error:
        detail = f"{unavailable('sts:GetCallerIdentity', error)}: check the AWS connection " \
                 f"{emr.aws_conn_id!r} by hand"
        return [not_verified(check, detail) for check in (ROLE_CHECK, *CHECK_BY_PRINCIPAL.values())]
    partition, account = caller.split(":")[1], caller.split(":")[4]
    role_finding, role_arn = check_execution_role(config, hook)
    scope = ServerlessScope(partition, account, config)
    principals = {actions.AIRFLOW: airflow_principal(hook, caller), actions.EXECUTION_ROLE: role_arn}
    return [role_finding] + [_simulate(hook, scope, principal, arn, caller)
                             for principal, arn in principals.items()]


def check_execution_role(config: PipelineConfig,
                         hook: ServerlessPreflightHook) -> Tuple[Finding, Optional[str]]:
    """The finding, and the role's ARN when it exists."""
    arn = config.emr_serverless.execution_role_arn
    matched = ROLE_ARN.fullmatch(arn)
    if not matched:
        what = "is empty" if not arn else f"({arn}) is not an IAM role ARN"
        return problem(ROLE_CHECK, f"emr_serverless.execution_role_arn {what}",
                       _create_role_fix("ROLE_NAME") + "; then set "
                       "emr_serverless.execution_role_arn = arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME"), None
    name = matched.group(1)
    try:
        role = hook.role(name)
    except AWS_ERRORS as error:
        if is_not_found(error):
            return problem(ROLE_CHECK, f"role {name} does not exist", _create_role_fix(name)), None
        return not_verified(ROLE_CHECK, f"{unavailable('iam:GetRole', error)}: check that {arn} "
                                        f"exists and trusts {SERVICE}"), arn
    if role["Arn"] != arn:
        return problem(ROLE_CHECK, f"the role named {name} is {role['Arn']}, not {arn}",
                       f"set emr_serverless.execution_role_arn = {role['Arn']}"), None
    if not trusts(role["AssumeRolePolicyDocument"], SERVICE):
        return problem(ROLE_CHECK, f"the trust policy of {name} does not let {SERVICE} assume it "
                                   "(job runs would fail to start)",
                       f"aws iam update-assume-role-policy --role-name {name} --policy-document "
                       f"file://{TRUST_POLICY} (ACCOUNT_ID filled in)"), arn
    return ok(ROLE_CHECK, f"{arn} exists and trusts {SERVICE}"), arn


def _create_role_fix(name: str) -> str:
    return (f"aws iam create-role --role-name {name} --assume-role-policy-document "
            f"file://{TRUST_POLICY} and aws iam put-role-policy --role-name {name} "
            f"--policy-name msd-pipeline-job-runs --policy-document "
            f"file://{POLICY_BY_PRINCIPAL[actions.EXECUTION_ROLE]} (placeholders filled in; "
            "docs/emr-serverless.md)")


def _simulate(hook: ServerlessPreflightHook, scope: ServerlessScope, principal: str,
              arn: Optional[str], caller: str) -> Finding:
    check, policy = CHECK_BY_PRINCIPAL[principal], POLICY_BY_PRINCIPAL[principal]
    if principal == actions.EXECUTION_ROLE and not arn:
        return not_verified(check, f"no execution role to simulate (see {ROLE_CHECK!r})")
    grouped: Dict[str, List[str]] = {}
    for action in actions.RUN_ACTIONS[principal]:
        grouped.setdefault(action.resource, []).append(action.name)
    requests = [SimulationRequest(names, scope.arns(resource), scope.context(resource))
                for resource, names in grouped.items()]
    return simulate_principal(hook, check, policy, arn, caller, requests)
