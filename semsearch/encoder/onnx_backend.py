"""The ONNX Runtime backend: the model's transformer as an ONNX graph, tokenised by ``tokenizers``.

No torch: importing onnxruntime and tokenizers takes a fraction of a second. The graph gives the
token vectors; mean pooling over the attention mask and normalisation happen here, as the
sentence-transformers modules Pooling(mean) and Normalize do them, so a passage's sentence vector
is still exactly the mean of its token vectors. The export is made and checked against PyTorch
once per model (``encoder/export.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ..core.types import Encoded, Span, TokenData
from ..errors import ModelError
from .files import ModelSpec
from .windows import window_spans


class OnnxEncoder:
    """A sentence-transformers model (Transformer → mean Pooling → Normalize) on ONNX Runtime."""

    def __init__(self, name: str, path: Path, onnx_file: Path, spec: ModelSpec, threads: int = 0, prepack: bool = True) -> None:
        try:
            import onnxruntime as ort  # ~0.15 s: the query path's whole model stack
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelError(f"cannot import ONNX Runtime ({exc}); run: pip install onnxruntime tokenizers") from None
        self.name = name
        self.dim = spec.dim
        self.max_tokens = spec.max_tokens
        self.pooling = "mean"
        self.device = "cpu"
        try:
            self._tokenizer_file = path / "tokenizer.json"
            self._encode = Tokenizer.from_file(str(self._tokenizer_file))
        except Exception as exc:  # tokenizers raises its own exception types
            raise ModelError(f"cannot read {path / 'tokenizer.json'}: {exc}") from None
        added = self._encode.get_added_tokens_decoder()
        self.special_tokens = {int(i): t.content for i, t in added.items() if t.special}
        pad = next((i for i, t in self.special_tokens.items() if t in ("[PAD]", "<pad>")), 0)
        processor = self._encode.post_processor
        self.window = self.max_tokens - (processor.num_special_tokens_to_add(False) if processor else 0)
        self._encode.enable_truncation(max_length=self.max_tokens)
        self._encode.enable_padding(pad_id=pad, pad_token=self.special_tokens.get(pad, "[PAD]"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: ingest's writer thread needs the cores too
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimised when exported
        if not prepack:
            # prepacking lays the MatMul weights out for speed while the session is built (~0.04 s
            # here) and saves ~3 ms a run: a process that encodes one text is faster without it
            options.add_session_config_entry("session.disable_prepacking", "1")
        self._session = _session(ort, onnx_file, options)
        self._inputs = {i.name for i in self._session.get_inputs()}

    @functools.cached_property
    def _split(self) -> Any:
        """A second tokenizer, without padding or truncation, for ingest's windows (queries never
        need it, so a query process does not build it)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self._tokenizer_file))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        encodings = self._split.encode_batch(texts, add_special_tokens=False)
        return [
            window_spans(list(e.offsets), list(e.word_ids), len(text), self.window, overlap, truncate)
            for e, text in zip(encodings, texts)
        ]

    def forward(self, texts: list[str]) -> tuple[Any, Any, Any, Any]:
        """Token vectors (batch, tokens, dim), attention mask, token ids and offsets of ``texts``."""
        encodings = self._encode.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (tokens,) = self._session.run(["token_embeddings"], feed)
        offsets = np.array([e.offsets for e in encodings], dtype=np.int32).reshape(len(texts), -1, 2)
        return tokens, mask.astype(bool), ids, offsets

    def encode(self, texts: list[str]) -> list[Encoded]:
        if not texts:
            return []
        tokens, mask, ids, offsets = self.forward(texts)
        lengths = mask.sum(axis=1)
        # mean pooling over the attention mask, then unit length: Pooling(mean) → Normalize
        sentences = (tokens * mask[..., None]).sum(axis=1) / np.maximum(lengths[:, None], 1)
        sentences /= np.maximum(np.linalg.norm(sentences, axis=1, keepdims=True), 1e-12)
        result = []
        for i, text in enumerate(texts):
            keep = mask[i]
            result.append(
                Encoded(
                    vector=sentences[i].astype(np.float32),
                    tokens=TokenData(
                        text,
                        np.ascontiguousarray(tokens[i][keep], dtype=np.float32),
                        ids[i][keep].astype(np.int32),
                        offsets[i][keep],
                    ),
                )
            )
        return result


def _session(ort: Any, file: Path, options: Any) -> Any:
    try:
        return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load {file}: {exc}; delete its folder to have it made again") from None
