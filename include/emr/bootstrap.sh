#!/bin/bash
# Bootstrap action of the MSD pipeline's EMR cluster: runs on every node, as the hadoop
# user, before Spark starts (include/msd_pipeline/targets/emr/cluster.py passes the
# arguments).
#
#   bootstrap.sh --requirements s3://.../requirements-emr.txt --venv /opt/msd-venv \
#                [--mongodb-on-master 7.0] \
#                [--extra-requirements s3://.../requirements-emr-gpu.txt --python python3.11]
#
# Creates a virtual environment at --venv with the node's python3 (3.9 on EMR 7's Amazon
# Linux 2023) and installs the Spark jobs' Python dependencies there from the pinned set
# in requirements-emr.txt (every transitive dependency pinned, so all nodes and all
# clusters get the same versions); the cluster's spark-defaults and spark-env point
# PySpark at its interpreter. The system Python and its RPM-managed packages stay
# untouched. Running the script again is safe: venv and pip keep what is installed.
# With --mongodb-on-master (the tutorial's setup, emr.mongo_mode = "master_node") it also
# installs MongoDB on the master node, from the repository of the node's architecture
# (x86_64 or aarch64/Graviton), listening inside the cluster's security groups.
# [emr] profile "gpu" adds --extra-requirements (spark-rapids-ml and cuML, installed into
# the same environment after the pins) and --python python3.11 (their Python: no cuML
# wheel exists for 3.9), installed with dnf when the node lacks it.
#
# Exit codes: 0 done, 2 bad arguments or an unsupported architecture; anything else is
# the failing command's (EMR then fails the cluster with the bootstrap's log).
set -euo pipefail

# Where EMR describes the node (overridable for tests).
instance_info="${MSD_EMR_INSTANCE_INFO:-/mnt/var/lib/info/instance.json}"

usage() {
  echo "bootstrap.sh: $1" >&2
  echo "usage: bootstrap.sh --requirements s3://.../requirements-emr.txt --venv /ABSOLUTE/PATH [--mongodb-on-master VERSION] [--extra-requirements s3://... --python PYTHON]" >&2
  exit 2
}

requirements=""
venv=""
mongodb_version=""
extra_requirements=""
python="python3"
while [ $# -gt 0 ]; do
  case "$1" in
    --requirements|--venv|--mongodb-on-master|--extra-requirements|--python)
      [ $# -ge 2 ] && [ -n "$2" ] || usage "$1 needs a value"
      case "$1" in
        --requirements) requirements="$2" ;;
        --venv) venv="$2" ;;
        --extra-requirements) extra_requirements="$2" ;;
        --python) python="$2" ;;
        *) mongodb_version="$2" ;;
      esac
      shift 2 ;;
    *) usage "unknown argument $1" ;;
  esac
done
[ -n "$requirements" ] || usage "--requirements s3://... is required"
[ -n "$venv" ] || usage "--venv PATH is required"
[ "${venv#/}" != "$venv" ] || usage "--venv must be an absolute path, got $venv"

# The MongoDB repository's folder for this node's CPU.
mongodb_repo_arch() {
  case "$(uname -m)" in
    x86_64|amd64) echo x86_64 ;;
    aarch64|arm64) echo aarch64 ;;
    *) echo "bootstrap.sh: no MongoDB packages for architecture $(uname -m)" >&2; exit 2 ;;
  esac
}

# The jobs' environment: created with the node's python3 (venv seeds it with pip from
# python3's own ensurepip); on a re-run, venv repairs what is missing and keeps what is
# installed. Owned by root, readable by the hadoop and yarn users that run the steps.
install_job_environment() {
  local requirements_file
  command -v "$python" >/dev/null || sudo dnf install -y "$python"
  sudo "$python" -m venv "$venv"
  sudo "$venv/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
  for requirements_file in "$@"; do
    sudo "$venv/bin/python" -m pip install --quiet --no-cache-dir -r "$requirements_file"
  done
  sudo "$venv/bin/python" -m pip check
}

is_master_node() {
  grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' "$instance_info"
}

install_mongodb() {
  local version="$1" arch
  arch="$(mongodb_repo_arch)"
  sudo tee "/etc/yum.repos.d/mongodb-org-${version}.repo" >/dev/null <<REPO
[mongodb-org-${version}]
name=MongoDB ${version}
baseurl=https://repo.mongodb.org/yum/amazon/2023/mongodb-org/${version}/${arch}/
gpgcheck=1
enabled=1
gpgkey=https://pgp.mongodb.com/server-${version}.asc
REPO
  sudo dnf install -y mongodb-org
  # Reachable from the core nodes (the EMR-managed security groups), not from outside.
  sudo sed -i 's/^\(\s*bindIp:\).*/\1 0.0.0.0/' /etc/mongod.conf
  sudo systemctl enable --now mongod
}

if [ -n "$mongodb_version" ] && is_master_node; then
  mongodb_repo_arch >/dev/null  # an unsupported CPU fails before anything is installed
fi

workdir="$(mktemp -d)"
aws s3 cp "$requirements" "$workdir/requirements-emr.txt"
requirement_files=("$workdir/requirements-emr.txt")
if [ -n "$extra_requirements" ]; then
  aws s3 cp "$extra_requirements" "$workdir/requirements-extra.txt"
  requirement_files+=("$workdir/requirements-extra.txt")
fi
install_job_environment "${requirement_files[@]}"

if [ -n "$mongodb_version" ] && is_master_node; then
  install_mongodb "$mongodb_version"
fi
