"""Training cost curve: this project's training job against scikit-learn, 10k to 500k songs.

For each size, in one run: generated song documents (features only, no HDF5 files:
``msd_devtools.feature_generator``) are bulk-inserted into a SecantusDB started here,
then

* spark: ``spark_jobs/train_models.py`` as a subprocess with the default configuration
  (models, grids, ``grid_strategy = "auto"``), on ``local[2]``; it reads
  through the project's reader (msdlib.io.dataset). Its own stage timings give the
  training time (prepare + decade models + year models: everything after the read);
  psutil polls the job's driver (Python) and its JVM every 0.2 s for the peak RSS;
* sklearn: the same labelled rows (read with pymongo, not timed), the same
  artist-disjoint split and folds (msdlib.core.splits), the same rare-decade merge,
  class weights, constant-column drop, grid strategy and grids, in scikit-learn
  (GridSearchCV over a PredefinedSplit, n_jobs=2): LogisticRegression, RandomForest,
  MLPClassifier; Ridge, RandomForestRegressor.

    .venv/bin/python benchmarks/bench_training_scale.py [--sizes 10000,100000,500000]
        [--plot benchmarks/training_scale.png]

One JSON line per size, then {"sizes", "spark_s", "sklearn_s", "ratio",
"growth_10k_to_100k", ...}. Targets (benchmarks/README.md): ratio <= 2 at 100k and
<= 1.5 at 500k; spark time from 10k to 100k grows at most linearly; driver RSS flat.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN_JOB = PROJECT_ROOT / "spark_jobs" / "train_models.py"

from msd_devtools import services  # noqa: E402
from msd_devtools.feature_generator import insert_feature_songs  # noqa: E402
from msdlib.config import load_config  # noqa: E402
from msdlib.core.models import class_weights, merge_rare_decades  # noqa: E402
from msdlib.core.selection import held_out_folds, resolve_grid_strategy  # noqa: E402
from msdlib.core.splits import artist_fold, is_test_artist  # noqa: E402
from msdlib.io.dataset import read_projection, song_row  # noqa: E402
from msdlib.io.mongo import connect  # noqa: E402

DATABASE_PREFIX = "scale_"


def run_spark(mongo_uri: str, database: str, artifacts: str) -> Dict[str, Any]:
    """The training job on its defaults; stage seconds and peak RSS."""
    command = [sys.executable, str(TRAIN_JOB), "--run-id", database,
               "--set", "mongo.database=" + database,
               "--set", "spark.master=local[2]", "--set", "training.artifacts_uri=" + artifacts]
    env = dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable)
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=env, cwd=str(PROJECT_ROOT))
    peaks = {"driver_python_mb": 0.0, "driver_jvm_mb": 0.0}
    watcher = threading.Thread(target=_watch_rss, args=(process.pid, peaks), daemon=True)
    watcher.start()
    stdout, _ = process.communicate()
    wall = time.time() - started
    watcher.join(timeout=2)
    summary = json.loads(stdout.strip().splitlines()[-1])
    if summary.get("status") != "succeeded":
        raise RuntimeError("training job failed: {}".format(summary))
    stages = summary["stage_seconds"]
    return {"spark_s": round(stages["prepare"] + stages["decade_models"]
                             + stages["year_models"], 1),
            "spark_read_s": stages["read"], "spark_job_wall_s": round(wall, 1),
            "spark_stages": stages, "grid_strategy": summary["grid_strategy"],
            "spark_decade": summary["decade"], "spark_year": summary["year"],
            "spark_linear_algebra": summary["linear_algebra"], **{
                key: round(value, 1) for key, value in peaks.items()}}


def _watch_rss(pid: int, peaks: Dict[str, float]) -> None:
    """Peak RSS of the job's Python driver and of its JVM (the local-mode executor too)."""
    try:
        driver = psutil.Process(pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            peaks["driver_python_mb"] = max(peaks["driver_python_mb"],
                                            driver.memory_info().rss / 2 ** 20)
            jvm = sum(child.memory_info().rss for child in driver.children(recursive=True)
                      if child.name().startswith("java")) / 2 ** 20
            peaks["driver_jvm_mb"] = max(peaks["driver_jvm_mb"], jvm)
            time.sleep(0.2)
    except psutil.Error:
        pass


def load_rows(mongo_uri: str, database: str, config: Any) -> Dict[str, np.ndarray]:
    """The labelled songs with valid features, as the job's reader sees them."""
    training = config.training
    client = connect(mongo_uri)
    try:
        cursor = client[database][config.mongo.songs_collection].find(
            {"features.year": {"$ne": None}}, read_projection(training.song_features),
            batch_size=2000)
        rows = [row for row in (song_row(doc, training.song_features) for doc in cursor)
                if row[4] is None]
    finally:
        client.close()
    return {"artist": np.array([row[1] for row in rows]),
            "year": np.array([row[2] for row in rows], dtype=float),
            "decade": np.array([row[3] for row in rows]),
            "x": np.array([row[5:] for row in rows], dtype=float)}


def sklearn_side(rows: Dict[str, np.ndarray], config: Any) -> Dict[str, Any]:
    """The job's defaults in scikit-learn on the same rows, split and folds."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error
    from sklearn.model_selection import PredefinedSplit
    from sklearn.neural_network import MLPClassifier

    training = config.training
    test = np.array([is_test_artist(a, training.seed, training.test_fraction)
                     for a in rows["artist"]])
    x = rows["x"][:, rows["x"][~test].std(axis=0) > 0]  # constant columns dropped
    x_train, x_test = x[~test], x[test]
    mapping = merge_rare_decades(
        dict(zip(*np.unique(rows["decade"], return_counts=True))), training.min_decade_songs)
    classes = sorted(set(mapping.values()))
    label = np.array([classes.index(mapping[d]) for d in rows["decade"]])
    counts = dict(zip(*np.unique(label[~test], return_counts=True)))
    weights = class_weights(counts) if training.class_weighting else {}
    sample_weight = np.array([weights.get(v, 1.0) for v in label[~test]])
    strategy = resolve_grid_strategy(training.grid_strategy, len(x_train), training.cv_max_songs)
    held_out = held_out_folds(strategy, training.folds)
    fold = np.array([artist_fold(a, training.seed, training.folds) for a in rows["artist"][~test]])
    split = PredefinedSplit(np.where(np.isin(fold, held_out), fold, -1))
    grids, n = training.grids, len(x_train)
    seed = training.seed
    classifiers = {
        "logistic_regression": (LogisticRegression(max_iter=100), {
            "C": [1.0 / (r * n) for r in grids["logistic_regression"]["regParam"]]}),
        "random_forest_classifier": (RandomForestClassifier(random_state=seed), {
            "n_estimators": grids["random_forest_classifier"]["numTrees"],
            "max_depth": grids["random_forest_classifier"]["maxDepth"]}),
        "multilayer_perceptron": (MLPClassifier(solver="lbfgs", random_state=seed), {
            "hidden_layer_sizes": [tuple(h) for h in
                                   grids["multilayer_perceptron"]["hidden_layers"]],
            "max_iter": grids["multilayer_perceptron"]["maxIter"]}),
    }
    regressors = {
        "linear_regression": (Ridge(), {
            "alpha": [r * n for r in grids["linear_regression"]["regParam"]]}),
        "random_forest_regressor": (RandomForestRegressor(max_features=1 / 3,
                                                          random_state=seed), {
            "n_estimators": grids["random_forest_regressor"]["numTrees"],
            "max_depth": grids["random_forest_regressor"]["maxDepth"]}),
    }
    scoring = "f1_macro" if training.decade_selection_metric == "macro_f1" else "accuracy"
    started = time.time()
    decade = _search({k: v for k, v in classifiers.items() if k in training.classifiers},
                     x_train, label[~test], split, scoring, sample_weight)
    year = _search({k: v for k, v in regressors.items() if k in training.regressors},
                   x_train, rows["year"][~test], split, "neg_root_mean_squared_error")
    seconds = time.time() - started
    predicted = decade[1].predict(x_test)
    return {"sklearn_s": round(seconds, 1), "sklearn_decade": {
        "chosen": decade[0], "accuracy": accuracy_score(label[test], predicted),
        "macro_f1": f1_score(label[test], predicted, average="macro")},
        "sklearn_year": {"chosen": year[0], "mae": mean_absolute_error(
            rows["year"][test], year[1].predict(x_test))}}


def _search(models: Dict[str, Any], x: np.ndarray, y: np.ndarray, split: Any, scoring: str,
            weight: Optional[np.ndarray] = None) -> Any:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for name, (estimator, grid) in models.items():
        search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("model", estimator)]),
                              {"model__" + k: v for k, v in grid.items()}, cv=split,
                              scoring=scoring, n_jobs=2)
        supports_weight = weight is not None and name != "multilayer_perceptron"
        search.fit(x, y, **({"model__sample_weight": weight} if supports_weight else {}))
        if best is None or search.best_score_ > best[0]:
            best = (search.best_score_, name, search.best_estimator_)
    return best[1], best[2]


def bench_size(mongo_uri: str, size: int, work: Path) -> Dict[str, Any]:
    config = load_config()
    database = "{}{}".format(DATABASE_PREFIX, size)
    client = connect(mongo_uri)
    started = time.time()
    try:
        client.drop_database(database)
        insert_feature_songs(client[database][config.mongo.songs_collection], size, seed=size,
                             partition_buckets=config.ingest.partition_buckets)
    finally:
        client.close()
    row = {"size": size, "generate_insert_s": round(time.time() - started, 1)}
    row.update(run_spark(mongo_uri, database, str(work / "artifacts")))
    row.update(sklearn_side(load_rows(mongo_uri, database, config), config))
    row["ratio"] = round(row["spark_s"] / row["sklearn_s"], 2)
    client = connect(mongo_uri)
    client.drop_database(database)
    client.close()
    return row


def plot_curve(path: str, rows: Sequence[Dict[str, Any]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["size"] for row in rows]
    panels = [
        ("Training time, default models and grids", "training seconds (2 shared cores)",
         [("spark_s", "Spark ML (this job)"), ("sklearn_s", "scikit-learn")]),
        ("Job memory", "peak RSS (MB)",
         [("driver_python_mb", "driver (Python)"), ("driver_jvm_mb", "JVM (local mode)")]),
    ]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (title, ylabel, series) in zip(axes, panels):
        for (key, label), marker in zip(series, ("o-", "s-")):
            axis.plot(sizes, [row[key] for row in rows], marker, label=label)
        axis.set_xscale("log")
        axis.set_xlabel("songs")
        axis.set_ylabel(ylabel)
        axis.set_title(title)
        axis.legend()
    axes[0].set_yscale("log")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,500000",
                        help="comma-separated song counts")
    parser.add_argument("--plot", default="", help="write the curve as a PNG here")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-training-scale-"))
    port = services.free_port()
    server = services.mongo_service(work, port, storage=str(work / "mongo"))
    server.start()
    rows: List[Dict[str, Any]] = []
    try:
        for size in sizes:
            rows.append(bench_size(services.mongo_uri(port), size, work))
            print(json.dumps(rows[-1], default=str), flush=True)
    finally:
        server.stop()
    by_size = {row["size"]: row for row in rows}
    growth = None
    if 10000 in by_size and 100000 in by_size:
        growth = round(by_size[100000]["spark_s"] / by_size[10000]["spark_s"], 2)
    if args.plot:
        plot_curve(args.plot, rows)
    print(json.dumps({"sizes": sizes, "spark_s": [r["spark_s"] for r in rows],
                      "sklearn_s": [r["sklearn_s"] for r in rows],
                      "ratio": [r["ratio"] for r in rows],
                      "growth_10k_to_100k": growth,
                      "driver_python_mb": [r["driver_python_mb"] for r in rows],
                      "driver_jvm_mb": [r["driver_jvm_mb"] for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
