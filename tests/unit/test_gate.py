"""The champion/challenger gate's rules: promote, reject, first model, approval."""
import pytest

from msd_pipeline.gate import (AWAIT_APPROVAL, PROMOTE, REJECT, GateSettings, Scores, decide,
                               decide_from_metrics,
                               scores_from_metrics)

pytestmark = pytest.mark.unit

BASELINE = Scores(year_rmse=10.0, decade_macro_f1=0.10)
CHAMPION = Scores(year_rmse=8.0, decade_macro_f1=0.40)
SETTINGS = GateSettings(year_rmse_margin=0.5, decade_f1_tolerance=0.02)


def _rules(decision):
    return {check.rule: check.passed for check in decision.checks}


def test_promotes_a_challenger_that_beats_the_champion_by_the_margin():
    decision = decide(Scores(7.5, 0.39), BASELINE, CHAMPION, SETTINGS)
    assert decision.outcome == PROMOTE and decision.passed
    assert _rules(decision) == {"absolute": True, "year_rmse": True, "decade_macro_f1": True}


def test_rejects_a_challenger_better_by_less_than_the_margin():
    decision = decide(Scores(7.6, 0.45), BASELINE, CHAMPION, SETTINGS)
    assert decision.outcome == REJECT
    assert _rules(decision)["year_rmse"] is False
    assert any("margin 0.5" in reason for reason in decision.reasons)


def test_rejects_a_challenger_whose_decade_f1_drops_past_the_tolerance():
    decision = decide(Scores(6.0, 0.37), BASELINE, CHAMPION, SETTINGS)
    assert decision.outcome == REJECT
    assert _rules(decision) == {"absolute": True, "year_rmse": True, "decade_macro_f1": False}


def test_rejects_a_challenger_that_loses_to_a_baseline_even_against_a_weak_champion():
    weak_champion = Scores(20.0, 0.05)
    decision = decide(Scores(10.5, 0.30), BASELINE, weak_champion, SETTINGS)
    assert decision.outcome == REJECT
    assert _rules(decision)["absolute"] is False


def test_first_model_needs_only_the_absolute_rule():
    assert decide(Scores(9.9, 0.11), BASELINE, None, SETTINGS).outcome == PROMOTE
    decision = decide(Scores(9.9, 0.10), BASELINE, None, SETTINGS)  # ties the baseline
    assert decision.outcome == REJECT
    assert [check.rule for check in decision.checks] == ["absolute", "first_model"]


def test_a_passing_challenger_waits_for_approval_when_required():
    settings = GateSettings(0.5, 0.02, require_approval=True)
    assert decide(Scores(7.0, 0.41), BASELINE, CHAMPION, settings).outcome == AWAIT_APPROVAL
    assert decide(Scores(7.9, 0.41), BASELINE, CHAMPION, settings).outcome == REJECT


def test_scores_from_metrics_reads_challenger_baseline_and_champion():
    metrics = {"decade": {"test": {"macro_f1": 0.4}, "baseline": {"macro_f1": 0.1}},
               "year": {"test": {"rmse": 7.0}, "baseline": {"rmse": 10.0}},
               "champion": {"decade": {"macro_f1": 0.35}, "year": {"rmse": 8.0}}}
    scores = scores_from_metrics(metrics)
    assert scores == {"challenger": Scores(7.0, 0.4), "baseline": Scores(10.0, 0.1),
                      "champion": Scores(8.0, 0.35)}
    del metrics["champion"]
    assert scores_from_metrics(metrics)["champion"] is None


def test_decision_serializes_with_its_reasons():
    data = decide(Scores(7.0, 0.41), BASELINE, CHAMPION, SETTINGS).to_dict()
    assert data["outcome"] == PROMOTE and data["passed"] is True
    assert len(data["reasons"]) == len(data["checks"]) == 3


def test_a_champion_that_could_not_be_scored_keeps_its_place():
    metrics = {"decade": {"test": {"macro_f1": 0.9}, "baseline": {"macro_f1": 0.1}},
               "year": {"test": {"rmse": 2.0}, "baseline": {"rmse": 10.0}},
               "champion": {"uri": "s3://b/runs/old", "error": "FileNotFoundError: gone"}}
    decision = decide_from_metrics(metrics, SETTINGS)
    assert decision.outcome == REJECT
    assert _rules(decision) == {"absolute": True, "champion_scored": False}
    assert "FileNotFoundError: gone" in decision.reasons[1]
