"""
### MSD pipeline on Amazon EMR

The same task graph as `msd_local_pipeline`, with EMR as the executor: one trigger ships
the code, creates a run-scoped EMR cluster, stages the songs in S3, runs the ingest and
the train + evaluate + impute jobs as EMR steps, records the metrics (and an estimated
cost, made final by the teardown) in `pipeline_runs`, and **always terminates the
cluster** — a teardown task that runs on any failure, while the run still ends FAILED.

Configuration: the `[emr]` section of `include/pipeline.toml`. Connections: `aws_default`
(credentials, region) and `mongo_default` (its URI reaches the jobs through a run-scoped
Secrets Manager secret, never through step arguments, logs or XCom).
Running on real AWS (IAM roles, the policy, costs): `docs/emr.md`.

The graph is built by `msd_pipeline.graph` (shared with `msd_local_pipeline`); this file
only picks the EMR target.
"""
# Wiring only: the Airflow DAG comes from the task-graph factory (msd_pipeline.graph).
from msd_pipeline.targets.emr.target import EmrTarget
from msd_pipeline.graph import build_pipeline_dag

dag = build_pipeline_dag(
    dag_id="msd_emr_pipeline",
    target=EmrTarget(),
    description="MSD ingest + training on a run-scoped EMR cluster, torn down on any outcome",
    doc_md=__doc__,
    tags=["aws"],
)
