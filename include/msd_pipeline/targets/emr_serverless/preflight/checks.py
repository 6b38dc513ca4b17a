"""The EMR Serverless checks besides IAM: the release, the network the job runs reach
MongoDB through, and the custom image."""
import ipaddress
import re
import socket
from typing import List, Optional, Sequence, Tuple

from botocore.exceptions import ClientError

from msdlib.config import EmrServerlessSettings, EmrSettings
from msd_pipeline.targets.emr.preflight.aws import AWS_ERRORS, error_code, unavailable
from msd_pipeline.targets.emr.preflight.checks import check_spark
from msd_pipeline.targets.emr.preflight.findings import (Finding, not_verified, ok, problem,
                                                         warning)
from msd_pipeline.targets.emr_serverless.preflight.aws import ServerlessPreflightHook
from msd_pipeline.targets.emr_serverless.preflight.iam import SERVICE, trusts

RELEASES_PAGE = "https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/release-versions.html"
FIRST_RELEASE = (6, 6, 0)  # EMR Serverless's first release
RELEASE = re.compile(r"emr-(\d+)\.(\d+)\.(\d+)")
NETWORK_CHECK = "serverless network"
ZONES_CHECK = "serverless subnet zones"
IMAGE_CHECK = "serverless image"
ECR_URI = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)"
                     r"(?::([\w.-]+)|@(sha256:[0-9a-f]{64}))?")
# What EMR Serverless needs of the repository to pull the image.
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer")
NETWORK_FIX = ("set emr_serverless.subnet_ids (private subnets in at least 2 availability zones, "
               "with a NAT gateway for S3 and AWS's APIs, or VPC endpoints) and "
               "emr_serverless.security_group_ids (outbound to MongoDB's port) where the "
               "jobs reach MongoDB; docs/emr-serverless.md, Network")


# -- the release --------------------------------------------------------------------------------

def check_release(emr: EmrSettings, hook: ServerlessPreflightHook) -> List[Finding]:
    """EMR Serverless has no API that lists its releases (CreateApplication refuses a
    label it lacks): an EMR release from emr-6.6.0 on is the most the preflight can
    verify; the Spark it ships is checked as for EMR on EC2 (same release, same Spark)."""
    check, label = "serverless release", emr.release_label
    matched = RELEASE.fullmatch(label)
    if not matched or tuple(int(part) for part in matched.groups()) < FIRST_RELEASE:
        return [problem(check, f"{label} is not an EMR Serverless release (they start at "
                               "emr-6.6.0)", f"set emr.release_label to an EMR 7 release of {RELEASES_PAGE}")]
    try:
        labels = hook.release_labels(label)
    except AWS_ERRORS as error:
        return [not_verified(check, f"{unavailable('emr ListReleaseLabels', error)}: check that "
                                    f"{label} is in {RELEASES_PAGE}")]
    if label not in labels:
        return [problem(check, f"{label} is not an EMR release in {emr.region}",
                        f"set emr.release_label to an EMR 7 release of {RELEASES_PAGE}")]
    return [not_verified(check, f"{label} is an EMR release in {emr.region}, from emr-6.6.0 on; "
                                "EMR Serverless has no API listing its own releases: check that "
                                f"it is in {RELEASES_PAGE}"),
            check_spark(label, hook)]


# -- the network ----------------------------------------------------------------------------------

def check_network(serverless: EmrServerlessSettings, emr: EmrSettings,
                  hook: ServerlessPreflightHook, mongo_hosts: Optional[List[str]]) -> List[Finding]:
    """Without a network configuration a job run reaches public endpoints only: the Mongo
    hosts must be public. With one, every subnet and security group must exist, in one
    VPC; subnets in fewer than 2 zones are against AWS's recommendation."""
    subnet_ids, group_ids = serverless.subnet_ids, serverless.security_group_ids
    if not subnet_ids and not group_ids:
        return [_without_vpc(mongo_hosts)]
    if not subnet_ids or not group_ids:
        missing = "subnet_ids" if not subnet_ids else "security_group_ids"
        return [problem(NETWORK_CHECK, f"emr_serverless.{missing} is empty: a network "
                                       "configuration needs subnets and security groups", NETWORK_FIX)]
    try:
        subnets = _described(hook.subnets, subnet_ids, "InvalidSubnetID")
        groups = _described(hook.security_groups_by_id, group_ids, "InvalidGroup")
    except AWS_ERRORS as error:
        return [not_verified(NETWORK_CHECK, f"{unavailable('ec2 Describe*', error)}: check that "
                                            f"{', '.join(subnet_ids + group_ids)} exist in "
                                            f"{emr.region}, in one VPC")]
    missing = [item for item, found in list(zip(subnet_ids, subnets)) + list(zip(group_ids, groups))
               if found is None]
    if missing:
        return [problem(NETWORK_CHECK, f"{', '.join(missing)} do not exist in {emr.region}",
                        "correct emr_serverless.subnet_ids / security_group_ids")]
    vpcs = sorted({item["VpcId"] for item in subnets + groups})
    if len(vpcs) > 1:
        return [problem(NETWORK_CHECK, f"the subnets and security groups span VPCs {', '.join(vpcs)}",
                        "choose subnets and security groups of one VPC")]
    zones = sorted({subnet["AvailabilityZone"] for subnet in subnets})
    found = ok(NETWORK_CHECK, f"subnets {', '.join(subnet_ids)} and security groups "
                              f"{', '.join(group_ids)} exist in {vpcs[0]}; that they route to "
                              "MongoDB, S3 and AWS's APIs is not checked from here")
    if len(zones) < 2:
        return [found, warning(ZONES_CHECK, f"the subnets are in {zones[0]} only: AWS recommends "
                                            "subnets in at least 2 availability zones, so that a "
                                            "zone's outage or capacity does not stop the job runs")]
    return [found, ok(ZONES_CHECK, f"subnets in {len(zones)} zones: {', '.join(zones)}")]


