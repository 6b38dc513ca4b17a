"""Labels, class weights and the Spark ML pipelines the training job cross-validates.

Every pipeline is VectorAssembler (the kept feature columns, in documented order) →
StandardScaler → estimator. Column names carry the task ("decade_*", "year_*") so the
decade and year models can run one after the other on the same DataFrame.

Decade classification:
* ``logistic_regression`` (multinomial) and ``random_forest_classifier``: the tutorial's.
* ``gbt_classifier``: gradient-boosted trees. Spark's GBTClassifier is binary only, so
  it runs inside OneVsRest (one boosted ensemble per decade, highest margin wins); it
  keeps what makes GBT strong on these features (non-linear interactions between timbre
  statistics, no scaling assumptions) and, unlike MultilayerPerceptronClassifier,
  honours the class-weight column.
Year regression: ``linear_regression``, ``random_forest_regressor``, ``gbt_regressor``.

Rare decades: a decade with fewer than ``training.min_decade_songs`` labelled songs is
merged into the nearest decade that has enough (ties: the one with more songs, then
the later one) rather than dropped: its songs still teach the model and get scored, and
the mapping is reported. At the tails of the MSD (1920s-1940s, 2010s) this folds the
sparse decades into their neighbour.

Class imbalance: with ``training.class_weighting`` each training song weighs
n / (classes x n_class), so every decade carries the same total weight in the loss and
in the cross-validation F1.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

CLASSIFIERS = ("logistic_regression", "random_forest_classifier", "gbt_classifier")
REGRESSORS = ("linear_regression", "random_forest_regressor", "gbt_regressor")

LABEL_COL = "decade_label"
WEIGHT_COL = "decade_weight"
DECADE_PREDICTION_COL = "decade_prediction"
PREDICTED_DECADE_COL = "predicted_decade"
YEAR_LABEL_COL = "year_label"
YEAR_PREDICTION_COL = "year_prediction"
FOLD_COL = "fold"


class TrainingError(ValueError):
    """The data cannot support the requested training (the job exits with code 1)."""


def merge_rare_decades(counts: Mapping[int, int], min_songs: int) -> Dict[int, int]:
    """Map every decade to its class decade (itself, or the neighbour it merges into)."""
    kept = [decade for decade, count in counts.items() if count >= min_songs]
    if not kept:
        raise TrainingError(
            "no decade has at least training.min_decade_songs={} labelled songs "
            "(counts: {})".format(min_songs, dict(sorted(counts.items()))))
    return {decade: min(kept, key=lambda k: (abs(k - decade), -counts[k], -k))
            for decade in counts}


def class_weights(train_counts: Mapping[int, int]) -> Dict[int, float]:
    """Balanced weights n / (classes x n_class) for the classes of the training split."""
    total = sum(train_counts.values())
    return {label: total / (len(train_counts) * count)
            for label, count in train_counts.items()}


def check_model_names(classifiers: Sequence[str], regressors: Sequence[str],
                      grids: Mapping[str, Mapping[str, Any]]) -> None:
    """Reject unknown model names and malformed grids (pure: before Spark starts)."""
    if not classifiers or not regressors:
        raise ValueError("training.classifiers and training.regressors must not be empty")
    for name in classifiers:
        if name not in CLASSIFIERS:
            raise ValueError("unknown classifier {!r} in training.classifiers (known: {})"
                             .format(name, ", ".join(CLASSIFIERS)))
    for name in regressors:
        if name not in REGRESSORS:
            raise ValueError("unknown regressor {!r} in training.regressors (known: {})"
                             .format(name, ", ".join(REGRESSORS)))
    for name, grid in grids.items():
        if name not in CLASSIFIERS + REGRESSORS:
            raise ValueError("unknown model {!r} in training.grids".format(name))
        if not isinstance(grid, dict):
            raise ValueError("training.grids.{} must be a table".format(name))
        for param, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError("training.grids.{}.{} must be a non-empty list"
                                 .format(name, param))


def validate_grid_params(grids: Mapping[str, Mapping[str, Any]]) -> None:
    """Reject grid parameters the estimators do not have (needs a running SparkContext:
    estimators are JVM objects)."""
    for name, grid in grids.items():
        target = _grid_target(make_estimator(name, seed=0, weighted=False))
        for param in grid:
            if not target.hasParam(param):
                raise ValueError("training.grids.{} has no parameter {!r}".format(name, param))


def make_estimator(name: str, seed: int, weighted: bool, parallelism: int = 1) -> Any:
    from pyspark.ml import classification, regression

    features = _features_col(name)
    if name in CLASSIFIERS:
        common = {"featuresCol": features, "labelCol": LABEL_COL,
                  "predictionCol": DECADE_PREDICTION_COL,
                  "rawPredictionCol": "decade_raw_prediction"}
        if weighted:
            common["weightCol"] = WEIGHT_COL
        if name == "logistic_regression":
            return classification.LogisticRegression(
                family="multinomial", probabilityCol="decade_probability", **common)
        if name == "random_forest_classifier":
            return classification.RandomForestClassifier(
                seed=seed, probabilityCol="decade_probability", **common)
        # The inner classifier writes the raw prediction column OneVsRest reads.
        inner = classification.GBTClassifier(seed=seed)
        inner.setRawPredictionCol(common["rawPredictionCol"])
        return classification.OneVsRest(classifier=inner, parallelism=parallelism, **common)
    common = {"featuresCol": features, "labelCol": YEAR_LABEL_COL,
              "predictionCol": YEAR_PREDICTION_COL}
    if name == "linear_regression":
        return regression.LinearRegression(**common)
    if name == "random_forest_regressor":
        return regression.RandomForestRegressor(seed=seed, **common)
    return regression.GBTRegressor(seed=seed, **common)


def _features_col(name: str) -> str:
    return ("decade" if name in CLASSIFIERS else "year") + "_features"


def _grid_target(estimator: Any) -> Any:
    """The object a grid's parameter names refer to (OneVsRest's inner classifier)."""
    from pyspark.ml.classification import OneVsRest

    return estimator.getClassifier() if isinstance(estimator, OneVsRest) else estimator


def build_pipeline(name: str, feature_cols: Sequence[str], seed: int, weighted: bool,
                   parallelism: int = 1) -> Tuple[Any, Any]:
    """(Pipeline assembler → scaler → estimator, the estimator)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    features = _features_col(name)
    assembler = VectorAssembler(inputCols=list(feature_cols), outputCol=features + "_raw")
    scaler = StandardScaler(inputCol=features + "_raw", outputCol=features,
                            withMean=True, withStd=True)
    estimator = make_estimator(name, seed, weighted, parallelism)
    return Pipeline(stages=[assembler, scaler, estimator]), estimator


