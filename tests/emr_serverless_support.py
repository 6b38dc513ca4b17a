"""Test support for the EMR Serverless tests: the driver that plays EMR Serverless's job
runs on moto (server mode, in this process), and the job runners it hands them to.

moto runs nothing: ``JobRunDriver`` watches moto's EMR Serverless backend, sets each new
job run RUNNING, hands it to a ``JobRunner`` in a thread of its own (EMR Serverless runs
an application's job runs side by side), writes the driver's stdout and stderr to the job
run's logUri as EMR Serverless does, and sets the run SUCCESS or FAILED with its duration
and billed utilization. ``RealJobRunner`` runs the job run's real spark-submit on local
Spark; ``failing_job`` and ``hanging_job`` play a failed run and one that never ends.

Where moto 5.2 differs from AWS, the harness adapts, never the product:

* moto creates every job run SUCCESS, billed nothing, and never runs it. While a driver
  runs, new job runs start SUBMITTED (AWS's first state; the driver sets moto's
  ``JOB_STATUS``), and the driver takes them to RUNNING and then to SUCCESS or FAILED
  (AWS passes PENDING and SCHEDULED on the way; a client sees SUBMITTED, then RUNNING).
* moto creates applications STARTED (AWS: CREATING, CREATED, and STARTED by
  StartApplication or auto-start on the first job run): under ``moto_as_aws`` they are
  created CREATED (the provider's operator waits for CREATED, then starts them); the
  driver runs job runs whatever the application's state. StopApplication and DeleteApplication set STOPPED and
  TERMINATED at once (AWS passes STOPPING); DeleteApplication requires CREATED or
  STOPPED, as on AWS.
* moto's ListJobRuns answers ResourceNotFound for an application without job runs; under
  ``moto_as_aws`` it lists none, as AWS does.
* moto's CreateApplication keeps neither ``architecture`` nor ``imageConfiguration`` (nor
  runtime, monitoring or worker-type settings): GetApplication does not return them.
* moto's CancelJobRun sets CANCELLED at once (AWS: CANCELLING, then CANCELLED), also on a
  finished run. The driver notices it, ends the run's local processes and leaves it
  CANCELLED, with its duration and bill.
* moto truncates createdAt and updatedAt to midnight; the driver sets updatedAt, startedAt
  and endedAt as it moves a run. executionTimeoutMinutes is not enforced, and moto refuses less
  than 5 minutes, which AWS accepts (0 is "never"): under ``moto_as_aws`` a shorter one is
  stored as asked; ``RealJobRunner`` ends a job after ``timeout_seconds``.
* Billed utilization is the harness's formula (``billed_utilization``), not AWS's metering.
* Without a logUri (AWS's managed log storage) the driver writes no logs.

And where local Spark differs from EMR Serverless's workers (``RealJobRunner``): Spark
from pip has no s3:// filesystem, so the entry point, the ``--py-files`` and
imputation's ``--model-uri`` are downloaded from moto's S3; the dependency archive
(``spark.archives`` and the PYTHONPATH and interpreter settings naming it) is dropped,
since it is built for EMR's Python 3.9 on manylinux (the emr_runtime tier tests it), and
the job runs on this interpreter; the workers' sizes are EMR's, not this machine's.
"""
import contextlib
import gzip
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import moto.emrserverless.models as moto_emr_serverless
from moto.core.utils import utcnow
from moto.emrserverless.models import (Application, EMRServerlessBackend, JobRun,
                                       emrserverless_backends)

from emr_support import (ACCOUNT_ID, REGION, Credentials, PollingDriver, StepOutcome, client,
                         download_object, local_spark_env, localize_model_uri, spark_submit)

FAILED_JOB_MARKER = "RuntimeError: simulated driver loss 2b9e"
# The harness bills at least a minute per job run (AWS bills each worker at least a minute).
MINIMUM_BILLED_SECONDS = 60
DEFAULT_WORKER_DISK = "20 GB"  # AWS's when a worker configuration names no disk

DRIVER_ENV = "spark.emr-serverless.driverEnv."
EXECUTOR_ENV = "spark.executorEnv."
# The dependency archive's interpreter and module path.
ARCHIVE_ENV = ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
# Not for local Spark: the archive, EMR Serverless's own settings, the workers' sizes.
NOT_LOCAL_CONF = ("spark.archives", "spark.pyspark.python", "spark.pyspark.driver.python",
                  "spark.emr-serverless.", "spark.submit.deployMode", "spark.driver.cores",
                  "spark.driver.memory", "spark.executor.cores", "spark.executor.memory",
                  "spark.executor.instances")

