"""The prediction service: what year is this song?

    python -m msd_serving.app --port 8000 --run-uri artifacts/<run_id>
    python -m msd_serving.app --port 8000 --tracking-uri http://127.0.0.1:5000

* ``POST /predict`` with JSON ``{"songs": [{"timbre": [90 numbers], "loudness": ...,
  "tempo": ...}, ...]}`` or a multipart upload of MSD ``.h5`` files (field ``file``,
  repeatable) → ``{"model": {...}, "predictions": [{"track_id", "year",
  "year_rounded", "decade"}]}``; ``year`` is the year model's output, ``year_rounded``
  that value rounded and clipped to the training years (as stored imputations are);
* ``GET /model``: the version served, its source and the inputs it reads;
  ``POST /model/refresh`` re-checks the source now;
* ``GET /health``: 200 when a model is served, 503 (with the reason) before.

Bad input is a 4xx with a ``detail`` message: 400 unreadable JSON, 413 too large,
415 another content type, 422 a song the model cannot score.

Settings come from the command line or the environment: $MSD_SERVING_RUN_URI (a run
folder) or $MLFLOW_TRACKING_URI (alias ``champion`` of ``msd-song-year``),
$MSD_SERVING_POLL_SECONDS, $MSD_SERVING_MAX_SONGS, $MSD_SERVING_MAX_UPLOAD_BYTES.
"""
import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from msd_serving.champion import (ChampionWatcher, MlflowAliasSource, RunFolderSource,
                                  ServedModel)
from msd_serving.inputs import InputError

HOST = "127.0.0.1"
JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"


@dataclass(frozen=True)
class ServingSettings:
    run_uri: str = ""        # a run folder served directly, or
    tracking_uri: str = ""   # the MLflow server whose champion alias is served
    poll_seconds: float = 30.0
    max_songs: int = 10000
    max_upload_bytes: int = 64 * 1024 * 1024
    max_files: int = 100

    def source(self) -> Any:
        if self.run_uri:
            return RunFolderSource(self.run_uri)
        if self.tracking_uri:
            return MlflowAliasSource(self.tracking_uri)
        raise ValueError("no model source: give a run folder (--run-uri, "
                         "$MSD_SERVING_RUN_URI) or an MLflow server (--tracking-uri, "
                         "$MLFLOW_TRACKING_URI)")

    @classmethod
    def from_env(cls, env: Optional[Dict[str, str]] = None) -> "ServingSettings":
        env = os.environ if env is None else env
        defaults = cls()
        return cls(run_uri=env.get("MSD_SERVING_RUN_URI", ""),
                   tracking_uri=env.get("MLFLOW_TRACKING_URI", ""),
                   poll_seconds=float(env.get("MSD_SERVING_POLL_SECONDS",
                                              defaults.poll_seconds)),
                   max_songs=int(env.get("MSD_SERVING_MAX_SONGS", defaults.max_songs)),
                   max_upload_bytes=int(env.get("MSD_SERVING_MAX_UPLOAD_BYTES",
                                                defaults.max_upload_bytes)))


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (by Content-Length up front,
    by counting for chunked uploads) before they are buffered."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


def too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": "request body over the {} byte limit".format(max_bytes)},
                        status_code=413)


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
    watcher = watcher or ChampionWatcher(settings.source(), settings.poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher.start()
        yield
        watcher.stop()

    app = FastAPI(title="MSD song year prediction", version="1", lifespan=lifespan,
                  description="Predicts a song's release year and decade from its timbre "
                              "with the champion models of the MSD pipeline.")
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.state.watcher = watcher

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(settings.max_upload_bytes)

    @app.get("/health")
    def health() -> JSONResponse:
        model = watcher.model
        if model is None:
            return JSONResponse({"status": "no_model", "detail": watcher.last_error},
                                status_code=503)
        return JSONResponse({"status": "ok", "model": model.label})

    @app.get("/model")
    def model_info() -> Dict[str, Any]:
        return dict(served(watcher).describe(), watcher=watcher.status())

    @app.post("/model/refresh")
    def refresh() -> Dict[str, Any]:
        changed = watcher.refresh()
        return dict(served(watcher).describe(), changed=changed, watcher=watcher.status())

    @app.post("/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> Dict[str, Any]:
        model = served(watcher)  # one version for the whole request
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == JSON_TYPE:
                ids, timbre, fields = model.inputs.from_json(
                    songs_of(await request.body()), settings.max_songs)
            elif content_type == MULTIPART_TYPE:
                ids, timbre, fields = await uploaded_songs(request, model, settings)
            else:
                raise HTTPException(415, "send {} ({{\"songs\": [...]}}) or {} (MSD .h5 "
                                         "files in field 'file')".format(JSON_TYPE,
                                                                         MULTIPART_TYPE))
        except InputError as exc:
            raise HTTPException(422, str(exc)) from exc
        years, decades = model.predict(model.inputs.frame(timbre, fields))
        return {"model": {"label": model.label, "registry_version": model.ref.registry_version,
                          "run_id": model.run_id},
                "predictions": predictions(ids, years, decades, model.year_bounds())}

    return app


def served(watcher: ChampionWatcher) -> ServedModel:
    model = watcher.model
    if model is None:
        raise HTTPException(503, "no model served yet: {}".format(watcher.last_error))
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


def main(argv: Optional[List[str]] = None) -> int:
    import uvicorn

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
    args = parser.parse_args(argv)
    settings = ServingSettings(run_uri=args.run_uri, tracking_uri=args.tracking_uri,
                               poll_seconds=args.poll_seconds, max_songs=env.max_songs,
                               max_upload_bytes=env.max_upload_bytes)
    try:
        app = create_app(settings)
    except ValueError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
