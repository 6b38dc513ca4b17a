"""The MongoDB URI of a job running on EMR, where it is not in the step's environment.

The EMR cluster of a run exports (spark-env classification, so the driver sees it):

* ``MSD_MONGO_SECRET_ID`` (+ ``MSD_MONGO_SECRET_REGION``): the name of the run-scoped
  AWS Secrets Manager secret holding the URI of the Airflow Mongo connection. The
  cluster's instance profile may read only the pipeline's secrets; the DAG's teardown
  deletes the secret. The URI never appears in step arguments, logs or XCom.
* ``MSD_MONGO_ON_MASTER=1``: MongoDB runs on the master node (the tutorial's setup,
  installed by include/emr/bootstrap.sh). Steps run in client deploy mode, so the driver
  is on the master and its fully qualified name is the address the executors use.

``mongo_uri_from_env`` in msdlib/mongo.py falls back to ``mongo_uri_on_emr`` when
$MSD_MONGO_URI is unset. Python 3.9 syntax: ships to EMR with the jobs.
"""
import functools
import os
import socket
from typing import Mapping, Optional

from msdlib import env_vars

MASTER_NODE_PORT = 27017


def mongo_uri_on_emr(environ: Optional[Mapping[str, str]] = None) -> str:
    """The URI from the run's secret or the master node; "" when neither is configured."""
    env = os.environ if environ is None else environ
    secret_id = env.get(env_vars.MONGO_SECRET_ID, "").strip()
    if secret_id:
        return secret_string(secret_id, env.get(env_vars.MONGO_SECRET_REGION) or None)
    if env.get(env_vars.MONGO_ON_MASTER) == "1":
        return "mongodb://{}:{}/".format(socket.getfqdn(), MASTER_NODE_PORT)
    return ""


@functools.lru_cache(maxsize=4)
def secret_string(secret_id: str, region: Optional[str] = None) -> str:
    """The secret's string value (one Secrets Manager call per process and secret)."""
    import boto3  # lazily: local runs never need it
    client = boto3.client("secretsmanager", region_name=region)
    return client.get_secret_value(SecretId=secret_id)["SecretString"].strip()
