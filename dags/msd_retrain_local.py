"""
# MSD retraining (local)

Retrains when new songs arrive: scheduled on the `songs` asset (published by every
ingest) or on the `[retraining] schedule` cron of `include/pipeline.toml`, whichever
comes first.

| group | task | what it does |
| --- | --- | --- |
| | `prepare_run` | resolves this run's configuration |
| | `check_trigger` | skips the run when its `songs` events come from pipeline runs that trained on their own songs |
| stage | `publish_job_config` | writes the jobs' configuration under the run's artifacts folder |
| model | `resolve_champion` | the `champion` alias of `msd-song-year` in MLflow |
| spark | `train_evaluate` | `spark_jobs/train_models.py --champion-uri ...`: the challenger, and the champion scored on the same split |
| model | `decide` | MLflow run + challenger version, the gate, a `model_decisions` record |
| model | `approve` | (when `require_approval`) a human approves in the UI |
| model | `promote` | `champion` → the challenger, `previous` → the old champion |
| model | `champion` | the champion after the decision |
| spark | `impute` | `spark_jobs/impute_years.py` with the champion only |
| report | `collect_metrics` | a `pipeline_runs` record with the decision |

Rollback: `python -m msd_pipeline.registry rollback`. See docs/retraining.md.
"""
# Wiring only: the Airflow DAG comes from the task-graph factory (msd_pipeline.graph).
from msd_pipeline.graph import build_retrain_dag
from msd_pipeline.targets.spark_submit.target import SparkSubmitTarget

dag = build_retrain_dag(
    "msd_retrain_local",
    SparkSubmitTarget(),
    description="MSD retraining on new songs: challenger vs champion, gate, promotion, "
                "champion-only imputation (spark-submit)",
    doc_md=__doc__,
)
