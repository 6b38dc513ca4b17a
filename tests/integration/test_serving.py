"""The portable scorer against Spark's own transform for every model type the training
job saves, and the prediction service as a real uvicorn process: predictions, uploads,
bad input, and a champion switch without a restart."""
import json
import os
import time
from pathlib import Path

import boto3
import numpy as np
import pytest

import serving_support as support
from msd_devtools import services
from msd_pipeline.staging.generator import generate_songs
from msd_serving.spark_format import load_pipeline
from msd_serving.stages import UnsupportedModelError
from msd_serving.storage import ArtifactNotFound

DECADE_MODELS = ["logistic_regression", "random_forest_classifier", "gbt_classifier",
                 "multilayer_perceptron"]
YEAR_MODELS = ["linear_regression", "random_forest_regressor", "gbt_regressor"]
RUN_A = ("logistic_regression", "linear_regression")
RUN_B = ("random_forest_classifier", "gbt_regressor")
MAX_UPLOAD_BYTES = 300_000
FILE_KEY, ENV_KEY = "key-from-the-keys-file-3f9c", "key-from-the-environment-81d2"
AUTH = {"X-API-Key": FILE_KEY}
BODY_SECONDS, HEADER_SECONDS = 2, 2


@pytest.fixture(scope="module")
def spark():
    session = support.local_spark()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """Every model type fitted once, saved, and Spark's predictions on unseen songs."""
    train = support.song_frame(spark, support.synthetic_songs(400, seed=1))
    songs = support.synthetic_songs(120, seed=2)
    test = support.song_frame(spark, songs)
    folder = tmp_path_factory.mktemp("models")
    models, saved, expected = {}, {}, {}
    for name in DECADE_MODELS + YEAR_MODELS:
        models[name] = support.fit(name, train)
        column = "predicted_decade" if name in DECADE_MODELS else "year_prediction"
        expected[name] = support.spark_predictions(models[name], test, column)
        saved[name] = folder / name
        models[name].write().save("file://" + str(saved[name]))
    return {"models": models, "saved": saved, "expected": expected, "songs": songs}


def model_frame(songs):
    frame = {name: songs["timbre"][:, i] for i, name in enumerate(support.COLUMNS[:90])}
    frame.update(song_loudness=songs["loudness"], song_tempo=songs["tempo"])
    return frame


@pytest.mark.parametrize("name", DECADE_MODELS)
def test_decade_classes_agree_with_spark(trained, name):
    pipeline = load_pipeline(str(trained["saved"][name]))
    decades = pipeline.transform(model_frame(trained["songs"]))[pipeline.output_column]
    assert list(decades) == trained["expected"][name]
    assert len(set(decades)) > 1  # a constant model would agree trivially


@pytest.mark.parametrize("name", YEAR_MODELS)
def test_years_agree_with_spark(trained, name):
    pipeline = load_pipeline(str(trained["saved"][name]))
    years = pipeline.transform(model_frame(trained["songs"]))[pipeline.output_column]
    assert np.abs(years - np.array(trained["expected"][name])).max() <= 1e-6
    assert np.std(years) > 0.1


def test_model_on_s3_scores_like_the_local_copy(trained, s3_env):
    client = boto3.client("s3", endpoint_url=s3_env)
    client.create_bucket(Bucket="serving-models")
    local = trained["saved"]["gbt_classifier"]
    for path in local.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "serving-models",
                               "runs/r1/" + path.relative_to(local).as_posix())
    remote = load_pipeline("s3://serving-models/runs/r1")
    frame = model_frame(trained["songs"])
    assert list(remote.transform(frame)["predicted_decade"]) \
        == trained["expected"]["gbt_classifier"]


def test_unsupported_stage_is_named(spark, tmp_path):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import PCA, VectorAssembler
    from pyspark.ml.regression import LinearRegression

    frame = spark.createDataFrame([(float(i), float(i % 3), float(2 * i)) for i in range(20)],
                                  ["a", "b", "label"])
    model = Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="raw"),
                             PCA(k=1, inputCol="raw", outputCol="features"),
                             LinearRegression()]).fit(frame)
    model.write().save("file://" + str(tmp_path / "pca"))
    with pytest.raises(UnsupportedModelError, match="PCAModel"):
        load_pipeline(str(tmp_path / "pca"))
    with pytest.raises(ArtifactNotFound, match="metadata"):
        load_pipeline(str(tmp_path))


