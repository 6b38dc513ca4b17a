"""Test support for the EMR tests: a moto server in this process, an HTTP server for
song archives (with Range requests and a connection that breaks once), song archives in
the MSD subset's layout, and the driver that advances moto's EMR steps.

moto never moves a step by itself: ``EmrStepDriver`` watches moto's EMR backend (the
server runs in this process) and plays the cluster: it runs each RUNNING step through a
``step_runner``, writes the step's logs to the cluster's LogUri as EMR does, sets the
step COMPLETED or FAILED and starts the next PENDING one.

Where moto 5.2 differs from AWS for the EMR preflight (targets/emr/preflight/), the
harness adapts, never the product:

* Service Quotas serves only the ``vpc`` quotas; ``moto_server`` serves the EC2 Standard
  vCPU quotas as well (``EC2_VCPU_QUOTAS``, an established account's 64; a test lowers
  one with ``ec2_vcpu_quota``). moto has no GetAWSDefaultServiceQuota.
* ``iam SimulatePrincipalPolicy`` and ``emr DescribeReleaseLabel`` are not implemented
  (moto answers 500): the IAM simulation and the release's Spark version are "not
  verified" against moto; their interpretation is unit-tested.
* A new moto account is a new AWS account: default VPC and subnets without the V2 tag,
  no EMR roles. ``prepare_account`` does what docs/emr.md tells a user to do once.
  (moto, like AWS, does not offer m5.xlarge in us-east-1e.)
* moto's RunJobFlow with a subnet creates the ElasticMapReduce-* security groups without
  the V2 tag (EMR tags the groups it creates); no e2e run launches into a subnet.
* Under IAM enforcement moto checks the signature of a request without a body (an EMR
  Serverless GET) over its parsed parameters, so every such call fails with
  SignatureDoesNotMatch; ``moto_server`` has it check the empty body the client signed.
* ``recorded_calls`` reads moto's request recorder (process-wide; its writes are
  serialised here, as the threaded server may record two requests at once).
"""
import base64
import contextlib
import functools
import gzip
import http.server
import io
import json
import os
import re
import socket
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import boto3
from botocore.exceptions import ClientError
from moto.core.utils import utcnow
from moto.emr.models import emr_backends
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.access_control import IAMRequestBase
from moto.iam.models import AWSManagedPolicy, iam_backends
from moto.moto_api import recorder
from moto.moto_api._internal.recorder.models import Recorder
from moto.server import ThreadedMotoServer
from moto.servicequotas.models import ServiceQuotasBackend

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
# Recognisable fake credentials: the tests check that they never leak.
FAKE_ACCESS_KEY = "AKIAMSDTESTKEY000042"
FAKE_SECRET_KEY = "msd-test-aws-secret-0b7e61c3d2"


V2_TAG = "for-use-with-amazon-emr-managed-policies"
SERVICE_ROLE = "EMR_DefaultRole_V2"
V2_SERVICE_POLICY_NAME = "AmazonEMRServicePolicy_v2"
V2_SERVICE_POLICY = "arn:aws:iam::aws:policy/service-role/" + V2_SERVICE_POLICY_NAME
# AWS's name and path; moto would name a service-linked role after the service, so the
# harness creates it as a role.
CLEANUP_ROLE = "AWSServiceRoleForEMRCleanup"
CLEANUP_ROLE_PATH = "/aws-service-role/elasticmapreduce.amazonaws.com/"
INSTANCE_PROFILE = "EMR_EC2_DefaultRole"
# Running On-Demand / All Spot Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs.
EC2_VCPU_QUOTAS = {"L-1216C47A": 64.0, "L-34B43A08": 64.0}


