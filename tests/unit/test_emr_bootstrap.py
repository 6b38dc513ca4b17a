"""include/emr/bootstrap.sh run by bash with stand-ins for the node's commands (aws,
sudo, python3, uname) on PATH: argument handling, pip installed where missing, the
pinned requirements installed, MongoDB from the repository of the node's CPU.

The stand-ins record each call in calls.log; ``sudo`` runs python3 (the stand-in),
keeps what ``tee`` would write, and only records the rest (dnf, sed, systemctl)."""
import json
import os
import subprocess

import pytest

from project_paths import PROJECT_ROOT

BOOTSTRAP = PROJECT_ROOT / "include" / "emr" / "bootstrap.sh"
REQUIREMENTS_URI = "s3://bucket/runs/r1/code/requirements-emr.txt"

STUBS = {
    "aws": """#!/bin/bash
echo "aws $*" >> "$STUB_DIR/calls.log"
[ "$1 $2" = "s3 cp" ] && echo "h5py==3.12.1" > "$4"
""",
    "uname": """#!/bin/bash
[ "$1" = "-m" ] && echo "$FAKE_ARCH" || /bin/uname "$@"
""",
    "python3": """#!/bin/bash
echo "python3 $*" >> "$STUB_DIR/calls.log"
case "$*" in
  "-m pip --version") [ -e "$STUB_DIR/has-pip" ] ;;
  "-m ensurepip --upgrade") [ "$FAKE_ENSUREPIP" = "ok" ] && touch "$STUB_DIR/has-pip" ;;
  "-m pip install"*) [ -e "$STUB_DIR/has-pip" ] ;;
  *) exit 99 ;;
esac
""",
    "sudo": """#!/bin/bash
echo "sudo $*" >> "$STUB_DIR/calls.log"
case "$1" in
  python3) exec "$@" ;;
  tee) cat > "$STUB_DIR/tee-$(basename "$2")" ;;
  dnf) [ "$*" = "dnf install -y python3-pip" ] && touch "$STUB_DIR/has-pip"; exit 0 ;;
esac
""",
}


def run_bootstrap(tmp_path, *args, arch="x86_64", pip=True, ensurepip="ok", master=True,
                  replaced_stubs=None):
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name, text in dict(STUBS, **(replaced_stubs or {})).items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    if pip:
        (tmp_path / "has-pip").touch()
    info = tmp_path / "instance.json"
    info.write_text(json.dumps({"isMaster": master, "isRunningNameNode": master}))
    env = {"PATH": "{}:{}".format(stubs, os.environ["PATH"]), "STUB_DIR": str(tmp_path),
           "FAKE_ARCH": arch, "FAKE_ENSUREPIP": ensurepip,
           "MSD_EMR_INSTANCE_INFO": str(info), "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", str(BOOTSTRAP), *args], env=env, capture_output=True,
                            text=True, timeout=60)
    log = tmp_path / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def sudo_calls(calls):
    return [call for call in calls if call.startswith("sudo ")]


@pytest.mark.parametrize("args, message", [
    ((), "--requirements s3://... is required"),
    (("--requirements",), "--requirements needs a value"),
    (("--requirements", ""), "--requirements needs a value"),
    (("--requirements", REQUIREMENTS_URI, "--mongodb-on-master"), "--mongodb-on-master needs a value"),
    (("--requirements", REQUIREMENTS_URI, "--verbose"), "unknown argument --verbose"),
])
def test_bad_arguments_exit_2_before_doing_anything(tmp_path, args, message):
    result, calls = run_bootstrap(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr and "usage:" in result.stderr
    assert calls == []


def test_installs_the_pinned_requirements_fetched_from_s3(tmp_path):
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI)
    assert result.returncode == 0, result.stderr
    [copy] = [call for call in calls if call.startswith("aws ")]
    assert copy.startswith("aws s3 cp {} ".format(REQUIREMENTS_URI))
    local_copy = copy.split()[-1]
    assert sudo_calls(calls)[-1] == ("sudo python3 -m pip install --quiet --no-cache-dir "
                                     "--ignore-installed -r " + local_copy)
    assert not any("ensurepip" in call or "dnf" in call for call in calls)


def test_missing_pip_comes_from_ensurepip(tmp_path):
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI, pip=False)
    assert result.returncode == 0, result.stderr
    assert "sudo python3 -m ensurepip --upgrade" in calls
    assert not any("dnf" in call for call in calls)
    assert sudo_calls(calls)[-1].startswith("sudo python3 -m pip install")


def test_missing_pip_comes_from_dnf_when_ensurepip_is_absent(tmp_path):
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI, pip=False,
                                  ensurepip="missing")
    assert result.returncode == 0, result.stderr
    assert calls.index("sudo dnf install -y python3-pip") > calls.index(
        "sudo python3 -m ensurepip --upgrade")
    assert sudo_calls(calls)[-1].startswith("sudo python3 -m pip install")


def test_no_pip_at_all_fails_the_bootstrap(tmp_path):
    # dnf "succeeds" but leaves no pip behind: the install must not be attempted.
    broken_sudo = STUBS["sudo"].replace('touch "$STUB_DIR/has-pip"; ', "")
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI, pip=False,
                                  ensurepip="missing", replaced_stubs={"sudo": broken_sudo})
    assert result.returncode != 0
    assert "sudo dnf install -y python3-pip" in calls
    assert not any("pip install" in call for call in calls)


@pytest.mark.parametrize("arch, repo_arch", [("x86_64", "x86_64"), ("aarch64", "aarch64")])
def test_mongodb_on_the_master_comes_from_the_nodes_architecture(tmp_path, arch, repo_arch):
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI,
                                  "--mongodb-on-master", "7.0", arch=arch)
    assert result.returncode == 0, result.stderr
    repo = (tmp_path / "tee-mongodb-org-7.0.repo").read_text()
    assert ("baseurl=https://repo.mongodb.org/yum/amazon/2023/mongodb-org/7.0/{}/"
            .format(repo_arch)) in repo.splitlines()
    assert "gpgkey=https://pgp.mongodb.com/server-7.0.asc" in repo.splitlines()
    assert calls[-3:-1] == ["sudo dnf install -y mongodb-org",
                            "sudo sed -i s/^\\(\\s*bindIp:\\).*/\\1 0.0.0.0/ /etc/mongod.conf"]
    assert calls[-1] == "sudo systemctl enable --now mongod"


def test_core_nodes_install_no_mongodb(tmp_path):
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI,
                                  "--mongodb-on-master", "7.0", master=False)
    assert result.returncode == 0, result.stderr
    assert not any("mongo" in call for call in calls)
    assert not list(tmp_path.glob("tee-*"))


def test_an_unsupported_cpu_fails_before_installing_anything(tmp_path):
    result, calls = run_bootstrap(tmp_path, "--requirements", REQUIREMENTS_URI,
                                  "--mongodb-on-master", "7.0", arch="ppc64le")
    assert result.returncode == 2
    assert "no MongoDB packages for architecture ppc64le" in result.stderr
    assert calls == []
