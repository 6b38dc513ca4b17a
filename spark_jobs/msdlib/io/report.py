"""A training run's artifacts under ``<training.artifacts_uri>/<run_id>/``.

    metrics.json                   versioned metrics (``schema_version``)
    report.md                      readable report linking everything below
    models/decade_<model>/         Spark PipelineModel of the chosen decade classifier
    models/year_<model>/           Spark PipelineModel of the chosen year regressor
    plots/confusion_matrix.png     test confusion matrix (row-normalised, with counts)
    plots/year_predicted_vs_actual.png   a bounded sample of test songs
    plots/f1_per_decade.png        test F1 of the model and the majority baseline

The folder is a local path (relative: against ``msdlib.config.CHECKOUT_DIR``) or an
``s3://`` prefix. Spark saves models straight to S3 when its Hadoop has a FileSystem
for the scheme (EMRFS on EMR); otherwise (pip pyspark, no hadoop-aws) everything is
written to a local staging folder and ``publish`` uploads it with boto3, honouring
$AWS_ENDPOINT_URL.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import json
import os
import shutil
import tempfile
from typing import Any, List, Mapping, Sequence, Tuple

from msdlib.config import CHECKOUT_DIR
from msdlib.io.sources import is_s3, s3_client, split_s3_uri

METRICS_SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
CONFUSION_PLOT = "plots/confusion_matrix.png"
YEAR_PLOT = "plots/year_predicted_vs_actual.png"
F1_PLOT = "plots/f1_per_decade.png"


def run_uri(artifacts_uri: str, run_id: str) -> str:
    """The run's folder: ``<artifacts_uri>/<run_id>``, local paths made absolute."""
    if is_s3(artifacts_uri):
        return artifacts_uri.rstrip("/") + "/" + run_id
    base = artifacts_uri if os.path.isabs(artifacts_uri) \
        else os.path.join(CHECKOUT_DIR, artifacts_uri)
    return os.path.join(os.path.normpath(base), run_id)


