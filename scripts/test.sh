#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite on CPU; GPU-only tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