# --- the service, as a real uvicorn process ---

@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory):
    """Two model versions (runs A and B) and a 'champion' symlink pointing at A."""
    root = tmp_path_factory.mktemp("runs")
    for run_id, (decade, year) in (("run-a", RUN_A), ("run-b", RUN_B)):
        (root / run_id).mkdir()
        support.save_run(root / run_id, run_id, decade, trained["models"][decade],
                         year, trained["models"][year])
    champion = root / "champion"
    champion.symlink_to(root / "run-a")
    return {"root": root, "champion": champion}


@pytest.fixture(scope="module")
def service(runs, tmp_path_factory):
    """The service as docker-compose runs it: keys required (one from a keys file, one
    from $MSD_SERVING_API_KEYS), with short body and header deadlines."""
    state = tmp_path_factory.mktemp("serving-state")
    (state / "api-keys").write_text("# the test's keys\n{}\n".format(FILE_KEY))
    port = services.free_port()
    server = services.serving_service(
        state, port, run_uri=str(runs["champion"]), poll_seconds=0.5,
        api_keys_file=str(state / "api-keys"),
        env={"MSD_SERVING_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
             "MSD_SERVING_API_KEYS": ENV_KEY, "MSD_SERVING_REQUIRE_KEYS": "true",
             "MSD_SERVING_BODY_SECONDS": str(BODY_SECONDS),
             "MSD_SERVING_HEADER_SECONDS": str(HEADER_SECONDS)})
    pid = server.start()
    yield {"base": services.serving_uri(port), "port": port, "pid": pid, "server": server}
    server.stop()
    assert not services.port_in_use(port)


def point_champion(runs, run_id):
    link = runs["champion"]
    temporary = link.with_name("champion.new")
    temporary.symlink_to(runs["root"] / run_id)
    os.replace(temporary, link)  # atomic, as a deployment would do it