class RunArtifacts:
    """Writes one run's artifacts locally (the final folder or an S3 staging folder)."""

    def __init__(self, artifacts_uri: str, run_id: str) -> None:
        self.uri = run_uri(artifacts_uri, run_id)
        self.remote = is_s3(self.uri)
        if self.remote:
            self.local_dir = tempfile.mkdtemp(prefix="msd-artifacts-")
        else:
            self.local_dir = self.uri
            os.makedirs(self.local_dir, exist_ok=True)
        self._uploaded_by_spark = []  # type: List[str]

    def local_path(self, relative: str) -> str:
        path = os.path.join(self.local_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def final_uri(self, relative: str) -> str:
        return self.uri.rstrip("/") + "/" + relative if self.remote \
            else os.path.join(self.uri, relative)

    def save_model(self, spark: Any, model: Any, relative: str) -> str:
        """Save a PipelineModel (overwriting a re-run's); returns where it ends up."""
        if self.remote and _hadoop_supports(spark, self.uri):
            model.write().overwrite().save(self.final_uri(relative))
            self._uploaded_by_spark.append(relative)
        else:
            model.write().overwrite().save("file://" + self.local_path(relative))
        return self.final_uri(relative)

    def write_json(self, relative: str, data: Mapping[str, Any]) -> str:
        with open(self.local_path(relative), "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
        return self.final_uri(relative)

    def write_text(self, relative: str, text: str) -> str:
        with open(self.local_path(relative), "w", encoding="utf-8") as handle:
            handle.write(text)
        return self.final_uri(relative)

    def publish(self) -> str:
        """Upload the staging folder to S3 (no-op for a local run); returns the run URI."""
        if self.remote:
            bucket, prefix = split_s3_uri(self.uri)
            client = s3_client()
            for root, _, files in os.walk(self.local_dir):
                for name in files:
                    path = os.path.join(root, name)
                    relative = os.path.relpath(path, self.local_dir).replace(os.sep, "/")
                    client.upload_file(path, bucket, prefix.rstrip("/") + "/" + relative)
            shutil.rmtree(self.local_dir, ignore_errors=True)
        return self.uri


def _hadoop_supports(spark: Any, uri: str) -> bool:
    """Whether Spark's Hadoop has a FileSystem for the URI's scheme."""
    jvm = spark.sparkContext._jvm
    try:
        jvm.org.apache.hadoop.fs.FileSystem.get(
            jvm.java.net.URI(uri), spark.sparkContext._jsc.hadoopConfiguration())
        return True
    except Exception:  # Py4JJavaError: UnsupportedFileSystemException and kin
        return False


def sample_pairs(predictions: Any, actual_col: str, predicted_col: str, total: int,
                 limit: int = 2000, seed: int = 0) -> List[Tuple[float, float]]:
    """At most ``limit`` (actual, predicted) pairs, sampled in Spark: never a full collect."""
    fraction = min(1.0, 1.2 * limit / max(total, 1))
    rows = predictions.select(actual_col, predicted_col) \
        .sample(withReplacement=False, fraction=fraction, seed=seed).limit(limit).collect()
    return [(float(row[0]), float(row[1])) for row in rows]


# --- plots (matplotlib's Agg backend: no display needed) ---

def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_confusion(path: str, matrix: Sequence[Sequence[float]], names: Sequence[str]) -> None:
    plt = _pyplot()
    rows = [[value / (sum(row) or 1) for value in row] for row in matrix]
    size = max(4.0, 0.6 * len(names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=45)
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names)
    axes.set_xlabel("predicted decade")
    axes.set_ylabel("actual decade")
    axes.set_title("Test confusion matrix (row share, counts)")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(j, i, str(int(value)), ha="center", va="center",
                      color="white" if rows[i][j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_year_scatter(path: str, pairs: Sequence[Tuple[float, float]], title: str) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 6))
    if pairs:
        actual = [pair[0] for pair in pairs]
        predicted = [pair[1] for pair in pairs]
        axes.scatter(actual, predicted, s=8, alpha=0.5)
        low, high = min(actual + predicted), max(actual + predicted)
        axes.plot([low, high], [low, high], color="grey", linewidth=1, label="ideal")
        axes.legend(loc="upper left")
    axes.set_xlabel("actual year")
    axes.set_ylabel("predicted year")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_f1_per_decade(path: str, names: Sequence[str], model_f1: Sequence[float],
                       baseline_f1: Sequence[float], model_name: str) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 2), 4))
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], model_f1, width=0.4, label=model_name)
    axes.bar([p + 0.2 for p in positions], baseline_f1, width=0.4, label="majority baseline")
    axes.set_xticks(list(positions))
    axes.set_xticklabels(names)
    axes.set_ylim(0, 1)
    axes.set_ylabel("test F1")
    axes.set_title("F1 per decade")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- the Markdown report ---

