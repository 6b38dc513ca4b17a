"""A DAG run's identity, resolved configuration and output locations, typed and frozen.

``prepare_run`` builds it once per run and hands it to the other tasks through XCom as
``to_xcom()`` (plain JSON, which templates read with ``msd_pipeline.templates.xcom``);
every task body turns that back into a ``RunContext`` first, so each task parses the
configuration once and reads and writes with the run's own settings.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping

from msdlib.config import PipelineConfig, from_dict

SUMMARY_FILES = {"ingest_summary_uri": "ingest_summary.json",
                 "train_summary_uri": "train_summary.json",
                 "impute_summary_uri": "impute_summary.json",
                 "metrics_uri": "metrics.json"}


def run_key_for(run_id: str) -> str:
    """The Airflow run id made safe for paths and S3 keys."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


@dataclass(frozen=True)
class RunContext:
    dag_id: str
    airflow_run_id: str
    target: str
    config: PipelineConfig
    # The run's artifacts folder (local path or s3:// URI): <artifacts_uri>/<run_key>.
    run_uri: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        return run_key_for(self.airflow_run_id)

    @property
    def trains(self) -> bool:
        """Whether this run trains (param ``train``; the retraining DAGs always do)."""
        return bool(self.params.get("train", True))

    def output_uri(self, name: str) -> str:
        return self.run_uri.rstrip("/") + "/" + name

    @property
    def ingest_summary_uri(self) -> str:
        return self.output_uri(SUMMARY_FILES["ingest_summary_uri"])

    @property
    def train_summary_uri(self) -> str:
        return self.output_uri(SUMMARY_FILES["train_summary_uri"])

    @property
    def impute_summary_uri(self) -> str:
        return self.output_uri(SUMMARY_FILES["impute_summary_uri"])

    @property
    def metrics_uri(self) -> str:
        return self.output_uri(SUMMARY_FILES["metrics_uri"])

    def identity(self) -> Dict[str, str]:
        """``_id`` (``<dag_id>:<run_key>``), ``dag_id``, ``airflow_run_id`` and ``run_key``:
        shared by the run's run record and decision record."""
        return {"_id": "{}:{}".format(self.dag_id, self.run_key), "dag_id": self.dag_id,
                "airflow_run_id": self.airflow_run_id, "run_key": self.run_key}

    def to_xcom(self) -> Dict[str, Any]:
        """The JSON form: every field, the derived locations, the config as nested dicts."""
        data = {"dag_id": self.dag_id, "airflow_run_id": self.airflow_run_id,
                "run_key": self.run_key, "target": self.target, "params": dict(self.params),
                "config": self.config.to_dict(), "run_uri": self.run_uri}
        data.update({name: self.output_uri(file) for name, file in SUMMARY_FILES.items()})
        return data

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> "RunContext":
        return cls(dag_id=data["dag_id"], airflow_run_id=data["airflow_run_id"],
                   target=data["target"], config=from_dict(data["config"]),
                   run_uri=data["run_uri"], params=data.get("params") or {})
