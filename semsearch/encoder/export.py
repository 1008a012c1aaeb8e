"""Making a model's ONNX export, once, with torch's own exporter, and proving it before use.

The export is the model's transformer (input ids, attention mask, token types → token vectors),
written to the model cache under a key of the model's files. Before it is kept, its sentence and
token vectors are compared with the PyTorch model's on probe sentences: each must agree within
1e-5 (cosine), or the export is refused and the caller falls back to PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .files import ModelSpec, cache_dir, model_key

logger = logging.getLogger(__name__)
LAYOUT = "ext1"  # model.onnx + model.data (weights); a new layout gets a folder of its own
STALE_DRAFT = 3600  # seconds: an export takes about 12 s
TOLERANCE = 1e-5  # 1 − cosine, for sentence vectors and for every token vector
PROBES = [
    "Which factor will most likely cause a person to develop a fever?",
    "A man is playing a guitar.",
    "Ünïcödé, punctuation — and numbers: 3.14159, 2,718; e-mail@example.com!",
    "short",
    " ".join(f"Sentence {i} of a long passage about rivers, sediment and the sea." for i in range(40)),
]


def onnx_file(path: Path, spec: ModelSpec, cache: str = "") -> Path:
    """The checked ONNX export of the model at ``path``, optimised by this version of ONNX Runtime:
    from the cache, or made now (this imports torch once, a few seconds)."""
    import onnxruntime

    folder = cache_dir(cache) / f"onnx-{model_key(path)}-ort{onnxruntime.__version__}-{LAYOUT}"
    if not (folder / "check.json").is_file():
        logger.info("exporting %s to ONNX (once) into %s", path, folder)
        export(path, spec, folder)
    return folder / "model.onnx"


def export(path: Path, spec: ModelSpec, folder: Path) -> dict[str, Any]:
    """Export and check against PyTorch in a folder of its own, then rename that folder into place:
    a half-made export is never seen, and of two processes exporting at once one folder wins whole."""
    from .onnx_backend import OnnxEncoder
    from .torch_backend import SentenceTransformerEncoder

    torch_encoder = SentenceTransformerEncoder(str(path), "cpu")
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}-*"):  # left by an export that was killed
        try:
            if time.time() - stale.stat().st_mtime > STALE_DRAFT:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:  # another process removed it first
            continue
    draft = folder.parent / f".{folder.name}-{uuid.uuid4().hex}"  # mkdir: the umask's mode, as the cache's other folders
    draft.mkdir()
    try:
        _torch_export(torch_encoder.model[0].auto_model, draft / "plain.onnx")
        _optimise(draft / "plain.onnx", draft / "model.onnx")
        (draft / "plain.onnx").unlink()
        check = parity(torch_encoder, OnnxEncoder(str(path), path, draft / "model.onnx", spec), PROBES)
        if check["worst"] > TOLERANCE:
            raise ModelError(f"the ONNX export of {path} differs from PyTorch by {check['worst']:.1e} (cosine); using PyTorch")
        (draft / "check.json").write_text(json.dumps(check))
        _move_into_place(draft, folder)
    finally:
        shutil.rmtree(draft, ignore_errors=True)
    # the export of this model and ONNX Runtime in the layout before model.data, if any
    shutil.rmtree(folder.parent / folder.name.removesuffix(f"-{LAYOUT}"), ignore_errors=True)
    return check


def _move_into_place(draft: Path, folder: Path) -> None:
    for _ in range(2):
        try:
            os.rename(draft, folder)
            return
        except OSError:  # another process's export is in place (or a folder without check.json: replace it)
            if (folder / "check.json").is_file():
                return
            shutil.rmtree(folder, ignore_errors=True)
    if not (folder / "check.json").is_file():
        raise ModelError(f"cannot move the ONNX export into {folder}; using PyTorch")


def _torch_export(transformer: Any, draft: Path) -> None:
    import torch  # the exporter: only making an export pays for it

    class TokenVectors(torch.nn.Module):
        """The transformer with named inputs, returning its last hidden state."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    example = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings are about other inputs
        torch.onnx.export(
            TokenVectors(transformer).eval(),
            (example, example, torch.zeros_like(example)),
            str(draft),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["token_embeddings"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "token_embeddings": axes},
            opset_version=17,
            dynamo=False,
        )


def _optimise(plain: Path, target: Path) -> None:
    """Save the graph as ONNX Runtime optimises it (fused attention, layer norm, GELU), so that
    loading it can skip that work, with the weights in a file of their own beside it
    (``model.data``), which ONNX Runtime maps into memory instead of parsing them out of the graph:
    a query process builds its session in 0.05 s instead of 0.17 s here."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    options.log_severity_level = 3
    ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])


def parity(reference: Any, candidate: Any, texts: list[str]) -> dict[str, Any]:
    """How far ``candidate``'s vectors are from ``reference``'s: the worst 1 − cosine over
    sentence vectors and over token vectors, and whether ids and offsets are the same."""
    worst_sentence = worst_token = 0.0
    for a, b in zip(reference.encode(texts), candidate.encode(texts)):
        if not (np.array_equal(a.tokens.token_ids, b.tokens.token_ids) and np.array_equal(a.tokens.offsets, b.tokens.offsets)):
            raise ModelError(f"the ONNX tokenisation of {a.tokens.text[:40]!r} differs from the model's; using PyTorch")
        worst_sentence = max(worst_sentence, 1.0 - float(a.vector @ b.vector))
        ta = a.tokens.vectors / np.linalg.norm(a.tokens.vectors, axis=1, keepdims=True)
        tb = b.tokens.vectors / np.linalg.norm(b.tokens.vectors, axis=1, keepdims=True)
        worst_token = max(worst_token, float(1.0 - (ta * tb).sum(axis=1).min()))
    return {"sentence": worst_sentence, "token": worst_token, "worst": max(worst_sentence, worst_token), "texts": len(texts)}
