"""The preflight's logic without AWS: findings and the verdict, the Airflow principal
from a caller ARN, reading SimulatePrincipalPolicy's answer, vCPUs against quotas, the
V2 tag; and the action table against include/emr/*.json, evaluated statement by
statement (actions, resources and conditions with wildcards) like IAM does
(tests/iam_support.py)."""
import dataclasses
import json

import pytest

from msdlib.config import load_config
from msd_pipeline.targets.emr.preflight import (NOT_VERIFIED, OK, PROBLEM, Finding,
                                                PreflightError, require_ready)
from msd_pipeline.targets.emr.preflight import actions
from msd_pipeline.targets.emr.preflight.capacity import (ON_DEMAND, SPOT, is_standard,
                                                         node_groups, vcpus_needed)
from msd_pipeline.targets.emr.preflight.checks import V2_TAG, has_v2_tag, untagged
from msd_pipeline.targets.emr.preflight.iam import Scope, denials, principal_arn
from iam_support import allowed, as_list
from project_paths import PROJECT_ROOT

ACCOUNT = "123456789012"
POLICY_FILES = {actions.AIRFLOW: "iam-policy.json",
                actions.INSTANCE_PROFILE: "iam-instance-profile-policy.json"}
# Granted for an optional setup the table does not model (a source bucket of another owner).
OPTIONAL_STATEMENTS = {"OptionalReadSourceBucketOfAnotherOwner"}


def test_a_problem_line_carries_its_fix_on_one_line():
    finding = Finding("s3 root", PROBLEM, "bucket b\ndoes not exist", "aws s3 mb s3://b")
    assert finding.line() == "[problem] s3 root: bucket b does not exist; fix: aws s3 mb s3://b"
    assert Finding("mlflow registry", OK, "answered", "unused").line() == \
        "[ok] mlflow registry: answered"


def test_problems_fail_with_every_line_and_not_verified_after_them():
    findings = [Finding("a", OK, "fine"), Finding("b", NOT_VERIFIED, "by hand"),
                Finding("c", PROBLEM, "broken", "mend it"), Finding("d", PROBLEM, "gone", "add it")]
    with pytest.raises(PreflightError) as raised:
        require_ready(findings)
    lines = str(raised.value).splitlines()
    assert lines[1:3] == ["[problem] c: broken; fix: mend it", "[problem] d: gone; fix: add it"]
    assert lines[-1] == "[not verified] b: by hand" and "fine" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_not_verified_alone_does_not_fail():
    require_ready([Finding("a", OK, "fine"), Finding("b", NOT_VERIFIED, "by hand")])


@pytest.mark.parametrize("caller, principal", [
    ("arn:aws:iam::1:user/ops/airflow", "arn:aws:iam::1:user/ops/airflow"),
    ("arn:aws:iam::1:role/airflow", "arn:aws:iam::1:role/airflow"),
    ("arn:aws:sts::1:assumed-role/airflow-worker/i-0abc", "arn:aws:iam::1:role/airflow-worker"),
    ("arn:aws-cn:sts::1:assumed-role/r/s", "arn:aws-cn:iam::1:role/r"),
    ("arn:aws:iam::1:root", None),
    ("arn:aws:sts::1:federated-user/bob", None),
])
def test_the_principal_to_simulate(caller, principal):
    assert principal_arn(caller) == principal


def test_simulation_results_name_each_denied_action_and_resource():
    results = [
        {"EvalActionName": "s3:GetObject", "EvalResourceName": "arn:aws:s3:::b/p/x",
         "EvalDecision": "allowed"},
        {"EvalActionName": "s3:PutObject", "EvalResourceName": "arn:aws:s3:::b/p/x",
         "EvalDecision": "implicitDeny"},
        {"EvalActionName": "iam:PassRole", "EvalResourceName": "*", "EvalDecision": "explicitDeny",
         "ResourceSpecificResults": [
             {"EvalResourceName": "arn:aws:iam::1:role/a", "EvalResourceDecision": "allowed"},
             {"EvalResourceName": "arn:aws:iam::1:role/b", "EvalResourceDecision": "explicitDeny"}]},
        {"EvalActionName": "elasticmapreduce:RunJobFlow", "EvalResourceName": "*",
         "EvalDecision": "implicitDeny", "MissingContextValues": ["aws:RequestTag/project"]},
    ]
    assert denials(results) == [
        "s3:PutObject on arn:aws:s3:::b/p/x (implicitDeny)",
        "iam:PassRole on arn:aws:iam::1:role/b (explicitDeny)",
        "elasticmapreduce:RunJobFlow on * (implicitDeny, missing context aws:RequestTag/project)"]


