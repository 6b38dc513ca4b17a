"""Folders of the project checkout, as the Airflow side and the developer tools see it."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SPARK_JOBS_DIR = PROJECT_ROOT / "spark_jobs"
# What an EMR cluster gets: bootstrap script, pinned requirements, IAM policies.
EMR_DIR = PROJECT_ROOT / "include" / "emr"
