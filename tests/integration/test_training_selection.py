"""Model selection in a real local Spark: the macro-F1 evaluator (alone and inside
Spark's CrossValidator), the grid strategies and the perceptron in the saved pipeline."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from msdlib.core.models import (DECADE_PREDICTION_COL, FOLD_COL, LABEL_COL, WEIGHT_COL,
                                YEAR_LABEL_COL, SearchSettings, fit_scaler, full_pipeline,
                                scaled_features, task_frame, tune)
from msdlib.core.selection import DecadeEvaluator, grid_search, held_out_folds

COLUMNS = ["a", "b", "c", "d", "constant"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[2]").appName("test-selection") \
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2") \
        .getOrCreate()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def songs(spark):
    """120 rows, 3 classes told apart by feature a and b, three folds, a constant column."""
    rng = np.random.default_rng(3)
    label = np.repeat([0.0, 1.0, 2.0], 40)
    rows = [(float(rng.normal(2 * y, 0.7)), float(rng.normal(-y, 0.7)), float(rng.normal()),
             float(rng.normal()), 1.0, float(y), 1.0, 1990.0 + 5 * float(y), i % 3)
            for i, y in enumerate(label)]
    return spark.createDataFrame(rows, COLUMNS + [LABEL_COL, WEIGHT_COL, YEAR_LABEL_COL,
                                                  FOLD_COL])


def test_evaluator_matches_scikit_learn(spark):
    actual = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2, 0]
    frame = spark.createDataFrame([(float(a), float(p)) for a, p in zip(actual, predicted)],
                                  ["label", "prediction"])
    assert DecadeEvaluator().evaluate(frame) == pytest.approx(
        f1_score(actual, predicted, average="macro"))
    assert DecadeEvaluator(metricName="accuracy").evaluate(frame) == pytest.approx(
        accuracy_score(actual, predicted))
    assert DecadeEvaluator().isLargerBetter()
    with pytest.raises(ValueError, match="unknown metricName"):
        DecadeEvaluator(metricName="f1")


def test_evaluator_drives_sparks_cross_validator(songs):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    frame = VectorAssembler(inputCols=COLUMNS[:4], outputCol="features").transform(songs)
    model = LogisticRegression(labelCol=LABEL_COL, maxIter=20)
    grid = ParamGridBuilder().addGrid(model.regParam, [0.01, 10.0]).build()
    validator = CrossValidator(estimator=model, estimatorParamMaps=grid, numFolds=3,
                               foldCol=FOLD_COL, evaluator=DecadeEvaluator(labelCol=LABEL_COL))
    scores = validator.fit(frame).avgMetrics
    assert scores[0] > 0.7 and scores[0] > scores[1]  # heavy regularisation hurts


class CountingEvaluator(DecadeEvaluator):
    calls = 0

    def _evaluate(self, dataset):
        CountingEvaluator.calls += 1
        return super()._evaluate(dataset)


@pytest.mark.parametrize("strategy, evaluations", [("cv", 3 * 2), ("split", 2)])
def test_grid_strategy_sets_the_held_out_folds(songs, strategy, evaluations):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    frame = VectorAssembler(inputCols=COLUMNS[:4], outputCol="features").transform(songs)
    model = LogisticRegression(labelCol=LABEL_COL, maxIter=20)
    maps = [{model.regParam: 0.01}, {model.regParam: 10.0}]
    CountingEvaluator.calls = 0
    scores, best, refit = grid_search(model, maps, CountingEvaluator(labelCol=LABEL_COL), frame,
                                      FOLD_COL, held_out_folds(strategy, 3), parallelism=2)
    assert CountingEvaluator.calls == evaluations
    assert best == 0 and len(scores) == 2
    assert refit.getRegParam() == 0.01


def test_perceptron_layers_fit_the_kept_features_and_the_saved_pipeline_scores_raw_rows(
        songs):
    used = COLUMNS[:4]  # "constant" dropped, as the job drops constant columns
    scaler = fit_scaler(songs, used)
    scaled = scaled_features(songs, used, scaler, [LABEL_COL, WEIGHT_COL, FOLD_COL])
    search = SearchSettings(folds=[0, 1, 2], parallelism=2, seed=1, weighted=True,
                            decade_metric="macro_f1", layer_ends=(len(used), 3))
    name = "multilayer_perceptron"
    result = tune(name, task_frame(scaled, name),
                  {"hidden_layers": [[6], [8, 4]], "maxIter": [50]}, search)
    assert result.model.getLayers() in ([4, 6, 3], [4, 8, 4, 3])
    assert [point["params"]["layers"][0] for point in result.grid_scores] == [4, 4]
    assert result.cv_score > 0.7
    pipeline = full_pipeline(name, used, scaler, result.model)
    predicted = pipeline.transform(songs.select(*COLUMNS, LABEL_COL))
    assert DecadeEvaluator(labelCol=LABEL_COL, predictionCol=DECADE_PREDICTION_COL) \
        .evaluate(predicted) > 0.7