def test_vcpus_by_market_for_groups_spot_and_fleets():
    emr = load_config().emr  # 1 master + 2 core m5.xlarge on demand
    vcpus = {"m5.xlarge": 4, "m5a.xlarge": 4, "m6i.xlarge": 4, "m5.2xlarge": 8}
    assert vcpus_needed(node_groups(emr, vcpus), vcpus) == {ON_DEMAND: 12}
    spot = dataclasses.replace(emr, core_on_spot=True, core_instance_count=3)
    assert vcpus_needed(node_groups(spot, vcpus), vcpus) == {ON_DEMAND: 4, SPOT: 12}
    fleets = dataclasses.replace(emr, instance_layout="fleets",
                                 fleet_instance_types=["m5.xlarge", "m5.2xlarge"])
    assert vcpus_needed(node_groups(fleets, vcpus), vcpus) == {ON_DEMAND: 4 + 2 * 8}


@pytest.mark.parametrize("instance_type, standard", [
    ("m5.xlarge", True), ("r6g.2xlarge", True), ("c7i.large", True), ("im4gn.xlarge", True),
    ("t3.medium", True), ("g4dn.xlarge", False), ("p3.2xlarge", False), ("x2idn.16xlarge", False),
    ("inf1.xlarge", False), ("dl1.24xlarge", False), ("hpc6a.48xlarge", False),
    ("trn1.2xlarge", False), ("mac2.metal", False), ("u-6tb1.metal", False)])
def test_standard_families(instance_type, standard):
    assert is_standard(instance_type) is standard


def test_the_v2_tag_must_say_true():
    tagged = {"SubnetId": "subnet-1", "Tags": [{"Key": V2_TAG, "Value": "true"}]}
    false = {"VpcId": "vpc-1", "Tags": [{"Key": V2_TAG, "Value": "false"}]}
    bare = {"GroupId": "sg-1", "VpcId": "vpc-1"}
    assert has_v2_tag(tagged) and not has_v2_tag(false)
    assert untagged([tagged, false, bare]) == ["vpc-1", "sg-1"]


# -- the action table against the policies -----------------------------------------------------

def policy(principal):
    text = (PROJECT_ROOT / "include" / "emr" / POLICY_FILES[principal]).read_text()
    return json.loads(text.replace("ACCOUNT_ID", ACCOUNT))


@pytest.fixture(scope="module")
def scope():
    config = load_config()  # s3_root and secret prefix: the policies' placeholders
    emr = config.emr
    return Scope("aws", ACCOUNT, config, f"arn:aws:iam::{ACCOUNT}:role/{emr.service_role}",
                 f"arn:aws:iam::{ACCOUNT}:role/{emr.job_flow_role}")


def test_a_statement_grants_only_on_its_resources_and_conditions(scope):
    document = policy(actions.AIRFLOW)
    context = {entry["ContextKeyName"]: entry["ContextKeyValues"][0]
               for entry in scope.context(actions.CLUSTER)}
    cluster = scope.arns(actions.CLUSTER)[0]
    assert allowed(document, "elasticmapreduce:TerminateJobFlows", cluster, context)
    assert not allowed(document, "elasticmapreduce:TerminateJobFlows", cluster, {})
    assert not allowed(document, "s3:PutObject", "arn:aws:s3:::other-bucket/msd-pipeline/x", {})
    assert not allowed(document, "s3:DeleteObject", scope.arns(actions.OBJECTS)[0], {})


@pytest.mark.parametrize("principal", [actions.AIRFLOW, actions.INSTANCE_PROFILE])
def test_every_action_of_the_table_is_allowed_by_its_policy(principal, scope):
    document = policy(principal)
    refused = []
    for action in actions.actions_of(principal):
        if action.name in actions.NEEDS_NO_PERMISSION:
            continue
        context = {entry["ContextKeyName"]: entry["ContextKeyValues"][0]
                   for entry in scope.context(action.resource)}
        refused += [f"{action.name} on {arn}" for arn in scope.arns(action.resource)
                    if not allowed(document, action.name, arn, context)]
    assert not refused, refused


@pytest.mark.parametrize("principal", [actions.AIRFLOW, actions.INSTANCE_PROFILE])
def test_every_granted_action_is_in_the_table(principal):
    """No grant outlives the code that needed it."""
    table = {action.name for action in actions.actions_of(principal)}
    granted = {name for statement in policy(principal)["Statement"]
               if statement["Sid"] not in OPTIONAL_STATEMENTS
               for name in as_list(statement["Action"])}
    assert granted <= table, granted - table
