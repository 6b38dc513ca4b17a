"""Labels, class weights and the Spark ML models the training job tunes.

The features are assembled (VectorAssembler over the kept feature columns, in documented
order) and standardised (StandardScaler) ONCE per run, on the training split: every grid
point and fold fits the estimator alone on that cached vector. The saved model is the
full PipelineModel (``full_pipeline``): assembler → the fitted scaler → estimator, so it
scores raw feature columns. Column names carry the task ("decade_*", "year_*") so the
decade and year models can run one after the other on the same DataFrame.

Decade classification:
* ``logistic_regression`` (multinomial) and ``random_forest_classifier``: the tutorial's.
* ``multilayer_perceptron``: Spark's distributed MultilayerPerceptronClassifier (the
  stand-in for a Keras/Elephas network: no extra framework on EMR). Its grid key
  ``hidden_layers`` lists hidden layer sizes; the input width (features kept after
  constant columns are dropped) and the output width (decade classes) are added at fit
  time. It has no weight column in Spark 3.5, so class weighting does not apply to it.
* ``gbt_classifier``: gradient-boosted trees inside OneVsRest (Spark's GBTClassifier is
  binary only): one boosted ensemble per decade per grid point and fold, the costliest
  model by far. Off by default: on the real songs it did not beat logistic regression
  (benchmarks/README.md), so it pays only when its accuracy is worth that cost.
Year regression: ``linear_regression``, ``random_forest_regressor``, ``gbt_regressor``.

``training.accelerator`` "gpu": the ``GPU_MODELS`` come from spark-rapids-ml (cuML on the
executors' GPUs) with the same Spark parameter names, hence the same grids; the perceptron
and GBTs stay pyspark.ml. Each refit model is converted to its pyspark.ml equivalent
(``to_pyspark_model``: spark-rapids-ml's ``cpu()``) before anything scores or saves it, so
the saved PipelineModel is pure pyspark.ml. spark-rapids-ml has no weightCol (setting
one falls back to a CPU fit), so the configuration refuses class weighting with them; its
random forests have no predictionCol (the evaluators read ``prediction_col``).

Rare decades: a decade with fewer than ``training.min_decade_songs`` labelled songs is
merged into the nearest decade that has enough (ties: the one with more songs, then
the later one) rather than dropped: its songs still teach the model and get scored, and
the mapping is reported. At the tails of the MSD (1920s-1940s, 2010s) this folds the
sparse decades into their neighbour.

Class imbalance: with ``training.class_weighting`` each training song weighs
n / (classes x n_class), so every decade carries the same total weight in the loss.
Model selection is unweighted: ``training.decade_selection_metric`` "macro_f1" (every
decade counts equally: rewards rare-decade recall) or "accuracy" (every song counts
equally: rewards the common decades); see msdlib.core.selection.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

CLASSIFIERS = ("logistic_regression", "random_forest_classifier", "multilayer_perceptron",
               "gbt_classifier")
REGRESSORS = ("linear_regression", "random_forest_regressor", "gbt_regressor")
# training.accelerator "gpu": these come from spark-rapids-ml.
GPU_MODELS = ("logistic_regression", "random_forest_classifier", "linear_regression",
              "random_forest_regressor")

LABEL_COL = "decade_label"
WEIGHT_COL = "decade_weight"
DECADE_PREDICTION_COL = "decade_prediction"
PREDICTED_DECADE_COL = "predicted_decade"
YEAR_LABEL_COL = "year_label"
YEAR_PREDICTION_COL = "year_prediction"
FOLD_COL = "fold"
FEATURES_COL = "features"
RAW_FEATURES_COL = "features_raw"
# The perceptron's grid key: hidden layer sizes (Spark's ``layers`` is built at fit time).
HIDDEN_LAYERS = "hidden_layers"


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
        _check_hidden_layers(name, grid.get(HIDDEN_LAYERS))


def _check_hidden_layers(name: str, layers: Any) -> None:
    if layers is None:
        return
    if name != "multilayer_perceptron":
        raise ValueError("training.grids.{}: {} applies to multilayer_perceptron only"
                         .format(name, HIDDEN_LAYERS))
    for hidden in layers:
        if not isinstance(hidden, list) or not all(
                isinstance(size, int) and not isinstance(size, bool) and size > 0
                for size in hidden):
            raise ValueError("training.grids.multilayer_perceptron.{} must list lists of "
                             "positive layer sizes, e.g. [[32], [64, 32]]".format(HIDDEN_LAYERS))


def validate_grid_params(grids: Mapping[str, Mapping[str, Any]], accelerator: str = "cpu") -> None:
    """Reject grid parameters the estimators do not have (needs a running SparkContext:
    estimators are JVM objects)."""
    for name, grid in grids.items():
        target = _grid_target(make_estimator(name, seed=0, weighted=False,
                                             accelerator=accelerator))
        for param in grid:
            if param != HIDDEN_LAYERS and not target.hasParam(param):
                raise ValueError("training.grids.{} has no parameter {!r}".format(name, param))


def make_estimator(name: str, seed: int, weighted: bool, parallelism: int = 1,
                   accelerator: str = "cpu") -> Any:
    """The estimator of model ``name``: pyspark.ml's, or spark-rapids-ml's for the
    GPU_MODELS when ``accelerator`` is "gpu" (same classes, names and parameters)."""
    from pyspark.ml import classification, regression

    gpu = accelerator == "gpu" and name in GPU_MODELS
    if gpu:
        from spark_rapids_ml import classification, regression  # type: ignore[no-redef]
    features = _features_col(name)
    if name in CLASSIFIERS:
        common = {"featuresCol": features, "labelCol": LABEL_COL,
                  "predictionCol": DECADE_PREDICTION_COL,
                  "rawPredictionCol": "decade_raw_prediction"}
        if name == "multilayer_perceptron":  # no weightCol in Spark 3.5
            return classification.MultilayerPerceptronClassifier(
                seed=seed, probabilityCol="decade_probability", **common)
        if weighted:
            common["weightCol"] = WEIGHT_COL
        if name == "logistic_regression":
            return classification.LogisticRegression(
                family="multinomial", probabilityCol="decade_probability", **common)
        if name == "random_forest_classifier":
            return classification.RandomForestClassifier(
                seed=seed, probabilityCol="decade_probability", **_forest_params(common, gpu))
        # OneVsRest reads each inner model's raw predictions from its own rawPredictionCol,
        # which a loaded OneVsRestModel resets to the default (pyspark 4.2): both keep it.
        del common["rawPredictionCol"]
        return classification.OneVsRest(classifier=classification.GBTClassifier(seed=seed),
                                        parallelism=parallelism, **common)
    common = {"featuresCol": features, "labelCol": YEAR_LABEL_COL,
              "predictionCol": YEAR_PREDICTION_COL}
    if name == "linear_regression":
        return regression.LinearRegression(**common)
    if name == "random_forest_regressor":
        return regression.RandomForestRegressor(seed=seed, **_forest_params(common, gpu))
    return regression.GBTRegressor(seed=seed, **common)


def _forest_params(params: Dict[str, Any], gpu: bool) -> Dict[str, Any]:
    """spark-rapids-ml's random forests refuse predictionCol: their models predict into
    ``prediction`` (``prediction_col``) until converted (``to_pyspark_model``)."""
    return {key: value for key, value in params.items() if not (gpu and key == "predictionCol")}


def prediction_col(estimator: Any) -> str:
    """The column ``estimator``'s fitted models predict into, for the evaluators."""
    if estimator.hasParam("predictionCol"):
        return estimator.getOrDefault("predictionCol")
    return "prediction"  # spark-rapids-ml's random forests


