"""docs/emr.md keeps only commands that work: every command in it (code blocks and inline
code) is either run here or verified by the preflight.

* ``AIRFLOW_CONN_*`` exports and ``airflow connections add``: Airflow parses them, the
  conn type is the one the hooks accept, and the Mongo ones become the URI the pipeline
  hands to the jobs (``msd_pipeline.connections.mongo_uri_from_connection``), with
  ``mongodb+srv://`` when the extra says ``srv``;
* other ``airflow`` commands parse with Airflow's own CLI parser; a task regex names one
  task of the EMR DAG, and every task id the text cites exists;
* ``python -m`` modules and ``make`` targets exist;
* each ``aws`` command is an operation botocore knows, with options of its input, and
  its effect is verified by a preflight check named in ``PREFLIGHT_VERIFIES`` (a command
  missing from that table fails), whose names are the rows of the doc's preflight table,
  or is one of the image commands of ``IMAGE_COMMANDS``, which fail at once by themselves;
* ``docker`` commands build the repository's Dockerfile with its own build arguments and
  the configured release, push what they built, and log in to the registry pushed to.
Offline: building the DAG touches no connection, botocore validates without a call.
"""
import dataclasses
import importlib.util
import json
import re
import shlex
import textwrap
import tomllib
from functools import lru_cache
from typing import Dict, List, Set, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

import botocore
import botocore.session
import pytest

from msdlib.config import from_dict, load_config
from msd_pipeline import registry
from msd_pipeline.connections import mongo_uri_from_connection
from msd_pipeline.graph import build_pipeline_dag
from msd_pipeline.targets.emr.target import EmrTarget
from project_paths import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "emr.md"
DAG_ID = "msd_emr_pipeline"
FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)
BLOCK_LANGUAGES = {"sh", "toml", "json"}
INLINE_CODE = re.compile(r"`([^`\n]+)`")
COMMAND_STARTS = ("aws ", "airflow ", "python -m ", "make ", "export ", "docker ")
TASK_ID = re.compile(r"(?<![\w.<])((?:cluster|stage|spark|model|report)\.[a-z_]+|prepare_run"
                     r"|terminate_cluster|teardown_succeeded)(?![\w.<])")
PREFLIGHT_SECTION = "### What the preflight checks"

# The preflight's CLI, beside the target in the EMR package.
PREFLIGHT_MODULE = EmrTarget.__module__.rsplit(".", 1)[0] + ".preflight"
CONN_TYPES = {"mongo_default": "mongo", "aws_default": "aws"}
# Typed placeholders get a value of their type before Airflow's parser sees them.
TYPED_PLACEHOLDERS = {"LOGICAL_DATE": "2026-11-05T00:00:00+00:00"}
# Local tools a pipeline may end in: they read stdin and change nothing.
LOCAL_TOOLS = {"gunzip"}
# Variables the code reads, and what it makes of them.
ENV_READ_BY_CODE = {registry.TRACKING_URI_ENV: registry.tracking_uri}

# The preflight check (a row of the doc's preflight table) verifying each aws command's
# effect: the state it creates, or the permission a read-only command needs.
S3_ROOT = "s3 root"
EMR_ROLES = "emr roles"
IAM_AIRFLOW = "iam airflow principal"
IAM_INSTANCE_PROFILE = "iam instance profile"
RELEASE = "emr release"
RELEASE_SPARK = "emr release spark"
NETWORK = "network tags"
INSTANCE_TYPES = "instance types offered"
QUOTA = "vcpu quota"
PREFLIGHT_VERIFIES = {
    ("iam", "create-role"): EMR_ROLES,
    ("iam", "attach-role-policy"): EMR_ROLES,
    ("iam", "create-service-linked-role"): EMR_ROLES,
    ("iam", "create-instance-profile"): EMR_ROLES,
    ("iam", "add-role-to-instance-profile"): EMR_ROLES,
    ("iam", "put-role-policy"): IAM_INSTANCE_PROFILE,
    ("iam", "create-policy"): IAM_AIRFLOW,
    ("iam", "attach-user-policy"): IAM_AIRFLOW,
    ("iam", "simulate-principal-policy"): IAM_AIRFLOW,
    ("emr", "describe-cluster"): IAM_AIRFLOW,
    ("emr", "terminate-clusters"): IAM_AIRFLOW,
    ("emr", "list-release-labels"): RELEASE,
    ("emr", "describe-release-label"): RELEASE_SPARK,
    ("ec2", "describe-instance-type-offerings"): INSTANCE_TYPES,
    ("service-quotas", "get-service-quota"): QUOTA,
    ("service-quotas", "request-service-quota-increase"): QUOTA,
    ("ec2", "describe-subnets"): NETWORK,
    ("ec2", "describe-security-groups"): NETWORK,
    ("ec2", "create-tags"): NETWORK,
    ("ec2", "describe-tags"): NETWORK,
    ("ec2", "describe-vpcs"): NETWORK,
    ("s3", "ls"): S3_ROOT,
    ("s3", "cp"): S3_ROOT,
}
# The image's ECR commands (*Container images*): no preflight check verifies them, and
# each one's failure shows at once, in the command that follows it.
IMAGE_COMMANDS = {
    ("ecr", "create-repository"): "docker push fails without the repository",
    ("ecr", "set-repository-policy"): "EMR Serverless cannot pull: CreateApplication fails",
    ("ecr", "get-login-password"): "docker login fails without the password",
}
# AWS CLI commands that are no API operation of their own (the CLI's customizations).
CLI_CUSTOMIZATIONS = {("s3", "ls"), ("s3", "cp"), ("emr", "terminate-clusters"),
                      ("ecr", "get-login-password")}
