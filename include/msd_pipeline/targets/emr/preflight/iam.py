"""IAM: the EMR roles exist, and ``iam:SimulatePrincipalPolicy`` allows every action of
the table (actions.py) for the Airflow principal and for the instance profile's role, on
the run's own resources (S3 root, secret name pattern, tagged clusters, the two roles)."""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from msdlib.config import ECR_IMAGE, PipelineConfig
from msdlib.io.sources import split_s3_uri
from msd_pipeline.targets.emr import mongo_secret
from msd_pipeline.targets.emr.layout import ARTIFACTS_FOLDER, PREFLIGHT_FOLDER, RunLayout, join_uri
from msd_pipeline.targets.emr.preflight import actions
from msd_pipeline.targets.emr.preflight.aws import AWS_ERRORS, PreflightHook, is_not_found, unavailable
from msd_pipeline.targets.emr.preflight.findings import Finding, not_verified, ok, problem

ROLES_CHECK = "emr roles"
CHECK_BY_PRINCIPAL = {actions.AIRFLOW: "iam airflow principal",
                      actions.INSTANCE_PROFILE: "iam instance profile"}
POLICY_BY_PRINCIPAL = {actions.AIRFLOW: "include/emr/iam-policy.json",
                       actions.INSTANCE_PROFILE: "include/emr/iam-instance-profile-policy.json"}
PASSED_TO = {actions.SERVICE_ROLE: "elasticmapreduce.amazonaws.com",
             actions.JOB_FLOW_ROLE: "ec2.amazonaws.com"}
SERVICE_ROLE_FIX = ("create it with AmazonEMRServicePolicy_v2 attached (docs/emr.md, "
                    "the service role) or correct emr.service_role")
V2_POLICY = "AmazonEMRServicePolicy_v2"
V2_POLICY_FIX = ("aws iam attach-role-policy --role-name {role} --policy-arn "
                 "arn:aws:iam::aws:policy/service-role/" + V2_POLICY)
# EMR's service-linked role: it cleans up a cluster's EC2 resources.
CLEANUP_ROLE = "AWSServiceRoleForEMRCleanup"
CLEANUP_ROLE_FIX = "aws iam create-service-linked-role --aws-service-name elasticmapreduce.amazonaws.com"
INSTANCE_PROFILE_FIX = ("create it with include/emr/iam-instance-profile-policy.json on its role "
                        "(docs/emr.md, Buckets and roles), or correct emr.job_flow_role")
# Secret ARNs end in "-" and six random characters.
SECRET_SUFFIX = "-AbC123"
PREFLIGHT_RUN_KEY = "preflight"


@dataclass(frozen=True)
class Scope:
    """The run's resources, as ARNs."""
    partition: str
    account: str
    config: PipelineConfig
    service_role_arn: str
    job_flow_role_arn: str

    def arns(self, resource: str) -> List[str]:
        emr = self.config.emr
        if resource == actions.ANY:
            return ["*"]
        if resource == actions.CLUSTER:
            return [f"arn:{self.partition}:elasticmapreduce:{emr.region}:{self.account}:"
                    f"cluster/j-{PREFLIGHT_RUN_KEY.upper()}"]
        if resource == actions.BUCKET:
            return [f"arn:{self.partition}:s3:::{split_s3_uri(emr.s3_root)[0]}"]
        if resource == actions.OBJECTS:
            return [self._object_arn(uri) for uri in self._object_uris()]
        if resource == actions.PROBE:
            return [self._object_arn(join_uri(emr.s3_root, PREFLIGHT_FOLDER, "probe"))]
        if resource == actions.SECRET:
            name = mongo_secret.secret_name(emr.mongo_secret_prefix, PREFLIGHT_RUN_KEY)
            return [f"arn:{self.partition}:secretsmanager:{emr.region}:{self.account}:"
                    f"secret:{name}{SECRET_SUFFIX}"]
        if resource == actions.SERVICE_ROLE:
            return [self.service_role_arn]
        if resource == actions.JOB_FLOW_ROLE:
            return [self.job_flow_role_arn]
        if resource == actions.REPOSITORY:
            return [self._repository_arn(emr.container_image)] if emr.container_image else []
        raise ValueError(f"no ARN for resource {resource!r}")

    def _object_uris(self) -> List[str]:
        root = self.config.emr.s3_root
        layout = RunLayout(root, PREFLIGHT_RUN_KEY)
        artifacts = self.config.training.artifacts_uri
        artifacts = artifacts if artifacts.startswith("s3://") else join_uri(root, ARTIFACTS_FOLDER)
        return [layout.code_uri("object"), join_uri(layout.data_prefix, "object"),
                join_uri(layout.log_uri, "object"), join_uri(artifacts, PREFLIGHT_RUN_KEY, "object")]

    def _repository_arn(self, image: str) -> str:
        """``<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`` → its ARN."""
        registry = ECR_IMAGE.match(image).group("registry")
        account, region = registry.split(".")[0], registry.split(".")[3]
        repository = image[len(registry) + 1:].split("@")[0].rsplit(":", 1)[0]
        return f"arn:{self.partition}:ecr:{region}:{account}:repository/{repository}"

    def _object_arn(self, uri: str) -> str:
        bucket, key = split_s3_uri(uri)
        return f"arn:{self.partition}:s3:::{bucket}/{key}"

    def context(self, resource: str) -> List[Dict[str, Any]]:
        entries = []
        for key, value in self.config.emr.tags.items():
            for condition in (f"aws:RequestTag/{key}", f"aws:ResourceTag/{key}"):
                entries.append(context_entry(condition, str(value)))
        if resource in PASSED_TO:
            entries.append(context_entry("iam:PassedToService", PASSED_TO[resource]))
        return entries


