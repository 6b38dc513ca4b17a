"""The AWS reads of the preflight, on the run's own connection and region: the
pipeline's hook (targets/emr/hook.py) with the clients of the services it checks.

Clients retry little and time out early: an API an emulator lacks (moto answers 500) or
a network that drops calls makes its check "not verified" within seconds.
"""
import uuid
from typing import Any, Dict, List, Optional, Sequence

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from msdlib.io.sources import split_s3_uri
from msd_pipeline.targets.emr.hook import ACCESS_DENIED_CODES, PipelineEmrHook

CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=10,
                       read_timeout=30)
NOT_FOUND_CODES = {"NoSuchEntity", "NoSuchBucket", "NoSuchResourceException", "404"}
# What a failed call raises (an HTML error page where XML was due is a parser error).
AWS_ERRORS = (ClientError, BotoCoreError, ResponseParserError)


class Unavailable(Exception):
    """The check's own read failed: access denied, or the API is not there (an emulator,
    a partition without it). Its check is "not verified"."""


def error_code(error: Exception) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


def is_not_found(error: Exception) -> bool:
    return error_code(error) in NOT_FOUND_CODES


def unavailable(call: str, error: Exception) -> Unavailable:
    code = error_code(error)
    if code in ACCESS_DENIED_CODES or code.startswith("UnauthorizedOperation"):
        return Unavailable(f"{call} was denied ({code})")
    if isinstance(error, ResponseParserError) or code.isdigit():
        return Unavailable(f"{call} got no valid answer (HTTP {code or 'error page'}: the API "
                           "may not exist here)")
    return Unavailable(f"{call} failed ({code or type(error).__name__}: "
                       f"{str(error).splitlines()[0][:160]})")


class PreflightHook(PipelineEmrHook):
    """Read-only calls of the checks (plus the S3 probe object, deleted again)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: Dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """One client per service for the hook's life: building one loads the service's
        model (about a quarter of a second), and the checks make some twenty calls."""
        if service not in self._clients:
            self._clients[service] = self.get_session(region_name=self.region_name).client(
                service, endpoint_url=self.conn_config.get_service_endpoint_url(service),
                config=self.config.merge(CLIENT_CONFIG), verify=self.verify)
        return self._clients[service]

    # -- who runs the pipeline -------------------------------------------------------------
    def caller_arn(self) -> str:
        return self.client("sts").get_caller_identity()["Arn"]

    def role_arn(self, name: str) -> str:
        return self.client("iam").get_role(RoleName=name)["Role"]["Arn"]

    def attached_policy_arns(self, role_name: str) -> List[str]:
        pages = self.client("iam").get_paginator("list_attached_role_policies").paginate(
            RoleName=role_name)
        return [policy["PolicyArn"] for page in pages for policy in page["AttachedPolicies"]]

    def instance_profile_roles(self, name: str) -> List[str]:
        profile = self.client("iam").get_instance_profile(InstanceProfileName=name)
        return [role["Arn"] for role in profile["InstanceProfile"]["Roles"]]

    def simulate(self, principal_arn: str, actions: Sequence[str], resource_arns: Sequence[str],
                 context: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """``iam:SimulatePrincipalPolicy``'s EvaluationResults (every page)."""
        results: List[Dict[str, Any]] = []
        paginator = self.client("iam").get_paginator("simulate_principal_policy")
        for page in paginator.paginate(PolicySourceArn=principal_arn, ActionNames=list(actions),
                                       ResourceArns=list(resource_arns),
                                       ContextEntries=list(context)):
            results.extend(page["EvaluationResults"])
        return results

    # -- EMR releases ------------------------------------------------------------------------
    def release_labels(self, prefix: str) -> List[str]:
        emr = self.client("emr")
        labels: List[str] = []
        kwargs: Dict[str, Any] = {"Filters": {"Prefix": prefix}}
        while True:
            page = emr.list_release_labels(**kwargs)
            labels.extend(page.get("ReleaseLabels", []))
            if not page.get("NextToken"):
                return labels
            kwargs["NextToken"] = page["NextToken"]

    def release_applications(self, release_label: str) -> Dict[str, str]:
        """Application name → version shipped by the release."""
        described = self.client("emr").describe_release_label(ReleaseLabel=release_label)
        return {app["Name"]: app["Version"] for app in described.get("Applications", [])}

    # -- EC2 capacity ------------------------------------------------------------------------
    def offered_types(self, instance_types: Sequence[str], zone: str) -> List[str]:
        offerings = self.client("ec2").describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "location", "Values": [zone]},
                     {"Name": "instance-type", "Values": list(instance_types)}])
        return [offer["InstanceType"] for offer in offerings["InstanceTypeOfferings"]]

    def vcpus(self, instance_types: Sequence[str]) -> Dict[str, int]:
        described = self.client("ec2").describe_instance_types(InstanceTypes=list(instance_types))
        return {item["InstanceType"]: item["VCpuInfo"]["DefaultVCpus"]
                for item in described["InstanceTypes"]}

    def quota(self, service_code: str, quota_code: str) -> float:
        quota = self.client("service-quotas").get_service_quota(ServiceCode=service_code,
                                                                QuotaCode=quota_code)
        return float(quota["Quota"]["Value"])

    # -- network -----------------------------------------------------------------------------
    def subnet(self, subnet_id: str) -> Dict[str, Any]:
        return self.client("ec2").describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]

    def vpc(self, vpc_id: str) -> Dict[str, Any]:
        return self.client("ec2").describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]

    def default_vpc(self) -> Optional[Dict[str, Any]]:
        vpcs = self.client("ec2").describe_vpcs(
            Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        return vpcs[0] if vpcs else None

    def default_subnets(self, vpc_id: str) -> List[Dict[str, Any]]:
        return self.client("ec2").describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                     {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]

    def security_groups(self, vpc_id: str, names: Sequence[str]) -> List[Dict[str, Any]]:
        return self.client("ec2").describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                     {"Name": "group-name", "Values": list(names)}])["SecurityGroups"]

    # -- S3 ----------------------------------------------------------------------------------
    def probe_s3(self, prefix_uri: str, probe_uri: str) -> Optional[str]:
        """List ``prefix_uri``, write, read back and delete a probe object at
        ``probe_uri``. Returns a note when the probe could not be deleted."""
        bucket, prefix = split_s3_uri(prefix_uri)
        _, key = split_s3_uri(probe_uri)
        s3 = self.client("s3")
        prefix = prefix.strip("/")
        s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/" if prefix else "", MaxKeys=1)
        s3.put_object(Bucket=bucket, Key=key, Body=uuid.uuid4().hex.encode())
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except AWS_ERRORS as error:
            return f"the probe object {probe_uri} could not be deleted ({error_code(error)}): " \
                   "delete it by hand"
        return None
