"""Does native BLAS (Debian's OpenBLAS) speed up this job's Spark ML fits?

Spark ML calls BLAS through dev.ludovic.netlib, which loads the system's
``libblas.so.3`` when there is one (Debian: ``libopenblas0-pthread``) and otherwise
falls back to its Java implementation. This runs the same fits (multinomial logistic
regression and the perceptron on 92 standardised features, the job's widths) in two
fresh ``local[2]`` Spark JVMs, one with the native library and one told to load a
library that does not exist, alternating, and prints which implementation each JVM
used and the best seconds per fit.

    .venv/bin/python benchmarks/bench_native_blas.py [--rows 20000] [--rounds 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time

DISABLED = "-Ddev.ludovic.netlib.blas.nativeLib=libmissing-blas.so"


def child(rows: int) -> None:
    import numpy as np
    from pyspark.ml.classification import LogisticRegression, MultilayerPerceptronClassifier
    from pyspark.ml.linalg import Vectors
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, rows)
    x = rng.normal(size=(rows, 92)) + label[:, None] * rng.normal(0.05, 0.02, 92)
    frame = spark.createDataFrame([(Vectors.dense(r), float(y)) for r, y in zip(x, label)],
                                  ["features", "label"]).repartition(2).cache()
    frame.count()
    jvm = spark.sparkContext._jvm
    implementation = jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName()
    timings = {}
    for name, model in (
            ("logistic_regression", LogisticRegression(family="multinomial", maxIter=100,
                                                       regParam=0.01)),
            ("multilayer_perceptron", MultilayerPerceptronClassifier(layers=[92, 64, 32, 5],
                                                                      maxIter=100, seed=1))):
        started = time.time()
        model.fit(frame)
        timings[name] = round(time.time() - started, 2)
    spark.stop()
    print(json.dumps({"blas": implementation, **timings}))


def run(rows: int, native: bool) -> dict:
    java_options = "" if native else DISABLED
    command = [sys.executable, __file__, "--child", "--rows", str(rows)]
    env_conf = ["--conf", "spark.driver.extraJavaOptions=" + java_options] if java_options \
        else []
    result = subprocess.run([sys.executable, "-m", "pyspark.find_spark_home"],
                            capture_output=True, text=True, check=True)
    spark_submit = result.stdout.strip() + "/bin/spark-submit"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    output = subprocess.run([spark_submit, "--master", "local[2]"] + env_conf + command[1:],
                            capture_output=True, text=True, check=True, env=env)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows)
        return 0
    best = {}  # type: dict
    for _ in range(args.rounds):
        for native in (True, False):
            result = run(args.rows, native)
            print(json.dumps(dict(result, native_requested=native)), flush=True)
            key = result["blas"]
            for name, seconds in result.items():
                if name != "blas":
                    best.setdefault(key, {})[name] = min(seconds, best.get(key, {}).get(
                        name, seconds))
    print(json.dumps({"rows": args.rows, "best_seconds": best}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
