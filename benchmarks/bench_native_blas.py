"""Does native BLAS (Debian's OpenBLAS) speed up this job's Spark ML fits?

Spark ML calls BLAS through dev.ludovic.netlib, which loads the system's
``libblas.so.3`` when there is one (Debian: ``libopenblas0-pthread``) and otherwise
falls back to its Java implementation (VectorBLAS). This runs the same fits
(multinomial logistic regression and the perceptron on 92 standardised features, the
job's widths) in fresh ``local[2]`` Spark JVMs, one per variant, alternating:

* ``native_1_thread``: OpenBLAS with ``OPENBLAS_NUM_THREADS=1``, as the jobs run it;
* ``native_own_threads``: OpenBLAS with its own thread count (one per core), which
  competes with Spark's task threads for the same cores;
* ``java``: told to load a library that does not exist, so the Java fallback: the
  baseline.

It prints which implementation each JVM used, the best seconds per fit and variant,
and each variant's speed-up over the Java baseline (> 1: faster).

    .venv/bin/python benchmarks/bench_native_blas.py [--rows 20000] [--rounds 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time

from msdlib import env_vars


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


VARIANTS = {
    "native_1_thread": (env_vars.SINGLE_THREADED_BLAS, ""),
    "native_own_threads": ({}, ""),
    "java": ({}, "-Ddev.ludovic.netlib.blas.nativeLib=libmissing-blas.so"),
}


def run(rows: int, variant: str) -> dict:
    """One fresh spark-submit JVM of the variant; the child's JSON line."""
    extra_env, java_options = VARIANTS[variant]
    spark_home = subprocess.run([sys.executable, "-m", "pyspark.find_spark_home"],
                                capture_output=True, text=True, check=True).stdout.strip()
    conf = ["--conf", "spark.driver.extraJavaOptions=" + java_options] if java_options else []
    env = {key: value for key, value in os.environ.items()
           if key not in (env_vars.OPENBLAS_THREADS, "OMP_NUM_THREADS")}
    env.update(extra_env, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    output = subprocess.run(
        [spark_home + "/bin/spark-submit", "--master", "local[2]"] + conf
        + [__file__, "--child", "--rows", str(rows)],
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
        for variant in VARIANTS:
            result = run(args.rows, variant)
            print(json.dumps(dict(result, variant=variant)), flush=True)
            fits = {name: seconds for name, seconds in result.items() if name != "blas"}
            for name, seconds in fits.items():
                best.setdefault(variant, {})[name] = min(
                    seconds, best.get(variant, {}).get(name, seconds))
    speedup = {variant: {name: round(best["java"][name] / seconds, 2)
                         for name, seconds in fits.items()} for variant, fits in best.items()}
    print(json.dumps({"rows": args.rows, "best_seconds": best,
                      "speedup_vs_java": speedup}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
