"""The AWS checks besides IAM and capacity: the S3 root, the release, the network's V2
tags."""
import uuid
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from botocore.exceptions import ClientError

from msdlib.config import EmrSettings
from msdlib.io.sources import split_s3_uri
from msd_pipeline.targets.emr import releases
from msd_pipeline.targets.emr.hook import ACCESS_DENIED_CODES
from msd_pipeline.targets.emr.layout import PREFLIGHT_FOLDER, join_uri
from msd_pipeline.targets.emr.preflight.aws import AWS_ERRORS, PreflightHook, error_code, unavailable
from msd_pipeline.targets.emr.preflight.findings import Finding, not_verified, ok, problem

V2_TAG = "for-use-with-amazon-emr-managed-policies"
EMR_SECURITY_GROUPS = ("ElasticMapReduce-master", "ElasticMapReduce-slave",
                       "ElasticMapReduce-Master-Private", "ElasticMapReduce-Slave-Private",
                       "ElasticMapReduce-ServiceAccess")


# -- S3 ---------------------------------------------------------------------------------------

def check_s3(emr: EmrSettings, hook: PreflightHook,
             policy: str = "include/emr/iam-policy.json") -> Finding:
    """List, write, read back and delete a probe below the root; ``policy`` is the
    Airflow principal's policy the fix points to."""
    check = "s3 root"
    bucket = split_s3_uri(emr.s3_root)[0]
    probe_uri = join_uri(emr.s3_root, PREFLIGHT_FOLDER, f"probe-{uuid.uuid4().hex[:12]}")
    try:
        note = hook.probe_s3(emr.s3_root, probe_uri)
    except ClientError as error:
        code = error_code(error)
        if code == "NoSuchBucket":
            return problem(check, f"bucket {bucket} does not exist",
                           f"create it (aws s3 mb s3://{bucket} --region {emr.region}) or "
                           "correct emr.s3_root")
        if code in ACCESS_DENIED_CODES or code == "403":
            return problem(check, f"{error.operation_name} on {emr.s3_root} was denied",
                           "grant s3:ListBucket on the bucket and s3:GetObject/PutObject below "
                           f"the root, as {policy} does")
        return not_verified(check, f"{unavailable(error.operation_name, error)}: list, read "
                                   f"and write below {emr.s3_root} by hand")
    except AWS_ERRORS as error:
        return not_verified(check, f"S3 did not answer ({error}): check {emr.s3_root} by hand")
    detail = f"listed, wrote, read back and deleted a probe below {emr.s3_root}"
    return ok(check, detail if not note else f"listed, wrote and read back below "
                                             f"{emr.s3_root}; {note}")


# -- the release ------------------------------------------------------------------------------

def check_release(emr: EmrSettings, hook: PreflightHook) -> List[Finding]:
    label = emr.release_label
    try:
        labels = hook.release_labels(label)
    except AWS_ERRORS as error:
        return [not_verified("emr release", f"{unavailable('emr ListReleaseLabels', error)}: "
                                            f"check that {label} exists in {emr.region}")]
    if label not in labels:
        return [problem("emr release", f"{label} is not offered in {emr.region}",
                        "set emr.release_label to an EMR 7 release of "
                        "aws emr list-release-labels --region " + emr.region)]
    offered = ok("emr release", f"{label} is offered in {emr.region}")
    if emr.container_image:
        return [offered, not_verified(
            "emr release spark", f"Docker on YARN: the jobs run on {label}'s Spark in "
                                 f"{emr.container_image}, a pairing the EMR runtime tier "
                                 "does not test (it runs EMR 7's): try a small subset first")]
    return [offered, check_spark(label, hook)]


