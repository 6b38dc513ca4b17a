"""Benchmark of the HDF5 → MongoDB ingest job (not a test; prints a table).

On the same generated songs, the same SecantusDB server and the same local[N] Spark,
for each array encoding:

  (a) this job: msdlib.ingest.run_ingest (paths over partitions, bulk upserts);
  (b) the tutorial's method: sc.binaryFiles → parse → collect() → insert_one per song;
  (c) the read-only limit: the same parse + document build on the same cores, no
      database (a sum of counts comes back).

Then the driver's peak RSS at two sizes: the job runs as a subprocess
(``python spark_jobs/ingest_songs.py``, local[N]) while psutil polls its process tree
(Python driver + JVM; the executor Python workers, children of the JVM in local mode,
are shown separately).

    .venv/bin/python benchmarks/bench_ingest.py [--songs 1000] [--rss-sizes 1000,10000]

Generated songs are cached under --data-dir. The Mongo server is $MSD_MONGO_URI when
set, else a SecantusDB started (and stopped) here with on-disk storage in a temp dir.
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
from typing import Dict, Iterator, List, Tuple

import psutil
import pymongo

from msd_devtools import services
from msd_devtools.generator import generate_songs
from msdlib.config import PROJECT_ROOT as _PROJECT_ROOT, PipelineConfig, load_config
from msdlib.core.ingest_accounting import utc_now
from msdlib.ingest import make_task, run_ingest, song_document
from msdlib.io.sources import SourceReader, list_sources

PROJECT_ROOT = Path(_PROJECT_ROOT)

ENCODINGS = ("float32", "list")
TARGETS = {"a/b": 10.0, "a/c": 0.7, "rss_growth": 0.10}


def ensure_songs(data_dir: Path, count: int) -> Path:
    """``count`` generated songs in ``data_dir/songs-<count>`` (generated once, then reused)."""
    folder = data_dir / "songs-{}".format(count)
    if len(list(folder.glob("*/*/*/*.h5"))) != count:
        print("generating {} songs into {} ...".format(count, folder), flush=True)
        generate_songs(str(folder), count, seed=count)
    return folder


# ---- the three methods -----------------------------------------------------------------

def parse_only(paths: Iterator[str], task) -> Iterator[int]:
    """(c): read, parse and build every document, write nothing."""
    reader = SourceReader()
    built = 0
    for path in paths:
        song_document(path, reader.read(path), task)
        built += 1
    yield built


def tutorial_documents(item: Tuple[str, bytes], task) -> dict:
    path, content = item
    return song_document(path, content, task)


def run_read_only(sc, config: PipelineConfig, paths: List[str]) -> float:
    task = make_task(config, "unused", "bench", utc_now())
    partitions = 2 * sc.defaultParallelism
    started = time.monotonic()
    built = sc.parallelize(paths, partitions).mapPartitions(
        lambda part: parse_only(part, task)).sum()
    assert built == len(paths)
    return time.monotonic() - started


def run_job(sc, config: PipelineConfig, uri: str, paths: List[str]) -> float:
    started = time.monotonic()
    summary = run_ingest(sc, config, "bench-" + uuid.uuid4().hex[:6], uri, paths)
    assert summary["files_ingested"] == len(paths), summary
    return time.monotonic() - started


def run_tutorial(sc, config: PipelineConfig, uri: str, folder: Path,
                 count: int) -> Tuple[float, float]:
    """(b); returns (total seconds, seconds of the insert_one loop alone)."""
    task = make_task(config, "unused", "bench", utc_now())
    client = pymongo.MongoClient(uri)
    songs = client[config.mongo.database][config.mongo.songs_collection]
    started = time.monotonic()
    documents = sc.binaryFiles(str(folder / "*" / "*" / "*" / "*.h5")).map(
        lambda item: tutorial_documents(item, task)).collect()
    collected = time.monotonic()
    for document in documents:
        songs.insert_one(document)
    finished = time.monotonic()
    assert songs.count_documents({}) == count
    client.close()
    return finished - started, finished - collected


def throughput_table(sc, uri: str, folder: Path, count: int,
                     repeat: int) -> Dict[str, Dict[str, float]]:
    """Best-of-``repeat`` songs/s per encoding and method (rounds interleaved, so load
    from other processes spreads over all methods); "b_insert" is (b)'s insert loop."""
    paths = list_sources(str(folder))
    best = {}  # type: Dict[Tuple[str, str], float]
    for round_number in range(1, repeat + 1):
        for encoding in ENCODINGS:
            for method in ("c", "a", "b"):
                database = "bench_{}_{}_{}".format(method, encoding, uuid.uuid4().hex[:6])
                config = load_config(overrides={"ingest.array_encoding": encoding,
                                                "ingest.source": str(folder),
                                                "mongo.database": database})
                timings = {}
                if method == "c":
                    timings["c"] = run_read_only(sc, config, paths)
                elif method == "a":
                    timings["a"] = run_job(sc, config, uri, paths)
                else:
                    timings["b"], timings["b_insert"] = run_tutorial(sc, config, uri, folder,
                                                                     count)
                pymongo.MongoClient(uri).drop_database(database)
                for key, seconds in timings.items():
                    best[encoding, key] = min(seconds, best.get((encoding, key), seconds))
                print("  round {} {:8s} ({}) {:7.1f} s  {:7.1f} songs/s".format(
                    round_number, encoding, method, timings[method],
                    count / timings[method]), flush=True)
    return {encoding: {key: count / best[encoding, key]
                       for key in ("a", "b", "c", "b_insert")} for encoding in ENCODINGS}


# ---- driver RSS -------------------------------------------------------------------------

