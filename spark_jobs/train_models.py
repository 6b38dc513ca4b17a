"""Train, evaluate and impute: the pipeline's second Spark step.

    spark-submit spark_jobs/train_models.py --config <toml|json> [--set k=v ...]
        --run-id <id> [--summary-path <path|s3://>] [--champion-uri <run folder>]

Reads the songs' features from MongoDB in parallel (msdlib.io.dataset), splits them by
artist (msdlib.core.splits), cross-validates the configured decade classifiers and year
regressors (msdlib.core.models), scores the chosen ones and the baselines on the test split
(msdlib.core.evaluation), writes the run's artifacts (msdlib.io.report) and fills in
``predicted`` for the unknown-year songs (msdlib.io.imputation). The Mongo URI comes from
$MSD_MONGO_URI. Exit codes: 0 success, 1 too few usable songs or artists, 2 bad usage
or configuration, 3 a crash (msdlib.cli). The JSON summary is the last stdout line.

Python 3.9 syntax: this file ships to EMR.
"""
import datetime
import sys
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from msdlib import cli
from msdlib.config import PipelineConfig, TrainingSettings
from msdlib.io.dataset import (SKIP_MISSING, constant_columns, count_unpartitioned,
                            feature_columns, load_songs, summarize_songs)
from msdlib.core.evaluation import (classification_metrics, majority_baseline, spark_class_counts,
                               spark_confusion, spark_regression_metrics)
from msdlib.core.split_digest import spark_split_digest
from msdlib.io.champion import score_champion
from msdlib.io.imputation import impute
from msdlib.core.models import (DECADE_PREDICTION_COL, FOLD_COL, LABEL_COL, WEIGHT_COL,
                           YEAR_LABEL_COL, YEAR_PREDICTION_COL, CandidateResult,
                           TrainingError, check_model_names, choose_best, class_weights,
                           cross_validate, merge_rare_decades, training_partitions,
                           validate_grid_params, with_decade_names)
from msdlib.io.mongo import MongoConfigError, mongo_uri_from_env, redact_uri
from msdlib.io.report import (CONFUSION_PLOT, F1_PLOT, METRICS_FILE, METRICS_SCHEMA_VERSION,
                           REPORT_FILE, YEAR_PLOT, RunArtifacts, plot_confusion,
                           plot_f1_per_decade, plot_year_scatter, render_report,
                           sample_pairs)
from msdlib.core.splits import spark_fold, spark_is_test


def main(argv: List[str]) -> int:
    parser = cli.build_parser("Train decade and year models on the songs in MongoDB, "
                              "evaluate them and impute unknown years.")
    parser.add_argument("--champion-uri", default="",
                        help="run folder of the current champion, scored on the same test "
                             "split (empty: no champion yet)")
    args = parser.parse_args(argv)
    config = cli.load_job_config(args)
    run_id = cli.resolve_run_id(args.run_id)
    check_settings(config.training)
    try:
        check_model_names(config.training.classifiers, config.training.regressors,
                          config.training.grids)
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from exc
    try:
        mongo_uri = mongo_uri_from_env()
    except MongoConfigError as exc:
        raise cli.UsageError(str(exc)) from exc
    started = time.time()
    spark = cli.create_spark_session(config, "msd-train-models")
    try:
        try:
            validate_grid_params(config.training.grids)
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from exc
        print("training on {} database {!r}".format(redact_uri(mongo_uri),
                                                    config.mongo.database), file=sys.stderr)
        summary = run_training(spark, config, run_id, mongo_uri, args.champion_uri)
        exit_code = cli.EXIT_OK
    except TrainingError as exc:
        print("error: {}".format(exc), file=sys.stderr, flush=True)
        summary = {"run_id": run_id, "status": "failed", "error": str(exc)}
        exit_code = cli.EXIT_FAILED_CHECKS
    finally:
        spark.stop()
    summary["seconds"] = round(time.time() - started, 3)
    cli.emit_summary(summary, args.summary_path)
    return exit_code


def check_settings(training: TrainingSettings) -> None:
    """Usage errors in the [training] section (exit code 2)."""
    if not 0.0 < training.test_fraction < 1.0:
        raise cli.UsageError("training.test_fraction must be in (0, 1)")
    if training.folds < 2:
        raise cli.UsageError("training.folds must be at least 2")
    if training.parallelism < 1 or training.min_decade_songs < 1 \
            or training.write_batch_size < 1 or training.read_partitions < 0:
        raise cli.UsageError("training.parallelism, min_decade_songs and write_batch_size "
                             "must be positive, read_partitions not negative")


