#!/usr/bin/env bash
# Install semsearch with its test dependencies into ./.venv, check style (ruff) and types (mypy),
# and run the whole test suite, the end-to-end tests on the real all-MiniLM-L6-v2 model included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check semsearch tests scripts
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
