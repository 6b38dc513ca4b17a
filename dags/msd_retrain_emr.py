"""
### MSD retraining on Amazon EMR

`msd_retrain_local`'s graph with EMR as the executor: on a `songs` asset event or the
`[retraining] schedule` cron, a run-scoped cluster trains the challenger and scores the
champion on the same split, the Airflow side registers it in MLflow and applies the
gate, the champion imputes unknown years, and the cluster is always terminated. A run
whose `songs` events come from pipeline runs that trained themselves is skipped before
any cluster is created. See docs/retraining.md and docs/emr.md.
"""
# Wiring only: the Airflow DAG comes from the task-graph factory (msd_pipeline.graph).
from msd_pipeline.graph import build_retrain_dag
from msd_pipeline.targets.emr.target import EmrTarget

dag = build_retrain_dag(
    dag_id="msd_retrain_emr",
    target=EmrTarget(),
    description="MSD retraining on a run-scoped EMR cluster: challenger vs champion, gate, "
                "promotion, champion-only imputation",
    doc_md=__doc__,
    tags=["aws"],
)
