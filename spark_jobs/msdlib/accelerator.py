"""What ``training.accelerator = "gpu"`` needs before the training job starts.

The GPU estimators (spark-rapids-ml, msdlib.core.models.GPU_MODELS) need the package and
cuML in the job's Python ([emr] profile "gpu" installs include/emr/requirements-emr-gpu.txt)
and executors that Spark gives a GPU (``spark.executor.resource.gpu.amount``). Missing
either, the job stops at start with exit 2 naming what is missing: there is no fall back
to the CPU estimators (the run asked, and pays, for GPUs).

Python 3.9 syntax: this module ships to EMR with the Spark jobs.
"""
import importlib.util
from typing import Callable, List, Optional

GPU_AMOUNT = "spark.executor.resource.gpu.amount"
# Import names of the GPU estimators' package and of the cuML it drives on the executors.
GPU_PACKAGES = ("spark_rapids_ml", "cuml")


def gpu_problems(conf_get: Callable[[str], Optional[str]],
                 find_spec: Callable[[str], object] = importlib.util.find_spec) -> List[str]:
    """Why GPU training cannot start: packages not importable here, executors without a
    GPU. ``conf_get`` reads a Spark property (None when unset)."""
    problems = []
    missing = [name for name in GPU_PACKAGES if find_spec(name) is None]
    if missing:
        problems.append("the Python package(s) {} are not installed (spark-rapids-ml and "
                        "cuML: [emr] profile = \"gpu\" installs them)".format(", ".join(missing)))
    if not _positive(conf_get(GPU_AMOUNT)):
        problems.append("no GPU for the executors: {} is {} (the GPU profile's "
                        "spark-defaults set it)".format(GPU_AMOUNT, conf_get(GPU_AMOUNT) or "unset"))
    return problems


def check_accelerator(accelerator: str, conf_get: Callable[[str], Optional[str]]) -> None:
    """Raise RuntimeError naming what GPU training lacks; nothing for "cpu"."""
    if accelerator != "gpu":
        return
    problems = gpu_problems(conf_get)
    if problems:
        raise RuntimeError("training.accelerator is 'gpu' but " + "; ".join(problems)
                           + ". Not falling back to the CPU: set training.accelerator = "
                             "\"cpu\" to train on CPUs.")


def _positive(amount: Optional[str]) -> bool:
    try:
        return amount is not None and float(amount) > 0
    except ValueError:
        return False