# (application, job run, cancelled) → outcome; None: the run hangs until cancelled.
JobRunner = Callable[[Application, JobRun, threading.Event], Optional[StepOutcome]]


def emr_serverless_backend():
    return emrserverless_backends[ACCOUNT_ID][REGION]


class JobRunDriver(PollingDriver):
    """Plays EMR Serverless for moto: hands each new job run to ``job_runner``, writes its
    driver's logs to the logUri, and ends it SUCCESS or FAILED (or leaves it CANCELLED)."""

    def __init__(self, endpoint_url: str, job_runner: JobRunner, poll_seconds: float = 0.2,
                 credentials: Credentials = Credentials()):
        super().__init__(poll_seconds)
        self.endpoint_url = endpoint_url
        self.job_runner = job_runner
        self.credentials = credentials  # the log pusher's: the job runs' execution role
        backend = emr_serverless_backend()
        self.earlier_applications = set(backend.applications)  # not this driver's
        self.earlier_job_runs = {run.id for runs in backend.job_runs.values() for run in runs}
        self.handled: List[str] = []
        self._in_flight: Dict[str, Tuple[JobRun, threading.Event]] = {}
        self._workers: List[threading.Thread] = []
        self._moto_job_status = moto_emr_serverless.JOB_STATUS

    def start(self) -> None:
        moto_emr_serverless.JOB_STATUS = "SUBMITTED"
        super().start()

    def stop(self) -> None:
        """Stops playing: ends the runs still in flight (their local processes too) and
        leaves their state as it is."""
        super().stop()
        for _, cancelled in list(self._in_flight.values()):
            cancelled.set()
        for worker in self._workers:
            worker.join(timeout=30)
        moto_emr_serverless.JOB_STATUS = self._moto_job_status

    def applications(self) -> List[Application]:
        """The applications created since this driver was made, oldest first."""
        return [application for application_id, application
                in emr_serverless_backend().applications.items()
                if application_id not in self.earlier_applications]

    def application_states(self) -> Dict[str, str]:
        """name → state of ``applications()``."""
        return {application.name: application.state for application in self.applications()}

    def job_runs(self) -> List[JobRun]:
        """The job runs this driver played, in the order it noticed them."""
        runs = {run.id: run for runs in emr_serverless_backend().job_runs.values() for run in runs}
        return [runs[job_run_id] for job_run_id in self.handled]

    def _advance(self) -> None:
        backend = emr_serverless_backend()
        for application_id, job_runs in list(backend.job_runs.items()):
            for job_run in list(job_runs):
                if job_run.id in self.earlier_job_runs or job_run.id in self.handled:
                    continue
                self.handled.append(job_run.id)
                if job_run.state == "SUBMITTED":  # else cancelled before the driver saw it
                    self._start(backend.applications[application_id], job_run)
        for job_run, cancelled in list(self._in_flight.values()):
            if job_run.state == "CANCELLED":
                cancelled.set()

    def _start(self, application: Application, job_run: JobRun) -> None:
        job_run.state = "RUNNING"
        job_run.started_at = job_run.updated_at = utcnow()
        cancelled = threading.Event()
        self._in_flight[job_run.id] = (job_run, cancelled)
        worker = threading.Thread(target=self._play, args=(application, job_run, cancelled),
                                  daemon=True)
        self._workers.append(worker)
        worker.start()

    def _play(self, application: Application, job_run: JobRun, cancelled: threading.Event) -> None:
        started = time.monotonic()
        try:
            outcome = self.job_runner(application, job_run, cancelled)
        except BaseException as exc:  # surfaced by the test through .errors
            self.errors.append(exc)
            outcome = StepOutcome(False, stderr=f"harness error: {exc!r}\n")
        if outcome is None:
            cancelled.wait()
        self._in_flight.pop(job_run.id)
        if self._stopping.is_set() and job_run.state != "CANCELLED":
            return  # the test stopped playing: the run stays as it is
        if outcome is not None:
            self._write_logs(application, job_run, outcome)
        self._finish(application, job_run, outcome, time.monotonic() - started)

    def _finish(self, application: Application, job_run: JobRun,
                outcome: Optional[StepOutcome], seconds: float) -> None:
        job_run.total_execution_duration_seconds = round(seconds)
        job_run.billed_resource_utilization = billed_utilization(application, seconds)
        job_run.ended_at = job_run.updated_at = utcnow()
        if job_run.state == "CANCELLED":
            return
        if outcome.succeeded:
            job_run.state = "SUCCESS"
        else:
            job_run.state = "FAILED"
            job_run.state_details = failure_details(outcome.stderr)

    def _write_logs(self, application: Application, job_run: JobRun, outcome: StepOutcome) -> None:
        log_uri = job_run_log_uri(job_run)
        if not log_uri:
            return
        s3 = client("s3", self.endpoint_url, self.credentials)
        for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            bucket, _, key = driver_log_uri(log_uri, application.id, job_run.id, stream)[
                len("s3://"):].partition("/")
            s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(text.encode("utf-8")))


