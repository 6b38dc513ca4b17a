"""Estimated cost of a run's clusters: instance-hours × configured prices.

Each instance is billed its EC2 price (on demand, or on spot ``emr.spot_price_fraction``
of it) plus the EMR fee of its type, which spot leaves unchanged. A cluster bills from
its creation to its end (``Status.Timeline``), termination included. The estimate that
``collect_metrics`` records is provisional (the cluster is still up); the teardown
replaces it with the final one over every cluster of the run.

Best effort: an instance type missing from ``emr.ec2_hourly_prices`` or
``emr.emr_hourly_fees`` leaves its line (and the total) without a price and logs a
warning; it never fails the run."""
import datetime
import logging
from typing import Any, Dict, Iterable, List, Optional

from msdlib.config import EmrSettings

from msd_pipeline.targets.emr.cluster import core_instance_types

log = logging.getLogger(__name__)

NOTE = ("estimate: EC2 on-demand prices (emr.ec2_hourly_prices), spot at "
        "emr.spot_price_fraction of them, plus the EMR fee (emr.emr_hourly_fees, never "
        "discounted); spot core nodes assumed provisioned on spot; EBS, S3 and data "
        "transfer excluded")


def cluster_hours(timeline: Dict[str, Any], now: Optional[datetime.datetime] = None) -> float:
    """Hours from the cluster's creation to its end (or ``now`` while it is up)."""
    start = timeline["CreationDateTime"]
    end = timeline.get("EndDateTime") or now or datetime.datetime.now(start.tzinfo)
    return max((end - start).total_seconds(), 0.0) / 3600.0


def idle_seconds(ready: Optional[datetime.datetime],
                 first_step: Optional[datetime.datetime]) -> Optional[float]:
    """Seconds a ready cluster billed before its first step was added (None: unknown)."""
    if ready is None or first_step is None:
        return None
    return round(max((first_step - ready).total_seconds(), 0.0), 3)


def requested_instances(emr: EmrSettings) -> List[Dict[str, Any]]:
    """(instance type, count, market) lines of the requested cluster. For a fleet of
    several types the dearest is assumed, so the estimate is an upper bound."""
    market = "SPOT" if emr.core_on_spot else "ON_DEMAND"
    core_type = max(core_instance_types(emr),
                    key=lambda name: _hourly_rate(emr, name, market) or 0.0)
    return [
        {"role": "master", "instance_type": emr.master_instance_type, "count": 1,
         "market": "ON_DEMAND"},
        {"role": "core", "instance_type": core_type, "count": emr.core_instance_count,
         "market": market},
    ]


def estimate_cost(emr: EmrSettings, hours: float) -> Dict[str, Any]:
    """Instance-hours and estimated USD for ``hours`` of one requested cluster;
    ``estimated_usd`` is None when a price is missing (``missing_prices`` names the types)."""
    lines = [_priced_line(emr, line, hours) for line in requested_instances(emr)]
    missing = sorted({line["instance_type"] for line in lines if line["usd"] is None})
    return {"hours": round(hours, 4),
            "instance_hours": round(sum(line["instance_hours"] for line in lines), 4),
            "estimated_usd": None if missing else round(sum(line["usd"] for line in lines), 4),
            "missing_prices": missing,
            "lines": lines}


def run_cost(emr: EmrSettings, clusters: Iterable[Dict[str, Any]], *, final: bool,
             now: Optional[datetime.datetime] = None) -> Dict[str, Any]:
    """The estimate over every cluster of a run (``DescribeCluster`` results), each over
    its own timeline. ``final``: every cluster has ended (the teardown's estimate)."""
    per_cluster = [{"cluster_id": cluster["Id"],
                    **estimate_cost(emr, cluster_hours(cluster["Status"]["Timeline"], now))}
                   for cluster in clusters]
    missing = sorted({name for item in per_cluster for name in item["missing_prices"]})
    _warn_missing(emr, missing)
    return {"final": final,
            "hours": round(sum(item["hours"] for item in per_cluster), 4),
            "instance_hours": round(sum(item["instance_hours"] for item in per_cluster), 4),
            "estimated_usd": None if missing
            else round(sum(item["estimated_usd"] for item in per_cluster), 4),
            "missing_prices": missing,
            "clusters": per_cluster,
            "note": NOTE}


def usd_text(estimate: Dict[str, Any]) -> str:
    """The estimate's total for a log line: "1.23 USD", or why it is unknown."""
    if estimate["estimated_usd"] is None:
        return "unknown (no price for {})".format(", ".join(estimate["missing_prices"]))
    return "{} USD".format(estimate["estimated_usd"])


def _priced_line(emr: EmrSettings, line: Dict[str, Any], hours: float) -> Dict[str, Any]:
    name = line["instance_type"]
    ec2 = _ec2_rate(emr, name, line["market"])
    fee = emr.emr_hourly_fees.get(name)
    rate = _hourly_rate(emr, name, line["market"])
    instance_hours = line["count"] * hours
    return {**line, "instance_hours": round(instance_hours, 4),
            "ec2_usd_per_hour": None if ec2 is None else round(ec2, 4),
            "emr_usd_per_hour": None if fee is None else round(float(fee), 4),
            "usd": None if rate is None else round(instance_hours * rate, 4)}


def _hourly_rate(emr: EmrSettings, instance_type: str, market: str) -> Optional[float]:
    """EC2 (spot-discounted on SPOT) plus the EMR fee; None when either is unknown."""
    ec2 = _ec2_rate(emr, instance_type, market)
    fee = emr.emr_hourly_fees.get(instance_type)
    return None if ec2 is None or fee is None else ec2 + float(fee)


def _ec2_rate(emr: EmrSettings, instance_type: str, market: str) -> Optional[float]:
    price = emr.ec2_hourly_prices.get(instance_type)
    if price is None:
        return None
    return float(price) * (emr.spot_price_fraction if market == "SPOT" else 1.0)


def _warn_missing(emr: EmrSettings, missing: List[str]) -> None:
    for table, prices in (("ec2_hourly_prices", emr.ec2_hourly_prices),
                          ("emr_hourly_fees", emr.emr_hourly_fees)):
        unpriced = [name for name in missing if name not in prices]
        if unpriced:
            log.warning("No price for %s in emr.%s: the cost estimate is incomplete",
                        ", ".join(unpriced), table)
