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
from typing import Any, Dict, List, Mapping, Optional, Tuple

from msdlib import env_vars

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
    decisions_collection: str = "model_decisions"
    airflow_conn_id: str = "mongo_default"
    # Idempotent batch writes are retried on connection errors (server restarting,
    # network blip): at most this many attempts, waiting retry_backoff_seconds,
    # then twice as long, ... between them.
    write_attempts: int = 5
    retry_backoff_seconds: float = 0.5


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
    # Files each partition reads ahead (in flight at once) to hide S3's per-request
    # latency; also bounds the file bytes a partition holds. 1: one file at a time.
    read_ahead: int = 8
    # Plausible release years (inclusive); a year outside them is stored as unknown
    # (features.year null, features.year_status "out_of_range") and never a label.
    year_min: int = 1900
    year_max: int = 2030

    @property
    def year_range(self) -> Tuple[int, int]:
        return self.year_min, self.year_max


@dataclass(frozen=True)
class TrainingSettings:
    seed: int = 42
    test_fraction: float = 0.2
    folds: int = 5
    # Grid fits run this many at a time (across grid points and folds).
    parallelism: int = 2
    # "cv": every artist fold held out in turn; "split": fold 0 only (one artist-disjoint
    # train/validation split, `folds` times cheaper); "auto": "cv" up to cv_max_songs
    # training songs, "split" above.
    grid_strategy: str = "auto"
    cv_max_songs: int = 50000
    # Decade model choice: "macro_f1" (every decade counts equally) or "accuracy" (every
    # song counts equally; pair it with class_weighting = false).
    decade_selection_metric: str = "macro_f1"
    # Decade classifiers and year regressors tuned (msdlib.core.models names).
    classifiers: List[str] = field(default_factory=lambda: [
        "logistic_regression", "random_forest_classifier", "multilayer_perceptron"])
    regressors: List[str] = field(default_factory=lambda: [
        "linear_regression", "random_forest_regressor"])
    # Per-model parameter grids (Spark ML parameter names; gbt_classifier's apply to the
    # GBTClassifier inside OneVsRest; multilayer_perceptron's hidden_layers lists hidden
    # layer sizes). Keys: every name of msdlib.core.models.
    grids: Dict[str, Dict[str, List[Any]]] = field(default_factory=lambda: {
        "logistic_regression": {"regParam": [0.01, 0.1]},
        "random_forest_classifier": {"numTrees": [50], "maxDepth": [6, 10]},
        "gbt_classifier": {"maxIter": [20], "maxDepth": [3]},
        "multilayer_perceptron": {"hidden_layers": [[32], [64, 32]], "maxIter": [100]},
        "linear_regression": {"regParam": [0.0, 0.1, 1.0]},
        "random_forest_regressor": {"numTrees": [100], "maxDepth": [6, 10]},
        "gbt_regressor": {"maxIter": [30, 60], "maxDepth": [3]},
    })
    # analysis.songs fields appended to the 90 timbre features (constant ones are dropped).
    song_features: List[str] = field(default_factory=lambda: [
        "loudness", "tempo", "energy", "danceability"])
    # Spark partitions reading songs (each one query on its partition buckets);
    # 0 means twice Spark's default parallelism, capped at ingest.partition_buckets.
    read_partitions: int = 0
    # Songs per unordered bulk write of the imputation.
    write_batch_size: int = 500
    # Training data sits in ceil(songs / rows_per_partition) partitions (at most Spark's
    # default parallelism): iterative learners pay per task, small data trains faster.
    rows_per_partition: int = 20000
    min_labelled_songs: int = 50
    # Decades with fewer labelled songs are merged into the nearest decade with enough.
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
class EmrSettings:
    aws_conn_id: str = "aws_default"
    region: str = "us-east-1"
    # Everything the pipeline writes lives below this prefix: data/, runs/<run_id>/, logs/.
    s3_root: str = "s3://CHANGE-ME-msd-bucket/msd-pipeline"
    cluster_name: str = "msd-pipeline"
    release_label: str = "emr-7.5.0"
    job_flow_role: str = "EMR_EC2_DefaultRole"
    service_role: str = "EMR_DefaultRole_V2"
    # "groups" (instance groups) or "fleets" (instance fleets over fleet_instance_types).
    instance_layout: str = "groups"
    master_instance_type: str = "m5.xlarge"
    core_instance_type: str = "m5.xlarge"
    core_instance_count: int = 2
    fleet_instance_types: List[str] = field(
        default_factory=lambda: ["m5.xlarge", "m5a.xlarge", "m6i.xlarge"])
    core_on_spot: bool = False
    ec2_subnet_id: str = ""
    ec2_key_name: str = ""
    # Backstop: EMR terminates the cluster after this much idle time.
    idle_timeout_minutes: int = 60
    spark_properties: Dict[str, str] = field(default_factory=lambda: {
        "spark.pyspark.python": "python3", "spark.dynamicAllocation.enabled": "true"})
    # "for-use-with-amazon-emr-managed-policies" is what AmazonEMRServicePolicy_v2 (the V2
    # service role) requires on the cluster's resources.
    tags: Dict[str, str] = field(default_factory=lambda: {
        "project": "msd-pipeline", "for-use-with-amazon-emr-managed-policies": "true"})
    # "secret": the Airflow Mongo connection's URI in a run-scoped Secrets Manager
    # secret; "master_node": MongoDB installed on the master by a bootstrap action.
    mongo_mode: str = "secret"
    mongo_secret_prefix: str = "msd-pipeline/"
    master_node_mongo_version: str = "7.0"
    create_timeout_seconds: int = 1800
    step_timeout_seconds: int = 10800
    poll_seconds: int = 30
    # Step sensors and the create wait defer to the triggerer (aiobotocore is pinned in
    # requirements.txt); false keeps a worker slot busy while they wait.
    deferrable: bool = True
    log_tail_lines: int = 200
    # On-demand USD per instance-hour (EC2 + EMR uplift) for the cost estimate.
    hourly_prices: Dict[str, float] = field(default_factory=lambda: {
        "m5.xlarge": 0.24, "m5a.xlarge": 0.22, "m6i.xlarge": 0.24, "m5.2xlarge": 0.48})
    spot_price_fraction: float = 0.4
    # Seconds to wait for a failed step's logs to reach LogUri (EMR ships them every ~5 min).
    log_wait_seconds: int = 300
    # Slice of the staged songs: only these top-level X/ letters (empty: all); the number
    # of files is capped by ingest.max_files.
    staging_letters: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineSettings:
    """DAG-level settings of the pipeline DAGs (read by Airflow at parse time)."""
    # Cron expression or preset for scheduled retraining; "" means manual runs only.
    schedule: str = "@weekly"
    owner: str = "msd-ml"
    retries: int = 1
    retry_delay_minutes: int = 2
    step_timeout_minutes: int = 120
    # Airflow connection naming the Spark master (spark_default: local[*], spark://...).
    spark_conn_id: str = "spark_default"


