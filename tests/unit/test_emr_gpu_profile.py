"""[emr] profile "gpu", offline: the RunJobFlow request against botocore's shape, its
classifications compared key by key with the table AWS documents for EMR 7.x, the cgroup
bootstrap with AWS's script, spark-rapids-ml installed by the GPU profile only, the
settings' checks and the GPU prices in the cost estimate. The CPU request is unchanged.

DOCUMENTED_EMR7 is AWS's example my-configurations.json for Amazon EMR 7.x in "Use the
NVIDIA RAPIDS Accelerator for Apache Spark" (EMR Release Guide,
https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-rapids.html), written out
here by hand from the page, apart from the code it checks."""
import dataclasses

import botocore.session
import pytest
from botocore.validate import ParamValidator

from msdlib.config import ConfigError, from_dict, load_config
from msd_pipeline.paths import EMR_DIR
from msd_pipeline.targets.emr import code_shipping, cost
from msd_pipeline.targets.emr.cluster import build_job_flow_request
from msd_pipeline.targets.emr.layout import RunLayout
from msd_pipeline.targets.emr.preflight import OK, PROBLEM
from msd_pipeline.targets.emr.preflight import capacity

RUN_KEY = "manual__2026-12-07T12_00_00_00_00"
CODE = f"s3://test-bucket/msd/runs/{RUN_KEY}/code/"

DOCUMENTED_EMR7 = {
    "spark": {"enableSparkRapids": "true"},
    "yarn-site": {
        "yarn.nodemanager.resource-plugins": "yarn.io/gpu",
        "yarn.resource-types": "yarn.io/gpu",
        "yarn.nodemanager.resource-plugins.gpu.allowed-gpu-devices": "auto",
        "yarn.nodemanager.resource-plugins.gpu.path-to-discovery-executables": "/usr/bin",
        "yarn.nodemanager.linux-container-executor.cgroups.mount": "true",
        "yarn.nodemanager.linux-container-executor.cgroups.mount-path": "/spark-rapids-cgroup",
        "yarn.nodemanager.linux-container-executor.cgroups.hierarchy": "yarn",
        "yarn.nodemanager.container-executor.class":
            "org.apache.hadoop.yarn.server.nodemanager.LinuxContainerExecutor",
    },
    "container-executor": {},
    "container-executor/gpu": {"module.enabled": "true"},
    "container-executor/cgroups": {"root": "/spark-rapids-cgroup", "yarn-hierarchy": "yarn"},
    "spark-defaults": {
        "spark.plugins": "com.nvidia.spark.SQLPlugin",
        "spark.executor.resource.gpu.discoveryScript":
            "/usr/lib/spark/scripts/gpu/getGpusResources.sh",
        "spark.executor.extraLibraryPath":
            "/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/cuda/extras/CUPTI/lib64:"
            "/usr/local/cuda/compat/lib:/usr/local/cuda/lib:/usr/local/cuda/lib64:"
            "/usr/lib/hadoop/lib/native:/usr/lib/hadoop-lzo/lib/native:"
            "/docker/usr/lib/hadoop/lib/native:/docker/usr/lib/hadoop-lzo/lib/native",
        "spark.submit.pyFiles": "/usr/lib/spark/jars/xgboost4j-spark_3.0-1.4.2-0.3.0.jar",
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
    },
    "capacity-scheduler": {"yarn.scheduler.capacity.resource-calculator":
                           "org.apache.hadoop.yarn.util.resource.DominantResourceCalculator"},
}
# The page's "my-bootstrap-action.sh" for Amazon EMR 7.x.
DOCUMENTED_EMR7_BOOTSTRAP = [
    "sudo mkdir -p /spark-rapids-cgroup/devices",
    "sudo mount -t cgroup -o devices cgroupv1-devices /spark-rapids-cgroup/devices",
    "sudo chmod a+rwx -R /spark-rapids-cgroup",
]
# Where the request departs from the page, and why: XGBoost's jar is not used by any job;
# shuffle partitions follow the core nodes' vCPUs like every cluster of this target.
NOT_TAKEN = {("spark-defaults", "spark.submit.pyFiles")}
OVERRIDDEN = {("spark-defaults", "spark.sql.shuffle.partitions")}


def emr_settings(**changes):
    base = dataclasses.replace(load_config().emr, s3_root="s3://test-bucket/msd")
    return dataclasses.replace(base, **changes)


def build(emr):
    return build_job_flow_request(emr, RunLayout(emr.s3_root, RUN_KEY), dag_id="msd_emr_pipeline",
                                  airflow_run_id="manual__1", mongo_secret_id="msd/secret")


def classifications(request):
    """"name" or "parent/name" → Properties, for every (nested) classification."""
    found = {}
    for item in request["Configurations"]:
        found[item["Classification"]] = item.get("Properties", {})
        for child in item.get("Configurations", []):
            found[item["Classification"] + "/" + child["Classification"]] = child["Properties"]
    return found


