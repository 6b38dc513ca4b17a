"""Train and evaluate: the pipeline's second Spark step.

    spark-submit spark_jobs/train_models.py --config <toml|json> [--set k=v ...]
        --run-id <id> [--summary-path <path|s3://>] [--champion-uri <run folder>]

Extract: the songs' features from MongoDB in parallel. Transform: artist-disjoint
split, features scaled once, the configured decade classifiers and year regressors
tuned on artist folds (cross-validation or one train/validation split:
``training.grid_strategy``), the chosen ones and the baselines scored on the test split.
Load: the run's artifacts (models, metrics, report, plots). Unknown years are imputed by
spark_jobs/impute_years.py, with the champion, after the gate. The steps live in
msdlib.training. The Mongo URI comes from
$MSD_MONGO_URI. Exit codes: 0 success, 1 too few usable songs or artists, 2 bad usage
or configuration, 3 a crash (msdlib.cli). The JSON summary is the last stdout line.

Python 3.9 syntax: this file ships to EMR.
"""
import sys
import time
from typing import Any, List, Mapping

from msdlib import accelerator, cli, training
from msdlib.core.models import TrainingError, validate_grid_params
from msdlib.io.mongo import mongo_uri_from_env, redact_uri


def main(argv: List[str]) -> int:
    parser = cli.build_parser("Train decade and year models on the songs in MongoDB and "
                              "evaluate them.")
    parser.add_argument("--champion-uri", default="",
                        help="run folder of the current champion, scored on the same test "
                             "split (empty: no champion yet)")
    args = parser.parse_args(argv)
    config, run_id = cli.load_job_config(args), cli.resolve_run_id(args.run_id)
    mongo_uri = mongo_uri_from_env()  # MongoConfigError: exit 2 (cli.run_main)
    started = time.time()
    spark = cli.create_spark_session(config, "msd-train-models")
    try:
        check_gpu_training(config.training.accelerator, spark)
        check_grids(config.training.grids, config.training.accelerator)
        print("training on {} database {!r}".format(redact_uri(mongo_uri),
                                                    config.mongo.database), file=sys.stderr)
        watch = training.Stopwatch()
        songs, counts = training.read_songs(spark, config, mongo_uri)  # extract
        watch.lap("read")
        result = training.train_and_evaluate(  # transform
            songs, counts, config.training, spark.sparkContext.defaultParallelism, watch,
            args.champion_uri)
        summary = training.publish_run(spark, result, config, run_id, watch)  # load
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


def check_gpu_training(accelerator_name: str, spark: Any) -> None:
    """GPU training without a GPU or without spark-rapids-ml is a usage error (exit 2)."""
    try:
        accelerator.check_accelerator(accelerator_name,
                                      lambda key: spark.conf.get(key, None))
    except RuntimeError as exc:
        raise cli.UsageError(str(exc)) from exc


def check_grids(grids: Mapping[str, Any], accelerator_name: str) -> None:
    """Grid parameters the estimators lack are usage errors (needs the SparkContext)."""
    try:
        validate_grid_params(grids, accelerator_name)
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from exc


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
