"""The EMR Serverless requests, offline: CreateApplication and StartJobRun validated
against botocore's input shapes (and the name and tag patterns botocore's validator does
not check), the job runs' Spark parameters (the Mongo secret's name, never the URI; the
dependency archive's properties), the driver log locations, and the [emr_serverless]
settings' rules."""
import dataclasses
import re
import shlex

import botocore.session
import pytest
from botocore.validate import ParamValidator

from msdlib import env_vars
from msdlib.config import ConfigError, PipelineConfig, load_config
from msd_pipeline.targets.emr.cluster import DAG_TAG, RUN_TAG
from msd_pipeline.targets.emr.layout import JOBS_ZIP, RunLayout
from msd_pipeline.targets.emr_serverless import dependencies as target_dependencies, job_runs
from msd_pipeline.targets.emr_serverless.application import (application_name,
                                                              application_tags,
                                                              create_application_request)

RUN_ID = "manual__2026-11-23T19:00:00.123456+00:00"
RUN_KEY = "manual__2026-11-23T19_00_00.123456_00_00"
SECRET_ID = "msd-pipeline/" + RUN_KEY + "/mongo-uri"
ROLE = "arn:aws:iam::123456789012:role/msd-serverless-job"


@pytest.fixture(scope="module")
def model():
    return botocore.session.get_session().get_service_model("emr-serverless")


def assert_valid(model, operation: str, params: dict) -> None:
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def assert_pattern(model, shape: str, value: str) -> None:
    metadata = model.shape_for(shape).metadata
    assert metadata.get("min", 0) <= len(value) <= metadata["max"], (shape, value)
    assert re.fullmatch(metadata["pattern"], value), (shape, value)


def settings(**changes):
    config = load_config()
    return (dataclasses.replace(config.emr, s3_root="s3://test-bucket/msd"),
            dataclasses.replace(config.emr_serverless, **changes))


def create_request(emr, serverless):
    tags = application_tags(emr, "msd_emr_serverless_pipeline", RUN_ID)
    request = create_application_request(serverless, emr,
                                         application_name(serverless, RUN_KEY), tags)
    # The provider's operator adds these three.
    return {"clientToken": "token", "releaseLabel": emr.release_label, "type": "SPARK", **request}


@pytest.mark.parametrize("changes", [
    {},
    {"subnet_ids": ["subnet-1", "subnet-2"], "security_group_ids": ["sg-1"],
     "architecture": "ARM64"},
    {"dependencies": "image", "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/msd:7.5.0"},
], ids=["archive", "network-arm", "image"])
def test_create_application_request_matches_botocore_shape(model, changes):
    emr, serverless = settings(**changes)
    request = create_request(emr, serverless)
    assert_valid(model, "CreateApplication", request)
    assert_pattern(model, "ApplicationName", request["name"])
    for key, value in request["tags"].items():
        assert_pattern(model, "TagKey", key)
        assert_pattern(model, "TagValue", value)
    assert request["tags"][RUN_TAG] == RUN_ID and request["tags"][DAG_TAG]
    assert request["architecture"] == serverless.architecture
    assert request["autoStopConfiguration"] == {
        "enabled": True, "idleTimeoutMinutes": serverless.auto_stop_idle_minutes}
    assert ("networkConfiguration" in request) == bool(serverless.subnet_ids)
    assert ("imageConfiguration" in request) == (serverless.dependencies == "image")


def test_a_long_run_key_still_names_a_valid_application(model):
    _, serverless = settings()
    name = application_name(serverless, "scheduled__" + "x" * 80)
    assert_pattern(model, "ApplicationName", name)
    assert name.startswith(serverless.application_name + "-")


def test_start_job_run_request_matches_botocore_shape_and_carries_no_secret(model):
    emr, serverless = settings()
    layout = RunLayout(emr.s3_root, RUN_KEY)
    properties = job_runs.mongo_secret_properties(SECRET_ID, emr.region)
    parameters = job_runs.spark_submit_parameters(layout.code_uri(JOBS_ZIP), properties)
    job_args = ["--config", layout.job_config_uri, "--run-id", RUN_KEY,
                "--summary-path", "s3://test-bucket/msd/artifacts/x/ingest.json"]
    request = {"applicationId": "00fabcdefg", "clientToken": "token",
               "executionRoleArn": ROLE, "name": job_runs.job_run_name("spark.ingest", RUN_KEY),
               "jobDriver": job_runs.job_driver(layout.code_uri("ingest_songs.py"), job_args,
                                                parameters),
               "configurationOverrides": job_runs.configuration_overrides(layout.log_uri),
               **job_runs.start_job_run_extras(serverless.job_timeout_minutes,
                                               application_tags(emr, "d", RUN_ID))}
    assert_valid(model, "StartJobRun", request)
    assert request["executionTimeoutMinutes"] == serverless.job_timeout_minutes
    words = shlex.split(parameters)
    assert words[:2] == ["--py-files", layout.code_uri(JOBS_ZIP)]
    conf = dict(pair.split("=", 1) for flag, pair in zip(words, words[1:]) if flag == "--conf")
    for prefix in ("spark.emr-serverless.driverEnv.", "spark.executorEnv."):
        assert conf[prefix + env_vars.MONGO_SECRET_ID] == SECRET_ID
        assert conf[prefix + env_vars.MONGO_SECRET_REGION] == emr.region
    assert "mongodb://" not in str(request) and env_vars.MONGO_URI not in str(request)