@pytest.fixture(scope="module")
def emr_model():
    return botocore.session.get_session().get_service_model("emr")


@pytest.mark.parametrize("layout", ["groups", "fleets"])
@pytest.mark.parametrize("spot", [False, True])
def test_gpu_request_matches_botocore_shape(emr_model, layout, spot):
    request = build(emr_settings(profile="gpu", instance_layout=layout, core_on_spot=spot))
    shape = emr_model.operation_model("RunJobFlow").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize("classification", sorted(DOCUMENTED_EMR7))
def test_gpu_classifications_are_the_documented_ones_key_by_key(classification):
    found = classifications(build(emr_settings(profile="gpu")))
    assert classification in found
    for key, value in DOCUMENTED_EMR7[classification].items():
        if (classification, key) in NOT_TAKEN:
            assert key not in found[classification]
        elif (classification, key) not in OVERRIDDEN:
            assert found[classification].get(key) == value, key


def test_gpu_profile_adds_no_classification_the_page_does_not_list():
    cpu = classifications(build(emr_settings()))
    gpu = classifications(build(emr_settings(profile="gpu")))
    assert set(gpu) - set(cpu) == set(DOCUMENTED_EMR7) - {"spark-defaults"}
    added = {key for key in gpu["spark-defaults"] if key not in cpu["spark-defaults"]}
    documented = {key for classification, key in
                  ((name, key) for name in ["spark-defaults"] for key in DOCUMENTED_EMR7[name])
                  if (classification, key) not in NOT_TAKEN | OVERRIDDEN}
    assert added == documented


def test_settings_of_the_run_win_over_the_rapids_defaults():
    emr = emr_settings(profile="gpu", spark_properties={
        **load_config().emr.spark_properties, "spark.executor.cores": "4",
        "spark.task.resource.gpu.amount": "0.25"})
    defaults = classifications(build(emr))["spark-defaults"]
    assert (defaults["spark.executor.cores"], defaults["spark.task.resource.gpu.amount"]) == (
        "4", "0.25")
    # 2 g4dn.xlarge core nodes × 4 vCPUs, twice: the target's own shuffle sizing
    assert defaults["spark.sql.shuffle.partitions"] == "16"


def test_core_nodes_are_gpu_types_and_the_primary_stays_on_the_cpu_type():
    emr = emr_settings(profile="gpu")
    groups = build(emr)["Instances"]["InstanceGroups"]
    assert [(g["InstanceRole"], g["InstanceType"]) for g in groups] == [
        ("MASTER", emr.master_instance_type), ("CORE", emr.gpu_core_instance_types[0])]
    fleets = build(dataclasses.replace(emr, instance_layout="fleets"))["Instances"]
    master, core = fleets["InstanceFleets"]
    assert [c["InstanceType"] for c in master["InstanceTypeConfigs"]] == [
        emr.master_instance_type]
    assert [c["InstanceType"] for c in core["InstanceTypeConfigs"]] == list(
        emr.gpu_core_instance_types)


def test_the_cgroup_bootstrap_runs_first_and_is_the_documented_script():
    actions = build(emr_settings(profile="gpu"))["BootstrapActions"]
    assert [action["ScriptBootstrapAction"]["Path"] for action in actions] == [
        CODE + "bootstrap-gpu-cgroup.sh", CODE + "bootstrap.sh"]
    script = (EMR_DIR / "bootstrap-gpu-cgroup.sh").read_text()
    commands = [line for line in script.splitlines() if line.startswith("sudo ")]
    assert commands == DOCUMENTED_EMR7_BOOTSTRAP
    shipped = code_shipping.code_files()
    assert shipped["bootstrap-gpu-cgroup.sh"] == script.encode()
    assert shipped["requirements-emr-gpu.txt"] == (
        EMR_DIR / "requirements-emr-gpu.txt").read_bytes()