@dataclass(frozen=True)
class StagingSettings:
    """Where the songs come from before ingest."""
    # "auto": ingest.source when it exists, else generated songs; "path": ingest.source
    # as is; "url": download archive_url (resumable, checksummed) and extract it;
    # "generated": generated_songs songs in the MSD layout.
    mode: str = "auto"
    archive_url: str = "http://labrosa.ee.columbia.edu/~dpwe/tmp/millionsongsubset.tar.gz"
    # "sha256:<hex>" or "md5:<hex>"; empty: the download is not verified.
    archive_checksum: str = ""
    # Downloads, extracted archives and generated songs (relative: under the project).
    data_dir: str = "data"
    generated_songs: int = 200
    generated_seed: int = 7


@dataclass(frozen=True)
class RetrainingSettings:
    """The msd_retrain DAGs and the champion/challenger gate (docs/retraining.md)."""
    # Cron or preset: msd_retrain runs on it or on a new `songs` asset event, whichever
    # comes first; "" = on asset events only.
    schedule: str = "@weekly"
    # Promote only when the challenger's year RMSE is this many years below the
    # champion's, and its decade macro-F1 at most this much below the champion's.
    year_rmse_margin: float = 0.1
    decade_f1_tolerance: float = 0.01
    # A human approves each promotion in the Airflow UI (Required actions).
    require_approval: bool = False
    approval_timeout_hours: int = 72
    # MLflow tracking server; "" = $MLFLOW_TRACKING_URI, else http://127.0.0.1:5000.
    tracking_uri: str = ""


@dataclass(frozen=True)
class PipelineConfig:
    mongo: MongoSettings = field(default_factory=MongoSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    staging: StagingSettings = field(default_factory=StagingSettings)
    emr: EmrSettings = field(default_factory=EmrSettings)
    retraining: RetrainingSettings = field(default_factory=RetrainingSettings)

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
    """Load ``path`` (TOML or JSON; default: $MSD_CONFIG, else include/pipeline.toml).
    An ``s3://`` path is read with boto3: EMR steps get the run's config that way."""
    path = path or os.environ.get(env_vars.CONFIG) or DEFAULT_CONFIG_PATH
    try:
        if path.startswith("s3://"):
            from msdlib.io.sources import read_bytes
            raw = read_bytes(path)
        else:
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
