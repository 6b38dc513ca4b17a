"""Every AWS action the EMR Serverless target's two principals use, and on which
resource: the table the preflight's IAM simulation checks and that
tests/unit/test_emr_serverless_iam.py checks against include/emr_serverless/*.json.

* ``AIRFLOW``: the principal of the Airflow connection ``emr.aws_conn_id`` (the DAG's
  tasks, triggers and this preflight); policy include/emr_serverless/iam-policy.json,
  complete (it replaces include/emr/iam-policy.json for this target).
* ``EXECUTION_ROLE``: ``emr_serverless.execution_role_arn``, the role the job runs
  assume; include/emr_serverless/iam-execution-role-policy.json, trusted by
  ``emr-serverless.amazonaws.com`` (execution-role-trust-policy.json).

``resource`` names the ARN the simulation uses (``preflight.iam.ServerlessScope``).
``PREFLIGHT_ACTIONS`` are the preflight's own reads: not simulated (each check says
"not verified" when its read is denied), but granted by the policy all the same.
"""
from typing import Dict, Tuple

from msd_pipeline.targets.emr.preflight.actions import (ANY, BUCKET, NEEDS_NO_PERMISSION, OBJECTS,
                                                        PROBE, SECRET, Action, actions_on)

AIRFLOW = "airflow"
EXECUTION_ROLE = "execution role"

# Resources of the simulation besides the EMR table's ANY, BUCKET, OBJECTS, PROBE, SECRET.
APPLICATION = "application"        # a run's application (tagged like emr.tags)
JOB_RUN = "job run"                # a job run of a run's application
PASSED_ROLE = "passed role"        # the execution role, passed to EMR Serverless
READ_OBJECTS = "read objects"      # what the jobs read: code, job config, songs, the archive
WRITE_OBJECTS = "write objects"    # what the jobs write: artifacts, and AWS the driver logs

RUN_ACTIONS: Dict[str, Tuple[Action, ...]] = {
    AIRFLOW: (
        *actions_on(ANY, "serverless.create_application (tagged); the teardown and the failure "
                       "callback find the run's applications by name",
                  "emr-serverless:CreateApplication", "emr-serverless:ListApplications"),
        *actions_on(APPLICATION, "create and start waits, job runs, the teardown's stop (it "
                               "cancels running jobs) and delete",
                  "emr-serverless:GetApplication", "emr-serverless:StartApplication",
                  "emr-serverless:StopApplication", "emr-serverless:DeleteApplication",
                  "emr-serverless:StartJobRun", "emr-serverless:ListJobRuns",
                  "emr-serverless:TagResource"),
        *actions_on(JOB_RUN, "job waits, billed utilization (cost), cancelling a killed task's "
                           "job", "emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"),
        *actions_on(PASSED_ROLE, "StartJobRun passes the execution role", "iam:PassRole"),
        *actions_on(BUCKET, "staging, code shipping, driver logs (a missing key is a 404)",
                  "s3:ListBucket"),
        *actions_on(OBJECTS, "staging, code, dependency archive, job config, artifacts, "
                           "driver logs",
                  "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"),
        *actions_on(SECRET, "serverless.ship_code creates the run's Mongo secret, teardown "
                          "deletes it",
                  "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                  "secretsmanager:TagResource", "secretsmanager:DeleteSecret"),
    ),
    EXECUTION_ROLE: (
        *actions_on(BUCKET, "the jobs list the run's files", "s3:ListBucket"),
        *actions_on(READ_OBJECTS, "code, job config, songs, dependency archive",
                  "s3:GetObject"),
        *actions_on(WRITE_OBJECTS, "artifacts, job summaries; EMR Serverless's driver logs",
                  "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                  "s3:AbortMultipartUpload"),
        *actions_on(SECRET, "driver and executors read the run's Mongo URI",
                  "secretsmanager:GetSecretValue"),
    ),
}

PREFLIGHT_ACTIONS: Tuple[Action, ...] = (
    *actions_on(ANY, "preflight: who is the Airflow principal", *NEEDS_NO_PERMISSION),
    *actions_on(ANY, "preflight: simulate, the execution role and its trust",
              "iam:SimulatePrincipalPolicy", "iam:GetRole"),
    *actions_on(ANY, "preflight: the release, subnets, security groups, the image",
              "elasticmapreduce:ListReleaseLabels", "elasticmapreduce:DescribeReleaseLabel",
              "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ecr:DescribeImages",
              "ecr:GetRepositoryPolicy"),
    *actions_on(PROBE, "preflight: the S3 probe object is deleted again", "s3:DeleteObject"),
)


def actions_of(principal: str) -> Tuple[Action, ...]:
    """Everything ``principal`` calls: the run's actions, and for Airflow the preflight's."""
    return RUN_ACTIONS[principal] + (PREFLIGHT_ACTIONS if principal == AIRFLOW else ())
