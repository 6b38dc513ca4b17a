"""Read a Spark ML ``PipelineModel`` saved with ``model.write().save(path)`` into the
numpy stages of ``msd_serving.stages``, without a JVM.

Spark's layout: ``<stage>/metadata/part-00000`` is one JSON line (``class``, ``uid``,
``paramMap``, ``defaultParamMap`` and extra keys); fitted values are parquet files in
``<stage>/data/`` (vectors and matrices as Spark's VectorUDT/MatrixUDT structs), tree
ensembles add ``<stage>/treesMetadata/`` (one row per tree with its weight). A pipeline
keeps its stages in ``stages/<index>_<uid>/``, OneVsRest its models in ``model_<i>/``.

Supported: VectorAssembler, StandardScalerModel, LogisticRegressionModel,
RandomForestClassificationModel, GBTClassificationModel, OneVsRestModel,
MultilayerPerceptronClassificationModel, LinearRegressionModel,
RandomForestRegressionModel, GBTRegressionModel, IndexToString and nested
PipelineModels. Anything else raises ``UnsupportedModelError`` naming the stage.
"""
import json
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from msd_serving import stages
from msd_serving.stages import UnsupportedModelError
from msd_serving.storage import ArtifactNotFound, Folder, open_folder

SPARK_ML = "org.apache.spark.ml."


def load_pipeline(uri: str) -> stages.Pipeline:
    """The PipelineModel saved at ``uri`` (local folder or s3:// prefix)."""
    stage = load_stage(open_folder(uri), "")
    if not isinstance(stage, stages.Pipeline):
        raise UnsupportedModelError("{} holds a {}, not a PipelineModel".format(
            uri, type(stage).__name__))
    return stage


def load_stage(folder: Folder, path: str) -> Any:
    metadata = read_metadata(folder, path)
    name = metadata["class"]
    loader = LOADERS.get(name[len(SPARK_ML):] if name.startswith(SPARK_ML) else name)
    if loader is None:
        raise UnsupportedModelError(
            "stage {} at {} is a {}, which the portable scorer does not support "
            "(supported: {})".format(metadata.get("uid"), folder.join(path), name,
                                     ", ".join(sorted(LOADERS))))
    return loader(folder, path, metadata)


def read_metadata(folder: Folder, path: str) -> Dict[str, Any]:
    """The stage's metadata, with ``params``: defaults overridden by set params."""
    parts = [name for name in folder.files(_join(path, "metadata"))
             if name.rsplit("/", 1)[-1].startswith("part-")]
    if not parts:
        raise ArtifactNotFound("no Spark metadata in {}".format(
            folder.join(_join(path, "metadata"))))
    metadata = json.loads(folder.read_text(parts[0]).strip().splitlines()[0])
    metadata["params"] = dict(metadata.get("defaultParamMap") or {},
                              **(metadata.get("paramMap") or {}))
    return metadata


def _join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def _single_row(folder: Folder, path: str) -> Dict[str, Any]:
    rows = folder.read_parquet(_join(path, "data"))
    if len(rows) != 1:
        raise UnsupportedModelError("{} holds {} data rows, expected 1".format(
            folder.join(_join(path, "data")), len(rows)))
    return rows[0]


def vector(value: Optional[Dict[str, Any]]) -> np.ndarray:
    """A Spark VectorUDT struct (type 0 sparse, 1 dense) as a dense float64 array."""
    if value["type"] == 1:
        return np.array(value["values"], dtype=np.float64)
    dense = np.zeros(value["size"], dtype=np.float64)
    dense[np.array(value["indices"], dtype=np.int64)] = value["values"]
    return dense


def matrix(value: Dict[str, Any]) -> np.ndarray:
    """A Spark MatrixUDT struct (type 0 sparse CSC/CSR, 1 dense) as a dense array."""
    rows, cols = value["numRows"], value["numCols"]
    transposed = value["isTransposed"]
    if value["type"] == 1:
        values = np.array(value["values"], dtype=np.float64)
        return values.reshape((rows, cols)) if transposed \
            else values.reshape((cols, rows)).T
    # Compressed columns (rows when transposed): pointers over the major dimension.
    major, minor = (rows, cols) if transposed else (cols, rows)
    dense = np.zeros((major, minor), dtype=np.float64)
    pointers = value["colPtrs"]
    for index in range(major):
        start, end = pointers[index], pointers[index + 1]
        dense[index, value["rowIndices"][start:end]] = value["values"][start:end]
    return dense if transposed else dense.T


def _check_thresholds(metadata: Dict[str, Any]) -> None:
    if metadata["params"].get("thresholds"):
        raise UnsupportedModelError("stage {} sets 'thresholds', which the portable "
                                    "scorer does not reproduce".format(metadata["uid"]))


def _classifier_cols(metadata: Dict[str, Any]) -> Dict[str, str]:
    _check_thresholds(metadata)
    params = metadata["params"]
    return {"features_col": params["featuresCol"], "prediction_col": params["predictionCol"],
            "raw_prediction_col": params.get("rawPredictionCol", "")}


def _regressor_cols(metadata: Dict[str, Any]) -> Dict[str, str]:
    params = metadata["params"]
    return {"features_col": params["featuresCol"], "prediction_col": params["predictionCol"]}


def _pipeline(folder: Folder, path: str, metadata: Dict[str, Any]) -> stages.Pipeline:
    uids = metadata["params"]["stageUids"]
    digits = len(str(len(uids)))
    return stages.Pipeline([
        load_stage(folder, _join(path, "stages", "{:0{}d}_{}".format(index, digits, uid)))
        for index, uid in enumerate(uids)])


