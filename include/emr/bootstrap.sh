#!/bin/bash
# Bootstrap action of the MSD pipeline's EMR cluster: runs on every node, as the hadoop
# user, before Spark starts (include/msd_pipeline/targets/emr/cluster.py passes the
# arguments).
#
#   bootstrap.sh --requirements s3://.../requirements-emr.txt [--mongodb-on-master 7.0]
#
# Installs the Spark jobs' Python dependencies for EMR's python3 from the pinned set in
# requirements-emr.txt (every transitive dependency pinned, so all nodes and all
# clusters get the same versions), installing pip first where the image lacks it. With
# --mongodb-on-master (the tutorial's setup, emr.mongo_mode = "master_node") it also
# installs MongoDB on the master node, from the repository of the node's architecture
# (x86_64 or aarch64/Graviton), listening inside the cluster's security groups.
#
# Exit codes: 0 done, 2 bad arguments or an unsupported architecture; anything else is
# the failing command's (EMR then fails the cluster with the bootstrap's log).
set -euo pipefail

# Where EMR describes the node (overridable for tests).
instance_info="${MSD_EMR_INSTANCE_INFO:-/mnt/var/lib/info/instance.json}"

usage() {
  echo "bootstrap.sh: $1" >&2
  echo "usage: bootstrap.sh --requirements s3://.../requirements-emr.txt [--mongodb-on-master VERSION]" >&2
  exit 2
}

requirements=""
mongodb_version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --requirements|--mongodb-on-master)
      [ $# -ge 2 ] && [ -n "$2" ] || usage "$1 needs a value"
      if [ "$1" = "--requirements" ]; then requirements="$2"; else mongodb_version="$2"; fi
      shift 2 ;;
    *) usage "unknown argument $1" ;;
  esac
done
[ -n "$requirements" ] || usage "--requirements s3://... is required"

# The MongoDB repository's folder for this node's CPU.
mongodb_repo_arch() {
  case "$(uname -m)" in
    x86_64|amd64) echo x86_64 ;;
    aarch64|arm64) echo aarch64 ;;
    *) echo "bootstrap.sh: no MongoDB packages for architecture $(uname -m)" >&2; exit 2 ;;
  esac
}

ensure_pip() {
  python3 -m pip --version >/dev/null 2>&1 && return 0
  echo "bootstrap.sh: python3 has no pip; installing it" >&2
  sudo python3 -m ensurepip --upgrade || sudo dnf install -y python3-pip
  python3 -m pip --version >/dev/null
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
ensure_pip
# --ignore-installed: the image's RPM-installed packages (urllib3, six, ...) cannot be
# uninstalled by pip; the pinned versions are installed next to them and take precedence.
sudo python3 -m pip install --quiet --no-cache-dir --ignore-installed \
  -r "$workdir/requirements-emr.txt"

if [ -n "$mongodb_version" ] && is_master_node; then
  install_mongodb "$mongodb_version"
fi
