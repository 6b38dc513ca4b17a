"""Decision records, the `songs` event's extra and msd_retrain's trigger check."""
import dataclasses
import datetime
from types import SimpleNamespace

import pytest

from msdlib.config import PipelineConfig
from msd_pipeline import decisions
from msd_pipeline.decisions import songs_event_extra
from msd_pipeline.gate import GateSettings, Scores, decide
from msd_pipeline.run_context import RunContext

pytestmark = pytest.mark.unit

RUN = RunContext(dag_id="msd_retrain_local", airflow_run_id="asset_triggered__2026",
                 target="spark_submit", run_uri="/runs/asset_triggered__2026",
                 config=PipelineConfig().with_overrides({"training.folds": 2,
                                                         "ingest.source": "data/generated"}))
METRICS = {"decade": {"chosen": "logistic_regression",
                      "test": {"macro_f1": 0.4, "accuracy": 0.5}, "baseline": {"macro_f1": 0.1}},
           "year": {"chosen": "linear_regression", "test": {"rmse": 7.0, "mae": 5.0},
                    "baseline": {"rmse": 10.0}},
           "evaluation_split": {"hash": "sha256-sum60:40:abc", "songs": 40},
           "champion": {"uri": "/runs/old", "decade": {"macro_f1": 0.41},
                        "year": {"rmse": 7.05}}}


def _event(source_run_id, extra):
    return SimpleNamespace(asset=SimpleNamespace(name="songs", uri="msd://mongodb/songs"),
                           source_dag_id="msd_local_pipeline", source_run_id=source_run_id,
                           timestamp=datetime.datetime(2026, 11, 24, tzinfo=datetime.timezone.utc),
                           extra=extra)


def test_asset_events_become_plain_dicts():
    summaries = decisions.asset_event_summaries({"songs": [_event("manual__1", {"retrain": True})]})
    assert summaries == [{"asset": "songs", "source_dag_id": "msd_local_pipeline",
                          "source_run_id": "manual__1", "timestamp": "2026-11-24T00:00:00+00:00",
                          "extra": {"retrain": True}}]
    assert decisions.asset_event_summaries(None) == []


def test_one_ingest_one_training():
    trained = decisions.asset_event_summaries({"songs": [_event("a", {"retrain": False})]})
    ingest_only = decisions.asset_event_summaries({"songs": [_event("b", {"retrain": True})]})
    by_hand = decisions.asset_event_summaries({"songs": [_event("c", {})]})
    assert decisions.trained_elsewhere(trained)
    assert not decisions.trained_elsewhere(trained + ingest_only)
    assert not decisions.trained_elsewhere(by_hand)
    assert not decisions.trained_elsewhere([])  # a cron or manual run trains


def test_songs_event_extra_carries_run_counts_source_and_whether_to_retrain():
    summary = {"source": "/data/songs", "files_seen": 5, "files_ingested": 4,
               "files_failed": 1, "seconds": 3.0}
    extra = songs_event_extra(dataclasses.replace(RUN, dag_id="msd_local_pipeline"), summary,
                              train_here=True)
    assert extra == {"run_id": RUN.airflow_run_id, "run_key": RUN.run_key,
                     "dag_id": "msd_local_pipeline", "source": "/data/songs",
                     "counts": {"files_seen": 5, "files_ingested": 4, "files_failed": 1},
                     "retrain": False}
    assert songs_event_extra(RUN, {}, train_here=False)["source"] == "data/generated"


def test_decision_record_has_full_lineage():
    decision = decide(Scores(7.0, 0.4), Scores(10.0, 0.1), Scores(7.05, 0.41),
                      GateSettings(0.1, 0.01))
    events = decisions.asset_event_summaries({"songs": [_event("manual__1", {"retrain": True})]})
    record = decisions.build_decision_record(
        RUN, METRICS, decision, {"version": "3", "label": "msd-song-year/3"},
        {"version": "2", "label": "msd-song-year/2"}, run_type="asset_triggered",
        dag_version_id="0193", asset_events=events)
    assert record["_id"] == "msd_retrain_local:asset_triggered__2026"
    assert record["status"] == decisions.REJECTED
    assert record["asset_events"][0]["source_run_id"] == "manual__1"
    assert record["challenger"]["scores"]["year"]["rmse"] == 7.0
    assert record["champion"]["scores"]["year"]["rmse"] == 7.05
    assert record["evaluation_split"]["hash"] == "sha256-sum60:40:abc"
    assert record["config"]["retraining"]["year_rmse_margin"] == 0.1
    assert record["config"]["training"]["folds"] == 2
    assert record["dag_version_id"] == "0193"
    assert any("margin 0.1" in reason for reason in record["gate"]["reasons"])


