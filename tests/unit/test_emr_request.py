"""The EMR requests, offline: RunJobFlow and AddJobFlowSteps validated against botocore's
input shapes, the steps' arguments against the jobs' own CLI parsers, the code zip and the
job-side Mongo secret reader. The cost estimate: test_emr_cost.py."""
import argparse
import ast
import dataclasses
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from msdlib import env_vars
from msdlib.io import emr_mongo
from msdlib.config import EMR_VENV, EMR_VENV_PYTHON, ConfigError, load_config
from msd_pipeline.targets.emr import code_shipping, steps
from msd_pipeline.targets.emr.cluster import (DAG_TAG, RUN_TAG, ClusterConfigError,
                                      build_job_flow_request)
from msd_pipeline.targets.emr.layout import JOBS_ZIP, LayoutError, RunLayout
from project_paths import PROJECT_ROOT

RUN_ID = "manual__2026-11-23T19:00:00+00:00"
RUN_KEY = "manual__2026-11-23T19_00_00_00_00"
SECRET_ID = "msd-pipeline/" + RUN_KEY + "/mongo-uri"


@pytest.fixture(scope="module")
def emr_model():
    return botocore.session.get_session().get_service_model("emr")


def assert_valid(model, operation: str, params: dict) -> None:
    shape = model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def emr_settings(**changes):
    base = dataclasses.replace(load_config().emr, s3_root="s3://test-bucket/msd")
    return dataclasses.replace(base, **changes)


def build(emr, secret=SECRET_ID):
    return build_job_flow_request(emr, RunLayout(emr.s3_root, RUN_KEY), dag_id="msd_emr_pipeline",
                                  airflow_run_id=RUN_ID, mongo_secret_id=secret)


