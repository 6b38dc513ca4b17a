"""docker/emr-serverless/Dockerfile: built from the EMR Serverless Spark base image of
emr.release_label, installing exactly include/emr/requirements-emr.txt (the pin set of the
bootstrap and the dependency archive) into EMR 7's Python, and ending as hadoop:hadoop as
AWS requires of custom images. Read offline: no Docker engine needed."""
import json
import re
import shlex
from typing import List, Tuple

from msdlib.config import load_config
from msd_pipeline.targets.emr import releases
from project_paths import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "docker" / "emr-serverless" / "Dockerfile"
# The build context is include/emr (docs/emr.md): the pin set is all the image takes.
BUILD_CONTEXT = PROJECT_ROOT / "include" / "emr"
REQUIREMENTS = "requirements-emr.txt"
BASE_IMAGE = "public.ecr.aws/emr-serverless/spark/${EMR_RELEASE}:latest"


def instructions() -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"^\s*#.*\n", "", DOCKERFILE.read_text(), flags=re.M).replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip()]


def arguments_of(name: str) -> List[str]:
    return [arguments for instruction, arguments in instructions() if instruction == name]


def test_the_base_image_is_the_serverless_spark_image_of_the_configured_release():
    release_arg = [a for a in arguments_of("ARG") if a.startswith("EMR_RELEASE=")]
    assert release_arg == ["EMR_RELEASE=" + load_config().emr.release_label]
    assert instructions()[0] == ("ARG", release_arg[0])  # the FROM line can read it
    assert arguments_of("FROM") == [BASE_IMAGE]


def test_it_installs_exactly_the_emr_pin_set_into_emr_7s_python():
    copies = [shlex.split(arguments) for arguments in arguments_of("COPY")]
    assert copies == [[REQUIREMENTS, "/tmp/requirements-emr.txt"]]
    assert (BUILD_CONTEXT / REQUIREMENTS).is_file()
    commands = [command.strip() for run in arguments_of("RUN") for command in run.split("&&")]
    installs = [command for command in commands if " install " in command]
    assert installs == ["python3 -m pip install --no-cache-dir -r /tmp/requirements-emr.txt"]
    major, minor = releases.EMR_PYTHON_VERSION
    assert f"sys.version_info[:2] == ({major}, {minor})" in " ".join(commands)


def test_it_installs_as_root_and_ends_as_hadoop():
    users = [(index, arguments) for index, (instruction, arguments) in enumerate(instructions())
             if instruction == "USER"]
    run_index = next(index for index, (instruction, _) in enumerate(instructions())
                     if instruction == "RUN")
    assert users[0][1] == "root" and users[0][0] < run_index
    assert users[-1] == (len(instructions()) - 1, "hadoop:hadoop")


def test_the_repository_policy_lets_emr_serverless_of_the_account_pull_only():
    policy = json.loads((PROJECT_ROOT / "include/emr_serverless/ecr-repository-policy.json")
                        .read_text())
    (statement,) = policy["Statement"]
    assert policy["Version"] == "2012-10-17" and statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert sorted(statement["Action"]) == [
        "ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"] == {"ArnLike": {
        "aws:SourceArn": "arn:aws:emr-serverless:*:ACCOUNT_ID:/applications/*"}}
