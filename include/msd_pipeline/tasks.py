"""What the graph's shared tasks do. ``msd_pipeline.graph`` wires them; each function here
runs inside its task (``context`` is the task's Airflow context) and does one step, with
the run's ``RunContext``."""
import json
import logging
from typing import Any, Dict, Optional

from airflow.sdk.exceptions import AirflowFailException

from msdlib.config import ConfigError, PipelineConfig, load_config, parse_time_overrides
from msd_pipeline import decisions, registry, report_sections, retraining, run_records
from msd_pipeline.params import config_overrides
from msd_pipeline.run_context import RunContext, run_key_for
from msd_pipeline.targets.base import PipelineTarget, RunFiles

log = logging.getLogger(__name__)


def prepare_run(target: PipelineTarget, context: Any) -> RunContext:
    """This run's configuration (the configuration file + the form) and the locations of
    its outputs."""
    params = dict(context["params"])
    overrides = config_overrides(params, target.name)
    fixed = parse_time_overrides(overrides)
    if fixed:  # the DAG was built with the file's values: a run cannot change them
        raise AirflowFailException(
            "invalid run configuration: {} cannot be overridden per run (the DAG file reads "
            "it when Airflow parses it); set it in the configuration file instead".format(
                ", ".join(fixed)))
    try:
        config = load_config(overrides={**overrides, **target.run_overrides()})
    except ConfigError as exc:  # a bad form value: retrying cannot help
        raise AirflowFailException("invalid run configuration: {}".format(exc)) from exc
    artifacts_uri = target.resolve_artifacts_uri(config)
    config = config.with_overrides({"training.artifacts_uri": artifacts_uri})
    run_id = context["run_id"]
    return RunContext(dag_id=context["dag"].dag_id, airflow_run_id=run_id,
                      target=target.name, params=params, config=config,
                      run_uri=artifacts_uri.rstrip("/") + "/" + run_key_for(run_id))


def publish_job_config(target: PipelineTarget, run: RunContext,
                       staged: Optional[Dict[str, Any]]) -> str:
    """Write the job configuration (with the staged source); return its location."""
    config = run.config
    if staged:
        config = config.with_overrides({"ingest.source": staged["source"]})
    location = target.publish_job_config(run, config.to_json())
    log.info("Job configuration for run %s: %s", run.run_key, location)
    return location


def announce_songs(target: PipelineTarget, run: RunContext, outlet_event: Any) -> bool:
    """Fill the `songs` event's extra; True when this run trains on its own songs."""
    summary = read_json(target.files(run), run.ingest_summary_uri) or {}
    outlet_event.extra = decisions.songs_event_extra(run, summary, run.trains)
    log.info("songs event: %s", outlet_event.extra)
    return run.trains


def should_retrain(context: Any) -> bool:
    """False when every `songs` event that triggered the run comes from a pipeline run
    that trains on its own songs (one ingest, one training)."""
    events = decisions.asset_event_summaries(context.get("triggering_asset_events"))
    if decisions.trained_elsewhere(events):
        log.info("Skipping: the %d songs event(s) come from runs that train themselves: %s",
                 len(events), [event["source_run_id"] for event in events])
        return False
    log.info("Retraining (%s run, %d songs event(s))", _value(context["dag_run"].run_type),
             len(events))
    return True


def resolve_champion(run: RunContext) -> Dict[str, str]:
    """The champion's registry version and run folder (empty: no champion yet)."""
    champion = retraining.current_champion(run.config)
    log.info("Champion: %s", champion["label"] or "none yet")
    return champion


def decide(target: PipelineTarget, run: RunContext, champion: Dict[str, str],
           context: Any) -> Dict[str, Any]:
    """Log + register the challenger, apply the gate, store the decision record (also
    pushed to XCom, with the approver's text)."""
    record = retraining.register_and_decide(
        run, target.files(run), champion, run_type=_value(context["dag_run"].run_type),
        dag_version_id=str(getattr(context["ti"], "dag_version_id", "") or ""),
        asset_events=decisions.asset_event_summaries(context.get("triggering_asset_events")))
    context["ti"].xcom_push(key="decision", value=record)
    context["ti"].xcom_push(key="approval_body", value=decisions.approval_body(record))
    return record


def serving_champion(run: RunContext, record: Optional[Dict[str, Any]],
                     promoted: bool, approval: Optional[Dict[str, Any]]
                     ) -> Optional[Dict[str, str]]:
    """Close the decision (with the approver's response, if asked); the champion
    imputation uses (None: imputation skips)."""
    retraining.close_decision(run, record, promoted=promoted, approval=approval)
    serving = retraining.current_champion(run.config)
    if not run.config.training.impute or not serving["version"]:
        log.info("No imputation: %s", "impute is off" if serving["version"]
                 else "no champion yet")
        return None
    return serving


def collect_metrics(target: PipelineTarget, run: RunContext,
                    staged: Optional[Dict[str, Any]], config_uri: str,
                    decision: Optional[Dict[str, Any]], context: Any) -> Dict[str, Any]:
    """Summaries, metrics and the decision → a pipeline_runs record and the report; the
    report's location → the log; a summary → XCom."""
    files = target.files(run)
    stored = decisions.find_decision(decision["_id"], run.config.mongo) if decision else None
    record = run_records.build_run_record(
        run, staged, config_uri, read_json=lambda uri: read_json(files, uri),
        started_at=context["dag_run"].start_date,
        target_details=target.run_record_details(run, context),
        report_exists=lambda uri: files.read_bytes(uri) is not None, decision=stored)
    report_uri = record["artifacts"]["report_uri"]
    cost = record["target_details"].get("cost")
    if cost and report_uri:
        add_cost_to_report(files, report_uri, cost)
    if stored and report_uri:
        add_decision_to_report(files, run.config, report_uri, stored)
    run_records.save_run_record(record, run.config.mongo)
    log.info("Run record %s stored in pipeline_runs", record["_id"])
    log.info("Report: %s", report_uri or "(none written)")
    return run_records.summarize(record)


def add_cost_to_report(files: RunFiles, report_uri: str, cost: Dict[str, Any]) -> None:
    """The target's cost estimate as a section of the report (before the decision's, so
    the copy logged to MLflow carries it too)."""
    report = files.read_text(report_uri)
    if report is not None:
        files.write_text(report_uri, report_sections.with_section(
            report, report_sections.COST_BEGIN, report_sections.COST_END,
            report_sections.cost_section(cost)))


def add_decision_to_report(files: RunFiles, config: PipelineConfig, report_uri: str,
                           record: Dict[str, Any]) -> None:
    """The decision's section in the report, where the run wrote it and in the MLflow run."""
    report = files.read_text(report_uri)
    if report is None:
        return
    updated = decisions.with_report_section(report, decisions.report_section(record))
    files.write_text(report_uri, updated)
    registry.log_report(retraining.mlflow_client(config), record["challenger"]["mlflow_run_id"],
                        report_uri.rstrip("/").rsplit("/", 1)[-1], updated)


def read_json(files: RunFiles, uri: str) -> Optional[Dict[str, Any]]:
    text = files.read_text(uri)
    return json.loads(text) if text is not None else None


def _value(enum_or_str: Any) -> str:
    """``DagRunType.ASSET_TRIGGERED`` → ``"asset_triggered"``."""
    return str(getattr(enum_or_str, "value", enum_or_str))
