"""The EMR cost estimate (msd_pipeline.targets.emr.cost), offline: EC2 price plus EMR fee
per instance-hour, spot discounting the EC2 part only, missing prices, and a run's several
clusters each over its own timeline."""
import dataclasses
import datetime

import pytest

from msdlib.config import load_config
from msd_pipeline.targets.emr import cost

T0 = datetime.datetime(2026, 12, 7, 8, 0, tzinfo=datetime.timezone.utc)


def emr_settings(**changes):
    return dataclasses.replace(load_config().emr, **changes)


def cluster(cluster_id: str, start_minutes: float, end_minutes=None):
    timeline = {"CreationDateTime": T0 + datetime.timedelta(minutes=start_minutes)}
    if end_minutes is not None:
        timeline["EndDateTime"] = T0 + datetime.timedelta(minutes=end_minutes)
    return {"Id": cluster_id, "Status": {"State": "TERMINATED", "Timeline": timeline}}


def test_spot_discounts_the_ec2_price_and_never_the_emr_fee():
    emr = emr_settings(core_instance_count=2, core_on_spot=True, spot_price_fraction=0.5,
                       ec2_hourly_prices={"m5.xlarge": 0.2}, emr_hourly_fees={"m5.xlarge": 0.05})
    estimate = cost.estimate_cost(emr, hours=1.5)
    master, core = estimate["lines"]
    assert (master["market"], master["ec2_usd_per_hour"], master["emr_usd_per_hour"]) == (
        "ON_DEMAND", 0.2, 0.05)
    assert (core["market"], core["ec2_usd_per_hour"], core["emr_usd_per_hour"]) == (
        "SPOT", 0.1, 0.05)
    assert estimate["instance_hours"] == 4.5
    assert master["usd"] == pytest.approx(1.5 * (0.2 + 0.05))
    assert core["usd"] == pytest.approx(3.0 * (0.1 + 0.05))
    assert estimate["estimated_usd"] == pytest.approx(1.5 * 0.25 + 3.0 * 0.15)
    assert estimate["missing_prices"] == []


def test_the_default_tables_price_every_default_instance_type():
    emr = emr_settings()
    types = {emr.master_instance_type, emr.core_instance_type, *emr.fleet_instance_types}
    assert types <= set(emr.ec2_hourly_prices) and types <= set(emr.emr_hourly_fees)


def test_a_fleet_is_priced_at_its_dearest_type_on_its_market():
    emr = emr_settings(instance_layout="fleets", fleet_instance_types=["m5.xlarge", "m5a.xlarge"],
                       core_on_spot=True, spot_price_fraction=0.25,
                       ec2_hourly_prices={"m5.xlarge": 0.2, "m5a.xlarge": 0.16},
                       emr_hourly_fees={"m5.xlarge": 0.01, "m5a.xlarge": 0.03})
    # On spot: m5.xlarge 0.05 + 0.01 = 0.06 < m5a.xlarge 0.04 + 0.03 = 0.07.
    assert cost.requested_instances(emr)[1]["instance_type"] == "m5a.xlarge"
    on_demand = dataclasses.replace(emr, core_on_spot=False)
    assert cost.requested_instances(on_demand)[1]["instance_type"] == "m5.xlarge"


@pytest.mark.parametrize("missing", ["ec2_hourly_prices", "emr_hourly_fees"])
def test_a_missing_price_or_fee_leaves_the_estimate_incomplete_with_a_warning(missing, caplog):
    emr = emr_settings(core_instance_type="m5.4xlarge",
                       ec2_hourly_prices={"m5.xlarge": 0.2, "m5.4xlarge": 0.8},
                       emr_hourly_fees={"m5.xlarge": 0.05, "m5.4xlarge": 0.2})
    emr = dataclasses.replace(emr, **{missing: {"m5.xlarge": 0.2}})
    estimate = cost.run_cost(emr, [cluster("j-1", 0, 120)], final=True)
    assert estimate["estimated_usd"] is None and estimate["missing_prices"] == ["m5.4xlarge"]
    assert estimate["instance_hours"] == 6
    [priced] = estimate["clusters"]
    master_rate = 0.2 + (0.05 if missing == "ec2_hourly_prices" else 0.2)
    assert [line["usd"] for line in priced["lines"]] == [pytest.approx(2 * master_rate), None]
    assert f"No price for m5.4xlarge in emr.{missing}" in caplog.text
    assert cost.usd_text(estimate) == "unknown (no price for m5.4xlarge)"


def test_a_runs_cost_sums_every_cluster_over_its_own_timeline():
    """The run's cluster, ended at teardown, and a short imputation cluster of its own."""
    emr = emr_settings(core_instance_count=2, ec2_hourly_prices={"m5.xlarge": 0.2},
                       emr_hourly_fees={"m5.xlarge": 0.05})
    estimate = cost.run_cost(emr, [cluster("j-main", 0, 90), cluster("j-impute", 200, 230)],
                             final=True)
    assert estimate["final"] is True
    assert [item["cluster_id"] for item in estimate["clusters"]] == ["j-main", "j-impute"]
    assert [item["hours"] for item in estimate["clusters"]] == [1.5, 0.5]
    assert estimate["hours"] == 2.0 and estimate["instance_hours"] == 6.0
    assert estimate["estimated_usd"] == pytest.approx(6.0 * 0.25)
    assert cost.usd_text(estimate) == "1.5 USD"


def test_a_cluster_still_up_is_counted_until_now():
    emr = emr_settings(ec2_hourly_prices={"m5.xlarge": 0.2}, emr_hourly_fees={"m5.xlarge": 0.05})
    now = T0 + datetime.timedelta(minutes=45)
    estimate = cost.run_cost(emr, [cluster("j-up", 0)], final=False, now=now)
    assert estimate["final"] is False and estimate["hours"] == 0.75
    assert estimate["estimated_usd"] == pytest.approx(3 * 0.75 * 0.25)


def test_idle_before_the_first_step_is_ready_to_step_creation_and_unknown_without_either():
    ready = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.timezone.utc)
    assert cost.idle_seconds(ready, ready + datetime.timedelta(seconds=42.5)) == 42.5
    assert cost.idle_seconds(ready, ready - datetime.timedelta(seconds=1)) == 0.0
    assert cost.idle_seconds(None, ready) is None and cost.idle_seconds(ready, None) is None
