"""Would an int8 model make CPU ingest faster? ONNX Runtime's dynamic int8 quantisation of the
store's ONNX export, against the float32 export and PyTorch (float32 and bfloat16 autocast), on
the same Reuters paragraphs: texts/s of the forward pass and sentence cosines against PyTorch
float32. Two int8 variants: weights only (MatMuls with a constant operand, per channel), and every
MatMul (the attention's activation products too). Median of ``--rounds`` alternating rounds.
Also: the share of bare `SentenceTransformer.encode`'s time spent in the transformer's forward
pass (what no float32 ingest can avoid).

    .venv/bin/python scripts/bench_int8.py [--n 1024] [--rounds 2]

Needs the `onnx` package (ONNX Runtime's quantiser imports it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.encoder.export import onnx_file  # noqa: E402
from semsearch.encoder.files import model_path, onnx_spec  # noqa: E402
from semsearch.encoder.torch_backend import SentenceTransformerEncoder  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    texts = []
    with gzip.open(DATA / "reuters21578" / "paragraphs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == args.n:
                break
    texts.sort(key=len)
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    fp32 = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "fp32")
    bf16 = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "bf16")
    path = model_path("all-MiniLM-L6-v2")
    spec = onnx_spec(path)
    assert not isinstance(spec, str), spec
    exported = onnx_file(path, spec)
    tokenizer = fp32._batch
    assert tokenizer is not None

    with tempfile.TemporaryDirectory() as tmp:
        weights, everything = Path(tmp) / "weights.onnx", Path(tmp) / "all.onnx"
        common = {"weight_type": QuantType.QInt8, "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}}
        quantize_dynamic(exported, weights, per_channel=True, **{**common, "extra_options": {**common["extra_options"], "MatMulConstBOnly": True}})  # type: ignore[dict-item]
        quantize_dynamic(exported, everything, **common)  # type: ignore[arg-type]

        def session(model: Path) -> object:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

        def ort_encode(s: object) -> np.ndarray:
            out = []
            for batch in batches:
                enc = tokenizer.encode_batch(batch)
                ids = np.array([e.ids for e in enc], dtype=np.int64)
                mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
                tokens = s.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]  # type: ignore[attr-defined]
                v = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
            return np.vstack(out)

        def torch_encode(enc: SentenceTransformerEncoder) -> np.ndarray:
            return np.vstack([np.array([e.vector for e in enc.encode(batch)]) for batch in batches])

        ways = {
            "PyTorch fp32": lambda: torch_encode(fp32),
            "PyTorch bf16 autocast": lambda: torch_encode(bf16),
            "ONNX Runtime fp32": (lambda s: lambda: ort_encode(s))(session(exported)),
            "ONNX Runtime int8, weights": (lambda s: lambda: ort_encode(s))(session(weights)),
            "ONNX Runtime int8, every MatMul": (lambda s: lambda: ort_encode(s))(session(everything)),
        }
        reference = ways["PyTorch fp32"]()
        speed: dict[str, list[float]] = {name: [] for name in ways}
        cosines: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, run in ways.items():
                start = time.perf_counter()
                vectors = run()
                speed[name].append(len(texts) / (time.perf_counter() - start))
                cosines[name] = np.sum(vectors * reference, axis=1)
    model = fp32.model[0].auto_model
    inner, spent = model.forward, [0.0]

    def timed(*a: object, **k: object) -> object:
        start = time.perf_counter()
        out = inner(*a, **k)
        spent[0] += time.perf_counter() - start
        return out

    model.forward = timed
    shares = []
    for _ in range(args.rounds):
        spent[0], start = 0.0, time.perf_counter()
        fp32.model.encode(texts, batch_size=32)
        shares.append(spent[0] / (time.perf_counter() - start))
    model.forward = inner
    print(f"# bench_int8: {len(texts):,} Reuters paragraphs, batches of 32, 2 threads, median of {args.rounds} rounds")
    print(f"bare SentenceTransformer.encode spends {100 * statistics.median(shares):.1f}% of its time in the transformer's forward pass")
    print("| model | texts/s | vs PyTorch fp32 | cosine to PyTorch fp32: mean | worst |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = statistics.median(speed["PyTorch fp32"])
    for name in ways:
        rate = statistics.median(speed[name])
        print(f"| {name} | {rate:,.1f} | {rate / base:.2f}x | {cosines[name].mean():.5f} | {cosines[name].min():.5f} |")


if __name__ == "__main__":
    main()
