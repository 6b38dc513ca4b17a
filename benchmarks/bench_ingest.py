"""Benchmark of the HDF5 → MongoDB ingest job (not a test; prints tables).

On the same songs (generated, or an existing folder with --source), the same SecantusDB
server and the same local[N] Spark, for each array encoding:

  (a) this job: msdlib.ingest.run_ingest (paths over partitions, bulk upserts);
  (b) the tutorial's method: sc.binaryFiles → parse → collect() → insert_one per song;
  (c) the read-only limit: the same parse + document build on the same cores, no
      database (a sum of counts comes back);
  (h) the plain-h5py read-only limit: every dataset of every file read with h5py's
      high-level API (``h5py.File``, ``dataset[()]``) on the same cores: no checks,
      no document, no database.

The parser alone: songs per CPU-second of one process (``time.process_time``, so other
processes' load counts less) for msdlib's ``read_song`` and plain h5py, from a path and
from the file's bytes.

With ``--baseline-rev REV``, that git revision's ``spark_jobs`` (and its
``include/pipeline.toml``) is exported with ``git archive`` into a temp dir, and its job
and this checkout's job run as subprocesses (``python spark_jobs/ingest_songs.py``,
float32, local[N]), interleaved round by round, so a regression shows as a ratio.

Then the driver's peak RSS at two sizes: the job runs as a subprocess while psutil
polls its process tree (Python driver + JVM; the executor Python workers, children of
the JVM in local mode, are shown separately).

    .venv/bin/python benchmarks/bench_ingest.py [--songs 1000 | --source DIR] \
        [--rss-sizes 1000,10000] [--baseline-rev 396c849] [--methods c,a,b,h]

Generated songs are cached under --data-dir. The Mongo server is $MSD_MONGO_URI when
set, else a SecantusDB started (and stopped) here with on-disk storage in a temp dir.
The load average is printed before and after each table.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import h5py
import psutil
import pymongo

from msd_devtools import services
from msd_pipeline.paths import PROJECT_ROOT
from msd_pipeline.staging.generator import generate_songs
from msdlib.config import PipelineConfig, load_config
from msdlib.core.ingest_accounting import utc_now
from msdlib.ingest import make_task, run_ingest, song_document
from msdlib.io.hdf5_reader import read_song
from msdlib.io.sources import SourceReader, list_sources


ENCODINGS = ("float32", "list")
METHODS = ("c", "h", "a", "b")
TARGETS = {"a/b": 10.0, "a/c": 0.7, "a/h": 0.9, "candidate/baseline": 1.0,
           "rss_growth": 0.10}


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


def plain_h5py_read(source) -> None:
    """Every dataset of every group read with h5py's high-level API, nothing else."""
    with h5py.File(source, "r") as h5:
        for group in h5.values():
            if isinstance(group, h5py.Group):
                for dataset in group.values():
                    dataset[()]


def plain_h5py_only(paths: Iterator[str]) -> Iterator[int]:
    """(h): read every file with plain h5py, from its path."""
    read = 0
    for path in paths:
        plain_h5py_read(path)
        read += 1
    yield read


def run_plain_h5py(sc, paths: List[str]) -> float:
    started = time.monotonic()
    read = sc.parallelize(paths, 2 * sc.defaultParallelism).mapPartitions(plain_h5py_only).sum()
    assert read == len(paths)
    return time.monotonic() - started


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


def throughput_table(sc, uri: str, folder: Path, count: int, repeat: int,
                     encodings: List[str], methods: List[str]) -> Dict[str, Dict[str, float]]:
    """Best-of-``repeat`` songs/s per encoding and method (rounds interleaved, so load
    from other processes spreads over all methods); "b_insert" is (b)'s insert loop."""
    paths = list_sources(str(folder))
    best = {}  # type: Dict[Tuple[str, str], float]
    for round_number in range(1, repeat + 1):
        for encoding in encodings:
            for method in methods:
                database = "bench_{}_{}_{}".format(method, encoding, uuid.uuid4().hex[:6])
                config = load_config(overrides={"ingest.array_encoding": encoding,
                                                "ingest.source": str(folder),
                                                "mongo.database": database})
                timings = {}
                if method == "c":
                    timings["c"] = run_read_only(sc, config, paths)
                elif method == "h":
                    timings["h"] = run_plain_h5py(sc, paths)
                elif method == "a":
                    timings["a"] = run_job(sc, config, uri, paths)
                else:
                    timings["b"], timings["b_insert"] = run_tutorial(sc, config, uri, folder,
                                                                     count)
                pymongo.MongoClient(uri).drop_database(database)
                for key, seconds in timings.items():
                    best[encoding, key] = min(seconds, best.get((encoding, key), seconds))
                print("  round {} {:8s} ({}) {:7.1f} s  {:7.1f} songs/s  load {}".format(
                    round_number, encoding, method, timings[method],
                    count / timings[method], load_average()), flush=True)
    return {encoding: {key: count / seconds for (enc, key), seconds in best.items()
                       if enc == encoding} for encoding in encodings}


