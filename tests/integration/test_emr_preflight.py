"""The EMR preflight against a moto server (module-scoped, in this process): each check
ok, problem, and "not verified" where moto lacks the API or the checking call is denied;
the CLI's exit codes. What moto cannot emulate and how the harness adapts:
tests/emr_support.py."""
import json
import subprocess
import sys

import boto3
import pytest

import airflow_support
from emr_support import (INSTANCE_PROFILE, REGION, V2_TAG, Credentials, aws_connection, client,
                         ec2_vcpu_quota, iam_user, moto_server, prepare_account,
                         set_iam_enforcement)
from msdlib.config import load_config
from msd_devtools import services
from msd_pipeline.targets.emr.preflight import (NOT_VERIFIED, OK, PROBLEM, PreflightError,
                                                require_ready, run_checks)

BUCKET = "msd-preflight"
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ONLY_S3 = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "s3:*",
    "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
TAG = [{"Key": V2_TAG, "Value": "true"}]
OTHER_REGION = "us-west-2"


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(BUCKET) as url:
        prepare_account(url)
        yield url


@pytest.fixture(scope="module")
def account(moto_url, mongo_uri, mlflow_tracking_uri):
    """The Airflow connections of a ready account (an IAM user, so that a principal can be
    simulated) and a tagged subnet in us-east-1a, in the environment as tasks see them."""
    admin = iam_user(moto_url, "msd-preflight-admin", ADMIN)
    env = {"AIRFLOW_CONN_AWS_DEFAULT": aws_connection(moto_url, admin),
           "AIRFLOW_CONN_MONGO_DEFAULT": airflow_support.mongo_connection(mongo_uri),
           "MLFLOW_TRACKING_URI": mlflow_tracking_uri}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        vpc = default_vpc(moto_url)
        yield {"url": moto_url, "env": env, "vpc": vpc,
               "subnet": subnet(moto_url, vpc, "172.31.200.0/24", "us-east-1a")}


def ec2(moto_url, region=REGION):
    return boto3.client("ec2", endpoint_url=moto_url, region_name=region,
                        aws_access_key_id=Credentials().access_key,
                        aws_secret_access_key=Credentials().secret_key)


def default_vpc(moto_url, region=REGION):
    vpcs = ec2(moto_url, region).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
    return vpcs["Vpcs"][0]["VpcId"]


def subnet(moto_url, vpc_id, cidr, zone, tagged=True):
    subnet_id = ec2(moto_url).create_subnet(VpcId=vpc_id, CidrBlock=cidr,
                                            AvailabilityZone=zone)["Subnet"]["SubnetId"]
    if tagged:
        ec2(moto_url).create_tags(Resources=[subnet_id], Tags=TAG)
    return subnet_id


def config(**emr):
    return load_config(overrides={"emr.s3_root": f"s3://{BUCKET}/pipeline",
                                  **{f"emr.{key}": value for key, value in emr.items()}})


def statuses(findings):
    return {finding.check: finding.status for finding in findings}


def finding(findings, check):
    [found] = [item for item in findings if item.check == check]
    return found


def test_a_ready_account_passes_and_says_what_moto_cannot_verify(account):
    findings = run_checks(config(ec2_subnet_id=account["subnet"]))
    assert statuses(findings) == {
        "s3 root": OK, "emr roles": OK, "emr release": OK, "network tags": OK,
        "instance types offered": OK, "vcpu quota on-demand": OK, "mongo connection": OK,
        "mlflow registry": OK,
        # moto implements neither iam SimulatePrincipalPolicy nor emr DescribeReleaseLabel
        "iam airflow principal": NOT_VERIFIED, "iam instance profile": NOT_VERIFIED,
        "emr release spark": NOT_VERIFIED}, [item.line() for item in findings]
    assert "iam:SimulatePrincipalPolicy got no valid answer" in \
        finding(findings, "iam airflow principal").detail
    assert f"role/{INSTANCE_PROFILE}" in finding(findings, "iam instance profile").detail
    require_ready(findings)
    probes = client("s3", account["url"]).list_objects_v2(Bucket=BUCKET, Prefix="pipeline/preflight/")
    assert not probes.get("Contents")  # the probe object is gone again