def run_training(spark: Any, config: PipelineConfig, run_id: str, mongo_uri: str,
                 champion_uri: str = "") -> Dict[str, Any]:
    training = config.training
    watch = Stopwatch()
    songs, counts = read_songs(spark, config, mongo_uri)
    watch.lap("read")
    valid = songs.filter(songs.skip_reason.isNull())
    prepared = prepare_labelled(valid.filter(valid.year.isNotNull()), training,
                                spark.sparkContext.defaultParallelism)
    data = prepared["data"]
    train, test = data["train_frame"], data["test_frame"]
    columns = feature_columns(training.song_features)
    constant = constant_columns(train, columns)
    used = [name for name in columns if name not in constant]
    if not used:
        raise TrainingError("every feature is constant on the training split")
    watch.lap("prepare")
    decade = train_decade(train, test, used, prepared, training)
    watch.lap("decade_models")
    year = train_year(train, test, used, training)
    watch.lap("year_models")
    champion = score_champion(champion_uri, test, prepared["classes"], prepared["mapping"]) \
        if champion_uri else None
    evaluation_split = spark_split_digest(test)
    watch.lap("champion")

    artifacts = RunArtifacts(training.artifacts_uri, run_id)
    decade_model = with_decade_names(decade.pop("model"), prepared["classes"])
    year_model = year.pop("model")
    for task, model in (("decade", decade_model), ("year", year_model)):
        task_metrics = decade if task == "decade" else year
        task_metrics["model_dir"] = "models/{}_{}".format(task, task_metrics["chosen"])
        task_metrics["model_path"] = artifacts.save_model(spark, model,
                                                          task_metrics["model_dir"])
    watch.lap("save_models")
    imputation = None
    if training.impute:
        imputation = impute(valid.filter(valid.year.isNull()), decade_model, year_model,
                            mongo_uri, config.mongo.database, config.mongo.songs_collection,
                            "{}/{}+{}".format(run_id, decade["chosen"], year["chosen"]),
                            year["train_year_range"], training.write_batch_size)
        watch.lap("impute")

    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "training_settings": config.to_dict()["training"],
        "data": dict(counts, **{k: v for k, v in data.items() if not k.endswith("_frame")}),
        "features": {"count": len(columns), "used": used, "constant_dropped": constant,
                     "note": "constant on the training split, so they carry no signal"},
        "decade": decade,
        "year": year,
        "imputation": imputation,
        "evaluation_split": evaluation_split,
        "champion": champion,
        "seconds": watch.laps,
    }
    write_plots(artifacts, metrics, year.pop("test_predictions"), data["test"])
    watch.lap("report")
    artifacts.write_json(METRICS_FILE, metrics)
    artifacts.write_text(REPORT_FILE, render_report(metrics))
    location = artifacts.publish()
    return job_summary(run_id, metrics, location)


class Stopwatch:
    """Seconds per stage: ``lap(name)`` records the time since the previous lap."""

    def __init__(self) -> None:
        self.laps = {}  # type: Dict[str, float]
        self._last = time.time()

    def lap(self, name: str) -> None:
        now = time.time()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def read_songs(spark: Any, config: PipelineConfig, mongo_uri: str) -> Tuple[Any, Dict[str, Any]]:
    """The persisted songs DataFrame and its counts; too few labelled songs fail the run."""
    training = config.training
    partitions = training.read_partitions or 2 * spark.sparkContext.defaultParallelism
    songs = load_songs(spark, mongo_uri, config.mongo.database,
                       config.mongo.songs_collection, config.ingest.partition_buckets,
                       partitions, training.song_features,
                       config.ingest.year_range).persist()
    counts = summarize_songs(songs)
    unpartitioned = count_unpartitioned(mongo_uri, config.mongo.database,
                                        config.mongo.songs_collection)
    if unpartitioned:
        counts["skipped"] += unpartitioned
        reasons = counts["skipped_by_reason"]
        reasons[SKIP_MISSING] = reasons.get(SKIP_MISSING, 0) + unpartitioned
    if counts["labelled"] < training.min_labelled_songs:
        raise TrainingError(
            "only {} labelled songs with valid features, training.min_labelled_songs is {}"
            .format(counts["labelled"], training.min_labelled_songs))
    return songs, counts


