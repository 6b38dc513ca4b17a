"""How ``make setup-emr`` finds EMR 7's Python (``python -m msd_devtools.emr_runtime
--python``): a working python3.9 on PATH, else pyenv's newest installed 3.9.x, never
another version. Stand-in interpreters and a stand-in pyenv on a PATH of their own."""
import subprocess
import sys

import pytest

from msd_devtools import emr_runtime

# A stand-in interpreter: answers the probe with its version and its own path.
FAKE_PYTHON = """#!/bin/bash
[ "$1" = "-c" ] || exit 64
printf '%s\\n%s\\n' "{version}" "$0"
"""
# pyenv's shim when no 3.9 version is selected.
FAILING_SHIM = """#!/bin/bash
echo "pyenv: python3.9: command not found" >&2
exit 127
"""
FAKE_PYENV = """#!/bin/bash
case "$1" in
  versions) printf '%s\\n' 3.8.18 3.9.2 3.9.18 3.10.13 ;;
  prefix) echo "$PYENV_ROOT/versions/$2" ;;
  *) exit 1 ;;
esac
"""


def script(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def environment(tmp_path, python39=None, pyenv=False):
    """PATH holds only the stand-ins given (they name /bin/bash by its path); HOME and
    PYENV_ROOT point into tmp_path, so no real interpreter or pyenv is found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if python39 is not None:
        script(bin_dir / "python3.9", python39)
    root = tmp_path / "pyenv"
    if pyenv:
        script(bin_dir / "pyenv", FAKE_PYENV)
        for version in ("3.8.18", "3.9.2", "3.9.18", "3.10.13"):
            minor = version.rsplit(".", 1)[0]
            script(root / "versions" / version / "bin" / ("python" + minor),
                   FAKE_PYTHON.format(version=minor))
    return {"PATH": str(bin_dir), "HOME": str(tmp_path),
            "PYENV_ROOT": str(root)}


def test_a_working_python3_9_on_path_comes_first(tmp_path):
    env = environment(tmp_path, python39=FAKE_PYTHON.format(version="3.9"), pyenv=True)
    assert emr_runtime.find_python(env=env) == str(tmp_path / "bin" / "python3.9")


def test_behind_a_failing_shim_pyenv_gives_its_newest_3_9(tmp_path):
    env = environment(tmp_path, python39=FAILING_SHIM, pyenv=True)
    assert emr_runtime.find_python(env=env) == str(
        tmp_path / "pyenv" / "versions" / "3.9.18" / "bin" / "python3.9")


def test_pyenv_is_found_in_its_root_when_not_on_path(tmp_path):
    env = environment(tmp_path, pyenv=True)
    (tmp_path / "bin" / "pyenv").rename(script(tmp_path / "pyenv" / "bin" / "pyenv", FAKE_PYENV))
    assert emr_runtime.find_python(env=env).endswith("/versions/3.9.18/bin/python3.9")


def test_another_python_is_never_taken(tmp_path):
    env = environment(tmp_path, python39=FAKE_PYTHON.format(version="3.11"))
    with pytest.raises(emr_runtime.NoInterpreterError) as error:
        emr_runtime.find_python(env=env)
    message = str(error.value)
    assert "no Python 3.9 interpreter" in message
    assert "python3.9 is Python 3.11" in message and "pyenv is not installed" in message


def test_the_command_fails_loudly_without_a_3_9(tmp_path):
    env = environment(tmp_path, python39=FAILING_SHIM)
    result = subprocess.run([sys.executable, "-m", "msd_devtools.emr_runtime", "--python"],
                            capture_output=True, text=True, timeout=60,
                            env=dict(env, PYTHONPATH=":".join(sys.path)))
    assert result.returncode == 2 and result.stdout == ""
    assert "error: no Python 3.9 interpreter" in result.stderr
    assert "python3.9: command not found" in result.stderr