def _described(describe, ids: Sequence[str], not_found_prefix: str) -> List[Optional[dict]]:
    """Each id's description, None for one that does not exist (one call per id, so a
    missing one is named)."""
    found: List[Optional[dict]] = []
    for item in ids:
        try:
            found.append(describe([item])[0])
        except ClientError as error:
            if not error_code(error).startswith(not_found_prefix):
                raise
            found.append(None)
    return found


def _without_vpc(mongo_hosts: Optional[List[str]]) -> Finding:
    if mongo_hosts is None:
        return not_verified(NETWORK_CHECK, "no network configuration (the jobs reach public "
                                           "endpoints only) and the Mongo hosts are unknown (see "
                                           "'mongo connection'): check that they are public")
    private = [host for host, public in ((host, is_public_host(host)) for host in mongo_hosts)
               if not public]
    if private:
        return problem(NETWORK_CHECK, "neither emr_serverless.subnet_ids nor security_group_ids is "
                                      "set, so the job runs reach only public internet endpoints, "
                                      f"and the Mongo host(s) {', '.join(private)} are not public",
                       NETWORK_FIX)
    return ok(NETWORK_CHECK, "no network configuration: the job runs reach public endpoints only, "
                             f"and the Mongo host(s) {', '.join(mongo_hosts)} are public (their "
                             "access list must admit AWS's addresses: Atlas 0.0.0.0/0, or use a VPC)")


def is_public_host(host: str) -> bool:
    """A MongoDB Atlas host, a public IP address, or a name that resolves to public
    addresses only (as seen from Airflow)."""
    if host.lower().rstrip(".").endswith(".mongodb.net"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_global
                                   for address in addresses)


def mongo_hosts(uri: str) -> List[str]:
    """The host names of a mongodb:// or mongodb+srv:// URI (no DNS lookup)."""
    rest = uri.split("://", 1)[1]
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return [_strip_port(host) for host in hosts.split(",") if host]


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[:host.index("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# -- the image ------------------------------------------------------------------------------------

def parse_image_uri(uri: str) -> Optional[Tuple[str, str, str, dict]]:
    """(registry account, region, repository, image id) of an ECR image URI."""
    matched = ECR_URI.fullmatch(uri)
    if not matched:
        return None
    account, region, repository, tag, digest = matched.groups()
    return account, region, repository, ({"imageDigest": digest} if digest
                                         else {"imageTag": tag or "latest"})


def check_image(serverless: EmrServerlessSettings, emr: EmrSettings,
                hook: ServerlessPreflightHook) -> List[Finding]:
    """With dependencies = "image": the image is in ECR in the run's region and the
    repository policy lets EMR Serverless pull it."""
    if serverless.dependencies != "image":
        return []
    uri = serverless.image_uri
    parsed = parse_image_uri(uri)
    if parsed is None:
        return [problem(IMAGE_CHECK, f"{uri!r} is not an ECR image URI",
                        "set emr_serverless.image_uri to ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG "
                        "(docs/emr-serverless.md, Image)")]
    account, region, repository, image_id = parsed
    if region != emr.region:
        return [problem(IMAGE_CHECK, f"{uri} is in {region}, the application in {emr.region}",
                        f"push the image to ECR in {emr.region}")]
    try:
        hook.image(account, repository, image_id)
    except ClientError as error:
        if error_code(error) in ("RepositoryNotFoundException", "ImageNotFoundException"):
            return [problem(IMAGE_CHECK, f"{uri}: {error_code(error)}",
                            "build docker/emr-serverless/Dockerfile and push it "
                            "(docs/emr-serverless.md, Image), or correct emr_serverless.image_uri")]
        return [not_verified(IMAGE_CHECK, f"{unavailable('ecr DescribeImages', error)}: check "
                                          f"that {uri} exists")]
    except AWS_ERRORS as error:
        return [not_verified(IMAGE_CHECK, f"ECR did not answer ({error}): check that {uri} exists")]
    return [_check_pull_policy(hook, account, repository, uri)]


def _check_pull_policy(hook: ServerlessPreflightHook, account: str, repository: str,
                       uri: str) -> Finding:
    fix = (f"aws ecr set-repository-policy --repository-name {repository} --policy-text "
           "'<the policy of docs/emr-serverless.md, Image>'")
    try:
        policy = hook.repository_policy(account, repository)
    except ClientError as error:
        if error_code(error) == "RepositoryPolicyNotFoundException":
            return problem(IMAGE_CHECK, f"{uri} exists, but repository {repository} has no policy: "
                                        f"{SERVICE} may not pull it", fix)
        return not_verified(IMAGE_CHECK, f"{uri} exists; {unavailable('ecr GetRepositoryPolicy', error)}: "
                                         f"check that the repository policy lets {SERVICE} pull")
    except AWS_ERRORS as error:
        return not_verified(IMAGE_CHECK, f"{uri} exists; ECR did not answer ({error})")
    refused = [action for action in PULL_ACTIONS if not trusts(policy, SERVICE, action)]
    if refused:
        return problem(IMAGE_CHECK, f"{uri} exists, but the policy of repository {repository} "
                                    f"does not allow {SERVICE} {', '.join(refused)}", fix)
    return ok(IMAGE_CHECK, f"{uri} exists and {SERVICE} may pull it")
