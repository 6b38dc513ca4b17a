"""EMR steps running the Spark jobs: ``command-runner.jar spark-submit`` in client mode
(the driver runs on the master node, so its stdout/stderr are the step's logs; with
``emr.container_image`` in cluster mode, the driver in the image on a core node, its
output in the YARN container logs), with
the msdlib zip shipped by ``--py-files``. Validated against botocore's
``AddJobFlowSteps`` input shape in tests/unit/test_emr_request.py."""
from typing import Any, Dict, List

# A failed step cancels the pending ones and leaves the cluster up: the DAG fetches the
# step's logs, then its teardown ends the cluster.
ACTION_ON_FAILURE = "CANCEL_AND_WAIT"


CLIENT = "client"
CLUSTER = "cluster"  # Docker on YARN: the driver too runs in the image (its Python 3.9)


def spark_submit_args(script_uri: str, jobs_zip_uri: str, job_args: List[str],
                      deploy_mode: str = CLIENT) -> List[str]:
    """The step's command line: spark-submit on YARN."""
    return ["spark-submit", "--master", "yarn", "--deploy-mode", deploy_mode,
            "--py-files", jobs_zip_uri, script_uri, *job_args]


def spark_step(name: str, script_uri: str, jobs_zip_uri: str, job_args: List[str],
               deploy_mode: str = CLIENT) -> Dict[str, Any]:
    """One ``AddJobFlowSteps`` step (values may be Jinja templates, rendered by Airflow)."""
    return {
        "Name": name,
        "ActionOnFailure": ACTION_ON_FAILURE,
        "HadoopJarStep": {"Jar": "command-runner.jar",
                          "Args": spark_submit_args(script_uri, jobs_zip_uri, job_args,
                                                   deploy_mode)},
    }


def job_cli_args(step_args: List[str]) -> List[str]:
    """The job's own CLI arguments inside a step's ``spark-submit`` command line."""
    script_index = step_args.index("--py-files") + 2
    return step_args[script_index + 1:]
