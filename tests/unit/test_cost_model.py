"""The cost model of docs/emr-serverless.md: its arithmetic on a hand-checked case, and
the docs' table is exactly what ``python -m msd_devtools.cost_model`` prints for the
default configuration."""
import pytest

from msd_devtools import cost_model
from msdlib.config import load_config
from project_paths import PROJECT_ROOT

PRICES = {"us-east-1/X86_64": {"vCPUHour": 0.05, "memoryGBHour": 0.005, "storageGBHour": 0.001}}


def test_the_docs_carry_the_models_table():
    docs = (PROJECT_ROOT / "docs" / "emr-serverless.md").read_text()
    assert cost_model.table(load_config()) in docs


def test_the_work_of_a_dataset_from_the_measured_rates():
    work = cost_model.work_vcpu_seconds(cost_model.Dataset("d", 651, 10_000))
    assert work == pytest.approx({"ingest": 20.0, "train_evaluate": 226.0})


def test_serverless_bills_the_initial_capacity_idle_and_the_work():
    config = load_config(overrides={"emr_serverless.prices": PRICES,
                                    "emr_serverless.worker_disk": "30 GB"})
    # 4-vCPU workers, 1 driver + 2 executors initially, 44 executor vCPUs at most.
    estimate = cost_model.serverless_estimate(config, {"job": 44 * 600.0})
    idle, start = 5 * 60 * 12, 60 * 12
    working = 600 * 4 + 44 * 600  # the driver, and the executors' work
    vcpu_hours = (idle + start + working) / 3600
    assert estimate.wall_hours == pytest.approx((5 * 60 + 60 + 600) / 3600)
    assert estimate.usd == pytest.approx(vcpu_hours * 0.05 + vcpu_hours * 4 * 0.005
                                         + vcpu_hours / 4 * 10 * 0.001)


def test_a_missing_price_leaves_the_estimate_open():
    config = load_config(overrides={"emr_serverless.architecture": "ARM64",
                                    "emr_serverless.prices": PRICES})
    assert cost_model.serverless_estimate(config, {"job": 100.0}).usd is None


def test_ec2_bills_the_whole_cluster_from_start_up_to_the_end():
    estimate = cost_model.ec2_estimate(load_config(), {"job": 8 * 600.0})  # 2 core m5.xlarge
    hours = (15 * 60 + 5 * 60 + 60 + 600) / 3600
    assert estimate.wall_hours == pytest.approx(hours)
    assert estimate.usd == pytest.approx(3 * 0.24 * hours, abs=1e-4)
