"""The Spark version of each EMR release, which the EMR runtime tier installs, and its Python."""
import subprocess
import sys

import pytest

from msdlib.config import load_config
from msd_pipeline.targets.emr import releases


def test_the_configured_release_has_a_recorded_spark_3_5():
    version = releases.spark_version(load_config().emr.release_label)
    assert version.startswith("3.5.")


def test_an_unrecorded_release_names_where_to_add_it():
    with pytest.raises(releases.UnknownReleaseError, match="SPARK_BY_RELEASE"):
        releases.spark_version("emr-7.99.0")


def test_the_configured_release_runs_python_3_9():
    assert releases.python_version(load_config().emr.release_label) == "3.9"
    with pytest.raises(releases.UnknownReleaseError, match="SPARK_BY_RELEASE"):
        releases.python_version("emr-7.99.0")


def test_the_command_prints_the_pip_requirement_make_installs():
    result = subprocess.run([sys.executable, "-m", "msd_devtools.emr_runtime"],
                            capture_output=True, text=True, timeout=60, check=True)
    expected = releases.spark_version(load_config().emr.release_label)
    assert result.stdout.strip() == "pyspark==" + expected