@pytest.mark.parametrize("outcome, approve, expected", [
    ("promote", None, ["model.promote", "model.champion"]),
    ("reject", None, ["model.champion"]),
    ("await_approval", "model.approve", ["model.approve", "model.champion"]),
])
def test_the_decision_picks_the_branch(outcome, approve, expected):
    record = {"gate": {"outcome": outcome}}
    assert decisions.next_tasks(record, "model.promote", approve, "model.champion") == expected


def _record(champion=True):
    decision = decide(Scores(7.0, 0.4), Scores(10.0, 0.1),
                      Scores(7.05, 0.41) if champion else None, GateSettings(0.1, 0.01))
    events = decisions.asset_event_summaries({"songs": [_event("manual__1", {"retrain": True})]})
    return decisions.build_decision_record(
        RUN, METRICS if champion else dict(METRICS, champion=None),
        decision, {"version": "3", "label": "msd-song-year/3"},
        {"version": "2", "label": "msd-song-year/2"} if champion else None,
        run_type="asset_triggered", dag_version_id="0193", asset_events=events)


def test_report_section_shows_both_models_on_the_split_the_checks_and_the_lineage():
    section = decisions.report_section(_record())
    assert "**rejected**: challenger `msd-song-year/3` (registry version 3); " \
           "champion before: `msd-song-year/2`." in section
    assert "| year RMSE | 7.000 | 7.050 | 10.000 |" in section
    assert "| decade macro-F1 | 0.4000 | 0.4100 | 0.1000 |" in section
    assert "Split: 40 songs, hash `sha256-sum60:40:abc`." in section
    assert "- [x] absolute:" in section and "- [ ] year_rmse:" in section
    assert "asset events: `songs` from msd_local_pipeline manual__1." in section


def test_report_section_without_a_champion():
    section = decisions.report_section(_record(champion=False))
    assert "**promoted**" in section and "champion before: none." in section
    assert "| year RMSE | 7.000 | - | 10.000 |" in section
    assert "- [x] first_model:" in section


ANSWERED_AT = datetime.datetime(2026, 11, 25, 3, 30, tzinfo=datetime.timezone.utc)


def test_the_approvers_answer_is_recorded_with_who_and_when():
    response = {"chosen_options": ["Approve"], "params_input": {}, "responded_at": ANSWERED_AT,
                "responded_by_user": {"id": "7", "name": "alice"}}
    approval = decisions.approval_answer(response)
    assert approval == {"answer": "Approve", "by": "alice", "at": "2026-11-25T03:30:00+00:00"}
    section = decisions.report_section(dict(_record(champion=False), approval=approval))
    assert "Approval: **Approve** by `alice` at 2026-11-25T03:30:00+00:00." in section


def test_a_timed_out_approval_says_nobody_answered():
    approval = decisions.approval_answer({"chosen_options": ["Reject"], "responded_at": ANSWERED_AT,
                                          "responded_by_user": None})
    assert approval["by"] is None and approval["answer"] == "Reject"
    section = decisions.report_section(
        dict(_record(), status=decisions.REJECTED_BY_APPROVER, approval=approval))
    assert "**rejected by approver**" in section
    assert "Approval: **Reject**, the default: nobody answered in time." in section


def test_no_approver_asked_no_approval():
    assert decisions.approval_answer(None) is None
    assert "Approval:" not in decisions.report_section(_record())


def test_writing_the_section_again_changes_nothing():
    report = "# Training run\n\nscores\n"
    first = decisions.with_report_section(report, decisions.report_section(_record()))
    assert first.startswith(report) and first.count(decisions.REPORT_BEGIN) == 1
    assert decisions.with_report_section(first, decisions.report_section(_record())) == first
    promoted = decisions.report_section(_record(champion=False))
    replaced = decisions.with_report_section(first, promoted)
    assert replaced.count(decisions.REPORT_BEGIN) == 1 and "**promoted**" in replaced
