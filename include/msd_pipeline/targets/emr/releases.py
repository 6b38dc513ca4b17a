"""The Python of EMR 7 (on EC2 and Serverless) and the Spark version each EMR 7 release
ships (AWS's "Spark release history"; EMR's builds are ``<version>-amzn-N`` of Apache Spark
``<version>``).
The EMR runtime test tier runs the jobs on that Python and on the configured release's
Spark (``python -m msd_devtools.emr_runtime``); a release missing here fails it: add it
from the release history page.
"""

# Every EMR 7 release runs Amazon Linux 2023, whose python3 is 3.9: the Python of the
# jobs' virtual environment on the nodes, and of the EMR runtime test tier.
EMR_PYTHON_VERSION = (3, 9)

SPARK_BY_RELEASE = {
    "emr-7.5.0": "3.5.2",
    "emr-7.8.0": "3.5.4",
    "emr-7.9.0": "3.5.5",
    "emr-7.10.0": "3.5.5",
    "emr-7.11.0": "3.5.6",
    "emr-7.12.0": "3.5.6",
    "emr-7.13.0": "3.5.6",
}


class UnknownReleaseError(KeyError):
    """No Spark version is recorded for the release label."""


def spark_version(release_label: str) -> str:
    try:
        return SPARK_BY_RELEASE[release_label]
    except KeyError:
        raise UnknownReleaseError(
            f"no Spark version recorded for {release_label!r}: add it to "
            f"msd_pipeline.targets.emr.releases.SPARK_BY_RELEASE") from None


def python_version(release_label: str) -> str:
    """The jobs' Python on ``release_label`` as "3.9" (every recorded release: EMR 7)."""
    spark_version(release_label)  # an unrecorded release fails, naming where to add it
    return "{}.{}".format(*EMR_PYTHON_VERSION)