@pytest.mark.parametrize("changes", [
    {},
    {"core_on_spot": True, "ec2_subnet_id": "subnet-123", "ec2_key_name": "me"},
    {"instance_layout": "fleets", "core_on_spot": True, "ec2_subnet_id": "subnet-123"},
    {"instance_layout": "fleets"},
    {"mongo_mode": "master_node"},
], ids=["groups", "groups-spot", "fleets-spot", "fleets", "mongo-on-master"])
def test_run_job_flow_request_matches_botocore_shape(emr_model, changes):
    emr = emr_settings(**changes)
    request = build(emr, secret=None if emr.mongo_mode == "master_node" else SECRET_ID)
    assert_valid(emr_model, "RunJobFlow", request)
    assert request["LogUri"] == "s3://test-bucket/msd/logs/"
    assert request["ReleaseLabel"].startswith("emr-7.")
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": emr.idle_timeout_minutes * 60}
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    assert tags[RUN_TAG] == RUN_ID and tags[DAG_TAG] == "msd_emr_pipeline"
    bootstrap = request["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert bootstrap["Path"] == f"s3://test-bucket/msd/runs/{RUN_KEY}/code/bootstrap.sh"
    assert bootstrap["Args"][:4] == [
        "--requirements", f"s3://test-bucket/msd/runs/{RUN_KEY}/code/requirements-emr.txt",
        "--venv", EMR_VENV]
    assert ("--mongodb-on-master" in bootstrap["Args"]) == (emr.mongo_mode == "master_node")


def test_spot_and_fleet_choices_reach_the_request():
    groups = build(emr_settings())["Instances"]["InstanceGroups"]
    assert [(g["InstanceRole"], g["Market"]) for g in groups] == [("MASTER", "ON_DEMAND"),
                                                                  ("CORE", "ON_DEMAND")]
    fleets = build(emr_settings(instance_layout="fleets", core_on_spot=True,
                                spot_timeout_minutes=15))["Instances"]["InstanceFleets"]
    core = fleets[1]
    assert core["TargetSpotCapacity"] == 2 and core["TargetOnDemandCapacity"] == 0
    assert [c["InstanceType"] for c in core["InstanceTypeConfigs"]] == ["m5.xlarge", "m5a.xlarge", "m6i.xlarge"]
    assert core["LaunchSpecifications"]["SpotSpecification"] == {
        "TimeoutDurationMinutes": 15, "TimeoutAction": "SWITCH_TO_ON_DEMAND",
        "AllocationStrategy": "price-capacity-optimized"}


def test_spot_core_groups_are_requested_as_fleets_with_a_provisioning_timeout():
    """Instance groups have no spot provisioning timeout: spot core nodes in the "groups"
    layout become one fleet per role of the group's own instance type."""
    instances = build(emr_settings(core_on_spot=True, core_instance_type="m5.2xlarge",
                                   core_instance_count=3, ec2_subnet_id="subnet-123"))["Instances"]
    assert "InstanceGroups" not in instances and instances["Ec2SubnetIds"] == ["subnet-123"]
    master, core = instances["InstanceFleets"]
    assert master["TargetOnDemandCapacity"] == 1 and "LaunchSpecifications" not in master
    assert [c["InstanceType"] for c in master["InstanceTypeConfigs"]] == ["m5.xlarge"]
    assert [c["InstanceType"] for c in core["InstanceTypeConfigs"]] == ["m5.2xlarge"]
    assert core["TargetSpotCapacity"] == 3 and core["TargetOnDemandCapacity"] == 0
    assert core["LaunchSpecifications"]["SpotSpecification"]["TimeoutDurationMinutes"] == 10


@pytest.mark.parametrize("mongo_mode", ["secret", "master_node"])
def test_spark_runs_the_bootstraps_virtual_environment_on_every_node(mongo_mode):
    request = build(emr_settings(mongo_mode=mongo_mode),
                    secret=SECRET_ID if mongo_mode == "secret" else None)
    defaults, env = request["Configurations"]
    assert defaults["Classification"] == "spark-defaults"
    assert defaults["Properties"]["spark.pyspark.python"] == EMR_VENV_PYTHON
    assert env["Classification"] == "spark-env"
    assert env["Configurations"][0]["Properties"]["PYSPARK_PYTHON"] == EMR_VENV_PYTHON
    assert EMR_VENV_PYTHON == EMR_VENV + "/bin/python"


def test_the_request_carries_the_secret_name_never_a_uri():
    request = build(emr_settings())
    exports = request["Configurations"][1]["Configurations"][0]["Properties"]
    assert exports[env_vars.MONGO_SECRET_ID] == SECRET_ID
    assert "mongodb://" not in repr(request)


def test_a_release_before_emr_7_is_rejected():
    with pytest.raises(ClusterConfigError, match="EMR 7"):
        build(emr_settings(release_label="emr-6.15.0"))


@pytest.mark.parametrize("changes, message", [
    ({"instance_layout": "pools"}, "emr.instance_layout must be one of groups, fleets"),
    ({"mongo_mode": "nowhere"}, "emr.mongo_mode must be one of secret, master_node"),
    ({"core_instance_count": 0}, "emr.core_instance_count must be at least 1"),
    ({"idle_timeout_minutes": 0}, "emr.idle_timeout_minutes must be at least 1"),
    ({"idle_timeout_minutes": 10081}, "emr.idle_timeout_minutes must be at most 10080"),
    ({"spot_timeout_minutes": 4}, "emr.spot_timeout_minutes must be at least 5"),
    ({"spot_timeout_minutes": 1441}, "emr.spot_timeout_minutes must be at most 1440"),
    ({"core_on_spot": True, "spot_timeout_minutes": 30},
     r"emr.spot_timeout_minutes \(30 min\) must end before emr.create_timeout_seconds \(1800 s\)"),
])
def test_invalid_emr_settings_are_configuration_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"emr." + key: value for key, value in changes.items()})


def test_secret_mode_requires_the_secret_name():
    with pytest.raises(ClusterConfigError, match="secret id"):
        build(emr_settings(), secret=None)


