"""The model version being served, where it comes from, and the hot swap.

A model version is one training run's folder (local path or ``s3://``):
``metrics.json`` names the chosen decade and year models (``decade.model_dir``,
``year.model_dir``), Spark PipelineModels under ``models/``. Sources:

* ``RunFolderSource``: a folder given directly (tests, benchmarks, a symlink such as
  ``artifacts/champion`` that is repointed): a new ``metrics.json`` identity (resolved
  path, run id, creation time) is a new version;
* ``MlflowAliasSource``: alias ``champion`` of the registered model ``msd-song-year``,
  resolved with the tracking server's REST API (the version's tag ``artifacts_uri``,
  else its ``source``), the contract of include/msd_pipeline/registry.py.

``ChampionWatcher`` re-resolves the source every ``poll_seconds`` (and on demand),
loads a changed version completely, then swaps one reference: a request sees either
the old model or the new one, never a mix. A version that fails to load is reported
and the old one keeps serving.
"""
import datetime
import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from msdlib.io.report import METRICS_FILE

from msd_serving.inputs import ModelInputs
from msd_serving.spark_format import load_pipeline
from msd_serving.stages import Pipeline
from msd_serving.storage import open_folder

MODEL_NAME = "msd-song-year"   # msd_pipeline.registry.MODEL_NAME
CHAMPION_ALIAS = "champion"

log = logging.getLogger(__name__)


class ModelSourceError(RuntimeError):
    """The source names no usable model version (yet)."""


@dataclass(frozen=True)
class VersionRef:
    """Which version a source points at; equal refs mean nothing changed."""
    run_uri: str
    identity: Tuple[Any, ...]
    registry_version: Optional[str] = None
    source: str = ""


