"""IAM tested, not assumed: ``airflow dags test msd_emr_pipeline`` against moto under IAM
enforcement, as two IAM users holding the repository's two policies (include/emr/), every
call the run made (moto's request recorder) an action of the preflight's table
(targets/emr/preflight/actions.py), and for every statement a call of the pipeline's code
that it allows and that is denied once the statement is dropped. The run's instance type
has no price, so it also shows a missing price leaving the cost unknown and the run green.
How moto plays EMR: tests/emr_dag_support.py."""
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import pymongo
import pytest

from msdlib.config import load_config

from emr_dag_support import (BUCKET, DAG_ID, SONGS, RealStepRunner, airflow_env_for,
                             assert_deferred, assert_run_cleaned_up, create_cluster,
                             emr_backend, enforceable_policy, run_pipeline, write_config)
from emr_support import (INSTANCE_PROFILE, REGION, assert_calls_in_table, aws_env,
                         calls_by_principal, client, iam_enforced, iam_user, recorded_calls,
                         replace_user_policy, set_iam_enforcement)
from msd_pipeline.targets.emr.preflight import actions
from project_paths import PROJECT_ROOT

# Moto's IAM enforcement (moto/core/authorization.py, moto/iam/access_control.py), as of
# moto 5.2: every request is signed and matched against the caller's policies by action.
# S3 requests are matched against the bucket or object ARN as well. Every other service
# is matched against Resource "*", so a statement scoped to EMR cluster or secret ARNs
# never matches there: ``enforceable_policy`` (emr_dag_support) widens those statements' Resource to "*" (the
# ARNs and tag conditions are checked in AWS only: by the preflight's
# iam:SimulatePrincipalPolicy, which moto lacks). Conditions (tags, s3:prefix) are not evaluated; iam:PassRole is never checked;
# a HEAD of a missing key is a 404 whatever the ListBucket grant. RunJobFlow's
# AutoTerminationPolicy is not authorised as elasticmapreduce:PutAutoTerminationPolicy, and
# moto has no Put/GetAutoTerminationPolicy to call.

AIRFLOW_USER = "msd-airflow"
NODE_USER = "msd-emr-instance-profile"
SOURCE_BUCKET = "msd-songs-of-another-owner"
POLICIES = {AIRFLOW_USER: "iam-policy.json", NODE_USER: "iam-instance-profile-policy.json"}
NOT_ENFORCED_BY_MOTO = {"PassTheEmrRoles", "AutoTerminationOfPipelineClusters"}
# Docker on YARN: the nodes' ECR login and image pulls are YARN's, not the pipeline's code
# (tests/unit/test_emr_docker_yarn.py checks the statements against the action table).
NOT_CALLED_BY_THE_PIPELINE = {"DockerOnYarnEcrLogin", "DockerOnYarnPullTheJobsImage"}


def moto_enforceable(user: str, drop: Optional[str] = None) -> Dict[str, Any]:
    """The user's policy from include/emr/ as moto enforces it, without the statement
    ``drop`` (emr_dag_support.enforceable_policy)."""
    return enforceable_policy(PROJECT_ROOT / "include" / "emr" / POLICIES[user], drop,
                              SOURCE_BUCKET)


@pytest.fixture(scope="module")
def iam_users(moto_url):
    """The Airflow principal and the instance profile as IAM users holding the repo's two
    policies; a source bucket of another owner. Made before enforcement is on."""
    users = {user: iam_user(moto_url, user, moto_enforceable(user)) for user in POLICIES}
    s3 = client("s3", moto_url)
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    s3.put_object(Bucket=SOURCE_BUCKET, Key="songs/A/B/C/TRABC00000000001.h5", Body=b"x")
    yield users
    set_iam_enforcement(moto_url, False)


