"""Training benchmark: this job's Spark ML cross-validation against scikit-learn's.

On the same features, the same artist-disjoint split and the same artist folds, in one
run, for generated songs at two sizes and the real songs of ../shared/msd (when
present): training + CV seconds and test scores of the job's models (the functions
``train_models.py`` runs) and of scikit-learn equivalents fitted on the same rows
(collected to pandas: the single-machine baseline), with the Spark/sklearn time ratio
and both baselines (majority decade, mean year).

    .venv/bin/python benchmarks/bench_training.py [--sizes 500 2000] [--folds 3]

Starts its own SecantusDB (in memory) on a free port and ingests with the ingest job.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from sklearn.ensemble import (GradientBoostingClassifier, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from msd_devtools import services
from msd_pipeline.staging.generator import generate_songs
from msdlib import training
from msdlib.config import load_config
from msd_pipeline.paths import PROJECT_ROOT
from msdlib.core.evaluation import classification_metrics, counts_from_pairs, regression_metrics
from msdlib.core.models import FOLD_COL, LABEL_COL, WEIGHT_COL, YEAR_LABEL_COL

REAL_TRACKS = PROJECT_ROOT.parent / "shared" / "msd" / "tracks"

# One grid for both libraries (Spark parameter names; the sklearn side maps them).
GRIDS = {
    "logistic_regression": {"regParam": [0.01, 0.1]},
    "random_forest_classifier": {"numTrees": [50], "maxDepth": [8]},
    "gbt_classifier": {"maxIter": [20], "maxDepth": [3]},
    "linear_regression": {"regParam": [0.1, 1.0]},
    "random_forest_regressor": {"numTrees": [50], "maxDepth": [8]},
}
CLASSIFIERS = ["logistic_regression", "random_forest_classifier", "gbt_classifier"]
REGRESSORS = ["linear_regression", "random_forest_regressor"]


def ingest(mongo_uri: str, database: str, source: str) -> None:
    command = [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "ingest_songs.py"),
               "--run-id", "bench-" + database, "--set", "mongo.database=" + database,
               "--set", "ingest.source=" + source, "--set", "spark.master=local[2]"]
    subprocess.run(command, check=True, capture_output=True,
                   env=dict(os.environ, MSD_MONGO_URI=mongo_uri))


def spark_side(spark: Any, config: Any, mongo_uri: str) -> Tuple[Dict[str, Any], Any, Any,
                                                                  List[str]]:
    """The job's transform step (msdlib.training); returns results and the split frames."""
    songs, counts = training.read_songs(spark, config, mongo_uri)
    parallelism = spark.sparkContext.defaultParallelism
    started = time.time()
    result = training.train_and_evaluate(songs, counts, config.training, parallelism,
                                         training.Stopwatch())
    seconds = time.time() - started
    valid = songs.filter(songs.skip_reason.isNull())
    data = training.prepare_labelled(valid.filter(valid.year.isNotNull()), config.training,
                                     parallelism)["data"]
    return ({"seconds": seconds, "decade": result["decade"], "year": result["year"],
             "classes": result["decade"]["classes"], "data": {
                 k: v for k, v in data.items() if not k.endswith("_frame")}},
            data["train_frame"], data["test_frame"], result["features"]["used"])


def to_numpy(frame: Any, used: List[str]) -> Dict[str, np.ndarray]:
    pdf = frame.select(used + [LABEL_COL, WEIGHT_COL, YEAR_LABEL_COL, FOLD_COL]).toPandas()
    return {"x": pdf[used].to_numpy(), "label": pdf[LABEL_COL].to_numpy().astype(int),
            "weight": pdf[WEIGHT_COL].to_numpy(), "year": pdf[YEAR_LABEL_COL].to_numpy(),
            "fold": pdf[FOLD_COL].to_numpy()}


def sklearn_side(train: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
                 classes: List[int], seed: int) -> Dict[str, Any]:
    """The same models, grids, folds and class weights in scikit-learn."""
    n = len(train["label"])
    folds = PredefinedSplit(train["fold"])
    # Spark's regParam λ on the mean loss ⇔ sklearn's C = 1/(λ n), Ridge alpha = λ n.
    classifiers = {
        "logistic_regression": (LogisticRegression(max_iter=1000), {
            "C": [1.0 / (r * n) for r in GRIDS["logistic_regression"]["regParam"]]}),
        "random_forest_classifier": (
            RandomForestClassifier(max_features="sqrt", random_state=seed),
            {"n_estimators": [50], "max_depth": [8]}),
        "gbt_classifier": (GradientBoostingClassifier(random_state=seed),
                           {"n_estimators": [20], "max_depth": [3]}),
    }
    regressors = {
        "linear_regression": (Ridge(), {
            "alpha": [r * n for r in GRIDS["linear_regression"]["regParam"]]}),
        "random_forest_regressor": (
            RandomForestRegressor(max_features=1 / 3, random_state=seed),
            {"n_estimators": [50], "max_depth": [8]}),
    }
    started = time.time()
    best_cls = _search(classifiers, train["x"], train["label"], folds, "f1_macro",
                       weight=train["weight"])
    best_reg = _search(regressors, train["x"], train["year"], folds,
                       "neg_root_mean_squared_error")
    seconds = time.time() - started
    predicted = best_cls[1].predict(test["x"])
    confusion = counts_from_pairs((classes[a], classes[p])
                                  for a, p in zip(test["label"], predicted))
    errors = best_reg[1].predict(test["x"]) - test["year"]
    return {"seconds": seconds, "decade_chosen": best_cls[0], "year_chosen": best_reg[0],
            "decade": classification_metrics(confusion, classes),
            "year": regression_metrics(len(errors), float(np.abs(errors).sum()),
                                       float((errors ** 2).sum()), float(test["year"].sum()),
                                       float((test["year"] ** 2).sum()))}


