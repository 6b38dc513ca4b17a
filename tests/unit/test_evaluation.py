"""Metrics on tiny sets small enough to check by hand."""
import math

import pytest

from msdlib.core.evaluation import (accuracy, classification_metrics, confusion_matrix,
                                    counts_from_pairs, macro_f1, majority_baseline,
                                    regression_metrics)

# actual → predicted, 3 classes, 6 songs:
# 1990: 1990, 1990, 2000   2000: 2000, 1990   2010: 2010
PAIRS = [(1990, 1990), (1990, 1990), (1990, 2000), (2000, 2000), (2000, 1990), (2010, 2010)]
LABELS = [1990, 2000, 2010]


def test_confusion_matrix_rows_are_actual_columns_predicted():
    assert confusion_matrix(counts_from_pairs(PAIRS), LABELS) == [
        [2, 1, 0],
        [1, 1, 0],
        [0, 0, 1],
    ]


def test_classification_metrics_by_hand():
    metrics = classification_metrics(counts_from_pairs(PAIRS), LABELS)
    # 1990: P = 2/3, R = 2/3, F1 = 2/3; 2000: P = 1/2, R = 1/2, F1 = 1/2; 2010: 1, 1, 1.
    per_class = metrics["per_class"]
    assert per_class["1990"]["precision"] == pytest.approx(2 / 3)
    assert per_class["1990"]["recall"] == pytest.approx(2 / 3)
    assert per_class["2000"]["f1"] == pytest.approx(0.5)
    assert per_class["2010"]["f1"] == pytest.approx(1.0)
    assert [per_class[str(c)]["support"] for c in LABELS] == [3, 2, 1]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert metrics["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1 * 1.0) / 6)
    assert metrics["count"] == 6


def test_class_never_predicted_or_absent_scores_zero():
    metrics = classification_metrics({(1990, 1990): 2, (2000, 1990): 2}, [1990, 2000, 2010])
    assert metrics["per_class"]["2000"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                            "support": 2}
    assert metrics["per_class"]["2010"]["support"] == 0
    # 1990: P = 1/2, R = 1 → F1 = 2/3; the absent class counts in the macro mean only.
    assert metrics["macro_f1"] == pytest.approx((2 / 3) / 3)
    assert metrics["weighted_f1"] == pytest.approx(2 * (2 / 3) / 4)


def test_empty_confusion_is_an_error():
    with pytest.raises(ValueError):
        classification_metrics({}, LABELS)


def test_regression_metrics_by_hand():
    actual = [1990.0, 2000.0, 2010.0]
    predicted = [1992.0, 1998.0, 2010.0]
    errors = [p - a for a, p in zip(actual, predicted)]
    metrics = regression_metrics(len(actual), sum(abs(e) for e in errors),
                                 sum(e * e for e in errors), sum(actual),
                                 sum(a * a for a in actual))
    assert metrics["mae"] == pytest.approx(4 / 3)
    assert metrics["rmse"] == pytest.approx(math.sqrt(8 / 3))
    # SST = 100 + 0 + 100 = 200, SSE = 8.
    assert metrics["r2"] == pytest.approx(1 - 8 / 200)


def test_mean_prediction_has_zero_r2():
    actual = [1990.0, 2010.0]
    metrics = regression_metrics(2, 20.0, 200.0, sum(actual), sum(a * a for a in actual))
    assert metrics["r2"] == pytest.approx(0.0)
    assert metrics["mae"] == pytest.approx(10.0)


def test_majority_baseline_predicts_training_majority():
    baseline = majority_baseline({1990: 5, 2000: 9, 2010: 1}, {1990: 3, 2000: 2, 2010: 1},
                                 LABELS)
    assert baseline["predicted_label"] == 2000
    assert baseline["accuracy"] == pytest.approx(2 / 6)
    # 2000: P = 2/6, R = 1 → F1 = 0.5; the other classes 0.
    assert baseline["macro_f1"] == pytest.approx(0.5 / 3)


def test_majority_baseline_tie_goes_to_smaller_label():
    baseline = majority_baseline({1990: 4, 2000: 4}, {1990: 1, 2000: 1}, [1990, 2000])
    assert baseline["predicted_label"] == 1990


def test_macro_f1_is_unweighted_mean_over_classes_seen():
    from sklearn.metrics import f1_score

    actual = [0, 0, 0, 0, 1, 1, 2, 3, 3, 3]
    predicted = [0, 0, 1, 2, 1, 0, 2, 3, 0, 1]
    assert macro_f1(counts_from_pairs(zip(actual, predicted))) == pytest.approx(
        f1_score(actual, predicted, average="macro"))


def test_macro_f1_counts_a_class_only_predicted():
    # class 5 never occurs but is predicted once: F1 0 pulls the mean down, as in sklearn
    confusion = {(0, 0): 3, (1, 1): 2, (1, 5): 1}
    assert macro_f1(confusion) == pytest.approx((1.0 + 0.8 + 0.0) / 3)


def test_majority_guess_has_high_accuracy_and_low_macro_f1():
    confusion = {(0, 0): 8, (1, 0): 1, (2, 0): 1}
    assert accuracy(confusion) == pytest.approx(0.8)
    assert macro_f1(confusion) == pytest.approx((2 * 0.8 / 1.8) / 3)
    with pytest.raises(ValueError):
        accuracy({})
