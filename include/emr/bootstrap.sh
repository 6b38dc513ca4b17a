#!/bin/bash
# Bootstrap action of the MSD pipeline's EMR cluster: runs on every node, as the hadoop
# user, before Spark starts (include/msd_pipeline/emr/cluster.py passes the arguments).
#
#   bootstrap.sh --requirements s3://.../requirements-emr.txt [--mongodb-on-master 7.0]
#
# Installs the Spark jobs' pinned Python dependencies for EMR's python3. With
# --mongodb-on-master (the tutorial's setup, emr.mongo_mode = "master_node") it also
# installs MongoDB on the master node, listening inside the cluster's security groups.
set -euo pipefail

requirements=""
mongodb_version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --requirements) requirements="$2"; shift 2 ;;
    --mongodb-on-master) mongodb_version="$2"; shift 2 ;;
    *) echo "bootstrap.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$requirements" ]; then
  echo "bootstrap.sh: --requirements s3://... is required" >&2
  exit 2
fi

workdir="$(mktemp -d)"
aws s3 cp "$requirements" "$workdir/requirements-emr.txt"
sudo python3 -m pip install --quiet --no-cache-dir -r "$workdir/requirements-emr.txt"

is_master="$(python3 -c 'import json; print(json.load(open("/mnt/var/lib/info/instance.json"))["isMaster"])')"
if [ -n "$mongodb_version" ] && [ "$is_master" = "True" ]; then
  sudo tee "/etc/yum.repos.d/mongodb-org-${mongodb_version}.repo" >/dev/null <<REPO
[mongodb-org-${mongodb_version}]
name=MongoDB ${mongodb_version}
baseurl=https://repo.mongodb.org/yum/amazon/2023/mongodb-org/${mongodb_version}/x86_64/
gpgcheck=1
enabled=1
gpgkey=https://pgp.mongodb.com/server-${mongodb_version}.asc
REPO
  sudo dnf install -y mongodb-org
  # Reachable from the core nodes (the EMR-managed security groups), not from outside.
  sudo sed -i 's/^\(\s*bindIp:\).*/\1 0.0.0.0/' /etc/mongod.conf
  sudo systemctl enable --now mongod
fi
