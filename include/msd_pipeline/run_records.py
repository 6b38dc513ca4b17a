"""Run records: one document per successful pipeline run in ``pipeline_runs``.

Schema (``schema_version`` 1), shared by every target:

    _id              "<dag_id>:<run_key>" (a re-run of collect_metrics replaces it)
    schema_version   1
    dag_id, airflow_run_id, run_key, target ("spark_submit" | "emr" | "emr_serverless"),
                     status ("success")
    started_at       the DAG run's start (datetime, UTC)
    recorded_at      when this record was written (datetime, UTC)
    params           the Params form values of the run
    config           the resolved configuration the jobs ran with (no secrets)
    data             the StagedData of the stage step (None: msd_retrain runs stage nothing)
    ingest           the ingest job's JSON summary (None for msd_retrain runs)
    training         the training job's JSON summary (None: ingest-only run, param train off)
    metrics          the content of metrics.json (None likewise)
    imputation       the impute job's JSON summary (None: nothing imputed)
    decision         the champion/challenger decision record (msd_pipeline.decisions)
    artifacts        {run_uri, metrics_uri, report_uri, config_uri}
    target_details   target-specific facts (EMR: cluster id, instance-hours; EMR Serverless:
                     application id, release, per-job-run billed utilization; both: cost,
                     provisional when collect_metrics writes it, final after the teardown)
"""
import contextlib
import datetime
from typing import Any, Callable, Dict, Iterator, Optional

from msdlib.config import MongoSettings
from msd_pipeline.run_context import RunContext

SCHEMA_VERSION = 1
REPORT_NAMES = ("report.html", "report.md")

JsonReader = Callable[[str], Optional[Dict[str, Any]]]


class MissingOutputError(RuntimeError):
    """A Spark step finished without leaving the output the pipeline needs."""


def build_run_record(run: RunContext, staged: Dict[str, Any], config_uri: str, *,
                     read_json: JsonReader, started_at: Optional[datetime.datetime],
                     target_details: Dict[str, Any],
                     report_exists: Callable[[str], bool],
                     decision: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The run record of ``run``, reading the jobs' outputs: the ingest's when the run
    staged songs, the training's unless param ``train`` is off."""
    ingest = _required(read_json, run.ingest_summary_uri, "ingest summary") \
        if staged is not None else None
    trained = run.trains
    training = _required(read_json, run.train_summary_uri, "training summary") \
        if trained else None
    metrics = _required(read_json, run.metrics_uri, "metrics.json") if trained else None
    return {
        **run.identity(),
        "schema_version": SCHEMA_VERSION,
        "target": run.target,
        "status": "success",
        "started_at": started_at,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc),
        "params": dict(run.params),
        "config": run.config.to_dict(),
        "data": staged,
        "ingest": ingest,
        "training": training,
        "metrics": metrics,
        "imputation": read_json(run.impute_summary_uri) if trained else None,
        "decision": decision,
        "artifacts": {
            "run_uri": run.run_uri,
            "metrics_uri": run.metrics_uri,
            "report_uri": find_report(run.run_uri, training, report_exists)
            if training else None,
            "config_uri": config_uri,
        },
        "target_details": target_details,
    }


def find_report(run_uri: str, training_summary: Dict[str, Any],
                exists: Callable[[str], bool]) -> Optional[str]:
    """The report's location: named by the training summary, else a known file name."""
    for key in ("report_uri", "report_path", "report"):
        value = training_summary.get(key)
        if isinstance(value, str) and value:
            return value
    for name in REPORT_NAMES:
        candidate = run_uri.rstrip("/") + "/" + name
        if exists(candidate):
            return candidate
    return None


def save_run_record(record: Dict[str, Any], mongo: MongoSettings) -> None:
    """Replace-upsert ``record`` through the Airflow connection ``mongo.airflow_conn_id``."""
    with _runs_collection(mongo) as collection:
        collection.replace_one({"_id": record["_id"]}, record, upsert=True)


def set_target_detail(record_id: str, key: str, value: Any, mongo: MongoSettings) -> bool:
    """Set ``target_details.<key>`` of a stored record (the teardown's final cost);
    False when no such record exists."""
    with _runs_collection(mongo) as collection:
        result = collection.update_one({"_id": record_id},
                                       {"$set": {"target_details." + key: value}})
    return result.matched_count > 0


@contextlib.contextmanager
def _runs_collection(mongo: MongoSettings) -> Iterator[Any]:
    """The run records' collection through the Airflow MongoHook."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    with MongoHook(mongo_conn_id=mongo.airflow_conn_id) as hook:
        yield hook.get_collection(mongo.runs_collection, mongo_db=mongo.database)


def summarize(record: Dict[str, Any]) -> Dict[str, Any]:
    """The small, JSON-safe summary pushed to XCom."""
    training = record["training"] or {}
    decision = record.get("decision") or {}
    return {
        "run_record_id": record["_id"],
        "target": record["target"],
        "data_source": (record["data"] or {}).get("source"),
        "ingest": _pick(record["ingest"] or {}, ("files_seen", "files_ingested",
                                                 "files_duplicate", "files_failed",
                                                 "years_out_of_range", "seconds")),
        "decade": _pick(training.get("decade", {}), ("chosen", "test", "baseline")),
        "year": _pick(training.get("year", {}), ("chosen", "test", "baseline")),
        "imputed": (record.get("imputation") or {}).get("imputed"),
        "decision": {"status": decision.get("status"),
                     "challenger": (decision.get("challenger") or {}).get("label"),
                     "reasons": (decision.get("gate") or {}).get("reasons")}
        if decision else None,
        "report_uri": record["artifacts"]["report_uri"],
        "metrics_uri": record["artifacts"]["metrics_uri"],
    }


def _required(read_json: JsonReader, uri: str, what: str) -> Dict[str, Any]:
    value = read_json(uri)
    if value is None:
        raise MissingOutputError("{} not found at {}".format(what, uri))
    return value


def _pick(summary: Dict[str, Any], keys: Any) -> Dict[str, Any]:
    return {key: summary[key] for key in keys if key in summary}