def check_spark(label: str, hook: PreflightHook) -> Finding:
    check = "emr release spark"
    try:
        expected = releases.spark_version(label)
    except releases.UnknownReleaseError as error:
        return problem(check, str(error), "add the release's Spark version from AWS's Spark "
                                          "release history, so that the EMR runtime tier tests it")
    try:
        shipped = hook.release_applications(label).get("Spark")
    except AWS_ERRORS as error:
        return not_verified(check, f"{unavailable('emr DescribeReleaseLabel', error)}: check "
                                   f"that {label} ships Spark {expected} (aws emr "
                                   f"describe-release-label --release-label {label})")
    if not shipped or not shipped.startswith(expected):
        return problem(check, f"{label} ships Spark {shipped or 'none'}, the runtime tier tests "
                              f"Spark {expected}",
                       "correct SPARK_BY_RELEASE in msd_pipeline/targets/emr/releases.py and "
                       "run the EMR runtime tier")
    return ok(check, f"{label} ships Spark {shipped}, the version the runtime tier tests")


# -- the network --------------------------------------------------------------------------------

def has_v2_tag(resource: Mapping[str, Any]) -> bool:
    return any(tag["Key"] == V2_TAG and tag["Value"].lower() == "true"
               for tag in resource.get("Tags") or [])


def resource_id(resource: Mapping[str, Any]) -> str:
    return resource.get("SubnetId") or resource.get("GroupId") or resource["VpcId"]


def untagged(resources: Sequence[Mapping[str, Any]]) -> List[str]:
    return [resource_id(resource) for resource in resources if not has_v2_tag(resource)]


def check_network(emr: EmrSettings, hook: PreflightHook) -> Tuple[Finding, List[str]]:
    """The V2 tag on the subnet (or the default VPC's subnets), the VPC and the existing
    EMR security groups; also returns the zones the cluster may land in."""
    check = "network tags"
    try:
        found = _network(emr, hook)
    except ClientError as error:
        if error_code(error).startswith("InvalidSubnetID"):
            return problem(check, f"subnet {emr.ec2_subnet_id} does not exist in {emr.region}",
                           "correct emr.ec2_subnet_id"), []
        return not_verified(check, f"{unavailable('ec2 Describe*', error)}: check the "
                                   f"{V2_TAG}=true tag on the subnet, its VPC and the "
                                   "ElasticMapReduce-* security groups by hand"), []
    except AWS_ERRORS as error:
        return not_verified(check, f"EC2 did not answer ({error})"), []
    if found is None:
        return problem(check, f"emr.ec2_subnet_id is empty and {emr.region} has no default VPC",
                       "set emr.ec2_subnet_id to a subnet tagged "
                       f"{V2_TAG}=true in a VPC with the same tag, or create a default VPC "
                       "(aws ec2 create-default-vpc) and tag it and its subnets"), []
    resources, zones, where = found
    missing = untagged(resources)
    if missing:
        return problem(check, f"{', '.join(missing)} lack the tag {V2_TAG}=true "
                              "(AmazonEMRServicePolicy_v2 acts only on tagged resources)",
                       f"aws ec2 create-tags --region {emr.region} --resources "
                       f"{' '.join(missing)} --tags Key={V2_TAG},Value=true"), zones
    return ok(check, f"{where}: {', '.join(resource_id(r) for r in resources)} carry "
                     f"{V2_TAG}=true"), zones


def _network(emr: EmrSettings, hook: PreflightHook) -> Optional[Tuple[List[Any], List[str], str]]:
    if emr.ec2_subnet_id:
        subnet = hook.subnet(emr.ec2_subnet_id)
        vpc = hook.vpc(subnet["VpcId"])
        subnets, where = [subnet], f"subnet {emr.ec2_subnet_id}"
    else:
        vpc = hook.default_vpc()
        if vpc is None:
            return None
        subnets, where = hook.default_subnets(vpc["VpcId"]), "the default VPC (no subnet set)"
    groups = hook.security_groups(vpc["VpcId"], EMR_SECURITY_GROUPS)
    zones = sorted({subnet["AvailabilityZone"] for subnet in subnets})
    return [*subnets, vpc, *groups], zones, where
