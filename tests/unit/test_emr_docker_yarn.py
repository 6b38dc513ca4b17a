"""Docker on YARN for the emr target (emr.container_image, EMR 6.1+): the RunJobFlow
request's classifications key by key, validated against botocore's RunJobFlow shape; the
steps in cluster mode; the refusal at parse time on EMR 7 (and on what ECR
auto-authentication cannot pull); the instance profile's ECR rights; and the request
unchanged without the option. Offline: botocore validates without a call."""
import dataclasses
import json

import botocore.session
import pytest
from botocore.validate import ParamValidator

from msdlib import env_vars
from msdlib.config import EMR_VENV_PYTHON, ConfigError, load_config
from msd_pipeline.graph import build_pipeline_dag
from msd_pipeline.targets.emr.cluster import (IMAGE_PYTHON, ClusterConfigError,
                                              build_job_flow_request)
from msd_pipeline.targets.emr.layout import RunLayout
from msd_pipeline.targets.emr.preflight import actions
from msd_pipeline.targets.emr.preflight.iam import Scope, _by_resource
from msd_pipeline.targets.emr.target import EmrTarget
from project_paths import PROJECT_ROOT

ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{REGISTRY}/msd-pipeline/spark-jobs:emr-7.5.0"
RELEASE = "emr-6.15.0"
RUN_KEY = "manual__2026-12-07T12_00_00_00_00"
SECRET_ID = "msd-pipeline/" + RUN_KEY + "/mongo-uri"
DOCKER_ENV = {"YARN_CONTAINER_RUNTIME_TYPE": "docker",
              "YARN_CONTAINER_RUNTIME_DOCKER_IMAGE": IMAGE}


@pytest.fixture(scope="module")
def emr_model():
    return botocore.session.get_session().get_service_model("emr")


def assert_valid(model, operation, params):
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def docker_config(**emr_overrides):
    overrides = {"emr.s3_root": "s3://test-bucket/msd", "emr.release_label": RELEASE,
                 "emr.container_image": IMAGE}
    overrides.update({"emr." + key: value for key, value in emr_overrides.items()})
    return load_config(overrides=overrides)


def build(emr):
    return build_job_flow_request(emr, RunLayout(emr.s3_root, RUN_KEY), dag_id="msd_emr_pipeline",
                                  airflow_run_id="manual__2026-12-07", mongo_secret_id=SECRET_ID)


def classification(request, name):
    found = [entry for entry in request["Configurations"] if entry["Classification"] == name]
    assert len(found) == 1, name
    return found[0]


def test_the_docker_request_matches_botocore_shape(emr_model):
    request = build(docker_config().emr)
    assert_valid(emr_model, "RunJobFlow", request)
    assert request["ReleaseLabel"] == RELEASE
    assert [entry["Classification"] for entry in request["Configurations"]] == [
        "spark-defaults", "spark-env", "container-executor", "yarn-site"]


def test_container_executor_trusts_the_images_registry_with_the_docker_module_on():
    executor = classification(build(docker_config().emr), "container-executor")
    assert "Properties" not in executor
    assert executor["Configurations"] == [{"Classification": "docker", "Properties": {
        "module.enabled": "true",
        "docker.trusted.registries": REGISTRY,
        "docker.privileged-containers.registries": REGISTRY}}]


def test_ecr_auto_authentication_is_on_and_no_docker_client_config_is_needed():
    request = build(docker_config().emr)
    assert classification(request, "yarn-site")["Properties"] == {
        "yarn.nodemanager.runtime.linux.docker.ecr-auto-authentication.enabled": "true"}
    assert "DOCKER_CLIENT_CONFIG" not in json.dumps(request)


def test_driver_and_executors_run_in_the_image_with_its_python_and_the_secret_name():
    request = build(docker_config().emr)
    defaults = classification(request, "spark-defaults")["Properties"]
    environment = {**DOCKER_ENV, env_vars.MONGO_SECRET_ID: SECRET_ID,
                   env_vars.MONGO_SECRET_REGION: "us-east-1"}
    for prefix in ("spark.yarn.appMasterEnv.", "spark.executorEnv."):
        assert {key[len(prefix):]: value for key, value in defaults.items()
                if key.startswith(prefix)} == environment
    assert defaults["spark.pyspark.python"] == IMAGE_PYTHON
    exports = classification(request, "spark-env")["Configurations"][0]["Properties"]
    assert exports["PYSPARK_PYTHON"] == IMAGE_PYTHON
    assert "mongodb://" not in json.dumps(request)


