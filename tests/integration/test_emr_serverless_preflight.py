"""The EMR Serverless preflight against a moto server (module-scoped, in this process):
a prepared account passes ("not verified" where moto lacks the API: IAM simulation,
DescribeReleaseLabel; and EMR Serverless has no release listing at all), and a missing
or mis-trusting execution role, a missing subnet, no network with a private MongoDB and
a missing or unpullable image each give their problem with its fix. moto answers 500
for the APIs it lacks; the preflight's clients retry once (aws.py)."""
import contextlib
import json
import subprocess
import sys

import pytest

import airflow_support
from emr_support import (ACCOUNT_ID, Credentials, aws_connection, client, iam_user,
                         moto_server, prepare_account)
from msdlib.config import load_config
from msd_pipeline.targets.emr_serverless.preflight import (NOT_VERIFIED, OK, PROBLEM, WARNING,
                                                           require_ready, run_checks)
from project_paths import PROJECT_ROOT

BUCKET = "msd-serverless-preflight"
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
IAM_FOLDER = PROJECT_ROOT / "include" / "emr_serverless"
ROLE = "msd-pipeline-serverless-jobs"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE}"
REPOSITORY = "msd-jobs"
IMAGE_URI = f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}:7.5.0"
PULL_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "EmrServerlessPulls", "Effect": "Allow",
    "Principal": {"Service": "emr-serverless.amazonaws.com"},
    "Action": ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]}]}
MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                       "digest": "sha256:" + "b" * 64},
            "layers": []}


def iam_document(name):
    return (IAM_FOLDER / name).read_text().replace("ACCOUNT_ID", ACCOUNT_ID)


def prepare_serverless_account(url):
    """What docs/emr-serverless.md has a user do once: the execution role with its trust
    and policy, and the image in ECR with a repository policy EMR Serverless pulls by."""
    iam = client("iam", url)
    # moto's accounts outlive a server: another module may have made the role already.
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=iam_document(
            "execution-role-trust-policy.json"))
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=iam_document(
        "execution-role-trust-policy.json"))
    iam.put_role_policy(RoleName=ROLE, PolicyName="msd-pipeline-job-runs",
                        PolicyDocument=iam_document("iam-execution-role-policy.json"))
    ecr = client("ecr", url)
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=REPOSITORY)
    with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=REPOSITORY, imageManifest=json.dumps(MANIFEST),
                      imageTag="7.5.0")
    ecr.set_repository_policy(repositoryName=REPOSITORY, policyText=json.dumps(PULL_POLICY))


@pytest.fixture(scope="module")
def account(mongo_uri, mlflow_tracking_uri):
    with moto_server(BUCKET) as url:
        prepare_account(url)
        prepare_serverless_account(url)
        admin = iam_user(url, "msd-serverless-preflight-admin", ADMIN)
        env = {"AIRFLOW_CONN_AWS_DEFAULT": aws_connection(url, admin),
               "AIRFLOW_CONN_MONGO_DEFAULT": airflow_support.mongo_connection(mongo_uri),
               "MLFLOW_TRACKING_URI": mlflow_tracking_uri}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield {"url": url, "env": env, **default_network(url)}


def default_network(url):
    """Two default subnets (us-east-1a, us-east-1b) and the default VPC's security group."""
    ec2 = client("ec2", url)
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    subnets = {subnet["AvailabilityZone"]: subnet["SubnetId"] for subnet in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]}
    [group] = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "group-name", "Values": ["default"]}])[
        "SecurityGroups"]
    return {"subnets": [subnets["us-east-1a"], subnets["us-east-1b"]], "group": group["GroupId"]}


def settings(account, **serverless):
    """A ready configuration: image mode, two subnets, the default security group."""
    ready = {"execution_role_arn": ROLE_ARN, "dependencies": "image", "image_uri": IMAGE_URI,
             "subnet_ids": account["subnets"], "security_group_ids": [account["group"]]}
    return load_config(overrides={"emr.s3_root": f"s3://{BUCKET}/pipeline", **{
        f"emr_serverless.{key}": value for key, value in {**ready, **serverless}.items()}})


def statuses(findings):
    return {finding.check: finding.status for finding in findings}


def finding(findings, check):
    [found] = [item for item in findings if item.check == check]
    return found


def a_problem(findings, check):
    found = finding(findings, check)
    assert found.status == PROBLEM, [item.line() for item in findings]
    return found


