#!/bin/bash
# The whole test suite: set up, build the workloads, run pytest and ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -s -C tests/workloads
make -s -C demo
.venv/bin/ruff check torpor tests bench
.venv/bin/ruff format --check torpor tests bench
exec .venv/bin/pytest -q "$@"
