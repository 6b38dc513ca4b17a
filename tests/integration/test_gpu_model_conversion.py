"""training.accelerator "gpu" in a real local Spark, without a GPU: spark-rapids-ml's own
``cpu()`` (through msdlib.core.models.to_pyspark_model) on logistic and linear regression
models built from CPU-fitted coefficients gives pyspark.ml models that predict what the
CPU models predict, inside the saved PipelineModel that scoring, serving and imputation
load; and the training job stops with exit 2 when the executors have no GPU.

NOT exercised here (no GPU, no cuML): fitting on a GPU, and the random forests' cpu(),
which rebuilds Spark trees from cuML's fitted forest."""
import sys

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel as SparkLogisticRegressionModel
from pyspark.ml.regression import LinearRegression
from pyspark.ml.regression import LinearRegressionModel as SparkLinearRegressionModel
from spark_rapids_ml.classification import LogisticRegressionModel as GpuLogisticRegressionModel
from spark_rapids_ml.regression import LinearRegressionModel as GpuLinearRegressionModel

from msdlib.core.models import (DECADE_PREDICTION_COL, LABEL_COL, YEAR_LABEL_COL,
                                YEAR_PREDICTION_COL, fit_scaler, full_pipeline,
                                make_estimator, prediction_col, scaled_features, task_frame,
                                to_pyspark_model)

COLUMNS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[2]").appName("test-gpu-conversion") \
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2") \
        .getOrCreate()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def songs(spark):
    rng = np.random.default_rng(5)
    label = np.repeat([0.0, 1.0, 2.0], 30)
    rows = [(float(rng.normal(2 * y, 0.8)), float(rng.normal(-y, 0.8)), float(rng.normal()),
             float(y), 1990.0 + 5 * float(y) + float(rng.normal())) for y in label]
    frame = spark.createDataFrame(rows, COLUMNS + [LABEL_COL, YEAR_LABEL_COL])
    scaler = fit_scaler(frame, COLUMNS)
    return frame, scaler, scaled_features(frame, COLUMNS, scaler, [LABEL_COL, YEAR_LABEL_COL])


def predictions(model, frame, column):
    return [row[column] for row in model.transform(frame).select(column).collect()]


def as_gpu_model(gpu_model, cpu_model):
    """The spark-rapids-ml model carrying the CPU model's column settings (what its fit
    copies from the estimator)."""
    for param in ("featuresCol", "predictionCol", "probabilityCol", "rawPredictionCol"):
        if cpu_model.hasParam(param) and gpu_model.hasParam(param):
            gpu_model._set(**{param: cpu_model.getOrDefault(param)})
    return gpu_model


def test_logistic_regression_converts_to_the_pyspark_model_it_equals(songs, tmp_path):
    frame, scaler, scaled = songs
    train = task_frame(scaled, "logistic_regression")
    cpu = make_estimator("logistic_regression", seed=1, weighted=False).fit(train)
    gpu = as_gpu_model(GpuLogisticRegressionModel(
        coef_=cpu.coefficientMatrix.toArray().tolist(),
        intercept_=cpu.interceptVector.toArray().tolist(),
        classes_=[0.0, 1.0, 2.0], n_cols=len(COLUMNS), dtype="float64", num_iters=1), cpu)
    gpu.setPredictionCol("prediction")  # the conversion gives the pipeline's column back
    converted = to_pyspark_model(gpu, "logistic_regression")
    assert type(converted) is SparkLogisticRegressionModel
    assert converted.getFeaturesCol() == cpu.getFeaturesCol()
    assert predictions(converted, train, DECADE_PREDICTION_COL) == predictions(
        cpu, train, DECADE_PREDICTION_COL)
    saved = str(tmp_path / "decade_model")
    full_pipeline("logistic_regression", COLUMNS, scaler, converted).save(saved)
    loaded = PipelineModel.load(saved)
    assert predictions(loaded, frame, DECADE_PREDICTION_COL) == predictions(
        cpu, train, DECADE_PREDICTION_COL)


def test_linear_regression_converts_to_the_pyspark_model_it_equals(songs, tmp_path):
    frame, scaler, scaled = songs
    train = task_frame(scaled, "linear_regression")
    cpu = make_estimator("linear_regression", seed=1, weighted=False).fit(train)
    gpu = as_gpu_model(GpuLinearRegressionModel(
        coef_=cpu.coefficients.toArray().tolist(), intercept_=cpu.intercept,
        n_cols=len(COLUMNS), dtype="float64"), cpu)
    converted = to_pyspark_model(gpu, "linear_regression")
    assert type(converted) is SparkLinearRegressionModel
    expected = predictions(cpu, train, YEAR_PREDICTION_COL)
    assert predictions(converted, train, YEAR_PREDICTION_COL) == pytest.approx(expected)
    saved = str(tmp_path / "year_model")
    full_pipeline("linear_regression", COLUMNS, scaler, converted).save(saved)
    assert predictions(PipelineModel.load(saved), frame, YEAR_PREDICTION_COL) == \
        pytest.approx(expected)


def test_a_pyspark_model_passes_through_unconverted(songs):
    _, _, scaled = songs
    model = LinearRegression(featuresCol="year_features", labelCol=YEAR_LABEL_COL).fit(
        task_frame(scaled, "linear_regression"))
    assert to_pyspark_model(model, "linear_regression") is model


@pytest.mark.parametrize("name", ["random_forest_classifier", "random_forest_regressor"])
def test_gpu_forests_are_built_without_the_prediction_column_they_refuse(spark, name):
    """spark-rapids-ml's forests raise on predictionCol (Spark 3.5 and 4.2 alike): they
    are built without it, and the evaluators read the column their models write."""
    estimator = make_estimator(name, seed=1, weighted=False, accelerator="gpu")
    assert type(estimator).__module__.startswith("spark_rapids_ml.")
    assert prediction_col(estimator) == "prediction"
    assert prediction_col(make_estimator(name, seed=1, weighted=False)) in (
        DECADE_PREDICTION_COL, YEAR_PREDICTION_COL)


def test_gpu_training_without_gpus_exits_2_at_start(spark, monkeypatch, capsys):
    """Last in the module: the job stops the session it shares with the tests."""
    sys.path.insert(0, str(__import__("project_paths").SPARK_JOBS))
    import train_models
    from msdlib import cli

    monkeypatch.setenv("MSD_MONGO_URI", "mongodb://127.0.0.1:9/never-contacted")
    code = cli.run_main(train_models.main, [
        "--set", "training.accelerator=gpu", "--set", "training.class_weighting=false",
        "--set", "spark.master=local[1]"])
    assert code == 2
    error = capsys.readouterr().err
    assert "training.accelerator is 'gpu'" in error
    assert "spark.executor.resource.gpu.amount is unset" in error
    assert "Not falling back to the CPU" in error