def to_pyspark_model(model: Any, name: str) -> Any:
    """A fitted spark-rapids-ml model of model ``name`` as its pyspark.ml equivalent (its
    ``cpu()``: the same coefficients or trees in Spark's own model class), predicting into
    the pipeline's column; a pyspark.ml model as is."""
    if type(model).__module__.startswith("spark_rapids_ml."):
        return model.cpu().setPredictionCol(
            DECADE_PREDICTION_COL if name in CLASSIFIERS else YEAR_PREDICTION_COL)
    return model


def _features_col(name: str) -> str:
    return ("decade" if name in CLASSIFIERS else "year") + "_features"


def _grid_target(estimator: Any) -> Any:
    """The object a grid's parameter names refer to (OneVsRest's inner classifier)."""
    from pyspark.ml.classification import OneVsRest

    return estimator.getClassifier() if isinstance(estimator, OneVsRest) else estimator


# --- features: assembled and scaled once per run, shared by every fit ---

def fit_scaler(train: Any, feature_cols: Sequence[str]) -> Any:
    """StandardScaler (mean 0, variance 1) fitted on the training split's features."""
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    assembled = VectorAssembler(inputCols=list(feature_cols), outputCol=RAW_FEATURES_COL) \
        .transform(train.select(*feature_cols))
    return StandardScaler(inputCol=RAW_FEATURES_COL, outputCol=FEATURES_COL,
                          withMean=True, withStd=True).fit(assembled)


def scaled_features(frame: Any, feature_cols: Sequence[str], scaler: Any,
                    keep: Sequence[str]) -> Any:
    """``frame`` as the FEATURES_COL vector plus the ``keep`` columns (cache the result)."""
    from pyspark.ml.feature import VectorAssembler

    assembled = VectorAssembler(inputCols=list(feature_cols), outputCol=RAW_FEATURES_COL) \
        .transform(frame)
    return scaler.transform(assembled).select(FEATURES_COL, *keep)