@contextlib.contextmanager
def moto_as_aws() -> Iterator[None]:
    """moto's EMR Serverless where it differs from AWS in what the pipeline sees (the
    module docstring): applications created CREATED, ListJobRuns of an application without
    runs empty, job-run timeouts under 5 minutes accepted."""
    status = moto_emr_serverless.APPLICATION_STATUS
    list_job_runs, start_job_run = EMRServerlessBackend.list_job_runs, EMRServerlessBackend.start_job_run

    def listing_applications_without_runs(backend, application_id, *args, **kwargs):
        backend.get_application(application_id)  # an unknown one: ResourceNotFound, as on AWS
        backend.job_runs.setdefault(application_id, [])
        return list_job_runs(backend, application_id, *args, **kwargs)

    def accepting_short_timeouts(backend, *args, **kwargs):
        minutes = kwargs.get("execution_timeout_minutes")
        if minutes and minutes < 5:
            job_run = start_job_run(backend, *args, **{**kwargs, "execution_timeout_minutes": None})
            job_run.execution_timeout_minutes = minutes
            return job_run
        return start_job_run(backend, *args, **kwargs)

    moto_emr_serverless.APPLICATION_STATUS = "CREATED"
    EMRServerlessBackend.list_job_runs = listing_applications_without_runs
    EMRServerlessBackend.start_job_run = accepting_short_timeouts
    try:
        yield
    finally:
        moto_emr_serverless.APPLICATION_STATUS = status
        EMRServerlessBackend.list_job_runs = list_job_runs
        EMRServerlessBackend.start_job_run = start_job_run


def job_run_log_uri(job_run: JobRun) -> Optional[str]:
    """configurationOverrides.monitoringConfiguration.s3MonitoringConfiguration.logUri."""
    overrides = job_run.configuration_overrides or {}
    monitoring = overrides.get("monitoringConfiguration") or {}
    return (monitoring.get("s3MonitoringConfiguration") or {}).get("logUri")


def driver_log_uri(log_uri: str, application_id: str, job_run_id: str, stream: str) -> str:
    """Where EMR Serverless writes a job run's driver ``stream`` ("stdout" or "stderr")."""
    return "{}/applications/{}/jobs/{}/SPARK_DRIVER/{}.gz".format(
        log_uri.rstrip("/"), application_id, job_run_id, stream)


def failure_details(stderr: str) -> str:
    """stateDetails of a FAILED run, worded like EMR Serverless's, with the driver's last
    exception lines."""
    exceptions = [line.strip() for line in stderr.splitlines()
                  if re.match(r"\s*[\w.]*(Error|Exception)\b", line)]
    return ("Job failed, please check complete logs in configured logging destination. "
            "Last few exceptions: " + "\n".join(exceptions[-3:]))


def billed_utilization(application: Application, seconds: float) -> Dict[str, float]:
    """The harness's bill for a job run of ``seconds``: every worker of the application's
    initial capacity (workerCount of each worker type, its cpu, memory and disk) for
    max(seconds, MINIMUM_BILLED_SECONDS). AWS meters the workers a run actually uses, and
    bills disk beyond the 20 GB a worker gets for free; the harness bills the whole disk,
    so that every price term shows in a cost."""
    if not application.initial_capacity:
        raise ValueError(f"application {application.name} has no initialCapacity to bill")
    hours = max(seconds, MINIMUM_BILLED_SECONDS) / 3600
    bill = {"vCPUHour": 0.0, "memoryGBHour": 0.0, "storageGBHour": 0.0}
    for capacity in application.initial_capacity.values():
        workers = capacity["workerCount"]
        worker = capacity["workerConfiguration"]
        bill["vCPUHour"] += hours * workers * worker_size(worker["cpu"], "vCPU")
        bill["memoryGBHour"] += hours * workers * worker_size(worker["memory"], "GB")
        bill["storageGBHour"] += hours * workers * worker_size(
            worker.get("disk", DEFAULT_WORKER_DISK), "GB")
    return bill


