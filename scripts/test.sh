#!/usr/bin/env bash
# Install semsearch with its test dependencies into ./.venv and run the whole test suite,
# the end-to-end tests on the real all-MiniLM-L6-v2 model included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