def test_driver_logs_are_where_emr_serverless_writes_them():
    uris = job_runs.driver_log_uris("s3://b/msd/logs/", "00app", "00run")
    assert uris == {
        "stderr": "s3://b/msd/logs/applications/00app/jobs/00run/SPARK_DRIVER/stderr.gz",
        "stdout": "s3://b/msd/logs/applications/00app/jobs/00run/SPARK_DRIVER/stdout.gz"}
    job_run = {"configurationOverrides": job_runs.configuration_overrides("s3://b/msd/logs/")}
    assert job_runs.log_uri_of(job_run) == "s3://b/msd/logs/"
    assert job_runs.log_uri_of({}) is None


class FakeS3:
    def __init__(self):
        self.objects = {}

    def load_bytes(self, data, key, bucket_name, replace):
        self.objects[(bucket_name, key)] = data


def ship(monkeypatch, serverless_changes, dependencies=None):
    """Run ship_code's function with AWS and Mongo replaced; the returned XCom and calls."""
    from msd_pipeline.run_context import RunContext
    from msd_pipeline.targets.emr_serverless import target

    calls = {}
    config = load_config().with_overrides({"emr.s3_root": "s3://test-bucket/msd",
                                           **{"emr_serverless." + key: value
                                              for key, value in serverless_changes.items()}})
    monkeypatch.setattr(target.code_shipping, "ship_code",
                        lambda s3, layout: {name: layout.code_uri(name)
                                            for name in (JOBS_ZIP, "ingest_songs.py")})
    monkeypatch.setattr(target.PipelineEmrServerlessHook, "put_run_secret",
                        lambda self, name, uri, tags: calls.setdefault("secret", (name, uri)))
    monkeypatch.setattr("msd_pipeline.connections.mongo_uri_from_connection",
                        lambda conn_id: "mongodb://user:pw@db/msd")
    for name, function in (dependencies or {}).items():
        monkeypatch.setattr(target_dependencies, name, function)
    run = RunContext(dag_id="msd_emr_serverless_pipeline", airflow_run_id=RUN_ID,
                     target="emr_serverless", config=config,
                     run_uri="s3://test-bucket/msd/artifacts/" + RUN_KEY)
    return target._ship_code_task.function(run.to_xcom()), calls


def fake_dependencies(calls):
    """dependencies.py's two functions, without building or storing an archive."""
    def ensure_archive(s3_hook, s3_root, python_version, architecture):
        calls["ensure_archive"] = (s3_root, python_version, architecture)
        return "s3://test-bucket/msd/dependencies/abc123.tar.gz"

    return {"ensure_archive": ensure_archive,
            "spark_properties": lambda uri: {"spark.archives": uri + "#deps"}}


def refuse_archive(*args):
    raise AssertionError("image mode built a dependency archive")


def test_ship_code_in_archive_mode_ships_the_archive_and_its_properties(monkeypatch, model):
    calls = {}
    shipped, ship_calls = ship(monkeypatch, {"architecture": "ARM64"}, fake_dependencies(calls))
    assert calls["ensure_archive"] == ("s3://test-bucket/msd", "3.9", "ARM64")
    assert shipped["dependency_archive"] == "s3://test-bucket/msd/dependencies/abc123.tar.gz"
    assert "spark.archives=s3://test-bucket/msd/dependencies/abc123.tar.gz#deps" in \
        shlex.split(shipped["spark_submit_parameters"])
    assert ship_calls["secret"][0] == SECRET_ID and shipped["mongo_secret_id"] == SECRET_ID
    assert "pw@" not in str(shipped)
    request = dict(shipped["application_request"], clientToken="t", type="SPARK")
    assert_valid(model, "CreateApplication", request)


def test_ship_code_in_image_mode_builds_no_archive(monkeypatch):
    shipped, _ = ship(monkeypatch, {"dependencies": "image", "image_uri": "repo/msd:1"},
                      {"ensure_archive": refuse_archive})
    assert shipped["dependency_archive"] is None
    assert shipped["application_request"]["imageConfiguration"] == {"imageUri": "repo/msd:1"}
    assert "spark.archives" not in shipped["spark_submit_parameters"]


@pytest.mark.parametrize("overrides, message", [
    ({"emr_serverless.dependencies": "image"}, "image_uri is required"),
    ({"emr_serverless.dependencies": "conda"}, "dependencies must be one of archive, image"),
    ({"emr_serverless.architecture": "AARCH64"}, "architecture must be one of X86_64, ARM64"),
    ({"emr_serverless.job_timeout_minutes": 0}, "job_timeout_minutes must be at least 1"),
    ({"emr_serverless.initial_executor_workers": 0}, "initial_executor_workers must be at least 1"),
])
def test_settings_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig().with_overrides(overrides)


def test_image_mode_with_an_image_is_valid():
    config = PipelineConfig().with_overrides({"emr_serverless.dependencies": "image",
                                              "emr_serverless.image_uri": "repo/msd:1"})
    assert config.emr_serverless.image_uri == "repo/msd:1"
