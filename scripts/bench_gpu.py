"""What one Ray ingest actor does, per accelerator: encode sorted batches of Reuters-21578
paragraphs and hand back sentence vectors and every token's vector, id and offsets
(``SentenceTransformerEncoder.encode``, float16 token output on a GPU), beside bare
``SentenceTransformer.encode`` (sentence vectors only) on the same texts. Rounds alternate the
two; medians are printed. Runs on a CPU too (slowly: pass a small --n).

    python scripts/bench_gpu.py [--model PATH] [--data paragraphs.jsonl.gz] [--n 50000] [--batch-sizes 32,128,512]

Needs torch, sentence-transformers and semsearch's package (its store and index are not used:
an actor only encodes; the ingesting process writes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402


def paragraphs(path: Path, n: int) -> list[str]:
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


def sync(enc: SentenceTransformerEncoder) -> None:
    if enc.device.startswith("cuda"):
        enc._torch.cuda.synchronize()


def bare(enc: SentenceTransformerEncoder, texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    enc.model.encode(texts, batch_size=batch, convert_to_numpy=True)
    sync(enc)
    return time.perf_counter() - started


def actor(enc: SentenceTransformerEncoder, texts: list[str], batch: int, window: int = 16) -> tuple[float, int]:
    """As ingest feeds a pool: chunks of ``batch × window`` texts sorted by token count, one
    ``encode`` per batch; returns (seconds, tokens handed back)."""
    started = time.perf_counter()
    tokens = 0
    chunk = batch * window
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        lengths = [len(ids) for ids in enc.tokenizer(part, add_special_tokens=True, truncation=True, max_length=enc.max_tokens)["input_ids"]]
        order = sorted(range(len(part)), key=lambda i: lengths[i])
        for b in range(0, len(order), batch):
            for e in enc.encode([part[i] for i in order[b : b + batch]]):
                tokens += len(e.tokens.token_ids)
    sync(enc)
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="packaged name or a local model directory")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "reuters21578" / "paragraphs.jsonl.gz")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    enc = SentenceTransformerEncoder(args.model, args.device)
    torch = enc._torch
    texts = paragraphs(args.data, args.n)
    name = torch.cuda.get_device_name(0) if enc.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"device: {enc.device} ({name}), torch {torch.__version__}, {len(texts):,} Reuters paragraphs, median of {args.rounds} alternating rounds")
    enc.model.encode(texts[:2048], batch_size=128)  # warm-up: kernels, allocator
    actor(enc, texts[:2048], 128)
    print("| batch | bare encode texts/s | actor encode texts/s | actor tokens/s | actor / bare |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        b_times, a_times, tokens = [], [], 0
        for _ in range(args.rounds):
            b_times.append(bare(enc, texts, batch))
            seconds, tokens = actor(enc, texts, batch)
            a_times.append(seconds)
        b, a = statistics.median(b_times), statistics.median(a_times)
        print(f"| {batch} | {len(texts) / b:,.0f} | {len(texts) / a:,.0f} | {tokens / a:,.0f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
