"""The pipeline's one typed configuration.

Defaults live in ``include/pipeline.toml``; a run overrides them with a mapping of
dotted keys (``{"training.folds": 3}``). The Airflow side reads TOML and hands the
Spark jobs the resolved configuration as JSON, because EMR 7's Python 3.9 has no
``tomllib``. Secrets never live here: the Mongo URI comes from an Airflow connection
or the ``MSD_MONGO_URI`` environment variable.

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

CONFIG_ENV_VAR = "MSD_CONFIG"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG_PATH = os.path.join(PROJECT_ROOT, "include", "pipeline.toml")


class ConfigError(ValueError):
    """The configuration file or an override is invalid."""


@dataclass(frozen=True)
class MongoSettings:
    database: str = "msd"
    songs_collection: str = "songs"
    errors_collection: str = "ingest_errors"
    runs_collection: str = "pipeline_runs"
    airflow_conn_id: str = "mongo_default"


@dataclass(frozen=True)
class IngestSettings:
    # A local folder in MSD's X/Y/Z layout, a glob, a list file (@path), or an s3:// prefix.
    source: str = "../shared/msd/tracks"
    # "list" stores arrays as nested lists; "float32" as little-endian float32 binary.
    array_encoding: str = "list"
    batch_size: int = 100
    # Spark partitions for the file paths; 0 means twice the default parallelism.
    partitions: int = 0
    partition_buckets: int = 64
    max_failed_fraction: float = 0.05
    # Optional cap on the number of files (0 = all), for samples and slices.
    max_files: int = 0


@dataclass(frozen=True)
class TrainingSettings:
    seed: int = 42
    test_fraction: float = 0.2
    folds: int = 5
    parallelism: int = 2
    classifiers: List[str] = field(
        default_factory=lambda: ["logistic_regression", "random_forest", "gbt"])
    regressors: List[str] = field(
        default_factory=lambda: ["linear_regression", "random_forest"])
    # Per-model parameter grids: {"random_forest": {"numTrees": [20, 50]}}.
    grids: Dict[str, Dict[str, List[Any]]] = field(default_factory=dict)
    min_labelled_songs: int = 50
    # Decades with fewer labelled songs are merged into their neighbour.
    min_decade_songs: int = 10
    class_weighting: bool = True
    impute: bool = True
    # Local path or s3:// prefix; each run writes below <artifacts_uri>/<run_id>/.
    artifacts_uri: str = "artifacts"


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    conf: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConfig:
    mongo: MongoSettings = field(default_factory=MongoSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def with_overrides(self, overrides: Optional[Mapping[str, Any]]) -> "PipelineConfig":
        data = self.to_dict()
        for dotted_key, value in (overrides or {}).items():
            _set_dotted(data, dotted_key, value)
        return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> "PipelineConfig":
    """Build a config from nested dicts, rejecting unknown keys and wrong types."""
    return _build(PipelineConfig, data, "")


def load_config(path: Optional[str] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """Load ``path`` (TOML or JSON; default: $MSD_CONFIG, else include/pipeline.toml)."""
    path = path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError("cannot read config file {}: {}".format(path, exc)) from exc
    return from_dict(_parse(path, raw)).with_overrides(overrides)


def _parse(path: str, raw: bytes) -> Dict[str, Any]:
    if path.endswith(".toml"):
        import tomllib  # Python 3.11+: only the Airflow side reads TOML.
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("invalid TOML in {}: {}".format(path, exc)) from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ConfigError("invalid JSON in {}: {}".format(path, exc)) from exc


def _set_dotted(data: Dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ConfigError("unknown config section in override: {}".format(dotted_key))
        node = node[part]
    if leaf not in node:
        raise ConfigError("unknown config key in override: {}".format(dotted_key))
    node[leaf] = value


def _build(cls: Any, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError("{} must be a table".format(prefix.rstrip(".") or "config"))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError("unknown config keys: {}".format(
            ", ".join(prefix + key for key in unknown)))
    values = {}
    for name, value in data.items():
        default = fields[name].default
        if default is dataclasses.MISSING:
            default = fields[name].default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, prefix + name + ".")
        else:
            values[name] = _check_type(prefix + name, default, value)
    return cls(**values)


def _check_type(key: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError("{} must be {}, got {!r}".format(key, type(default).__name__, value))
    return value
