"""docs/emr-serverless.md keeps only commands that work: every `aws` command is an API
operation with options it has, every file it reads exists, `python -m` modules, make
targets and DAG ids exist, and the docker build is the image's own (its build argument
and context)."""
import importlib.util
import re
import shlex
import textwrap
from typing import List

import botocore.session
import pytest

from project_paths import PROJECT_ROOT

DOC = (PROJECT_ROOT / "docs" / "emr-serverless.md").read_text()
FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)
INLINE = re.compile(r"`((?:aws|python -m|make|airflow|docker) [^`\n]+)`")
AWS_GLOBAL_OPTIONS = {"--query", "--output", "--region"}
CLI_CUSTOMIZATIONS = {("s3", "mb"), ("ecr", "get-login-password")}
# Options the AWS CLI adds to an operation (its customizations).
CLI_OPTIONS = {("ec2", "authorize-security-group-ingress"): {
    "--protocol", "--port", "--cidr", "--source-group", "--group-owner"}}
FILLED_FILE = re.compile(r'\$\(fill ([^)]+)\)')


def commands() -> List[List[str]]:
    """Every command of the doc's sh blocks (continuations joined, pipes split) and its
    inline commands, as shell words; ``$(fill FILE)`` stays one word."""
    lines = []
    for language, body in FENCE.findall(DOC):
        if language == "sh":
            lines += textwrap.dedent(body).replace("\\\n", " ").splitlines()
    lines += INLINE.findall(DOC)
    found = []
    for line in lines:
        for part in line.split(" | "):
            if part.strip():
                found.append(shlex.split(FILLED_FILE.sub(r"FILL:\1", part), posix=True))
    return found


def starting(*words: str) -> List[List[str]]:
    return [command for command in commands() if command[:len(words)] == list(words)]


@pytest.mark.parametrize("command", starting("aws"), ids=lambda c: " ".join(c[:3]))
def test_aws_commands_are_operations_with_their_options(command):
    service, operation = command[1:3]
    if (service, operation) in CLI_CUSTOMIZATIONS:
        return
    model = botocore.session.get_session().get_service_model(service)
    operations = {botocore.xform_name(name, "-"): name for name in model.operation_names}
    assert operation in operations, command
    members = {"--" + botocore.xform_name(name, "-")
               for name in model.operation_model(operations[operation]).input_shape.members}
    members |= AWS_GLOBAL_OPTIONS | CLI_OPTIONS.get((service, operation), set())
    options = {token for token in command[3:] if token.startswith("--")}
    assert options <= members, options - members


def test_every_file_a_command_reads_exists():
    files = [token[len("FILL:"):] for command in commands() for token in command
             if token.startswith("FILL:")]
    assert files, "the checklist fills in the repository's policy files"
    for path in files:
        assert (PROJECT_ROOT / path).is_file(), path


def test_modules_make_targets_and_dags_exist():
    for command in starting("python", "-m"):
        assert importlib.util.find_spec(command[2]) is not None, command
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for command in starting("make"):
        assert re.search(rf"^{re.escape(command[1])}:", makefile, re.M), command
    dags = {path.stem for path in (PROJECT_ROOT / "dags").glob("*.py")}
    for command in starting("airflow", "dags"):
        assert command[3] in dags, command


def test_the_docker_build_is_the_images_own():
    [build] = starting("docker", "build")
    dockerfile = PROJECT_ROOT / build[build.index("-f") + 1]
    argument = build[build.index("--build-arg") + 1].split("=")[0]
    assert re.search(rf"^ARG {argument}=", dockerfile.read_text(), re.M)
    assert (PROJECT_ROOT / build[-1] / "requirements-emr.txt").is_file(), build[-1]
    [push] = starting("docker", "push")
    assert push[2] == build[build.index("-t") + 1]
