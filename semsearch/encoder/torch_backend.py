"""The PyTorch backend: a local sentence-transformers model run by hand, so that one forward pass
gives the sentence vectors and the token vectors behind them (float16 token output on a GPU).

On a CPU with bfloat16 matrix units (Intel AMX or AVX-512 BF16) the model can run under bfloat16
autocast: 2.8x the float32 speed here, sentence vectors within about 1e-4 (cosine) of float32's
(``scripts/bench_precision.py``). The token vectors and the sentence vector come out of the same
pass, so explanations stay exact for what is stored.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np

from ..core.types import Encoded, Span, TokenData
from ..errors import ConfigError, ModelError
from .files import model_path
from .windows import window_spans

logger = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16")
BF16_TOLERANCE = 1e-3  # the worst 1 - cosine against float32 on the probe sentences that bf16 may cost


def bf16_is_fast(torch: Any) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX-512 BF16); elsewhere
    bfloat16 is emulated and slower than float32."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class SentenceTransformerEncoder:
    """A local sentence-transformers model run by hand so that one pass yields everything."""

    def __init__(self, name: str, device: str = "auto", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        path = model_path(name)  # a local directory: with local_files_only nothing is fetched
        try:
            # torch + sentence-transformers cost ~4 s to import: only commands that encode pay it
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelError(
                f"cannot import the model stack ({exc}); run: pip install torch==2.13.0 sentence-transformers"
            ) from None
        self._torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model: Any = SentenceTransformer(
                str(path), device=device, trust_remote_code=False, local_files_only=True
            )
        except Exception as exc:  # the library raises many kinds; all mean "cannot load"
            raise ModelError(f"cannot load model {name!r} from {path}: {exc}") from None
        self.model.eval()
        self.name = name
        self.device = device
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ModelError(f"model {name!r} does not report its embedding dimension; semsearch needs it")
        self.dim = int(dim)
        tokenizer = self.model.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"model {name!r} has no fast tokenizer; semsearch needs character offsets")
        self.tokenizer = tokenizer
        self.max_tokens = int(self.model.max_seq_length or tokenizer.model_max_length)
        self._batch = self._batch_tokenizer()
        self.window = self.max_tokens - tokenizer.num_special_tokens_to_add()
        self.special_tokens = dict(zip(tokenizer.all_special_ids, tokenizer.all_special_tokens))
        self.pooling = self._pooling()
        self.precision = "fp32"
        wants_bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(torch))
        if device == "cpu" and wants_bf16:  # a GPU runs float16 below
            self.precision = self._checked_bf16()

    def _checked_bf16(self) -> str:
        """'bf16' when the model's sentence vectors in bfloat16 stay within ``BF16_TOLERANCE`` of
        float32's on the probe sentences; else 'fp32', saying so once."""
        from .export import PROBES

        exact = np.array([e.vector for e in self.encode(PROBES)])
        self.precision = "bf16"
        approx = np.array([e.vector for e in self.encode(PROBES)])
        worst = float(np.max(1.0 - np.sum(exact * approx, axis=1)))
        if worst > BF16_TOLERANCE:
            logger.warning("%s in bfloat16 differs from float32 by %.1e (cosine); ingesting in float32", self.name, worst)
            return "fp32"
        return "bf16"

    def _autocast(self) -> Any:
        if self.precision == "bf16":
            return self._torch.autocast("cpu", dtype=self._torch.bfloat16)
        return contextlib.nullcontext()

    def _batch_tokenizer(self) -> Any:
        """A copy of the model's Rust tokenizer that pads and truncates as the model's own
        preprocessing does, or None (then ``preprocess`` runs) when a probe text's ids differ."""
        from tokenizers import Tokenizer

        tokenizer = self.tokenizer
        if tokenizer.pad_token_id is None:
            return None
        batch = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        batch.enable_truncation(max_length=self.max_tokens, direction=getattr(tokenizer, "truncation_side", "right"))
        batch.enable_padding(
            direction=getattr(tokenizer, "padding_side", "right"),
            pad_id=int(tokenizer.pad_token_id),
            pad_type_id=int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
            pad_token=str(tokenizer.pad_token),
        )
        probe = ["Semsearch probe: Ünïcode, CAPITALS & numbers 1,234.5", "short"]
        try:
            theirs = self.model.preprocess(probe)["input_ids"].tolist()
        except Exception:  # a model whose preprocessing takes other input: keep it
            return None
        ours = [e.ids for e in batch.encode_batch(probe)]
        return batch if ours == theirs else None

    def _pooling(self) -> str:
        """'mean' only when the sentence vector is exactly the mean of the token vectors."""
        kinds = [type(m).__name__ for m in self.model]
        if kinds[1:2] != ["Pooling"] or any(k not in ("Pooling", "Normalize") for k in kinds[2:]):
            return "other:" + "+".join(kinds[1:])
        pooling = self.model[1]
        mode = getattr(pooling, "pooling_mode", None) or pooling.get_config_dict().get("pooling_mode")
        return str(mode)

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        enc = self.tokenizer(
            texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return [
            window_spans(enc["offset_mapping"][i], enc.word_ids(i), len(text), self.window, overlap, truncate)
            for i, text in enumerate(texts)
        ]

    def encode(self, texts: list[str]) -> list[Encoded]:
        if not texts:
            return []
        torch = self._torch
        from sentence_transformers.util import batch_to_device

        # the Rust tokenizer batch, as the model's Transformer module runs it (its normaliser,
        # the model window, padding): asking sentence-transformers' preprocess for offsets ran at
        # about 5k texts/s here, which bounded a GPU ingest (scripts/bench_gpu.py)
        if self._batch is None:
            features: dict[str, Any] = self.model.preprocess(texts, processing_kwargs={"text": {"return_offsets_mapping": True}})
            offsets = features.pop("offset_mapping")
        else:
            encodings = self._batch.encode_batch(texts)
            features = {"input_ids": torch.from_numpy(np.array([e.ids for e in encodings], dtype=np.int64))}
            features["attention_mask"] = torch.from_numpy(np.array([e.attention_mask for e in encodings], dtype=np.int64))
            if "token_type_ids" in self.tokenizer.model_input_names:
                features["token_type_ids"] = torch.from_numpy(np.array([e.type_ids for e in encodings], dtype=np.int64))
            offsets = torch.from_numpy(np.array([e.offsets for e in encodings], dtype=np.int32).reshape(len(texts), -1, 2))
        features = batch_to_device(features, torch.device(self.device))
        with torch.inference_mode(), self._autocast():
            out = self.model(features)
            mask = features["attention_mask"].bool()
            # one packed copy of all valid tokens (float16 on a GPU), not one tensor per text
            packed = out["token_embeddings"][mask]
            if self.device != "cpu":
                packed = packed.half()
            tokens = packed.float().cpu().numpy()
            sentences = out["sentence_embedding"].float().cpu().numpy()
        mask_cpu = mask.cpu()
        ids = features["input_ids"].cpu()[mask_cpu].numpy().astype(np.int32)
        offs = offsets[mask_cpu].numpy().astype(np.int32)
        lengths = mask_cpu.sum(dim=1).tolist()
        norms = np.linalg.norm(sentences, axis=1, keepdims=True)
        sentences = sentences / np.maximum(norms, 1e-12)
        result: list[Encoded] = []
        at = 0
        for i, (text, n) in enumerate(zip(texts, lengths)):
            result.append(
                Encoded(
                    vector=sentences[i].astype(np.float32),
                    tokens=TokenData(text, tokens[at : at + n], ids[at : at + n], offs[at : at + n]),
                )
            )
            at += n
        return result