def test_without_a_subnet_emr_picks_a_zone_so_a_zone_lacking_the_type_is_not_verified(account):
    offered = finding(run_checks(config()), "instance types offered")
    assert offered.status == NOT_VERIFIED  # moto, like AWS, has no m5.xlarge in us-east-1e
    assert "us-east-1e lack m5.xlarge" in offered.detail


def test_a_missing_bucket(account):
    found = finding(run_checks(config(s3_root="s3://msd-no-such-bucket/pipeline")), "s3 root")
    assert found.status == PROBLEM and "msd-no-such-bucket does not exist" in found.detail
    assert "aws s3 mb s3://msd-no-such-bucket" in found.fix


def network(findings):
    found = finding(findings, "network tags")
    assert found.status == PROBLEM, found.line()
    return found


def test_an_untagged_subnet(account):
    bare = subnet(account["url"], account["vpc"], "172.31.201.0/24", "us-east-1a", tagged=False)
    found = network(run_checks(config(ec2_subnet_id=bare)))
    assert found.detail.startswith(f"{bare} lack") and account["vpc"] not in found.detail
    assert f"--resources {bare} --tags Key={V2_TAG},Value=true" in found.fix


def test_an_untagged_vpc_and_an_untagged_emr_security_group(account):
    url = account["url"]
    vpc = ec2(url).create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    tagged_subnet = subnet(url, vpc, "10.20.1.0/24", "us-east-1a")
    found = network(run_checks(config(ec2_subnet_id=tagged_subnet)))
    assert found.detail.startswith(f"{vpc} lack")
    ec2(url).create_tags(Resources=[vpc], Tags=TAG)
    group = ec2(url).create_security_group(GroupName="ElasticMapReduce-master", VpcId=vpc,
                                           Description="made before the V2 policy")["GroupId"]
    found = network(run_checks(config(ec2_subnet_id=tagged_subnet)))
    assert found.detail.startswith(f"{group} lack")


def test_no_subnet_and_no_default_vpc(account):
    url = account["url"]
    vpc = default_vpc(url, OTHER_REGION)
    for item in ec2(url, OTHER_REGION).describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]:
        ec2(url, OTHER_REGION).delete_subnet(SubnetId=item["SubnetId"])
    ec2(url, OTHER_REGION).delete_vpc(VpcId=vpc)
    findings = run_checks(config(region=OTHER_REGION))
    found = network(findings)
    assert f"{OTHER_REGION} has no default VPC" in found.detail
    assert "emr.ec2_subnet_id" in found.fix and "create-default-vpc" in found.fix
    assert finding(findings, "instance types offered").status == NOT_VERIFIED


def test_an_instance_type_not_offered_in_the_subnets_zone(account):
    in_1e = subnet(account["url"], account["vpc"], "172.31.202.0/24", "us-east-1e")
    found = finding(run_checks(config(ec2_subnet_id=in_1e)), "instance types offered")
    assert found.status == PROBLEM and "us-east-1e does not offer m5.xlarge" in found.detail


def test_a_vcpu_quota_lower_than_the_layout(account):
    with ec2_vcpu_quota("L-1216C47A", 8):
        found = finding(run_checks(config(ec2_subnet_id=account["subnet"])), "vcpu quota on-demand")
    assert found.status == PROBLEM and "needs 12 Standard on-demand vCPUs" in found.detail
    assert "--quota-code L-1216C47A --desired-value 12" in found.fix
    with ec2_vcpu_quota("L-34B43A08", 4):
        findings = run_checks(config(ec2_subnet_id=account["subnet"], core_on_spot=True))
    assert finding(findings, "vcpu quota on-demand").status == OK  # the master only
    spot = finding(findings, "vcpu quota spot")
    assert spot.status == PROBLEM and "needs 8 Standard spot vCPUs" in spot.detail