def prepare_labelled(labelled: Any, training: TrainingSettings, parallelism: int
                     ) -> Dict[str, Any]:
    """Decade classes (rare ones merged), artist-disjoint split, folds, class weights."""
    from pyspark.sql import functions as F

    decade_counts = {int(row["decade"]): int(row["count"])
                     for row in labelled.groupBy("decade").count().collect()}
    mapping = merge_rare_decades(decade_counts, training.min_decade_songs)
    classes = sorted(set(mapping.values()))
    if len(classes) < 2:
        raise TrainingError("one decade class only ({}): nothing to classify; lower "
                            "training.min_decade_songs or add songs".format(classes[0]))
    label_of = _literal_map({decade: float(classes.index(target))
                             for decade, target in mapping.items()})
    frame = labelled.select(
        "*", label_of[F.col("decade")].alias(LABEL_COL),
        F.col("year").cast("double").alias(YEAR_LABEL_COL),
        spark_is_test("artist_id", training.seed, training.test_fraction).alias("is_test"),
        spark_fold("artist_id", training.seed, training.folds).alias(FOLD_COL))
    data = split_counts(frame, training.folds)
    train_counts = spark_class_counts(frame.filter(~frame.is_test), LABEL_COL)
    weights = class_weights(train_counts) if training.class_weighting else {}
    weight = _literal_map(weights)[F.col(LABEL_COL)] if weights else F.lit(1.0)
    partitions = training_partitions(data["train"], parallelism, training.rows_per_partition)
    train = frame.filter(~frame.is_test).withColumn(WEIGHT_COL, weight) \
        .coalesce(partitions).persist()
    test = frame.filter(frame.is_test).withColumn(WEIGHT_COL, F.lit(1.0)) \
        .coalesce(partitions).persist()
    data.update(train_frame=train, test_frame=test)
    return {"data": data, "classes": classes, "mapping": mapping,
            "train_counts": train_counts,
            "weights": {str(classes[label]): w for label, w in sorted(weights.items())}}


def split_counts(frame: Any, folds: int) -> Dict[str, int]:
    """Songs and artists per side, checked: both sides and every fold non-empty."""
    from pyspark.sql import functions as F

    sides = {bool(row["is_test"]): row for row in frame.groupBy("is_test").agg(
        F.count(F.lit(1)).alias("songs"),
        F.countDistinct("artist_id").alias("artists")).collect()}
    if True not in sides or False not in sides:
        raise TrainingError("the artist-disjoint split left the {} side empty: too few "
                            "artists for training.test_fraction".format(
                                "test" if True not in sides else "training"))
    train_folds = frame.filter(~frame.is_test).select(FOLD_COL).distinct().count()
    if train_folds < folds:
        raise TrainingError("training artists fill only {} of training.folds={} folds"
                            .format(train_folds, folds))
    return {"train": sides[False]["songs"], "test": sides[True]["songs"],
            "train_artists": sides[False]["artists"], "test_artists": sides[True]["artists"]}


def _literal_map(mapping: Mapping[Any, Any]) -> Any:
    from itertools import chain

    from pyspark.sql import functions as F

    return F.create_map([F.lit(x) for x in chain(*sorted(mapping.items()))])


def train_decade(train: Any, test: Any, used: Sequence[str], prepared: Mapping[str, Any],
                 training: TrainingSettings) -> Dict[str, Any]:
    weighted = training.class_weighting
    candidates = [cross_validate(name, train, used, training.grids.get(name, {}),
                                 training.folds, training.parallelism, training.seed,
                                 weighted) for name in training.classifiers]
    best = choose_best(candidates)
    classes = prepared["classes"]
    confusion = {(classes[int(actual)], classes[int(predicted)]): count
                 for (actual, predicted), count in spark_confusion(
                     best.model.transform(test), LABEL_COL, DECADE_PREDICTION_COL).items()}
    test_counts = {}  # type: Dict[int, int]
    for (actual, _), count in confusion.items():
        test_counts[actual] = test_counts.get(actual, 0) + count
    train_counts = {classes[label]: count
                    for label, count in prepared["train_counts"].items()}
    baseline = majority_baseline(train_counts, test_counts, classes)
    baseline["name"] = "majority_decade"
    return dict(_task_summary(candidates, best), **{
        "classes": classes,
        "decade_mapping": {str(k): v for k, v in sorted(prepared["mapping"].items())},
        "min_decade_songs": training.min_decade_songs,
        "class_weights": prepared["weights"],
        "train_class_counts": {str(k): v for k, v in sorted(train_counts.items())},
        "test": classification_metrics(confusion, classes),
        "baseline": baseline,
    })


