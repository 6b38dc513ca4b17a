"""Prediction service benchmark: latency and throughput over HTTP against a real uvicorn
process under concurrent keep-alive clients, a model swap under load, and agreement with
Spark's ``PipelineModel.transform`` on the same rows.

Fits the training job's pipelines (msdlib's estimators at the default grid's sizes) with
local Spark on songs whose timbre drifts with the year, saves them as a training run
(and a second, smaller run for the swap), starts the service on a ``champion`` symlink
to the first (``msd_devtools.services.serving_service``: a free port on 127.0.0.1, API
keys required, metrics on, as docker-compose runs it), then measures:

* agreement: every evaluation row scored by the service vs Spark's transform (same
  decade class, year within 1e-6); with ``--all-models`` every supported model type
  is also checked in process;
* the baseline: Spark's own ``transform`` of one song and of 100 songs (local[1], in
  process, no HTTP), then the Spark session is stopped before the load runs;
* 100 songs per request over one connection, ``--batches`` requests: p50 / p99;
* per ``--concurrency`` level: that many keep-alive clients (an asyncio load generator
  in this process, on the same cores as the service) post one song each, back to
  back, for ``--seconds``: p50 / p99 latency, requests/s, errors (any non-200);
* the swap: ``--swap-clients`` clients for ``--swap-seconds``; halfway, the symlink is
  repointed to the second run and ``POST /model/refresh`` called. Every answer must be
  a 200 naming exactly one version whose predictions are that version's: the old one
  for requests answered before the refresh was sent, the new one for requests sent
  after it returned;
* the service's own ``/metrics``: its count of answered /predict requests against the
  client's.

    .venv/bin/python benchmarks/bench_serving.py [--concurrency 1,16,64] [--seconds 10]
        [--swap-clients 64] [--swap-seconds 10] [--batches 100] [--all-models]

The JSON summary is the last stdout line. Targets on a 2-core machine with the load
generator on the same cores: zero errors at every level and across the swap; one song
p99 <= 25 ms at 16 clients and <= 60 ms at 64; at least 1,300 requests/s at 16 clients;
100 songs p50 <= 200 ms.
"""
import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "tests"))

import serving_support as support  # noqa: E402
from msd_devtools import services  # noqa: E402
from msd_serving.champion import RunFolderSource, load_version  # noqa: E402
from msd_serving.spark_format import load_pipeline  # noqa: E402

# The sizes of include/pipeline.toml's larger grid points.
MODEL_PARAMS = {"numTrees": 100, "maxDepth": 10, "maxIter": 20}
ALL_DECADE = ["logistic_regression", "random_forest_classifier", "gbt_classifier",
              "multilayer_perceptron"]
ALL_YEAR = ["linear_regression", "random_forest_regressor", "gbt_regressor"]
TARGETS = {"p99_ms": {16: 25.0, 64: 60.0}, "requests_per_s": {16: 1300.0},
           "batch_100_p50_ms": 200.0}
KEY_HEADER = "X-API-Key"


def percentiles(seconds: Sequence[float]) -> Dict[str, float]:
    values = np.array(seconds) * 1000.0
    return {"p50": round(float(np.percentile(values, 50)), 3),
            "p99": round(float(np.percentile(values, 99)), 3),
            "mean": round(float(values.mean()), 3)}


def timed_requests(base: str, bodies: List[bytes], headers: Dict[str, str]) -> List[float]:
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    laps = []
    try:
        for body in bodies:
            started = time.perf_counter()
            status, reply = support.request(base, "POST", "/predict", body,
                                            connection=connection, headers=headers)
            laps.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError("HTTP {}: {}".format(status, reply))
    finally:
        connection.close()
    return laps


def spark_baseline(model_pair: List[Any], frames: List[Any], repeat: int) -> List[float]:
    """Seconds of Spark's transform of each frame by both models, results fetched."""
    laps = []
    for _ in range(repeat):
        for frame in frames:
            started = time.perf_counter()
            model_pair[1].transform(model_pair[0].transform(frame)) \
                .select("predicted_decade", "year_prediction").collect()
            laps.append(time.perf_counter() - started)
    return laps