AWS_GLOBAL_OPTIONS = {"--query", "--output", "--region", "--profile", "--max-items"}


# -- extraction ----------------------------------------------------------------------------
@lru_cache(maxsize=None)
def doc_text() -> str:
    return DOC.read_text()


def code_blocks() -> List[Tuple[str, str]]:
    """(language, body) of every fenced block, list indentation removed."""
    return [(language, textwrap.dedent(body)) for language, body in FENCE.findall(doc_text())]


def block_commands(body: str) -> List[str]:
    """A shell block's commands, continuation lines joined."""
    return [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def prose_without_blocks() -> str:
    return FENCE.sub("", doc_text())


def inline_commands() -> List[str]:
    return [code for code in INLINE_CODE.findall(prose_without_blocks())
            if code.startswith(COMMAND_STARTS)]


@lru_cache(maxsize=None)
def commands() -> Tuple[Tuple[str, ...], ...]:
    """Every simple command of the doc as tokens (a pipeline split at ``|``)."""
    lines = [command for language, body in code_blocks() if language == "sh"
             for command in block_commands(body)] + inline_commands()
    simple = []
    for line in lines:
        current: List[str] = []
        for token in shlex.split(line):
            if token == "|":
                simple.append(tuple(current))
                current = []
            else:
                current.append(token)
        simple.append(tuple(current))
    return tuple(simple)


def commands_starting(*words: str) -> List[Tuple[str, ...]]:
    return [command for command in commands() if command[:len(words)] == words]


def env_assignments() -> List[Tuple[str, str]]:
    """(name, value) of the ``export NAME=value`` commands."""
    assignments = []
    for command in commands_starting("export"):
        assert len(command) == 2 and "=" in command[1], command
        assignments.append(tuple(command[1].split("=", 1)))
    return assignments


def preflight_table_checks() -> Set[str]:
    section = doc_text().split(PREFLIGHT_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return {row.split("|")[1].strip() for row in rows[1:]}


# -- building connections as Airflow does -----------------------------------------------------
def connection_from_env(monkeypatch, name: str, value: str):
    from airflow.secrets.environment_variables import EnvironmentVariablesBackend

    monkeypatch.setenv(name, value)
    return EnvironmentVariablesBackend().get_connection(name[len("AIRFLOW_CONN_"):].lower())


def connection_from_cli(command: Tuple[str, ...]):
    """The Connection ``airflow connections add`` stores for ``--conn-uri`` or
    ``--conn-json`` (the forms the doc uses), as that command builds it."""
    from airflow.models import Connection

    args = airflow_cli_args(command)
    if args.conn_uri:
        return Connection(conn_id=args.conn_id, uri=args.conn_uri)
    assert args.conn_json, f"use --conn-uri or --conn-json: {command}"
    return Connection.from_json(conn_id=args.conn_id, value=args.conn_json)


def airflow_cli_args(command: Tuple[str, ...]):
    from airflow.cli.cli_parser import get_parser

    return get_parser().parse_args([TYPED_PLACEHOLDERS.get(token, token)
                                    for token in command[1:]])


def doc_connections(monkeypatch) -> List[object]:
    connections = [connection_from_env(monkeypatch, name, value)
                   for name, value in env_assignments() if name.startswith("AIRFLOW_CONN_")]
    return connections + [connection_from_cli(command)
                          for command in commands_starting("airflow", "connections", "add")]


def assert_pipeline_uri(connection, monkeypatch) -> str:
    """The URI ship_code puts into the run's secret, checked part by part."""
    probe = "AIRFLOW_CONN_MSD_DOCS_PROBE"
    monkeypatch.setenv(probe, connection.as_json())
    uri = mongo_uri_from_connection("msd_docs_probe")
    parts = urlsplit(uri)
    extras = dict(connection.extra_dejson)
    srv = extras.pop("srv", False)
    assert parts.scheme == ("mongodb+srv" if srv else "mongodb"), uri
    assert (parts.hostname, parts.port) == (connection.host, connection.port), uri
    assert (unquote(parts.username), unquote(parts.password)) == (
        connection.login, connection.password), uri
    expected = {key: str(value).lower() if isinstance(value, bool) else str(value)
                for key, value in extras.items()}
    assert dict(parse_qsl(parts.query)) == expected, uri
    return uri


# -- the DAG the commands and the text name ---------------------------------------------------
@lru_cache(maxsize=None)
def emr_task_ids() -> Set[str]:
    """Task ids of the EMR DAG, with and without the approval branch."""
    config = load_config()
    approval = dataclasses.replace(config, retraining=dataclasses.replace(
        config.retraining, require_approval=True))
    return {task.task_id for variant in (config, approval)
            for task in build_pipeline_dag(DAG_ID, EmrTarget(variant), description="docs",
                                           config=variant).tasks}


# -- aws commands ------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def botocore_operations(service: str) -> Dict[str, object]:
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name, "-"): model.operation_model(name)
            for name in model.operation_names}