def test_every_call_of_a_run_is_allowed_by_the_two_policies(moto_url, iam_users, song_archive,
                                                           mongo_with_password, mongo_uri,
                                                           empty_registry_uri, tmp_path):
    """The whole run under IAM enforcement: Airflow's calls as the Airflow principal, the
    jobs' calls (and EMR's log pushing) as the instance profile. Its instance type has no
    price: the cost is unknown and the run stays green."""
    database = "emr_e2e_iam_" + uuid.uuid4().hex[:8]
    # A file adds to the default price tables, so an unpriced type makes the price missing.
    config = write_config(tmp_path / "config.json", song_archive, database,
                          master_instance_type="m5.4xlarge", core_instance_type="m5.4xlarge")
    env = airflow_env_for(moto_url, mongo_with_password, iam_users[AIRFLOW_USER],
                          empty_registry_uri)
    node = iam_users[NODE_USER]
    with iam_enforced(moto_url), recorded_calls(tmp_path / "moto-recording.jsonl") as calls:
        run = run_pipeline(env, config, RealStepRunner(moto_url, tmp_path, node), moto_url,
                           node_credentials=node)

    assert run.state == "success", run.describe()
    assert run.tasks["cluster.preflight"] == "success", run.describe()
    called = calls_by_principal(calls, {iam_users[AIRFLOW_USER].access_key: actions.AIRFLOW,
                                        node.access_key: actions.INSTANCE_PROFILE})
    assert {"ec2:DescribeSubnets", "elasticmapreduce:RunJobFlow"} <= called[actions.AIRFLOW]
    assert "secretsmanager:GetSecretValue" in called[actions.INSTANCE_PROFILE]
    assert_calls_in_table(called, actions.actions_of)
    assert "AccessDenied" not in run.logs and "not authorized" not in run.logs
    assert_deferred(run)  # the triggers' calls were checked too
    db = pymongo.MongoClient(mongo_uri)[database]
    assert db["songs"].count_documents({}) == SONGS
    assert_cost_unknown_for_the_missing_price(run, db["pipeline_runs"].find_one())
    assert_run_cleaned_up(run, moto_url)


def assert_cost_unknown_for_the_missing_price(run, record) -> None:
    assert run.tasks["report.collect_metrics"] == "success"
    assert "No price for m5.4xlarge in emr.ec2_hourly_prices" in run.logs
    cost = record["target_details"]["cost"]
    assert cost["final"] is True and "unknown (no price for m5.4xlarge)" in run.logs
    assert cost["estimated_usd"] is None and cost["missing_prices"] == ["m5.4xlarge"]
    assert cost["instance_hours"] > 0


@dataclass
class Probe:
    """One call of the pipeline's code that a statement exists for."""
    user: str
    sid: str
    call: Callable[[Dict[str, str]], Any]


def probe_calls(moto_url: str) -> List[Probe]:
    from msdlib.io import emr_mongo, sources
    from msd_pipeline.targets.emr.cluster import build_job_flow_request
    from msd_pipeline.targets.emr.hook import PipelineEmrHook
    from msd_pipeline.targets.emr.layout import PREFLIGHT_FOLDER, RunLayout
    from msd_pipeline.targets.emr.preflight.aws import PreflightHook

    emr_settings = load_config(overrides={"emr.s3_root": f"s3://{BUCKET}/pipeline"}).emr
    layout = RunLayout(emr_settings.s3_root, "iam-probe")

    def hook() -> PipelineEmrHook:
        return PipelineEmrHook(aws_conn_id=None, region_name=REGION)

    def preflight_hook() -> PreflightHook:
        return PreflightHook(aws_conn_id=None, region_name=REGION)

    def create_cluster(world):
        request = build_job_flow_request(emr_settings, layout, dag_id=DAG_ID,
                                         airflow_run_id="iam-probe", mongo_secret_id="s")
        return hook().conn.run_job_flow(**request)

    return [
        Probe(AIRFLOW_USER, "CreateTaggedPipelineClusters", create_cluster),
        Probe(AIRFLOW_USER, "DriveAndEndPipelineClusters",
              lambda world: hook().describe_cluster(world["cluster_id"])),
        Probe(AIRFLOW_USER, "FindRunClustersByName",
              lambda world: hook().find_run_clusters("msd-pipeline-iam-probe", DAG_ID, "iam-probe")),
        Probe(AIRFLOW_USER, "ListThePipelineBucketSoMissingKeysAre404",
              lambda world: hook().s3.list_keys(BUCKET, prefix="pipeline/runs/iam-probe/")),
        Probe(AIRFLOW_USER, "ReadWriteThePipelinePrefix",
              lambda world: hook().read_bytes(layout.job_config_uri)),
        Probe(AIRFLOW_USER, "DeleteThePreflightProbe",
              lambda world: preflight_hook().client("s3").delete_object(
                  Bucket=BUCKET, Key=f"pipeline/{PREFLIGHT_FOLDER}/probe-iam")),
        Probe(AIRFLOW_USER, "PreflightReadsTheAccount",
              lambda world: preflight_hook().instance_profile_roles(INSTANCE_PROFILE)),
        Probe(AIRFLOW_USER, "RunScopedMongoSecrets",
              lambda world: hook().put_run_secret(world["secret_id"], "mongodb://probe", [])),
        Probe(AIRFLOW_USER, "OptionalReadSourceBucketOfAnotherOwner",
              lambda world: hook().s3.list_keys(SOURCE_BUCKET, prefix="songs/")),
        Probe(NODE_USER, "ListThePipelineBucketSoMissingKeysAre404",
              lambda world: sources.list_sources(layout.code_prefix + "/")),
        Probe(NODE_USER, "CodeDataArtifactsAndLogs",
              lambda world: sources.read_bytes(layout.job_config_uri)),
        Probe(NODE_USER, "ReadTheRunsMongoSecret",
              lambda world: emr_mongo.secret_string.__wrapped__(world["secret_id"], REGION)),
        Probe(NODE_USER, "OptionalReadSourceBucketOfAnotherOwner",
              lambda world: sources.read_bytes(f"s3://{SOURCE_BUCKET}/songs/A/B/C/TRABC00000000001.h5")),
    ]