def test_no_bootstrap_installs_packages_in_docker_mode():
    assert "BootstrapActions" not in build(docker_config().emr)


def test_the_steps_run_in_cluster_mode_with_an_image(emr_model):
    for config, mode in ((docker_config(), "cluster"), (load_config(), "client")):
        dag = build_pipeline_dag("emr_docker_check", EmrTarget(config), description="docker",
                                 config=config)
        args = dag.get_task("spark.ingest").steps[0]["HadoopJarStep"]["Args"]
        assert args[args.index("--deploy-mode") + 1] == mode


def test_the_request_is_unchanged_without_an_image():
    emr = dataclasses.replace(load_config().emr, s3_root="s3://test-bucket/msd")
    request = build(emr)
    assert emr.container_image == ""
    assert "BootstrapActions" in request and "YARN_CONTAINER" not in json.dumps(request)
    assert [entry["Classification"] for entry in request["Configurations"]] == [
        "spark-defaults", "spark-env"]
    defaults = request["Configurations"][0]["Properties"]
    assert defaults["spark.pyspark.python"] == EMR_VENV_PYTHON


@pytest.mark.parametrize("release", ["emr-7.5.0", "emr-7.13.0", "emr-5.36.0"])
def test_an_image_outside_emr_6_is_refused_at_parse_time_pointing_to_serverless(release):
    with pytest.raises(ConfigError) as refused:
        docker_config(release_label=release)
    message = str(refused.value)
    assert f"release_label is {release!r}" in message
    assert "emr_serverless" in message and f'image_uri = "{IMAGE}"' in message


@pytest.mark.parametrize("overrides, message", [
    ({"release_label": "emr-6.0.0"}, "6.1.0 and later"),
    ({"container_image": "docker.io/library/python:3.9"}, "must be an ECR image"),
    ({"container_image": IMAGE.replace("us-east-1", "eu-west-1")},
     "in eu-west-1, the cluster in emr.region us-east-1"),
    ({"mongo_mode": "master_node"}, "use mongo_mode 'secret'"),
])
def test_what_ecr_auto_authentication_cannot_pull_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        docker_config(**overrides)


def test_the_request_builder_refuses_an_image_on_emr_7_too():
    emr = dataclasses.replace(docker_config().emr, release_label="emr-7.5.0")
    with pytest.raises(ClusterConfigError, match="emr_serverless"):
        build(emr)


def as_list(value):
    return [value] if isinstance(value, str) else value


def test_the_instance_profile_may_pull_the_image_and_only_with_an_image():
    policy = json.loads((PROJECT_ROOT / "include/emr/iam-instance-profile-policy.json")
                        .read_text().replace("ACCOUNT_ID", ACCOUNT))
    scope = Scope("aws", ACCOUNT, docker_config(), "arn:aws:iam::1:role/s", "arn:aws:iam::1:role/j")
    assert scope.arns(actions.REPOSITORY) == [
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/msd-pipeline/spark-jobs"]
    granted = {(name, resource) for statement in policy["Statement"]
               for name in as_list(statement["Action"])
               for resource in as_list(statement["Resource"])}
    pull = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
    assert {(name, f"arn:aws:ecr:*:{ACCOUNT}:repository/msd-pipeline/*") for name in pull} <= granted
    assert ("ecr:GetAuthorizationToken", "*") in granted
    simulated = {name for _, names in _by_resource(docker_config(), actions.INSTANCE_PROFILE)
                 for name in names}
    assert set(actions.CONTAINER_IMAGE_ACTIONS) <= simulated
    without = {name for _, names in _by_resource(load_config(), actions.INSTANCE_PROFILE)
               for name in names}
    assert not set(actions.CONTAINER_IMAGE_ACTIONS) & without


class OfferedReleases:
    """The one read check_release makes: the release labels EMR offers."""

    def release_labels(self, prefix):
        return [RELEASE]


def test_the_preflight_says_the_docker_pairing_is_not_tested_instead_of_failing():
    from msd_pipeline.targets.emr.preflight.checks import check_release
    from msd_pipeline.targets.emr.preflight.findings import NOT_VERIFIED, OK

    offered, spark = check_release(docker_config().emr, OfferedReleases())
    assert (offered.check, offered.status) == ("emr release", OK)
    assert (spark.check, spark.status) == ("emr release spark", NOT_VERIFIED)
    assert IMAGE in spark.detail