@dataclass
class ServedModel:
    """A loaded model version: both pipelines and what to say about them."""
    ref: VersionRef
    metrics: Dict[str, Any]
    decade: Pipeline
    year: Pipeline
    inputs: ModelInputs
    loaded_at: str = field(default_factory=lambda: _now())

    @property
    def run_id(self) -> str:
        return str(self.metrics.get("run_id", ""))

    @property
    def label(self) -> str:
        """How predictions name their model: ``msd-song-year/<version>`` from the
        registry (registry.ModelRef.label), else ``<run_id>/<decade>+<year>`` (the
        training job's imputation label)."""
        if self.ref.registry_version is not None:
            return "{}/{}".format(MODEL_NAME, self.ref.registry_version)
        return "{}/{}+{}".format(self.run_id, self.metrics["decade"]["chosen"],
                                 self.metrics["year"]["chosen"])

    def predict(self, frame: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(years as floats, decades as ints) for the rows of ``frame``."""
        years = self.year.transform(frame)[self.year.output_column]
        decades = self.decade.transform(frame)[self.decade.output_column]
        return years, np.array([int(decade) for decade in decades], dtype=np.int64)

    def year_bounds(self) -> Optional[List[int]]:
        return self.metrics["year"].get("train_year_range")

    def describe(self) -> Dict[str, Any]:
        decade, year = self.metrics["decade"], self.metrics["year"]
        return {"label": self.label, "registry_version": self.ref.registry_version,
                "source": self.ref.source, "run_id": self.run_id, "run_uri": self.ref.run_uri,
                "created_at": self.metrics.get("created_at"), "loaded_at": self.loaded_at,
                "decade_model": decade["chosen"], "year_model": year["chosen"],
                "decade_classes": decade.get("classes"),
                "train_year_range": self.year_bounds(),
                "test": {"decade_macro_f1": decade.get("test", {}).get("macro_f1"),
                         "year_rmse": year.get("test", {}).get("rmse")},
                "inputs": self.inputs.describe()}


def read_metrics(run_uri: str) -> Dict[str, Any]:
    try:
        return json.loads(open_folder(run_uri).read_text(METRICS_FILE))
    except (OSError, ValueError) as exc:
        raise ModelSourceError("no readable {} in {}: {}".format(METRICS_FILE, run_uri, exc)
                               ) from exc


def load_version(ref: VersionRef) -> ServedModel:
    """Load both pipelines of a run folder and check they read the same kind of input."""
    metrics = read_metrics(ref.run_uri)
    base = ref.run_uri.rstrip("/")
    decade = load_pipeline(base + "/" + metrics["decade"]["model_dir"])
    year = load_pipeline(base + "/" + metrics["year"]["model_dir"])
    columns = list(dict.fromkeys(decade.input_columns + year.input_columns))
    known = metrics.get("training_settings", {}).get("song_features", [])
    return ServedModel(ref=ref, metrics=metrics, decade=decade, year=year,
                       inputs=ModelInputs(columns, known))


class RunFolderSource:
    def __init__(self, run_uri: str) -> None:
        self.run_uri = run_uri

    def describe(self) -> str:
        return "run folder {}".format(self.run_uri)

    def resolve(self) -> VersionRef:
        uri = self.run_uri if self.run_uri.startswith("s3://") \
            else os.path.realpath(self.run_uri)
        metrics = read_metrics(uri)
        return VersionRef(run_uri=uri, source=self.describe(),
                          identity=(uri, metrics.get("run_id"), metrics.get("created_at")))


class MlflowAliasSource:
    def __init__(self, tracking_uri: str, alias: str = CHAMPION_ALIAS,
                 model_name: str = MODEL_NAME, timeout: float = 10.0) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self.alias, self.model_name, self.timeout = alias, model_name, timeout

    def describe(self) -> str:
        return "mlflow {} alias {!r} of {}".format(self.tracking_uri, self.alias,
                                                   self.model_name)

    def resolve(self) -> VersionRef:
        query = urllib.parse.urlencode({"name": self.model_name, "alias": self.alias})
        url = "{}/api/2.0/mlflow/registered-models/alias?{}".format(self.tracking_uri, query)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as reply:
                version = json.load(reply)["model_version"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or exc.code == 400:
                raise ModelSourceError("{}: no such alias yet ({})".format(
                    self.describe(), exc.read().decode("utf-8", "replace")[:300])) from exc
            raise ModelSourceError("{}: HTTP {}".format(self.describe(), exc.code)) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise ModelSourceError("{}: {}".format(self.describe(), exc)) from exc
        tags = {tag["key"]: tag["value"] for tag in version.get("tags", [])}
        run_uri = tags.get("artifacts_uri") or version.get("source", "")
        if not run_uri or run_uri.startswith(("runs:/", "models:/", "mlflow-artifacts:")):
            raise ModelSourceError("{}: version {} has no run folder (tag artifacts_uri)"
                                   .format(self.describe(), version.get("version")))
        return VersionRef(run_uri=run_uri, source=self.describe(),
                          registry_version=str(version["version"]),
                          identity=(str(version["version"]), run_uri))


class ChampionWatcher:
    """Holds the served model and swaps in a new version when the source changes."""

    def __init__(self, source: Any, poll_seconds: float,
                 loader: Callable[[VersionRef], ServedModel] = load_version,
                 on_swap: Callable[[ServedModel], None] = lambda model: None,
                 on_failure: Callable[[str], None] = lambda stage: None) -> None:
        """``on_swap(model)`` after a new version is served; ``on_failure(stage)`` when
        a refresh fails resolving the source (``resolve``) or loading (``load``)."""
        self.source, self.poll_seconds, self.loader = source, poll_seconds, loader
        self.on_swap, self.on_failure = on_swap, on_failure
        self.model = None  # type: Optional[ServedModel]
        self.last_error = None  # type: Optional[str]
        self.last_checked_at = None  # type: Optional[str]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]

    def refresh(self) -> bool:
        """Re-resolve the source; load and swap if it changed. True when swapped."""
        with self._lock:
            self.last_checked_at = _now()
            stage = "resolve"
            try:
                ref = self.source.resolve()
                if self.model is not None and self.model.ref.identity == ref.identity:
                    self.last_error = None
                    return False
                stage = "load"
                model = self.loader(ref)
            except Exception as exc:  # keep serving the old version, say why
                self.last_error = "{}: {}".format(type(exc).__name__, exc)
                log.warning("model refresh failed (%s): %s", stage, self.last_error)
                self.on_failure(stage)
                return False
            self.model, self.last_error = model, None
            log.info("serving %s from %s", model.label, ref.run_uri)
            self.on_swap(model)
            return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="champion-watcher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def status(self) -> Dict[str, Any]:
        return {"source": self.source.describe(), "poll_seconds": self.poll_seconds,
                "last_checked_at": self.last_checked_at, "last_error": self.last_error}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
