"""python -m msd_pipeline.targets.emr.preflight [--config PATH]: one line per finding;
exit 1 when a problem was found (findings.cli)."""
import sys

from msd_pipeline.targets.emr.preflight import run_checks
from msd_pipeline.targets.emr.preflight.findings import cli

if __name__ == "__main__":
    sys.exit(cli("python -m msd_pipeline.targets.emr.preflight", run_checks))
