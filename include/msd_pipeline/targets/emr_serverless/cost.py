"""Estimated cost of a run's job runs: each job run's ``billedResourceUtilization``
(vCPU-hours, memory GB-hours, storage GB-hours, as AWS bills them: per second with each
worker's minimum) × the ``emr_serverless.prices`` of "<region>/<architecture>".

A job run bills only while it runs, so the estimate is the sum over the run's job runs
on every application of the run; pre-initialized capacity billed while an application
idles is not in ``billedResourceUtilization`` and is left out (the note says so). The
estimate ``collect_metrics`` records is provisional (imputation may follow, and a job
run still running has no billed utilization yet); the teardown records the final one.

Best effort: a missing price leaves the total unknown and logs a warning; it never fails
the run."""
import logging
from typing import Any, Dict, Iterable, List, Optional

from msdlib.config import EmrServerlessSettings
from msd_pipeline.targets.emr.cost import usd_text  # noqa: F401  (the same total line)

log = logging.getLogger(__name__)

RATES = ("vCPUHour", "memoryGBHour", "storageGBHour")
NOTE = ("estimate: each job run's billedResourceUtilization × emr_serverless.prices; "
        "pre-initialized capacity idling between job runs, S3 and data transfer excluded")


def price_key(region: str, architecture: str) -> str:
    return f"{region}/{architecture}"


def job_run_cost(job_run: Dict[str, Any], prices: Optional[Dict[str, float]]) -> Dict[str, Any]:
    """One ``GetJobRun`` result's billed utilization and estimated USD (None: no price,
    or a price without one of the three rates)."""
    billed = job_run.get("billedResourceUtilization") or {}
    usage = {rate: round(float(billed.get(rate, 0.0)), 6) for rate in RATES}
    priced = prices is not None and all(rate in prices for rate in RATES)
    return {"job_run_id": job_run["jobRunId"], "application_id": job_run["applicationId"],
            "name": job_run.get("name"), "state": job_run.get("state"), **usage,
            "estimated_usd": round(sum(usage[rate] * float(prices[rate]) for rate in RATES), 6)
            if priced else None}


def run_cost(serverless: EmrServerlessSettings, region: str,
             job_runs: Iterable[Dict[str, Any]], *, final: bool) -> Dict[str, Any]:
    """The estimate over the run's job runs (``GetJobRun`` results). ``final``: every
    application of the run is gone (the teardown's estimate)."""
    key = price_key(region, serverless.architecture)
    prices = serverless.prices.get(key)
    per_job = [job_run_cost(job_run, prices) for job_run in job_runs]
    missing = [key] if per_job and any(item["estimated_usd"] is None for item in per_job) else []
    if missing:
        log.warning("No complete price for %s in emr_serverless.prices (vCPUHour, "
                    "memoryGBHour, storageGBHour): the cost estimate is incomplete", key)
    return {"final": final,
            "price_key": key,
            **{rate: round(sum(item[rate] for item in per_job), 6) for rate in RATES},
            "estimated_usd": None if missing
            else round(sum(item["estimated_usd"] for item in per_job), 6),
            "missing_prices": missing,
            "job_runs": per_job,
            "note": NOTE}


def job_run_lines(estimate: Dict[str, Any]) -> List[str]:
    """One line per job run, for the teardown's log."""
    return ["{name} ({job_run_id}, {state}): {vCPUHour} vCPU-h, {memoryGBHour} GB-h memory, "
            "{storageGBHour} GB-h storage, {usd}".format(
                usd=item["estimated_usd"] if item["estimated_usd"] is not None else "no price",
                **item) for item in estimate["job_runs"]]