def test_a_prepared_account_passes_and_says_what_cannot_be_verified(account):
    findings = run_checks(settings(account))
    assert statuses(findings) == {
        "s3 root": OK, "execution role": OK, "serverless network": OK,
        "serverless subnet zones": OK, "serverless image": OK, "mongo connection": OK,
        "mlflow registry": OK,
        # moto implements neither iam SimulatePrincipalPolicy nor emr DescribeReleaseLabel;
        # EMR Serverless has no API listing its releases
        "iam airflow principal": NOT_VERIFIED, "iam execution role": NOT_VERIFIED,
        "serverless release": NOT_VERIFIED, "emr release spark": NOT_VERIFIED,
    }, [item.line() for item in findings]
    assert "emr-7.5.0 is an EMR release in us-east-1" in finding(findings, "serverless release").detail
    assert ROLE_ARN in finding(findings, "iam execution role").detail
    require_ready(findings)


def test_a_missing_and_an_unset_execution_role(account):
    missing = a_problem(run_checks(settings(
        account, execution_role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/msd-no-such-role")),
        "execution role")
    assert "role msd-no-such-role does not exist" in missing.detail
    assert "aws iam create-role --role-name msd-no-such-role --assume-role-policy-document " \
           "file://include/emr_serverless/execution-role-trust-policy.json" in missing.fix
    unset = a_problem(run_checks(settings(account, execution_role_arn="")), "execution role")
    assert "execution_role_arn is empty" in unset.detail and "create-role" in unset.fix


def test_a_role_that_emr_serverless_may_not_assume(account):
    client("iam", account["url"]).create_role(
        RoleName="msd-ec2-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    found = a_problem(run_checks(settings(
        account, execution_role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/msd-ec2-role")), "execution role")
    assert "does not let emr-serverless.amazonaws.com assume it" in found.detail
    assert "aws iam update-assume-role-policy --role-name msd-ec2-role" in found.fix


def test_a_missing_subnet_and_one_zone(account):
    findings = run_checks(settings(account, subnet_ids=[account["subnets"][0], "subnet-0123456789abcdef0"]))
    found = a_problem(findings, "serverless network")
    assert found.detail == "subnet-0123456789abcdef0 do not exist in us-east-1"
    assert "emr_serverless.subnet_ids" in found.fix
    zones = finding(run_checks(settings(account, subnet_ids=account["subnets"][:1])),
                    "serverless subnet zones")
    assert zones.status == WARNING and "us-east-1a only" in zones.detail


def test_no_network_with_a_private_mongo(account):
    found = a_problem(run_checks(settings(account, subnet_ids=[], security_group_ids=[])),
                      "serverless network")
    assert "reach only public internet endpoints" in found.detail and "127.0.0.1" in found.detail
    assert "emr_serverless.subnet_ids" in found.fix and "security_group_ids" in found.fix


def test_a_missing_image_and_a_repository_emr_serverless_may_not_pull_from(account):
    found = a_problem(run_checks(settings(account, image_uri=IMAGE_URI.replace("7.5.0", "7.6.0"))),
                      "serverless image")
    assert "ImageNotFoundException" in found.detail
    assert "docker/emr-serverless/Dockerfile" in found.fix
    ecr = client("ecr", account["url"])
    ecr.create_repository(repositoryName="msd-private")
    ecr.put_image(repositoryName="msd-private", imageManifest=json.dumps(MANIFEST), imageTag="1")
    found = a_problem(run_checks(settings(account, image_uri=IMAGE_URI.replace(
        f"{REPOSITORY}:7.5.0", "msd-private:1"))), "serverless image")
    assert "has no policy" in found.detail
    assert "aws ecr set-repository-policy --repository-name msd-private" in found.fix


def test_archive_mode_checks_no_image(account):
    assert "serverless image" not in statuses(run_checks(settings(account, dependencies="archive")))


def test_the_cli_exits_0_on_a_ready_account(account, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings(account).to_dict()))
    env = airflow_support.airflow_env(tmp_path, extra=account["env"])
    ready = subprocess.run([sys.executable, "-m", "msd_pipeline.targets.emr_serverless.preflight",
                            "--config", str(path)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    lines = [line for line in ready.stdout.splitlines() if line.startswith("[")]  # not Airflow's log
    assert len(lines) == 11 and lines[0].startswith("[ok] s3 root: ")
