"""Spark parallelism of the EMR cluster, derived from its core nodes' vCPUs: with
dynamic allocation no executor exists when the driver starts, so Spark alone would
say 2 and the jobs would use a fraction of the cores."""
import dataclasses

import pytest

from msdlib.config import EMR_VENV_PYTHON, load_config
from msd_pipeline.targets.emr.cluster import (ClusterConfigError, build_job_flow_request,
                                               instance_vcpus, parallelism_properties)
from msd_pipeline.targets.emr.layout import RunLayout


def emr_settings(**changes):
    base = dataclasses.replace(load_config().emr, s3_root="s3://test-bucket/msd")
    return dataclasses.replace(base, **changes)


def spark_defaults(emr):
    request = build_job_flow_request(emr, RunLayout(emr.s3_root, "run-1"), dag_id="dag",
                                     airflow_run_id="run", mongo_secret_id="secret")
    [defaults] = [c for c in request["Configurations"]
                  if c["Classification"] == "spark-defaults"]
    return defaults["Properties"]


@pytest.mark.parametrize("instance_type, vcpus", [
    ("m5.large", 2), ("m5.xlarge", 4), ("m6g.2xlarge", 8), ("c5.9xlarge", 36),
    ("r7g.16xlarge", 64), ("m5.metal", None), ("m5", None), ("m5.0xlarge", None),
])
def test_vcpus_follow_the_instance_size(instance_type, vcpus):
    assert instance_vcpus(instance_type) == vcpus


def test_default_layout_uses_every_core_node_vcpu():
    # Two m5.xlarge core nodes: 8 cores, one task each, two shuffle partitions each.
    properties = spark_defaults(emr_settings(core_instance_type="m5.xlarge",
                                             core_instance_count=2))
    assert properties["spark.default.parallelism"] == "8"
    assert properties["spark.sql.shuffle.partitions"] == "16"
    assert properties["spark.dynamicAllocation.enabled"] == "true"


def test_more_and_larger_nodes_raise_the_parallelism():
    properties = spark_defaults(emr_settings(core_instance_type="m6g.4xlarge",
                                             core_instance_count=5))
    assert properties["spark.default.parallelism"] == "80"


def test_a_fleet_counts_its_largest_type_so_no_core_idles():
    emr = emr_settings(instance_layout="fleets", core_instance_count=3,
                       fleet_instance_types=["m5.xlarge", "m5.2xlarge"])
    assert parallelism_properties(emr)["spark.default.parallelism"] == "24"


def test_configured_parallelism_wins():
    emr = emr_settings(spark_properties={"spark.default.parallelism": "100",
                                         "spark.pyspark.python": EMR_VENV_PYTHON})
    properties = spark_defaults(emr)
    assert properties["spark.default.parallelism"] == "100"
    assert "spark.sql.shuffle.partitions" not in properties


def test_an_unknown_size_needs_the_parallelism_set_by_hand():
    with pytest.raises(ClusterConfigError, match="m5.metal.*spark.default.parallelism"):
        spark_defaults(emr_settings(core_instance_type="m5.metal"))
    emr = emr_settings(core_instance_type="m5.metal",
                       spark_properties={"spark.default.parallelism": "96"})
    assert spark_defaults(emr)["spark.default.parallelism"] == "96"
