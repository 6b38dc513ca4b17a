"""training.accelerator, without a GPU and without Spark: the switch's start-up check
(what is missing, named; no CPU fall back), the settings it refuses, and the estimator
mapping onto spark-rapids-ml's real classes (its wheel imports without cuML) with every
default grid parameter carried over to a cuML parameter. The conversion of fitted models
runs in Spark: tests/integration/test_gpu_model_conversion.py."""
import importlib

import pytest
from pyspark.ml import classification as spark_classification
from pyspark.ml import regression as spark_regression

from msdlib import accelerator
from msdlib.config import ConfigError, from_dict, load_config
from msdlib.core.models import CLASSIFIERS, GPU_MODELS, REGRESSORS

# The pyspark.ml class each GPU model replaces (msdlib.core.models.make_estimator).
SPARK_CLASSES = {
    "logistic_regression": spark_classification.LogisticRegression,
    "random_forest_classifier": spark_classification.RandomForestClassifier,
    "linear_regression": spark_regression.LinearRegression,
    "random_forest_regressor": spark_regression.RandomForestRegressor,
}


def gpu_class(name):
    module = "classification" if name in CLASSIFIERS else "regression"
    spark_class = SPARK_CLASSES[name]
    return getattr(importlib.import_module("spark_rapids_ml." + module), spark_class.__name__)


def test_gpu_models_are_the_three_families_and_the_rest_stay_pyspark():
    assert set(GPU_MODELS) == set(SPARK_CLASSES)
    assert {"multilayer_perceptron", "gbt_classifier", "gbt_regressor"} == (
        set(CLASSIFIERS + REGRESSORS) - set(GPU_MODELS))


@pytest.mark.parametrize("name", GPU_MODELS)
def test_each_gpu_model_has_spark_rapids_mls_class_of_the_same_name(name):
    cls = gpu_class(name)
    assert cls.__module__.startswith("spark_rapids_ml.")
    assert callable(getattr(cls, "fit"))


@pytest.mark.parametrize("name", GPU_MODELS)
def test_the_default_grids_parameters_reach_cuml(name):
    """A Spark parameter spark-rapids-ml maps to None falls back to a CPU fit and one
    mapped to "" is ignored: every grid parameter must map to a cuML parameter."""
    mapping = gpu_class(name)._param_mapping()
    for param in load_config().training.grids[name]:
        assert mapping.get(param), (name, param, mapping.get(param))


def test_spark_rapids_ml_has_no_weight_column_so_gpu_training_refuses_class_weights():
    for name in ("logistic_regression", "random_forest_classifier"):
        assert gpu_class(name)._param_mapping()["weightCol"] is None
    with pytest.raises(ConfigError, match="training.class_weighting = false"):
        from_dict({"training": {"accelerator": "gpu"}})
    unweighted = from_dict({"training": {"accelerator": "gpu", "class_weighting": False}})
    assert unweighted.training.accelerator == "gpu"
    only_perceptron = {"accelerator": "gpu", "classifiers": ["multilayer_perceptron"]}
    assert from_dict({"training": only_perceptron}).training.class_weighting is True


def installed_only(*names):
    return lambda name: object() if name in names else None


@pytest.mark.parametrize("conf, packages, missing", [
    ({}, ("spark_rapids_ml", "cuml"), ["spark.executor.resource.gpu.amount is unset"]),
    ({"spark.executor.resource.gpu.amount": "0"}, ("spark_rapids_ml", "cuml"),
     ["spark.executor.resource.gpu.amount is 0"]),
    ({"spark.executor.resource.gpu.amount": "1"}, ("spark_rapids_ml",),
     ["package(s) cuml are not installed"]),
    ({"spark.executor.resource.gpu.amount": "1"}, (),
     ["package(s) spark_rapids_ml, cuml are not installed"]),
    ({}, (), ["package(s) spark_rapids_ml, cuml", "gpu.amount is unset"]),
], ids=["no-gpu-conf", "zero-gpus", "no-cuml", "no-packages", "nothing"])
def test_gpu_problems_name_what_is_missing(conf, packages, missing):
    problems = accelerator.gpu_problems(conf.get, installed_only(*packages))
    assert len(problems) == len(missing)
    for problem, text in zip(problems, missing):
        assert text in problem


def test_nothing_missing_means_no_problem():
    conf = {"spark.executor.resource.gpu.amount": "1"}
    assert accelerator.gpu_problems(conf.get, installed_only("spark_rapids_ml", "cuml")) == []


def test_gpu_training_without_a_gpu_stops_and_never_falls_back():
    with pytest.raises(RuntimeError) as raised:
        accelerator.check_accelerator("gpu", {}.get)
    message = str(raised.value)
    assert "training.accelerator is 'gpu'" in message and "Not falling back" in message
    assert "spark.executor.resource.gpu.amount" in message
    accelerator.check_accelerator("cpu", {}.get)  # the CPU path needs nothing
