"""The RunJobFlow request of one run's cluster, built from the typed configuration.

The cluster stays alive between steps (``KeepJobFlowAliveWhenNoSteps``) so that the DAG
adds them one by one; the DAG's teardown ends it, and ``AutoTerminationPolicy`` is the
backstop should Airflow itself be gone. Validated offline against botocore's
``RunJobFlow`` input shape in tests/unit/test_emr_request.py.
"""
from typing import Any, Dict, List, Optional

from msdlib import env_vars
from msdlib.config import (ECR_IMAGE, EMR_VENV, EMR_VENV_PYTHON, EmrSettings,
                           container_image_problems)

from msd_pipeline.targets.emr.layout import (BOOTSTRAP_SCRIPT, GPU_CGROUP_SCRIPT,
                                             GPU_REQUIREMENTS, REQUIREMENTS, RunLayout)

# Spot capacity not there within emr.spot_timeout_minutes is provisioned on demand: the
# run goes on at most at the on-demand price, where TERMINATE_CLUSTER would end a run whose
# master has already billed the whole wait.
SPOT_TIMEOUT_ACTION = "SWITCH_TO_ON_DEMAND"
TAG_VALUE_MAX = 256
NAME_MAX = 256

RUN_TAG = "airflow:dag_run_id"
DAG_TAG = "airflow:dag_id"

# vCPUs by EC2 instance size (the part after the family: m5.xlarge → "xlarge"); an
# "<N>xlarge" has 4 × N. Holds for the families EMR runs (m, c, r, i, d; Intel, AMD and
# Graviton alike); other sizes ("metal") need spark.default.parallelism set by hand.
VCPUS_BY_SIZE = {"medium": 1, "large": 2, "xlarge": 4}
DEFAULT_PARALLELISM = "spark.default.parallelism"
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
# Shuffle partitions per core: small enough for a few thousand songs, and two waves
# spread a skewed shuffle over every core.
SHUFFLE_PARTITIONS_PER_CORE = 2

# Docker on YARN (emr.container_image; AWS: "Run Spark applications with Docker using
# Amazon EMR 6.x"). The image's Python: python3 of the EMR 7 Serverless base image is 3.9,
# the Python the pins are resolved for (docker/emr-serverless/Dockerfile checks it).
IMAGE_PYTHON = "/usr/bin/python3"
# Where the YARN containers read the runtime and image from: the driver (in cluster mode
# the application master) and the executors.
CONTAINER_ENV_PREFIXES = ("spark.yarn.appMasterEnv.", "spark.executorEnv.")

# [emr] profile "gpu": the configuration AWS documents for EMR 7.x in "Use the NVIDIA RAPIDS
# Accelerator for Apache Spark" (EMR Release Guide, emr-spark-rapids; its table is in
# tests/unit/test_emr_gpu_profile.py). YARN's GPU isolation runs on the cgroup v1 devices
# controller that include/emr/bootstrap-gpu-cgroup.sh mounts at RAPIDS_CGROUP.
RAPIDS_CGROUP = "/spark-rapids-cgroup"
GPU_YARN_SITE = {
    "yarn.nodemanager.resource-plugins": "yarn.io/gpu",
    "yarn.resource-types": "yarn.io/gpu",
    "yarn.nodemanager.resource-plugins.gpu.allowed-gpu-devices": "auto",
    "yarn.nodemanager.resource-plugins.gpu.path-to-discovery-executables": "/usr/bin",
    "yarn.nodemanager.linux-container-executor.cgroups.mount": "true",
    "yarn.nodemanager.linux-container-executor.cgroups.mount-path": RAPIDS_CGROUP,
    "yarn.nodemanager.linux-container-executor.cgroups.hierarchy": "yarn",
    "yarn.nodemanager.container-executor.class":
        "org.apache.hadoop.yarn.server.nodemanager.LinuxContainerExecutor",
}
GPU_CAPACITY_SCHEDULER = {"yarn.scheduler.capacity.resource-calculator":
                          "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"}
