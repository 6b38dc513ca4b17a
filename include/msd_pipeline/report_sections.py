"""Sections the Airflow side adds to a run's report (report.md, written by the training
job): each sits between its own markers, so writing it again replaces it."""
from typing import Any, Mapping

COST_BEGIN = "<!-- cost -->"
COST_END = "<!-- /cost -->"


def with_section(report: str, begin: str, end: str, section: str) -> str:
    """``report`` with the section between ``begin`` and ``end`` replaced by ``section``
    (which carries both markers), appended when the report has none."""
    start, stop = report.find(begin), report.find(end)
    if start >= 0 and stop > start:
        return report[:start] + section + report[stop + len(end):].lstrip("\n")
    return report.rstrip("\n") + "\n\n" + section


def cost_section(cost: Mapping[str, Any]) -> str:
    """The target's cost estimate (``target_details.cost``) as a markdown section."""
    if cost.get("estimated_usd") is None:
        total = "unknown: no price for {}".format(", ".join(cost.get("missing_prices") or ["?"]))
    else:
        total = "{} USD".format(cost["estimated_usd"])
    stage = ("final" if cost.get("final") else "provisional: the engine was still up; the "
             "teardown's final one is the run record's `target_details.cost`")
    return "\n".join([COST_BEGIN, "## Cost", "", "Estimated cost of the run: **{}** ({}).".format(
        total, stage), "", cost.get("note", ""), COST_END])