def is_executor_worker(process: psutil.Process) -> bool:
    try:
        return "pyspark.daemon" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def tree_rss(root: psutil.Process) -> Tuple[int, int]:
    """(driver = Python + JVM, executor Python workers) resident bytes of ``root``'s tree."""
    driver = workers = 0
    try:
        processes = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0
    worker_pids = set()
    for process in processes:
        if is_executor_worker(process):
            worker_pids.add(process.pid)
            worker_pids.update(child.pid for child in process.children(recursive=True))
    for process in processes:
        try:
            rss = process.memory_info().rss
        except psutil.Error:
            continue
        if process.pid in worker_pids:
            workers += rss
        else:
            driver += rss
    return driver, workers


def measure_job_rss(folder: Path, uri: str, cores: int, encoding: str) -> Dict[str, float]:
    """Run the job on ``folder`` as a subprocess; peak RSS of its tree, polled every 50 ms."""
    database = "bench_rss_" + uuid.uuid4().hex[:6]
    command = [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "ingest_songs.py"),
               "--set", "ingest.source=" + str(folder), "--set", "mongo.database=" + database,
               "--set", "ingest.array_encoding=" + encoding,
               "--set", "spark.master=local[{}]".format(cores), "--run-id", "bench-rss"]
    env = dict(os.environ, MSD_MONGO_URI=uri)
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    root = psutil.Process(job.pid)
    peak_driver = peak_workers = 0
    while job.poll() is None:
        driver, workers = tree_rss(root)
        peak_driver, peak_workers = max(peak_driver, driver), max(peak_workers, workers)
        time.sleep(0.05)
    summary = json.loads(job.stdout.read().strip().splitlines()[-1])
    pymongo.MongoClient(uri).drop_database(database)
    assert job.returncode == 0 and summary["files_failed"] == 0, summary
    return {"songs": summary["files_ingested"], "seconds": summary["seconds"],
            "driver_mb": peak_driver / 2**20, "workers_mb": peak_workers / 2**20}


# ---- main -------------------------------------------------------------------------------

def start_mongo(state_dir: Path) -> Tuple[str, "services.ManagedProcess"]:
    port = services.free_port()
    server = services.mongo_service(state_dir, port, storage=str(state_dir / "mongo-data"))
    server.start()
    return services.mongo_uri(port), server


def spark_context(cores: int):
    from pyspark.sql import SparkSession
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[{}]".format(cores)).appName("bench-ingest")
             # The tutorial's collect() of every song needs room on the driver.
             .config("spark.driver.maxResultSize", "0")
             .config("spark.driver.memory", "4g")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def warm_up(sc, folder: Path) -> None:
    """Fill the page cache and start the Python workers before any timing."""
    for path in list_sources(str(folder)):
        Path(path).read_bytes()
    sc.parallelize(range(100), 2 * sc.defaultParallelism).map(
        lambda n: __import__("msdlib.ingest") and n).sum()


def print_report(count: int, rates: Dict[str, Dict[str, float]], rss: List[Dict[str, float]],
                 cores: int) -> None:
    print("\n== ingest throughput: {} generated songs, local[{}], one SecantusDB ==".format(
        count, cores))
    print("{:9s} {:>10s} {:>10s} {:>10s} {:>8s} {:>8s} {:>16s}".format(
        "encoding", "(a) job", "(b) tutor.", "(c) read", "a/b", "a/c", "(b) inserts only"))
    for encoding, rate in rates.items():
        print("{:9s} {:>10.1f} {:>10.1f} {:>10.1f} {:>8.2f} {:>8.2f} {:>16.1f}".format(
            encoding, rate["a"], rate["b"], rate["c"], rate["a"] / rate["b"],
            rate["a"] / rate["c"], rate["b_insert"]))
    print("(songs/s, best of the rounds; targets: a/b >= {a/b}, a/c >= {a/c} with float32)"
          .format(**TARGETS))
    if rss:
        print("\n== driver peak RSS, job as a subprocess (float32) ==")
        print("{:>8s} {:>9s} {:>22s} {:>22s}".format(
            "songs", "seconds", "driver py+JVM (MB)", "executor py workers"))
        for row in rss:
            print("{songs:>8d} {seconds:>9.1f} {driver_mb:>22.0f} {workers_mb:>22.0f}".format(
                **row))
        growth = rss[-1]["driver_mb"] / rss[0]["driver_mb"] - 1
        print("driver RSS growth {:+.1%} (target within {:.0%})".format(
            growth, TARGETS["rss_growth"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=1000, help="songs for the throughput table")
    parser.add_argument("--rss-sizes", default="1000,10000",
                        help="comma-separated song counts for the RSS runs ('' to skip)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of the throughput table; the best round counts")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "msd-bench-songs"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    folder = ensure_songs(data_dir, args.songs)
    rss_sizes = [int(size) for size in args.rss_sizes.split(",") if size]
    rss_folders = [ensure_songs(data_dir, size) for size in rss_sizes]

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as state:
        server = None
        uri = os.environ.get("MSD_MONGO_URI")
        if not uri:
            uri, server = start_mongo(Path(state))
        try:
            spark = spark_context(args.cores)
            warm_up(spark.sparkContext, folder)
            print("throughput on {} songs:".format(args.songs), flush=True)
            rates = throughput_table(spark.sparkContext, uri, folder, args.songs, args.repeat)
            spark.stop()
            rss = []
            for rss_folder in rss_folders:
                rss.append(measure_job_rss(rss_folder, uri, args.cores, "float32"))
                print("  rss run: {}".format(rss[-1]), flush=True)
        finally:
            if server is not None:
                server.stop()
    print_report(args.songs, rates, rss, args.cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