def worker_size(text: str, unit: str) -> float:
    """4 from "4 vCPU", "4vCPU" or "4"; 16 from "16 GB"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:{})?\s*".format(unit), text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size in {unit}: {text!r}")
    return float(match.group(1))


# -- job runners -------------------------------------------------------------------------

@dataclass
class SubmitParameters:
    """A job run's sparkSubmitParameters, as local Spark takes them."""
    py_files: List[str] = field(default_factory=list)
    conf: Dict[str, str] = field(default_factory=dict)        # for local Spark
    environment: Dict[str, str] = field(default_factory=dict)  # driverEnv and executorEnv

    @classmethod
    def parse(cls, text: str) -> "SubmitParameters":
        parameters = cls()
        tokens = shlex.split(text)
        for option, value in zip(tokens[::2], tokens[1::2]):
            if option == "--py-files":
                parameters.py_files.extend(value.split(","))
            elif option == "--conf":
                parameters.add_conf(*value.split("=", 1))
            else:
                raise ValueError(f"the harness does not play spark-submit's {option} {value}")
        if len(tokens) % 2:
            raise ValueError(f"{tokens[-1]} without a value in {text!r}")
        return parameters

    def add_conf(self, key: str, value: str) -> None:
        for prefix in (DRIVER_ENV, EXECUTOR_ENV):
            if key.startswith(prefix):
                name = key[len(prefix):]
                if name not in ARCHIVE_ENV:
                    self.environment[name] = value
                return
        if not key.startswith(NOT_LOCAL_CONF):
            self.conf[key] = value


class RealJobRunner:
    """Runs a job run's spark-submit on local Spark, as EMR Serverless runs it on its
    workers: entry point, --py-files and arguments from jobDriver.sparkSubmit; driverEnv
    and executorEnv as the job's environment."""

    def __init__(self, moto_url: str, work_dir: Path, credentials: Credentials = Credentials(),
                 timeout_seconds: float = 600):
        self.moto_url = moto_url
        self.work_dir = work_dir
        self.credentials = credentials  # the job runs' execution role
        self.timeout_seconds = timeout_seconds
        self.processes: Dict[str, int] = {}  # job run id → spark-submit's pid and process group

    def __call__(self, application: Application, job_run: JobRun,
                 cancelled: threading.Event) -> StepOutcome:
        job_dir = self.work_dir / job_run.id
        submit = job_run.job_driver["sparkSubmit"]
        parameters = SubmitParameters.parse(submit.get("sparkSubmitParameters", ""))
        entry_point = download_object(self.moto_url, submit["entryPoint"], job_dir, self.credentials)
        py_files = [str(download_object(self.moto_url, uri, job_dir, self.credentials))
                    for uri in parameters.py_files]
        job_args = localize_model_uri(self.moto_url, submit.get("entryPointArguments", []),
                                      job_dir / "model", self.credentials)
        command = [spark_submit(), "--master", "local[2]", "--deploy-mode", "client",
                   *(argument for key, value in parameters.conf.items()
                     for argument in ("--conf", f"{key}={value}")),
                   *(["--py-files", ",".join(py_files)] if py_files else []),
                   str(entry_point), *job_args]
        env = local_spark_env(self.moto_url, self.credentials, parameters.environment)
        return self._run(job_run.id, command, env, cancelled)

    def log_paths(self, job_run_id: str) -> Tuple[Path, Path]:
        """The local files that take the driver's stdout and stderr while it runs."""
        return self.work_dir / job_run_id / "driver.stdout", self.work_dir / job_run_id / "driver.stderr"

    def _run(self, job_run_id: str, command: List[str], env: Dict[str, str],
             cancelled: threading.Event) -> StepOutcome:
        stdout_path, stderr_path = self.log_paths(job_run_id)
        with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
            process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr,
                                       start_new_session=True)
        self.processes[job_run_id] = process.pid
        deadline = time.monotonic() + self.timeout_seconds
        timed_out = False
        while process.poll() is None:
            timed_out = time.monotonic() > deadline
            if cancelled.wait(0.2) or timed_out:
                end_process_group(process)
        note = f"harness: ended after {self.timeout_seconds} s\n" if timed_out else ""
        return StepOutcome(process.returncode == 0, stdout_path.read_text(),
                           stderr_path.read_text() + note)


def end_process_group(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group ``process`` leads (spark-submit's JVM
    and the Python driver it starts), until the whole group is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None and not process_group_alive(process.pid):
                return
            time.sleep(0.1)


def process_group_alive(group_id: int) -> bool:
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    return True


def failing_job(application: Application, job_run: JobRun,
                cancelled: threading.Event) -> StepOutcome:
    return StepOutcome(False, stdout="", stderr=(
        "Traceback (most recent call last):\n  File \"ingest_songs.py\", line 1\n"
        + FAILED_JOB_MARKER + "\n"))


def hanging_job(application: Application, job_run: JobRun,
                cancelled: threading.Event) -> Optional[StepOutcome]:
    return None
