"""python -m msd_pipeline.targets.emr.preflight [--config PATH]: one line per finding;
exit 1 when a problem was found. Uses the Airflow connections of the environment
(AIRFLOW_CONN_*, a secrets backend) as the run's tasks do."""
import argparse
import sys
from typing import List, Optional

from msdlib.config import load_config
from msd_pipeline.targets.emr.preflight import PROBLEM, run_checks


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msd_pipeline.targets.emr.preflight",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="pipeline configuration (default: $MSD_CONFIG, "
                                         "else include/pipeline.toml)")
    args = parser.parse_args(argv)
    findings = run_checks(load_config(args.config))
    for finding in findings:
        print(finding.line())
    return 1 if any(finding.status == PROBLEM for finding in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
