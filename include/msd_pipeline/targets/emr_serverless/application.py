"""The run's EMR Serverless application: its name and tags (how the teardown finds it)
and the ``CreateApplication`` request, validated against botocore's input shape in
tests/unit/test_emr_serverless_requests.py.

The run's tags are the ``[emr] tags`` plus the DAG id and the run id, under the keys the
EMR target tags its clusters with (``targets/emr/cluster.py``), so one IAM condition and
one lookup rule cover both targets."""
from typing import Any, Dict

from msdlib.config import EmrServerlessSettings, EmrSettings
from msd_pipeline.targets.emr.cluster import run_tags

# CreateApplication's name: at most 64 of [A-Za-z0-9._/#-] (a run key's characters).
APPLICATION_NAME_MAX = 64


def application_name(serverless: EmrServerlessSettings, run_key: str) -> str:
    return f"{serverless.application_name}-{run_key}"[:APPLICATION_NAME_MAX]


def application_tags(emr: EmrSettings, dag_id: str, airflow_run_id: str) -> Dict[str, str]:
    """The run's tags as EMR Serverless takes them (a map)."""
    return {tag["Key"]: tag["Value"] for tag in run_tags(emr, dag_id, airflow_run_id)}


def create_application_request(serverless: EmrServerlessSettings, emr: EmrSettings,
                               name: str, tags: Dict[str, str]) -> Dict[str, Any]:
    """``CreateApplication`` arguments (``releaseLabel`` and ``type`` apart: the provider's
    operator passes those): capacity, auto-start and auto-stop, network, image."""
    worker = {"cpu": serverless.worker_cpu, "memory": serverless.worker_memory,
              "disk": serverless.worker_disk}
    request: Dict[str, Any] = {
        "name": name,
        "architecture": serverless.architecture,
        "initialCapacity": {
            "DRIVER": {"workerCount": serverless.initial_driver_workers,
                       "workerConfiguration": worker},
            "EXECUTOR": {"workerCount": serverless.initial_executor_workers,
                         "workerConfiguration": worker},
        },
        "maximumCapacity": {"cpu": serverless.maximum_cpu, "memory": serverless.maximum_memory,
                            "disk": serverless.maximum_disk},
        # A stopped application starts again on the next job run (after the approval wait).
        "autoStartConfiguration": {"enabled": True},
        "autoStopConfiguration": {"enabled": True,
                                  "idleTimeoutMinutes": serverless.auto_stop_idle_minutes},
        "tags": tags,
    }
    if serverless.subnet_ids or serverless.security_group_ids:
        request["networkConfiguration"] = {"subnetIds": list(serverless.subnet_ids),
                                           "securityGroupIds": list(serverless.security_group_ids)}
    if serverless.dependencies == "image":
        request["imageConfiguration"] = {"imageUri": serverless.image_uri}
    return request
