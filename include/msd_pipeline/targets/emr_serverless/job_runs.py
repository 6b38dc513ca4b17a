"""One job run per Spark step: the ``StartJobRun`` pieces (validated against botocore's
input shape in tests/unit/test_emr_serverless_requests.py) and where AWS writes the
driver's logs.

The job gets what the EMR cluster's spark-env exports on EC2: the run's Mongo secret
name and region (``msdlib.env_vars``), never the URI, for the driver
(``spark.emr-serverless.driverEnv.*``) and the executors (``spark.executorEnv.*``).
The msdlib zip goes by ``--py-files``; the dependency archive's properties
(``dependencies.spark_properties``) come with the other ``--conf`` pairs."""
import shlex
from typing import Any, Dict, List, Optional

from msdlib import env_vars
from msd_pipeline.targets.emr.layout import join_uri

DRIVER_ENV = "spark.emr-serverless.driverEnv."
EXECUTOR_ENV = "spark.executorEnv."
DRIVER_LOG_FILES = ("stderr", "stdout")


def environment_properties(name: str, value: str) -> Dict[str, str]:
    """``name=value`` in the environment of the driver and of every executor."""
    return {DRIVER_ENV + name: value, EXECUTOR_ENV + name: value}


def mongo_secret_properties(secret_id: str, region: str) -> Dict[str, str]:
    return {**environment_properties(env_vars.MONGO_SECRET_ID, secret_id),
            **environment_properties(env_vars.MONGO_SECRET_REGION, region)}


def spark_submit_parameters(jobs_zip_uri: str, properties: Dict[str, str]) -> str:
    """``sparkSubmitParameters``: the msdlib zip and the ``--conf`` pairs, sorted."""
    words = ["--py-files", jobs_zip_uri]
    for key, value in sorted(properties.items()):
        words += ["--conf", f"{key}={value}"]
    return " ".join(shlex.quote(word) for word in words)


def job_driver(script_uri: str, job_args: List[str], submit_parameters: str) -> Dict[str, Any]:
    return {"sparkSubmit": {"entryPoint": script_uri, "entryPointArguments": list(job_args),
                            "sparkSubmitParameters": submit_parameters}}


def configuration_overrides(log_uri: str) -> Dict[str, Any]:
    """The driver's and executors' logs to ``log_uri`` (the run layout's log prefix)."""
    return {"monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": log_uri}}}


def start_job_run_extras(timeout_minutes: int, tags: Dict[str, str]) -> Dict[str, Any]:
    """The ``StartJobRun`` arguments the provider's operator takes as ``config``."""
    return {"executionTimeoutMinutes": timeout_minutes, "tags": tags}


def job_run_name(task_id: str, run_key: str) -> str:
    return f"{task_id} {run_key}"


def driver_log_uris(log_uri: str, application_id: str, job_run_id: str) -> Dict[str, str]:
    """``<logUri>/applications/<app>/jobs/<jobRun>/SPARK_DRIVER/{stderr,stdout}.gz``."""
    prefix = join_uri(log_uri, "applications", application_id, "jobs", job_run_id,
                      "SPARK_DRIVER")
    return {name: f"{prefix}/{name}.gz" for name in DRIVER_LOG_FILES}


def log_uri_of(job_run: Dict[str, Any]) -> Optional[str]:
    """The S3 log prefix a ``GetJobRun`` result names (None: no S3 monitoring)."""
    return ((job_run.get("configurationOverrides") or {}).get("monitoringConfiguration", {})
            .get("s3MonitoringConfiguration", {}).get("logUri"))
