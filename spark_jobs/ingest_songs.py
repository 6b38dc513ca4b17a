"""Spark job: ingest MSD per-song HDF5 files into MongoDB (collection ``songs``).

    spark-submit --py-files msdlib.zip spark_jobs/ingest_songs.py \\
        --config conf.json --set ingest.source=s3://bucket/tracks --run-id RUN \\
        [--summary-path s3://bucket/runs/RUN/ingest.json]

or directly: ``python spark_jobs/ingest_songs.py ...`` (master from ``spark.master``).
The MongoDB URI is read from $MSD_MONGO_URI only. A bad file never stops the job: it
becomes an ``ingest_errors`` record (msdlib.ingest runs the partitions,
msdlib.core.ingest_accounting classifies and counts). Prints the JSON summary as the last
stdout line. Exit codes: 0 success; 1 the failed share of files exceeds
``ingest.max_failed_fraction``; 2 bad usage or configuration; 3 a crash or an
infrastructure failure (database unreachable after ``mongo.write_attempts``, S3 listing).
"""
import sys
from typing import List

from msdlib.cli import (EXIT_FAILED_CHECKS, EXIT_OK, build_parser, create_spark_session,
                        emit_summary, load_job_config, resolve_run_id, run_main)
from msdlib.ingest import list_ingest_paths, run_ingest
from msdlib.io.mongo import mongo_uri_from_env, redact_uri


def main(argv: List[str]) -> int:
    args = build_parser(__doc__.splitlines()[0]).parse_args(argv)
    config = load_job_config(args)
    run_id = resolve_run_id(args.run_id)
    mongo_uri = mongo_uri_from_env()
    print("ingest {} -> {} database {} (run {})".format(
        config.ingest.source, redact_uri(mongo_uri), config.mongo.database, run_id),
        file=sys.stderr, flush=True)
    paths = list_ingest_paths(config)  # extract, before Spark: a bad source fails fast
    spark = create_spark_session(config, "msd-ingest-songs")
    try:  # transform and load: each partition parses its files and writes their songs
        summary = run_ingest(spark.sparkContext, config, run_id, mongo_uri, paths)
    finally:
        spark.stop()
    emit_summary(summary, args.summary_path)
    return EXIT_OK if summary["ok"] else EXIT_FAILED_CHECKS


if __name__ == "__main__":
    sys.exit(run_main(main))
