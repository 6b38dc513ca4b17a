"""The training job's steps (spark_jobs/train_models.py): extract → transform → load.

* extract, ``read_songs``: the songs' features from MongoDB (msdlib.io.dataset), counted;
* transform, ``train_and_evaluate``: decade labels (rare decades merged), the
  artist-disjoint split and folds (msdlib.core.splits), the features assembled and
  scaled ONCE and cached, every configured model family tuned on the artist folds
  (msdlib.core.models, msdlib.core.selection), the chosen models and the baselines
  scored on the test split (msdlib.core.evaluation);
* load, ``publish_run``: the models, metrics, plots and report (msdlib.io.report).

Imputing unknown years is not this job's: after the champion/challenger gate the
champion does it (spark_jobs/impute_years.py).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import dataclasses
import datetime
import time
from typing import Any, Dict, Mapping, Sequence, Tuple

from msdlib import cli
from msdlib.config import PipelineConfig, TrainingSettings
from msdlib.core.evaluation import (classification_metrics,
                                    majority_baseline, spark_class_counts, spark_confusion,
                                    spark_regression_metrics)
from msdlib.core.models import (CLASSIFIERS, DECADE_PREDICTION_COL, FOLD_COL, LABEL_COL,
                                REGRESSORS, WEIGHT_COL, YEAR_LABEL_COL,
                                YEAR_PREDICTION_COL, CandidateResult, SearchSettings,
                                TrainingError, choose_best,
                                class_weights, fit_scaler, full_pipeline,
                                merge_rare_decades, scaled_features, task_frame,
                                training_partitions, tune, with_decade_names)
from msdlib.core.split_digest import spark_split_digest
from msdlib.io.champion import score_champion
from msdlib.io.dataset import (SKIP_MISSING, constant_columns, count_unpartitioned,
                               feature_columns, load_songs, summarize_songs)
from msdlib.io.report import (CONFUSION_PLOT, F1_PLOT, METRICS_FILE, METRICS_SCHEMA_VERSION,
                              REPORT_FILE, YEAR_PLOT, RunArtifacts, plot_confusion,
                              plot_f1_per_decade, plot_year_scatter, render_report,
                              sample_pairs)
from msdlib.core.selection import held_out_folds, resolve_grid_strategy
from msdlib.core.splits import spark_fold, spark_is_test


class Stopwatch:
    """Seconds per stage: ``lap(name)`` records the time since the previous lap."""

    def __init__(self) -> None:
        self.laps = {}  # type: Dict[str, float]
        self._last = time.time()

    def lap(self, name: str) -> None:
        now = time.time()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


# --- extract ---

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


# --- transform ---

def train_and_evaluate(songs: Any, counts: Mapping[str, Any], training: TrainingSettings,
                       parallelism: int, watch: Stopwatch, champion_uri: str = ""
                       ) -> Dict[str, Any]:
    """Prepare, tune, choose and score the decade and year models; score the champion
    of ``champion_uri`` (a run folder) on the same test split (msdlib.io.champion).

    Returns the run's metrics (``metrics.json`` minus run id, time and imputation) with
    ``models`` ({"decade", "year"}: the chosen PipelineModels) and ``test_predictions``.
    """
    valid = songs.filter(songs.skip_reason.isNull())
    prepared = prepare_labelled(valid.filter(valid.year.isNotNull()), training, parallelism)
    data = prepared["data"]
    train, test = data.pop("train_frame"), data.pop("test_frame")
    columns = feature_columns(training.song_features)
    constant = constant_columns(train, columns)
    used = [name for name in columns if name not in constant]
    if not used:
        raise TrainingError("every feature is constant on the training split")
    scaler = fit_scaler(train, used)
    scaled = scaled_features(train, used, scaler, [LABEL_COL, WEIGHT_COL, YEAR_LABEL_COL,
                                                   FOLD_COL]) \
        .coalesce(prepared["partitions"]).persist()
    strategy = resolve_grid_strategy(training.grid_strategy, data["train"],
                                     training.cv_max_songs)
    search = SearchSettings(folds=held_out_folds(strategy, training.folds),
                            parallelism=training.parallelism, seed=training.seed,
                            weighted=training.class_weighting,
                            decade_metric=training.decade_selection_metric,
                            layer_ends=(len(used), len(prepared["classes"])),
                            accelerator=training.accelerator)
    watch.lap("prepare")
    decade = train_decade(scaled, test, used, scaler, prepared, training, search)
    watch.lap("decade_models")
    year = train_year(scaled, test, used, scaler, training, search)
    watch.lap("year_models")
    scaled.unpersist()
    champion = score_champion(champion_uri, test, prepared["classes"], prepared["mapping"]) \
        if champion_uri else None
    evaluation_split = spark_split_digest(test)
    watch.lap("champion")
    return {
        "training_settings": dataclasses.asdict(training),
        "data": dict(counts, **data),
        "features": {"count": len(columns), "used": used, "constant_dropped": constant,
                     "note": "constant on the training split, so they carry no signal"},
        "selection": {"grid_strategy": strategy, "held_out_folds": search.folds,
                      "folds": training.folds, "parallelism": training.parallelism},
        "decade": decade,
        "year": year,
        "evaluation_split": evaluation_split,
        "champion": champion,
        "models": {"decade": decade.pop("model"), "year": year.pop("model")},
        "test_predictions": year.pop("test_predictions"),
    }


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
    # The training side is cached once scaled (train_and_evaluate); the test side here.
    data.update(train_frame=frame.filter(~frame.is_test).withColumn(WEIGHT_COL, weight),
                test_frame=frame.filter(frame.is_test).withColumn(WEIGHT_COL, F.lit(1.0))
                .coalesce(partitions).persist())
    return {"data": data, "classes": classes, "mapping": mapping,
            "train_counts": train_counts, "partitions": partitions,
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


def train_decade(scaled: Any, test: Any, used: Sequence[str], scaler: Any,
                 prepared: Mapping[str, Any], training: TrainingSettings,
                 search: SearchSettings) -> Dict[str, Any]:
    frame = task_frame(scaled, CLASSIFIERS[0])
    candidates = [tune(name, frame, training.grids.get(name, {}), search)
                  for name in training.classifiers]
    best = choose_best(candidates)
    classes = prepared["classes"]
    model = with_decade_names(full_pipeline(best.name, used, scaler, best.model), classes)
    confusion = {(classes[int(actual)], classes[int(predicted)]): count
                 for (actual, predicted), count in spark_confusion(
                     model.transform(test), LABEL_COL, DECADE_PREDICTION_COL).items()}
    test_counts = {}  # type: Dict[int, int]
    for (actual, _), count in confusion.items():
        test_counts[actual] = test_counts.get(actual, 0) + count
    train_counts = {classes[label]: count
                    for label, count in prepared["train_counts"].items()}
    baseline = majority_baseline(train_counts, test_counts, classes)
    baseline["name"] = "majority_decade"
    return dict(_task_summary(candidates, best, model), **{
        "classes": classes,
        "decade_mapping": {str(k): v for k, v in sorted(prepared["mapping"].items())},
        "min_decade_songs": training.min_decade_songs,
        "class_weights": prepared["weights"],
        "train_class_counts": {str(k): v for k, v in sorted(train_counts.items())},
        "test": classification_metrics(confusion, classes),
        "baseline": baseline,
    })


def train_year(scaled: Any, test: Any, used: Sequence[str], scaler: Any,
               training: TrainingSettings, search: SearchSettings) -> Dict[str, Any]:
    from pyspark.sql import functions as F

    frame = task_frame(scaled, REGRESSORS[0])
    candidates = [tune(name, frame, training.grids.get(name, {}), search)
                  for name in training.regressors]
    best = choose_best(candidates)
    model = full_pipeline(best.name, used, scaler, best.model)
    predictions = model.transform(test)
    mean_year, first_year, last_year = frame.agg(
        F.avg(YEAR_LABEL_COL), F.min(YEAR_LABEL_COL), F.max(YEAR_LABEL_COL)).first()
    baseline = spark_regression_metrics(
        test.withColumn("baseline_year", F.lit(float(mean_year))), YEAR_LABEL_COL,
        "baseline_year")
    baseline.update(name="mean_year", predicted_year=mean_year)
    return dict(_task_summary(candidates, best, model), **{
        "test": spark_regression_metrics(predictions, YEAR_LABEL_COL, YEAR_PREDICTION_COL),
        "baseline": baseline,
        "train_year_range": [int(first_year), int(last_year)],
        "test_predictions": predictions,
    })


def _task_summary(candidates: Sequence[CandidateResult], best: CandidateResult, model: Any
                  ) -> Dict[str, Any]:
    return {"chosen": best.name, "cv_metric": best.cv_metric, "cv_score": best.cv_score,
            "candidates": [candidate.summary() for candidate in candidates],
            "model": model}


# --- load ---

def publish_run(spark: Any, result: Dict[str, Any], config: PipelineConfig, run_id: str,
                watch: Stopwatch) -> Dict[str, Any]:
    """Save the chosen models, write metrics, plots and report; returns the job's summary."""
    artifacts = RunArtifacts(config.training.artifacts_uri, run_id)
    models = result.pop("models")
    for task, model in models.items():
        result[task]["model_dir"] = "models/{}_{}".format(task, result[task]["chosen"])
        result[task]["model_path"] = artifacts.save_model(spark, model,
                                                          result[task]["model_dir"])
    watch.lap("save_models")
    metrics = dict(result, schema_version=METRICS_SCHEMA_VERSION, run_id=run_id,
                   created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   seconds=watch.laps,
                   linear_algebra=cli.linear_algebra(spark))
    write_plots(artifacts, metrics, metrics.pop("test_predictions"), result["data"]["test"])
    watch.lap("report")
    artifacts.write_json(METRICS_FILE, metrics)
    artifacts.write_text(REPORT_FILE, render_report(metrics))
    return job_summary(run_id, metrics, artifacts.publish())


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
    return {
        "run_id": run_id,
        "status": "succeeded",
        "counts": {key: data[key] for key in ("labelled", "unknown_year", "skipped",
                                              "skipped_by_reason", "train", "test")},
        "grid_strategy": metrics["selection"]["grid_strategy"],
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
        "evaluation_split": metrics["evaluation_split"],
        "champion": metrics["champion"],
        "stage_seconds": metrics["seconds"],
        "linear_algebra": metrics["linear_algebra"],
    }
