"""
# MSD local pipeline

Stages Million Song Dataset songs, ingests them into MongoDB, trains and evaluates the
decade classifiers and year regressors, imputes unknown years, and records the run.

| group | task | what it does |
| --- | --- | --- |
| | `prepare_run` | resolves this run's configuration (`include/pipeline.toml` + the form) |
| stage | `stage_data` | `../shared/msd` or a folder, generated songs, or the MSD subset archive (resumable, checksummed download) |
| stage | `publish_job_config` | writes the jobs' configuration under the run's artifacts folder |
| spark | `ingest` | `spark-submit spark_jobs/ingest_songs.py`: HDF5 → `songs` |
| spark | `songs_ingested` | publishes the `songs` asset event (run, counts, source); param `train` off stops here |
| model | `resolve_champion` | the `champion` of `msd-song-year` in MLflow |
| spark | `train_evaluate` | `spark-submit spark_jobs/train_models.py`: CV, test metrics, report, the champion scored on the same split |
| model | `decide` / `promote` / `champion` | registry, champion/challenger gate, decision record (docs/retraining.md) |
| spark | `impute` | `spark-submit spark_jobs/impute_years.py` with the champion only |
| report | `collect_metrics` | summary in XCom, a record in `pipeline_runs`, the report's path in the log |

Spark runs on the master of the `spark_default` connection (`local[*]`,
`spark://spark-master:7077`, ...); MongoDB is the `mongo_default` connection. Runs on
the configured schedule (retraining), without catch-up, one at a time.

The graph itself is built by `msd_pipeline.graph` (shared with `msd_emr_pipeline`); this
file only picks the spark-submit target.
"""
# Wiring only: the Airflow DAG comes from the task-graph factory (msd_pipeline.graph).
from msd_pipeline.graph import build_pipeline_dag
from msd_pipeline.targets.spark_submit.target import SparkSubmitTarget

dag = build_pipeline_dag(
    "msd_local_pipeline",
    SparkSubmitTarget(),
    description="MSD: stage → ingest → train/evaluate/impute → metrics, with spark-submit",
    doc_md=__doc__,
)