def test_only_the_gpu_profile_installs_spark_rapids_ml_with_python_3_11():
    cpu_args = build(emr_settings())["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]
    gpu_args = build(emr_settings(profile="gpu"))["BootstrapActions"][1][
        "ScriptBootstrapAction"]["Args"]
    assert "--extra-requirements" not in cpu_args and "--python" not in cpu_args
    assert gpu_args[:len(cpu_args)] == cpu_args
    assert gpu_args[len(cpu_args):] == ["--extra-requirements",
                                        CODE + "requirements-emr-gpu.txt",
                                        "--python", "python3.11"]
    gpu_pins = [line for line in (EMR_DIR / "requirements-emr-gpu.txt").read_text().splitlines()
                if line and not line.startswith("#")]
    assert sorted(pin.split("==")[0] for pin in gpu_pins if "==" in pin) == [
        "cuml-cu12", "spark-rapids-ml"]
    # What spark-rapids-ml imports but does not declare.
    assert sorted(pin for pin in gpu_pins if "==" not in pin) == [
        "pandas", "psutil", "pyarrow", "scipy"]
    cpu_pins = (EMR_DIR / "requirements-emr.txt").read_text()
    assert "spark-rapids-ml" not in cpu_pins and "cuml" not in cpu_pins


def test_the_cpu_request_carries_nothing_of_the_gpu_profile():
    request = build(emr_settings())
    found = classifications(request)
    assert set(found) == {"spark-defaults", "spark-env", "spark-env/export"}
    assert not any("gpu" in key or "rapids" in key for key in found["spark-defaults"])
    assert len(request["BootstrapActions"]) == 1


@pytest.mark.parametrize("changes, message", [
    ({"master_instance_type": "m6g.xlarge"}, "x86 CPU type"),
    ({"master_instance_type": "g4dn.xlarge"}, "x86 CPU type"),
    ({"gpu_core_instance_types": ["m5.xlarge"]}, "gpu_core_instance_types items must match"),
    ({"gpu_core_instance_types": []}, "at least one GPU instance type"),
    ({"release_label": "emr-6.15.0"}, "for EMR 7.x"),
], ids=["graviton-primary", "gpu-primary", "cpu-core-type", "no-core-type", "emr-6"])
def test_gpu_profile_settings_are_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"emr": {"profile": "gpu", **changes}})


def test_cpu_profile_ignores_the_gpu_settings():
    assert from_dict({"emr": {"master_instance_type": "m6g.xlarge"}}).emr.profile == "cpu"


def test_the_gpu_core_types_are_priced_and_a_fleet_is_estimated_at_its_dearest():
    emr = emr_settings(profile="gpu", instance_layout="fleets")
    estimate = cost.estimate_cost(emr, hours=1.0)
    assert estimate["missing_prices"] == []
    master, core = estimate["lines"]
    assert master["instance_type"] == emr.master_instance_type
    dearest = max(emr.gpu_core_instance_types,
                  key=lambda name: emr.ec2_hourly_prices[name] + emr.emr_hourly_fees[name])
    assert core["instance_type"] == dearest
    assert core["usd"] == pytest.approx(emr.core_instance_count * (
        emr.ec2_hourly_prices[dearest] + emr.emr_hourly_fees[dearest]))


class QuotaAnswers:
    """The two preflight hook calls check_quotas makes, answered from tables."""

    def __init__(self, vcpus, quotas):
        self._vcpus, self._quotas, self.asked = vcpus, quotas, []

    def vcpus(self, instance_types):
        return {name: self._vcpus[name] for name in instance_types}

    def quota(self, service_code, quota_code):
        self.asked.append((service_code, quota_code))
        return self._quotas[quota_code]


def test_gpu_core_nodes_are_checked_against_the_g_and_vt_quotas():
    emr = emr_settings(profile="gpu", core_instance_count=2)
    hook = QuotaAnswers({"m5.xlarge": 4, "g4dn.xlarge": 4},
                        {"L-1216C47A": 64.0, "L-DB2E81BA": 4.0})
    standard, gpu = capacity.check_quotas(emr, hook)
    assert hook.asked == [("ec2", "L-1216C47A"), ("ec2", "L-DB2E81BA")]
    assert (standard.check, standard.status) == ("vcpu quota on-demand", OK)
    assert "4 Standard on-demand vCPUs" in standard.detail  # the primary only
    assert (gpu.check, gpu.status) == ("vcpu quota G and VT on-demand", PROBLEM)
    assert "needs 8 G and VT on-demand vCPUs" in gpu.detail and "L-DB2E81BA" in gpu.fix


def test_spot_gpu_core_nodes_use_the_g_and_vt_spot_quota():
    emr = emr_settings(profile="gpu", instance_layout="fleets", core_on_spot=True)
    hook = QuotaAnswers({"m5.xlarge": 4, "g4dn.xlarge": 4, "g5.xlarge": 4, "g6.xlarge": 4},
                        {"L-1216C47A": 8.0, "L-3819A6DF": 8.0})
    findings = capacity.check_quotas(emr, hook)
    assert [(f.check, f.status) for f in findings] == [
        ("vcpu quota on-demand", OK), ("vcpu quota G and VT spot", OK)]


@pytest.mark.parametrize("instance_type, g_or_vt", [
    ("g4dn.xlarge", True), ("g5.2xlarge", True), ("g6.xlarge", True), ("vt1.3xlarge", True),
    ("m5.xlarge", False), ("p3.2xlarge", False), ("r6g.xlarge", False)])
def test_g_and_vt_families(instance_type, g_or_vt):
    assert capacity.is_g_or_vt(instance_type) is g_or_vt
