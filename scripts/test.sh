#!/usr/bin/env bash
# Install semsearch with its test dependencies into ./.venv, check style (ruff) and types (mypy),
# and run the whole test suite, the end-to-end tests on the real all-MiniLM-L6-v2 model and the
# browser test of `semsearch serve`'s page (Debian's chromium, installed here when run as root)
# included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x "${SEMSEARCH_CHROMIUM:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" = 0 ]; then
    # Playwright's own browser download cannot work offline: the page test drives Debian's chromium
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "the browser test needs chromium: sudo apt-get install -y chromium (or set SEMSEARCH_CHROMIUM)" >&2
  fi
fi
.venv/bin/ruff check semsearch tests scripts
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