@contextlib.contextmanager
def moto_server(*buckets: str) -> Iterator[str]:
    """A moto server (S3, EMR, Secrets Manager, ...) in this process on 127.0.0.1 and a
    port the OS picks, with ``buckets`` created; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    moto_get_quota = ServiceQuotasBackend.get_service_quota
    ServiceQuotasBackend.get_service_quota = _get_service_quota_with_ec2(moto_get_quota)
    moto_aws_request = IAMRequestBase._create_aws_request
    IAMRequestBase._create_aws_request = _bodyless_requests_signed_as_sent(moto_aws_request)
    try:
        host, port = server.get_host_and_port()
        url = "http://{}:{}".format(host, port)
        for bucket in buckets:
            client("s3", url).create_bucket(Bucket=bucket)
        yield url
    finally:
        ServiceQuotasBackend.get_service_quota = moto_get_quota
        IAMRequestBase._create_aws_request = moto_aws_request
        server.stop()


def _bodyless_requests_signed_as_sent(moto_aws_request):
    """moto 5.2 checks the signature of a request without a body (EMR Serverless's
    GetApplication, StartApplication, ...) over its parsed parameters as if they were the
    body, so under IAM enforcement every such call fails with SignatureDoesNotMatch; AWS
    signs the empty body the client sent."""
    def create_aws_request(iam_request):
        # Query-protocol calls carry a form body moto parsed into _data: as they are.
        form = "x-www-form-urlencoded" in iam_request._headers.get("Content-Type", "")
        if iam_request._body or form:
            return moto_aws_request(iam_request)
        parsed, iam_request._data = iam_request._data, b""
        try:
            return moto_aws_request(iam_request)
        finally:
            iam_request._data = parsed
    return create_aws_request


def _get_service_quota_with_ec2(moto_get_quota):
    def get_service_quota(backend, service_code: str, quota_code: str) -> Dict[str, Any]:
        if service_code == "ec2" and quota_code in EC2_VCPU_QUOTAS:
            return {"ServiceCode": "ec2", "QuotaCode": quota_code, "Value": EC2_VCPU_QUOTAS[quota_code],
                    "Unit": "None", "Adjustable": True, "GlobalQuota": False}
        return moto_get_quota(backend, service_code, quota_code)
    return get_service_quota


@contextlib.contextmanager
def ec2_vcpu_quota(quota_code: str, value: float) -> Iterator[None]:
    before = EC2_VCPU_QUOTAS[quota_code]
    EC2_VCPU_QUOTAS[quota_code] = value
    try:
        yield
    finally:
        EC2_VCPU_QUOTAS[quota_code] = before


def aws_connection(endpoint_url: str, credentials: "Credentials") -> str:
    """An Airflow ``aws`` connection (JSON) with ``credentials``, pointed at moto."""
    return json.dumps({"conn_type": "aws", "login": credentials.access_key,
                       "password": credentials.secret_key,
                       "extra": {"region_name": REGION, "endpoint_url": endpoint_url}})


def download_prefix(endpoint_url: str, uri: str, target: Path,
                    credentials: Optional["Credentials"] = None) -> Path:
    """Every object below the s3:// folder ``uri`` into ``target`` (same relative paths).
    Spark from pip has no s3:// filesystem (EMR's EMRFS has): a job gets a local copy."""
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    s3 = client("s3", endpoint_url, credentials or Credentials())
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                             Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            local = target / item["Key"][len(prefix.rstrip("/")) + 1:]
            local.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(local))
    return target


