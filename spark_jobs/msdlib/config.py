"""The pipeline's one typed configuration, and the one place each default is written.

Every setting is a field of the dataclasses below: its default, its allowed values
(``Rule``), whether the DAG file fixes it when Airflow parses it (``parse_time``) and, for
the settings users change per run, its field on the trigger form (``FormField``). A
configuration file (``include/pipeline.toml``, or $MSD_CONFIG, or the JSON the Airflow
side hands the jobs) holds overrides only: a key it leaves out keeps the default here,
and an empty file is exactly these defaults. ``python -m msdlib.config`` prints the
resolved configuration. A run overrides keys with dotted names (``{"training.folds": 3}``).

Secrets never live here: the Mongo URI comes from an Airflow connection or the
``MSD_MONGO_URI`` environment variable.

Python 3.9 syntax: this module ships to EMR with the Spark jobs (which read JSON: EMR 7's
Python 3.9 has no ``tomllib``).
"""
import copy
import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from msdlib import env_vars
from msdlib.core.evaluation import CLASSIFICATION_SCORES
from msdlib.core.models import CLASSIFIERS, GPU_MODELS, REGRESSORS, check_model_names

# The folder holding spark_jobs/ and include/: relative paths in settings resolve against it.
CHECKOUT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG_PATH = os.path.join(CHECKOUT_DIR, "include", "pipeline.toml")

ARRAY_ENCODINGS = ("list", "float32")
GRID_STRATEGIES = ("auto", "cv", "split")
STAGING_MODES = ("auto", "path", "url", "generated")
INSTANCE_LAYOUTS = ("groups", "fleets")
MONGO_MODES = ("secret", "master_node")
# [emr] profile: "gpu" puts the core nodes on NVIDIA GPU types with the RAPIDS Accelerator
# (cluster.py, docs/emr.md "GPU training"); training.accelerator picks the estimators.
EMR_PROFILES = ("cpu", "gpu")
ACCELERATORS = ("cpu", "gpu")
GPU_CORE_TYPE = r"(g4dn|g5|g6)\.[0-9a-z]+"
# Graviton (ARM) families carry a "g" after the generation (m6g, c7gn, g5g): AWS's RAPIDS
# page lists ARM types as unsupported for the primary node.
ARM_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*\.")
SERVERLESS_ARCHITECTURES = ("X86_64", "ARM64")
# "archive": the jobs' packages as a spark.archives dependency archive; "image": a
# custom EMR Serverless image (emr_serverless.image_uri) that carries them.
SERVERLESS_DEPENDENCIES = ("archive", "image")
# The Spark jobs' virtual environment on every EMR node: include/emr/bootstrap.sh creates
# it there (the cluster request passes this path), and the cluster's spark-defaults
# (spark.pyspark.python) and spark-env (PYSPARK_PYTHON) point PySpark at its interpreter.
# On the root volume, apart from the /mnt data volumes that YARN and HDFS fill.
EMR_VENV = "/opt/msd-venv"
EMR_VENV_PYTHON = EMR_VENV + "/bin/python"

# [emr] container_image (Docker on YARN): an ECR image of the cluster's region, and a
# release whose YARN Docker runtime AWS documents with ECR auto-authentication (6.1 and
# later; AWS documents the runtime for 6.x only, EMR 7 runs images on EMR Serverless).
ECR_IMAGE = re.compile(r"^(?P<registry>\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com)"
                       r"/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
                       r"|@sha256:[0-9a-f]{64})$")
DOCKER_ON_YARN_RELEASE = re.compile(r"^emr-6\.([1-9]\d*)\.\d+$")


class ConfigError(ValueError):
    """The configuration file or an override is invalid."""


