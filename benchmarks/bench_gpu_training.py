"""GPU against CPU training: spark-rapids-ml against pyspark.ml on the same features.

For each size (default 100k and 500k songs), generated song documents (features only:
``msd_devtools.feature_generator``) go into a SecantusDB started here, then
``spark_jobs/train_models.py`` runs twice on them with the same models (logistic
regression, random forest classifier, linear regression, random forest regressor: the
GPU_MODELS), grids, split and folds, class weighting off (spark-rapids-ml has no weight
column): ``training.accelerator = "cpu"`` then ``"gpu"``. Training time is the job's own
prepare + decade models + year models stages (the read is the same for both).

    python benchmarks/bench_gpu_training.py [--sizes 100000,500000] [--master local[*]]
        [--gpu-conf '{"spark.executor.resource.gpu.amount": "1", ...}']

One JSON line per size, then the last line {"sizes", "cpu_s", "gpu_s", "ratio" (gpu / cpu),
"agreement": test metrics of both runs and their differences}. It needs a GPU: without
``nvidia-smi`` listing one, or without spark-rapids-ml and cuML, it prints "no GPU: ..."
and exits 2 before starting anything.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN_JOB = PROJECT_ROOT / "spark_jobs" / "train_models.py"
EXIT_NO_GPU = 2
DATABASE_PREFIX = "gpu_bench_"
# What the executors need for spark-rapids-ml (one GPU each); --gpu-conf replaces it.
DEFAULT_GPU_CONF = {"spark.executor.resource.gpu.amount": "1",
                    "spark.task.resource.gpu.amount": "0.5"}

from msd_devtools import services  # noqa: E402
from msd_devtools.feature_generator import insert_feature_songs  # noqa: E402
from msdlib import accelerator  # noqa: E402
from msdlib.config import load_config  # noqa: E402
from msdlib.core.models import CLASSIFIERS, GPU_MODELS  # noqa: E402
from msdlib.io.mongo import connect  # noqa: E402


def visible_gpus() -> List[str]:
    """The GPUs ``nvidia-smi -L`` lists (none without the tool or a driver)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    listing = subprocess.run([tool, "-L"], capture_output=True, text=True)
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]


def missing_for_gpu(gpu_conf: Dict[str, str]) -> List[str]:
    """Why this machine cannot run the GPU side ([] when it can)."""
    problems = [] if visible_gpus() else ["nvidia-smi lists no GPU on this machine"]
    return problems + accelerator.gpu_problems(gpu_conf.get)


def train(mongo_uri: str, database: str, work: Path, master: str, accelerator_name: str,
          spark_conf: Dict[str, str]) -> Dict[str, Any]:
    """One training job on the GPU models; its training seconds and test metrics."""
    classifiers = [name for name in GPU_MODELS if name in CLASSIFIERS]
    regressors = [name for name in GPU_MODELS if name not in CLASSIFIERS]
    command = [sys.executable, str(TRAIN_JOB), "--run-id", database + "_" + accelerator_name,
               "--set", "mongo.database=" + database, "--set", "spark.master=" + master,
               "--set", "spark.conf=" + json.dumps(spark_conf),
               "--set", "training.accelerator=" + accelerator_name,
               "--set", "training.class_weighting=false",
               "--set", "training.classifiers=" + json.dumps(classifiers),
               "--set", "training.regressors=" + json.dumps(regressors),
               "--set", "training.artifacts_uri=" + str(work / accelerator_name)]
    env = dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable)
    result = subprocess.run(command, capture_output=True, text=True, env=env,
                            cwd=str(PROJECT_ROOT))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    if summary.get("status") != "succeeded":
        raise RuntimeError("{} training failed (exit {}): {}".format(
            accelerator_name, result.returncode, summary))
    stages = summary["stage_seconds"]
    return {"seconds": round(stages["prepare"] + stages["decade_models"]
                             + stages["year_models"], 1),
            "decade": summary["decade"], "year": summary["year"]}


def agreement(cpu: Dict[str, Any], gpu: Dict[str, Any]) -> Dict[str, Any]:
    """Both runs' chosen models and test metrics, and GPU minus CPU for each metric."""
    result = {}
    for task in ("decade", "year"):
        cpu_test, gpu_test = cpu[task]["test"], gpu[task]["test"]
        result[task] = {"cpu_chosen": cpu[task]["chosen"], "gpu_chosen": gpu[task]["chosen"],
                        "cpu_test": cpu_test, "gpu_test": gpu_test,
                        "gpu_minus_cpu": {key: round(gpu_test[key] - cpu_test[key], 4)
                                          for key in cpu_test}}
    return result


def bench_size(mongo_uri: str, size: int, work: Path, master: str,
               gpu_conf: Dict[str, str]) -> Dict[str, Any]:
    config = load_config()
    database = "{}{}".format(DATABASE_PREFIX, size)
    client = connect(mongo_uri)
    try:
        client.drop_database(database)
        insert_feature_songs(client[database][config.mongo.songs_collection], size, seed=size,
                             partition_buckets=config.ingest.partition_buckets)
        cpu = train(mongo_uri, database, work, master, "cpu", dict(config.spark.conf))
        gpu = train(mongo_uri, database, work, master, "gpu",
                    {**config.spark.conf, **gpu_conf})
        client.drop_database(database)
    finally:
        client.close()
    return {"size": size, "cpu_s": cpu["seconds"], "gpu_s": gpu["seconds"],
            "ratio": round(gpu["seconds"] / cpu["seconds"], 3),
            "agreement": agreement(cpu, gpu)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,500000", help="comma-separated song counts")
    parser.add_argument("--master", default="local[*]", help="Spark master of both runs")
    parser.add_argument("--gpu-conf", default=json.dumps(DEFAULT_GPU_CONF),
                        help="JSON object of Spark properties added for the GPU run")
    args = parser.parse_args()
    gpu_conf = json.loads(args.gpu_conf)
    missing = missing_for_gpu(gpu_conf)
    if missing:
        print("no GPU: cannot compare spark-rapids-ml with pyspark.ml here: "
              + "; ".join(missing), file=sys.stderr)
        return EXIT_NO_GPU
    sizes = [int(size) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-training-"))
    port = services.free_port()
    server = services.mongo_service(work, port, storage=str(work / "mongo"))
    server.start()
    rows = []
    try:
        for size in sizes:
            started = time.time()
            rows.append(bench_size(services.mongo_uri(port), size, work, args.master, gpu_conf))
            rows[-1]["wall_s"] = round(time.time() - started, 1)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
    print(json.dumps({"sizes": sizes, "cpu_s": [row["cpu_s"] for row in rows],
                      "gpu_s": [row["gpu_s"] for row in rows],
                      "ratio": [row["ratio"] for row in rows],
                      "agreement": [row["agreement"] for row in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
