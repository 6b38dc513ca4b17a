"""The cost model of docs/emr-serverless.md ("Serverless or EC2?"): what one pipeline run
(ingest + train_evaluate) would cost on the `emr` target's default cluster and on the
`emr_serverless` target's default application, for the 10,000-song subset and the full
MSD. Model estimates from measured local throughput and the configured prices, not
measured AWS runs (a run's record carries its real cost).

    python -m msd_devtools.cost_model [--config PATH]

prints the docs' table; tests/unit/test_cost_model.py keeps the docs in step with it.
"""
import argparse
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from msdlib.config import PipelineConfig, load_config
from msd_pipeline.targets.emr.cost import estimate_cost

# -- measured in this repository (benchmarks/README.md), on 2 local cores ---------------------
# Ingest of the 456 real songs, the job itself (read, parse, document, write to a
# SecantusDB on the same 2 cores), local[2], best of 5 rounds: 65.1 songs/s.
INGEST_SONGS_PER_SECOND_ON_2_CORES = 65.1
# train_models.py with the defaults, local[2], quiet machine: read + training seconds.
# 10,000 songs: 6.8 + 106.2; 500,000 labelled songs (the full MSD has about as many): 206.9 + 575.3.
TRAINING_SECONDS_ON_2_CORES = {10_000: 6.8 + 106.2, 500_000: 206.9 + 575.3}
MEASURED_CORES = 2

# -- assumptions (not measured) ---------------------------------------------------------------
EMR_CLUSTER_START_MINUTES = 15.0  # requested → WAITING, bootstrap included (docs/emr.md's estimate)
JOB_START_SECONDS = 60.0          # per Spark job: spark-submit, driver, first executors
IDLE_MINUTES_PER_RUN = 5.0        # engine up but no job: Airflow tasks between jobs, model tasks, teardown
INSTANCE_VCPUS = {"m5.xlarge": 4, "m5a.xlarge": 4, "m6i.xlarge": 4, "m5.2xlarge": 8}
FREE_STORAGE_GB_PER_WORKER = 20.0  # EMR Serverless bills only disk beyond this


@dataclass(frozen=True)
class Dataset:
    name: str
    songs: int
    training_measurement: int  # the key of TRAINING_SECONDS_ON_2_CORES it is costed by


DATASETS = (Dataset("10,000-song subset", 10_000, 10_000),
            Dataset("full MSD (1,000,000 songs, ~280 GB)", 1_000_000, 500_000))


@dataclass(frozen=True)
class Estimate:
    wall_hours: float
    usd: Optional[float]
    billed: str  # what is billed, in the target's units


def work_vcpu_seconds(dataset: Dataset) -> Dict[str, float]:
    """vCPU-seconds of each job, assuming they stay the same spread over more vCPUs."""
    return {"ingest": dataset.songs * MEASURED_CORES / INGEST_SONGS_PER_SECOND_ON_2_CORES,
            "train_evaluate": TRAINING_SECONDS_ON_2_CORES[dataset.training_measurement] * MEASURED_CORES}


def ec2_estimate(config: PipelineConfig, work: Dict[str, float]) -> Estimate:
    """The whole cluster billed from request to termination; the core nodes' vCPUs work."""
    emr = config.emr
    executor_vcpus = emr.core_instance_count * INSTANCE_VCPUS[emr.core_instance_type]
    seconds = (EMR_CLUSTER_START_MINUTES * 60 + IDLE_MINUTES_PER_RUN * 60
               + sum(JOB_START_SECONDS + vcpu_seconds / executor_vcpus for vcpu_seconds in work.values()))
    estimate = estimate_cost(emr, seconds / 3600)
    return Estimate(seconds / 3600, estimate["estimated_usd"],
                    f"{estimate['instance_hours']:.3f} instance-hours")


def amount(text: str) -> float:
    """The number of a capacity setting such as "4 vCPU" or "16 GB"."""
    return float(re.match(r"\s*([\d.]+)", text).group(1))


def serverless_estimate(config: PipelineConfig, work: Dict[str, float]) -> Estimate:
    """Workers billed per second from ready to stop: the pre-initialized capacity
    (drivers + executors) while no job works, a driver and the work's executors while
    one does, executors scaled up to maximum_cpu."""
    serverless = config.emr_serverless
    worker_vcpu = amount(serverless.worker_cpu)
    initial_vcpus = (serverless.initial_driver_workers + serverless.initial_executor_workers) * worker_vcpu
    executor_vcpus = amount(serverless.maximum_cpu) - worker_vcpu
    vcpu_seconds = IDLE_MINUTES_PER_RUN * 60 * initial_vcpus
    wall = IDLE_MINUTES_PER_RUN * 60  # from the application's start (creation not billed)
    for job_vcpu_seconds in work.values():
        working = job_vcpu_seconds / executor_vcpus
        vcpu_seconds += (JOB_START_SECONDS * initial_vcpus + working * worker_vcpu
                         + max(job_vcpu_seconds, 60 * worker_vcpu))  # one worker-minute at least
        wall += JOB_START_SECONDS + working
    vcpu_hours = vcpu_seconds / 3600
    memory_gb_hours = vcpu_hours * amount(serverless.worker_memory) / worker_vcpu
    storage_gb_hours = vcpu_hours / worker_vcpu * max(
        amount(serverless.worker_disk) - FREE_STORAGE_GB_PER_WORKER, 0.0)
    prices = serverless.prices.get(f"{config.emr.region}/{serverless.architecture}")
    usd = None if prices is None else (vcpu_hours * prices["vCPUHour"]
                                       + memory_gb_hours * prices["memoryGBHour"]
                                       + storage_gb_hours * prices["storageGBHour"])
    return Estimate(wall / 3600, usd, f"{vcpu_hours:.3f} vCPU-h, {memory_gb_hours:.3f} GB-h, "
                                      f"{storage_gb_hours:.3f} storage GB-h")


def table(config: PipelineConfig) -> str:
    """The docs' table: per dataset, the work, then each target's wall time, bill and USD."""
    lines = ["| data | work (vCPU-h) | target | wall time | billed | estimated USD |",
             "| --- | ---: | --- | ---: | --- | ---: |"]
    for dataset in DATASETS:
        work = work_vcpu_seconds(dataset)
        for target, estimate in (("EMR on EC2", ec2_estimate(config, work)),
                                 ("EMR Serverless", serverless_estimate(config, work))):
            usd = "price missing" if estimate.usd is None else f"{estimate.usd:.2f}"
            lines.append(f"| {dataset.name} | {sum(work.values()) / 3600:.2f} | {target} | "
                         f"{estimate.wall_hours * 60:.0f} min | {estimate.billed} | {usd} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m msd_devtools.cost_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="pipeline configuration (default: include/pipeline.toml)")
    print(table(load_config(parser.parse_args(argv).config)))


if __name__ == "__main__":
    main()