@dataclass(frozen=True)
class Rule:
    """The values a setting accepts; ``json_schema`` gives the same bounds to the form."""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    exclusive_minimum: Optional[float] = None
    exclusive_maximum: Optional[float] = None
    choices: Optional[Sequence[str]] = None
    item_choices: Optional[Sequence[str]] = None
    item_pattern: Optional[str] = None

    def problems(self, key: str, value: Any) -> Iterator[str]:
        if self.minimum is not None and value < self.minimum:
            yield "{} must be at least {}, got {!r}".format(key, self.minimum, value)
        if self.maximum is not None and value > self.maximum:
            yield "{} must be at most {}, got {!r}".format(key, self.maximum, value)
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            yield "{} must be above {}, got {!r}".format(key, self.exclusive_minimum, value)
        if self.exclusive_maximum is not None and value >= self.exclusive_maximum:
            yield "{} must be below {}, got {!r}".format(key, self.exclusive_maximum, value)
        if self.choices is not None and value not in self.choices:
            yield "{} must be one of {}, got {!r}".format(key, ", ".join(self.choices), value)
        for item in value if self.item_choices or self.item_pattern else ():
            if self.item_choices is not None and item not in self.item_choices:
                yield "{} items must be among {}, got {!r}".format(
                    key, ", ".join(self.item_choices), item)
            elif self.item_pattern is not None and not re.fullmatch(self.item_pattern,
                                                                    str(item)):
                yield "{} items must match {}, got {!r}".format(key, self.item_pattern, item)

    def json_schema(self) -> Dict[str, Any]:
        """The rule as JSON-schema keywords (Airflow ``Param`` arguments)."""
        schema: Dict[str, Any] = {}
        for name, keyword in (("minimum", "minimum"), ("maximum", "maximum"),
                              ("exclusive_minimum", "exclusiveMinimum"),
                              ("exclusive_maximum", "exclusiveMaximum")):
            if getattr(self, name) is not None:
                schema[keyword] = getattr(self, name)
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.item_choices is not None:
            schema["items"] = {"type": "string", "enum": list(self.item_choices)}
            schema["examples"] = list(self.item_choices)
        elif self.item_pattern is not None:
            schema["items"] = {"type": "string", "pattern": self.item_pattern}
        return schema


@dataclass(frozen=True)
class FormField:
    """A setting's field on the DAGs' trigger form (msd_pipeline.params builds the form).

    ``retrain``: also on the retraining DAGs' form; ``target``: only on that target's
    DAGs; ``nullable``: the form may leave it empty (the configured value then applies).
    """
    name: str
    title: str
    description: str = ""
    retrain: bool = False
    target: Optional[str] = None
    nullable: bool = False


def setting(default: Any, rule: Optional[Rule] = None, form: Optional[FormField] = None,
            parse_time: bool = False) -> Any:
    """A settings field. ``parse_time``: the DAG file reads it when Airflow parses it
    (schedules, timeouts, connection ids), so a run cannot override it."""
    metadata = {"rule": rule, "form": form, "parse_time": parse_time}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def at_least(minimum: float) -> Rule:
    return Rule(minimum=minimum)


