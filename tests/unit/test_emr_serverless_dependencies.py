"""The EMR Serverless dependency archive: the pins for the target's Python and
architecture (markers evaluated for the target, not for this interpreter), the content
hash of its S3 key, pip's command line and failure, the Spark properties, and
``ensure_archive`` building once and reusing after, against moto's S3 (pip faked there)."""
import io
import logging
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from moto import mock_aws

from msd_pipeline.targets.emr_serverless import dependencies

BUCKET = "msd-deps-unit"
S3_ROOT = f"s3://{BUCKET}/pipeline"
JOBS_IMPORTS = {"h5py", "numpy", "pymongo", "matplotlib", "boto3"}


def names(pins):
    return {pin.split("==")[0] for pin in pins}


def test_python_3_9_gets_the_pins_behind_markers_this_interpreter_would_skip():
    assert sys.version_info[:2] >= (3, 10)  # pip on this interpreter would drop them
    on_emr = names(dependencies.resolved_pins("3.9", "X86_64"))
    assert {"importlib-resources", "zipp"} <= on_emr
    assert JOBS_IMPORTS <= on_emr
    assert on_emr - names(dependencies.resolved_pins("3.11", "X86_64")) == \
        {"importlib-resources", "zipp"}


def test_pins_are_sorted_exact_and_name_the_architectures_machine(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nZipp==3.23.1\n"
                            "numpy==1.26.4  # trailing comment\n"
                            'only-arm==1.0 ; platform_machine == "aarch64"\n'
                            'only-old==2.0 ; python_version < "3.10" and sys_platform == "linux"\n')
    assert dependencies.resolved_pins("3.9", "ARM64", requirements) == \
        ["numpy==1.26.4", "only-arm==1.0", "only-old==2.0", "zipp==3.23.1"]
    assert dependencies.resolved_pins("3.11", "X86_64", requirements) == \
        ["numpy==1.26.4", "zipp==3.23.1"]


