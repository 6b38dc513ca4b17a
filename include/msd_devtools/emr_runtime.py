"""What ``make setup-emr`` builds the EMR runtime test tier from:

    python -m msd_devtools.emr_runtime            # → pyspark==3.5.2 for emr-7.5.0
    python -m msd_devtools.emr_runtime --python   # → a Python 3.9 interpreter, like EMR 7's

The Spark is the one the configured ``emr.release_label`` ships. The interpreter is
``python3.9`` on PATH when it runs (pyenv's shim of that name fails unless a 3.9 version
is selected), else the newest 3.9.x that pyenv has installed (``pyenv prefix``). Without
one the command fails with what it tried: the tier never runs on another Python.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

from msdlib.config import load_config
from msd_pipeline.targets.emr.releases import EMR_PYTHON_VERSION, UnknownReleaseError, spark_version

PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
PROBE_TIMEOUT_SECONDS = 60


class NoInterpreterError(RuntimeError):
    """No interpreter of the wanted version was found."""


def find_python(version: Tuple[int, int] = EMR_PYTHON_VERSION,
                env: Optional[Mapping[str, str]] = None) -> str:
    """The path of a working Python ``version`` interpreter; NoInterpreterError else."""
    env = os.environ if env is None else env
    wanted = "{}.{}".format(*version)
    tried = []
    on_path = shutil.which("python" + wanted, path=env.get("PATH", ""))
    if on_path:
        found = _probe(on_path, wanted, env, tried)
        if found:
            return found
    else:
        tried.append("python{} is not on PATH".format(wanted))
    for candidate in _pyenv_pythons(wanted, env, tried):
        found = _probe(candidate, wanted, env, tried)
        if found:
            return found
    raise NoInterpreterError(
        "no Python {0} interpreter: EMR 7 runs Python {0}, and the EMR runtime tier runs on "
        "nothing else. Tried: {1}. Install one (e.g. `pyenv install {0}`) or put a "
        "python{0} on PATH.".format(wanted, "; ".join(tried)))


def _probe(path: str, wanted: str, env: Mapping[str, str], tried: List[str]) -> Optional[str]:
    """The interpreter's real executable if ``path`` runs and is Python ``wanted``."""
    try:
        result = subprocess.run([path, "-c", PROBE], capture_output=True, text=True,
                                env=dict(env), timeout=PROBE_TIMEOUT_SECONDS)
    except OSError as exc:
        tried.append("{} does not run ({})".format(path, exc))
        return None
    lines = result.stdout.split("\n")
    if result.returncode != 0 or len(lines) < 2:
        reason = result.stderr.strip().splitlines() or ["exit {}".format(result.returncode)]
        tried.append("{} fails: {}".format(path, reason[0]))
        return None
    if lines[0] != wanted:
        tried.append("{} is Python {}".format(path, lines[0]))
        return None
    return lines[1]


def _pyenv_pythons(wanted: str, env: Mapping[str, str], tried: List[str]) -> List[str]:
    """pyenv's installed ``wanted``.x interpreters, the newest first."""
    pyenv = shutil.which("pyenv", path=env.get("PATH", "")) or _default_pyenv(env)
    if not pyenv:
        tried.append("pyenv is not installed")
        return []
    listing = _run(pyenv, ["versions", "--bare", "--skip-aliases"], env)
    pattern = re.compile(r"^{}\.(\d+)$".format(re.escape(wanted)))
    versions = sorted((name for name in (listing or "").split() if pattern.match(name)),
                      key=lambda name: int(pattern.match(name).group(1)), reverse=True)
    if not versions:
        tried.append("pyenv has no {}.x installed".format(wanted))
    prefixes = (_run(pyenv, ["prefix", name], env) for name in versions)
    return [str(Path(prefix.strip()) / "bin" / ("python" + wanted)) for prefix in prefixes if prefix]


def _default_pyenv(env: Mapping[str, str]) -> Optional[str]:
    root = env.get("PYENV_ROOT") or str(Path(env.get("HOME", "~")).expanduser() / ".pyenv")
    path = Path(root) / "bin" / "pyenv"
    return str(path) if os.access(str(path), os.X_OK) else None


def _run(command: str, args: List[str], env: Mapping[str, str]) -> Optional[str]:
    result = subprocess.run([command, *args], capture_output=True, text=True, env=dict(env),
                            timeout=PROBE_TIMEOUT_SECONDS)
    return result.stdout if result.returncode == 0 else None


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv == ["--python"]:
            print(find_python())
        elif not argv:
            print(f"pyspark=={spark_version(load_config().emr.release_label)}")
        else:
            print("usage: python -m msd_devtools.emr_runtime [--python]", file=sys.stderr)
            return 2
    except (UnknownReleaseError, NoInterpreterError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