def task_frame(scaled: Any, name: str) -> Any:
    """The scaled frame with the feature vector under the model's input column name."""
    return scaled.withColumnRenamed(FEATURES_COL, _features_col(name))


def full_pipeline(name: str, feature_cols: Sequence[str], scaler: Any, model: Any) -> Any:
    """The saved model: VectorAssembler → the fitted scaler → the fitted estimator, on
    the raw feature columns, with the task's column names."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    features = _features_col(name)
    assembler = VectorAssembler(inputCols=list(feature_cols), outputCol=features + "_raw")
    task_scaler = scaler.copy({scaler.inputCol: features + "_raw",
                               scaler.outputCol: features})
    return PipelineModel(stages=[assembler, task_scaler, model])


def param_grid(estimator: Any, grid: Mapping[str, List[Any]],
               layer_ends: Tuple[int, int] = (0, 0)) -> List[Dict[Any, Any]]:
    """Spark ParamMaps for a {param name: [values]} grid; one empty map if no grid.

    The perceptron's ``hidden_layers`` become Spark's ``layers``: the input width (the
    features kept after constant columns are dropped), the hidden sizes, the classes.
    """
    from pyspark.ml.tuning import ParamGridBuilder

    target = _grid_target(estimator)
    builder = ParamGridBuilder()
    for name in sorted(grid):
        if name == HIDDEN_LAYERS:
            inputs, outputs = layer_ends
            builder.addGrid(target.layers, [[inputs] + [int(size) for size in hidden]
                                            + [outputs] for hidden in grid[name]])
            continue
        param = target.getParam(name)
        builder.addGrid(param, [param.typeConverter(value) for value in grid[name]])
    return builder.build()


@dataclass
class CandidateResult:
    """One model family after the grid search, refit on the whole training split."""
    name: str
    cv_metric: str
    cv_score: float
    best_params: Dict[str, Any]
    grid_scores: List[Dict[str, Any]]
    model: Any  # the refit estimator model (on the scaled features)
    seconds: float

    def summary(self) -> Dict[str, Any]:
        return {"name": self.name, "cv_metric": self.cv_metric, "cv_score": self.cv_score,
                "best_params": self.best_params, "grid_scores": self.grid_scores,
                "seconds": round(self.seconds, 3)}


def evaluator_for(name: str, decade_metric: str) -> Tuple[Any, str]:
    """The selection evaluator and the metric's name in reports.

    Classification: ``training.decade_selection_metric`` ("macro_f1": every decade counts
    equally; "accuracy": songs count equally), unweighted. Regression: RMSE.
    """
    from pyspark.ml.evaluation import RegressionEvaluator

    from msdlib.core.selection import DecadeEvaluator

    if name in CLASSIFIERS:
        return (DecadeEvaluator(labelCol=LABEL_COL, predictionCol=DECADE_PREDICTION_COL,
                                metricName=decade_metric), decade_metric)
    return (RegressionEvaluator(labelCol=YEAR_LABEL_COL, predictionCol=YEAR_PREDICTION_COL,
                                metricName="rmse"), "rmse")


@dataclass(frozen=True)
class SearchSettings:
    """How every model family's grid is searched (from [training])."""
    folds: List[int]  # the held-out folds (msdlib.core.selection.held_out_folds)
    parallelism: int
    seed: int
    weighted: bool
    decade_metric: str
    layer_ends: Tuple[int, int] = (0, 0)  # perceptron input width, classes
    accelerator: str = "cpu"  # training.accelerator


def tune(name: str, train: Any, grid: Mapping[str, List[Any]],
         search: SearchSettings) -> CandidateResult:
    """Grid search of one model family on the artist folds of ``FOLD_COL``; ``train``
    holds the scaled features (``task_frame``)."""
    import time

    from msdlib.core.selection import grid_search

    started = time.time()
    estimator = make_estimator(name, search.seed, search.weighted and name in CLASSIFIERS,
                               search.parallelism, search.accelerator)
    param_maps = param_grid(estimator, grid, search.layer_ends)
    evaluator, metric = evaluator_for(name, search.decade_metric)
    evaluator.set(evaluator.predictionCol, prediction_col(estimator))
    scores, best_index, model = grid_search(estimator, param_maps, evaluator, train,
                                            FOLD_COL, search.folds, search.parallelism)
    grid_scores = [{"params": _param_names(param_maps[i]), "score": scores[i]}
                   for i in range(len(scores))]
    return CandidateResult(name=name, cv_metric=metric, cv_score=scores[best_index],
                           best_params=_param_names(param_maps[best_index]),
                           grid_scores=grid_scores, model=to_pyspark_model(model, name),
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
