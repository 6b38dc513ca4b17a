"""Scoring the current champion on the challenger's evaluation split.

The training job, given the champion's run folder (``--champion-uri``, a local path or
s3:// URI as registered in the model registry), loads the decade and year
PipelineModels that the folder's metrics.json names and scores them on the very test
frame the challenger is scored on. The champion's predicted decades are mapped through
the challenger's decade merging, so both models are judged against the same classes; a
decade the challenger does not know counts as a wrong prediction.

A champion that cannot be scored (missing files, features it needs that the songs no
longer have) yields ``{"uri", "error"}``: the gate then keeps the champion.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import json
from typing import Any, Dict, Mapping, Sequence

from msdlib.core.evaluation import classification_metrics, spark_regression_metrics
from msdlib.core.models import PREDICTED_DECADE_COL, YEAR_LABEL_COL, YEAR_PREDICTION_COL
from msdlib.io.sources import is_s3, read_bytes

UNKNOWN_DECADE = -1


def model_location(run_uri: str, model_dir: str) -> str:
    """Where Spark loads a model of a run folder from (local paths as file:// URIs)."""
    location = run_uri.rstrip("/") + "/" + model_dir
    return location if is_s3(location) else "file://" + location


def read_run_metrics(run_uri: str) -> Dict[str, Any]:
    return json.loads(read_bytes(run_uri.rstrip("/") + "/metrics.json").decode("utf-8"))


def load_run_models(run_uri: str) -> Dict[str, Any]:
    """The run's metrics.json and its decade and year PipelineModels."""
    from pyspark.ml import PipelineModel

    metrics = read_run_metrics(run_uri)
    return {"metrics": metrics,
            "decade": PipelineModel.load(model_location(run_uri, metrics["decade"]["model_dir"])),
            "year": PipelineModel.load(model_location(run_uri, metrics["year"]["model_dir"]))}


def decade_macro_f1(confusion: Mapping[Any, int], classes: Sequence[int]) -> Dict[str, float]:
    """Accuracy and macro-F1 over ``classes``; predictions outside them (UNKNOWN_DECADE)
    count as errors without adding a class to the average."""
    labels = list(classes) + [UNKNOWN_DECADE]
    metrics = classification_metrics(confusion, labels)
    macro = sum(metrics["per_class"][str(c)]["f1"] for c in classes) / len(classes)
    return {"accuracy": metrics["accuracy"], "macro_f1": macro}


def score_champion(champion_uri: str, test: Any, classes: Sequence[int],
                   mapping: Mapping[int, int]) -> Dict[str, Any]:
    """The champion's decade macro-F1 and year RMSE/MAE on ``test`` (the challenger's
    test frame, with the raw ``decade`` and ``year_label`` columns)."""
    from pyspark.sql import functions as F

    try:
        champion = load_run_models(champion_uri)
        merged = F.create_map([F.lit(x) for pair in sorted(mapping.items()) for x in pair])
        predicted = F.col(PREDICTED_DECADE_COL).cast("int")
        decade_pairs = champion["decade"].transform(test).select(
            merged[F.col("decade")].alias("actual"),
            F.coalesce(merged[predicted], predicted).alias("predicted"))
        known = F.col("predicted").isin([int(c) for c in classes])
        rows = decade_pairs.select(
            "actual", F.when(known, F.col("predicted")).otherwise(UNKNOWN_DECADE)
            .alias("predicted")).groupBy("actual", "predicted").count().collect()
        confusion = {(int(row["actual"]), int(row["predicted"])): int(row["count"])
                     for row in rows}
        year = spark_regression_metrics(champion["year"].transform(test), YEAR_LABEL_COL,
                                        YEAR_PREDICTION_COL)
    except Exception as exc:  # noqa: BLE001 - any failure means "not comparable"
        return {"uri": champion_uri, "error": "{}: {}".format(type(exc).__name__,
                                                               str(exc).splitlines()[0][:500])}
    return {"uri": champion_uri, "run_id": champion["metrics"].get("run_id"),
            "decade": dict(decade_macro_f1(confusion, classes),
                           chosen=champion["metrics"]["decade"]["chosen"]),
            "year": {"rmse": year["rmse"], "mae": year["mae"],
                     "chosen": champion["metrics"]["year"]["chosen"]}}
