"""Real Spark models for the serving tests and benchmark: songs with a decade signal in
their timbre features, the training job's pipelines (VectorAssembler → StandardScaler →
msdlib's estimators, decade names appended) fitted with local Spark and saved the way
the job saves them: ``<run>/models/{decade,year}_<name>/`` named in ``<run>/metrics.json``.
"""
import asyncio
import datetime
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from msdlib.core.features import FEATURE_NAMES
from msdlib.core.models import (LABEL_COL, WEIGHT_COL, YEAR_LABEL_COL, make_estimator,
                                with_decade_names)

SONG_FIELDS = ["loudness", "tempo"]
COLUMNS = list(FEATURE_NAMES) + ["song_" + name for name in SONG_FIELDS]
DECADES = [1970, 1980, 1990, 2000]


def synthetic_songs(count: int, seed: int) -> Dict[str, Any]:
    """Timbre features and song fields whose values drift with the year."""
    rng = np.random.default_rng(seed)
    years = rng.integers(DECADES[0], DECADES[-1] + 10, size=count)
    drift = (years - 1990) / 10.0
    timbre = rng.normal(size=(count, len(FEATURE_NAMES))) * 5.0
    timbre[:, :12] += drift[:, None] * np.linspace(1.0, 4.0, 12)
    loudness = -12.0 + 1.5 * drift + rng.normal(size=count)
    tempo = 120.0 + 5.0 * drift + rng.normal(size=count) * 10.0
    return {"timbre": timbre, "loudness": loudness, "tempo": tempo, "year": years,
            "track_ids": ["TRSYN{:013d}".format(seed * 1000000 + i) for i in range(count)]}


