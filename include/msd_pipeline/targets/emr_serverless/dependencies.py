"""The jobs' Python packages on EMR Serverless as one dependency archive.

The pin set is the one the EMR bootstrap installs (include/emr/requirements-emr.txt). pip,
on the Airflow side, installs its wheels for the target's Python and architecture into a
folder; the folder, as a tar.gz, is stored once per content hash at

    <s3_root>/dependencies/<sha256>/msd-deps.tar.gz

and every later run with the same pins, Python and architecture reuses it. The job runs
get it with ``spark.archives``: Spark extracts it as ``./msd_deps`` in the driver's and
each executor's working directory, and PYTHONPATH puts that folder on ``sys.path``.
"""
import hashlib
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from msd_pipeline.paths import EMR_DIR
from msd_pipeline.targets.emr.layout import REQUIREMENTS, join_uri, split_s3_uri

log = logging.getLogger(__name__)

# Bump when the archive's recipe changes (platforms, pip options, layout): a new key.
ARCHIVE_FORMAT = 1
ARCHIVE_NAME = "msd-deps.tar.gz"
ALIAS = "msd_deps"
DEPENDENCIES_FOLDER = "dependencies"
MACHINE_BY_ARCHITECTURE = {"X86_64": "x86_64", "ARM64": "aarch64"}
# EMR (Serverless) 7 runs Amazon Linux 2023, glibc 2.34: every manylinux wheel up to it runs.
GLIBC_MINORS = range(34, 4, -1)
PIP_TIMEOUT_SECONDS = 1800
# gzip level 6: 7 s for the x86_64 archive's 186 MB against 24 s at tarfile's default 9,
# for 0.6 % more bytes (62 MB).
COMPRESS_LEVEL = 6


class DependencyArchiveError(RuntimeError):
    """The archive cannot be built for the requested Python and architecture."""


def target_environment(python_version: str, architecture: str) -> Dict[str, str]:
    """PEP 508 marker values of the job's interpreter: CPython ``python_version`` ("3.9")
    on Linux ``architecture``, not the interpreter running this code."""
    machine = _machine(architecture)
    return {"implementation_name": "cpython", "implementation_version": python_version + ".0",
            "os_name": "posix", "platform_machine": machine, "platform_release": "",
            "platform_system": "Linux", "platform_version": "",
            "python_full_version": python_version + ".0", "python_version": python_version,
            "platform_python_implementation": "CPython", "sys_platform": "linux"}


def resolved_pins(python_version: str, architecture: str,
                  requirements: Path = EMR_DIR / REQUIREMENTS) -> List[str]:
    """The file's ``name==version`` pins whose markers hold on the target, sorted."""
    environment = target_environment(python_version, architecture)
    pins = []
    for line in requirements.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise DependencyArchiveError(f"{requirements.name}: {text!r} is not an exact pin")
        pins.append(f"{canonicalize_name(requirement.name)}=={specifiers[0].version}")
    return sorted(pins)


def content_hash(pins: List[str], python_version: str, architecture: str) -> str:
    lines = [f"format={ARCHIVE_FORMAT}", f"python={python_version}",
             f"architecture={architecture}", *pins]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def archive_uri(s3_root: str, digest: str) -> str:
    return join_uri(s3_root, DEPENDENCIES_FOLDER, digest, ARCHIVE_NAME)


def platform_tags(architecture: str) -> List[str]:
    """pip's ``--platform`` values: pip expands manylinux2014 to the older legacy tags, not
    the ``manylinux_2_N`` ones, so those are listed, the newest first."""
    machine = _machine(architecture)
    return [f"manylinux2014_{machine}"] + [f"manylinux_2_{minor}_{machine}"
                                           for minor in GLIBC_MINORS]


def pip_command(target: Path, pins: List[str], python_version: str,
                architecture: str) -> List[str]:
    platforms = [arg for tag in platform_tags(architecture) for arg in ("--platform", tag)]
    abi = "cp" + python_version.replace(".", "")
    return [sys.executable, "-m", "pip", "install", "--target", str(target),
            "--only-binary=:all:", "--no-deps", "--no-compile", "--disable-pip-version-check",
            "--python-version", python_version, "--implementation", "cp", "--abi", abi,
            *platforms, *pins]


def build_archive(work_dir: Path, pins: List[str], python_version: str,
                  architecture: str) -> Path:
    """Install the pins' wheels into ``work_dir``/site-packages and pack the folder's
    contents (the archive's top level is what goes on PYTHONPATH)."""
    site_packages = work_dir / "site-packages"
    command = pip_command(site_packages, pins, python_version, architecture)
    result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise DependencyArchiveError(_pip_failure(result, python_version, architecture))
    archive = work_dir / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        for path in sorted(site_packages.iterdir()):
            tar.add(str(path), arcname=path.name)
    return archive


def ensure_archive(s3_hook, s3_root: str, python_version: str, architecture: str) -> str:
    """The s3:// URI of the archive for this pin set, Python ("3.9") and architecture
    ("X86_64" | "ARM64"); built and uploaded only when its key is absent."""
    pins = resolved_pins(python_version, architecture)
    uri = archive_uri(s3_root, content_hash(pins, python_version, architecture))
    bucket, key = split_s3_uri(uri)
    if s3_hook.check_for_key(key, bucket_name=bucket):
        log.info("Dependency archive for Python %s on %s: reusing %s (%d packages)",
                 python_version, architecture, uri, len(pins))
        return uri
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="msd-deps-") as work_dir:
        archive = build_archive(Path(work_dir), pins, python_version, architecture)
        size = archive.stat().st_size
        # replace=True: a concurrent run may have stored the same content meanwhile.
        s3_hook.load_file(str(archive), key=key, bucket_name=bucket, replace=True)
    log.info("Dependency archive for Python %s on %s: built %d packages (%.1f MB) in %.0f s "
             "and uploaded to %s", python_version, architecture, len(pins), size / 1e6,
             time.monotonic() - started, uri)
    return uri


def spark_properties(archive_uri: str) -> Dict[str, str]:
    """The job run's Spark properties that make the archive its only extra packages:
    extracted as ``./msd_deps`` next to the driver and every executor, on their PYTHONPATH."""
    folder = "./" + ALIAS
    return {"spark.archives": f"{archive_uri}#{ALIAS}",
            "spark.emr-serverless.driverEnv.PYTHONPATH": folder,
            "spark.executorEnv.PYTHONPATH": folder}


def _machine(architecture: str) -> str:
    try:
        return MACHINE_BY_ARCHITECTURE[architecture]
    except KeyError:
        raise DependencyArchiveError(
            f"unknown architecture {architecture!r}: one of "
            f"{', '.join(sorted(MACHINE_BY_ARCHITECTURE))}") from None


def _pip_failure(result: subprocess.CompletedProcess, python_version: str,
                 architecture: str) -> str:
    """What failed, naming the package pip could not install and the platform."""
    missing = re.findall(r"No matching distribution found for (\S+)", result.stderr)
    what = f"no wheel of {', '.join(missing)}" if missing else f"pip exit {result.returncode}"
    tail = "\n".join(result.stderr.strip().splitlines()[-10:])
    return (f"dependency archive for CPython {python_version} on manylinux "
            f"{_machine(architecture)} ({architecture}): {what}\n{tail}")
