"""``airflow dags test msd_emr_pipeline`` against moto, on a first run that cannot work:
the documented ``mongodb://`` connection (conn_type ``mongodb``) and a subnet without the V2
tag. ``cluster.preflight`` fails the run with one line per problem and its fix, before
any cluster or secret exists. How moto plays EMR: tests/emr_dag_support.py; the checks
one by one: tests/integration/test_emr_preflight.py."""
import json

from emr_dag_support import (MONGO_PASSWORD, MONGO_USER, emr_backend, failing_step,
                             run_pipeline, write_config)
from emr_support import V2_TAG, client


def test_a_run_that_cannot_work_fails_in_the_preflight_before_anything_is_paid_for(
        emr_airflow_env, moto_url, mongo_with_password, song_archive, tmp_path):
    ec2 = client("ec2", moto_url)
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.210.0/24",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    config = write_config(tmp_path / "config.json", song_archive, "emr_e2e_preflight",
                          ec2_subnet_id=subnet)
    mongo = json.loads(mongo_with_password)
    env = {**emr_airflow_env,  # as docs/emr.md used to show it: conn_type "mongodb"
           "AIRFLOW_CONN_MONGO_DEFAULT":
               f"mongodb://{MONGO_USER}:{MONGO_PASSWORD}@{mongo['host']}:{mongo['port']}/"}
    clusters_before = set(emr_backend().clusters)

    run = run_pipeline(env, config, failing_step, moto_url)

    assert run.state == "failed", run.describe()
    assert run.tasks["cluster.preflight"] == "failed", run.describe()
    assert run.tasks["cluster.ship_code"] == "upstream_failed", run.describe()
    assert f"[problem] network tags: {subnet} lack the tag {V2_TAG}=true" in run.logs
    assert "[problem] mongo connection: connection 'mongo_default': conn_type 'mongodb' " \
           "not allowed" in run.logs
    assert "; fix: aws ec2 create-tags" in run.logs and "?srv=true" in run.logs
    assert set(emr_backend().clusters) == clusters_before  # no RunJobFlow
    assert not client("secretsmanager", moto_url).list_secrets()["SecretList"]
    assert MONGO_PASSWORD not in run.logs
