#!/usr/bin/env bash
# Creates .venv (if needed) and installs trt-converters with every extra, pinned to the tested versions.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
echo "[setup] installing trt-converters[all,test] (pinned by constraints.txt; first run takes a few minutes)"
.venv/bin/python -m pip install --quiet --progress-bar off -c constraints.txt -e ".[all,test]"
# boto3 (s3:// repositories): its botocore caps python-dateutil below the pinned release, so the pinned boto3
# packages go in without their dependencies (setup.cfg, extra s3)
.venv/bin/python -m pip install --quiet --progress-bar off --no-deps -c constraints.txt boto3 botocore s3transfer jmespath
echo "[setup] done: $(.venv/bin/trt-convert --help >/dev/null && echo 'trt-convert is ready')"
