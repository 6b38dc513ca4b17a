"""include/emr/bootstrap.sh run by bash with stand-ins for the node's commands (aws,
sudo, python3, uname) on PATH: argument handling, the pinned requirements installed into
a virtual environment of their own (never the system Python), re-runs, MongoDB from the
repository of the node's CPU.

The stand-ins record each call in calls.log. ``sudo`` runs what it is given, keeps what
``tee`` would write and only records dnf, sed and systemctl. ``python3`` is this
interpreter, so the environment is a real venv into which real pip installs a real
wheel, offline (PIP_NO_INDEX, PIP_FIND_LINKS); with FAKE_VENV=fail its venv fails, with
FAKE_VENV=stub it makes a stand-in environment whose python only records its calls (the
MongoDB tests, which need no real install)."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from project_paths import PROJECT_ROOT

BOOTSTRAP = PROJECT_ROOT / "include" / "emr" / "bootstrap.sh"
REQUIREMENTS_URI = "s3://bucket/runs/r1/code/requirements-emr.txt"
PROBE = "msd_bootstrap_probe"
PROBE_PIN = PROBE.replace("_", "-") + "==1.0"

STUBS = {
    "aws": """#!/bin/bash
echo "aws $*" >> "$STUB_DIR/calls.log"
[ "$1 $2" = "s3 cp" ] && echo "$FAKE_REQUIREMENTS" > "$4"
""",
    "uname": """#!/bin/bash
[ "$1" = "-m" ] && echo "$FAKE_ARCH" || /bin/uname "$@"
""",
    "python3": """#!/bin/bash
echo "python3 $*" >> "$STUB_DIR/calls.log"
if [ "$1 $2" = "-m venv" ]; then
  case "$FAKE_VENV" in
    fail) echo "Error: ensurepip is not available" >&2; exit 1 ;;
    stub) mkdir -p "$3/bin"
          printf '#!/bin/bash\necho "venv-python $*" >> "$STUB_DIR/calls.log"\n' > "$3/bin/python"
          chmod +x "$3/bin/python"; exit 0 ;;
  esac
fi
exec "$REAL_PYTHON" "$@"
""",
    "sudo": """#!/bin/bash
echo "sudo $*" >> "$STUB_DIR/calls.log"
case "$1" in
  tee) cat > "$STUB_DIR/tee-$(basename "$2")" ;;
  dnf|sed|systemctl) exit 0 ;;
  *) exec "$@" ;;
