"""The pip requirement of the EMR runtime test tier: the Spark that the configured
``emr.release_label`` ships. ``make setup-emr`` installs it next to
include/emr/requirements-emr.txt:

    python -m msd_devtools.emr_runtime   # → pyspark==3.5.2 for emr-7.5.0
"""
import sys

from msdlib.config import load_config
from msd_pipeline.targets.emr.releases import UnknownReleaseError, spark_version


def main() -> int:
    try:
        print(f"pyspark=={spark_version(load_config().emr.release_label)}")
    except UnknownReleaseError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