def _vector_assembler(folder: Folder, path: str, metadata: Dict[str, Any]
                      ) -> stages.VectorAssembler:
    params = metadata["params"]
    if params.get("handleInvalid", "error") != "error":
        raise UnsupportedModelError("VectorAssembler {} uses handleInvalid={!r}".format(
            metadata["uid"], params["handleInvalid"]))
    return stages.VectorAssembler(list(params["inputCols"]), params["outputCol"])


def _standard_scaler(folder: Folder, path: str, metadata: Dict[str, Any]
                     ) -> stages.StandardScaler:
    params = metadata["params"]
    data = _single_row(folder, path)
    return stages.StandardScaler(
        params["inputCol"], params["outputCol"],
        mean=vector(data["mean"]) if params.get("withMean") else None,
        std=vector(data["std"]) if params.get("withStd", True) else None)


def _logistic_regression(folder: Folder, path: str, metadata: Dict[str, Any]
                         ) -> stages.LogisticRegression:
    data = _single_row(folder, path)
    return stages.LogisticRegression(
        coefficients=matrix(data["coefficientMatrix"]),
        intercepts=vector(data["interceptVector"]),
        multinomial=bool(data["isMultinomial"]),
        threshold=float(metadata["params"].get("threshold", 0.5)),
        **_classifier_cols(metadata))


def _linear_regression(folder: Folder, path: str, metadata: Dict[str, Any]
                       ) -> stages.LinearRegression:
    data = _single_row(folder, path)
    return stages.LinearRegression(coefficients=vector(data["coefficients"]),
                                   intercept=float(data["intercept"]),
                                   **_regressor_cols(metadata))


def _ensemble(folder: Folder, path: str, leaf_value: Callable[[dict], Any]
              ) -> stages.Trees:
    nodes: Dict[int, List[dict]] = {}
    for row in folder.read_parquet(_join(path, "data")):
        nodes.setdefault(row["treeID"], []).append(row["nodeData"])
    weights = {row["_1"]: row["_3"]
               for row in folder.read_parquet(_join(path, "treesMetadata"))}
    if set(weights) != set(nodes):
        raise UnsupportedModelError("{}: tree data and tree weights disagree".format(
            folder.join(path)))
    order = sorted(nodes)
    return stages.flatten_trees([nodes[tree] for tree in order],
                                [weights[tree] for tree in order], leaf_value)


def _prediction(node: dict) -> float:
    return node["prediction"]


def _random_forest_classifier(folder: Folder, path: str, metadata: Dict[str, Any]
                              ) -> stages.RandomForestClassifier:
    return stages.RandomForestClassifier(
        trees=_ensemble(folder, path, stages.class_distribution), **_classifier_cols(metadata))


def _gbt_classifier(folder: Folder, path: str, metadata: Dict[str, Any]
                    ) -> stages.GBTClassifier:
    return stages.GBTClassifier(trees=_ensemble(folder, path, _prediction),
                                **_classifier_cols(metadata))


def _random_forest_regressor(folder: Folder, path: str, metadata: Dict[str, Any]
                             ) -> stages.RandomForestRegressor:
    return stages.RandomForestRegressor(trees=_ensemble(folder, path, _prediction),
                                        **_regressor_cols(metadata))


def _gbt_regressor(folder: Folder, path: str, metadata: Dict[str, Any]
                   ) -> stages.GBTRegressor:
    return stages.GBTRegressor(trees=_ensemble(folder, path, _prediction),
                               **_regressor_cols(metadata))


def _one_vs_rest(folder: Folder, path: str, metadata: Dict[str, Any]) -> stages.OneVsRest:
    models = [load_stage(folder, _join(path, "model_{}".format(index)))
              for index in range(int(metadata["numClasses"]))]
    for model in models:
        if not isinstance(model, stages.Classifier):
            raise UnsupportedModelError("OneVsRest {} holds a {}".format(
                metadata["uid"], type(model).__name__))
    return stages.OneVsRest(models=models, **_classifier_cols(metadata))


def _multilayer_perceptron(folder: Folder, path: str, metadata: Dict[str, Any]
                           ) -> stages.MultilayerPerceptron:
    data = _single_row(folder, path)
    layers = metadata["params"].get("layers") or data.get("layers")
    return stages.MultilayerPerceptron(layers=[int(size) for size in layers],
                                       weights=vector(data["weights"]),
                                       **_classifier_cols(metadata))


def _index_to_string(folder: Folder, path: str, metadata: Dict[str, Any]
                     ) -> stages.IndexToString:
    params = metadata["params"]
    if not params.get("labels"):
        raise UnsupportedModelError("IndexToString {} has no 'labels' param (labels from "
                                    "column metadata are not supported)".format(
                                        metadata["uid"]))
    return stages.IndexToString(params["inputCol"], params["outputCol"],
                                [str(label) for label in params["labels"]])


LOADERS = {
    "PipelineModel": _pipeline,
    "pyspark.ml.pipeline.PipelineModel": _pipeline,
    "feature.VectorAssembler": _vector_assembler,
    "feature.StandardScalerModel": _standard_scaler,
    "feature.IndexToString": _index_to_string,
    "classification.LogisticRegressionModel": _logistic_regression,
    "classification.RandomForestClassificationModel": _random_forest_classifier,
    "classification.GBTClassificationModel": _gbt_classifier,
    "classification.OneVsRestModel": _one_vs_rest,
    "classification.MultilayerPerceptronClassificationModel": _multilayer_perceptron,
    "regression.LinearRegressionModel": _linear_regression,
    "regression.RandomForestRegressionModel": _random_forest_regressor,
    "regression.GBTRegressionModel": _gbt_regressor,
}  # type: Dict[str, Callable[[Folder, str, Dict[str, Any]], Any]]
