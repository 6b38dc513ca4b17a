"""``airflow dags test msd_emr_serverless_pipeline`` against moto, three runs: success under
moto's IAM enforcement (Airflow's calls as an IAM user holding include/emr_serverless/
iam-policy.json, the job runs played on local Spark as one holding the execution role's
policy; every call checked against the action table), a failed job run, and an ingest
job run that hangs until its task's execution timeout cancels it — then the DAG
processor's failure callback for the run timeout. Each ends with every application of
the run stopped and deleted and the run's secret gone. How moto plays EMR Serverless, and
where it differs from AWS: tests/emr_serverless_support.py and tests/emr_support.py; the
shared e2e helpers: tests/emr_dag_support.py."""
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any, Dict

import pymongo
import pytest

from emr_dag_support import (SONGS, airflow_env_for, assert_no_secret_leaked,
                             enforceable_policy, run_airflow_program, run_pipeline,
                             write_config)
from emr_serverless_support import (FAILED_JOB_MARKER, JobRunDriver, RealJobRunner,
                                    emr_serverless_backend, failing_job, hanging_job,
                                    moto_as_aws)
from emr_support import (ACCOUNT_ID, REGION, assert_calls_in_table, calls_by_principal,
                         client, iam_enforced, iam_user, recorded_calls)
from msd_pipeline.targets.emr_serverless.preflight import actions
from project_paths import PROJECT_ROOT

DAG_ID = "msd_emr_serverless_pipeline"
POLICIES = PROJECT_ROOT / "include" / "emr_serverless"
AIRFLOW_USER = "msd-serverless-airflow"
EXECUTION_ROLE_USER = "msd-serverless-execution-role"
EXECUTION_ROLE = "msd-pipeline-serverless-jobs"
IMAGE_REPOSITORY = "msd-emr-serverless"
IMAGE_TAG = "emr-7.5.0"


@pytest.fixture(scope="module", autouse=True)
def moto_behaving_as_aws():
    """Where moto 5.2 differs from AWS in what the pipeline sees (tests/emr_serverless_support.py)."""
    with moto_as_aws():
        yield


@pytest.fixture(scope="module")
def serverless_account(moto_url) -> Dict[str, Any]:
    """What docs/emr-serverless.md has a user make once: the execution role, the image in
    ECR with the pull policy, subnets and a security group reaching MongoDB. Returns the
    [emr_serverless] settings naming them."""
    iam, ecr, ec2 = client("iam", moto_url), client("ecr", moto_url), client("ec2", moto_url)
    trust = (POLICIES / "execution-role-trust-policy.json").read_text().replace(
        "ACCOUNT_ID", ACCOUNT_ID)
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=EXECUTION_ROLE, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName=EXECUTION_ROLE, PolicyName="msd-serverless-jobs",
                        PolicyDocument=json.dumps(enforceable_policy(
                            POLICIES / "iam-execution-role-policy.json")))
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=IMAGE_REPOSITORY)
    with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=IMAGE_REPOSITORY, imageTag=IMAGE_TAG, imageManifest=json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "config": {"digest": "sha256:" + "0" * 64, "size": 1}, "layers": []}))
    ecr.set_repository_policy(repositoryName=IMAGE_REPOSITORY, policyText=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Sid": "EmrServerlessPullsTheImage", "Effect": "Allow",
            "Principal": {"Service": "emr-serverless.amazonaws.com"},
            "Action": ["ecr:BatchGetImage", "ecr:DescribeImages",
                       "ecr:GetDownloadUrlForLayer"]}]}))
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    subnet_ids = sorted(subnet["SubnetId"] for subnet in subnets["Subnets"])[:2]
    vpc_id = subnets["Subnets"][0]["VpcId"]
    [group] = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}])[
        "SecurityGroups"]
    return {"execution_role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{EXECUTION_ROLE}",
            "dependencies": "image",
            "image_uri": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/"
                         f"{IMAGE_REPOSITORY}:{IMAGE_TAG}",
            "subnet_ids": subnet_ids, "security_group_ids": [group["GroupId"]],
            # Small workers: the harness bills the application's initial capacity.
            "initial_executor_workers": 1, "worker_cpu": "2 vCPU", "worker_memory": "4 GB",
            "create_timeout_seconds": 30}