def _search(models: Dict[str, Any], x: np.ndarray, y: np.ndarray, folds: Any, scoring: str,
            weight: Any = None) -> Tuple[str, Any]:
    """GridSearchCV per model on the given folds; the best model by CV score, refit."""
    best = None
    for name, (estimator, grid) in models.items():
        search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("model", estimator)]),
                             {"model__" + k: v for k, v in grid.items()}, cv=folds,
                             scoring=scoring, n_jobs=2)
        fit_params = {} if weight is None else {"model__sample_weight": weight}
        search.fit(x, y, **fit_params)
        if best is None or search.best_score_ > best[0]:
            best = (search.best_score_, name, search.best_estimator_)
    return best[1], best[2]


def bench_dataset(spark: Any, config: Any, mongo_uri: str, label: str) -> Dict[str, Any]:
    spark_result, train, test, used = spark_side(spark, config, mongo_uri)
    sk = sklearn_side(to_numpy(train, used), to_numpy(test, used), spark_result["classes"],
                      config.training.seed)
    decade, year = spark_result["decade"], spark_result["year"]
    row = {
        "dataset": label, **spark_result["data"],
        "spark_seconds": round(spark_result["seconds"], 1),
        "sklearn_seconds": round(sk["seconds"], 1),
        "spark_over_sklearn_time": round(spark_result["seconds"] / sk["seconds"], 2),
        "spark_decade": decade["chosen"], "sklearn_decade": sk["decade_chosen"],
        "decade_macro_f1": {"spark": decade["test"]["macro_f1"],
                            "sklearn": sk["decade"]["macro_f1"],
                            "majority_baseline": decade["baseline"]["macro_f1"]},
        "decade_accuracy": {"spark": decade["test"]["accuracy"],
                            "sklearn": sk["decade"]["accuracy"],
                            "majority_baseline": decade["baseline"]["accuracy"]},
        "spark_year": year["chosen"], "sklearn_year": sk["year_chosen"],
        "year_mae": {"spark": year["test"]["mae"], "sklearn": sk["year"]["mae"],
                     "mean_baseline": year["baseline"]["mae"]},
        "year_rmse": {"spark": year["test"]["rmse"], "sklearn": sk["year"]["rmse"],
                      "mean_baseline": year["baseline"]["rmse"]},
    }
    train.unpersist()
    test.unpersist()
    return row


def print_row(row: Dict[str, Any]) -> None:
    print("\n== {dataset}: train {train} / test {test} songs (artist-disjoint)".format(**row))
    print("training+CV seconds: spark {spark_seconds}  sklearn {sklearn_seconds}  "
          "ratio spark/sklearn {spark_over_sklearn_time}".format(**row))
    for key in ("decade_macro_f1", "decade_accuracy", "year_mae", "year_rmse"):
        print("  {:16s} {}".format(key, "  ".join(
            "{} {:.3f}".format(name, value) for name, value in row[key].items())))
    print("  chosen: spark {} / {}; sklearn {} / {}".format(
        row["spark_decade"], row["spark_year"], row["sklearn_decade"], row["sklearn_year"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[500, 2000])
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    port = services.free_port()
    server = services.mongo_service(work, port, storage=":memory:")
    server.start()
    mongo_uri = services.mongo_uri(port)
    spark = SparkSession.builder.master("local[2]").appName("bench-training") \
        .config("spark.ui.showConsoleProgress", "false").getOrCreate()
    rows = []
    try:
        datasets = [("generated {}".format(n), n) for n in args.sizes]
        if any(REAL_TRACKS.glob("*/*/*/*.h5")):
            datasets.append(("real MSD songs", None))
        else:
            print("real songs skipped: {} is absent".format(REAL_TRACKS))
        for label, size in datasets:
            database = "bench_" + uuid.uuid4().hex[:8]
            source = str(REAL_TRACKS)
            if size is not None:
                source = str(work / "songs{}".format(size))
                generate_songs(source, size, seed=size, unknown_year_fraction=0.2, workers=2)
            ingest(mongo_uri, database, source)
            config = load_config(overrides={
                "mongo.database": database, "training.folds": args.folds,
                "training.grids": GRIDS, "training.classifiers": CLASSIFIERS,
                "training.regressors": REGRESSORS})
            row = bench_dataset(spark, config, mongo_uri, label)
            print_row(row)
            rows.append(row)
    finally:
        spark.stop()
        server.stop()
    print(json.dumps(rows, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