def agreement(served: List[Dict[str, Any]], decades: List[str], years: List[float]
              ) -> Dict[str, Any]:
    same = sum(int(p["decade"]) == int(d) for p, d in zip(served, decades))
    diff = max(abs(p["year"] - y) for p, y in zip(served, years))
    return {"rows": len(served), "same_decade": same, "decade_agreement": same / len(served),
            "year_max_abs_diff": diff, "ok": same == len(served) and diff <= 1e-6}


def in_process_agreement(spark: Any, train: Any, test: Any, songs: Dict[str, Any],
                         folder: Path) -> Dict[str, Any]:
    """Every supported model type: portable scorer vs Spark on the evaluation rows."""
    frame = {name: songs["timbre"][:, i] for i, name in enumerate(support.COLUMNS[:90])}
    frame.update(song_loudness=songs["loudness"], song_tempo=songs["tempo"])
    results = {}
    for name in ALL_DECADE + ALL_YEAR:
        model = support.fit(name, train)
        column = "predicted_decade" if name in ALL_DECADE else "year_prediction"
        expected = support.spark_predictions(model, test, column)
        model.write().save("file://" + str(folder / name))
        pipeline = load_pipeline(str(folder / name))
        got = pipeline.transform(frame)[pipeline.output_column]
        if name in ALL_DECADE:
            results[name] = {"decade_agreement": float(np.mean(
                [a == b for a, b in zip(got, expected)]))}
        else:
            results[name] = {"year_max_abs_diff": float(np.abs(got - np.array(expected)).max())}
    return results


def level_summary(replies: List[support.Reply], seconds: float) -> Dict[str, Any]:
    ok = [r.finished - r.started for r in replies if r.status == 200]
    errors = {}  # type: Dict[str, int]
    for reply in replies:
        if reply.status != 200:
            errors[str(reply.status)] = errors.get(str(reply.status), 0) + 1
    return dict(percentiles(ok), requests=len(replies), errors=sum(errors.values()),
                error_statuses=errors, requests_per_s=round(len(ok) / seconds, 1))


def concurrency_levels(port: int, request: bytes, levels: List[int], seconds: float
                       ) -> Dict[str, Any]:
    results = {}
    for clients in levels:
        warm_up = support.load(port, request, clients, 1.0)  # connections, caches
        started = time.perf_counter()
        replies = support.load(port, request, clients, seconds)
        results[str(clients)] = dict(level_summary(replies, time.perf_counter() - started),
                                     warm_up_requests=len(warm_up))
    return results


def swap_under_load(port: int, request: bytes, clients: int, seconds: float,
                    champion: Path, new_run: Path, key: str, old: str, new: str,
                    expected: Dict[str, Any]) -> Dict[str, Any]:
    """Repoint the champion link to ``new_run`` and refresh halfway through a
    ``clients`` run; ``expected``: the scores of each version's label, ``old`` and
    ``new`` the labels before and after."""
    base = services.serving_uri(port)
    started = time.perf_counter()
    thread, out = support.load_in_thread(port, request, clients, seconds, keep_body=True)
    time.sleep(seconds / 2)
    point(champion, new_run)
    refresh_sent = time.perf_counter()
    status, refreshed = support.request(base, "POST", "/model/refresh",
                                        headers={KEY_HEADER: key})
    refresh_returned = time.perf_counter()
    thread.join(seconds + 60)
    replies = out[0]
    summary = level_summary(replies, time.perf_counter() - started)
    wrong, labels = 0, {}  # type: int, Dict[str, int]
    for reply in (r for r in replies if r.status == 200):
        answer = json.loads(reply.body)
        label = answer["model"]["label"]
        labels[label] = labels.get(label, 0) + 1
        if not version_consistent(answer, expected) \
                or (reply.finished < refresh_sent and label != old) \
                or (reply.started > refresh_returned and label != new):
            wrong += 1
    return dict(summary, refresh_status=status, swapped=refreshed.get("changed"),
                refresh_ms=round((refresh_returned - refresh_sent) * 1000, 1),
                labels=labels, inconsistent_answers=wrong)


