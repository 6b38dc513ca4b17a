"""The cost section the Airflow side adds to a run's report (msd_pipeline.report_sections)."""
from msd_pipeline import report_sections
from msd_pipeline.report_sections import COST_BEGIN, COST_END, cost_section, with_section

EMR_COST = {"final": False, "hours": 0.5, "estimated_usd": 0.21, "missing_prices": [],
            "note": "estimate: EC2 on-demand prices"}
SERVERLESS_UNPRICED = {"final": False, "vCPUHour": 0.2, "estimated_usd": None,
                       "missing_prices": ["us-east-1/ARM64"], "note": "estimate: billed use"}


def add_cost(report, cost):
    return with_section(report, COST_BEGIN, COST_END, cost_section(cost))


def test_the_cost_section_names_the_total_and_that_it_is_provisional():
    section = cost_section(EMR_COST)
    assert section.startswith(COST_BEGIN) and section.endswith(COST_END)
    assert "**0.21 USD**" in section and "provisional" in section
    assert "estimate: EC2 on-demand prices" in section


def test_an_unpriced_run_says_which_price_is_missing():
    assert "unknown: no price for us-east-1/ARM64" in cost_section(SERVERLESS_UNPRICED)
    assert "final" in cost_section({**EMR_COST, "final": True}).split("(")[1]


def test_writing_the_section_again_replaces_it_and_keeps_the_rest():
    report = "# Training run\n\nscores\n"
    once = add_cost(report, EMR_COST)
    assert once.startswith(report) and once.count(COST_BEGIN) == 1
    assert add_cost(once, EMR_COST) == once
    replaced = add_cost(once + "\n<!-- decision -->\nd\n<!-- /decision -->", SERVERLESS_UNPRICED)
    assert replaced.count(COST_BEGIN) == 1 and "0.21 USD" not in replaced
    assert replaced.rstrip().endswith("<!-- /decision -->")
    assert report_sections.with_section("", COST_BEGIN, COST_END, "x").strip() == "x"