# The page's spark-defaults less its XGBoost jar (spark.submit.pyFiles: no job here uses
# XGBoost). One GPU per executor of 2 cores, half a GPU per task. Parallelism (shuffle
# partitions included) and emr.spark_properties override these.
GPU_SPARK_DEFAULTS = {
    "spark.plugins": "com.nvidia.spark.SQLPlugin",
    "spark.executor.resource.gpu.discoveryScript":
        "/usr/lib/spark/scripts/gpu/getGpusResources.sh",
    "spark.executor.extraLibraryPath": ":".join([
        "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda/extras/CUPTI/lib64",
        "/usr/local/cuda/compat/lib", "/usr/local/cuda/lib", "/usr/local/cuda/lib64",
        "/usr/lib/hadoop/lib/native", "/usr/lib/hadoop-lzo/lib/native",
        "/docker/usr/lib/hadoop/lib/native", "/docker/usr/lib/hadoop-lzo/lib/native"]),
    "spark.rapids.sql.concurrentGpuTasks": "1",
    "spark.executor.resource.gpu.amount": "1",
    "spark.executor.cores": "2",
    "spark.task.cpus": "1",
    "spark.task.resource.gpu.amount": "0.5",
    "spark.rapids.memory.pinnedPool.size": "0",
    "spark.executor.memoryOverhead": "2G",
    "spark.locality.wait": "0s",
    "spark.sql.shuffle.partitions": "200",
    "spark.sql.files.maxPartitionBytes": "512m",
}
# The GPU environment's Python: spark-rapids-ml and cuML have no wheels for EMR 7's 3.9.
GPU_PYTHON = "python3.11"


class ClusterConfigError(ValueError):
    """The [emr] configuration cannot describe a cluster."""


def build_job_flow_request(emr: EmrSettings, layout: RunLayout, *, dag_id: str,
                           airflow_run_id: str, mongo_secret_id: Optional[str]) -> Dict[str, Any]:
    """The ``RunJobFlow`` request for this run (``mongo_secret_id`` in "secret" mode)."""
    _check(emr, mongo_secret_id)
    request = {
        "Name": cluster_name(emr, layout.run_key),
        "ReleaseLabel": emr.release_label,
        "LogUri": layout.log_uri,
        "Applications": [{"Name": "Spark"}, {"Name": "Hadoop"}],
        "Instances": _instances(emr),
        "BootstrapActions": [_bootstrap_action(emr, layout)],
        "Configurations": _configurations(emr, mongo_secret_id),
        "AutoTerminationPolicy": {"IdleTimeout": emr.idle_timeout_minutes * 60},
        "JobFlowRole": emr.job_flow_role,
        "ServiceRole": emr.service_role,
        "VisibleToAllUsers": True,
        "StepConcurrencyLevel": 1,
        "Tags": run_tags(emr, dag_id, airflow_run_id),
    }
    if emr.container_image:  # the image holds the packages the bootstrap would install
        del request["BootstrapActions"]
    if emr.profile == "gpu":
        apply_gpu_profile(request, layout)
    return request


def apply_gpu_profile(request: Dict[str, Any], layout: RunLayout) -> None:
    """Turn a CPU request into the GPU profile's: the cgroup bootstrap first, spark-rapids-ml
    and Python 3.11 in the jobs' environment, the RAPIDS classifications, and the RAPIDS
    spark-defaults under the request's own (which win)."""
    main_bootstrap = request["BootstrapActions"][0]["ScriptBootstrapAction"]
    main_bootstrap["Args"] += ["--extra-requirements", layout.code_uri(GPU_REQUIREMENTS),
                               "--python", GPU_PYTHON]
    request["BootstrapActions"].insert(0, {
        "Name": "mount-cgroup-v1-for-yarn-gpus",
        "ScriptBootstrapAction": {"Path": layout.code_uri(GPU_CGROUP_SCRIPT), "Args": []}})
    for configuration in request["Configurations"]:
        if configuration["Classification"] == "spark-defaults":
            configuration["Properties"] = {**GPU_SPARK_DEFAULTS, **configuration["Properties"]}
    request["Configurations"] += gpu_configurations()


def gpu_configurations() -> List[Dict[str, Any]]:
    """The RAPIDS plugin, YARN's GPU scheduling and isolation, the container-executor's GPU
    module and cgroups, and the capacity scheduler's DominantResourceCalculator."""
    return [
        {"Classification": "spark", "Properties": {"enableSparkRapids": "true"}},
        {"Classification": "yarn-site", "Properties": dict(GPU_YARN_SITE)},
        {"Classification": "container-executor", "Properties": {}, "Configurations": [
            {"Classification": "gpu", "Properties": {"module.enabled": "true"}},
            {"Classification": "cgroups",
             "Properties": {"root": RAPIDS_CGROUP, "yarn-hierarchy": "yarn"}}]},
        {"Classification": "capacity-scheduler", "Properties": dict(GPU_CAPACITY_SCHEDULER)},
    ]


def cluster_name(emr: EmrSettings, run_key: str) -> str:
    """The name of the run's cluster: how teardown and the failure callback find it."""
    return f"{emr.cluster_name}-{run_key}"[:NAME_MAX]


def run_tags(emr: EmrSettings, dag_id: str, airflow_run_id: str) -> List[Dict[str, str]]:
    """The configured tags plus the DAG id and run id (how teardown finds a lost cluster)."""
    tags = {**emr.tags, DAG_TAG: dag_id, RUN_TAG: airflow_run_id}
    return [{"Key": key, "Value": str(value)[:TAG_VALUE_MAX]} for key, value in tags.items()]


