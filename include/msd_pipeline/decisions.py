"""Decision records: one document per champion/challenger decision in ``model_decisions``.

Schema (``schema_version`` 1):

    _id              "<dag_id>:<run_key>" (the training run's record in pipeline_runs has
                     the same id and embeds this document under ``decision``)
    dag_id, airflow_run_id, run_key, run_type, dag_version_id
    asset_events     the `songs` events that triggered the run: asset, source DAG/run,
                     timestamp and extra (ingest run id, counts, source)
    config           the retraining settings and the training settings of the run
    challenger       registry version, run folder, MLflow run, test + baseline scores
    champion         the champion before the decision: version, run folder, its scores
                     on the same split (or the error that kept it from being scored)
    evaluation_split {hash, songs}: the artist-disjoint test split both were scored on
    gate             {outcome, passed, reasons, checks}: the pure rules' verdict
    status           "promoted" | "rejected" | "awaiting_approval" |
                     "rejected_by_approver" | "rolled_back_to"
    approval         {answer, by, at} when the promotion waited for an approver: the
                     option chosen in model.approve, the user (null: nobody answered
                     within the timeout, so its default applied) and when
    decided_at, updated_at
"""
import contextlib
import dataclasses
import datetime
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

from msdlib.config import MongoSettings
from msd_pipeline import report_sections
from msd_pipeline.gate import AWAIT_APPROVAL, PROMOTE, Decision
from msd_pipeline.run_context import RunContext

SCHEMA_VERSION = 1
PROMOTED = "promoted"
REJECTED = "rejected"
AWAITING_APPROVAL = "awaiting_approval"
REJECTED_BY_APPROVER = "rejected_by_approver"


def build_decision_record(run: RunContext, metrics: Mapping[str, Any],
                          decision: Decision, challenger: Mapping[str, Any],
                          champion: Optional[Mapping[str, Any]], *, run_type: str,
                          dag_version_id: Optional[str],
                          asset_events: List[Dict[str, Any]]) -> Dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc)
    status = {PROMOTE: PROMOTED, AWAIT_APPROVAL: AWAITING_APPROVAL}.get(decision.outcome,
                                                                          REJECTED)
    return {
        **run.identity(),
        "schema_version": SCHEMA_VERSION,
        "run_type": run_type,
        "dag_version_id": dag_version_id,
        "asset_events": asset_events,
        "config": {"retraining": dataclasses.asdict(run.config.retraining),
                   "training": dataclasses.asdict(run.config.training)},
        "challenger": dict(challenger, scores=_scores(metrics)),
        "champion": dict(champion, scores=metrics.get("champion")) if champion else None,
        "evaluation_split": metrics.get("evaluation_split"),
        "gate": decision.to_dict(),
        "status": status,
        "decided_at": now,
        "updated_at": now,
    }


