"""The Params form shared by every target, and how its values become dotted overrides
of the typed configuration (``include/pipeline.toml``)."""
from typing import Any, Dict

from airflow.sdk import Param

from msdlib.config import PipelineConfig
from msdlib.core.models import CLASSIFIERS, REGRESSORS

KNOWN_CLASSIFIERS = list(CLASSIFIERS)
KNOWN_REGRESSORS = list(REGRESSORS)
STAGING_MODES = ["auto", "path", "url", "generated"]
# The fields of msd_retrain's form (it stages and ingests nothing).
RETRAIN_PARAMS = ("classifiers", "regressors", "folds", "test_fraction", "seed", "impute",
                  "config_overrides")

# Form field → dotted config key it overrides.
PARAM_CONFIG_KEYS = {
    "data_source": "staging.mode",
    "source_path": "ingest.source",
    "archive_url": "staging.archive_url",
    "archive_checksum": "staging.archive_checksum",
    "generated_songs": "staging.generated_songs",
    "sample_size": "ingest.max_files",
    "array_encoding": "ingest.array_encoding",
    "classifiers": "training.classifiers",
    "regressors": "training.regressors",
    "folds": "training.folds",
    "test_fraction": "training.test_fraction",
    "seed": "training.seed",
    "impute": "training.impute",
}


def pipeline_params(config: PipelineConfig) -> Dict[str, Param]:
    """The Params form shared by every target, defaulting to ``config``."""
    training = config.training
    return {
        "data_source": Param(config.staging.mode, enum=STAGING_MODES, title="Data source",
                             description="auto: source path if it exists, else generated songs; "
                                         "path: the source path; url: download the MSD subset "
                                         "archive; generated: generated songs"),
        "source_path": Param(config.ingest.source, type="string", title="Source path",
                             description="Folder in MSD's X/Y/Z layout, a glob, @listfile or s3:// prefix"),
        "archive_url": Param(config.staging.archive_url, type="string", title="Archive URL"),
        "archive_checksum": Param(config.staging.archive_checksum or None, type=["null", "string"],
                                  title="Archive checksum",
                                  description="sha256:<hex> or md5:<hex>; empty: not verified"),
        "generated_songs": Param(config.staging.generated_songs, type="integer", minimum=1,
                                 title="Generated songs"),
        "sample_size": Param(config.ingest.max_files, type="integer", minimum=0,
                             title="Sample size", description="Songs to ingest at most (0 = all)"),
        "array_encoding": Param(config.ingest.array_encoding, enum=["list", "float32"],
                                title="Array encoding"),
        "classifiers": Param(list(training.classifiers), type="array",
                             items={"type": "string", "enum": KNOWN_CLASSIFIERS},
                             examples=KNOWN_CLASSIFIERS, title="Decade classifiers"),
        "regressors": Param(list(training.regressors), type="array",
                            items={"type": "string", "enum": KNOWN_REGRESSORS},
                            examples=KNOWN_REGRESSORS, title="Year regressors"),
        "folds": Param(training.folds, type="integer", minimum=2, maximum=10,
                       title="Cross-validation folds"),
        "test_fraction": Param(training.test_fraction, type="number", exclusiveMinimum=0,
                               exclusiveMaximum=1, title="Test fraction (artist-disjoint)"),
        "seed": Param(training.seed, type="integer", title="Random seed"),
        "impute": Param(training.impute, type="boolean", title="Impute unknown years",
                        description="with the champion, after the champion/challenger gate"),
        "train": Param(True, type="boolean", title="Train after ingest",
                       description="off: ingest only; the songs event then triggers "
                                   "msd_retrain"),
        "config_overrides": Param({}, type="object", title="Advanced: config overrides",
                                  description='Dotted keys, e.g. {"training.parallelism": 1}'),
    }


def config_overrides(params: Dict[str, Any]) -> Dict[str, Any]:
    """Dotted config overrides from the form values (``config_overrides`` wins)."""
    overrides = {key: params[name] for name, key in PARAM_CONFIG_KEYS.items()
                 if params.get(name) is not None}
    overrides.update(params.get("config_overrides") or {})
    return overrides
