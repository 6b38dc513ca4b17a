"""benchmarks/bench_gpu_training.py on a machine without a GPU: it says "no GPU", names
what is missing and exits 2 before starting a database or Spark. Its GPU path has not
run here (no GPU)."""
import os
import subprocess
import sys

from project_paths import PROJECT_ROOT

BENCH = PROJECT_ROOT / "benchmarks" / "bench_gpu_training.py"


def run_bench(tmp_path, path_dirs):
    env = dict(os.environ, PATH=os.pathsep.join(str(d) for d in path_dirs))
    return subprocess.run([sys.executable, str(BENCH), "--sizes", "1000"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))


def test_without_nvidia_smi_it_exits_2_with_no_gpu(tmp_path):
    result = run_bench(tmp_path, [os.path.dirname(sys.executable), "/usr/bin", "/bin"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("no GPU: ")
    assert "nvidia-smi lists no GPU on this machine" in result.stderr
    assert result.stdout == ""


def test_a_listed_gpu_without_cuml_still_stops(tmp_path):
    """A stand-in nvidia-smi listing one GPU: the package check still stops the run."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Tesla T4 (UUID: GPU-0)'\n")
    (tools / "nvidia-smi").chmod(0o755)
    result = run_bench(tmp_path, [tools, os.path.dirname(sys.executable), "/usr/bin", "/bin"])
    assert result.returncode == 2, result.stderr
    assert "nvidia-smi lists no GPU" not in result.stderr
    assert "cuml" in result.stderr and result.stderr.startswith("no GPU: ")
