"""Numpy versions of the Spark ML stages the training job saves, reproducing
``PipelineModel.transform`` on a batch of rows.

A frame is a dict of column name → numpy array (one entry per row; vectors are 2-D
float64 arrays), like the DataFrame columns the Spark stages read and add. Every stage
implements ``transform(frame)``, which returns the frame with its output columns added.

Exactness: the arithmetic follows Spark's own order where it can decide a class
(the trees of an ensemble are summed one after the other, as Spark does), so the same
rows get the same decade class and years agree to rounding error (~1e-12).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

Frame = Dict[str, np.ndarray]


class UnsupportedModelError(ValueError):
    """A saved model uses a stage or a setting this scorer does not reproduce."""


@dataclass
class VectorAssembler:
    input_cols: List[str]
    output_col: str

    def transform(self, frame: Frame) -> Frame:
        missing = [name for name in self.input_cols if name not in frame]
        if missing:
            raise KeyError("missing input columns: {}".format(", ".join(missing)))
        columns = [frame[name] for name in self.input_cols]
        if all(np.ndim(column) == 1 for column in columns):  # numbers only: one copy
            vectors = np.array(columns, dtype=np.float64).T
        else:
            columns = [np.asarray(column, dtype=np.float64) for column in columns]
            vectors = np.column_stack([c if c.ndim == 2 else c[:, None] for c in columns])
        if np.isnan(vectors).any():  # Spark's handleInvalid="error"
            raise ValueError("VectorAssembler: NaN input values")
        return dict(frame, **{self.output_col: vectors})


@dataclass
class StandardScaler:
    input_col: str
    output_col: str
    mean: Optional[np.ndarray]  # None: withMean=false
    std: Optional[np.ndarray]   # None: withStd=false

    def __post_init__(self) -> None:
        # Spark multiplies by 1/std (0 for a constant feature) rather than dividing.
        self._scale = None if self.std is None else np.array(
            [0.0 if value == 0.0 else 1.0 / value for value in self.std])

    def transform(self, frame: Frame) -> Frame:
        values = frame[self.input_col]
        if self.mean is not None:
            values = values - self.mean
        if self._scale is not None:
            values = values * self._scale
        return dict(frame, **{self.output_col: values})


@dataclass
class Classifier:
    """Any classifier: ``raw(x)`` gives the raw prediction, argmax (Spark's rule without
    ``thresholds``) the class index. Output columns named by the model's params."""
    features_col: str
    prediction_col: str
    raw_prediction_col: str = ""

    def raw(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.argmax(raw, axis=1).astype(np.float64)

    def transform(self, frame: Frame) -> Frame:
        raw = self.raw(frame[self.features_col])
        out = {self.prediction_col: self.predict(raw)}
        if self.raw_prediction_col:
            out[self.raw_prediction_col] = raw
        return dict(frame, **out)


@dataclass
class LogisticRegression(Classifier):
    coefficients: np.ndarray = None  # classes x features (1 x features: binomial)
    intercepts: np.ndarray = None
    multinomial: bool = True
    threshold: float = 0.5

    def raw(self, features: np.ndarray) -> np.ndarray:
        margins = features @ self.coefficients.T + self.intercepts
        if self.multinomial:
            return margins
        return np.column_stack([-margins[:, 0], margins[:, 0]])

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.multinomial:
            return super().predict(raw)
        if self.threshold <= 0.0 or self.threshold >= 1.0:
            cut = -np.inf if self.threshold <= 0.0 else np.inf
        else:
            cut = np.log(self.threshold / (1.0 - self.threshold))
        return (raw[:, 1] > cut).astype(np.float64)


@dataclass
class Trees:
    """The trees of an ensemble flattened into arrays, walked for all trees at once.

    Leaves point to themselves with an infinite threshold, so walking ``depth`` steps
    lands every row on its leaf in every tree. ``values`` holds each node's output
    (a number, or a vector per node for classification forests).
    """
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    values: np.ndarray
    roots: np.ndarray
    weights: np.ndarray
    depth: int

    def leaf_values(self, features: np.ndarray) -> np.ndarray:
        """rows x trees (x value width) of the leaf each row reaches in each tree."""
        rows = np.arange(features.shape[0])[:, None]
        nodes = np.broadcast_to(self.roots, (features.shape[0], len(self.roots)))
        for _ in range(self.depth):
            goes_left = features[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(goes_left, self.left[nodes], self.right[nodes])
        return self.values[nodes]

    def weighted_sum(self, features: np.ndarray) -> np.ndarray:
        """Σ weight_t x value_t, summed tree after tree like Spark's loops
        (``np.add.accumulate`` adds strictly in order, unlike ``np.sum``)."""
        leaves = self.leaf_values(features)
        weights = self.weights.reshape((1, -1) + (1,) * (leaves.ndim - 2))
        return np.add.accumulate(leaves * weights, axis=1)[:, -1]


@dataclass
class RandomForestClassifier(Classifier):
    trees: Trees = None  # values: each leaf's class counts normalised to sum 1

    def raw(self, features: np.ndarray) -> np.ndarray:
        return self.trees.weighted_sum(features)


@dataclass
class GBTClassifier(Classifier):
    trees: Trees = None

    def raw(self, features: np.ndarray) -> np.ndarray:
        margin = self.trees.weighted_sum(features)
        return np.column_stack([-margin, margin])


@dataclass
class OneVsRest(Classifier):
    """One binary classifier per class; the class whose model gives the highest raw
    score for "yes" (``raw[:, 1]``) wins, as in Spark's OneVsRestModel."""
    models: Sequence[Classifier] = field(default_factory=list)

    def raw(self, features: np.ndarray) -> np.ndarray:
        return np.column_stack([model.raw(features)[:, 1] for model in self.models])


@dataclass
class MultilayerPerceptron(Classifier):
    """Affine layers with sigmoid between them; the raw prediction is the last affine
    layer's output (the softmax input), as in Spark's predictRaw."""
    layers: Sequence[int] = ()
    weights: np.ndarray = None

    def __post_init__(self) -> None:
        self._affine = []
        offset = 0
        for inputs, outputs in zip(self.layers[:-1], self.layers[1:]):
            # Spark keeps each layer as a column-major outputs x inputs matrix, then bias.
            matrix = self.weights[offset:offset + inputs * outputs] \
                .reshape((inputs, outputs))
            offset += inputs * outputs
            self._affine.append((matrix, self.weights[offset:offset + outputs]))
            offset += outputs
        if offset != len(self.weights):
            raise UnsupportedModelError("MLP weights do not fit layers {}".format(
                list(self.layers)))

    def raw(self, features: np.ndarray) -> np.ndarray:
        values = features
        for index, (matrix, bias) in enumerate(self._affine):
            values = values @ matrix + bias
            if index < len(self._affine) - 1:
                values = 1.0 / (1.0 + np.exp(-values))
        return values


@dataclass
class Regressor:
    features_col: str
    prediction_col: str

    def predict(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, frame: Frame) -> Frame:
        return dict(frame, **{self.prediction_col: self.predict(frame[self.features_col])})


@dataclass
class LinearRegression(Regressor):
    coefficients: np.ndarray = None
    intercept: float = 0.0

    def predict(self, features: np.ndarray) -> np.ndarray:
        return features @ self.coefficients + self.intercept


@dataclass
class RandomForestRegressor(Regressor):
    trees: Trees = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.trees.weighted_sum(features) / len(self.trees.roots)


@dataclass
class GBTRegressor(Regressor):
    trees: Trees = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.trees.weighted_sum(features)


@dataclass
class IndexToString:
    input_col: str
    output_col: str
    labels: Sequence[str]

    def transform(self, frame: Frame) -> Frame:
        labels = np.asarray(self.labels, dtype=object)
        indices = frame[self.input_col].astype(np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(labels)):
            raise ValueError("IndexToString: class index outside the {} labels".format(
                len(labels)))
        return dict(frame, **{self.output_col: labels[indices]})


@dataclass
class Pipeline:
    stages: Sequence[object]

    @property
    def input_columns(self) -> List[str]:
        """The columns the first stage reads (the VectorAssembler's inputs)."""
        first = self.stages[0]
        if isinstance(first, Pipeline):
            return first.input_columns
        if not isinstance(first, VectorAssembler):
            raise UnsupportedModelError("a pipeline must start with a VectorAssembler")
        return list(first.input_cols)

    @property
    def output_column(self) -> str:
        """The last stage's main output (the decade name or the year prediction)."""
        last = self.stages[-1]
        if isinstance(last, Pipeline):
            return last.output_column
        return getattr(last, "output_col", None) or last.prediction_col

    def transform(self, frame: Frame) -> Frame:
        for stage in self.stages:
            frame = stage.transform(frame)
        return frame


def flatten_trees(trees: Sequence[Sequence[dict]], weights: Sequence[float],
                  leaf_value) -> Trees:
    """Build ``Trees`` from Spark's node rows (``id, leftChild, rightChild, split, ...``)
    per tree; ``leaf_value(node)`` gives a node's output (used at the leaves)."""
    feature, threshold, left, right, values, roots = [], [], [], [], [], []
    depth = 0
    for nodes in trees:
        by_id = {node["id"]: node for node in nodes}
        offset = len(feature)
        position = {node_id: offset + index for index, node_id in enumerate(sorted(by_id))}
        root = min(by_id)
        roots.append(position[root])
        depth = max(depth, _depth(by_id, root))
        for node_id in sorted(by_id):
            node = by_id[node_id]
            here = position[node_id]
            values.append(leaf_value(node))
            if node["leftChild"] < 0:
                feature.append(0)
                threshold.append(np.inf)
                left.append(here)
                right.append(here)
                continue
            split = node["split"]
            if split["numCategories"] >= 0:
                raise UnsupportedModelError("categorical tree splits are not supported "
                                            "(the pipelines use continuous features)")
            feature.append(split["featureIndex"])
            threshold.append(split["leftCategoriesOrThreshold"][0])
            left.append(position[node["leftChild"]])
            right.append(position[node["rightChild"]])
    return Trees(feature=np.array(feature, dtype=np.int64),
                 threshold=np.array(threshold, dtype=np.float64),
                 left=np.array(left, dtype=np.int64), right=np.array(right, dtype=np.int64),
                 values=np.array(values, dtype=np.float64),
                 roots=np.array(roots, dtype=np.int64),
                 weights=np.array(weights, dtype=np.float64), depth=depth)


def _depth(by_id: Dict[int, dict], root: int) -> int:
    deepest, stack = 0, [(root, 0)]
    while stack:
        node_id, level = stack.pop()
        node = by_id[node_id]
        if node["leftChild"] < 0:
            deepest = max(deepest, level)
        else:
            stack += [(node["leftChild"], level + 1), (node["rightChild"], level + 1)]
    return deepest


def class_distribution(node: dict) -> List[float]:
    """A classification leaf's vote: its class counts normalised to sum 1 (0 if empty)."""
    stats = node["impurityStats"]
    total = sum(stats)
    return [count / total if total != 0 else 0.0 for count in stats]
