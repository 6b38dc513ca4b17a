"""The EMR Serverless cost estimate: each job run's billed utilization × the region and
architecture's prices, summed over the run; a missing price warns and leaves the total
unknown, never failing."""
import dataclasses
import logging

import pytest

from msdlib.config import load_config
from msd_pipeline.targets.emr_serverless import cost

PRICES = {"vCPUHour": 0.05, "memoryGBHour": 0.005, "storageGBHour": 0.0001}


def job_run(job_run_id, vcpu, memory, storage, state="SUCCESS"):
    return {"jobRunId": job_run_id, "applicationId": "00app", "name": "spark.ingest x",
            "state": state, "billedResourceUtilization": {
                "vCPUHour": vcpu, "memoryGBHour": memory, "storageGBHour": storage}}


def serverless(**changes):
    return dataclasses.replace(load_config().emr_serverless, **changes)


def test_each_job_run_is_priced_by_its_billed_utilization_and_the_run_sums_them():
    settings = serverless(prices={"eu-west-1/ARM64": PRICES}, architecture="ARM64")
    estimate = cost.run_cost(settings, "eu-west-1", [job_run("a", 2.0, 8.0, 40.0),
                                                     job_run("b", 1.0, 4.0, 20.0)], final=True)
    first, second = estimate["job_runs"]
    assert first["estimated_usd"] == pytest.approx(2 * 0.05 + 8 * 0.005 + 40 * 0.0001)
    assert estimate["estimated_usd"] == pytest.approx(
        first["estimated_usd"] + second["estimated_usd"])
    assert (estimate["vCPUHour"], estimate["memoryGBHour"], estimate["storageGBHour"]) == \
        pytest.approx((3.0, 12.0, 60.0))
    assert estimate["final"] is True and estimate["missing_prices"] == []
    assert estimate["price_key"] == "eu-west-1/ARM64"


def test_the_shipped_prices_cover_the_default_region_and_architecture():
    config = load_config()
    key = cost.price_key(config.emr.region, config.emr_serverless.architecture)
    assert set(config.emr_serverless.prices[key]) == set(cost.RATES)


@pytest.mark.parametrize("prices", [{}, {"us-east-1/X86_64": {"vCPUHour": 0.05}}],
                         ids=["no-price", "a-rate-missing"])
def test_a_missing_price_warns_and_leaves_the_total_unknown(prices, caplog):
    with caplog.at_level(logging.WARNING):
        estimate = cost.run_cost(serverless(prices=prices), "us-east-1",
                                 [job_run("a", 1.0, 4.0, 20.0)], final=False)
    assert estimate["estimated_usd"] is None and estimate["missing_prices"] == ["us-east-1/X86_64"]
    assert estimate["vCPUHour"] == 1.0  # the utilization is still recorded
    assert "No complete price for us-east-1/X86_64" in caplog.text
    assert cost.usd_text(estimate) == "unknown (no price for us-east-1/X86_64)"


def test_a_job_run_without_billed_utilization_yet_costs_nothing():
    running = {"jobRunId": "r", "applicationId": "00app", "state": "RUNNING"}
    estimate = cost.run_cost(serverless(), "us-east-1", [running], final=False)
    assert estimate["estimated_usd"] == 0.0 and estimate["job_runs"][0]["vCPUHour"] == 0.0
    assert cost.job_run_lines(estimate)[0].startswith("None (r, RUNNING): 0.0 vCPU-h")
