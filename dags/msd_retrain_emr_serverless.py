"""
### MSD retraining on Amazon EMR Serverless

`msd_retrain_emr`'s graph with EMR Serverless as the engine: on a `songs` asset event or
the `[retraining] schedule` cron, job runs on a run-scoped application train the
challenger and score the champion on the same split, the Airflow side registers it in
MLflow and applies the gate, the champion imputes unknown years, and the application is
always stopped and deleted. With approval required the application is stopped while
the question is open (a stopped application bills nothing). See docs/retraining.md and
docs/emr-serverless.md.
"""
# Wiring only: the Airflow DAG comes from the task-graph factory (msd_pipeline.graph).
from msd_pipeline.graph import build_retrain_dag
from msd_pipeline.targets.emr_serverless.target import EmrServerlessTarget

dag = build_retrain_dag(
    dag_id="msd_retrain_emr_serverless",
    target=EmrServerlessTarget(),
    description="MSD retraining as EMR Serverless job runs: challenger vs champion, gate, "
                "promotion, champion-only imputation",
    doc_md=__doc__,
    tags=["aws"],
)