def _check(emr: EmrSettings, mongo_secret_id: Optional[str]) -> None:
    problems = list(container_image_problems(emr))
    if not emr.container_image and not emr.release_label.startswith("emr-7."):
        problems.append(f"release_label must be an EMR 7 release (Spark 3.5, Python 3.9), "
                        f"got {emr.release_label!r}")
    if emr.mongo_mode == "secret" and not mongo_secret_id:
        problems.append("mongo_mode 'secret' needs the run's secret id")
    if emr.instance_layout == "fleets" and not emr.fleet_instance_types:
        problems.append("fleet_instance_types must name at least one instance type")
    if DEFAULT_PARALLELISM not in emr.spark_properties:
        unknown = [name for name in core_instance_types(emr) if instance_vcpus(name) is None]
        if unknown:
            problems.append(f"no vCPU count known for {', '.join(unknown)}: set "
                            f"{DEFAULT_PARALLELISM!r} in [emr.spark_properties]")
    if problems:
        raise ClusterConfigError("invalid [emr] configuration: " + "; ".join(problems))


def requests_fleets(emr: EmrSettings) -> bool:
    """Whether the request holds instance fleets: the "fleets" layout, and core nodes on
    spot in the "groups" layout. Instance groups have no spot provisioning timeout (only
    a fleet's SpotSpecification has one), so spot core groups that never arrive would
    leave the on-demand master billing until create_timeout_seconds. Groups with spot
    become one fleet per role holding the group's single instance type: the same nodes,
    and the trigger form's spot choice keeps working with the default layout."""
    return emr.instance_layout == "fleets" or emr.core_on_spot