def download_object(endpoint_url: str, uri: str, target_dir: Path,
                    credentials: Optional["Credentials"] = None) -> Path:
    """The s3:// object ``uri`` into ``target_dir``, under its own file name."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    target = target_dir / key.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    client("s3", endpoint_url, credentials or Credentials()).download_file(bucket, key, str(target))
    return target


def localize_model_uri(endpoint_url: str, job_args: List[str], target_dir: Path,
                       credentials: Optional["Credentials"] = None) -> List[str]:
    """Harness adaptation: imputation's ``--model-uri s3://...`` as a local copy in
    ``target_dir`` (Spark from pip has no s3:// filesystem; EMR's EMRFS reads the URI itself)."""
    if "--model-uri" not in job_args:
        return list(job_args)
    at = job_args.index("--model-uri") + 1
    local = download_prefix(endpoint_url, job_args[at], target_dir, credentials)
    return [*job_args[:at], str(local), *job_args[at + 1:]]


def spark_submit() -> str:
    """pyspark's own spark-submit."""
    return os.path.join(os.path.dirname(__import__("pyspark").__file__), "bin", "spark-submit")


def local_spark_env(endpoint_url: str, credentials: "Credentials",
                    exported: Dict[str, str]) -> Dict[str, str]:
    """The environment of a job on local Spark as an EMR node gives it: AWS via the node's
    role (here: moto) plus what the cluster exports to Spark's processes, never this
    process's MSD_MONGO_URI. Harness adaptation: PYSPARK_PYTHON stays this interpreter,
    since EMR's Python environments (the bootstrap's virtual environment, a dependency
    archive) exist on EMR only."""
    env = {key: value for key, value in os.environ.items() if key != "MSD_MONGO_URI"}
    env.update(aws_env(endpoint_url, credentials))
    env.update(exported)
    env["PYSPARK_PYTHON"] = sys.executable
    return env


def prepare_account(endpoint_url: str) -> None:
    """What docs/emr.md has a user do once per account: the V2 tag on the default VPC and
    its subnets, the service role with AmazonEMRServicePolicy_v2, the service-linked
    cleanup role and the instance profile (with its role). Idempotent: moto's accounts
    live as long as this process, across moto servers."""
    ec2, iam = client("ec2", endpoint_url), client("iam", endpoint_url)
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    ec2.create_tags(Resources=[vpc["VpcId"], *(subnet["SubnetId"] for subnet in subnets)],
                    Tags=[{"Key": V2_TAG, "Value": "true"}])
    for role, service, path in ((SERVICE_ROLE, "elasticmapreduce", "/"),
                                (INSTANCE_PROFILE, "ec2", "/"),
                                (CLEANUP_ROLE, "elasticmapreduce", CLEANUP_ROLE_PATH)):
        _unless_exists(iam.create_role, RoleName=role, Path=path,
                       AssumeRolePolicyDocument=json.dumps({
                           "Version": "2012-10-17", "Statement": [{
                               "Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"Service": f"{service}.amazonaws.com"}}]}))
    _load_aws_managed_policy(V2_SERVICE_POLICY_NAME)
    iam.attach_role_policy(RoleName=SERVICE_ROLE, PolicyArn=V2_SERVICE_POLICY)
    _unless_exists(iam.create_instance_profile, InstanceProfileName=INSTANCE_PROFILE)
    if not iam.get_instance_profile(InstanceProfileName=INSTANCE_PROFILE)["InstanceProfile"]["Roles"]:
        iam.add_role_to_instance_profile(InstanceProfileName=INSTANCE_PROFILE,
                                         RoleName=INSTANCE_PROFILE)


def _unless_exists(create: Callable[..., Any], **kwargs: Any) -> None:
    try:
        create(**kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] != "EntityAlreadyExists":
            raise


def _load_aws_managed_policy(name: str) -> None:
    """moto loads AWS's managed policies only with MOTO_IAM_LOAD_MANAGED_POLICIES set when an
    account's IAM starts (slow, and process-wide): the harness adds the one the docs attach."""
    backend = iam_backends[ACCOUNT_ID]["global"]
    policy = AWSManagedPolicy.from_data(name, ACCOUNT_ID, backend.region_name,
                                        json.loads(aws_managed_policies_data)[name])
    backend.managed_policies.setdefault(policy.arn, policy)


@dataclass(frozen=True)
class RecordedCall:
    access_key: str
    action: str  # IAM action name, e.g. "s3:GetObject"


def calls_by_principal(calls: List["RecordedCall"], principals: Dict[str, str]) -> Dict[str, set]:
    """The IAM actions each principal (by access key) called."""
    called: Dict[str, set] = {principal: set() for principal in principals.values()}
    for call in calls:
        if call.access_key in principals:
            called[principals[call.access_key]].add(call.action)
    return called


def assert_calls_in_table(called: Dict[str, set], actions_of: Callable[[str], Any]) -> None:
    """Every action each principal called is in its action table (``actions_of``)."""
    for principal, names in called.items():
        table = {action.name for action in actions_of(principal)}
        assert names <= table, f"{principal} called actions the table lacks: {names - table}"


@contextlib.contextmanager
def recorded_calls(path: Path) -> Iterator[List[RecordedCall]]:
    """The AWS calls moto served inside the block, as IAM actions (filled in at exit)."""
    calls: List[RecordedCall] = []
    lock = threading.Lock()
    moto_record = Recorder._record_request

    def record_one_at_a_time(self, *args: Any, **kwargs: Any) -> None:
        with lock:
            moto_record(self, *args, **kwargs)

    recorder._location = str(path)  # moto reads MOTO_RECORDER_FILEPATH at import only
    recorder.reset_recording()
    Recorder._record_request = record_one_at_a_time
    recorder.start_recording()
    try:
        yield calls
    finally:
        recorder.stop_recording()
        Recorder._record_request = moto_record
    for line in path.read_text().splitlines():
        call = _recorded_call(json.loads(line))
        if call:
            calls.append(call)


def _recorded_call(entry: Dict[str, Any]) -> Optional[RecordedCall]:
    """Service from the signature's credential scope, action from X-Amz-Target (JSON
    protocols), the Action parameter (query protocols) or, for S3, method and path as
    moto's S3 authorisation maps them."""
    from urllib.parse import parse_qs, urlsplit

    headers = {key.lower(): value for key, value in entry["headers"].items()}
    authorization = headers.get("authorization", "")
    if "Credential=" not in authorization:
        return None  # moto's own API (reset-auth, ...)
    scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    access_key, service = scope[0], scope[3]
    url = urlsplit(entry["url"])
    if service == "s3":
        return RecordedCall(access_key, "s3:" + _s3_action(entry["method"], url.path, url.query))
    if "x-amz-target" in headers:
        return RecordedCall(access_key, f"{service}:{headers['x-amz-target'].split('.')[-1]}")
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    action = (parse_qs(body).get("Action") or parse_qs(url.query).get("Action")
              or [_rest_action(service, entry["method"], url.path)])[0]
    return RecordedCall(access_key, f"{service}:{action}")


@functools.lru_cache(maxsize=None)
def _rest_operations(service: str) -> List[Tuple[str, "re.Pattern[str]", str]]:
    """(method, path pattern, operation) of a REST service, most literal paths first."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    operations = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        path = http["requestUri"].split("?")[0]
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))
        operations.append((http["method"], re.compile(pattern + "/?$"), name))
    return sorted(operations, key=lambda op: op[1].pattern.count("[^/]+"))


def _rest_action(service: str, method: str, path: str) -> str:
    """The operation of a REST-JSON request (EMR Serverless), by botocore's method and path."""
    return next((name for op_method, pattern, name in _rest_operations(service)
                 if op_method == method and pattern.match(path)), "?")


def _s3_action(method: str, path: str, query: str) -> str:
    from urllib.parse import parse_qs

    from moto.s3.responses import ACTION_MAP

    kind = "KEY" if "/" in path.strip("/") else "BUCKET"
    actions = ACTION_MAP[kind][method]
    params = parse_qs(query, keep_blank_values=True)
    action = next((name for param, name in actions.items() if param in params), None) \
        or actions["DEFAULT"]
    return {"HeadBucket": "ListBucket"}.get(action, action)  # AWS: HeadBucket needs ListBucket


@dataclass(frozen=True)
class Credentials:
    access_key: str = FAKE_ACCESS_KEY
    secret_key: str = FAKE_SECRET_KEY


def aws_env(endpoint_url: str, credentials: Credentials = Credentials()) -> Dict[str, str]:
    """boto3's default configuration pointed at moto (for code running without Airflow)."""
    return {"AWS_ENDPOINT_URL": endpoint_url, "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key, "AWS_DEFAULT_REGION": REGION}


def client(service: str, endpoint_url: str, credentials: Credentials = Credentials()):
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION,
                        aws_access_key_id=credentials.access_key,
                        aws_secret_access_key=credentials.secret_key)


# -- moto's IAM enforcement ----------------------------------------------------------------------

def set_iam_enforcement(endpoint_url: str, on: bool) -> None:
    """Moto's INITIAL_NO_AUTH_ACTION_COUNT through its API: 0 checks every request from now
    on against the caller's IAM policies, infinity checks none. Process-wide."""
    import urllib.request

    count = b"0" if on else b"inf"
    urllib.request.urlopen(urllib.request.Request(
        endpoint_url + "/moto-api/reset-auth", data=count, method="POST",
        headers={"Content-Type": "text/plain"}), timeout=30).read()


@contextlib.contextmanager
def iam_enforced(endpoint_url: str) -> Iterator[None]:
    """Moto's IAM enforcement on inside the block."""
    set_iam_enforcement(endpoint_url, True)
    try:
        yield
    finally:
        set_iam_enforcement(endpoint_url, False)


def iam_user(endpoint_url: str, name: str, policy: Dict[str, Any]) -> Credentials:
    """An IAM user holding ``policy`` inline; returns its access key (call with
    enforcement off)."""
    iam = client("iam", endpoint_url)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name + "-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def replace_user_policy(endpoint_url: str, name: str, policy: Dict[str, Any]) -> None:
    client("iam", endpoint_url).put_user_policy(UserName=name, PolicyName=name + "-policy",
                                                PolicyDocument=json.dumps(policy))


def mongo_user_uri(mongo_uri: str, user: str, password: str) -> str:
    """``mongodb://user:password@host`` of the server at ``mongo_uri``, the user created
    (root, in ``admin``) if missing: the test server reached like a real deployment."""
    import pymongo

    admin = pymongo.MongoClient(mongo_uri)
    try:
        if not admin.admin.command("usersInfo", user)["users"]:
            admin.admin.command("createUser", user, pwd=password, roles=["root"])
    finally:
        admin.close()
    host = mongo_uri.split("://", 1)[1].strip("/")
    return "mongodb://{}:{}@{}".format(user, password, host)


# -- song archives over HTTP -------------------------------------------------------------

def make_song_archive(songs_dir: Path, top: str = "MillionSongSubset/data") -> bytes:
    """A .tar.gz of ``songs_dir`` (an X/Y/Z tree) laid out like the MSD subset archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(str(songs_dir), arcname=top)
        archive.addfile(tarfile.TarInfo("MillionSongSubset/README.txt"), io.BytesIO(b""))
    return buffer.getvalue()


@dataclass
class ServedFile:
    data: bytes
    break_after: Optional[int] = None  # drop the first full-body connection after N bytes
    range_requests: int = 0


class ArchiveServer:
    """Serves ``files`` (path → ServedFile) on 127.0.0.1, honouring ``Range: bytes=N-``."""

    def __init__(self, files: Dict[str, ServedFile]):
        self.files = files
        handler = self._handler()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return "http://127.0.0.1:{}{}".format(self.httpd.server_address[1], path)

    def __enter__(self) -> "ArchiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                served = files.get(self.path)
                if served is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    served.range_requests += 1
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                body = served.data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if served.break_after is not None and not start:
                    self.wfile.write(body[:served.break_after])
                    served.break_after = None
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


# -- driving moto's EMR steps ------------------------------------------------------------------

@dataclass
class StepOutcome:
    succeeded: bool
    stdout: str = ""
    stderr: str = ""


StepRunner = Callable[[Any, Any], Optional[StepOutcome]]  # (cluster, step) → outcome; None: hang


class PollingDriver(threading.Thread):
    """A thread that plays an AWS service for moto: ``_advance`` every ``poll_seconds``
    until ``stop``; what it raises is collected in ``errors`` for the test to surface."""

    def __init__(self, poll_seconds: float):
        super().__init__(daemon=True)
        self.poll_seconds = poll_seconds
        self.errors: List[BaseException] = []
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._advance()
            except BaseException as exc:  # surfaced by the test through .errors
                self.errors.append(exc)
            self._stopping.wait(self.poll_seconds)

    def _advance(self) -> None:
        raise NotImplementedError


class EmrStepDriver(PollingDriver):
    """Plays EMR for moto: runs RUNNING steps with ``step_runner``, writes their logs to
    LogUri, completes or fails them, starts PENDING ones."""

    def __init__(self, endpoint_url: str, step_runner: StepRunner, poll_seconds: float = 0.2,
                 credentials: Credentials = Credentials()):
        super().__init__(poll_seconds)
        self.endpoint_url = endpoint_url
        self.credentials = credentials  # the log pusher's: the cluster's instance profile
        self.earlier_clusters = set(emr_backends[ACCOUNT_ID][REGION].clusters)  # not played
        self.step_runner = step_runner
        self.handled: List[str] = []

    def _advance(self) -> None:
        backend = emr_backends[ACCOUNT_ID][REGION]
        for cluster in list(backend.clusters.values()):
            if cluster.id in self.earlier_clusters or cluster.state not in ("RUNNING", "WAITING"):
                continue
            running = [step for step in cluster.steps if step.state == "RUNNING"]
            if not running:
                pending = [step for step in cluster.steps if step.state == "PENDING"]
                if pending:
                    pending[0].state = "RUNNING"
                    pending[0].start()
                continue
            step = running[0]
            if step.id in self.handled:
                continue
            self.handled.append(step.id)
            outcome = self.step_runner(cluster, step)
            if outcome is None:
                continue  # the step hangs (sensor timeout scenario)
            self._write_logs(cluster, step, outcome)
            if cluster.state in ("RUNNING", "WAITING"):
                step.state = "COMPLETED" if outcome.succeeded else "FAILED"
                step.end_date_time = utcnow()

    def _write_logs(self, cluster: Any, step: Any, outcome: StepOutcome) -> None:
        bucket, _, prefix = cluster.log_uri[len("s3://"):].partition("/")
        s3 = client("s3", self.endpoint_url, self.credentials)
        base = "{}{}/steps/{}/".format(prefix, cluster.id, step.id)
        controller = "INFO startExec '{}'\nINFO exit {}\n".format(
            " ".join(step.args), 0 if outcome.succeeded else 1)
        for name, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr),
                           ("controller", controller)):
            s3.put_object(Bucket=bucket, Key=base + name + ".gz",
                          Body=gzip.compress(text.encode("utf-8")))


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.2)


# -- reading a finished `airflow dags test` run from its AIRFLOW_HOME ---------------------------

def metadata_db_path(airflow_env: Dict[str, str]) -> Path:
    url = airflow_env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db"


def _query(airflow_env: Dict[str, str], sql: str, params=()) -> List[tuple]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(str(metadata_db_path(airflow_env)))) as db:
        return db.execute(sql, params).fetchall()


def latest_run(dag_id: str, airflow_env: Dict[str, str]) -> tuple:
    """(run_id, state) of the DAG's newest run."""
    return _query(airflow_env, "SELECT run_id, state FROM dag_run WHERE dag_id = ? "
                               "ORDER BY id DESC LIMIT 1", (dag_id,))[0]


def task_states(dag_id: str, run_id: str, airflow_env: Dict[str, str]) -> Dict[str, str]:
    rows = _query(airflow_env, "SELECT task_id, state FROM task_instance "
                               "WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
    return dict(rows)


def metadata_db_text(airflow_env: Dict[str, str]) -> Dict[str, str]:
    """Every table of the metadata DB as text (XCom, rendered fields, logs, ...)."""
    tables = [row[0] for row in _query(airflow_env, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {table: repr(_query(airflow_env, 'SELECT * FROM "{}"'.format(table))) for table in tables}


def task_log_text(airflow_env: Dict[str, str], dag_id: str, run_id: str) -> Dict[str, str]:
    """path → text of every task log file of one DAG run (the Airflow home is shared by
    the test session)."""
    logs = Path(airflow_env["AIRFLOW_HOME"]) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    return {str(path): path.read_text(errors="replace")
            for path in sorted(logs.rglob("*")) if path.is_file()}
