"""Every AWS action the pipeline's two principals use, and on which resource: the table
the preflight's IAM simulation checks (``iam:SimulatePrincipalPolicy``), that
tests/unit/test_emr_preflight_logic.py checks against include/emr/*.json, and that
tests/e2e/test_emr_iam.py checks the calls of a whole run against.

* ``AIRFLOW``: the principal of the Airflow connection ``emr.aws_conn_id`` (the DAG's
  tasks, triggers and this preflight); policy include/emr/iam-policy.json.
* ``INSTANCE_PROFILE``: the role of the instance profile ``emr.job_flow_role`` (the Spark
  jobs, the bootstrap, EMR's log pushing); include/emr/iam-instance-profile-policy.json.

``resource`` names the ARN the simulation uses (``preflight.iam.resource_arns``).
``PREFLIGHT_ACTIONS`` are the preflight's own reads: not simulated (each check says "not
verified" when its read is denied), but granted by the policy all the same.
"""
from dataclasses import dataclass
from typing import Dict, Tuple

AIRFLOW = "airflow"
INSTANCE_PROFILE = "instance profile"

# Resources of the simulation.
ANY = "any"                    # "*": actions without a resource type
CLUSTER = "cluster"            # a pipeline cluster (tagged like emr.tags)
BUCKET = "bucket"              # the bucket of emr.s3_root
OBJECTS = "objects"            # objects below emr.s3_root (runs/, data/, logs/, artifacts/)
PROBE = "probe"                # the preflight's probe object below emr.s3_root
SECRET = "secret"              # a run's Mongo secret (emr.mongo_secret_prefix...)
SERVICE_ROLE = "service role"  # emr.service_role, passed to EMR
JOB_FLOW_ROLE = "job flow role"  # the instance profile's role, passed to EC2
REPOSITORY = "repository"      # the ECR repository of emr.container_image

# AWS: "No permissions are required to perform this operation."
NEEDS_NO_PERMISSION = ("sts:GetCallerIdentity",)


@dataclass(frozen=True)
class Action:
    name: str
    resource: str
    used_by: str


def actions_on(resource: str, used_by: str, *names: str) -> Tuple[Action, ...]:
    return tuple(Action(name, resource, used_by) for name in names)


RUN_ACTIONS: Dict[str, Tuple[Action, ...]] = {
    AIRFLOW: (
        *actions_on(ANY, "cluster.create_cluster (RunJobFlow with tags and an auto-termination "
                         "policy)",
                    "elasticmapreduce:RunJobFlow", "elasticmapreduce:AddTags"),
        *actions_on(CLUSTER, "create wait, Spark steps, teardown, run record (idle time: "
                             "ListSteps)",
                    "elasticmapreduce:DescribeCluster", "elasticmapreduce:AddJobFlowSteps",
                    "elasticmapreduce:DescribeStep", "elasticmapreduce:ListSteps",
                    "elasticmapreduce:TerminateJobFlows",
                    "elasticmapreduce:PutAutoTerminationPolicy",
                    "elasticmapreduce:GetAutoTerminationPolicy"),
        *actions_on(ANY, "teardown and failure callback find the run's clusters by name",
                    "elasticmapreduce:ListClusters"),
        *actions_on(SERVICE_ROLE, "RunJobFlow passes the service role", "iam:PassRole"),
        *actions_on(JOB_FLOW_ROLE, "RunJobFlow passes the instance profile's role", "iam:PassRole"),
        *actions_on(BUCKET, "staging, code shipping, step logs (a missing key is a 404)",
                    "s3:ListBucket"),
        *actions_on(OBJECTS, "staging, code, job config, artifacts, step logs",
                    "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"),
        *actions_on(SECRET, "cluster.ship_code creates the run's Mongo secret, teardown deletes it",
                    "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                    "secretsmanager:TagResource", "secretsmanager:DeleteSecret"),
    ),
    INSTANCE_PROFILE: (
        *actions_on(BUCKET, "the jobs list the run's files", "s3:ListBucket"),
        *actions_on(OBJECTS, "bootstrap, code, songs, artifacts, EMR's log pushing",
                    "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                    "s3:AbortMultipartUpload"),
        *actions_on(SECRET, "the executors read the run's Mongo URI",
                    "secretsmanager:GetSecretValue"),
        *actions_on(ANY, "Docker on YARN: the nodes' ECR auto-authentication",
                    "ecr:GetAuthorizationToken"),
        *actions_on(REPOSITORY, "Docker on YARN: the nodes pull emr.container_image",
                    "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability"),
    ),
}

# Used only with emr.container_image set (Docker on YARN).
CONTAINER_IMAGE_ACTIONS = ("ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                           "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")

PREFLIGHT_ACTIONS: Tuple[Action, ...] = (
    *actions_on(ANY, "preflight: who is the Airflow principal", *NEEDS_NO_PERMISSION),
    *actions_on(ANY, "preflight: simulate, find the EMR roles",
                "iam:SimulatePrincipalPolicy", "iam:GetRole", "iam:GetInstanceProfile",
                "iam:ListAttachedRolePolicies"),
    *actions_on(ANY, "preflight: release, instance types, quotas, network tags",
                "elasticmapreduce:ListReleaseLabels", "elasticmapreduce:DescribeReleaseLabel",
                "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                "servicequotas:GetServiceQuota", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
                "ec2:DescribeSecurityGroups"),
    *actions_on(PROBE, "preflight: the S3 probe object is deleted again", "s3:DeleteObject"),
)


def actions_of(principal: str) -> Tuple[Action, ...]:
    """Everything ``principal`` calls: the run's actions, and for Airflow the preflight's."""
    return RUN_ACTIONS[principal] + (PREFLIGHT_ACTIONS if principal == AIRFLOW else ())
