"""Shared command line of the Spark jobs (the job contract in docs/ARCHITECTURE.md).

Every job takes ``--config <toml|json>``, repeated ``--set section.key=value``
overrides, ``--run-id`` and ``--summary-path`` (local path or s3:// URI), prints its
JSON summary as the last stdout line and exits with:

* 0 success,
* 1 the job ran but failed its checks (too many bad files, too few labelled songs),
* 2 bad usage or configuration,
* 3 the job crashed: an unexpected error or an infrastructure failure (the database
  unreachable after the retries, the S3 listing failing); the traceback is on stderr
  and no summary is printed.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import argparse
import datetime
import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

from msdlib import env_vars
from msdlib.config import ConfigError, PipelineConfig, config_path, load_config, parse_config
from msdlib.io.sources import is_s3, read_bytes, s3_client, split_s3_uri

EXIT_OK = 0
EXIT_FAILED_CHECKS = 1
EXIT_USAGE = 2
EXIT_CRASH = 3


class UsageError(ValueError):
    """Bad usage or configuration: the job exits with code 2."""


def build_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job shares; jobs may add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", default=None,
        help="TOML or JSON configuration (default: $MSD_CONFIG, else include/pipeline.toml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one configuration key; VALUE is parsed as JSON when it can be "
             "(numbers, true/false, lists), else taken as a string. Repeatable.")
    parser.add_argument(
        "--run-id", default=None,
        help="identifier recorded with everything this run writes (default: manual__<UTC time>)")
    parser.add_argument(
        "--summary-path", default=None,
        help="also write the JSON summary to this local path or s3:// URI")
    return parser


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """``["ingest.batch_size=50", "ingest.source=/data"]`` → ``{"ingest.batch_size": 50, ...}``.

    A value that parses as JSON takes its JSON type; anything else stays a string, so
    paths need no quoting. Later items win.
    """
    overrides = {}  # type: Dict[str, Any]
    for item in items:
        key, sep, raw_value = item.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key:
            raise UsageError("--set expects section.key=value, got {!r}".format(item))
        overrides[key] = _parse_value(raw_value)
    return overrides


def _parse_value(raw_value: str) -> Any:
    try:
        return json.loads(raw_value)
    except ValueError:
        return raw_value


def load_job_config(args: argparse.Namespace) -> PipelineConfig:
    """The configuration named by ``--config`` with the ``--set`` overrides applied; an
    ``s3://`` location is read with boto3 (EMR steps get the run's config that way)."""
    overrides = parse_overrides(args.overrides)
    path = config_path(args.config)
    if not is_s3(path):
        return load_config(path, overrides)
    try:
        raw = read_bytes(path)
    except OSError as exc:
        raise ConfigError("cannot read config file {}: {}".format(path, exc)) from exc
    return parse_config(path, raw, overrides)


def resolve_run_id(run_id: Optional[str]) -> str:
    if run_id is not None and not run_id.strip():
        raise UsageError("--run-id must not be empty")
    if run_id:
        return run_id
    return "manual__" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def emit_summary(summary: Dict[str, Any], summary_path: Optional[str] = None) -> None:
    """Write the summary to ``summary_path`` (if any), then print it as the last stdout line."""
    text = json.dumps(summary, sort_keys=True, default=str)
    if summary_path:
        write_text(summary_path, text + "\n")
    sys.stdout.flush()
    print(text, flush=True)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to a local path (parents created) or an s3:// URI."""
    if path.startswith("s3://"):
        bucket, key = split_s3_uri(path)
        s3_client().put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"),
                               ContentType="application/json")
        return
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def run_main(main: Callable[[List[str]], int], argv: Optional[List[str]] = None) -> int:
    """Run ``main(argv)``; usage and configuration errors (UsageError, ConfigError and
    its subclasses) become exit code 2 with a one-line message on stderr; any other
    exception (e.g. the database down) exit code 3 with its traceback on stderr.
    """
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except (UsageError, ConfigError) as exc:
        print("error: {}".format(exc), file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 - the job's last line of defence
        traceback.print_exc(file=sys.stderr)
        print("error: the job crashed (exit {})".format(EXIT_CRASH), file=sys.stderr,
              flush=True)
        return EXIT_CRASH


def create_spark_session(config: PipelineConfig, app_name: str) -> Any:
    """A SparkSession on ``spark.master``, unless spark-submit already chose the master."""
    from pyspark.sql import SparkSession

    # Executors run the driver's interpreter unless the caller says otherwise; the JVM
    # launched here (in local mode, the executors too) inherits single-threaded BLAS.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for name, value in env_vars.SINGLE_THREADED_BLAS.items():
        os.environ.setdefault(name, value)
    builder = SparkSession.builder.appName(app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # set only by spark-submit's launcher
        builder = builder.master(config.spark.master)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def linear_algebra(spark: Any) -> Dict[str, Optional[str]]:
    """The BLAS this JVM's Spark ML uses (native: JNIBLAS; otherwise a Java fallback) and
    its OpenBLAS thread setting."""
    jvm = spark.sparkContext._jvm
    blas = jvm.dev.ludovic.netlib.blas.BLAS.getInstance()
    return {"blas": blas.getClass().getSimpleName(),
            "openblas_threads": jvm.java.lang.System.getenv(env_vars.OPENBLAS_THREADS)}