@pytest.fixture(scope="module")
def iam_users(moto_url, serverless_account):
    """The Airflow principal and the job runs' execution role as IAM users holding their
    policies (the execution role's: the job runs' own calls, code, songs, the Mongo
    secret, artifacts, driver logs). Made before enforcement is on."""
    return {actions.AIRFLOW: iam_user(moto_url, AIRFLOW_USER,
                                      enforceable_policy(POLICIES / "iam-policy.json")),
            actions.EXECUTION_ROLE: iam_user(
                moto_url, EXECUTION_ROLE_USER,
                enforceable_policy(POLICIES / "iam-execution-role-policy.json"))}


def serverless_config(path: Path, song_archive: str, database: str,
                      serverless: Dict[str, Any], **changes: Any) -> Path:
    return write_config(path, song_archive, database, serverless={**serverless, **changes})


def our_applications(driver: JobRunDriver):
    return [app for app in driver.applications() if app.name.startswith("msd-pipeline-")]


def assert_applications_deleted(driver: JobRunDriver) -> None:
    states = {app.name: app.state for app in our_applications(driver)}
    assert states and set(states.values()) == {"TERMINATED"}, states


def assert_secret_deleted(moto_url: str) -> None:
    secrets = client("secretsmanager", moto_url).list_secrets()["SecretList"]
    assert not secrets, [secret["Name"] for secret in secrets]


def sent_to_emr_serverless(driver: JobRunDriver) -> Dict[str, str]:
    """What the applications and the job runs were given, for the leak check."""
    return {"job runs": repr([(run.job_driver, run.configuration_overrides)
                              for run in driver.job_runs()]),
            "applications": repr([vars(app) for app in our_applications(driver)])}


def test_success_under_iam_enforcement_records_the_cost_and_deletes_the_application(
        moto_url, iam_users, serverless_account, song_archive, mongo_with_password,
        empty_registry_uri, mongo_uri, tmp_path):
    database = "serverless_e2e_" + uuid.uuid4().hex[:8]
    config = serverless_config(tmp_path / "config.json", song_archive, database,
                               serverless_account)
    env = airflow_env_for(moto_url, mongo_with_password, iam_users[actions.AIRFLOW],
                          empty_registry_uri)
    role = iam_users[actions.EXECUTION_ROLE]
    driver = JobRunDriver(moto_url, RealJobRunner(moto_url, tmp_path, role), credentials=role)
    with iam_enforced(moto_url), recorded_calls(tmp_path / "moto-recording.jsonl") as calls:
        run = run_pipeline(env, config, None, moto_url, dag_id=DAG_ID, driver=driver)

    assert run.state == "success", run.describe()
    assert run.tasks["serverless.preflight"] == "success", run.describe()
    called = calls_by_principal(calls, {user.access_key: principal
                                        for principal, user in iam_users.items()})
    assert {"emr-serverless:CreateApplication", "emr-serverless:StartJobRun"} <= \
        called[actions.AIRFLOW]
    assert "secretsmanager:GetSecretValue" in called[actions.EXECUTION_ROLE]
    assert_calls_in_table(called, actions.actions_of)
    assert "AccessDenied" not in run.logs and "not authorized" not in run.logs
    db = pymongo.MongoClient(mongo_uri)[database]
    # Approval is off by default. A challenger the gate rejects is not promoted, and with
    # no champion at all there is nothing to impute with (as on EMR).
    promoted = db["model_decisions"].find_one()["status"] == "promoted"
    print("decision:", "promoted, imputed" if promoted else "rejected, nothing imputed")
    assert run.tasks["spark.impute"] == ("success" if promoted else "skipped"), run.tasks
    job_runs = driver.job_runs()
    assert [job_run.name.split()[0] for job_run in job_runs] == [
        "spark.ingest", "spark.train_evaluate", "spark.impute"][:3 if promoted else 2]
    assert {job_run.state for job_run in job_runs} == {"SUCCESS"}
    [application] = our_applications(driver)
    # moto keeps the network configuration (not the architecture, nor imageConfiguration).
    assert application.network_configuration["subnetIds"] == serverless_account["subnet_ids"]
    assert_applications_deleted(driver)
    assert_secret_deleted(moto_url)
    assert db["songs"].count_documents({}) == SONGS

    record = db["pipeline_runs"].find_one()
    assert record["target"] == "emr_serverless" and record["metrics"] and record["ingest"]
    details = record["target_details"]
    assert details["application_id"] == application.id
    cost = details["cost"]  # replaced by the teardown's final estimate
    assert cost["final"] is True and len(cost["job_runs"]) == len(job_runs)
    assert cost["estimated_usd"] == pytest.approx(
        sum(item["estimated_usd"] for item in cost["job_runs"])) and cost["estimated_usd"] > 0
    assert "Final cost stored in run record" in run.logs
    bucket, _, key = record["artifacts"]["report_uri"][len("s3://"):].partition("/")
    report = client("s3", moto_url).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert "## Cost" in report and "USD** (provisional" in report
    # Application creation and start, and every job run, waited deferred.
    assert run.output.count("[DAG TEST] Trigger completed") >= 2 + len(job_runs), run.describe()
    assert_no_secret_leaked(env, run, sent_to_emr_serverless(driver))