def _scores(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    decade, year = metrics["decade"], metrics["year"]
    return {
        "decade": {"chosen": decade["chosen"], "macro_f1": decade["test"]["macro_f1"],
                   "accuracy": decade["test"].get("accuracy"),
                   "baseline_macro_f1": decade["baseline"]["macro_f1"]},
        "year": {"chosen": year["chosen"], "rmse": year["test"]["rmse"],
                 "mae": year["test"].get("mae"), "baseline_rmse": year["baseline"]["rmse"]},
    }


def asset_event_summaries(events_by_asset: Any) -> List[Dict[str, Any]]:
    """The triggering asset events of a run (``context["triggering_asset_events"]``) as
    plain dicts."""
    summaries = []
    for events in (events_by_asset or {}).values():
        for event in events:
            asset = getattr(event, "asset", None)
            timestamp = getattr(event, "timestamp", None)
            summaries.append({
                "asset": getattr(asset, "name", None) or getattr(asset, "uri", None),
                "source_dag_id": getattr(event, "source_dag_id", None),
                "source_run_id": getattr(event, "source_run_id", None),
                "timestamp": timestamp.isoformat() if timestamp else None,
                "extra": dict(getattr(event, "extra", None) or {}),
            })
    return summaries


def trained_elsewhere(events: Iterable[Mapping[str, Any]]) -> bool:
    """True when every triggering event comes from a run that trains on its own songs
    (extra ``retrain: false``): that ingest has had its training already."""
    events = list(events)
    return bool(events) and all(event["extra"].get("retrain") is False for event in events)


def songs_event_extra(run: RunContext, ingest_summary: Dict[str, Any],
                      train_here: bool) -> Dict[str, Any]:
    """The `songs` event's extra: the ingest run, its counts and source, and whether a
    retraining DAG should train on these songs (``retrain``)."""
    return {
        "run_id": run.airflow_run_id, "run_key": run.run_key, "dag_id": run.dag_id,
        "source": ingest_summary.get("source") or run.config.ingest.source,
        "counts": {key: ingest_summary[key] for key in (
            "files_seen", "files_ingested", "files_failed") if key in ingest_summary},
        "retrain": not train_here,
    }


def next_tasks(record: Mapping[str, Any], promote_task: str, approve_task: Optional[str],
               after_task: str) -> List[str]:
    """The branches the decision leads to: approval or promotion when the gate passed,
    and always the task after them (which waits for them)."""
    outcome = record["gate"]["outcome"]
    if outcome == AWAIT_APPROVAL and approve_task:
        return [approve_task, after_task]
    if outcome in (PROMOTE, AWAIT_APPROVAL):
        return [promote_task, after_task]
    return [after_task]


def approval_body(record: Mapping[str, Any]) -> str:
    """The markdown shown to the approver."""
    champion = record.get("champion") or {}
    lines = ["Challenger **{}** (run `{}`) passed the gate.".format(
        record["challenger"]["label"], record["run_key"]),
        "", "Champion: **{}**".format(champion.get("label") or "none"), ""]
    lines += ["- " + reason for reason in record["gate"]["reasons"]]
    return "\n".join(lines)


REPORT_BEGIN = "<!-- decision -->"
REPORT_END = "<!-- /decision -->"


def approval_answer(response: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The ``approval`` field from model.approve's XCom (ApprovalOperator's response):
    None when nobody was asked."""
    if not response:
        return None
    answered_at = response.get("responded_at")
    return {"answer": (response.get("chosen_options") or [None])[0],
            "by": (response.get("responded_by_user") or {}).get("name"),
            "at": answered_at.isoformat() if hasattr(answered_at, "isoformat") else answered_at}


def _approval_line(approval: Mapping[str, Any]) -> str:
    if approval["by"] is None:
        return "Approval: **{}**, the default: nobody answered in time.".format(
            approval["answer"])
    return "Approval: **{}** by `{}` at {}.".format(approval["answer"], approval["by"],
                                                   approval["at"])


def report_section(record: Mapping[str, Any]) -> str:
    """The decision as a markdown section of the run's report: status, the scores side
    by side on the shared split, the gate's checks and the lineage."""
    challenger = record["challenger"]
    champion = record.get("champion") or {}
    scores = challenger["scores"]
    champion_scores = champion.get("scores") or {}
    split = record.get("evaluation_split") or {}

    def score(scored: Mapping[str, Any], task: str, name: str, digits: int) -> str:
        value = (scored.get(task) or {}).get(name)
        return "{:.{}f}".format(value, digits) if isinstance(value, (int, float)) else "-"

    lines = [REPORT_BEGIN, "## Champion/challenger decision", "",
             "**{}**: challenger `{}` (registry version {}); champion before: {}.".format(
                 record["status"].replace("_", " "), challenger["label"],
                 challenger["version"],
                 "`{}`".format(champion["label"]) if champion else "none")]
    if record.get("approval"):
        lines += ["", _approval_line(record["approval"])]
    lines += ["", "| on the same test split | challenger | champion | baseline |",
             "| --- | ---: | ---: | ---: |",
             "| year RMSE | {} | {} | {} |".format(
                 score(scores, "year", "rmse", 3), score(champion_scores, "year", "rmse", 3),
                 score(scores, "year", "baseline_rmse", 3)),
             "| decade macro-F1 | {} | {} | {} |".format(
                 score(scores, "decade", "macro_f1", 4),
                 score(champion_scores, "decade", "macro_f1", 4),
                 score(scores, "decade", "baseline_macro_f1", 4)),
             "", "Split: {} songs, hash `{}`.".format(split.get("songs", "?"),
                                                     split.get("hash", "?")),
             "", "Gate:"]
    lines += ["- [{}] {}: {}".format("x" if check["passed"] else " ", check["rule"],
                                      check["reason"]) for check in record["gate"]["checks"]]
    triggers = ", ".join("`{}` from {} {}".format(event["asset"], event["source_dag_id"],
                                                   event["source_run_id"])
                         for event in record.get("asset_events") or []) or "none"
    lines += ["", "Lineage: {} run `{}` ({}), DAG version `{}`; asset events: {}.".format(
        record["dag_id"], record["airflow_run_id"], record["run_type"],
        record.get("dag_version_id") or "-", triggers), REPORT_END]
    return "\n".join(lines) + "\n"


def with_report_section(report: str, section: str) -> str:
    """``report`` with its decision section replaced by ``section`` (appended when it has
    none), so that writing it again changes nothing."""
    return report_sections.with_section(report, REPORT_BEGIN, REPORT_END, section)


def save_decision(record: Mapping[str, Any], mongo: MongoSettings) -> None:
    """Replace-upsert ``record`` through the Airflow connection ``mongo.airflow_conn_id``."""
    with _collection(mongo) as collection:
        collection.replace_one({"_id": record["_id"]}, dict(record), upsert=True)


def set_status(record_id: str, status: str, mongo: MongoSettings,
               **fields: Any) -> None:
    with _collection(mongo) as collection:
        collection.update_one({"_id": record_id}, {"$set": dict(
            fields, status=status, updated_at=datetime.datetime.now(datetime.timezone.utc))})


def find_decision(record_id: str, mongo: MongoSettings) -> Optional[Dict[str, Any]]:
    with _collection(mongo) as collection:
        return collection.find_one({"_id": record_id})


@contextlib.contextmanager
def _collection(mongo: MongoSettings) -> Iterator[Any]:
    """The decisions collection of ``mongo`` through the Airflow MongoHook."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    with MongoHook(mongo_conn_id=mongo.airflow_conn_id) as hook:
        yield hook.get_collection(mongo.decisions_collection, mongo_db=mongo.database)
