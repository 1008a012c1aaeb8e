#!/usr/bin/env bash
# Install, ingest 1,000 ARC science questions, search, and explain the top hit as two pictures:
# the seed article's cosine matrix and the contribution matrix (whose cells add up to the score).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
STORE=${SEMSEARCH_STORE:-./demo-store}
QUERY="Which factor will most likely cause a person to develop a fever?"
semsearch ingest samples/arc/arc-easy-train-1000.jsonl --text-field question.stem --store "$STORE"
semsearch search "$QUERY" -k 5 --store "$STORE"
TOP=$(semsearch search "$QUERY" -k 1 --json --store "$STORE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hits"][0]["passage_id"])')
semsearch explain --id "$TOP" --store "$STORE" --png fever-explained.png
semsearch explain --id "$TOP" --store "$STORE" --mode contribution --png fever-contribution.png > /dev/null
echo "wrote fever-explained.png (cosine) and fever-contribution.png (contribution)"