def test_a_failed_job_run_shows_its_driver_log_and_the_teardown_runs(
        emr_airflow_env, moto_url, serverless_account, song_archive, tmp_path):
    """Also: a price missing for the run's region and architecture (no ARM64 price ships)
    warns, and the final cost is unknown (in the teardown's log: the run has no record)."""
    config = serverless_config(tmp_path / "config.json", song_archive, "serverless_e2e_failed",
                               serverless_account, architecture="ARM64")
    driver = JobRunDriver(moto_url, failing_job)
    run = run_pipeline(emr_airflow_env, config, None, moto_url, dag_id=DAG_ID, driver=driver)

    assert run.state == "failed", run.describe()
    assert run.tasks["spark.ingest"] == "failed", run.describe()
    assert run.tasks["serverless.delete_application"] == "success", run.describe()
    assert FAILED_JOB_MARKER in run.logs and "SPARK_DRIVER/stderr.gz" in run.logs
    assert [job_run.state for job_run in driver.job_runs()] == ["FAILED"]
    assert "No complete price for us-east-1/ARM64" in run.logs
    assert "unknown (no price for us-east-1/ARM64)" in run.logs
    assert_applications_deleted(driver)
    assert_secret_deleted(moto_url)


def test_a_hanging_job_run_is_cancelled_by_its_timeout_and_the_callback_backstops(
        emr_airflow_env, moto_url, serverless_account, song_archive, tmp_path):
    """Not deferred, so the worker's execution timeout kills the task (the provider's
    on_kill cancels the job run); then the run is timed out as the scheduler does it and
    the DAG processor runs the failure callback, which deletes what the teardown left."""
    config = serverless_config(tmp_path / "config.json", song_archive, "serverless_e2e_hang",
                               serverless_account, job_timeout_minutes=1)
    config_data = json.loads(config.read_text())
    config_data["emr"]["deferrable"] = False
    config.write_text(json.dumps(config_data))
    driver = JobRunDriver(moto_url, hanging_job)
    run = run_pipeline(emr_airflow_env, config, None, moto_url, dag_id=DAG_ID, driver=driver)

    assert run.state == "failed", run.describe()
    assert run.tasks["spark.ingest"] == "failed", run.describe()
    assert "Timeout" in run.logs, run.describe()
    assert [job_run.state for job_run in driver.job_runs()] == ["CANCELLED"]
    assert run.tasks["serverless.delete_application"] == "success", run.describe()
    assert_applications_deleted(driver)
    assert_secret_deleted(moto_url)

    # The run-timeout path: an application and a secret the teardown never saw (the
    # scheduler skipped it), named and tagged as this run's; the callback ends them.
    run_id, _ = latest_run_of(emr_airflow_env)
    leftover = leave_an_application_and_secret(moto_url, run_id)
    output = run_airflow_program("run_failure_callback.py", [DAG_ID, run_id],
                                 {**emr_airflow_env, "MSD_CONFIG": str(config)}, timeout=300)
    assert emr_serverless_backend().applications[leftover].state == "TERMINATED", output
    assert_secret_deleted(moto_url)


def latest_run_of(airflow_env: Dict[str, str]):
    from emr_support import latest_run

    return latest_run(DAG_ID, airflow_env)


def leave_an_application_and_secret(moto_url: str, run_id: str) -> str:
    """What a run timeout leaves: the run's application STARTED, its secret."""
    from msdlib.config import load_config
    from msd_pipeline.run_context import run_key_for
    from msd_pipeline.targets.emr.mongo_secret import secret_name
    from msd_pipeline.targets.emr_serverless.application import (application_name,
                                                                  application_tags)

    config = load_config()
    run_key = run_key_for(run_id)
    application_id = client("emr-serverless", moto_url).create_application(
        name=application_name(config.emr_serverless, run_key), releaseLabel="emr-7.5.0",
        type="SPARK", tags=application_tags(config.emr, DAG_ID, run_id))["applicationId"]
    client("secretsmanager", moto_url).create_secret(
        Name=secret_name(config.emr.mongo_secret_prefix, run_key), SecretString="mongodb://x")
    return application_id
