"""What an operator sees: Prometheus metrics, request ids and one access-log line per
request.

Metrics (``GET /metrics``, Prometheus text format, prometheus-client):

* ``msd_serving_requests_total{route, method, status}`` and
  ``msd_serving_request_duration_seconds{route}`` (histogram); ``route`` is the route
  template (``/predict``), ``unmatched`` for paths no route serves;
* ``msd_serving_songs_scored_total``;
* ``msd_serving_model_info{label, run_id, registry_version}``: 1 for the version served
  (with several workers: how many workers serve it), 0 for one served before;
* ``msd_serving_model_load_failures_total{stage}``: ``resolve`` (the source named no
  usable version) or ``load`` (a new version failed to load; the old one kept serving);
* ``msd_serving_model_last_swap_timestamp_seconds``.

With several worker processes, $PROMETHEUS_MULTIPROC_DIR (set by
``python -m msd_serving.app --workers N``) holds every worker's values and any worker
answers ``/metrics`` with their aggregate.

Access log: logger ``msd_serving.access``, one JSON object per request with its id,
method, route, status, songs scored, latency and model version; never a body, a song
or a key.
"""
import glob
import json
import logging
import os
import re
import time
import uuid
from typing import Any, Dict, Optional

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest, multiprocess)

REQUEST_ID_HEADER = b"x-request-id"
ACCESS_KEY = "msd.access"      # scope entry the routes fill: songs, model
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

access_log = logging.getLogger("msd_serving.access")


def multiprocess_dir() -> Optional[str]:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServiceMetrics:
    """The service's metrics in a registry of its own (one per app), or in the shared
    multi-process directory when there is one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        shared = multiprocess_dir()
        target = None if shared else self.registry
        self.requests = Counter("msd_serving_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=target)
        self.latency = Histogram("msd_serving_request_duration_seconds",
                                 "Time from the request's start to its last response byte",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=target)
        self.songs = Counter("msd_serving_songs_scored", "Songs scored by /predict",
                             registry=target)
        self.model = Gauge("msd_serving_model_info",
                           "1 for the model version served (with several workers: how "
                           "many serve it), 0 for one served before",
                           ["label", "run_id", "registry_version"], registry=target,
                           multiprocess_mode="livesum")
        self.load_failures = Counter("msd_serving_model_load_failures",
                                     "Refreshes that found no usable version (resolve) or "
                                     "could not load a new one (load)", ["stage"],
                                     registry=target)
        self.last_swap = Gauge("msd_serving_model_last_swap_timestamp_seconds",
                               "When a worker last swapped in a model version (Unix time)",
                               registry=target, multiprocess_mode="max")
        self._served = None  # type: Optional[Dict[str, str]]
        if shared:
            SharedFilesCollector(self.registry, path=shared)

    def swapped(self, model: Any) -> None:
        """A new version is served: the info gauge moves and the swap time is set."""
        if self._served is not None:
            self.model.labels(**self._served).set(0)
        self._served = {"label": model.label, "run_id": model.run_id,
                        "registry_version": model.ref.registry_version or ""}
        self.model.labels(**self._served).set(1)
        self.last_swap.set_to_current_time()

    def failed(self, stage: str) -> None:
        self.load_failures.labels(stage=stage).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


class SharedFilesCollector(multiprocess.MultiProcessCollector):
    """Every worker's metrics files, skipping a file another worker has just created
    and not yet sized: prometheus-client reads it as corrupt and fails the whole scrape
    (prometheus/client_python#1199). An empty file holds no value yet."""

    def collect(self) -> Any:
        files = [path for path in glob.glob(os.path.join(self._path, "*.db"))
                 if os.path.getsize(path) > 0]
        return self.merge(files, accumulate=True)


def request_id(scope: Dict[str, Any]) -> str:
    """The caller's X-Request-ID when it is a short plain token, else a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SAFE_ID.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class Observed:
    """ASGI middleware: a request id (echoed in X-Request-ID), the request metrics and
    the access-log line of every HTTP request."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope)
        access = scope[ACCESS_KEY] = {"request_id": rid, "songs": 0, "model": None}
        status = [500]

        async def observed_send(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = list(message.get("headers", [])) + [
                    (REQUEST_ID_HEADER, rid.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._record(scope, access, status[0], time.perf_counter() - started)

    def _record(self, scope: Dict[str, Any], access: Dict[str, Any], status: int,
                seconds: float) -> None:
        route = getattr(scope.get("route"), "path", UNMATCHED)
        method = scope["method"]
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.latency.labels(route).observe(seconds)
        if access["songs"]:
            self.metrics.songs.inc(access["songs"])
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(json.dumps({
                "time": round(time.time(), 3), "request_id": access["request_id"],
                "method": method, "route": route, "status": status, "songs": access["songs"],
                "latency_ms": round(seconds * 1000, 2), "model": access["model"]}))


def configure_logging(level: str = "INFO") -> None:
    """Access lines as bare JSON on stderr; the service's other messages with a time,
    level and logger name."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [handler]
    access_log.propagate = False
    access_log.setLevel(level)
    service_log = logging.getLogger("msd_serving")
    if not service_log.handlers:
        other = logging.StreamHandler()
        other.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        service_log.addHandler(other)
    service_log.setLevel(logging.INFO)
