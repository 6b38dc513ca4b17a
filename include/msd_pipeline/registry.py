"""The model registry: MLflow, one registered model ``msd-song-year``.

Each training run becomes one MLflow run (its params, test metrics, plots, report and
metrics.json) and one model version. A version's tag ``artifacts_uri`` is the training
run's folder (local path or s3:// URI) holding ``metrics.json`` and the Spark
PipelineModels it names; its ``source`` is that folder when it is on S3, else the copy
logged in the MLflow run (``runs:/<id>/run``: the server accepts local sources only
inside a run's artifacts). Aliases:

* ``challenger``: the latest registered version;
* ``champion``: the version in service (imputation and the prediction service);
* ``previous``: the champion it replaced, the target of a rollback.

Promotion tags the new champion with ``replaced_version`` so that rollbacks can walk
back more than one step. The Spark jobs never import MLflow (EMR's Python 3.9 cannot
run it): Airflow tasks and this module's CLI do the registering.

    python -m msd_pipeline.registry show
    python -m msd_pipeline.registry rollback
    python -m msd_pipeline.registry promote VERSION
"""
import argparse
import datetime
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

MODEL_NAME = "msd-song-year"
EXPERIMENT_NAME = "msd-song-year"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"
LOGGED_RUN_FOLDER = "run"


class RegistryError(RuntimeError):
    """An alias move that cannot be done (e.g. a rollback with no previous champion)."""


@dataclass(frozen=True)
class ModelRef:
    """One registered version: what imputation and the prediction service need."""
    version: str
    artifacts_uri: str
    run_key: str
    decade_model: str
    year_model: str

    @property
    def label(self) -> str:
        """How predictions name the model they came from: ``msd-song-year/<version>``."""
        return "{}/{}".format(MODEL_NAME, self.version)

    def to_dict(self) -> Dict[str, str]:
        return dict(asdict(self), label=self.label)


def tracking_uri(configured: str = "") -> str:
    """$MLFLOW_TRACKING_URI, else ``configured`` (retraining.tracking_uri), else the
    embedded server on 127.0.0.1:5000."""
    return os.environ.get(TRACKING_URI_ENV) or configured or DEFAULT_TRACKING_URI


def client(uri: Optional[str] = None) -> Any:
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def resolve_alias(alias: str = CHAMPION, mlflow_client: Any = None) -> Optional[ModelRef]:
    """The version behind ``alias``, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    mlflow_client = mlflow_client or client()
    try:
        version = mlflow_client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _ref(version)


def aliases(mlflow_client: Any = None) -> Dict[str, Optional[ModelRef]]:
    mlflow_client = mlflow_client or client()
    return {alias: resolve_alias(alias, mlflow_client) for alias in ALIASES}


def _ref(version: Any) -> ModelRef:
    tags = version.tags or {}
    return ModelRef(version=str(version.version),
                    artifacts_uri=tags.get("artifacts_uri", version.source),
                    run_key=tags.get("run_key", ""), decade_model=tags.get("decade_model", ""),
                    year_model=tags.get("year_model", ""))


def log_training_run(mlflow_client: Any, run_uri: str, metrics: Mapping[str, Any],
                     local_dir: str, lineage: Mapping[str, str]) -> str:
    """One MLflow run for a training run: params, test metrics, and the files of
    ``local_dir`` (the run folder or the part of it fetched from S3). Returns its id."""
    from mlflow.entities import Metric, Param, RunTag

    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT_NAME)
    experiment_id = experiment.experiment_id if experiment else \
        mlflow_client.create_experiment(EXPERIMENT_NAME)
    run_key = str(metrics["run_id"])
    run = mlflow_client.create_run(experiment_id, run_name=run_key, tags={
        "artifacts_uri": run_uri, "run_key": run_key, **lineage})
    run_id = run.info.run_id
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(key, value, now, 0) for key, value in run_metrics(metrics).items()],
        params=[Param(key, value) for key, value in run_params(metrics).items()],
        tags=[RunTag("split_hash", str(metrics.get("evaluation_split", {}).get("hash", "")))])
    mlflow_client.log_artifacts(run_id, local_dir, LOGGED_RUN_FOLDER)
    mlflow_client.set_terminated(run_id)
    return run_id


def run_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """Flat MLflow metrics: the chosen models', the baselines' and the champion's."""
    decade, year = metrics["decade"], metrics["year"]
    flat = {}  # type: Dict[str, float]
    for prefix, scores in (("decade", decade["test"]), ("decade_baseline", decade["baseline"])):
        for name in ("accuracy", "macro_f1", "weighted_f1"):
            if name in scores:
                flat["{}_{}".format(prefix, name)] = float(scores[name])
    for prefix, scores in (("year", year["test"]), ("year_baseline", year["baseline"])):
        for name in ("mae", "rmse", "r2"):
            if name in scores:
                flat["{}_{}".format(prefix, name)] = float(scores[name])
    champion = metrics.get("champion")
    if champion:
        flat["champion_decade_macro_f1"] = float(champion["decade"]["macro_f1"])
        flat["champion_year_rmse"] = float(champion["year"]["rmse"])
    return flat