def song_frame(spark: Any, songs: Dict[str, Any]) -> Any:
    """A DataFrame with the model columns, labels and a unit weight."""
    decade_index = {decade: float(i) for i, decade in enumerate(DECADES)}
    rows = [tuple(float(v) for v in songs["timbre"][i])
            + (float(songs["loudness"][i]), float(songs["tempo"][i]),
               decade_index[int(songs["year"][i]) // 10 * 10], float(songs["year"][i]), 1.0)
            for i in range(len(songs["year"]))]
    return spark.createDataFrame(rows, COLUMNS + [LABEL_COL, YEAR_LABEL_COL, WEIGHT_COL])


SMALL = {"numTrees": 10, "maxDepth": 4, "maxIter": 5}


def estimator(name: str, columns: Sequence[str], params: Dict[str, Any] = SMALL) -> Any:
    """msdlib's estimator for ``name`` with ``params`` where it has them (small by
    default); the perceptron is built here (its layers depend on the data)."""
    from pyspark.ml.classification import MultilayerPerceptronClassifier

    if name == "multilayer_perceptron":
        return MultilayerPerceptronClassifier(
            featuresCol="decade_features", labelCol=LABEL_COL,
            predictionCol="decade_prediction", rawPredictionCol="decade_raw_prediction",
            probabilityCol="decade_probability", layers=[len(columns), 8, len(DECADES)],
            maxIter=40, seed=3)
    model = make_estimator(name, seed=3, weighted=True)
    target = model.getClassifier() if hasattr(model, "getClassifier") else model
    for param, value in params.items():
        if target.hasParam(param):
            target.set(target.getParam(param), value)
    if hasattr(model, "getClassifier"):
        model.setClassifier(target)
    return model


def fit(name: str, frame: Any, params: Dict[str, Any] = SMALL,
        columns: Sequence[str] = tuple(COLUMNS)) -> Any:
    """The fitted PipelineModel; decade models end with the decade names."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    model = estimator(name, columns, params)
    features = model.getFeaturesCol()
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=list(columns), outputCol=features + "_raw"),
        StandardScaler(inputCol=features + "_raw", outputCol=features, withMean=True,
                       withStd=True),
        model]).fit(frame)
    return with_decade_names(pipeline, DECADES) if features.startswith("decade") \
        else pipeline


def save_run(run_dir: Path, run_id: str, decade_name: str, decade_model: Any,
             year_name: str, year_model: Any) -> Path:
    """Save both models and a metrics.json naming them, as the training job does."""
    metrics = {"schema_version": 1, "run_id": run_id,
               "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "training_settings": {"song_features": SONG_FIELDS + ["energy"]},
               "decade": {"chosen": decade_name, "classes": DECADES,
                          "model_dir": "models/decade_" + decade_name,
                          "test": {"macro_f1": 0.5}},
               "year": {"chosen": year_name, "model_dir": "models/year_" + year_name,
                        "train_year_range": [DECADES[0], DECADES[-1] + 9],
                        "test": {"rmse": 5.0}}}
    for task, model in (("decade", decade_model), ("year", year_model)):
        model.write().overwrite().save("file://" + str(run_dir / metrics[task]["model_dir"]))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def spark_predictions(model: Any, frame: Any, column: str) -> List[Any]:
    """One output column of ``model.transform`` in row order (no collect of features)."""
    return [row[0] for row in model.transform(frame).select(column).collect()]


def local_spark() -> Any:
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[1]").appName("msd-serving-tests")
            .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "1").getOrCreate())


def exchange(base: str, method: str, path: str, body: bytes = None,
             content_type: str = "application/json", connection: Any = None,
             headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP call; reuses
    ``connection`` when given."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(base)
    conn = connection or http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    sent = dict({"Content-Type": content_type} if body is not None else {}, **(headers or {}))
    conn.request(method, path, body=body, headers=sent)
    reply = conn.getresponse()
    content = reply.read()
    if connection is None:
        conn.close()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, content


def request(base: str, method: str, path: str, body: bytes = None,
            content_type: str = "application/json", connection: Any = None,
            headers: Optional[Dict[str, str]] = None):
    """(status, decoded JSON) of one HTTP call; reuses ``connection`` when given."""
    status, _, content = exchange(base, method, path, body, content_type, connection, headers)
    return status, json.loads(content or b"null")


def songs_json(songs: Dict[str, Any], rows: Sequence[int]) -> bytes:
    """The /predict JSON body for some rows of ``synthetic_songs`` output."""
    return json.dumps({"songs": [
        {"track_id": songs["track_ids"][i], "timbre": songs["timbre"][i].tolist(),
         "loudness": float(songs["loudness"][i]), "tempo": float(songs["tempo"][i])}
        for i in rows]}).encode()


def multipart(files: Sequence[tuple], field: str = "file"):
    """(body, content type) uploading ``(filename, bytes)`` pairs in one form field."""
    boundary = "msd-serving-test-boundary"
    parts = []
    for name, content in files:
        parts.append("--{}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".format(
                         boundary, field, name).encode() + content + b"\r\n")
    body = b"".join(parts) + "--{}--\r\n".format(boundary).encode()
    return body, "multipart/form-data; boundary=" + boundary


# --- a bounded HTTP load generator: keep-alive clients on 127.0.0.1 ---

@dataclass
class Reply:
    started: float    # perf_counter() when the request was sent
    finished: float   # when its whole response had arrived
    status: int       # 0: the connection failed
    body: bytes = b""


def http_request(method: str, path: str, body: bytes = b"",
                 headers: Optional[Dict[str, str]] = None) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive request."""
    lines = ["{} {} HTTP/1.1".format(method, path), "Host: 127.0.0.1",
             "Content-Length: {}".format(len(body))]
    lines += ["{}: {}".format(name, value) for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one_client(port: int, request: bytes, deadline: float, replies: List[Reply],
                      keep_body: bool) -> None:
    reader = writer = None
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                AttributeError, ValueError):
            replies.append(Reply(started, time.perf_counter(), 0))
            writer = _closed(writer)
            await asyncio.sleep(0.01)
            continue
        replies.append(Reply(started, time.perf_counter(), status,
                             body if keep_body or status != 200 else b""))
    _closed(writer)


def _closed(writer: Any) -> None:
    if writer is not None:
        writer.close()
    return None


async def _load(port: int, request: bytes, clients: int, seconds: float,
                keep_body: bool) -> List[Reply]:
    replies = []  # type: List[Reply]
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_one_client(port, request, deadline, replies, keep_body)
                           for _ in range(clients)))
    return replies


def load(port: int, request: bytes, clients: int, seconds: float,
         keep_body: bool = False) -> List[Reply]:
    """``clients`` keep-alive connections sending ``request`` back to back for
    ``seconds`` (each finishes its last request). Bodies of 200s kept on demand."""
    return asyncio.run(_load(port, request, clients, seconds, keep_body))


def load_in_thread(port: int, request: bytes, clients: int, seconds: float,
                   keep_body: bool = False) -> Tuple[threading.Thread, List[List[Reply]]]:
    """``load`` in a background thread: (the started thread, [replies] once joined)."""
    out = []  # type: List[List[Reply]]
    thread = threading.Thread(target=lambda: out.append(
        load(port, request, clients, seconds, keep_body)), daemon=True)
    thread.start()
    return thread, out