def render_report(metrics: Mapping[str, Any]) -> str:
    """A readable Markdown report of ``metrics`` (paths relative to the run folder)."""
    data = metrics["data"]
    decade = metrics["decade"]
    year = metrics["year"]
    lines = [
        "# Training run `{}`".format(metrics["run_id"]),
        "",
        "Created {} · metrics schema v{} · [metrics.json]({})".format(
            metrics["created_at"], metrics["schema_version"], METRICS_FILE),
        "",
        "## Data",
        "",
        "| songs | count |", "| --- | ---: |",
        "| labelled (known year) | {} |".format(data["labelled"]),
        "| unknown year | {} |".format(data["unknown_year"]),
        "| skipped (missing or non-finite features) | {} |".format(data["skipped"]),
        "| train / test (artist-disjoint) | {} / {} |".format(data["train"], data["test"]),
        "| artists train / test | {} / {} |".format(data["train_artists"],
                                                     data["test_artists"]),
        "",
    ]
    if data["skipped_by_reason"]:
        lines += ["Skipped by reason: {}.".format(", ".join(
            "{} {}".format(reason, count)
            for reason, count in sorted(data["skipped_by_reason"].items()))), ""]
    features = metrics["features"]
    lines += ["Features: {} used of {}. Constant features dropped: {}.".format(
        len(features["used"]), features["count"],
        ", ".join(features["constant_dropped"]) or "none"), ""]
    merged = {k: v for k, v in decade["decade_mapping"].items() if str(k) != str(v)}
    lines += ["Decade classes: {}. Rare decades (< {} songs) merged: {}.".format(
        ", ".join(str(d) for d in decade["classes"]), decade["min_decade_songs"],
        ", ".join("{}→{}".format(k, v) for k, v in sorted(merged.items())) or "none"), ""]
    if decade["class_weights"]:
        lines += ["Class weights (balanced): {}.".format(", ".join(
            "{} {:.2f}".format(k, v) for k, v in sorted(decade["class_weights"].items()))),
            ""]
    selection = metrics.get("selection")
    if selection:
        lines += ["Model selection: {} on artist folds ({} of {} folds held out in turn), "
                  "{} fits at a time.".format(
                      "cross-validation" if selection["grid_strategy"] == "cv"
                      else "one train/validation split", len(selection["held_out_folds"]),
                      selection["folds"], selection["parallelism"]), ""]
    lines += _task_section("Decade classification", decade,
                           ["accuracy", "macro_f1", "weighted_f1"])
    lines += [decade_verdict(decade, metrics["training_settings"]), ""]
    lines += ["![confusion matrix]({})".format(CONFUSION_PLOT), "",
              "![F1 per decade]({})".format(F1_PLOT), "",
              "| decade | precision | recall | F1 | support |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, stats in decade["test"]["per_class"].items():
        lines.append("| {} | {:.3f} | {:.3f} | {:.3f} | {} |".format(
            name, stats["precision"], stats["recall"], stats["f1"], stats["support"]))
    lines.append("")
    lines += _task_section("Year regression", year, ["mae", "rmse", "r2"])
    lines += ["![predicted vs actual year]({})".format(YEAR_PLOT), ""]
    return "\n".join(lines)


def _task_section(title: str, task: Mapping[str, Any], metric_names: Sequence[str]
                  ) -> List[str]:
    lines = ["## " + title, "",
             "| model | CV {} | best params | seconds |".format(task["cv_metric"]),
             "| --- | ---: | --- | ---: |"]
    for candidate in task["candidates"]:
        mark = " (chosen)" if candidate["name"] == task["chosen"] else ""
        lines.append("| {}{} | {:.4f} | {} | {} |".format(
            candidate["name"], mark, candidate["cv_score"],
            json.dumps(candidate["best_params"], sort_keys=True), candidate["seconds"]))
    lines += ["", "Model: [{}]({}).".format(task["chosen"], task["model_dir"]), "",
              "| test metric | {} | {} |".format(task["chosen"], task["baseline"]["name"]),
              "| --- | ---: | ---: |"]
    for name in metric_names:
        lines.append("| {} | {:.4f} | {:.4f} |".format(
            name, task["test"][name], task["baseline"][name]))
    lines.append("")
    return lines



def decade_verdict(decade: Mapping[str, Any], training: Mapping[str, Any]) -> str:
    """The decade model against always predicting the majority decade, in plain words."""
    test, baseline = decade["test"], decade["baseline"]
    majority = str(baseline["predicted_label"])
    share = baseline["per_class"][majority]["support"] / baseline["count"]
    text = ("Against always predicting the majority decade ({}s, {:.0%} of the test songs): "
            "accuracy {:.3f} vs {:.3f}, macro-F1 {:.3f} vs {:.3f}.".format(
                majority, share, test["accuracy"], baseline["accuracy"], test["macro_f1"],
                baseline["macro_f1"]))
    wins_accuracy = test["accuracy"] > baseline["accuracy"]
    wins_f1 = test["macro_f1"] > baseline["macro_f1"]
    if wins_accuracy and wins_f1:
        return text + " The model beats it on both."
    if wins_f1:
        weighting = " with balanced class weights" if training.get("class_weighting") else ""
        return text + (
            " It loses on accuracy: the baseline is right on every {}s song and wrong on "
            "all others, while the model, chosen for {}{}, trades hits on the common decade "
            "for recall on the rarer ones (per-decade recall below). To choose for accuracy "
            "instead, set training.decade_selection_metric = \"accuracy\" and "
            "training.class_weighting = false.".format(
                majority, training.get("decade_selection_metric", "macro_f1"), weighting))
    if wins_accuracy:
        return text + (" It loses on macro-F1: chosen for {}, it predicts mostly the common "
                       "decades. Set training.decade_selection_metric = \"macro_f1\" to reward "
                       "rare-decade recall.".format(
                           training.get("decade_selection_metric", "accuracy")))
    return text + (" It beats it on neither: with {} training songs the timbre features "
                   "carry too little decade signal for this model.".format(
                       sum(decade["train_class_counts"].values())))