def aws_commands() -> List[Tuple[str, ...]]:
    return commands_starting("aws")


# -- tests -------------------------------------------------------------------------------------
def test_the_doc_has_commands_of_every_kind_this_test_checks():
    kinds = {command[0] for command in commands()}
    assert {"aws", "airflow", "python", "make", "export"} <= kinds
    assert {name for name, _ in env_assignments()} >= {
        "AIRFLOW_CONN_MONGO_DEFAULT", "AIRFLOW_CONN_AWS_DEFAULT", registry.TRACKING_URI_ENV}


def test_every_code_block_says_its_language_and_parses():
    for language, body in code_blocks():
        assert language in BLOCK_LANGUAGES, f"untagged or unknown block: {body[:80]!r}"
        if language == "toml":
            from_dict(tomllib.loads(body))  # unknown [emr] keys raise
        elif language == "json":
            json.loads(body)


def test_every_command_is_of_a_kind_this_test_checks():
    checked = {"aws", "airflow", "python", "make", "export", "docker"} | LOCAL_TOOLS
    for command in commands():
        assert command[0] in checked, command
        assert command[0] != "python" or command[1] == "-m", command


def test_mongo_connections_have_the_mongo_type_and_become_the_pipeline_uri(monkeypatch):
    mongo = [connection for connection in doc_connections(monkeypatch)
             if connection.conn_id == "mongo_default"]
    schemes = set()
    for connection in mongo:
        assert connection.conn_type == CONN_TYPES["mongo_default"], connection.get_uri()
        schemes.add(urlsplit(assert_pipeline_uri(connection, monkeypatch)).scheme)
    # Both forms stay documented: a host with a port, and an Atlas SRV name.
    assert schemes == {"mongodb", "mongodb+srv"}


def test_every_connection_has_the_type_its_hook_accepts(monkeypatch):
    connections = doc_connections(monkeypatch)
    assert {connection.conn_id for connection in connections} == set(CONN_TYPES)
    for connection in connections:
        assert connection.conn_type == CONN_TYPES[connection.conn_id], connection.conn_id
    aws = [connection for connection in connections if connection.conn_id == "aws_default"]
    assert all(connection.extra_dejson.get("region_name") for connection in aws)


def test_a_mongodb_scheme_uri_is_the_type_the_hook_refuses(monkeypatch):
    """Why the doc writes mongo://: Airflow takes the type from the scheme."""
    from airflow.exceptions import AirflowConfigException
    from airflow.providers.mongo.hooks.mongo import MongoHook

    connection = connection_from_env(monkeypatch, "AIRFLOW_CONN_MSD_DOCS_WRONG",
                                     "mongodb://msd:pw@mongo.internal.example:27017/")
    assert connection.conn_type == "mongodb"
    with pytest.raises(AirflowConfigException):
        MongoHook(mongo_conn_id="msd_docs_wrong")