def test_every_statement_has_a_probe():
    probed = {(probe.user, probe.sid) for probe in probe_calls("http://unused")}
    for user, name in POLICIES.items():
        sids = {statement["Sid"] for statement in
                json.loads((PROJECT_ROOT / "include" / "emr" / name).read_text())["Statement"]}
        assert sids - NOT_ENFORCED_BY_MOTO - NOT_CALLED_BY_THE_PIPELINE == {
            sid for who, sid in probed if who == user}, name


@pytest.fixture(scope="module")
def probe_world(moto_url, iam_users):
    """What the probes read: a pipeline cluster, the run's config and code, its secret."""
    s3 = client("s3", moto_url)
    s3.put_object(Bucket=BUCKET, Key="pipeline/runs/iam-probe/job-config.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="pipeline/runs/iam-probe/code/A/B/C/TRABC00000000002.h5",
                  Body=b"x")
    secret_id = "msd-pipeline/iam-probe/mongo-uri"
    client("secretsmanager", moto_url).create_secret(Name=secret_id, SecretString="mongodb://probe")
    cluster_id = create_cluster(moto_url, "msd-pipeline-iam-probe",
                                {"project": "msd-pipeline", "airflow:dag_id": DAG_ID,
                                 "airflow:dag_run_id": "iam-probe"})
    yield {"cluster_id": cluster_id, "secret_id": secret_id}
    for cluster in emr_backend().clusters.values():
        if cluster.name == "msd-pipeline-iam-probe":
            cluster.terminate()
    client("secretsmanager", moto_url).delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)


@pytest.mark.parametrize("index", range(len(probe_calls("http://unused"))),
                         ids=[f"{p.user}-{p.sid}" for p in probe_calls("http://unused")])
def test_dropping_a_statement_denies_the_call_it_grants(moto_url, iam_users, probe_world,
                                                        index, monkeypatch):
    probe = probe_calls(moto_url)[index]
    for name, value in aws_env(moto_url, iam_users[probe.user]).items():
        monkeypatch.setenv(name, value)
    with iam_enforced(moto_url):
        probe.call(probe_world)  # allowed with the whole policy
    replace_user_policy(moto_url, probe.user, moto_enforceable(probe.user, drop=probe.sid))
    try:
        with iam_enforced(moto_url), pytest.raises(Exception) as denied:
            probe.call(probe_world)
    finally:
        replace_user_policy(moto_url, probe.user, moto_enforceable(probe.user))
    assert is_access_denied(denied.value), repr(denied.value)


def is_access_denied(error: BaseException) -> bool:
    """A botocore ClientError saying "denied" (403; AccessDenied...) in ``error``'s chain."""
    from botocore.exceptions import ClientError

    while error is not None:
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code.startswith("AccessDenied") or code in ("403", "Forbidden") or status == 403
        error = error.__cause__ or error.__context__
    return False
