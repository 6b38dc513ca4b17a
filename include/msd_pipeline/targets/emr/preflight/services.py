"""The services a run needs besides AWS: the Mongo connection (read by the Airflow tasks,
and copied into the run's secret for the executors) and the MLflow registry
(``model.resolve_champion`` and ``model.decide``)."""
import base64
import os
import urllib.error
import urllib.request
from typing import Dict

from msdlib.config import PipelineConfig
from msd_pipeline import registry
from msd_pipeline.targets.emr.preflight.findings import Finding, not_verified, ok, problem

TIMEOUT_SECONDS = 5
MONGO_CONNECTION_FIX = (
    "define it with conn_type 'mongo' (the Mongo provider refuses any other), e.g. "
    "AIRFLOW_CONN_{ID}='mongo://USER:PASSWORD@HOST:27017/?authSource=admin'; for an Atlas "
    "mongodb+srv host: 'mongo://USER:PASSWORD@CLUSTER.mongodb.net/?srv=true' (no port)")
REGISTRY_PROBE = "/api/2.0/mlflow/registered-models/search?max_results=1"


def check_mongo(config: PipelineConfig) -> Finding:
    """The connection is one the Mongo provider's hook accepts, and it answers a ping."""
    from airflow.exceptions import AirflowConfigException, AirflowNotFoundException
    from airflow.providers.mongo.hooks.mongo import MongoHook
    from msd_pipeline.connections import mongo_uri_from_connection

    check = "mongo connection"
    conn_id = config.mongo.airflow_conn_id
    fix = MONGO_CONNECTION_FIX.replace("{ID}", conn_id.upper())
    try:
        hook = MongoHook(mongo_conn_id=conn_id)
        uri = mongo_uri_from_connection(conn_id)
    except AirflowNotFoundException:
        return problem(check, f"no Airflow connection {conn_id!r}", fix)
    except AirflowConfigException as error:
        return problem(check, f"connection {conn_id!r}: {error}", fix)
    hosts = hook.connection.host
    try:
        _ping(uri)
    except Exception as error:  # pymongo's errors: no server, auth, TLS, DNS
        return problem(check, f"{conn_id!r} ({hosts}) did not answer a ping within "
                              f"{TIMEOUT_SECONDS} s: {type(error).__name__}: {str(error)[:200]}",
                       "start MongoDB or make it reachable from Airflow, and from the EMR "
                       "nodes (NAT gateway or VPC peering/PrivateLink; docs/emr.md)")
    return ok(check, f"{conn_id!r} ({hosts}) answered a ping from Airflow; the EMR nodes must "
                     "reach it too (not checked from here)")


def _ping(uri: str) -> None:
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=TIMEOUT_SECONDS * 1000,
                                 connectTimeoutMS=TIMEOUT_SECONDS * 1000)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def check_mlflow(config: PipelineConfig) -> Finding:
    """The registry the run resolves (``registry.tracking_uri``) answers a model search."""
    check = "mlflow registry"
    uri = registry.tracking_uri(config.retraining.tracking_uri).rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return not_verified(check, f"tracking URI {uri} is not an HTTP server: check by hand "
                                   "that the registry answers")
    request = urllib.request.Request(uri + REGISTRY_PROBE, headers=_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as error:
        return problem(check, f"{uri} answered HTTP {error.code} to a model search",
                       "check the server's URL and credentials (MLFLOW_TRACKING_TOKEN or "
                       "MLFLOW_TRACKING_USERNAME/PASSWORD)")
    except (urllib.error.URLError, OSError) as error:
        return problem(check, f"{uri} did not answer within {TIMEOUT_SECONDS} s "
                              f"({getattr(error, 'reason', error)})",
                       "start the MLflow server where Airflow reaches it, or set "
                       "MLFLOW_TRACKING_URI / retraining.tracking_uri")
    return ok(check, f"{uri} answered a model search")


def _auth_headers() -> Dict[str, str]:
    """The credentials MLflow's client sends, from the same variables."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = (os.environ.get("MLFLOW_TRACKING_USERNAME"),
                      os.environ.get("MLFLOW_TRACKING_PASSWORD"))
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}