def train_year(train: Any, test: Any, used: Sequence[str], training: TrainingSettings
               ) -> Dict[str, Any]:
    from pyspark.sql import functions as F

    candidates = [cross_validate(name, train, used, training.grids.get(name, {}),
                                 training.folds, training.parallelism, training.seed,
                                 False) for name in training.regressors]
    best = choose_best(candidates)
    predictions = best.model.transform(test)
    mean_year, first_year, last_year = train.agg(
        F.avg(YEAR_LABEL_COL), F.min("year"), F.max("year")).first()
    baseline = spark_regression_metrics(
        test.withColumn("baseline_year", F.lit(float(mean_year))), YEAR_LABEL_COL,
        "baseline_year")
    baseline.update(name="mean_year", predicted_year=mean_year)
    return dict(_task_summary(candidates, best), **{
        "test": spark_regression_metrics(predictions, YEAR_LABEL_COL, YEAR_PREDICTION_COL),
        "baseline": baseline,
        "train_year_range": [int(first_year), int(last_year)],
        "test_predictions": predictions,
    })


def _task_summary(candidates: Sequence[CandidateResult], best: CandidateResult
                  ) -> Dict[str, Any]:
    return {"chosen": best.name, "cv_metric": best.cv_metric, "cv_score": best.cv_score,
            "candidates": [candidate.summary() for candidate in candidates],
            "model": best.model}


def write_plots(artifacts: RunArtifacts, metrics: Dict[str, Any], test_predictions: Any,
                test_count: int) -> None:
    decade, year = metrics["decade"], metrics["year"]
    names = [str(c) for c in decade["classes"]]
    plot_confusion(artifacts.local_path(CONFUSION_PLOT), decade["test"]["confusion_matrix"],
                   names)
    plot_f1_per_decade(artifacts.local_path(F1_PLOT), names,
                       [decade["test"]["per_class"][n]["f1"] for n in names],
                       [decade["baseline"]["per_class"][n]["f1"] for n in names],
                       decade["chosen"])
    pairs = sample_pairs(test_predictions, YEAR_LABEL_COL, YEAR_PREDICTION_COL, test_count)
    plot_year_scatter(artifacts.local_path(YEAR_PLOT), pairs,
                      "{}: test MAE {:.1f} years".format(year["chosen"], year["test"]["mae"]))
    metrics["plots"] = {"confusion_matrix": CONFUSION_PLOT, "f1_per_decade": F1_PLOT,
                        "year_predicted_vs_actual": YEAR_PLOT,
                        "year_sample_size": len(pairs)}


def job_summary(run_id: str, metrics: Mapping[str, Any], location: str) -> Dict[str, Any]:
    data, decade, year = metrics["data"], metrics["decade"], metrics["year"]
    imputation = metrics["imputation"]
    return {
        "run_id": run_id,
        "status": "succeeded",
        "counts": {key: data[key] for key in ("labelled", "unknown_year", "skipped",
                                              "skipped_by_reason", "train", "test")},
        "decade": {
            "chosen": decade["chosen"], "cv_metric": decade["cv_metric"],
            "classes": decade["classes"],
            "merged_decades": {k: v for k, v in decade["decade_mapping"].items()
                               if k != str(v)},
            "cv_scores": {c["name"]: c["cv_score"] for c in decade["candidates"]},
            "test": {k: decade["test"][k] for k in ("accuracy", "macro_f1", "weighted_f1")},
            "baseline": {k: decade["baseline"][k]
                         for k in ("accuracy", "macro_f1", "weighted_f1")},
        },
        "year": {
            "chosen": year["chosen"], "cv_metric": year["cv_metric"],
            "cv_scores": {c["name"]: c["cv_score"] for c in year["candidates"]},
            "test": {k: year["test"][k] for k in ("mae", "rmse", "r2")},
            "baseline": {k: year["baseline"][k] for k in ("mae", "rmse", "r2")},
        },
        "constant_features_dropped": metrics["features"]["constant_dropped"],
        "artifacts": location,
        "imputed": imputation["imputed"] if imputation else 0,
        "evaluation_split": metrics["evaluation_split"],
        "champion": metrics["champion"],
        "stage_seconds": metrics["seconds"],
    }


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