def test_run_layout_rejects_non_s3_roots():
    with pytest.raises(LayoutError):
        RunLayout("/local/path", RUN_KEY)


# -- steps -----------------------------------------------------------------------------

def job_args(summary: str):
    return ["--config", f"s3://test-bucket/msd/runs/{RUN_KEY}/job-config.json",
            "--run-id", RUN_KEY, "--summary-path", f"s3://test-bucket/msd/artifacts/{RUN_KEY}/{summary}"]


def concrete_steps():
    code = RunLayout("s3://test-bucket/msd", RUN_KEY)
    return [steps.spark_step(f"{job} {RUN_KEY}", code.code_uri(job), code.code_uri(JOBS_ZIP),
                             job_args(summary))
            for job, summary in (("ingest_songs.py", "ingest_summary.json"),
                                 ("train_models.py", "train_summary.json"))]


def test_steps_match_botocore_shape(emr_model):
    assert_valid(emr_model, "AddJobFlowSteps", {"JobFlowId": "j-ABCDEFGHIJKL", "Steps": concrete_steps()})
    for step in concrete_steps():
        args = step["HadoopJarStep"]["Args"]
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        assert args[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "client"]
        assert args[args.index("--py-files") + 1].endswith("/code/msdlib.zip")


class ParsedArguments(Exception):
    def __init__(self, namespace):
        super().__init__("parsed")
        self.namespace = namespace