def context_entry(key: str, value: str) -> Dict[str, Any]:
    return {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}


def principal_arn(caller_arn: str) -> Optional[str]:
    """The IAM principal to simulate for an ``sts:GetCallerIdentity`` ARN: a user or role
    as is; an assumed-role session → its role (without path: ``resolve_role_path``);
    None for the root user and federated sessions."""
    parts = caller_arn.split(":", 5)
    if len(parts) != 6:
        return None
    _, partition, service, _, account, resource = parts
    if service == "iam" and resource.startswith(("user/", "role/")):
        return caller_arn
    if service == "sts" and resource.startswith("assumed-role/"):
        return f"arn:{partition}:iam::{account}:role/{resource.split('/')[1]}"
    return None


def denials(results: List[Dict[str, Any]]) -> List[str]:
    """What ``iam:SimulatePrincipalPolicy``'s EvaluationResults do not allow, one
    "action on resource (decision)" each, with the context keys that were missing."""
    denied = []
    for result in results:
        if result["EvalDecision"] == "allowed":
            continue
        specific = [(item["EvalResourceName"], item["EvalResourceDecision"])
                    for item in result.get("ResourceSpecificResults") or []
                    if item["EvalResourceDecision"] != "allowed"]
        missing = result.get("MissingContextValues") or []
        note = f", missing context {', '.join(missing)}" if missing else ""
        for resource, decision in specific or [(result.get("EvalResourceName", "*"),
                                                result["EvalDecision"])]:
            denied.append(f"{result['EvalActionName']} on {resource} ({decision}{note})")
    return denied


def check_iam(config: PipelineConfig, hook: PreflightHook) -> List[Finding]:
    """The roles finding and one simulation finding per principal."""
    emr = config.emr
    try:
        caller = hook.caller_arn()
    except AWS_ERRORS as error:
        detail = f"{unavailable('sts:GetCallerIdentity', error)}: check the AWS connection " \
                 f"{emr.aws_conn_id!r} by hand"
        return [not_verified(check, detail) for check in (ROLES_CHECK, *CHECK_BY_PRINCIPAL.values())]
    partition, account = caller.split(":")[1], caller.split(":")[4]
    roles_finding, service_role_arn, job_flow_role_arn = _roles(config, hook, partition, account)
    scope = Scope(partition, account, config,
                  service_role_arn or f"arn:{partition}:iam::{account}:role/{emr.service_role}",
                  job_flow_role_arn or f"arn:{partition}:iam::{account}:role/{emr.job_flow_role}")
    principals = {actions.AIRFLOW: airflow_principal(hook, caller),
                  actions.INSTANCE_PROFILE: job_flow_role_arn}
    return [roles_finding] + [_simulate(hook, scope, principal, arn, caller)
                              for principal, arn in principals.items()]


def _check_service_role_policy(hook: PreflightHook, role: str, missing: List[str],
                               unverified: List[str], fixes: List[str]) -> None:
    try:
        attached = hook.attached_policy_arns(role)
    except AWS_ERRORS as error:
        unverified.append(f"policies of {role}: "
                          + str(unavailable("iam:ListAttachedRolePolicies", error)))
        return
    if not any(arn.endswith("/" + V2_POLICY) for arn in attached):
        missing.append(f"service role {role} lacks {V2_POLICY}")
        fixes.append(V2_POLICY_FIX.format(role=role))


def _check_cleanup_role(hook: PreflightHook, missing: List[str], unverified: List[str],
                        fixes: List[str]) -> None:
    try:
        hook.role_arn(CLEANUP_ROLE)
    except AWS_ERRORS as error:
        if is_not_found(error):
            missing.append(f"service-linked role {CLEANUP_ROLE} does not exist")
            fixes.append(CLEANUP_ROLE_FIX)
        else:
            unverified.append(f"{CLEANUP_ROLE}: " + str(unavailable("iam:GetRole", error)))