def _instances(emr: EmrSettings) -> Dict[str, Any]:
    instances: Dict[str, Any] = {
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if not requests_fleets(emr):
        instances["InstanceGroups"] = [
            {"Name": "master", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
             "InstanceType": emr.master_instance_type, "InstanceCount": 1},
            {"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
             "InstanceType": core_instance_types(emr)[0],
             "InstanceCount": emr.core_instance_count},
        ]
        if emr.ec2_subnet_id:
            instances["Ec2SubnetId"] = emr.ec2_subnet_id
    else:
        instances["InstanceFleets"] = [_master_fleet(emr), _core_fleet(emr)]
        if emr.ec2_subnet_id:
            instances["Ec2SubnetIds"] = [emr.ec2_subnet_id]
    if emr.ec2_key_name:
        instances["Ec2KeyName"] = emr.ec2_key_name
    return instances


def _master_fleet(emr: EmrSettings) -> Dict[str, Any]:
    return {"Name": "master", "InstanceFleetType": "MASTER", "TargetOnDemandCapacity": 1,
            "InstanceTypeConfigs": [{"InstanceType": emr.master_instance_type}]}


def _core_fleet(emr: EmrSettings) -> Dict[str, Any]:
    fleet: Dict[str, Any] = {
        "Name": "core", "InstanceFleetType": "CORE",
        "TargetOnDemandCapacity": 0 if emr.core_on_spot else emr.core_instance_count,
        "TargetSpotCapacity": emr.core_instance_count if emr.core_on_spot else 0,
        "InstanceTypeConfigs": [{"InstanceType": name, "WeightedCapacity": 1}
                                for name in core_instance_types(emr)],
    }
    if emr.core_on_spot:
        fleet["LaunchSpecifications"] = {"SpotSpecification": {
            "TimeoutDurationMinutes": emr.spot_timeout_minutes,
            "TimeoutAction": SPOT_TIMEOUT_ACTION,
            "AllocationStrategy": "price-capacity-optimized"}}
    return fleet


def _bootstrap_action(emr: EmrSettings, layout: RunLayout) -> Dict[str, Any]:
    args = ["--requirements", layout.code_uri(REQUIREMENTS), "--venv", EMR_VENV]
    if emr.mongo_mode == "master_node":
        args += ["--mongodb-on-master", emr.master_node_mongo_version]
    return {"Name": "install-msd-job-dependencies",
            "ScriptBootstrapAction": {"Path": layout.code_uri(BOOTSTRAP_SCRIPT), "Args": args}}


def instance_vcpus(instance_type: str) -> Optional[int]:
    """vCPUs of an EC2 instance type from its size (``m5.2xlarge`` → 8); None if unknown."""
    size = instance_type.partition(".")[2]
    if size in VCPUS_BY_SIZE:
        return VCPUS_BY_SIZE[size]
    multiple = size[:-len("xlarge")] if size.endswith("xlarge") else ""
    return 4 * int(multiple) if multiple.isdigit() and int(multiple) > 0 else None


def core_instance_types(emr: EmrSettings) -> List[str]:
    """The core nodes' types: in the "gpu" profile emr.gpu_core_instance_types (the
    "groups" layout takes the first)."""
    fleet = emr.gpu_core_instance_types if emr.profile == "gpu" else emr.fleet_instance_types
    single = fleet[0] if emr.profile == "gpu" else emr.core_instance_type
    return [single] if emr.instance_layout == "groups" else list(fleet)


def core_vcpus(emr: EmrSettings) -> int:
    """The executors' cores: every core node's vCPUs (a fleet: its largest type's, so
    that no core idles whichever types EMR picks)."""
    return emr.core_instance_count * max(
        instance_vcpus(name) or 0 for name in core_instance_types(emr))


def parallelism_properties(emr: EmrSettings) -> Dict[str, str]:
    """``spark.default.parallelism`` and shuffle partitions from the core nodes' vCPUs.

    On YARN with dynamic allocation no executor exists when the driver starts, so
    Spark's own default parallelism is 2; the jobs size their partitions from it.
    Settings in ``emr.spark_properties`` win.
    """
    if DEFAULT_PARALLELISM in emr.spark_properties:
        return {}
    cores = core_vcpus(emr)
    return {DEFAULT_PARALLELISM: str(cores),
            SHUFFLE_PARTITIONS: str(SHUFFLE_PARTITIONS_PER_CORE * cores)}


def _configurations(emr: EmrSettings, mongo_secret_id: Optional[str]) -> List[Dict[str, Any]]:
    # PYSPARK_PYTHON in spark-env.sh too (EMR's documented way to choose PySpark's
    # interpreter) for whatever does not read spark-defaults; spark.pyspark.python wins
    # where both are set.
    exports = {"PYSPARK_PYTHON": IMAGE_PYTHON if emr.container_image else EMR_VENV_PYTHON}
    if emr.mongo_mode == "secret":
        exports.update(_mongo_secret_env(emr, mongo_secret_id))
    else:
        exports[env_vars.MONGO_ON_MASTER] = "1"
    configurations = [
        {"Classification": "spark-defaults",
         "Properties": {**parallelism_properties(emr), **emr.spark_properties,
                        **docker_spark_properties(emr, mongo_secret_id)}},
        {"Classification": "spark-env",
         "Configurations": [{"Classification": "export", "Properties": exports}]},
    ]
    if emr.container_image:
        configurations += docker_on_yarn_configurations(emr)
    return configurations


def _mongo_secret_env(emr: EmrSettings, mongo_secret_id: Optional[str]) -> Dict[str, str]:
    return {env_vars.MONGO_SECRET_ID: mongo_secret_id, env_vars.MONGO_SECRET_REGION: emr.region}


def image_registry(image: str) -> str:
    """The registry host of an ECR image URI (``<account>.dkr.ecr.<region>.amazonaws.com``)."""
    match = ECR_IMAGE.match(image)
    if match is None:
        raise ClusterConfigError(f"not an ECR image: {image!r}")
    return match.group("registry")


def docker_on_yarn_configurations(emr: EmrSettings) -> List[Dict[str, Any]]:
    """The container-executor classification trusting the image's registry (AWS's example
    lists it under both keys: container-executor checks the privileged list in some
    Hadoop 3 releases), and ECR auto-authentication (EMR 6.1 and later) stated in
    yarn-site although EMR turns it on for a trusted ECR registry: the nodes log in with
    the instance profile (ecr:GetAuthorizationToken), so no docker client config is
    needed in HDFS."""
    registry = image_registry(emr.container_image)
    return [
        {"Classification": "container-executor",
         "Configurations": [{"Classification": "docker", "Properties": {
             "module.enabled": "true",
             "docker.trusted.registries": registry,
             "docker.privileged-containers.registries": registry}}]},
        {"Classification": "yarn-site",
         "Properties": {"yarn.nodemanager.runtime.linux.docker.ecr-auto-authentication.enabled":
                        "true"}},
    ]


def docker_spark_properties(emr: EmrSettings,
                            mongo_secret_id: Optional[str]) -> Dict[str, str]:
    """spark-defaults running the driver (in cluster mode, the application master) and the
    executors in the image with its Python; the run's secret name reaches the driver's
    container as the environment spark-env.sh gives it on the master. {} without an image."""
    if not emr.container_image:
        return {}
    environment = {"YARN_CONTAINER_RUNTIME_TYPE": "docker",
                   "YARN_CONTAINER_RUNTIME_DOCKER_IMAGE": emr.container_image}
    if emr.mongo_mode == "secret":
        environment.update(_mongo_secret_env(emr, mongo_secret_id))
    properties = {prefix + name: value for prefix in CONTAINER_ENV_PREFIXES
                  for name, value in environment.items()}
    properties["spark.pyspark.python"] = IMAGE_PYTHON
    return properties
