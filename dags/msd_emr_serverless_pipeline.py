"""
### MSD pipeline on Amazon EMR Serverless

The same task graph as `msd_emr_pipeline`, with EMR Serverless as the engine: one
trigger ships the code (and the dependency archive, or uses the configured image),
stages the songs in S3, creates a run-scoped application, runs the ingest and the
train + evaluate + impute jobs as job runs billed per second of use, records the
metrics (and an estimated cost from the job runs' billed utilization, made final by the
teardown) in `pipeline_runs`, and **always stops and deletes the application** — a
teardown task that runs on any failure, while the run still ends FAILED.

Configuration: the `[emr_serverless]` section of `include/pipeline.toml`, and `[emr]`
for the shared AWS settings (connection, region, S3 root, release label, tags).
Connections: `aws_default` and `mongo_default` (its URI reaches the jobs through a
run-scoped Secrets Manager secret, never through job arguments, logs or XCom).
Running on real AWS (execution role, policy, network, costs): `docs/emr-serverless.md`.

The graph is built by `msd_pipeline.graph`; this file only picks the target.
"""
# Wiring only: the Airflow DAG comes from the task-graph factory (msd_pipeline.graph).
from msd_pipeline.graph import build_pipeline_dag
from msd_pipeline.targets.emr_serverless.target import EmrServerlessTarget

dag = build_pipeline_dag(
    dag_id="msd_emr_serverless_pipeline",
    target=EmrServerlessTarget(),
    description="MSD ingest + training as EMR Serverless job runs on a run-scoped "
                "application, deleted on any outcome",
    doc_md=__doc__,
    tags=["aws"],
)
