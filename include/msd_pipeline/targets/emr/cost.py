"""Estimated cost of a run's cluster: instance-hours × a configurable price table.

Best effort: an instance type missing from ``emr.hourly_prices`` leaves its line (and the
total) without a price and logs a warning; it never fails the run."""
import datetime
import logging
from typing import Any, Dict, List, Optional

from msdlib.config import EmrSettings

log = logging.getLogger(__name__)


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
    """(instance type, count, market) lines of the requested cluster. For fleets the
    dearest configured type is assumed, so the estimate is an upper bound."""
    core_type = emr.core_instance_type
    if emr.instance_layout == "fleets":
        core_type = max(emr.fleet_instance_types, key=lambda name: _price(emr, name) or 0.0)
    return [
        {"role": "master", "instance_type": emr.master_instance_type, "count": 1,
         "market": "ON_DEMAND"},
        {"role": "core", "instance_type": core_type, "count": emr.core_instance_count,
         "market": "SPOT" if emr.core_on_spot else "ON_DEMAND"},
    ]


def estimate_cost(emr: EmrSettings, hours: float) -> Dict[str, Any]:
    """Instance-hours and estimated USD for ``hours`` of the requested cluster;
    ``estimated_usd`` is None when a price is missing (``missing_prices`` names them)."""
    lines = []
    for line in requested_instances(emr):
        price = _price(emr, line["instance_type"])
        if price is not None and line["market"] == "SPOT":
            price *= emr.spot_price_fraction
        instance_hours = line["count"] * hours
        lines.append({**line, "instance_hours": round(instance_hours, 4),
                      "usd_per_hour": None if price is None else round(price, 4),
                      "usd": None if price is None else round(instance_hours * price, 4)})
    missing = sorted({line["instance_type"] for line in lines if line["usd"] is None})
    if missing:
        log.warning("No price for %s in emr.hourly_prices: the cost estimate is incomplete",
                    ", ".join(missing))
    return {"hours": round(hours, 4),
            "instance_hours": round(sum(line["instance_hours"] for line in lines), 4),
            "estimated_usd": None if missing else round(sum(line["usd"] for line in lines), 4),
            "missing_prices": missing,
            "lines": lines,
            "note": "estimate: configured on-demand prices (emr.hourly_prices), spot at "
                    "emr.spot_price_fraction; storage, S3 and data transfer excluded"}


def _price(emr: EmrSettings, instance_type: str) -> Optional[float]:
    price = emr.hourly_prices.get(instance_type)
    return None if price is None else float(price)
