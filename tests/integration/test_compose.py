"""docker-compose.yaml validates with `docker-compose config` (no Docker engine here),
wires what the pipeline needs, and its images carry the same dependency pins as
requirements.txt."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from project_paths import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
AIRFLOW_DOCKERFILE = PROJECT_ROOT / "docker" / "airflow" / "Dockerfile"
SPARK_DOCKERFILE = PROJECT_ROOT / "docker" / "spark" / "Dockerfile"
SPARK_REQUIREMENTS = PROJECT_ROOT / "docker" / "spark" / "requirements.txt"
SECRETS = {"MONGO_ROOT_PASSWORD": "mongo-pw", "POSTGRES_PASSWORD": "pg-pw",
           "AIRFLOW_JWT_SECRET": "jwt", "AIRFLOW_API_SECRET_KEY": "api-key",
           "MSD_SERVING_API_KEYS": "serving-key"}
AIRFLOW_SERVICES = {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}
SPARK_SERVICES = {"spark-master", "spark-worker-1", "spark-worker-2"}
# Import name → distribution name, where they differ.
DISTRIBUTION_OF = {"bson": "pymongo", "botocore": "boto3"}
# Imported only with training.accelerator = "gpu" (include/emr/requirements-emr-gpu.txt).
GPU_ONLY = {"spark_rapids_ml"}

needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                   reason="docker-compose not installed (apt-get install docker-compose)")


def compose_config(secrets):
    env = {key: value for key, value in os.environ.items() if key not in SECRETS}
    env.update(secrets)
    return subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "config"], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def config():
    completed = compose_config(SECRETS)
    assert completed.returncode == 0, completed.stderr
    return yaml.safe_load(completed.stdout)


@needs_compose
def test_compose_file_validates_with_all_services(config):
    assert set(config["services"]) == AIRFLOW_SERVICES | SPARK_SERVICES | {
        "airflow-init", "postgres", "mongo", "mlflow", "serving"}


@needs_compose
def test_mlflow_registry_service_and_airflow_uses_it(config):
    mlflow = config["services"]["mlflow"]
    command = mlflow["command"]
    assert mlflow["entrypoint"] == ["mlflow"] and command[0] == "server"
    assert command[command.index("--backend-store-uri") + 1].startswith("sqlite:////opt/msd/artifacts/")
    for name in AIRFLOW_SERVICES:
        assert config["services"][name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


@needs_compose
def test_secrets_have_no_defaults():
    for missing in SECRETS:
        completed = compose_config({k: v for k, v in SECRETS.items() if k != missing})
        assert completed.returncode != 0
        assert missing in completed.stderr


@needs_compose
def test_every_long_running_service_has_a_healthcheck(config):
    for name, service in config["services"].items():
        if name != "airflow-init":
            assert service["healthcheck"]["test"], name


@needs_compose
def test_published_ports_bind_to_localhost_only(config):
    published = [port for service in config["services"].values()
                 for port in service.get("ports", [])]
    assert published
    assert all(str(port).startswith("127.0.0.1:") for port in published)


@needs_compose
def test_mongo_requires_authentication_and_airflow_uses_it(config):
    mongo = config["services"]["mongo"]
    assert "--auth" in mongo["command"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"] == SECRETS["MONGO_ROOT_PASSWORD"]
    for name in AIRFLOW_SERVICES:
        env = config["services"][name]["environment"]
        assert env["AIRFLOW_CONN_MONGO_DEFAULT"].startswith("mongo://msd:mongo-pw@mongo:27017")
        assert "spark://spark-master" in env["AIRFLOW_CONN_SPARK_DEFAULT"]
        assert "postgres:5432" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@needs_compose
def test_data_and_artifacts_are_shared_at_the_same_paths(config):
    for name in AIRFLOW_SERVICES | SPARK_SERVICES:
        targets = {volume.split(":")[1] for volume in config["services"][name]["volumes"]}
        assert {"/opt/msd/data", "/opt/msd/artifacts", "/opt/msd/spark_jobs",
                "/opt/shared/msd"} <= targets, name
    assert {"msd-data", "msd-artifacts", "mongo-data", "postgres-db"} <= set(config["volumes"])


def pins(path: Path):
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\[\]-]+)==([^\s;#]+)", line.strip())
        if match:
            found[re.sub(r"\[.*\]", "", match.group(1)).lower()] = match.group(2)
    return found


def test_airflow_image_installs_requirements_on_the_pinned_airflow():
    dockerfile = AIRFLOW_DOCKERFILE.read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)", dockerfile, re.M)
    assert base.group(1) == pins(PROJECT_ROOT / "requirements.txt")["apache-airflow"]
    assert base.group(2) == "{}.{}".format(*sys.version_info[:2])
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in dockerfile
    assert "COPY requirements.txt /tmp/requirements.txt" in dockerfile


def test_spark_image_pins_match_requirements():
    required = pins(PROJECT_ROOT / "requirements.txt")
    spark = pins(SPARK_REQUIREMENTS)
    assert spark, "no pins in docker/spark/requirements.txt"
    assert {name: version for name, version in spark.items() if required.get(name) != version} == {}
    python = re.search(r"^FROM python:(\d+\.\d+)", SPARK_DOCKERFILE.read_text(), re.M).group(1)
    airflow_python = re.search(r"-python(\S+)", AIRFLOW_DOCKERFILE.read_text()).group(1)
    assert python == airflow_python  # driver and executors must share the Python minor


def test_spark_image_provides_every_module_the_jobs_import():
    provided = set(pins(SPARK_REQUIREMENTS))
    imported = third_party_imports(PROJECT_ROOT / "spark_jobs")
    assert imported, "no third-party imports found"
    missing = {module for module in imported if DISTRIBUTION_OF.get(module, module) not in provided}
    assert missing == GPU_ONLY  # training.accelerator "gpu": the EMR GPU profile's nodes


def third_party_imports(folder: Path):
    modules = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    local = {path.stem for path in folder.rglob("*.py")} | {"msdlib"}
    return {module for module in modules
            if module not in sys.stdlib_module_names and module not in local}


@needs_compose
def test_serving_answers_for_mlflows_champion_on_localhost(config):
    serving = config["services"]["serving"]
    assert serving["entrypoint"] == ["python", "-m", "msd_serving.app"]
    assert serving["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert [str(port).split("/")[0] for port in serving["ports"]] == ["127.0.0.1:8000:8000"]
    assert "/health" in " ".join(serving["healthcheck"]["test"])
    targets = {volume.split(":")[1] for volume in serving["volumes"]}
    assert {"/opt/msd/include", "/opt/msd/spark_jobs", "/opt/msd/artifacts"} <= targets
