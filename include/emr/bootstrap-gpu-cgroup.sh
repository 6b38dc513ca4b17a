#!/bin/bash
# Bootstrap action of [emr] profile "gpu" (include/msd_pipeline/targets/emr/cluster.py),
# before bootstrap.sh on every node: EMR 7.x runs cgroup v2, and YARN's GPU isolation
# needs the cgroup v1 devices controller mounted where the GPU profile's yarn-site and
# container-executor classifications point (/spark-rapids-cgroup). The script AWS gives
# for EMR 7.x in "Use the NVIDIA RAPIDS Accelerator for Apache Spark" (EMR Release Guide).
set -ex

sudo mkdir -p /spark-rapids-cgroup/devices
sudo mount -t cgroup -o devices cgroupv1-devices /spark-rapids-cgroup/devices
sudo chmod a+rwx -R /spark-rapids-cgroup
