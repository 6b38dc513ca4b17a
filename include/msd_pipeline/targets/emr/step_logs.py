"""A failed step's logs, fetched from the cluster's LogUri into the Airflow task log.

EMR writes ``<LogUri>/<cluster id>/steps/<step id>/{controller,stderr,stdout}.gz`` and
ships them a few minutes after the step ends, so the fetch waits a bounded time. The
jobs print their JSON summary (or the reason they failed) on stdout, so it comes too."""
import gzip
import time
from typing import Callable, Dict, List, Optional

from msdlib.io.sources import split_s3_uri
from msd_pipeline.targets.emr.layout import join_uri

STEP_LOG_FILES = ("stderr", "stdout", "controller")


def step_log_uris(log_uri: str, cluster_id: str, step_id: str) -> Dict[str, str]:
    prefix = join_uri(log_uri, cluster_id, "steps", step_id)
    return {name: f"{prefix}/{name}.gz" for name in STEP_LOG_FILES}


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def fetch_step_logs(s3_hook, log_uri: str, cluster_id: str, step_id: str, *,
                    wait_seconds: float, poll_seconds: float = 10.0,
                    sleep: Callable[[float], None] = time.sleep) -> Dict[str, Optional[str]]:
    """name → decompressed text (None when it never arrived within ``wait_seconds``)."""
    return fetch_logs(s3_hook, step_log_uris(log_uri, cluster_id, step_id),
                      wait_seconds=wait_seconds, poll_seconds=poll_seconds, sleep=sleep)


def fetch_logs(s3_hook, uris: Dict[str, str], *, wait_seconds: float, poll_seconds: float = 10.0,
               sleep: Callable[[float], None] = time.sleep) -> Dict[str, Optional[str]]:
    """name → decompressed text of each gzip log in ``uris`` (None when it never arrived
    within ``wait_seconds``); also the EMR Serverless driver logs
    (targets/emr_serverless/job_runs.py)."""
    found: Dict[str, Optional[str]] = {name: None for name in uris}
    waited = 0.0
    while True:
        for name, uri in uris.items():
            if found[name] is None:
                found[name] = _read_gz(s3_hook, uri)
        if all(text is not None for text in found.values()) or waited >= wait_seconds:
            return found
        sleep(poll_seconds)
        waited += poll_seconds


def format_step_logs(logs: Dict[str, Optional[str]], uris: Dict[str, str], lines: int) -> List[str]:
    """Log blocks, one per file: its last ``lines`` lines, or where it should have been."""
    blocks = []
    for name, text in logs.items():
        if text is None:
            blocks.append(f"--- {name}: not found at {uris[name]}")
        else:
            blocks.append(f"--- {name} ({uris[name]}, last {lines} lines) ---\n{tail(text, lines)}")
    return blocks


def _read_gz(s3_hook, uri: str) -> Optional[str]:
    bucket, key = split_s3_uri(uri)
    if not s3_hook.check_for_key(key, bucket_name=bucket):
        return None
    data = s3_hook.get_key(key, bucket_name=bucket).get()["Body"].read()
    return gzip.decompress(data).decode("utf-8", errors="replace")