def version_consistent(answer: Dict[str, Any], expected: Dict[str, Any]) -> bool:
    """The answer names one known version and carries exactly that version's scores."""
    prediction = expected.get(answer["model"]["label"])
    got = answer["predictions"][0]
    return prediction is not None and got["decade"] == prediction["decade"] \
        and abs(got["year"] - prediction["year"]) <= 1e-9


def point(link: Path, target: Path) -> None:
    temporary = link.with_name(link.name + ".new")
    temporary.symlink_to(target)
    os.replace(temporary, link)


def reference_scores(run: Path, songs: Dict[str, Any], row: int) -> Dict[str, Any]:
    """(label, {"year", "decade"}) of one song, scored in process by that run."""
    model = load_version(RunFolderSource(str(run)).resolve())
    frame = model.inputs.frame(songs["timbre"][[row]], {
        "loudness": songs["loudness"][[row]], "tempo": songs["tempo"][[row]]})
    years, decades = model.predict(frame)
    return model.label, {"year": float(years[0]), "decade": int(decades[0])}


def predict_count(base: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    _, _, text = support.exchange(base, "GET", "/metrics")
    return sum(sample.value for family in text_string_to_metric_families(text.decode())
               for sample in family.samples
               if sample.name == "msd_serving_requests_total"
               and sample.labels.get("route") == "/predict")


def targets_met(levels: Dict[str, Any], swap: Dict[str, Any], batch: Dict[str, float]
                ) -> Dict[str, bool]:
    met = {"no_errors": all(level["errors"] == 0 for level in levels.values())
           and swap["errors"] == 0,
           "swap_consistent": swap["inconsistent_answers"] == 0 and bool(swap["swapped"]),
           "batch_100_p50": batch["p50"] <= TARGETS["batch_100_p50_ms"]}
    for clients, limit in TARGETS["p99_ms"].items():
        if str(clients) in levels:
            met["p99_{}_clients".format(clients)] = levels[str(clients)]["p99"] <= limit
    for clients, floor in TARGETS["requests_per_s"].items():
        if str(clients) in levels:
            met["throughput_{}_clients".format(clients)] = \
                levels[str(clients)]["requests_per_s"] >= floor
    return met


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decade-model", default="random_forest_classifier")
    parser.add_argument("--year-model", default="random_forest_regressor")
    parser.add_argument("--train-songs", type=int, default=2000)
    parser.add_argument("--eval-songs", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--spark-repeat", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16,64",
                        help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per level")
    parser.add_argument("--swap-clients", type=int, default=64)
    parser.add_argument("--swap-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--all-models", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(value) for value in args.concurrency.split(",")]

    spark = support.local_spark()
    spark.sparkContext.setLogLevel("ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="msd-bench-serving-"))
    train = support.song_frame(spark, support.synthetic_songs(args.train_songs, seed=1)).cache()
    songs = support.synthetic_songs(args.eval_songs, seed=2)
    test = support.song_frame(spark, songs).cache()
    started = time.perf_counter()
    decade = support.fit(args.decade_model, train, MODEL_PARAMS)
    year = support.fit(args.year_model, train, MODEL_PARAMS)
    fit_seconds = time.perf_counter() - started
    run, swap_run, champion = workdir / "run", workdir / "swap-run", workdir / "champion"
    run.mkdir()
    support.save_run(run, "bench", args.decade_model, decade, args.year_model, year)
    swap_run.mkdir()
    support.save_run(swap_run, "bench-swap", "logistic_regression",
                     support.fit("logistic_regression", train), "linear_regression",
                     support.fit("linear_regression", train))
    champion.symlink_to(run)
    expected_decades = support.spark_predictions(decade, test, "predicted_decade")
    expected_years = support.spark_predictions(year, test, "year_prediction")
    baseline_single = spark_baseline(
        [decade, year], [support.song_frame(spark, _rows(songs, [i]))
                         for i in range(10)], args.spark_repeat)
    baseline_batch = spark_baseline(
        [decade, year], [support.song_frame(spark, _rows(songs, range(100)))],
        args.spark_repeat * 3)
    all_models = in_process_agreement(spark, train, test, songs, workdir / "all") \
        if args.all_models else None
    spark.stop()

    key = secrets.token_urlsafe(32)
    headers = {KEY_HEADER: key}
    old_label, old_scores = reference_scores(run, songs, 0)
    new_label, new_scores = reference_scores(swap_run, songs, 0)
    expected = {old_label: old_scores, new_label: new_scores}
    server = services.serving_service(workdir / "state", services.free_port(),
                                      run_uri=str(champion), poll_seconds=3600,
                                      workers=args.workers,
                                      env={"MSD_SERVING_API_KEYS": key,
                                           "MSD_SERVING_REQUIRE_KEYS": "true"})
    load_before = os.getloadavg()
    server.start()
    try:
        base = services.serving_uri(server.port)
        count = args.eval_songs
        served = []
        for start in range(0, count, 100):
            _, reply = support.request(base, "POST", "/predict", support.songs_json(
                songs, range(start, min(count, start + 100))), headers=headers)
            served += reply["predictions"]
        batch_bodies = [support.songs_json(songs, [(b * 100 + i) % count for i in range(100)])
                        for b in range(args.batches)]
        timed_requests(base, batch_bodies[:5], headers)  # warm-up
        batch = percentiles(timed_requests(base, batch_bodies, headers))
        one_song = support.http_request("POST", "/predict", support.songs_json(songs, [0]),
                                        dict(headers, **{"Content-Type": "application/json"}))
        counted_before = predict_count(base)
        by_level = concurrency_levels(server.port, one_song, levels, args.seconds)
        swap = swap_under_load(server.port, one_song, args.swap_clients, args.swap_seconds,
                               champion, swap_run, key, old_label,
                               new_label, expected)
        counted = predict_count(base) - counted_before
    finally:
        server.stop()
    load_after = os.getloadavg()
    client_count = swap["requests"] + sum(level["requests"] + level["warm_up_requests"]
                                          for level in by_level.values())
    summary = {
        "machine": {"cores": os.cpu_count(), "loadavg_1m_before": round(load_before[0], 2),
                    "loadavg_1m_after": round(load_after[0], 2),
                    "note": "load generator, service and other engineers' work share the "
                            "cores; loadavg includes this benchmark's own processes"},
        "service": {"workers": args.workers, "api_keys": "required", "metrics": "on"},
        "models": {"decade": args.decade_model, "year": args.year_model,
                   "params": MODEL_PARAMS, "fit_seconds": round(fit_seconds, 1),
                   "swap_to": new_label},
        "concurrency": by_level,
        "swap": swap,
        "batch_100_ms": batch,
        "spark_transform_ms": {"single_song": percentiles(baseline_single),
                               "batch_100": percentiles(baseline_batch)},
        "agreement": agreement(served, expected_decades, expected_years),
        "metrics_predict_requests": {"service": counted, "client_measured": client_count},
    }
    summary["targets_met"] = targets_met(by_level, swap, batch)
    if all_models is not None:
        summary["all_models_in_process"] = all_models
    print(json.dumps(summary))
    return 0 if summary["agreement"]["ok"] else 1


def _rows(songs: Dict[str, Any], rows: Any) -> Dict[str, Any]:
    rows = list(rows)
    return {key: (value[rows] if isinstance(value, np.ndarray) else [value[i] for i in rows])
            for key, value in songs.items()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
