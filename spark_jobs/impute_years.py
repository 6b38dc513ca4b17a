"""Impute unknown years with one model version: the pipeline's step after the gate.

    spark-submit spark_jobs/impute_years.py --config <toml|json> [--set k=v ...]
        --run-id <id> --model-uri <run folder> --model-label <name/version>
        [--summary-path <path|s3://>]

Loads the decade and year PipelineModels that ``<run folder>/metrics.json`` names (the
champion's, as registered), predicts the unknown-year songs in MongoDB and writes
``predicted`` with ``model_version = <model-label>`` (msdlib.io.imputation). Songs
already predicted by that label are left untouched, so keeping the champion after a
rejected challenger changes no stored prediction. The Mongo URI comes from
$MSD_MONGO_URI. Exit codes: 0 success, 2 bad usage or configuration. The JSON summary
is the last stdout line.

Python 3.9 syntax: this file ships to EMR.
"""
import sys
import time
from typing import Any, Dict, List

from msdlib import cli
from msdlib.config import PipelineConfig
from msdlib.io.champion import load_run_models
from msdlib.io.dataset import load_songs
from msdlib.io.imputation import impute
from msdlib.io.mongo import mongo_uri_from_env, redact_uri


def main(argv: List[str]) -> int:
    parser = cli.build_parser("Impute unknown years with the models of one run folder.")
    parser.add_argument("--model-uri", required=True,
                        help="run folder (local path or s3:// URI) whose models to use")
    parser.add_argument("--model-label", required=True,
                        help="the version name written with each prediction, "
                             "e.g. msd-song-year/3")
    args = parser.parse_args(argv)
    config = cli.load_job_config(args)
    run_id = cli.resolve_run_id(args.run_id)
    mongo_uri = mongo_uri_from_env()  # MongoConfigError: exit 2 (cli.run_main)
    started = time.time()
    print("imputing with {} ({}) on {} database {!r}".format(
        args.model_label, args.model_uri, redact_uri(mongo_uri), config.mongo.database),
        file=sys.stderr, flush=True)
    spark = cli.create_spark_session(config, "msd-impute-years")
    try:
        summary = run_imputation(spark, config, run_id, mongo_uri, args.model_uri,
                                 args.model_label)
    finally:
        spark.stop()
    summary["seconds"] = round(time.time() - started, 3)
    cli.emit_summary(summary, args.summary_path)
    return cli.EXIT_OK


def run_imputation(spark: Any, config: PipelineConfig, run_id: str, mongo_uri: str,
                   model_uri: str, model_label: str) -> Dict[str, Any]:
    training = config.training
    models = load_run_models(model_uri)
    partitions = training.read_partitions or 2 * spark.sparkContext.defaultParallelism
    songs = load_songs(spark, mongo_uri, config.mongo.database, config.mongo.songs_collection,
                       config.ingest.partition_buckets, partitions, training.song_features)
    unknown = songs.filter(songs.skip_reason.isNull() & songs.year.isNull()).persist()
    result = impute(unknown, models["decade"], models["year"], mongo_uri,
                    config.mongo.database, config.mongo.songs_collection, model_label,
                    tuple(models["metrics"]["year"]["train_year_range"]),
                    training.write_batch_size)
    unknown_count = unknown.count()
    unknown.unpersist()
    return {"run_id": run_id, "status": "succeeded", "model_uri": model_uri,
            "model_version": model_label, "unknown_year": unknown_count,
            "imputed": result["imputed"], "already_current": unknown_count - result["imputed"],
            "predicted_at": result["predicted_at"]}


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