esac
""",
}


def probe_wheel(folder):
    """A one-module wheel for pip to install offline."""
    folder.mkdir(exist_ok=True)
    info = PROBE + "-1.0.dist-info"
    wheel = folder / (PROBE + "-1.0-py3-none-any.whl")
    files = {PROBE + ".py": "VERSION = '1.0'\n",
             info + "/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n".format(
                 PROBE.replace("_", "-")),
             info + "/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[info + "/RECORD"] = "".join(name + ",,\n" for name in [*files, info + "/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return folder


def run_bootstrap(tmp_path, *args, arch="x86_64", venv="stub", master=True,
                  requirements=PROBE_PIN):
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    info = tmp_path / "instance.json"
    info.write_text(json.dumps({"isMaster": master, "isRunningNameNode": master}))
    env = {"PATH": "{}:{}".format(stubs, os.environ["PATH"]), "STUB_DIR": str(tmp_path),
           "FAKE_ARCH": arch, "FAKE_VENV": venv, "FAKE_REQUIREMENTS": requirements,
           "REAL_PYTHON": sys.executable, "MSD_EMR_INSTANCE_INFO": str(info),
           "TMPDIR": str(tmp_path), "HOME": str(tmp_path), "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(probe_wheel(tmp_path / "wheels")),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(["bash", str(BOOTSTRAP), *args], env=env, capture_output=True,
                            text=True, timeout=300)
    log = tmp_path / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def venv_args(tmp_path):
    return "--requirements", REQUIREMENTS_URI, "--venv", str(tmp_path / "msd-venv")


def installed(venv):
    """name==version of every distribution in the environment, from its own pip."""
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list",
                             "--format=freeze"], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize("args, message", [
    ((), "--requirements s3://... is required"),
    (("--requirements",), "--requirements needs a value"),
    (("--requirements", ""), "--requirements needs a value"),
    (("--requirements", REQUIREMENTS_URI), "--venv PATH is required"),
    (("--requirements", REQUIREMENTS_URI, "--venv"), "--venv needs a value"),
    (("--requirements", REQUIREMENTS_URI, "--venv", "msd-venv"),
     "--venv must be an absolute path, got msd-venv"),
    (("--requirements", REQUIREMENTS_URI, "--venv", "/opt/v", "--mongodb-on-master"),
     "--mongodb-on-master needs a value"),
    (("--requirements", REQUIREMENTS_URI, "--venv", "/opt/v", "--verbose"),
     "unknown argument --verbose"),
])
def test_bad_arguments_exit_2_before_doing_anything(tmp_path, args, message):
    result, calls = run_bootstrap(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr and "usage:" in result.stderr
    assert calls == []


def test_the_pins_go_into_a_virtual_environment_of_their_own(tmp_path):
    venv = tmp_path / "msd-venv"
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), venv="real")
    assert result.returncode == 0, result.stderr
    [copy] = [call for call in calls if call.startswith("aws ")]
    assert copy.startswith("aws s3 cp {} ".format(REQUIREMENTS_URI))
    local_copy = copy.split()[-1]
    python = str(venv / "bin" / "python")
    assert [call for call in calls if call.startswith("sudo ")] == [
        "sudo python3 -m venv " + str(venv),
        "sudo {} -m pip install --quiet --no-cache-dir --upgrade pip".format(python),
        "sudo {} -m pip install --quiet --no-cache-dir -r {}".format(python, local_copy),
        "sudo {} -m pip check".format(python)]
    # The system python3 only creates the environment: it installs nothing itself.
    assert [call for call in calls if call.startswith("python3 ")] == [
        "python3 -m venv " + str(venv)]
    assert PROBE_PIN in installed(venv)
    probe = subprocess.run([python, "-c", "import {0}, sys; print({0}.VERSION, sys.prefix)"
                            .format(PROBE)], capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["1.0", str(venv)]

    # A second run on the same node keeps the environment as installed.
    before = installed(venv)
    (tmp_path / "calls.log").unlink()
    again, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), venv="real")
    assert again.returncode == 0, again.stderr
    assert "sudo python3 -m venv " + str(venv) in calls
    assert installed(venv) == before


def test_a_pin_pip_cannot_install_fails_the_bootstrap(tmp_path):
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), venv="real",
                                  requirements="msd-missing-probe==9.9")
    assert result.returncode != 0
    assert "msd-missing-probe" in result.stderr
    assert not any(call.endswith("-m pip check") for call in calls)


def test_no_virtual_environment_fails_the_bootstrap_before_any_install(tmp_path):
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), venv="fail")
    assert result.returncode != 0
    assert "ensurepip is not available" in result.stderr
    assert not any("pip" in call for call in calls)


@pytest.mark.parametrize("arch, repo_arch", [("x86_64", "x86_64"), ("aarch64", "aarch64")])
def test_mongodb_on_the_master_comes_from_the_nodes_architecture(tmp_path, arch, repo_arch):
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), "--mongodb-on-master", "7.0",
                                  arch=arch)
    assert result.returncode == 0, result.stderr
    repo = (tmp_path / "tee-mongodb-org-7.0.repo").read_text()
    assert ("baseurl=https://repo.mongodb.org/yum/amazon/2023/mongodb-org/7.0/{}/"
            .format(repo_arch)) in repo.splitlines()
    assert "gpgkey=https://pgp.mongodb.com/server-7.0.asc" in repo.splitlines()
    assert calls[-3:-1] == ["sudo dnf install -y mongodb-org",
                            "sudo sed -i s/^\\(\\s*bindIp:\\).*/\\1 0.0.0.0/ /etc/mongod.conf"]
    assert calls[-1] == "sudo systemctl enable --now mongod"


def test_core_nodes_install_no_mongodb(tmp_path):
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), "--mongodb-on-master", "7.0",
                                  master=False)
    assert result.returncode == 0, result.stderr
    assert not any("mongo" in call for call in calls)
    assert not list(tmp_path.glob("tee-*"))


def test_an_unsupported_cpu_fails_before_installing_anything(tmp_path):
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), "--mongodb-on-master", "7.0",
                                  arch="ppc64le")
    assert result.returncode == 2
    assert "no MongoDB packages for architecture ppc64le" in result.stderr
    assert calls == []


def test_the_gpu_profile_installs_its_extra_requirements_with_its_python(tmp_path):
    """--extra-requirements (requirements-emr-gpu.txt) goes into the same environment after
    the pins, which --python creates. The python3.11 stand-in records its calls like
    python3's; the dnf install of a missing interpreter is not exercised here."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "python3.11").write_text(STUBS["python3"].replace('echo "python3 ', 'echo "python3.11 '))
    (stubs / "python3.11").chmod(0o755)
    extra_uri = "s3://bucket/runs/r1/code/requirements-emr-gpu.txt"
    venv = tmp_path / "msd-venv"
    result, calls = run_bootstrap(tmp_path, *venv_args(tmp_path), "--extra-requirements",
                                  extra_uri, "--python", "python3.11")
    assert result.returncode == 0, result.stderr
    copies = [call.split() for call in calls if call.startswith("aws ")]
    assert [copy[3] for copy in copies] == [REQUIREMENTS_URI, extra_uri]
    python = str(venv / "bin" / "python")
    assert [call for call in calls if call.startswith("sudo ")] == [
        "sudo python3.11 -m venv " + str(venv),
        "sudo {} -m pip install --quiet --no-cache-dir --upgrade pip".format(python),
        "sudo {} -m pip install --quiet --no-cache-dir -r {}".format(python, copies[0][4]),
        "sudo {} -m pip install --quiet --no-cache-dir -r {}".format(python, copies[1][4]),
        "sudo {} -m pip check".format(python)]
    assert not any(call.startswith("python3 ") for call in calls)
