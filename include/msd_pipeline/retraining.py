"""What the graph's retraining tasks do (Airflow side): find the champion, register a
training run as the challenger, apply the gate, record the decision, promote.

The tasks of ``msd_pipeline.graph`` call these (through ``msd_pipeline.tasks``); the Spark
jobs never see MLflow.
"""
import json
import logging
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional

from msdlib.config import PipelineConfig
from msd_pipeline import decisions, registry
from msd_pipeline.gate import GateSettings, decide_from_metrics
from msd_pipeline.run_context import RunContext
from msd_pipeline.targets.base import RunFiles

log = logging.getLogger(__name__)

NO_MODEL = {"version": "", "artifacts_uri": "", "run_key": "", "decade_model": "",
            "year_model": "", "label": ""}
# Files of a run folder logged to MLflow when the folder is remote (the whole folder
# is logged when it is local).
REMOTE_FILES = ("metrics.json", "report.md", "train_summary.json")


def gate_settings(config: PipelineConfig) -> GateSettings:
    retraining = config.retraining
    return GateSettings(retraining.year_rmse_margin, retraining.decade_f1_tolerance,
                        retraining.require_approval)


def mlflow_client(config: PipelineConfig) -> Any:
    return registry.client(registry.tracking_uri(config.retraining.tracking_uri))


def current_champion(config: PipelineConfig) -> Dict[str, str]:
    """The champion's ModelRef as a dict, or NO_MODEL's empty fields."""
    ref = registry.resolve_alias(registry.CHAMPION, mlflow_client(config))
    return ref.to_dict() if ref else dict(NO_MODEL)


def register_and_decide(run: RunContext, files: RunFiles,
                        champion: Mapping[str, str], *, run_type: str,
                        dag_version_id: Optional[str],
                        asset_events: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Log and register the run's models as the challenger, apply the gate, store the
    decision record; returns it (JSON-safe fields only)."""
    text = files.read_text(run.metrics_uri)
    if text is None:
        raise FileNotFoundError("metrics.json not found at " + run.metrics_uri)
    metrics = json.loads(text)
    client = mlflow_client(run.config)
    lineage = {"dag_id": run.dag_id, "airflow_run_id": run.airflow_run_id,
               "target": run.target}
    with tempfile.TemporaryDirectory(prefix="msd-mlflow-") as scratch:
        folder = _local_run_folder(run.run_uri, metrics, files, scratch)
        mlflow_run_id = registry.log_training_run(client, run.run_uri, metrics, folder,
                                                  lineage)
    challenger = registry.register_challenger(client, run.run_uri, metrics, mlflow_run_id)
    decision = decide_from_metrics(metrics, gate_settings(run.config))
    record = decisions.build_decision_record(
        run, metrics, decision,
        dict(challenger.to_dict(), mlflow_run_id=mlflow_run_id),
        dict(champion) if champion.get("version") else None,
        run_type=run_type, dag_version_id=dag_version_id, asset_events=asset_events)
    decisions.save_decision(record, run.config.mongo)
    record = _json_safe(record)
    registry.record_decision(client, mlflow_run_id, record)
    for reason in decision.reasons:
        log.info("gate: %s", reason)
    log.info("Decision for %s (version %s): %s", run.run_key, challenger.version,
             record["status"])
    return record


def promote(run: RunContext, record: Mapping[str, Any]) -> Dict[str, Any]:
    version = record["challenger"]["version"]
    moved = registry.promote(mlflow_client(run.config), version)
    decisions.set_status(record["_id"], decisions.PROMOTED, run.config.mongo, aliases=moved)
    log.info("Promoted %s/%s to champion (previous: %s)", registry.MODEL_NAME, version,
             moved["previous"])
    return moved


def close_decision(run: RunContext, record: Optional[Mapping[str, Any]],
                   promoted: bool, approval: Optional[Mapping[str, Any]]) -> None:
    """A promotion that waited for approval: promoted, or rejected by the approver (or
    the timeout); the approver's answer joins the record either way."""
    if record and record["status"] == decisions.AWAITING_APPROVAL:
        decisions.set_status(
            record["_id"], decisions.PROMOTED if promoted else decisions.REJECTED_BY_APPROVER,
            run.config.mongo, approval=decisions.approval_answer(approval))


def _local_run_folder(run_uri: str, metrics: Mapping[str, Any], files: RunFiles,
                      scratch: str) -> str:
    """The run folder itself when local, else the report, metrics and plots fetched into
    ``scratch``."""
    if os.path.isdir(run_uri):
        return run_uri
    names = list(REMOTE_FILES) + sorted(
        value for value in (metrics.get("plots") or {}).values() if isinstance(value, str))
    for name in names:
        data = files.read_bytes(run_uri.rstrip("/") + "/" + name)
        if data is None:
            continue
        path = os.path.join(scratch, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return scratch


def _json_safe(record: Mapping[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps(record, default=str))
