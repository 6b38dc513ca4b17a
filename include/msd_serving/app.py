"""The prediction service: what year is this song?

    python -m msd_serving.app --port 8000 --run-uri artifacts/<run_id>
    python -m msd_serving.app --port 8000 --tracking-uri http://127.0.0.1:5000

* ``POST /predict`` with JSON ``{"songs": [{"timbre": [90 numbers], "loudness": ...,
  "tempo": ...}, ...]}`` or a multipart upload of MSD ``.h5`` files (field ``file``,
  repeatable) → ``{"model": {...}, "predictions": [{"track_id", "year",
  "year_rounded", "decade"}]}``; ``year`` is the year model's output, ``year_rounded``
  that value rounded and clipped to the training years (as stored imputations are);
* ``GET /model``: the version served, its source and the inputs it reads;
  ``POST /model/refresh`` (admin: always needs an API key) re-checks the source now;
* ``GET /health/live``: 200 while the process answers; ``GET /health/ready`` (and its
  alias ``GET /health``): 200 when a model is served, 503 (with the reason) before;
* ``GET /metrics``: Prometheus text format (msd_serving.observability).

API keys (msd_serving.security, msd_serving.settings): ``X-API-Key`` header; 401
without one, 403 with a wrong one. Bad input is a 4xx with a ``detail`` message: 400
unreadable JSON or multipart, 408 a body too slow to arrive, 413 too large, 415 another
content type, 422 a song the model cannot score. Every answer carries an
``X-Request-ID`` (the caller's, or a new one) that the access log line repeats.

Worker model: one event loop per worker process. Requests are read, authorised and
answered on the loop; a JSON body up to ``inline_body_bytes`` (about 16 songs) is
parsed and scored there (well under a millisecond), larger bodies and uploads in the
thread pool so a big batch never stalls other requests. ``--workers N`` runs N
processes on one port (metrics shared through $PROMETHEUS_MULTIPROC_DIR).
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from msd_serving.champion import ChampionWatcher, ServedModel
from msd_serving.inputs import InputError
from msd_serving.limits import (BodyGuard, BodyTooLarge, BodyTooSlow, HeaderDeadlineProtocol,
                                too_large, too_slow)
from msd_serving.observability import (ACCESS_KEY, Observed, ServiceMetrics,
                                       configure_logging, multiprocess_dir)
from msd_serving.security import KEY_HEADER, ApiKeys
from msd_serving.settings import ServingSettings, SettingsError

HOST = "127.0.0.1"
JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"
KEY_PARAMETER = {"parameters": [{
    "name": KEY_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
    "description": "One of the service's API keys: always needed for /model/refresh, "
                   "for /predict and /model when the service requires keys"}]}
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    JSON_TYPE: {"schema": {"type": "object", "required": ["songs"], "properties": {
        "songs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["timbre"],
            "properties": {"track_id": {"type": "string"},
                           "timbre": {"type": "array", "items": {"type": "number"},
                                      "minItems": 90, "maxItems": 90}},
            "additionalProperties": {"type": "number",
                                     "description": "song fields named by GET /model"}}}}},
                "example": {"songs": [{"timbre": [0.0] * 90, "loudness": -7.5,
                                       "tempo": 120.0}]}},
    MULTIPART_TYPE: {"schema": {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
}}}


def create_app(settings: Optional[ServingSettings] = None,
               watcher: Optional[ChampionWatcher] = None) -> FastAPI:
    settings = settings or ServingSettings.from_env()
    keys = ApiKeys(settings.api_keys())
    keys_required = settings.keys_required(len(keys))
    metrics = ServiceMetrics()
    watcher = watcher or ChampionWatcher(settings.source(), settings.poll_seconds,
                                         on_swap=metrics.swapped, on_failure=metrics.failed)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(watcher.start)
        yield
        watcher.stop()
        if multiprocess_dir():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(title="MSD song year prediction", version="1", lifespan=lifespan,
                  description="Predicts a song's release year and decade from its timbre "
                              "with the champion models of the MSD pipeline.")
    app.add_middleware(BodyGuard, max_bytes=settings.max_upload_bytes,
                       body_seconds=settings.body_seconds)
    app.add_middleware(Observed, metrics=metrics)
    app.state.watcher, app.state.metrics = watcher, metrics

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(settings.max_upload_bytes)

    @app.exception_handler(BodyTooSlow)
    async def body_too_slow(request: Request, exc: BodyTooSlow) -> JSONResponse:
        return too_slow(settings.body_seconds)

    def authorised(request: Request, admin: bool = False) -> None:
        """Checked in the routes themselves: a FastAPI dependency costs more per
        request than the check."""
        if admin or keys_required:
            keys.check(request.headers.get(KEY_HEADER),
                       "{} {}".format(request.method, request.url.path))

    @app.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        model = watcher.model
        if model is None:
            return JSONResponse({"status": "no_model", "detail": watcher.last_error},
                                status_code=503)
        return JSONResponse({"status": "ok", "model": model.label})

    app.add_api_route("/health", ready, methods=["GET"],
                      summary="Alias of /health/ready")

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/model", openapi_extra=KEY_PARAMETER)
    async def model_info(request: Request) -> JSONResponse:
        authorised(request)
        model = served(watcher, request)
        return JSONResponse(dict(model.describe(), watcher=watcher.status()))

    @app.post("/model/refresh", openapi_extra=KEY_PARAMETER)
    def refresh(request: Request) -> JSONResponse:
        authorised(request, admin=True)
        changed = watcher.refresh()
        model = served(watcher, request)
        return JSONResponse(dict(model.describe(), changed=changed, watcher=watcher.status()))

    @app.post("/predict", openapi_extra=dict(PREDICT_BODY, **KEY_PARAMETER))
    async def predict(request: Request) -> JSONResponse:
        authorised(request)
        model = served(watcher, request)  # one version for the whole request
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == JSON_TYPE:
                body = await request.body()
                if len(body) <= settings.inline_body_bytes:
                    answer = score_json(model, body, settings.max_songs)
                else:
                    answer = await run_in_threadpool(score_json, model, body,
                                                     settings.max_songs)
            elif content_type == MULTIPART_TYPE:
                ids, timbre, fields = await uploaded_songs(request, model, settings)
                answer = await run_in_threadpool(score, model, ids, timbre, fields)
            else:
                raise HTTPException(415, "send {} ({{\"songs\": [...]}}) or {} (MSD .h5 "
                                         "files in field 'file')".format(JSON_TYPE,
                                                                         MULTIPART_TYPE))
        except InputError as exc:
            raise HTTPException(422, str(exc)) from exc
        request.scope[ACCESS_KEY]["songs"] = len(answer["predictions"])
        return JSONResponse(answer)

    return app


def score_json(model: ServedModel, body: bytes, max_songs: int) -> Dict[str, Any]:
    ids, timbre, fields = model.inputs.from_json(songs_of(body), max_songs)
    return score(model, ids, timbre, fields)


def score(model: ServedModel, ids: List[Optional[str]], timbre: np.ndarray,
          fields: Dict[str, np.ndarray]) -> Dict[str, Any]:
    years, decades = model.predict(model.inputs.frame(timbre, fields))
    return {"model": {"label": model.label, "registry_version": model.ref.registry_version,
                      "run_id": model.run_id},
            "predictions": predictions(ids, years, decades, model.year_bounds())}


def served(watcher: ChampionWatcher, request: Request) -> ServedModel:
    """The model serving this request (named in its access-log line), or a 503."""
    model = watcher.model
    if model is None:
        raise HTTPException(503, "no model served yet: {}".format(watcher.last_error))
    request.scope[ACCESS_KEY]["model"] = model.label
    return model


def songs_of(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(400, "the body is not valid JSON: {}".format(exc)) from exc
    if not isinstance(payload, dict) or "songs" not in payload:
        raise HTTPException(422, "expected an object {\"songs\": [...]}")
    return payload["songs"]


async def uploaded_songs(request: Request, model: ServedModel, settings: ServingSettings
                         ) -> Tuple[List[Optional[str]], np.ndarray, Dict[str, np.ndarray]]:
    form = await request.form(max_files=settings.max_files, max_fields=10)
    uploads = [value for _, value in form.multi_items() if hasattr(value, "read")]
    if not uploads:
        raise InputError("no file uploaded: send MSD .h5 files in form field 'file'")
    ids, rows = [], []
    fields = {name: [] for name in model.inputs.song_fields}  # type: Dict[str, List[float]]
    for upload in uploads:
        track_id, timbre, values = await run_in_threadpool(
            model.inputs.from_h5, upload.filename or "upload", await upload.read())
        ids.append(track_id)
        rows.append(timbre)
        for name, value in values.items():
            fields[name].append(value)
    return ids, np.array(rows), {name: np.array(v) for name, v in fields.items()}


def predictions(ids: List[Optional[str]], years: np.ndarray, decades: np.ndarray,
                bounds: Optional[List[int]]) -> List[Dict[str, Any]]:
    low, high = bounds or (-np.inf, np.inf)
    return [{"track_id": track_id, "year": float(year),
             "year_rounded": int(min(max(round(float(year)), low), high)),
             "decade": int(decade)}
            for track_id, year, decade in zip(ids, years, decades)]


def app_from_env() -> FastAPI:
    """The app of one worker process, from the settings ``main`` exported."""
    settings = ServingSettings.from_env()
    configure_logging()
    HeaderDeadlineProtocol.header_seconds = settings.header_seconds
    return create_app(settings)


def arguments(argv: Optional[List[str]]) -> Tuple[argparse.Namespace, ServingSettings]:
    env = ServingSettings.from_env()
    parser = argparse.ArgumentParser(prog="python -m msd_serving.app",
                                     description="The MSD song year prediction service.")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=int(os.environ.get("MSD_SERVING_PORT",
                                                                        8000)))
    parser.add_argument("--run-uri", default=env.run_uri,
                        help="serve this training run folder (local or s3://)")
    parser.add_argument("--tracking-uri", default=env.tracking_uri,
                        help="serve the 'champion' alias of msd-song-year on this MLflow")
    parser.add_argument("--poll-seconds", type=float, default=env.poll_seconds)
    parser.add_argument("--workers", type=int, default=env.workers,
                        help="worker processes (default 1; see docs/serving.md)")
    parser.add_argument("--api-keys-file", default=env.api_keys_file,
                        help="file of API keys, one per line")
    parser.add_argument("--require-keys", choices=["auto", "true", "false"],
                        default={None: "auto", True: "true", False: "false"}[env.require_keys],
                        help="/predict and /model need a key: auto = when keys are "
                             "configured; true without a key refuses to start")
    args = parser.parse_args(argv)
    overrides = {"run_uri": args.run_uri, "tracking_uri": args.tracking_uri,
                 "poll_seconds": args.poll_seconds, "workers": args.workers,
                 "api_keys_file": args.api_keys_file,
                 "require_keys": {"auto": None, "true": True, "false": False}[
                     args.require_keys]}
    return args, ServingSettings(**dict(vars(env), **overrides))


def main(argv: Optional[List[str]] = None) -> int:
    import uvicorn

    args, settings = arguments(argv)
    try:
        settings.source()
        settings.keys_required(len(settings.api_keys()))
    except SettingsError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    os.environ.update(settings.to_env())  # what each worker's app_from_env reads
    shared = metrics_dir(settings.workers)
    try:
        uvicorn.run("msd_serving.app:app_from_env", factory=True, host=args.host,
                    port=args.port, workers=settings.workers,
                    http="msd_serving.limits:HeaderDeadlineProtocol",
                    limit_concurrency=settings.max_connections,
                    timeout_keep_alive=settings.keep_alive_seconds,
                    timeout_graceful_shutdown=10, access_log=False, log_level="warning")
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


def metrics_dir(workers: int) -> Optional[str]:
    """With several workers: an empty directory for their shared metrics, exported as
    $PROMETHEUS_MULTIPROC_DIR (the one given, emptied, else a new one: returned to be
    removed on exit)."""
    if workers <= 1:
        return None
    given = multiprocess_dir()
    if given:
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return None
    created = tempfile.mkdtemp(prefix="msd-serving-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    return created


if __name__ == "__main__":
    sys.exit(main())