def test_a_range_instead_of_a_pin_is_refused(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=1.26\n")
    with pytest.raises(dependencies.DependencyArchiveError, match="numpy>=1.26.*exact pin"):
        dependencies.resolved_pins("3.9", "X86_64", requirements)


def test_an_unknown_architecture_names_the_known_ones():
    with pytest.raises(dependencies.DependencyArchiveError, match="ARM64, X86_64"):
        dependencies.resolved_pins("3.9", "RISCV")


def test_the_content_hash_is_stable_and_changes_with_each_input(monkeypatch):
    pins = dependencies.resolved_pins("3.9", "X86_64")
    digest = dependencies.content_hash(pins, "3.9", "X86_64")
    assert digest == dependencies.content_hash(list(pins), "3.9", "X86_64")
    assert re.fullmatch("[0-9a-f]{64}", digest)
    bumped = [pin.replace("numpy==1.26.4", "numpy==1.26.3") for pin in pins]
    variants = {dependencies.content_hash(bumped, "3.9", "X86_64"),
                dependencies.content_hash(pins[1:], "3.9", "X86_64"),
                dependencies.content_hash(pins, "3.10", "X86_64"),
                dependencies.content_hash(pins, "3.9", "ARM64")}
    monkeypatch.setattr(dependencies, "ARCHIVE_FORMAT", dependencies.ARCHIVE_FORMAT + 1)
    variants.add(dependencies.content_hash(pins, "3.9", "X86_64"))
    assert len(variants) == 5 and digest not in variants


def test_the_archive_key_is_below_the_s3_root():
    assert dependencies.archive_uri(S3_ROOT + "/", "ab" * 32) == \
        f"{S3_ROOT}/dependencies/{'ab' * 32}/msd-deps.tar.gz"


@pytest.mark.parametrize("architecture,machine,other", [("X86_64", "x86_64", "aarch64"),
                                                        ("ARM64", "aarch64", "x86_64")])
def test_pip_installs_wheels_only_for_cpython_3_9_on_the_architecture(architecture, machine,
                                                                      other, tmp_path):
    command = dependencies.pip_command(tmp_path, ["h5py==3.12.1"], "3.9", architecture)
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert command[command.index("--target") + 1] == str(tmp_path)
    assert {"--only-binary=:all:", "--no-deps"} <= set(command)
    assert command[command.index("--python-version") + 1] == "3.9"
    assert command[command.index("--implementation") + 1] == "cp"
    assert command[command.index("--abi") + 1] == "cp39"
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert {f"manylinux2014_{machine}", f"manylinux_2_17_{machine}",
            f"manylinux_2_28_{machine}", f"manylinux_2_34_{machine}"} <= set(platforms)
    assert not any(other in tag for tag in platforms)
    assert f"manylinux_2_35_{machine}" not in platforms  # newer than Amazon Linux 2023
    assert command[-1] == "h5py==3.12.1"


def test_a_failed_pip_names_the_package_and_the_platform(monkeypatch, tmp_path):
    stderr = ("ERROR: Could not find a version that satisfies the requirement h5py==3.12.1\n"
              "ERROR: No matching distribution found for h5py==3.12.1\n")
    monkeypatch.setattr(dependencies.subprocess, "run", lambda command, **kwargs:
                        subprocess.CompletedProcess(command, 1, "", stderr))
    with pytest.raises(dependencies.DependencyArchiveError) as failure:
        dependencies.build_archive(tmp_path, ["h5py==3.12.1"], "3.9", "ARM64")
    message = str(failure.value)
    assert "no wheel of h5py==3.12.1" in message
    assert "CPython 3.9 on manylinux aarch64 (ARM64)" in message


def test_spark_properties_ship_the_archive_onto_driver_and_executor_pythonpath():
    uri = f"{S3_ROOT}/dependencies/{'0' * 64}/msd-deps.tar.gz"
    assert dependencies.spark_properties(uri) == {
        "spark.archives": uri + "#msd_deps",
        "spark.emr-serverless.driverEnv.PYTHONPATH": "./msd_deps",
        "spark.executorEnv.PYTHONPATH": "./msd_deps",
    }


@pytest.fixture
def s3_hook(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        hook = S3Hook(aws_conn_id=None)
        hook.get_conn().create_bucket(Bucket=BUCKET)
        yield hook


@pytest.fixture
def fake_pip(monkeypatch):
    """Replaces pip: writes one module per pin into the target; records each build."""
    builds = []

    def run(command, **kwargs):
        target = Path(command[command.index("--target") + 1])
        builds.append({"target": target, "command": command})
        target.mkdir(parents=True)
        for pin in (arg for arg in command if "==" in arg and not arg.startswith("-")):
            (target / (pin.split("==")[0].replace("-", "_") + ".py")).write_text(f"# {pin}\n")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(dependencies.subprocess, "run", run)
    return builds


def archive_members(s3_hook, uri):
    bucket, key = dependencies.split_s3_uri(uri)
    data = s3_hook.get_key(key, bucket_name=bucket).get()["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return sorted(tar.getnames())


def test_ensure_archive_builds_once_then_reuses_the_stored_archive(s3_hook, fake_pip, caplog):
    caplog.set_level(logging.INFO, logger=dependencies.__name__)
    uri = dependencies.ensure_archive(s3_hook, S3_ROOT, "3.9", "X86_64")
    pins = dependencies.resolved_pins("3.9", "X86_64")
    digest = dependencies.content_hash(pins, "3.9", "X86_64")
    assert uri == dependencies.archive_uri(S3_ROOT, digest)
    [build] = fake_pip
    assert set(pins) <= set(build["command"])
    assert not build["target"].exists()  # the temporary build folder is gone
    members = archive_members(s3_hook, uri)
    assert {"h5py.py", "importlib_resources.py", "zipp.py"} <= set(members)
    assert all("/" not in member for member in members)  # the top level goes on PYTHONPATH
    assert f"built {len(pins)} packages" in caplog.text and " MB) in " in caplog.text
    assert uri in caplog.text

    caplog.clear()
    assert dependencies.ensure_archive(s3_hook, S3_ROOT, "3.9", "X86_64") == uri
    assert len(fake_pip) == 1
    assert f"reusing {uri}" in caplog.text


def test_another_architecture_gets_its_own_archive(s3_hook, fake_pip):
    x86 = dependencies.ensure_archive(s3_hook, S3_ROOT, "3.9", "X86_64")
    arm = dependencies.ensure_archive(s3_hook, S3_ROOT, "3.9", "ARM64")
    assert x86 != arm and len(fake_pip) == 2
    assert "manylinux_2_17_aarch64" in fake_pip[1]["command"]