def test_environment_variables_are_ones_the_code_reads(monkeypatch):
    for name, value in env_assignments():
        if name.startswith("AIRFLOW_CONN_"):
            continue
        assert name in ENV_READ_BY_CODE, name
        monkeypatch.setenv(name, value)
        assert ENV_READ_BY_CODE[name]() == value


def test_airflow_commands_parse_with_airflow_s_own_cli():
    for command in commands_starting("airflow"):
        args = airflow_cli_args(command)  # an unknown flag exits the parser
        if getattr(args, "dag_id", None):
            assert args.dag_id == DAG_ID, command


def test_cleared_task_selectors_name_one_task_of_the_emr_dag():
    """Airflow 3.3's ``tasks clear -t`` keeps the tasks whose id contains the value
    (``SerializedDAG.partial_subset``), whatever the option's name says."""
    clears = commands_starting("airflow", "tasks", "clear")
    assert clears
    for command in clears:
        args = airflow_cli_args(command)
        matched = [task for task in emr_task_ids() if args.task_regex in task]
        assert len(matched) == 1, (args.task_regex, matched)
        assert args.downstream and not args.only_failed, command


def test_every_task_id_the_doc_names_is_a_task_of_the_emr_dag():
    cited = set(TASK_ID.findall(doc_text()))
    assert "cluster.preflight" in cited
    assert sorted(cited - emr_task_ids()) == []


def test_python_modules_and_make_targets_exist():
    modules = [command[2] for command in commands_starting("python", "-m")]
    assert PREFLIGHT_MODULE in modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for command in commands_starting("make"):
        for target in command[1:]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


def test_every_aws_command_is_verified_by_a_preflight_check():
    used = set()
    for command in aws_commands():
        key = tuple(command[1:3])
        if key in IMAGE_COMMANDS:
            continue
        assert key in PREFLIGHT_VERIFIES, (
            f"{' '.join(command[:3])}: name the preflight check verifying its effect in "
            "PREFLIGHT_VERIFIES, or leave the command out of docs/emr.md")
        used.add(key)
    assert set(PREFLIGHT_VERIFIES) == used, "rows for commands the doc no longer has"
    assert set(PREFLIGHT_VERIFIES.values()) <= preflight_table_checks()


def test_aws_commands_are_operations_with_their_options():
    for command in aws_commands():
        service, operation = command[1:3]
        options = {token for token in command[3:] if token.startswith("--")}
        for token in command[3:]:
            if token.startswith("file://"):
                assert (PROJECT_ROOT / token[len("file://"):]).is_file(), token
        if (service, operation) in CLI_CUSTOMIZATIONS:
            continue
        operations = botocore_operations(service)
        assert operation in operations, command
        members = {"--" + botocore.xform_name(name, "-")
                   for name in operations[operation].input_shape.members}
        assert options - AWS_GLOBAL_OPTIONS <= members, (command, options - members)


def docker_options(command: Tuple[str, ...]) -> Tuple[Dict[str, List[str]], List[str]]:
    """A docker command's options (each with its values) and its positional arguments."""
    options: Dict[str, List[str]] = {}
    positional: List[str] = []
    tokens = iter(command[2:])
    for token in tokens:
        if token in ("--password-stdin",):
            options[token] = []
        elif token.startswith("-"):
            options.setdefault(token, []).append(next(tokens))
        else:
            positional.append(token)
    return options, positional


def test_docker_commands_build_the_repositorys_image_and_push_what_they_built():
    builds = commands_starting("docker", "build")
    assert builds and {command[1] for command in commands_starting("docker")} == {
        "build", "push", "login"}
    built = set()
    for command in builds:
        options, (context,) = docker_options(command)
        (dockerfile,) = options["-f"]
        text = (PROJECT_ROOT / dockerfile).read_text()
        declared = set(re.findall(r"^ARG (\w+)", text, re.M))
        arguments = dict(value.split("=", 1) for value in options["--build-arg"])
        assert set(arguments) <= declared, (command, declared)
        assert arguments["EMR_RELEASE"] == load_config().emr.release_label
        assert (PROJECT_ROOT / context).is_dir(), context
        built.update(options["-t"])
    pushed = {docker_options(command)[1][0] for command in commands_starting("docker", "push")}
    assert pushed and pushed <= built
    logins = commands_starting("docker", "login")
    registries = {image.split("/", 1)[0] for image in pushed}
    for command in logins:
        options, (registry,) = docker_options(command)
        assert options["--username"] == ["AWS"] and "--password-stdin" in options
        assert registry in registries
    assert registries <= {docker_options(command)[1][0] for command in logins}
