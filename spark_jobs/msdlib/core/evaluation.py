"""Test-split metrics from small aggregates.

Spark reduces the predictions to a confusion table (one row per actual/predicted pair)
and to five regression sums; only those few numbers reach the driver, where the pure
functions below turn them into metrics. The baselines are scored the same way: the
majority decade of the training split and the training split's mean year, applied to
the test split.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import math
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

Confusion = Dict[Tuple[int, int], int]


def confusion_matrix(confusion: Mapping[Tuple[int, int], float],
                     labels: Sequence[int]) -> List[List[float]]:
    """Rows are actual labels, columns predicted labels, in ``labels`` order."""
    return [[confusion.get((actual, predicted), 0) for predicted in labels]
            for actual in labels]


def classification_metrics(confusion: Mapping[Tuple[int, int], float],
                           labels: Sequence[int]) -> Dict[str, Any]:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1/support.

    A class never predicted has precision 0; one absent from the actuals has recall 0
    and support 0 (it counts in the macro average, not in the weighted one).
    """
    matrix = confusion_matrix(confusion, labels)
    total = sum(sum(row) for row in matrix)
    if total == 0:
        raise ValueError("no predictions to evaluate")
    per_class = {}
    for index, label in enumerate(labels):
        true_positive = matrix[index][index]
        support = sum(matrix[index])
        predicted = sum(row[index] for row in matrix)
        precision = _ratio(true_positive, predicted)
        recall = _ratio(true_positive, support)
        per_class[str(label)] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": support,
        }
    correct = sum(matrix[i][i] for i in range(len(labels)))
    return {
        "count": total,
        "accuracy": correct / total,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels),
        "weighted_f1": sum(c["f1"] * c["support"] for c in per_class.values()) / total,
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": matrix,
    }


def regression_metrics(count: float, sum_abs_error: float, sum_sq_error: float,
                       sum_actual: float, sum_sq_actual: float) -> Dict[str, float]:
    """MAE, RMSE and R² from sums over the evaluated rows.

    R² = 1 - SSE / SST with SST = Σy² - (Σy)²/n; a constant actual (SST = 0) gives R² 0.
    """
    if count <= 0:
        raise ValueError("no predictions to evaluate")
    total_sq = sum_sq_actual - sum_actual * sum_actual / count
    return {
        "count": count,
        "mae": sum_abs_error / count,
        "rmse": math.sqrt(sum_sq_error / count),
        "r2": 1.0 - sum_sq_error / total_sq if total_sq > 0 else 0.0,
    }


def majority_baseline(train_counts: Mapping[int, int],
                      test_counts: Mapping[int, int],
                      labels: Sequence[int]) -> Dict[str, Any]:
    """Metrics of always predicting the training split's most frequent class.

    Ties go to the smaller label, so the baseline is deterministic.
    """
    majority = min(train_counts, key=lambda label: (-train_counts[label], label))
    confusion = {(label, majority): count for label, count in test_counts.items()}
    metrics = classification_metrics(confusion, labels)
    metrics["predicted_label"] = majority
    return metrics


def macro_f1(confusion: Mapping[Tuple[int, int], float]) -> float:
    """Unweighted mean F1 over the classes that occur as actual or predicted labels
    (scikit-learn's ``f1_score(average="macro")``)."""
    labels = sorted({label for pair in confusion for label in pair})
    return classification_metrics(confusion, labels)["macro_f1"]


def accuracy(confusion: Mapping[Tuple[int, int], float]) -> float:
    total = sum(confusion.values())
    if total == 0:
        raise ValueError("no predictions to evaluate")
    return sum(count for (actual, predicted), count in confusion.items()
               if actual == predicted) / total


CLASSIFICATION_SCORES = {"macro_f1": macro_f1, "accuracy": accuracy}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


# --- Spark-side aggregation (imports pyspark lazily: the functions above stay pure) ---

def spark_confusion(predictions: Any, label_col: str = "label",
                    prediction_col: str = "prediction") -> Confusion:
    """The confusion table of a predictions DataFrame: at most classes² small rows."""
    rows = predictions.groupBy(label_col, prediction_col).count().collect()
    return {(int(row[label_col]), int(row[prediction_col])): int(row["count"])
            for row in rows}


def spark_regression_sums(predictions: Any, actual_col: str,
                          prediction_col: str) -> Tuple[float, float, float, float, float]:
    """(n, Σ|e|, Σe², Σy, Σy²) of a predictions DataFrame, in one aggregation."""
    from pyspark.sql import functions as F

    error = F.col(prediction_col) - F.col(actual_col)
    row = predictions.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.abs(error)).alias("abs"),
        F.sum(error * error).alias("sq"),
        F.sum(F.col(actual_col)).alias("y"),
        F.sum(F.col(actual_col) * F.col(actual_col)).alias("y2"),
    ).first()
    return (float(row["n"]), float(row["abs"] or 0.0), float(row["sq"] or 0.0),
            float(row["y"] or 0.0), float(row["y2"] or 0.0))


def spark_regression_metrics(predictions: Any, actual_col: str,
                             prediction_col: str) -> Dict[str, float]:
    return regression_metrics(*spark_regression_sums(predictions, actual_col, prediction_col))


def spark_class_counts(frame: Any, label_col: str = "label") -> Dict[int, int]:
    return {int(row[label_col]): int(row["count"])
            for row in frame.groupBy(label_col).count().collect()}


def counts_from_pairs(pairs: Iterable[Tuple[int, int]]) -> Confusion:
    """Count (actual, predicted) pairs: the pure twin of ``spark_confusion``."""
    counts = {}  # type: Confusion
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return counts