def parse_with_job_parser(job: str, argv, monkeypatch) -> argparse.Namespace:
    """Run the job's own main() up to its argument parsing."""
    spec = importlib.util.spec_from_file_location(job[:-3], PROJECT_ROOT / "spark_jobs" / job)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser, args=None, namespace=None):
        raise ParsedArguments(original(parser, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    with pytest.raises(ParsedArguments) as parsed:
        module.main(argv)
    return parsed.value.namespace


@pytest.mark.parametrize("index, job", [(0, "ingest_songs.py"), (1, "train_models.py")])
def test_step_arguments_are_accepted_by_the_jobs_own_parser(index, job, monkeypatch):
    step_args = concrete_steps()[index]["HadoopJarStep"]["Args"]
    assert step_args[step_args.index("--py-files") + 2].endswith("/code/" + job)
    namespace = parse_with_job_parser(job, steps.job_cli_args(step_args), monkeypatch)
    assert namespace.config.endswith("/job-config.json")
    assert namespace.run_id == RUN_KEY
    assert namespace.summary_path.startswith("s3://test-bucket/msd/artifacts/")


def test_the_dags_step_templates_are_add_job_flow_steps(emr_model):
    """The DAG's templated steps, with every Jinja field replaced, validate too."""
    from msd_pipeline.targets.emr.target import EmrTarget
    from msd_pipeline.graph import build_pipeline_dag

    dag = build_pipeline_dag("emr_shape_check", EmrTarget(), description="shape check")
    steps = [dag.get_task(f"spark.{name}") for name in ("ingest", "train_evaluate", "impute")]
    for task in steps:
        rendered = fill_templates(task.steps)
        assert_valid(emr_model, "AddJobFlowSteps", {"JobFlowId": "j-ABCDEFGHIJKL", "Steps": rendered})
        assert "{{" in repr(task.steps)  # the values really are templates


def fill_templates(value):
    """``value`` with every Jinja expression replaced by a plain string."""
    if isinstance(value, dict):
        return {key: fill_templates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_templates(item) for item in value]
    return value.replace("{{", "").replace("}}", "") if isinstance(value, str) else value


# -- code, secret reader ---------------------------------------------------------------------

def test_jobs_zip_holds_msdlib_and_is_reproducible():
    first, second = code_shipping.build_jobs_zip(), code_shipping.build_jobs_zip()
    assert first == second
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "msdlib/__init__.py" in names and "msdlib/io/emr_mongo.py" in names
    assert all(name.startswith("msdlib/") and name.endswith(".py") for name in names)


def test_emr_requirements_pin_the_jobs_third_party_imports():
    """Every package the shipped code imports is pinned for EMR (pyspark comes with EMR)."""
    pins = emr_pins()
    # Import name → distribution, where they differ.
    distribution = {"bson": "pymongo"}
    imported = set()
    for path in (PROJECT_ROOT / "spark_jobs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {distribution.get(name, name) for name in imported
                   if name not in sys.stdlib_module_names} - {"msdlib", "pyspark"}
    # spark_rapids_ml: [emr] profile "gpu" only, pinned in requirements-emr-gpu.txt
    # (tests/unit/test_emr_gpu_profile.py).
    assert third_party and third_party - {"spark_rapids_ml"} <= set(pins)


def test_emr_requirements_are_exact_pins_for_python_3_9():
    pins = emr_pins()
    # boto3 1.43 and later need Python >= 3.10; botocore moves in lockstep with boto3.
    boto3_version = tuple(int(part) for part in pins["boto3"].split("."))
    assert boto3_version < (1, 43) and pins["botocore"] == pins["boto3"]
    # botocore needs urllib3 < 1.27 on Python < 3.10.
    assert pins["urllib3"].startswith("1.26.")


def emr_pins():
    """name → version of include/emr/requirements-emr.txt; every line an exact pin."""
    pins = {}
    for line in (PROJECT_ROOT / "include/emr/requirements-emr.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].split(";", 1)[0].strip()
        if requirement:
            name, separator, version = requirement.partition("==")
            assert separator and version, "not an exact pin: " + line
            pins[name.strip().lower()] = version.strip()
    return pins


def test_job_side_reader_takes_the_uri_from_the_named_secret(monkeypatch):
    calls = []

    def fake_secret(secret_id, region=None):
        calls.append((secret_id, region))
        return "mongodb://user:pw@db:27017/"

    monkeypatch.setattr(emr_mongo, "secret_string", fake_secret)
    env = {env_vars.MONGO_SECRET_ID: SECRET_ID, env_vars.MONGO_SECRET_REGION: "eu-west-1"}
    assert emr_mongo.mongo_uri_on_emr(env) == "mongodb://user:pw@db:27017/"
    assert calls == [(SECRET_ID, "eu-west-1")]
    assert emr_mongo.mongo_uri_on_emr({}) == ""
    assert emr_mongo.mongo_uri_on_emr({env_vars.MONGO_ON_MASTER: "1"}).endswith(":27017/")


def test_iam_policies_grant_what_the_pipeline_calls():
    """Airflow's principal: the EMR, S3 and Secrets Manager calls of the DAG's tasks; the
    instance profile: the S3 prefix and reading the run's secret."""
    import json

    def granted(name):
        policy = json.loads((PROJECT_ROOT / "include/emr" / name).read_text())
        assert policy["Version"] == "2012-10-17"
        actions = set()
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and "*" not in str(statement["Action"])
            actions.update([statement["Action"]] if isinstance(statement["Action"], str)
                           else statement["Action"])
        return actions

    assert {"elasticmapreduce:RunJobFlow", "elasticmapreduce:AddJobFlowSteps",
            "elasticmapreduce:DescribeCluster", "elasticmapreduce:DescribeStep",
            "elasticmapreduce:ListClusters", "elasticmapreduce:TerminateJobFlows",
            "iam:PassRole", "s3:ListBucket", "s3:GetObject", "s3:PutObject",
            "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
            "secretsmanager:DeleteSecret"} <= granted("iam-policy.json")
    assert "secretsmanager:GetSecretValue" not in granted("iam-policy.json")
    assert {"s3:GetObject", "s3:PutObject", "secretsmanager:GetSecretValue"} <= granted(
        "iam-instance-profile-policy.json")