def run_params(metrics: Mapping[str, Any]) -> Dict[str, str]:
    """Flat MLflow params: the training settings and the chosen models."""
    params = {"decade_model": metrics["decade"]["chosen"],
              "year_model": metrics["year"]["chosen"]}
    for key, value in sorted(metrics.get("training_settings", {}).items()):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        params["training." + key] = text[:6000]
    return params


def record_decision(mlflow_client: Any, mlflow_run_id: str, record: Mapping[str, Any]) -> None:
    """The gate's decision on the training run's MLflow run: tags and decision.json."""
    mlflow_client.set_tag(mlflow_run_id, "decision", str(record["status"]))
    mlflow_client.set_tag(mlflow_run_id, "decision_reasons",
                          "; ".join(record["gate"]["reasons"])[:5000])
    mlflow_client.log_dict(mlflow_run_id, dict(record), "decision.json")


def log_report(mlflow_client: Any, mlflow_run_id: str, name: str, report: str) -> None:
    """Replace the report ``name`` logged with the training run (now with the decision)."""
    mlflow_client.log_text(mlflow_run_id, report, LOGGED_RUN_FOLDER + "/" + name)


def register_challenger(mlflow_client: Any, run_uri: str, metrics: Mapping[str, Any],
                        mlflow_run_id: str) -> ModelRef:
    """A new version of ``msd-song-year`` for the run; alias ``challenger`` moves to it."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(MODEL_NAME, description=(
            "Decade classifier + year regressor of one training run (Spark PipelineModels)"))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = run_uri if run_uri.startswith("s3://") else \
        "runs:/{}/{}".format(mlflow_run_id, LOGGED_RUN_FOLDER)
    version = mlflow_client.create_model_version(
        MODEL_NAME, source, run_id=mlflow_run_id, tags={
            "artifacts_uri": run_uri, "run_key": str(metrics["run_id"]),
            "decade_model": metrics["decade"]["model_dir"],
            "year_model": metrics["year"]["model_dir"],
            "split_hash": str(metrics.get("evaluation_split", {}).get("hash", ""))})
    mlflow_client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version.version)
    return _ref(version)


def promote(mlflow_client: Any, version: str) -> Dict[str, Optional[str]]:
    """Make ``version`` the champion; the champion it replaces becomes ``previous``."""
    current = resolve_alias(CHAMPION, mlflow_client)
    if current is not None and current.version == str(version):
        return {"champion": current.version, "previous": _version_of(PREVIOUS, mlflow_client)}
    if current is not None:
        mlflow_client.set_registered_model_alias(MODEL_NAME, PREVIOUS, current.version)
        mlflow_client.set_model_version_tag(MODEL_NAME, str(version), "replaced_version",
                                            current.version)
    mlflow_client.set_model_version_tag(MODEL_NAME, str(version), "promoted_at", _now())
    mlflow_client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))
    return {"champion": str(version), "previous": current.version if current else None}


def rollback(mlflow_client: Any) -> Dict[str, Optional[str]]:
    """Move ``champion`` back to ``previous``; ``previous`` moves one step further back
    (the version the restored champion had replaced), or is removed."""
    current = resolve_alias(CHAMPION, mlflow_client)
    previous = resolve_alias(PREVIOUS, mlflow_client)
    if previous is None:
        raise RegistryError("no '{}' alias on {}: nothing to roll back to".format(
            PREVIOUS, MODEL_NAME))
    restored = mlflow_client.get_model_version(MODEL_NAME, previous.version)
    older = (restored.tags or {}).get("replaced_version")
    mlflow_client.set_registered_model_alias(MODEL_NAME, CHAMPION, previous.version)
    if current is not None:
        mlflow_client.set_model_version_tag(MODEL_NAME, current.version, "rolled_back_at",
                                            _now())
    rolled_back = current.version if current else None
    new_previous = older if older and older != rolled_back else None
    if new_previous:
        mlflow_client.set_registered_model_alias(MODEL_NAME, PREVIOUS, new_previous)
    else:
        mlflow_client.delete_registered_model_alias(MODEL_NAME, PREVIOUS)
    return {"champion": previous.version, "previous": new_previous, "rolled_back": rolled_back}


def _version_of(alias: str, mlflow_client: Any) -> Optional[str]:
    ref = resolve_alias(alias, mlflow_client)
    return ref.version if ref else None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msd_pipeline.registry",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["show", "rollback", "promote"])
    parser.add_argument("version", nargs="?", help="the version to promote")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking server (default: $MLFLOW_TRACKING_URI, else "
                             + DEFAULT_TRACKING_URI + ")")
    args = parser.parse_args(argv)
    mlflow_client = client(args.tracking_uri or tracking_uri())
    try:
        if args.action == "rollback":
            result = rollback(mlflow_client)  # type: Any
        elif args.action == "promote":
            if not args.version:
                parser.error("promote needs a VERSION")
            result = promote(mlflow_client, args.version)
        else:
            result = {alias: ref.to_dict() if ref else None
                      for alias, ref in aliases(mlflow_client).items()}
    except RegistryError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