# ---- the parser alone ---------------------------------------------------------------------

def parser_table(paths: List[str], repeat: int) -> Dict[str, float]:
    """Songs per CPU-second of this process, best of ``repeat`` interleaved rounds."""
    contents = [Path(path).read_bytes() for path in paths]
    variants = {
        "read_song(path)": (read_song, paths),
        "read_song(bytes)": (read_song, contents),
        "plain h5py(path)": (plain_h5py_read, paths),
        "plain h5py(bytes)": (lambda data: plain_h5py_read(io.BytesIO(data)), contents),
    }  # type: Dict[str, Tuple[Callable, List]]
    best = {}  # type: Dict[str, float]
    for round_number in range(1, repeat + 1):
        for name, (parse, sources) in variants.items():
            started = time.process_time()
            for source in sources:
                parse(source)
            rate = len(sources) / (time.process_time() - started)
            best[name] = max(rate, best.get(name, 0.0))
            print("  round {} {:18s} {:7.1f} songs/s per core  load {}".format(
                round_number, name, rate, load_average()), flush=True)
    return best


# ---- this checkout against a git revision, both as subprocess jobs -----------------------

def export_revision(revision: str, target: Path) -> Path:
    """``spark_jobs`` and ``include/pipeline.toml`` of ``revision``, under ``target``."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", revision, "spark_jobs",
         "include/pipeline.toml"], check=True, capture_output=True).stdout
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def revision_table(baseline: Path, folder: Path, uri: str, cores: int,
                   repeat: int) -> List[Tuple[float, float]]:
    """(baseline, candidate) songs/s of each round; the two jobs alternate, the
    baseline first in odd rounds and second in even ones."""
    rounds = []
    for round_number in range(1, repeat + 1):
        order = [("baseline", baseline), ("candidate", PROJECT_ROOT)]
        if round_number % 2 == 0:
            order.reverse()
        rates = {}
        for name, root in order:
            run = run_job_process(root, folder, uri, cores, "float32")
            rates[name] = run["songs"] / run["seconds"]
            print("  round {} {:9s} {:7.1f} songs/s ({} songs in {:.1f} s)  load {}".format(
                round_number, name, rates[name], run["songs"], run["seconds"],
                load_average()), flush=True)
        rounds.append((rates["baseline"], rates["candidate"]))
    return rounds


def load_average() -> str:
    return "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


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


def run_job_process(project_root: Path, folder: Path, uri: str, cores: int,
                    encoding: str) -> Dict[str, float]:
    """Run ``project_root``'s job on ``folder`` as a subprocess (its own msdlib and
    configuration); its summary's songs and seconds and the peak RSS of its process
    tree, polled every 50 ms."""
    database = "bench_job_" + uuid.uuid4().hex[:6]
    command = [sys.executable, str(project_root / "spark_jobs" / "ingest_songs.py"),
               "--set", "ingest.source=" + str(folder), "--set", "mongo.database=" + database,
               "--set", "ingest.array_encoding=" + encoding,
               "--set", "spark.master=local[{}]".format(cores), "--run-id", "bench-job"]
    env = {name: value for name, value in os.environ.items() if name != "MSD_CONFIG"}
    env.update(MSD_MONGO_URI=uri, PYTHONPATH=os.pathsep.join(
        [str(project_root / "spark_jobs"), env.get("PYTHONPATH", "")]))
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
    return {"songs": summary["files_seen"], "seconds": summary["seconds"],
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


def print_report(title: str, rates: Dict[str, Dict[str, float]], parser: Dict[str, float],
                 revisions: List[Tuple[float, float]], baseline_rev: Optional[str],
                 rss: List[Dict[str, float]]) -> None:
    if rates:
        print("\n== ingest throughput: {} ==".format(title))
        print("{:9s} {:>8s} {:>8s} {:>8s} {:>8s} {:>6s} {:>6s} {:>6s} {:>10s}".format(
            "encoding", "(a) job", "(b) tut.", "(c) read", "(h) h5py", "a/b", "a/c", "a/h",
            "(b) inserts"))
        for encoding, rate in rates.items():
            cells = [rate.get(key) for key in ("a", "b", "c", "h")]
            ratios = [ratio(rate, "a", key) for key in ("b", "c", "h")]
            print("{:9s} {} {} {}".format(
                encoding, " ".join(_cell(value, 8, 1) for value in cells),
                " ".join(_cell(value, 6, 2) for value in ratios),
                _cell(rate.get("b_insert"), 10, 1)))
        print("(songs/s, best of the rounds; targets: a/b >= {a/b}, a/c >= {a/c}, "
              "a/h >= {a/h} with float32)".format(**TARGETS))
    if parser:
        print("\n== the parser alone: songs per CPU-second of one process ==")
        for name, rate in parser.items():
            print("{:18s} {:8.1f}".format(name, rate))
        for source in ("path", "bytes"):
            print("read_song / plain h5py ({}): {:.2f}".format(
                source, parser["read_song({})".format(source)]
                / parser["plain h5py({})".format(source)]))
    if revisions:
        print("\n== this checkout against {} (float32 job, subprocesses, interleaved) ==".format(
            baseline_rev))
        for number, (baseline, candidate) in enumerate(revisions, 1):
            print("round {}: baseline {:7.1f}  candidate {:7.1f} songs/s  ratio {:.2f}".format(
                number, baseline, candidate, candidate / baseline))
        best_baseline = max(baseline for baseline, _ in revisions)
        best_candidate = max(candidate for _, candidate in revisions)
        print("best: baseline {:.1f}, candidate {:.1f} songs/s: ratio {:.2f} (target >= {})"
              .format(best_baseline, best_candidate, best_candidate / best_baseline,
                      TARGETS["candidate/baseline"]))
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


def ratio(rates: Dict[str, float], numerator: str, denominator: str) -> Optional[float]:
    if numerator in rates and denominator in rates:
        return rates[numerator] / rates[denominator]
    return None


def _cell(value: Optional[float], width: int, decimals: int) -> str:
    return "{:>{}.{}f}".format(value, width, decimals) if value is not None else " " * (
        width - 1) + "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=1000,
                        help="generated songs for the throughput table")
    parser.add_argument("--source", default=None,
                        help="a folder of existing songs instead of generated ones "
                             "(e.g. ../shared/msd/tracks)")
    parser.add_argument("--rss-sizes", default="1000,10000",
                        help="comma-separated song counts for the RSS runs ('' to skip)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of each table; the best round counts")
    parser.add_argument("--encodings", default=",".join(ENCODINGS))
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="throughput table methods among c,h,a,b ('' to skip the table)")
    parser.add_argument("--parser-songs", type=int, default=400,
                        help="files for the parser-alone table (0 to skip it)")
    parser.add_argument("--baseline-rev", default=None,
                        help="git revision whose job to run against this checkout's")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "msd-bench-songs"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    folder = Path(args.source) if args.source else ensure_songs(data_dir, args.songs)
    count = len(list_sources(str(folder)))
    title = "{} songs of {}, local[{}], one SecantusDB".format(
        count, folder if args.source else "the generator", args.cores)
    rss_sizes = [int(size) for size in args.rss_sizes.split(",") if size]
    rss_folders = [ensure_songs(data_dir, size) for size in rss_sizes]
    methods = [method for method in args.methods.split(",") if method]
    print("load average at the start: {}".format(load_average()), flush=True)

    parser_rates = {}  # type: Dict[str, float]
    if args.parser_songs:
        print("the parser alone on {} files:".format(args.parser_songs), flush=True)
        parser_rates = parser_table(list_sources(str(folder))[:args.parser_songs], args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as state:
        server = None
        uri = os.environ.get("MSD_MONGO_URI")
        if not uri:
            uri, server = start_mongo(Path(state))
        try:
            rates = {}  # type: Dict[str, Dict[str, float]]
            if methods:
                spark = spark_context(args.cores)
                warm_up(spark.sparkContext, folder)
                print("throughput on {} songs:".format(count), flush=True)
                rates = throughput_table(spark.sparkContext, uri, folder, count, args.repeat,
                                         args.encodings.split(","), methods)
                spark.stop()
            revisions = []  # type: List[Tuple[float, float]]
            if args.baseline_rev:
                print("{} against this checkout:".format(args.baseline_rev), flush=True)
                baseline = export_revision(args.baseline_rev, Path(state) / "baseline")
                revisions = revision_table(baseline, folder, uri, args.cores, args.repeat)
            rss = []
            for rss_folder in rss_folders:
                rss.append(run_job_process(PROJECT_ROOT, rss_folder, uri, args.cores,
                                           "float32"))
                print("  rss run: {}".format(rss[-1]), flush=True)
        finally:
            if server is not None:
                server.stop()
    print_report(title, rates, parser_rates, revisions, args.baseline_rev, rss)
    print("load average at the end: {}".format(load_average()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
