"""Model selection on the artist folds: the decade evaluator and the grid search.

Spark ships no macro-F1 evaluator (``MulticlassClassificationEvaluator``'s "f1" is the
support-weighted F1), so ``DecadeEvaluator`` computes it from the predictions'
confusion table (classes² small rows reach the driver): the unweighted mean F1 over the
classes that occur as actual or predicted labels, as scikit-learn's
``f1_score(average="macro")``. It also scores accuracy. It is a regular
``pyspark.ml.evaluation.Evaluator``, usable by CrossValidator and TrainValidationSplit.

``grid_search`` scores every grid point on held-out artist folds and refits the best one
on the whole training split:

* "cv": every fold is held out in turn (k-fold cross-validation);
* "split": fold 0 only is held out (one artist-disjoint train/validation split, k
  times cheaper: the large-data setting);
* "auto": "cv" up to ``training.cv_max_songs`` training songs, "split" above.

Fits run ``training.parallelism`` at a time, across grid points and folds together, on
the cached, already scaled training frame; nothing is re-assembled per fit.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
from typing import Any, List, Sequence, Tuple

from pyspark import keyword_only
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasLabelCol, HasPredictionCol

from msdlib.config import GRID_STRATEGIES
from msdlib.core.evaluation import CLASSIFICATION_SCORES, spark_confusion


def resolve_grid_strategy(strategy: str, train_songs: int, cv_max_songs: int) -> str:
    """"cv" or "split" for a configured strategy and the training split's size."""
    if strategy not in GRID_STRATEGIES:
        raise ValueError("training.grid_strategy must be one of {}, got {!r}".format(
            ", ".join(GRID_STRATEGIES), strategy))
    if strategy == "auto":
        return "cv" if train_songs <= cv_max_songs else "split"
    return strategy


def held_out_folds(strategy: str, folds: int) -> List[int]:
    """The folds scored in turn: all of them for "cv", fold 0 for "split"."""
    return list(range(folds)) if strategy == "cv" else [0]


class DecadeEvaluator(Evaluator, HasLabelCol, HasPredictionCol):
    """Macro-F1 (default) or accuracy of a predictions DataFrame; larger is better."""

    metricName = Param(Params._dummy(), "metricName",
                       "metric name: " + " or ".join(sorted(CLASSIFICATION_SCORES)),
                       typeConverter=TypeConverters.toString)

    @keyword_only
    def __init__(self, *, labelCol: str = "label", predictionCol: str = "prediction",
                 metricName: str = "macro_f1") -> None:
        super().__init__()
        self._setDefault(labelCol="label", predictionCol="prediction", metricName="macro_f1")
        kwargs = self._input_kwargs
        if kwargs.get("metricName", "macro_f1") not in CLASSIFICATION_SCORES:
            raise ValueError("unknown metricName {!r} (known: {})".format(
                kwargs["metricName"], ", ".join(sorted(CLASSIFICATION_SCORES))))
        self._set(**kwargs)

    def getMetricName(self) -> str:
        return self.getOrDefault(self.metricName)

    def _evaluate(self, dataset: Any) -> float:
        confusion = spark_confusion(dataset, self.getLabelCol(), self.getPredictionCol())
        return float(CLASSIFICATION_SCORES[self.getMetricName()](confusion))

    def isLargerBetter(self) -> bool:
        return True


def grid_search(estimator: Any, param_maps: Sequence[Any], evaluator: Any, frame: Any,
                fold_col: str, folds: Sequence[int], parallelism: int
                ) -> Tuple[List[float], int, Any]:
    """(mean score per grid point, best index, best point refit on ``frame``)."""
    from multiprocessing.pool import ThreadPool

    from pyspark.sql import functions as F
    from pyspark.util import inheritable_thread_target

    scores = [[0.0] * len(param_maps) for _ in folds]
    tasks = []
    for row, fold in enumerate(folds):
        models = estimator.fitMultiple(frame.filter(F.col(fold_col) != fold), param_maps)
        validation = frame.filter(F.col(fold_col) == fold)
        tasks += [_scoring_task(models, evaluator, validation, param_maps, scores[row])
                  for _ in param_maps]
    with ThreadPool(max(1, min(parallelism, len(tasks)))) as pool:
        pool.map(lambda task: task(), [inheritable_thread_target(task) for task in tasks])
    means = [sum(row[i] for row in scores) / len(folds) for i in range(len(param_maps))]
    sign = 1.0 if evaluator.isLargerBetter() else -1.0
    best = max(range(len(means)), key=lambda i: sign * means[i])
    return means, best, estimator.fit(frame, param_maps[best])


def _scoring_task(models: Any, evaluator: Any, validation: Any, param_maps: Sequence[Any],
                  scores: List[float]) -> Any:
    """One fit (the next grid point of ``models``, a thread-safe iterator) and its score."""

    def task() -> None:
        index, model = next(models)
        scores[index] = evaluator.evaluate(model.transform(validation, param_maps[index]))

    return task