def _roles(config: PipelineConfig, hook: PreflightHook, partition: str,
           account: str) -> Tuple[Finding, Optional[str], Optional[str]]:
    emr = config.emr
    missing, unverified, fixes = [], [], []
    service_role_arn = emr.service_role if emr.service_role.startswith("arn:") else None
    job_flow_role_arn = None
    if not service_role_arn:
        try:
            service_role_arn = hook.role_arn(emr.service_role)
        except AWS_ERRORS as error:
            (missing if is_not_found(error) else unverified).append(
                f"service role {emr.service_role}: " + str(unavailable("iam:GetRole", error)))
            fixes += [SERVICE_ROLE_FIX] if is_not_found(error) else []
    if service_role_arn:
        _check_service_role_policy(hook, service_role_arn.rsplit("/", 1)[-1], missing,
                                   unverified, fixes)
    _check_cleanup_role(hook, missing, unverified, fixes)
    try:
        roles = hook.instance_profile_roles(emr.job_flow_role)
        if roles:
            job_flow_role_arn = roles[0]
        else:
            missing.append(f"instance profile {emr.job_flow_role} holds no role")
            fixes.append(INSTANCE_PROFILE_FIX)
    except AWS_ERRORS as error:
        (missing if is_not_found(error) else unverified).append(
            f"instance profile {emr.job_flow_role}: " + str(unavailable("iam:GetInstanceProfile", error)))
        fixes += [INSTANCE_PROFILE_FIX] if is_not_found(error) else []
    if missing:
        return problem(ROLES_CHECK, "; ".join(missing + unverified), "; ".join(fixes)), \
            service_role_arn, job_flow_role_arn
    if unverified:
        return not_verified(ROLES_CHECK, "; ".join(unverified) + ": check in the IAM console "
                            "that both exist"), service_role_arn, job_flow_role_arn
    return ok(ROLES_CHECK, f"service role {service_role_arn}, instance profile "
                           f"{emr.job_flow_role} → {job_flow_role_arn}"), \
        service_role_arn, job_flow_role_arn


def airflow_principal(hook: PreflightHook, caller: str) -> Optional[str]:
    """The principal to simulate for the caller, an assumed role with its path."""
    airflow = principal_arn(caller)
    if airflow and caller.split(":")[2] == "sts":
        airflow = _resolve_role_path(hook, airflow)
    return airflow


def _resolve_role_path(hook: PreflightHook, role_arn: str) -> str:
    """The role's ARN with its path (an assumed-role ARN has none)."""
    try:
        return hook.role_arn(role_arn.rsplit("/", 1)[1])
    except AWS_ERRORS:
        return role_arn


def _simulate(hook: PreflightHook, scope: Scope, principal: str, arn: Optional[str],
              caller: str) -> Finding:
    requests = [SimulationRequest(names, scope.arns(resource), scope.context(resource))
                for resource, names in _by_resource(scope.config, principal)]
    return simulate_principal(hook, CHECK_BY_PRINCIPAL[principal], POLICY_BY_PRINCIPAL[principal],
                              arn, caller, requests)


@dataclass(frozen=True)
class SimulationRequest:
    """Actions on the same resources, with the same context."""
    actions: List[str]
    resource_arns: List[str]
    context: List[Dict[str, Any]]


def simulate_principal(hook: PreflightHook, check: str, policy: str, arn: Optional[str],
                       caller: str, requests: List[SimulationRequest]) -> Finding:
    """One finding for ``arn``: ok when every request is allowed, a problem naming the
    denials, "not verified" when there is no principal or the simulation is not there."""
    if not arn:
        return not_verified(check, f"no IAM principal to simulate for {caller}: compare its "
                                   f"permissions with {policy} by hand")
    denied, count = [], 0
    for request in requests:
        try:
            results = hook.simulate(arn, request.actions, request.resource_arns, request.context)
        except AWS_ERRORS as error:
            return not_verified(check, f"{unavailable('iam:SimulatePrincipalPolicy', error)}: "
                                       f"compare the policies of {arn} with {policy} by hand "
                                       "(aws iam simulate-principal-policy)")
        denied += denials(results)
        count += len(request.actions)
    if denied:
        return problem(check, f"{arn} may not: " + "; ".join(denied),
                       f"grant them as {policy} does (its placeholders filled in)")
    return ok(check, f"{arn} may call all {count} actions of the run on its resources")


def _by_resource(config: PipelineConfig, principal: str) -> List[Tuple[str, List[str]]]:
    grouped: Dict[str, List[str]] = {}
    for action in actions.RUN_ACTIONS[principal]:
        if action.resource == actions.SECRET and config.emr.mongo_mode != "secret":
            continue
        if action.name in actions.CONTAINER_IMAGE_ACTIONS and not config.emr.container_image:
            continue
        grouped.setdefault(action.resource, []).append(action.name)
    return list(grouped.items())