def test_a_mongodb_connection_type_and_a_mongo_that_does_not_answer(account, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", "mongodb://u:pw-12345@127.0.0.1:27017/")
    found = finding(run_checks(config(ec2_subnet_id=account["subnet"])), "mongo connection")
    assert found.status == PROBLEM and "conn_type must be 'mongo'" in found.detail
    assert "mongo://USER:PASSWORD@" in found.fix and "?srv=true" in found.fix
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", airflow_support.mongo_connection(
        f"mongodb://127.0.0.1:{services.free_port()}"))
    found = finding(run_checks(config(ec2_subnet_id=account["subnet"])), "mongo connection")
    assert found.status == PROBLEM and "did not answer a ping" in found.detail


def test_an_mlflow_that_does_not_answer(account, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{services.free_port()}")
    found = finding(run_checks(config(ec2_subnet_id=account["subnet"])), "mlflow registry")
    assert found.status == PROBLEM and "did not answer" in found.detail


def test_denied_checking_calls_are_not_verified_never_ok_or_a_problem(account, monkeypatch):
    """A principal that may use S3 only: every other AWS check could not look."""
    url = account["url"]
    s3_only = iam_user(url, "msd-preflight-s3-only", ONLY_S3)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(url, s3_only))
    set_iam_enforcement(url, True)
    try:
        findings = run_checks(config(ec2_subnet_id=account["subnet"]))
    finally:
        set_iam_enforcement(url, False)
    aws = {check: status for check, status in statuses(findings).items()
           if check not in ("s3 root", "mongo connection", "mlflow registry")}
    assert set(aws.values()) == {NOT_VERIFIED}, [item.line() for item in findings]
    assert statuses(findings)["s3 root"] == OK
    assert "iam:GetRole was denied" in finding(findings, "emr roles").detail


def run_cli(account, tmp_path, **emr):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(**emr).to_dict()))
    env = airflow_support.airflow_env(tmp_path, extra=account["env"])
    return subprocess.run([sys.executable, "-m", "msd_pipeline.targets.emr.preflight",
                           "--config", str(path)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_cli_exits_0_when_ready_and_1_on_a_problem(account, tmp_path):
    ready = run_cli(account, tmp_path, ec2_subnet_id=account["subnet"])
    assert ready.returncode == 0, ready.stdout + ready.stderr
    lines = [line for line in ready.stdout.splitlines() if line.startswith("[")]  # not Airflow's log
    assert len(lines) == 11 and lines[0].startswith("[ok] s3 root: ")
    broken = run_cli(account, tmp_path, ec2_subnet_id=account["subnet"],
                     s3_root="s3://msd-no-such-bucket/pipeline")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "[problem] s3 root: bucket msd-no-such-bucket does not exist; fix: " in broken.stdout


def test_require_ready_raises_the_problems(account):
    findings = run_checks(config(ec2_subnet_id=account["subnet"], s3_root="s3://msd-gone/p"))
    with pytest.raises(PreflightError, match="s3 root: bucket msd-gone does not exist"):
        require_ready(findings)


def test_a_service_role_without_the_v2_policy_and_no_cleanup_role(account):
    iam = client("iam", account["url"])
    iam.create_role(RoleName="msd-bare-service-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "elasticmapreduce.amazonaws.com"}}]}))
    iam.delete_role(RoleName="AWSServiceRoleForEMRCleanup")
    try:
        found = finding(run_checks(config(service_role="msd-bare-service-role")), "emr roles")
    finally:
        prepare_account(account["url"])
    assert found.status == PROBLEM, found.line()
    assert "msd-bare-service-role lacks AmazonEMRServicePolicy_v2" in found.detail
    assert "AWSServiceRoleForEMRCleanup does not exist" in found.detail
    assert "aws iam attach-role-policy --role-name msd-bare-service-role" in found.fix
    assert "aws iam create-service-linked-role" in found.fix
