"""semsearch ingest vs bare `SentenceTransformer.encode`, side by side on the same texts.

Four ways through the same model and batch size: bare encode (sentence vectors only, float32),
semsearch ingest on PyTorch in float32, the same in bfloat16 autocast (the default, ``precision:
auto``, on a CPU with AMX or AVX-512 BF16), and semsearch ingest on ONNX Runtime (float32). Ingest also takes
the token vectors, ids and offsets out of the same forward pass and writes documents, passages,
float16 token blobs (SQLite) and the FAISS index. Long texts are truncated to the model window
here (``--long-documents truncate``) so all do the same model work; the split run is reported
apart. Rounds alternate the four, and medians are printed.

    .venv/bin/python scripts/bench_ingest.py [--reuters 3000] [--scifact 300] [--rounds 3]

Runs unchanged on a CUDA machine (device auto): there the token output is one packed float16 copy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


import semsearch  # noqa: E402
from semsearch.documents import Document  # noqa: E402
from semsearch.encoder import load_encoder  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402


def reuters(data: Path, n: int) -> list[str]:
    texts = []
    with gzip.open(data / "reuters21578" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


def scifact(data: Path, n: int) -> list[str]:
    texts = []
    with gzip.open(data / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts.append(f"{d['title']} {d['text']}")
            if len(texts) == n:
                break
    return texts


def time_bare(enc: SentenceTransformerEncoder, texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    enc.model.encode(texts, batch_size=batch, convert_to_numpy=True)
    if enc.device == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_ours(enc: object, texts: list[str], batch: int, mode: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        docs = [Document(key=str(i), text=t, source=f"bench:{i}") for i, t in enumerate(texts)]
        with semsearch.open(tmp, create=True, encoder=enc, batch_size=batch, long_documents=mode) as session:  # type: ignore[arg-type]
            start = time.perf_counter()
            report = session.ingest(docs)
            return time.perf_counter() - start, report.passages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--reuters", type=int, default=3000, help="Reuters-21578 paragraphs (short texts)")
    parser.add_argument("--scifact", type=int, default=300, help="SciFact abstracts (long texts)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", args.device)
    half = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "bf16") if enc.device == "cpu" else None
    onnx = load_encoder("all-MiniLM-L6-v2", "cpu", "onnx", purpose="ingest") if enc.device == "cpu" else None
    import torch

    print(f"machine: {platform.machine()}, device {enc.device}, torch threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, median of {args.rounds} alternating rounds")
    print("| texts | n | bare encode texts/s | ingest, PyTorch fp32 texts/s | ratio | ingest, PyTorch bf16 texts/s | ratio "
          "| ingest, ONNX Runtime texts/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, texts in (("Reuters paragraphs", reuters(args.data, args.reuters)), ("SciFact abstracts", scifact(args.data, args.scifact))):
        enc.encode(texts[:64])  # warm-up
        bare, ours, halves, fast = [], [], [], []
        for _ in range(args.rounds):
            bare.append(time_bare(enc, texts, args.batch_size))
            ours.append(time_ours(enc, texts, args.batch_size, "truncate")[0])
            if half is not None:
                halves.append(time_ours(half, texts, args.batch_size, "truncate")[0])
            if onnx is not None:
                fast.append(time_ours(onnx, texts, args.batch_size, "truncate")[0])
        b, o = statistics.median(bare), statistics.median(ours)
        h = statistics.median(halves) if halves else float("nan")
        f = statistics.median(fast) if fast else float("nan")
        n = len(texts)
        print(f"| {name} | {n:,} | {n / b:,.1f} | {n / o:,.1f} | {b / o:.2f} | {n / h:,.1f} | {b / h:.2f} | {n / f:,.1f} | {b / f:.2f} |", flush=True)
        if name.startswith("SciFact"):
            seconds, passages = time_ours(half or enc, texts, args.batch_size, "split")
            print(f"\nSciFact with splitting (no truncation, PyTorch {'bf16' if half else 'fp32'}): {passages:,} passages "
                  f"from {n:,} abstracts, {passages / seconds:,.1f} passages/s, {n / seconds:,.1f} abstracts/s")


if __name__ == "__main__":
    main()