POSITIVE = at_least(1)
NOT_NEGATIVE = at_least(0)
FRACTION = Rule(minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class MongoSettings:
    database: str = setting("msd")
    songs_collection: str = setting("songs")
    errors_collection: str = setting("ingest_errors")
    runs_collection: str = setting("pipeline_runs")
    decisions_collection: str = setting("model_decisions")
    airflow_conn_id: str = setting("mongo_default", parse_time=True)
    # Idempotent batch writes are retried on connection errors (server restarting,
    # network blip): at most this many attempts, waiting retry_backoff_seconds,
    # then twice as long, ... between them.
    write_attempts: int = setting(5, POSITIVE)
    retry_backoff_seconds: float = setting(0.5, NOT_NEGATIVE)


@dataclass(frozen=True)
class IngestSettings:
    # A local folder in MSD's X/Y/Z layout, a glob, a list file (@path), or an s3:// prefix.
    source: str = setting("../shared/msd/tracks", form=FormField(
        "source_path", "Source path",
        "Folder in MSD's X/Y/Z layout, a glob, @listfile or s3:// prefix"))
    # "list" stores arrays as nested lists; "float32" as little-endian float32 binary.
    array_encoding: str = setting("list", Rule(choices=ARRAY_ENCODINGS),
                                  FormField("array_encoding", "Array encoding"))
    batch_size: int = setting(100, POSITIVE)
    # Spark partitions for the file paths; 0 means twice the default parallelism.
    partitions: int = setting(0, NOT_NEGATIVE)
    partition_buckets: int = setting(64, POSITIVE)
    max_failed_fraction: float = setting(0.05, FRACTION)
    # Optional cap on the number of files (0 = all), for samples and slices.
    max_files: int = setting(0, NOT_NEGATIVE, FormField(
        "sample_size", "Sample size", "Songs to ingest at most (0 = all)"))
    # Files each partition reads ahead (in flight at once) to hide S3's per-request
    # latency; also bounds the file bytes a partition holds. 1: one file at a time.
    read_ahead: int = setting(8, POSITIVE)
    # Plausible release years (inclusive); a year outside them is stored as unknown
    # (features.year null, features.year_status "out_of_range") and never a label.
    year_min: int = setting(1900)
    year_max: int = setting(2030)

    @property
    def year_range(self) -> Tuple[int, int]:
        return self.year_min, self.year_max

    def problems(self) -> Iterator[str]:
        if self.year_min > self.year_max:
            yield "ingest.year_min must not exceed ingest.year_max"


@dataclass(frozen=True)
class TrainingSettings:
    seed: int = setting(42, form=FormField("seed", "Random seed", retrain=True))
    test_fraction: float = setting(
        0.2, Rule(exclusive_minimum=0.0, exclusive_maximum=1.0),
        FormField("test_fraction", "Test fraction (artist-disjoint)", retrain=True))
    # Artist folds. On the 456 real songs 3 folds choose the same models as 5, with the
    # same decade scores and a better year MAE (6.38 vs 6.48), in 43 s of training
    # instead of 62.
    folds: int = setting(3, Rule(minimum=2, maximum=10),
                         FormField("folds", "Cross-validation folds", retrain=True))
    # Grid fits run this many at a time (across grid points and folds).
    parallelism: int = setting(2, POSITIVE)
    # "cv": every artist fold held out in turn; "split": fold 0 only (one artist-disjoint
    # train/validation split, `folds` times cheaper); "auto": "cv" up to cv_max_songs
    # training songs (the demo, the 10k subset), "split" above (the full MSD).
    grid_strategy: str = setting("auto", Rule(choices=GRID_STRATEGIES))
    cv_max_songs: int = setting(50000, NOT_NEGATIVE)
    # Decade model choice: "macro_f1" (every decade counts equally: rewards rare-decade
    # recall) or "accuracy" (every song counts equally; pair it with class_weighting =
    # false).
    decade_selection_metric: str = setting("macro_f1",
                                           Rule(choices=tuple(CLASSIFICATION_SCORES)))
    # Decade classifiers: logistic_regression (multinomial), random_forest_classifier,
    # multilayer_perceptron, gbt_classifier (GBTClassifier is binary-only in Spark: one-vs-
    # rest, one boosted ensemble per decade: off by default, it costs the most).
    classifiers: List[str] = setting(
        ["logistic_regression", "random_forest_classifier", "multilayer_perceptron"],
        Rule(item_choices=CLASSIFIERS), FormField("classifiers", "Decade classifiers",
                                                  retrain=True))
    # Year regressors: linear_regression, random_forest_regressor, gbt_regressor.
    regressors: List[str] = setting(
        ["linear_regression", "random_forest_regressor"],
        Rule(item_choices=REGRESSORS), FormField("regressors", "Year regressors",
                                                 retrain=True))
    # Per-model parameter grids (Spark ML parameter names; gbt_classifier's apply to the
    # GBTClassifier inside OneVsRest; multilayer_perceptron's hidden_layers lists hidden
    # layer sizes; input and output widths are set at fit time). The best grid point of
    # each model by validation score (decade_selection_metric / RMSE), then the best
    # model. A file's [training.grids.<model>] table replaces that model's grid.
    grids: Dict[str, Dict[str, List[Any]]] = setting({
        # 0.001: slowest to converge, lower test macro-F1 (real songs)
        "logistic_regression": {"regParam": [0.01, 0.1]},
        # trees cost compute, depth costs Spark jobs (one per level)
        "random_forest_classifier": {"numTrees": [50], "maxDepth": [6, 10]},
        # one GBT per decade per point: the costliest model
        "gbt_classifier": {"maxIter": [20], "maxDepth": [3]},
        "multilayer_perceptron": {"hidden_layers": [[32], [64, 32]], "maxIter": [100]},
        "linear_regression": {"regParam": [0.0, 0.1, 1.0]},
        "random_forest_regressor": {"numTrees": [100], "maxDepth": [6, 10]},
        "gbt_regressor": {"maxIter": [30, 60], "maxDepth": [3]},
    })
    # analysis.songs fields appended to the 90 timbre features; constant ones are dropped
    # (energy and danceability are 0 in every real MSD file).
    song_features: List[str] = setting(["loudness", "tempo", "energy", "danceability"])
    # Spark partitions reading songs (each one query on its partition buckets);
    # 0 means twice Spark's default parallelism, capped at ingest.partition_buckets.
    read_partitions: int = setting(0, NOT_NEGATIVE)
    # Songs per unordered bulk write of the imputation.
    write_batch_size: int = setting(500, POSITIVE)
    # Training data sits in ceil(songs / rows_per_partition) partitions (at most Spark's
    # default parallelism): iterative learners pay per task, small data trains faster.
    rows_per_partition: int = setting(20000, POSITIVE)
    # Fewer labelled songs: the job fails (exit 1).
    min_labelled_songs: int = setting(50, POSITIVE)
    # Decades with fewer labelled songs are merged into the nearest decade with enough.
    min_decade_songs: int = setting(10, POSITIVE)
    # Balanced class weights n / (classes x n_class).
    class_weighting: bool = setting(True)
    # After the champion/challenger gate, the champion writes predicted {year, decade}
    # to the unknown-year songs (spark_jobs/impute_years.py); the training job never does.
    impute: bool = setting(True, form=FormField(
        "impute", "Impute unknown years",
        "with the champion, after the champion/challenger gate", retrain=True))
    # Local path or s3:// prefix; each run writes below <artifacts_uri>/<run_id>/.
    artifacts_uri: str = setting("artifacts")
    # "gpu": logistic regression, random forests and linear regression from spark-rapids-ml
    # (same parameters and grids; the perceptron and GBTs stay pyspark.ml), converted to
    # pyspark.ml models before they are saved. Needs executors with GPUs
    # (spark.executor.resource.gpu.amount: [emr] profile = "gpu") and the package; the job
    # exits 2 without them, it never falls back to the CPU.
    accelerator: str = setting("cpu", Rule(choices=ACCELERATORS))

    def problems(self) -> Iterator[str]:
        try:
            check_model_names(self.classifiers, self.regressors, self.grids)
        except ValueError as exc:
            yield str(exc)
        weighted = [name for name in self.classifiers if name in GPU_MODELS]
        if self.accelerator == "gpu" and self.class_weighting and weighted:
            yield ("training.accelerator 'gpu' trains {} with spark-rapids-ml, which has no "
                   "weightCol (setting one falls back to a CPU fit): set "
                   "training.class_weighting = false".format(", ".join(weighted)))


@dataclass(frozen=True)
class SparkSettings:
    master: str = setting("local[*]")
    conf: Dict[str, str] = setting({
        "spark.ui.showConsoleProgress": "false",
        # Local mode runs the executor inside the driver's JVM: its 1g default heap runs
        # out in the random forests' split statistics from ~100k songs on.
        "spark.driver.memory": "4g",
    })


@dataclass(frozen=True)
class EmrSettings:
    """The EMR pipeline (dags/msd_emr_pipeline.py, docs/emr.md). AWS credentials come from
    the Airflow connection named by aws_conn_id; nothing secret goes here."""
    aws_conn_id: str = setting("aws_default", parse_time=True)
    region: str = setting("us-east-1", parse_time=True)
    # Everything the pipeline writes lives below this prefix: data/, runs/<run_id>/, logs/.
    s3_root: str = setting("s3://CHANGE-ME-msd-bucket/msd-pipeline")
    # Run clusters are named <cluster_name>-<run key>: how the teardown finds them.
    cluster_name: str = setting("msd-pipeline", parse_time=True)
    release_label: str = setting("emr-7.5.0")
    job_flow_role: str = setting("EMR_EC2_DefaultRole")
    # AmazonEMRServicePolicy_v2: needs the managed-policies tag below on the resources.
    service_role: str = setting("EMR_DefaultRole_V2")
    # "groups" (instance groups) or "fleets" (instance fleets over fleet_instance_types).
    instance_layout: str = setting("groups", Rule(choices=INSTANCE_LAYOUTS))
    master_instance_type: str = setting("m5.xlarge")
    core_instance_type: str = setting("m5.xlarge")
    core_instance_count: int = setting(2, Rule(minimum=1, maximum=50), FormField(
        "emr_core_instance_count", "EMR core nodes", target="emr", retrain=True))
    fleet_instance_types: List[str] = setting(["m5.xlarge", "m5a.xlarge", "m6i.xlarge"])
    # "gpu": core nodes on gpu_core_instance_types (the first one in the "groups" layout,
    # every one in a fleet) with the RAPIDS Accelerator's classifications and cgroup
    # bootstrap, and spark-rapids-ml in the nodes' environment (requirements-emr-gpu.txt,
    # Python 3.11); the primary node stays on master_instance_type (x86, no GPU).
    profile: str = setting("cpu", Rule(choices=EMR_PROFILES))
    gpu_core_instance_types: List[str] = setting(["g4dn.xlarge", "g6.xlarge", "g5.xlarge"],
                                                 Rule(item_pattern=GPU_CORE_TYPE))
    core_on_spot: bool = setting(False, form=FormField(
        "emr_core_on_spot", "EMR core nodes on spot", target="emr", retrain=True))
    ec2_subnet_id: str = setting("")
    ec2_key_name: str = setting("")
    # Backstop: EMR terminates the cluster after this much idle time (EMR allows 1 min
    # to 7 days).
    idle_timeout_minutes: int = setting(60, Rule(minimum=1, maximum=10080))
    # spark-defaults of the cluster. spark.default.parallelism (core nodes x vCPUs) and
    # spark.sql.shuffle.partitions (twice that) come from the instance layout unless set.
    spark_properties: Dict[str, str] = setting({
        "spark.pyspark.python": EMR_VENV_PYTHON, "spark.dynamicAllocation.enabled": "true"})
    # "for-use-with-amazon-emr-managed-policies" is what AmazonEMRServicePolicy_v2 (the V2
    # service role) requires on the cluster's resources.
    tags: Dict[str, str] = setting({
        "project": "msd-pipeline", "for-use-with-amazon-emr-managed-policies": "true"})
    # Docker on YARN (docs/emr.md, "Container images"): the ECR image, from
    # docker/emr-serverless/Dockerfile, that the Spark driver and executors run in
    # (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>, in emr.region); the
    # steps then run in cluster mode and no bootstrap installs packages. Needs an emr-6.x
    # release from 6.1.0; on EMR 7 the image runs on the emr_serverless target. "" = the
    # bootstrap's virtual environment on every node.
    container_image: str = setting("", parse_time=True)
    # "secret": the Airflow Mongo connection's URI in a run-scoped Secrets Manager
    # secret; "master_node": MongoDB installed on the master by a bootstrap action (the
    # tutorial's setup).
    mongo_mode: str = setting("secret", Rule(choices=MONGO_MODES))
    mongo_secret_prefix: str = setting("msd-pipeline/", parse_time=True)
    master_node_mongo_version: str = setting("7.0")
    # The cluster is up (WAITING) within this; each Spark step ends within this.
    create_timeout_seconds: int = setting(1800, POSITIVE, parse_time=True)
    step_timeout_seconds: int = setting(10800, POSITIVE, parse_time=True)
    poll_seconds: int = setting(30, POSITIVE, parse_time=True)
    # Step sensors and the create wait defer to the triggerer (aiobotocore is pinned in
    # requirements.txt); false keeps a worker slot busy while they wait.
    deferrable: bool = setting(True, parse_time=True)
    log_tail_lines: int = setting(200, POSITIVE, parse_time=True)
    # The cost estimate (include/msd_pipeline/targets/emr/cost.py): AWS bills each instance
    # its EC2 price (on demand, or the spot price) plus the EMR fee, which spot leaves
    # unchanged. USD per instance-hour, us-east-1, Linux, read 2026-12-07 — not from AWS's
    # own price tables, which none of the sources reachable here held. EC2 on demand: the
    # same in several independent price tables. EMR fee: m5.xlarge and m5.2xlarge from
    # one independent table (25 % of EC2); m5a.xlarge and m6i.xlarge NOT verified (25 % of
    # EC2 assumed). GPU types (g4dn.xlarge, g5.xlarge, g6.xlarge): EC2 on demand as AWS
    # has listed them for us-east-1, NOT verified against any source reachable here; EMR
    # fee NOT verified (25 % of EC2 assumed). Check https://aws.amazon.com/emr/pricing/ for
    # your region and types. A type missing from either table leaves the estimate incomplete.
    ec2_hourly_prices: Dict[str, float] = setting({
        "m5.xlarge": 0.192, "m5a.xlarge": 0.172, "m6i.xlarge": 0.192, "m5.2xlarge": 0.384,
        "g4dn.xlarge": 0.526, "g5.xlarge": 1.006, "g6.xlarge": 0.8048})
    emr_hourly_fees: Dict[str, float] = setting({
        "m5.xlarge": 0.048, "m5a.xlarge": 0.043, "m6i.xlarge": 0.048, "m5.2xlarge": 0.096,
        "g4dn.xlarge": 0.1315, "g5.xlarge": 0.2515, "g6.xlarge": 0.2012})
    # The spot price as a fraction of the EC2 on-demand price (the EMR fee is never reduced).
    spot_price_fraction: float = setting(0.4, FRACTION)
    # Core nodes on spot are requested as an instance fleet (instance groups have no
    # provisioning timeout): spot capacity not there within this many minutes is
    # provisioned on demand instead. EMR accepts 5 to 1440; it must end within
    # create_timeout_seconds, leaving the on-demand nodes time to boot and bootstrap.
    spot_timeout_minutes: int = setting(10, Rule(minimum=5, maximum=1440))
    # Seconds to wait for a failed step's logs to reach LogUri (EMR ships them every ~5 min).
    log_wait_seconds: int = setting(300, NOT_NEGATIVE, parse_time=True)
    # Slice of the staged songs: only these top-level X/ letters (empty: all); the number
    # of files is capped by ingest.max_files.
    staging_letters: List[str] = setting([], Rule(item_pattern="[A-Za-z]"), FormField(
        "emr_staging_letters", "Stage only these X/ letters", "Empty: every letter",
        target="emr"))

    def problems(self) -> Iterator[str]:
        if self.core_on_spot and self.spot_timeout_minutes * 60 >= self.create_timeout_seconds:
            yield ("emr.spot_timeout_minutes ({} min) must end before emr.create_timeout_seconds "
                   "({} s): lower it or raise the create timeout".format(
                       self.spot_timeout_minutes, self.create_timeout_seconds))
        yield from container_image_problems(self)
        yield from gpu_profile_problems(self)


def gpu_profile_problems(emr: "EmrSettings") -> Iterator[str]:
    """Why emr.profile "gpu" cannot run as configured."""
    if emr.profile != "gpu":
        return
    if not emr.gpu_core_instance_types:
        yield "emr.gpu_core_instance_types must name at least one GPU instance type"
    if ARM_FAMILY.match(emr.master_instance_type) or re.match(GPU_CORE_TYPE,
                                                               emr.master_instance_type):
        yield ("emr.profile 'gpu' keeps the primary node on an x86 CPU type (AWS's RAPIDS "
               "page: no ARM primary), got emr.master_instance_type {!r}".format(
                   emr.master_instance_type))
    if not emr.release_label.startswith("emr-7."):
        yield ("emr.profile 'gpu' carries AWS's RAPIDS classifications and cgroup bootstrap "
               "for EMR 7.x, got release_label {!r}".format(emr.release_label))
    if emr.container_image:
        yield ("emr.profile 'gpu' installs spark-rapids-ml with the bootstrap, which "
               "emr.container_image leaves out: clear emr.container_image")


def container_image_problems(emr: "EmrSettings") -> Iterator[str]:
    """Why emr.container_image (Docker on YARN) cannot run as configured."""
    if not emr.container_image:
        return
    if not DOCKER_ON_YARN_RELEASE.match(emr.release_label):
        yield ("emr.container_image runs the jobs in YARN's Docker runtime, which AWS "
               "documents for emr-6.x releases (6.1.0 and later: ECR auto-authentication); "
               "release_label is {!r}. On EMR 7 run the image on the emr_serverless target "
               "([emr_serverless] dependencies = \"image\", image_uri = \"{}\") or clear "
               "emr.container_image".format(emr.release_label, emr.container_image))
    image = ECR_IMAGE.match(emr.container_image)
    if image is None:
        yield ("emr.container_image must be an ECR image "
               "<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>, got {!r}".format(
                   emr.container_image))
    elif image.group("region") != emr.region:
        yield ("emr.container_image is in {}, the cluster in emr.region {}: ECR "
               "auto-authentication pulls from the cluster's region only".format(
                   image.group("region"), emr.region))
    if emr.mongo_mode == "master_node":
        yield ("emr.mongo_mode 'master_node' installs MongoDB with the bootstrap, which "
               "emr.container_image leaves out: use mongo_mode 'secret'")


@dataclass(frozen=True)
class EmrServerlessSettings:
    """The EMR Serverless pipeline (dags/msd_emr_serverless_pipeline.py,
    docs/emr-serverless.md). The AWS connection, region, S3 root, release label, tags,
    Mongo secret prefix, polling, deferral, log wait and staging slice are the [emr]
    section's; nothing secret goes here."""
    # Run applications are named <application_name>-<run key>: how the teardown finds them.
    application_name: str = setting("msd-pipeline", parse_time=True)
    # The job runs' IAM role (include/emr_serverless/); empty fails the preflight.
    execution_role_arn: str = setting("")
    architecture: str = setting("X86_64", Rule(choices=SERVERLESS_ARCHITECTURES))
    dependencies: str = setting("archive", Rule(choices=SERVERLESS_DEPENDENCIES))
    # ECR image URI (docker/emr-serverless/Dockerfile), required when dependencies = "image".
    image_uri: str = setting("")
    # The application's network configuration, so that the jobs reach MongoDB.
    subnet_ids: List[str] = setting([])
    security_group_ids: List[str] = setting([])
    # Pre-initialized capacity (billed while the application is started) and its workers.
    initial_driver_workers: int = setting(1, POSITIVE)
    initial_executor_workers: int = setting(2, POSITIVE)
    worker_cpu: str = setting("4 vCPU")
    worker_memory: str = setting("16 GB")
    worker_disk: str = setting("20 GB")
    # The application's ceiling over all its job runs.
    maximum_cpu: str = setting("48 vCPU")
    maximum_memory: str = setting("192 GB")
    maximum_disk: str = setting("1000 GB")
    # Backstop: AWS stops an idle application after this many minutes.
    auto_stop_idle_minutes: int = setting(15, POSITIVE)
    # The application is CREATED and STARTED within this.
    create_timeout_seconds: int = setting(600, POSITIVE, parse_time=True)
    # Each job run ends within this (StartJobRun executionTimeoutMinutes: AWS cancels it
    # then; the task's own timeout adds its margins).
    job_timeout_minutes: int = setting(180, POSITIVE, parse_time=True)
    # The cost estimate (include/msd_pipeline/targets/emr_serverless/cost.py): a job run
    # bills its billedResourceUtilization. USD per vCPU-hour, memory GB-hour and storage
    # GB-hour by "<region>/<architecture>", read 2026-12-07 — not from AWS's own price
    # API, which none of the sources reachable here held: us-east-1 x86 from the
    # generated EMR Serverless price list of GoogleCloudPlatform/PerfKitBenchmarker
    # (perfkitbenchmarker/providers/aws/aws_dpb_emr_serverless_prices.py, which cites
    # https://aws.amazon.com/emr/pricing), the vCPU and memory rates also in independent
    # cost write-ups. ARM64 (Graviton) prices were in no reachable source: an ARM64 run
    # logs a missing price until you add them. Check https://aws.amazon.com/emr/pricing/.
    prices: Dict[str, Dict[str, float]] = setting({
        "us-east-1/X86_64": {"vCPUHour": 0.052624, "memoryGBHour": 0.0057785,
                             "storageGBHour": 0.000111}})

    def problems(self) -> Iterator[str]:
        if self.dependencies == "image" and not self.image_uri:
            yield ('emr_serverless.image_uri is required when emr_serverless.dependencies '
                   'is "image": the ECR URI of the image built from '
                   'docker/emr-serverless/Dockerfile')


@dataclass(frozen=True)
class PipelineSettings:
    """DAG-level settings of the pipeline DAGs (read by Airflow when it parses them)."""
    # Cron expression or preset for the whole lifecycle in one run; "" means manual runs
    # only. Scheduled retraining is the retraining DAGs' ([retraining] schedule).
    schedule: str = setting("", parse_time=True)
    owner: str = setting("msd-ml", parse_time=True)
    retries: int = setting(1, NOT_NEGATIVE, parse_time=True)
    retry_delay_minutes: int = setting(2, NOT_NEGATIVE, parse_time=True)
    # Execution timeout of each Spark step.
    step_timeout_minutes: int = setting(120, POSITIVE, parse_time=True)
    # Airflow connection naming the Spark master (spark_default: local[*], spark://...).
    spark_conn_id: str = setting("spark_default", parse_time=True)


@dataclass(frozen=True)
class StagingSettings:
    """Where the songs come from before ingest."""
    # "auto": ingest.source when it exists, else generated songs; "path": ingest.source
    # as is; "url": download archive_url (resumable, checksummed) and extract it;
    # "generated": generated_songs songs in the MSD layout.
    mode: str = setting("auto", Rule(choices=STAGING_MODES), FormField(
        "data_source", "Data source",
        "auto: source path if it exists, else generated songs; path: the source path; "
        "url: download the MSD subset archive; generated: generated songs"))
    archive_url: str = setting(
        "http://labrosa.ee.columbia.edu/~dpwe/tmp/millionsongsubset.tar.gz",
        form=FormField("archive_url", "Archive URL"))
    # "sha256:<hex>" or "md5:<hex>"; empty: the download is not verified.
    archive_checksum: str = setting("", form=FormField(
        "archive_checksum", "Archive checksum", "sha256:<hex> or md5:<hex>; empty: not verified",
        nullable=True))
    # Downloads, extracted archives and generated songs (relative: under the checkout).
    data_dir: str = setting("data")
    generated_songs: int = setting(200, POSITIVE, FormField("generated_songs",
                                                            "Generated songs"))
    generated_seed: int = setting(7)


@dataclass(frozen=True)
class RetrainingSettings:
    """The retraining DAGs (msd_retrain_*) and the champion/challenger gate (docs/retraining.md)."""
    # Cron or preset: the retraining DAGs run on it or on a new `songs` asset event, whichever
    # comes first; "" = on asset events only.
    schedule: str = setting("@weekly", parse_time=True)
    # Promote only when the challenger's year RMSE is this many years below the
    # champion's, and its decade macro-F1 at most this much below the champion's.
    year_rmse_margin: float = setting(0.1, NOT_NEGATIVE)
    decade_f1_tolerance: float = setting(0.01, NOT_NEGATIVE)
    # A human approves each promotion in the Airflow UI (Required actions); no answer
    # within approval_timeout_hours: rejected.
    require_approval: bool = setting(False, parse_time=True)
    approval_timeout_hours: int = setting(72, POSITIVE, parse_time=True)
    # MLflow tracking server; "" = $MLFLOW_TRACKING_URI, else http://127.0.0.1:5000.
    tracking_uri: str = setting("")


@dataclass(frozen=True)
class PipelineConfig:
    mongo: MongoSettings = field(default_factory=MongoSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    staging: StagingSettings = field(default_factory=StagingSettings)
    emr: EmrSettings = field(default_factory=EmrSettings)
    emr_serverless: EmrServerlessSettings = field(default_factory=EmrServerlessSettings)
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


@dataclass(frozen=True)
class SettingInfo:
    """One setting's dotted key, default and metadata."""
    key: str
    default: Any
    rule: Optional[Rule]
    form: Optional[FormField]
    parse_time: bool


def settings_info() -> List[SettingInfo]:
    """Every setting in declaration order (sections in PipelineConfig's order)."""
    infos = []
    for section in dataclasses.fields(PipelineConfig):
        for item in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            infos.append(SettingInfo(
                "{}.{}".format(section.name, item.name), _default_of(item),
                item.metadata.get("rule"), item.metadata.get("form"),
                bool(item.metadata.get("parse_time"))))
    return infos


def parse_time_overrides(overrides: Mapping[str, Any]) -> List[str]:
    """The dotted keys of ``overrides`` that set (or contain) a parse-time setting."""
    fixed = [info.key for info in settings_info() if info.parse_time]
    return sorted(key for key in overrides
                  if any(name == key or name.startswith(key + ".") for name in fixed))


def from_dict(data: Mapping[str, Any]) -> "PipelineConfig":
    """Build a config from nested dicts of overrides: a missing key keeps its default, a
    table given for a dict setting adds to or replaces the default's entries; unknown
    keys, wrong types and values outside a setting's rule are errors."""
    config = _build(PipelineConfig, data, "")
    problems = [problem for section in dataclasses.fields(config)
                for problem in _section_problems(getattr(config, section.name))]
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def config_path(path: Optional[str] = None) -> str:
    """``path``, else $MSD_CONFIG, else include/pipeline.toml."""
    return path or os.environ.get(env_vars.CONFIG) or DEFAULT_CONFIG_PATH


def load_config(path: Optional[str] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """Load a local file (TOML or JSON; ``config_path`` picks it) and apply ``overrides``."""
    path = config_path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError("cannot read config file {}: {}".format(path, exc)) from exc
    return parse_config(path, raw, overrides)


def parse_config(path: str, raw: bytes,
                 overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """The configuration in ``raw``, the content of ``path`` (TOML when it ends in
    ``.toml``, else JSON), with ``overrides`` applied."""
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


def _default_of(item: "dataclasses.Field[Any]") -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    return item.default_factory()  # type: ignore[misc]


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
        default = _default_of(fields[name])
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
    if isinstance(default, dict):
        return dict(default, **value)
    return value


def _section_problems(section: Any) -> List[str]:
    """Each setting against its rule, then (when they all pass) the section's own checks
    across settings."""
    name = _section_name(type(section))
    problems = [problem for item in dataclasses.fields(section)
                if item.metadata.get("rule") is not None
                for problem in item.metadata["rule"].problems(name + "." + item.name,
                                                              getattr(section, item.name))]
    return problems or list(getattr(section, "problems", lambda: ())())


def _section_name(cls: Any) -> str:
    return next(f.name for f in dataclasses.fields(PipelineConfig)
                if f.default_factory is cls)  # type: ignore[comparison-overlap]


if __name__ == "__main__":
    # python -m msdlib.config [path]: the resolved configuration (defaults + the file).
    print(load_config(sys.argv[1] if len(sys.argv) > 1 else None).to_json())
