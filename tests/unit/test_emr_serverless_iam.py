"""The EMR Serverless preflight's logic without AWS: the action table against
include/emr_serverless/*.json in both directions (tests/iam_support.py evaluates a
policy like IAM does), the trust policies, the network's Mongo hosts, the image URI."""
import json

import pytest

from iam_support import allowed, as_list
from msdlib.config import load_config
from msd_pipeline.targets.emr_serverless.preflight import actions
from msd_pipeline.targets.emr_serverless.preflight.checks import (is_public_host, mongo_hosts,
                                                                  parse_image_uri)
from msd_pipeline.targets.emr_serverless.preflight.iam import SERVICE, ServerlessScope, trusts
from project_paths import PROJECT_ROOT

ACCOUNT = "123456789012"
FOLDER = PROJECT_ROOT / "include" / "emr_serverless"
POLICY_FILES = {actions.AIRFLOW: "iam-policy.json",
                actions.EXECUTION_ROLE: "iam-execution-role-policy.json"}
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/msd-pipeline-serverless-jobs"  # the policy's name
# Granted for an optional setup the table does not model (a source bucket of another owner).
OPTIONAL_STATEMENTS = {"OptionalReadSourceBucketOfAnotherOwner"}


def document(name):
    return json.loads((FOLDER / name).read_text().replace("ACCOUNT_ID", ACCOUNT))


def policy(principal):
    return document(POLICY_FILES[principal])


@pytest.fixture(scope="module")
def scope():
    config = load_config(overrides={"emr_serverless.execution_role_arn": ROLE_ARN})
    return ServerlessScope("aws", ACCOUNT, config)


def context_of(scope, resource):
    return {entry["ContextKeyName"]: entry["ContextKeyValues"][0]
            for entry in scope.context(resource)}


@pytest.mark.parametrize("principal", [actions.AIRFLOW, actions.EXECUTION_ROLE])
def test_every_action_of_the_table_is_allowed_by_its_policy(principal, scope):
    refused = [f"{action.name} on {arn}" for action in actions.actions_of(principal)
               if action.name not in actions.NEEDS_NO_PERMISSION
               for arn in scope.arns(action.resource)
               if not allowed(policy(principal), action.name, arn, context_of(scope, action.resource))]
    assert not refused, refused


@pytest.mark.parametrize("principal", [actions.AIRFLOW, actions.EXECUTION_ROLE])
def test_every_granted_action_is_in_the_table(principal):
    """No grant outlives the code that needed it."""
    table = {action.name for action in actions.actions_of(principal)}
    granted = {name for statement in policy(principal)["Statement"]
               if statement["Sid"] not in OPTIONAL_STATEMENTS
               for name in as_list(statement["Action"])}
    assert granted <= table, granted - table


def test_grants_stay_on_the_runs_resources_and_tags(scope):
    airflow, role = policy(actions.AIRFLOW), policy(actions.EXECUTION_ROLE)
    application = scope.arns(actions.APPLICATION)[0]
    tagged = context_of(scope, actions.APPLICATION)
    assert allowed(airflow, "emr-serverless:DeleteApplication", application, tagged)
    assert not allowed(airflow, "emr-serverless:DeleteApplication", application, {})
    assert not allowed(airflow, "emr-serverless:CreateApplication", "*", {})
    assert not allowed(airflow, "iam:PassRole", ROLE_ARN, {})  # passed to another service
    assert not allowed(airflow, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin",
                       context_of(scope, actions.PASSED_ROLE))
    [code, *_] = scope.arns(actions.READ_OBJECTS)
    assert allowed(role, "s3:GetObject", code, {}) and not allowed(role, "s3:PutObject", code, {})
    assert not allowed(role, "s3:GetObject", "arn:aws:s3:::other-bucket/msd-pipeline/runs/x", {})


def test_the_trust_policy_file_trusts_emr_serverless_only():
    trust = document("execution-role-trust-policy.json")
    assert trusts(trust, SERVICE)
    assert not trusts(trust, "ec2.amazonaws.com")


@pytest.mark.parametrize("statements, trusted", [
    ([{"Effect": "Allow", "Principal": {"Service": [SERVICE, "ec2.amazonaws.com"]},
       "Action": ["sts:AssumeRole", "sts:TagSession"]}], True),
    ([{"Effect": "Allow", "Principal": {"Service": SERVICE}, "Action": "sts:*"}], True),
    ([{"Effect": "Allow", "Principal": {"Service": "elasticmapreduce.amazonaws.com"},
       "Action": "sts:AssumeRole"}], False),
    ([{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
       "Action": "sts:AssumeRole"}], False),
    ([{"Effect": "Allow", "Principal": {"Service": SERVICE}, "Action": "sts:AssumeRole"},
      {"Effect": "Deny", "Principal": {"Service": SERVICE}, "Action": "sts:AssumeRole"}], False),
])
def test_trust(statements, trusted):
    assert trusts({"Version": "2012-10-17", "Statement": statements}, SERVICE) is trusted


def test_a_repository_policy_lets_emr_serverless_pull():
    pull = {"Statement": {"Effect": "Allow", "Principal": {"Service": SERVICE},
                          "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                     "ecr:DescribeImages"]}}
    assert trusts(pull, SERVICE, "ecr:GetDownloadUrlForLayer")
    assert not trusts(pull, SERVICE, "ecr:PutImage")


@pytest.mark.parametrize("uri, hosts", [
    ("mongodb://u:p@db1.example.com:27017,db2.example.com/?replicaSet=rs", ["db1.example.com", "db2.example.com"]),
    ("mongodb+srv://u:p%40x@cluster0.ab1cd.mongodb.net/msd?retryWrites=true", ["cluster0.ab1cd.mongodb.net"]),
    ("mongodb://127.0.0.1:27017", ["127.0.0.1"]),
    ("mongodb://[::1]:27017/", ["[::1]"]),
])
def test_mongo_hosts(uri, hosts):
    assert mongo_hosts(uri) == hosts


@pytest.mark.parametrize("host, public", [
    ("cluster0.ab1cd.mongodb.net", True), ("8.8.8.8", True), ("10.0.1.5", False),
    ("172.31.9.9", False), ("127.0.0.1", False), ("localhost", False), ("[::1]", False),
    ("mongo.invalid", False)])
def test_public_hosts(host, public):
    assert is_public_host(host) is public


def test_image_uris():
    base = "123456789012.dkr.ecr.us-east-1.amazonaws.com/msd-jobs"
    assert parse_image_uri(base + ":7.5.0") == ("123456789012", "us-east-1", "msd-jobs",
                                                {"imageTag": "7.5.0"})
    digest = "sha256:" + "a" * 64
    assert parse_image_uri(f"{base}@{digest}")[3] == {"imageDigest": digest}
    assert parse_image_uri(base)[3] == {"imageTag": "latest"}
    assert parse_image_uri("docker.io/library/python:3.9") is None