def wait_for_label(base, label, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, model = support.request(base, "GET", "/model", headers=AUTH)
        if status == 200 and model["label"] == label:
            return model
        time.sleep(0.2)
    raise AssertionError("still serving {} after {}s".format(model.get("label"), timeout))


def test_health_and_model_describe_the_champion(service):
    ready = (200, {"status": "ok", "model": "run-a/logistic_regression+linear_regression"})
    assert support.request(service["base"], "GET", "/health/ready") == ready
    assert support.request(service["base"], "GET", "/health") == ready  # the alias
    assert support.request(service["base"], "GET", "/health/live") == (200, {"status": "alive"})
    status, model = support.request(service["base"], "GET", "/model", headers=AUTH)
    assert status == 200
    assert (model["run_id"], model["decade_model"], model["year_model"]) == ("run-a",) + RUN_A
    assert model["inputs"]["song_fields"] == ["loudness", "tempo"]
    assert model["inputs"]["timbre"] == 90


@pytest.mark.parametrize("rows", [[0], list(range(100))])
def test_predictions_match_spark(service, trained, rows):
    status, reply = support.request(service["base"], "POST", "/predict",
                                    support.songs_json(trained["songs"], rows),
                                    headers=AUTH)
    assert status == 200, reply
    assert reply["model"]["label"] == "run-a/logistic_regression+linear_regression"
    predictions = reply["predictions"]
    assert [p["track_id"] for p in predictions] == [trained["songs"]["track_ids"][i]
                                                   for i in rows]
    assert [p["decade"] for p in predictions] == [
        int(trained["expected"][RUN_A[0]][i]) for i in rows]
    for prediction, i in zip(predictions, rows):
        assert abs(prediction["year"] - trained["expected"][RUN_A[1]][i]) <= 1e-6
        assert 1970 <= prediction["year_rounded"] <= 2009


def test_uploaded_msd_files_score_like_their_features(service, tmp_path):
    from msdlib.core.features import timbre_features
    from msdlib.io.hdf5_reader import read_song

    paths = generate_songs(str(tmp_path), 2, seed=5)
    files = [(os.path.basename(path), Path(path).read_bytes()) for path in paths]
    status, reply = support.request(service["base"], "POST", "/predict",
                                    *support.multipart(files), headers=AUTH)
    assert status == 200, reply
    songs = [read_song(path) for path in paths]
    assert [p["track_id"] for p in reply["predictions"]] == [
        song["analysis"]["songs"]["track_id"] for song in songs]
    as_json = json.dumps({"songs": [
        {"timbre": timbre_features(song["analysis"]["segments_timbre"]).tolist(),
         "loudness": song["analysis"]["songs"]["loudness"],
         "tempo": song["analysis"]["songs"]["tempo"]} for song in songs]}).encode()
    _, from_features = support.request(service["base"], "POST", "/predict", as_json,
                                       headers=AUTH)
    assert [(p["year"], p["decade"]) for p in reply["predictions"]] == [
        (p["year"], p["decade"]) for p in from_features["predictions"]]


def song(**changes):
    return dict({"timbre": [0.5] * 90, "loudness": -8.0, "tempo": 110.0}, **changes)


def body(*songs):
    return json.dumps({"songs": list(songs)}).encode()


@pytest.mark.parametrize("payload,content_type,status,message", [
    (body(song(timbre=[0.5] * 89)), "application/json", 422, "has 89 values, expected 90"),
    (body(song(), song(timbre=[0.5] * 91)), "application/json", 422, "song 1: 'timbre' has 91"),
    (body(song(tempo=float("nan"))), "application/json", 422, "'tempo' is nan"),
    (body(song(timbre=[0.5] * 89 + [float("inf")])), "application/json", 422, "timbre[89]"),
    (body(song(timbre=["x"] * 90)), "application/json", 422, "timbre[0] is a string"),
    (body({"timbre": [0.5] * 90, "loudness": -8.0}), "application/json", 422,
     "missing field 'tempo'"),
    (body(song(tempoo=1.0)), "application/json", 422, "unknown field(s) 'tempoo'"),
    (body(), "application/json", 422, "'songs' is empty"),
    (b'{"songs": [', "application/json", 400, "not valid JSON"),
    (b'[1, 2]', "application/json", 422, "expected an object"),
    (b"year please", "text/plain", 415, "multipart/form-data"),
])
def test_bad_json_input_is_a_clear_4xx(service, payload, content_type, status, message):
    got, reply = support.request(service["base"], "POST", "/predict", payload, content_type,
                                 headers=AUTH)
    assert got == status
    assert message in reply["detail"]


@pytest.mark.parametrize("files,status,message", [
    ([("notes.h5", b"not an hdf5 file at all")], 422, "notes.h5: not a usable MSD song"),
    ([("empty.h5", b"")], 422, "empty_file"),
    ([("big.h5", b"\0" * (MAX_UPLOAD_BYTES + 1))], 413, "byte limit"),
    ([], 422, "no file uploaded"),
])
def test_bad_uploads_are_a_clear_4xx(service, files, status, message):
    got, reply = support.request(service["base"], "POST", "/predict",
                                 *support.multipart(files), headers=AUTH)
    assert got == status
    assert message in reply["detail"]


def test_champion_switch_without_restart(service, runs, trained):
    point_champion(runs, "run-b")
    try:
        model = wait_for_label(service["base"],
                               "run-b/random_forest_classifier+gbt_regressor")
        assert model["run_uri"] == str(runs["root"] / "run-b")
        status, reply = support.request(service["base"], "POST", "/predict",
                                        support.songs_json(trained["songs"], range(50)),
                                        headers=AUTH)
        assert status == 200
        assert [p["decade"] for p in reply["predictions"]] == [
            int(decade) for decade in trained["expected"][RUN_B[0]][:50]]
        years = np.array([p["year"] for p in reply["predictions"]])
        assert np.abs(years - np.array(trained["expected"][RUN_B[1]][:50])).max() <= 1e-6
        assert service["server"].pid() == service["pid"]  # same process: no restart
    finally:
        point_champion(runs, "run-a")
        wait_for_label(service["base"], "run-a/logistic_regression+linear_regression")


def test_broken_new_version_keeps_the_old_one_serving(service, runs):
    broken = runs["root"] / "run-broken"
    broken.mkdir()
    (broken / "metrics.json").write_text(json.dumps({"run_id": "run-broken", "decade": {
        "chosen": "x", "model_dir": "models/missing"}, "year": {"chosen": "y",
                                                               "model_dir": "models/missing"}}))
    point_champion(runs, "run-broken")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, model = support.request(service["base"], "POST", "/model/refresh",
                                            headers=AUTH)
            if model["watcher"]["last_error"]:
                break
            time.sleep(0.2)
        assert status == 200
        assert model["label"] == "run-a/logistic_regression+linear_regression"
        assert "models/missing" in model["watcher"]["last_error"]
        assert support.request(service["base"], "GET", "/health")[0] == 200
    finally:
        point_champion(runs, "run-a")


# --- credentials, metrics, request ids, probes ---

OPEN_ROUTES = [("GET", "/health"), ("GET", "/health/live"), ("GET", "/health/ready"),
               ("GET", "/metrics")]
KEYED_ROUTES = [("GET", "/model"), ("POST", "/predict"), ("POST", "/model/refresh")]


def route_call(service, method, path, key):
    headers = {} if key is None else {"X-API-Key": key}
    payload = body(song()) if path == "/predict" else None
    return support.exchange(service["base"], method, path, payload, headers=headers)


@pytest.mark.parametrize("method,path", OPEN_ROUTES + KEYED_ROUTES)
@pytest.mark.parametrize("key", [None, "wrong-key", FILE_KEY, ENV_KEY])
def test_keys_on_every_route(service, method, path, key):
    status, _, content = route_call(service, method, path, key)
    if (method, path) in OPEN_ROUTES or key in (FILE_KEY, ENV_KEY):
        assert status == 200, content
    elif key is None:
        assert status == 401
        assert "needs an API key: send it in the X-API-Key header" \
            in json.loads(content)["detail"]
    else:
        assert status == 403
        assert json.loads(content) == {
            "detail": "the API key in the X-API-Key header is not valid"}


def test_keys_never_reach_the_log(service):
    for key in ("wrong-key-c4be", FILE_KEY, ENV_KEY):
        route_call(service, "POST", "/predict", key)
    log = service["server"].log_file.read_text()
    assert "/predict" in log
    for key in ("wrong-key-c4be", FILE_KEY, ENV_KEY):
        assert key not in log


def metric_samples(base):
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, text = support.exchange(base, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples}


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_with_traffic(service, trained):
    before = metric_samples(service["base"])
    for _ in range(3):
        status, _ = support.request(service["base"], "POST", "/predict",
                                    support.songs_json(trained["songs"], [0, 1]), headers=AUTH)
        assert status == 200
    assert support.request(service["base"], "POST", "/predict", body(song()))[0] == 401
    after = metric_samples(service["base"])
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert sample(after, "msd_serving_requests_total", **ok) \
        - sample(before, "msd_serving_requests_total", **ok) == 3
    assert sample(after, "msd_serving_requests_total", **dict(ok, status="401")) \
        - sample(before, "msd_serving_requests_total", **dict(ok, status="401")) == 1
    assert sample(after, "msd_serving_songs_scored_total") \
        - sample(before, "msd_serving_songs_scored_total") == 6
    latency = "msd_serving_request_duration_seconds_count"
    assert sample(after, latency, route="/predict") - sample(before, latency,
                                                             route="/predict") == 4
    assert sample(after, "msd_serving_model_info", run_id="run-a", registry_version="",
                  label="run-a/logistic_regression+linear_regression") == 1
    assert sample(after, "msd_serving_model_last_swap_timestamp_seconds") > 0


def test_request_ids_and_one_access_line_per_request(service, trained):
    status, headers, _ = support.exchange(
        service["base"], "POST", "/predict", support.songs_json(trained["songs"], [3, 4]),
        headers=dict(AUTH, **{"X-Request-ID": "client-id-42"}))
    assert status == 200 and headers["x-request-id"] == "client-id-42"
    _, generated, _ = support.exchange(service["base"], "GET", "/health/live",
                                       headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(generated["x-request-id"]) == 32 and " " not in generated["x-request-id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in service["server"].log_file.read_text()
                 .splitlines() if "client-id-42" in line]
        if lines:
            break
        time.sleep(0.1)
    [line] = lines
    assert {k: line[k] for k in ("method", "route", "status", "songs", "model")} == {
        "method": "POST", "route": "/predict", "status": 200, "songs": 2,
        "model": "run-a/logistic_regression+linear_regression"}
    assert line["latency_ms"] > 0
    assert trained["songs"]["track_ids"][3] not in service["server"].log_file.read_text()


def test_readiness_before_and_after_a_model_and_admin_without_keys(runs, tmp_path):
    """No keys configured: /predict is open, /model/refresh refused; the link names no
    run yet, so the service is live but not ready until it does."""
    link = tmp_path / "champion"
    link.symlink_to(tmp_path / "not-yet")
    port = services.free_port()
    server = services.serving_service(tmp_path, port, run_uri=str(link), poll_seconds=0.3)
    server.start()
    base = services.serving_uri(port)
    try:
        assert support.request(base, "GET", "/health/live")[0] == 200
        status, ready = support.request(base, "GET", "/health/ready")
        assert status == 503 and "metrics.json" in ready["detail"]
        assert support.request(base, "POST", "/predict", body(song()))[0] == 503
        failures = sample(metric_samples(base), "msd_serving_model_load_failures_total",
                          stage="resolve")
        assert failures >= 1
        temporary = tmp_path / "champion.new"
        temporary.symlink_to(runs["root"] / "run-a")
        os.replace(temporary, link)
        deadline = time.monotonic() + 20
        while support.request(base, "GET", "/health/ready")[0] != 200:
            assert time.monotonic() < deadline, "not ready 20 s after the run appeared"
            time.sleep(0.2)
        assert support.request(base, "POST", "/predict", body(song()))[0] == 200
        status, refused = support.request(base, "POST", "/model/refresh")
        assert status == 401 and "none is configured" in refused["detail"]
    finally:
        server.stop()


def test_swap_under_concurrent_load_fails_no_request(service, runs, trained):
    """Eight keep-alive clients post one song for 4 s; halfway the champion moves to
    run B and /model/refresh is called: every answer is a 200 naming one version and
    carrying that version's scores, A before the refresh, B after it returned."""
    expected = {"run-a/logistic_regression+linear_regression": RUN_A,
                "run-b/random_forest_classifier+gbt_regressor": RUN_B}
    request = support.http_request("POST", "/predict", support.songs_json(trained["songs"], [7]),
                                   dict(AUTH, **{"Content-Type": "application/json"}))
    thread, out = support.load_in_thread(service["port"], request, 8, 4.0, keep_body=True)
    try:
        time.sleep(2.0)
        point_champion(runs, "run-b")
        sent = time.perf_counter()
        status, refreshed = support.request(service["base"], "POST", "/model/refresh",
                                            headers=AUTH)
        returned = time.perf_counter()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        point_champion(runs, "run-a")
        wait_for_label(service["base"], "run-a/logistic_regression+linear_regression")
    assert status == 200 and refreshed["changed"]
    replies = out[0]
    assert len(replies) > 50 and {reply.status for reply in replies} == {200}
    labels = set()
    for reply in replies:
        answer = json.loads(reply.body)
        label = answer["model"]["label"]
        labels.add(label)
        decade_model, year_model = expected[label]
        [prediction] = answer["predictions"]
        assert prediction["decade"] == int(trained["expected"][decade_model][7])
        assert abs(prediction["year"] - trained["expected"][year_model][7]) <= 1e-6
        if reply.finished < sent:
            assert label.startswith("run-a/")
        if reply.started > returned:
            assert label.startswith("run-b/")
    assert labels == set(expected)



def test_two_workers_answer_with_the_metrics_of_both(runs, tmp_path):
    """--workers 2: whichever worker answers /metrics reports both workers' traffic
    (every scrape counts all 20 requests) and both serve the model (info gauge 2)."""
    port = services.free_port()
    server = services.serving_service(tmp_path, port, run_uri=str(runs["root"] / "run-a"),
                                      workers=2)
    server.start()
    base = services.serving_uri(port)
    try:
        deadline = time.monotonic() + 30
        label = {"label": "run-a/logistic_regression+linear_regression", "run_id": "run-a",
                 "registry_version": ""}
        while sample(metric_samples(base), "msd_serving_model_info", **label) != 2:
            assert time.monotonic() < deadline, "the second worker never served the model"
            time.sleep(0.3)
        for _ in range(20):  # a new connection each: the kernel spreads them
            assert support.request(base, "POST", "/predict", body(song()))[0] == 200
        for _ in range(6):
            samples = metric_samples(base)
            assert sample(samples, "msd_serving_requests_total", route="/predict",
                          method="POST", status="200") == 20
            assert sample(samples, "msd_serving_songs_scored_total") == 20
    finally:
        server.stop()

# --- bad traffic ---

def raw_connection(service):
    import socket

    return socket.create_connection(("127.0.0.1", service["port"]), timeout=10)


def read_until_closed(connection) -> bytes:
    chunks = []
    while True:
        chunk = connection.recv(4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def answers_quickly(service, rounds=5):
    """Other clients are served meanwhile: each /predict within a second."""
    for _ in range(rounds):
        started = time.monotonic()
        status, _ = support.request(service["base"], "POST", "/predict", body(song()),
                                    headers=AUTH)
        assert status == 200 and time.monotonic() - started < 1.0
        time.sleep(0.1)


def test_a_body_trickled_byte_by_byte_is_a_408_and_others_are_served(service):
    connection = raw_connection(service)
    payload = body(song())
    connection.sendall(support.http_request("POST", "/predict", payload, dict(
        AUTH, **{"Content-Type": "application/json"}))[:-len(payload)])
    started = time.monotonic()
    try:
        for byte in payload[:10]:
            connection.sendall(bytes([byte]))
            answers_quickly(service, rounds=1)
        reply = read_until_closed(connection)
        # the deadline counts from the headers: the 408 comes BODY_SECONDS after them
        assert time.monotonic() - started < BODY_SECONDS + 5
    finally:
        connection.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in reply.lower()
    assert b"not received within 2 s" in reply


def seconds_until_closed(service, connection, trickle: bytes) -> float:
    """Send ``trickle`` a byte every 0.2 s (other clients served in between) until the
    service closes the connection; the seconds that took."""
    import socket

    started = time.monotonic()
    connection.settimeout(0.2)
    for byte in trickle:
        try:
            connection.sendall(bytes([byte]))
            data = connection.recv(4096)
        except socket.timeout:
            answers_quickly(service, rounds=1)
            continue
        except OSError:  # reset by the service
            return time.monotonic() - started
        assert data == b"", data  # closed, not answered
        return time.monotonic() - started
    raise AssertionError("still open after the whole trickle")


def test_headers_trickled_or_never_sent_lose_the_connection(service):
    trickled, idle = raw_connection(service), raw_connection(service)
    try:
        request = support.http_request("GET", "/health/live", headers={"X-Pad": "p" * 40})
        assert HEADER_SECONDS - 0.5 < seconds_until_closed(service, trickled, request[:-4]) \
            < HEADER_SECONDS + 3
        idle.settimeout(HEADER_SECONDS + 3)
        assert idle.recv(1) == b""  # connected, sent nothing: closed as well
    finally:
        trickled.close()
        idle.close()


def test_oversized_headers_and_malformed_multipart_are_4xx(service):
    connection = raw_connection(service)
    try:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: "
                           + b"a" * 200_000 + b"\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 431 ")
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while the client was still sending: also refused
    finally:
        connection.close()
    for payload, content_type in [
            (b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno end", "b"),
            (b"--b\r\nbroken header line\r\n\r\ndata\r\n--b--\r\n", "b"),
            (b"anything", None)]:
        kind = "multipart/form-data" + ("; boundary=" + content_type if content_type else "")
        status, reply = support.request(service["base"], "POST", "/predict", payload, kind,
                                        headers=AUTH)
        assert 400 <= status < 500, reply
    answers_quickly(service)


# --- the champion alias of the MLflow registry ---

@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """A registry of this module's own (the session's is shared with the DAG tests)."""
    with services.running_mlflow(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def mlflow_call(base, path, payload):
    status, reply = support.request(base, "POST", "/api/2.0/mlflow/" + path,
                                    json.dumps(payload).encode())
    assert status == 200, reply
    return reply


def register(base, run_folder):
    """One version of msd-song-year for a run folder, as the registry module does it:
    a run's artifacts as its source, the folder in tag artifacts_uri."""
    run = mlflow_call(base, "runs/create", {"experiment_id": "0"})["run"]["info"]
    version = mlflow_call(base, "model-versions/create", {
        "name": "msd-song-year", "source": "runs:/{}/run".format(run["run_id"]),
        "run_id": run["run_id"], "tags": [{"key": "artifacts_uri", "value": str(run_folder)}]})
    return version["model_version"]["version"]


def test_serves_mlflows_champion_and_follows_the_alias(mlflow_uri, runs, tmp_path):
    mlflow_call(mlflow_uri, "registered-models/create", {"name": "msd-song-year"})
    port = services.free_port()
    server = services.serving_service(tmp_path, port, tracking_uri=mlflow_uri,
                                      poll_seconds=0.5)
    pid = server.start()
    base = services.serving_uri(port)
    try:
        status, health = support.request(base, "GET", "/health")
        assert status == 503 and "no such alias" in health["detail"]
        for run_id in ("run-a", "run-b"):
            version = register(mlflow_uri, runs["root"] / run_id)
            mlflow_call(mlflow_uri, "registered-models/alias",
                        {"name": "msd-song-year", "alias": "champion", "version": version})
            model = wait_for_label(base, "msd-song-year/" + version)
            assert model["run_id"] == run_id and model["registry_version"] == version
        status, reply = support.request(base, "POST", "/predict", body(song()))
        assert status == 200 and reply["model"]["label"] == "msd-song-year/" + version
        assert server.pid() == pid
    finally:
        server.stop()


def test_services_cli_starts_and_stops_the_service(runs, tmp_path, capsys):
    port = str(services.free_port())
    cli = ["--state-dir", str(tmp_path), "--serving-port", port]
    assert services.main(["start", "serving", "--run-uri", str(runs["root"] / "run-a")]
                         + cli) == 0
    try:
        assert "serving: running" in capsys.readouterr().out
        assert services.main(["status", "serving"] + cli) == 0
        [status] = json.loads(capsys.readouterr().out)
        assert status["running"] and status["ready"]
        assert support.request(services.serving_uri(int(port)), "GET", "/health")[1][
            "model"] == "run-a/logistic_regression+linear_regression"
    finally:
        assert services.main(["stop", "serving"] + cli) == 0
    assert not services.port_in_use(int(port))


def test_serves_the_training_jobs_models_like_spark(spark, mongo_uri, tmp_path):
    """The real pipeline: generated MSD files ingested and trained by the Spark jobs;
    the run folder served by the portable scorer agrees with Spark's loaded models."""
    import subprocess
    import sys

    import pymongo
    from pyspark.ml import PipelineModel

    from msd_serving.champion import RunFolderSource, load_version
    from project_paths import PROJECT_ROOT, SPARK_JOBS

    generate_songs(str(tmp_path / "songs"), 200, seed=11, unknown_year_fraction=0.2)
    env = dict(os.environ, MSD_MONGO_URI=mongo_uri, PYSPARK_PYTHON=sys.executable)
    common = ["--set", "mongo.database=serving_job", "--set", "spark.master=local[2]"]
    jobs = [["ingest_songs.py", "--run-id", "ingest", "--set",
             "ingest.source=" + str(tmp_path / "songs")],
            ["train_models.py", "--run-id", "job-run", "--set", "training.folds=2",
             "--set", 'training.classifiers=["gbt_classifier"]',
             "--set", 'training.grids.gbt_classifier={"maxIter": [3], "maxDepth": [2]}',
             "--set", 'training.regressors=["random_forest_regressor"]',
             "--set", 'training.grids.random_forest_regressor={"numTrees": [20]}',
             "--set", "training.artifacts_uri=" + str(tmp_path / "artifacts")]]
    for job in jobs:
        done = subprocess.run([sys.executable, str(SPARK_JOBS / job[0])]
                              + job[1:] + common, env=env, capture_output=True, text=True,
                              timeout=900, cwd=str(PROJECT_ROOT))
        assert done.returncode == 0, done.stderr[-3000:]
    served = load_version(RunFolderSource(str(tmp_path / "artifacts" / "job-run")).resolve())
    client = pymongo.MongoClient(mongo_uri)
    documents = list(client.serving_job.songs.find(
        {}, {"features.timbre": 1, "analysis.songs": 1}))
    client.drop_database("serving_job")
    client.close()
    timbre = np.array([doc["features"]["timbre"] for doc in documents])
    fields = {name: np.array([doc["analysis"]["songs"][name] for doc in documents])
              for name in served.inputs.song_fields}
    years, decades = served.predict(served.inputs.frame(timbre, fields))

    frame = served.inputs.frame(timbre, fields)
    columns = served.inputs.columns
    rows = spark.createDataFrame([tuple(float(frame[c][i]) for c in columns)
                                  for i in range(len(documents))], columns)
    decade_model = PipelineModel.load("file://" + str(
        tmp_path / "artifacts" / "job-run" / served.metrics["decade"]["model_dir"]))
    year_model = PipelineModel.load("file://" + str(
        tmp_path / "artifacts" / "job-run" / served.metrics["year"]["model_dir"]))
    expected = year_model.transform(decade_model.transform(rows)) \
        .select("predicted_decade", "year_prediction").collect()
    assert [int(row[0]) for row in expected] == decades.tolist()
    assert np.abs(years - np.array([row[1] for row in expected])).max() <= 1e-6