def param_grid(estimator: Any, grid: Mapping[str, List[Any]]) -> List[Dict[Any, Any]]:
    """Spark ParamMaps for a {param name: [values]} grid; one empty map if no grid."""
    from pyspark.ml.tuning import ParamGridBuilder

    target = _grid_target(estimator)
    builder = ParamGridBuilder()
    for name in sorted(grid):
        param = target.getParam(name)
        builder.addGrid(param, [param.typeConverter(value) for value in grid[name]])
    return builder.build()


@dataclass
class CandidateResult:
    """One model family after cross-validation, refit on the whole training split."""
    name: str
    cv_metric: str
    cv_score: float
    best_params: Dict[str, Any]
    grid_scores: List[Dict[str, Any]]
    model: Any  # the refit PipelineModel
    seconds: float

    def summary(self) -> Dict[str, Any]:
        return {"name": self.name, "cv_metric": self.cv_metric, "cv_score": self.cv_score,
                "best_params": self.best_params, "grid_scores": self.grid_scores,
                "seconds": round(self.seconds, 3)}


def evaluator_for(name: str, weighted: bool) -> Tuple[Any, str]:
    """The cross-validation evaluator and the metric's name in reports.

    Classification: F1 with the class weights, i.e. every decade counts equally (close
    to macro F1, which Spark's evaluator does not offer). Regression: RMSE.
    """
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator, RegressionEvaluator

    if name in CLASSIFIERS:
        options = {"labelCol": LABEL_COL, "predictionCol": DECADE_PREDICTION_COL,
                   "metricName": "f1"}
        if weighted:
            options["weightCol"] = WEIGHT_COL
        return (MulticlassClassificationEvaluator(**options),
                "class_weighted_f1" if weighted else "weighted_f1")
    return (RegressionEvaluator(labelCol=YEAR_LABEL_COL, predictionCol=YEAR_PREDICTION_COL,
                                metricName="rmse"), "rmse")


def cross_validate(name: str, train: Any, feature_cols: Sequence[str],
                   grid: Mapping[str, List[Any]], folds: int, parallelism: int, seed: int,
                   weighted: bool) -> CandidateResult:
    """K-fold cross-validation on the artist-disjoint folds of ``FOLD_COL``."""
    import time

    from pyspark.ml.tuning import CrossValidator

    started = time.time()
    pipeline, estimator = build_pipeline(name, feature_cols, seed, weighted, parallelism)
    param_maps = param_grid(estimator, grid)
    evaluator, metric = evaluator_for(name, weighted)
    validator = CrossValidator(estimator=pipeline, estimatorParamMaps=param_maps,
                               evaluator=evaluator, numFolds=folds, foldCol=FOLD_COL,
                               parallelism=parallelism, seed=seed)
    cv_model = validator.fit(train)
    scores = [float(score) for score in cv_model.avgMetrics]
    larger_better = evaluator.isLargerBetter()
    best_index = max(range(len(scores)),
                     key=lambda i: scores[i] if larger_better else -scores[i])
    grid_scores = [{"params": _param_names(param_maps[i]), "score": scores[i]}
                   for i in range(len(scores))]
    return CandidateResult(name=name, cv_metric=metric, cv_score=scores[best_index],
                           best_params=_param_names(param_maps[best_index]),
                           grid_scores=grid_scores, model=cv_model.bestModel,
                           seconds=time.time() - started)


def training_partitions(rows: int, default_parallelism: int, rows_per_partition: int) -> int:
    """Partitions for the training data: one per ``rows_per_partition`` songs, capped."""
    return max(1, min(default_parallelism, -(-rows // max(1, rows_per_partition))))


def choose_best(candidates: Sequence[CandidateResult]) -> CandidateResult:
    """The candidate with the best CV score (RMSE: lowest; F1: highest)."""
    if candidates[0].cv_metric == "rmse":
        return min(candidates, key=lambda c: c.cv_score)
    return max(candidates, key=lambda c: c.cv_score)


def _param_names(param_map: Mapping[Any, Any]) -> Dict[str, Any]:
    return {param.name: value for param, value in sorted(param_map.items(),
                                                         key=lambda item: item[0].name)}


def with_decade_names(model: Any, decades: Sequence[int]) -> Any:
    """Append IndexToString so the saved model outputs the decade itself."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import IndexToString

    to_decade = IndexToString(inputCol=DECADE_PREDICTION_COL, outputCol=PREDICTED_DECADE_COL,
                              labels=[str(decade) for decade in decades])
    return PipelineModel(stages=list(model.stages) + [to_decade])
