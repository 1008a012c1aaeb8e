"""Settings: one table, each with a default and a line of help.

Precedence, highest first: a command-line option, a ``SEMSEARCH_<NAME>`` environment variable,
the YAML file (``--config``, ``SEMSEARCH_CONFIG`` or ``./config.yaml``), then the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


DEFAULT_CODEC = "SQ6"  # token codec of a new store: the smallest that stays faithful (scripts/bench_tokens.py, README)
DEFAULT_POOL = "words"  # token pooling of a new store


@dataclass(frozen=True)
class Settings:
    """Every setting semsearch reads; field metadata holds the help line."""

    store: str = field(default="./semsearch-store", metadata={"help": "store directory"})
    model: str = field(
        default="",
        metadata={
            "help": f"'{DEFAULT_MODEL}' (packaged) or a local sentence-transformers model "
            "directory; empty means the store's model, or the packaged one for a new store"
        },
    )
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu' or 'cuda'"})
    backend: str = field(
        default="auto",
        metadata={
            "help": "what runs the model: 'onnx' (ONNX Runtime, no torch), 'torch' (PyTorch), or 'auto': "
            "ONNX Runtime for queries, PyTorch for ingest (faster for batches here)"
        },
    )
    model_cache: str = field(
        default="",
        metadata={"help": "folder for derived model files (ONNX exports); empty means $XDG_CACHE_HOME/semsearch or ~/.cache/semsearch"},
    )
    batch_size: int = field(default=32, metadata={"help": "passages per forward pass"})
    sort_window: int = field(
        default=16,
        metadata={"help": "batches read ahead and sorted by length to cut padding"},
    )
    long_documents: str = field(
        default="split",
        metadata={
            "help": "'split' a document longer than the model window into overlapping "
            "passages, or 'truncate' it to the window (MTEB's protocol)"
        },
    )
    overlap_tokens: int = field(
        default=32, metadata={"help": "tokens shared by neighbouring passages when splitting"}
    )
    token_codec: str = field(
        default="",
        metadata={
            "help": "how token vectors are stored: 'float16', or a FAISS codec such as 'SQ8', "
            f"'SQ4', 'PQ64' (trained on the first token vectors); fixed when a store is created "
            f"('semsearch recode' changes it); empty means the store's, or '{DEFAULT_CODEC}' for a new store"
        },
    )
    token_pool: str = field(
        default="",
        metadata={
            "help": "'words': one vector per word (the sum of its pieces; every word-level view stays exact) or "
            f"'pieces': one per word piece (needed for explain --tokens); empty means the store's, or '{DEFAULT_POOL}' for a new store"
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "how PyTorch runs the model for ingest on a CPU: 'bf16' (bfloat16 autocast: 2.8x faster on CPUs with AMX "
            "or AVX-512 BF16, sentence vectors within about 1e-4 cosine of float32), 'fp32', or 'auto' (bf16 where the CPU "
            "has it in hardware and the model passes a check against fp32; with backend torch, queries too); a GPU runs float16 either way"
        },
    )
    index: str = field(
        default="auto",
        metadata={
            "help": "sentence-vector index: 'auto' (exact Flat below 100k passages, then IVF with "
            "4-bit fast-scan PQ codes re-scored from float16 vectors) or any FAISS factory string such as "
            "'Flat', 'HNSW32', 'IVF4096,SQ8'"
        },
    )
    mmap: bool = field(default=False, metadata={"help": "map the index file read-only instead of loading it"})
    nprobe: int = field(
        default=128, metadata={"help": "IVF indexes: lists searched per query (recall vs speed)"}
    )
    ef_search: int = field(default=64, metadata={"help": "HNSW indexes: search breadth (recall vs speed)"})
    k_factor: int = field(
        default=32,
        metadata={"help": "indexes with a Refine stage ('auto' from 100k): candidates re-scored per result"},
    )
    query_cache: int = field(
        default=100, metadata={"help": "recent queries whose token vectors are kept"}
    )
    query_batch: int = field(
        default=16,
        metadata={"help": "queries that arrive at once (a busy server) encoded together in one model pass, at most; 1 encodes them one by one"},
    )
    lexical_memory: int = field(
        default=1_000_000,
        metadata={
            "help": "a server (and eval) keeps the lexical index's postings in memory for BM25 while the store has at most "
            "this many passages (about 12 bytes a distinct word of a passage, a few times that while reading); 0 always asks SQLite FTS5 (same scores, slower)"
        },
    )
    search_mode: str = field(
        default="hybrid",
        metadata={"help": "how search ranks: 'hybrid' (meaning and words fused), 'dense' (cosine only) or 'lexical' (BM25 only)"},
    )
    fusion: str = field(
        default="score",
        metadata={"help": "hybrid mode: 'rrf' (reciprocal rank fusion) or 'score' (weighted sum of min-max normalised scores)"},
    )
    hybrid_weight: float = field(
        default=0.5, metadata={"help": "fusion 'score': the weight of the dense score (the lexical one gets 1 - weight)"}
    )
    hybrid_depth: int = field(default=100, metadata={"help": "hybrid mode: passages each retriever contributes before fusion"})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "backend": ("auto", "onnx", "torch"),
    "precision": ("auto", "fp32", "bf16"),
    "long_documents": ("split", "truncate"),
    "search_mode": ("hybrid", "dense", "lexical"),
    "token_pool": ("", "pieces", "words"),
    "fusion": ("rrf", "score"),
}
POSITIVE = ("batch_size", "sort_window", "query_cache", "query_batch", "nprobe", "ef_search", "k_factor", "hybrid_depth")


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = type(getattr(Settings, name))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}: {name} must be true or false, not {value!r}")
    if kind is int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be a whole number, not {value!r}") from None
        if name in POSITIVE and number < 1 or number < 0:
            raise ConfigError(f"{source}: {name} must be positive, not {number}")
        return number
    if kind is float:
        try:
            real = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be a number, not {value!r}") from None
        if not 0.0 <= real <= 1.0:
            raise ConfigError(f"{source}: {name} must be between 0 and 1, not {real}")
        return real
    text = str(value)
    if name in CHOICES and text not in CHOICES[name]:
        raise ConfigError(
            f"{source}: {name} must be one of {', '.join(CHOICES[name])}, not {text!r}"
        )
    return text


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # only needed when a file is present

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the file or pass --config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_settings(
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults < file < environment < overrides (``None`` = unset)."""
    env = os.environ if environ is None else environ
    explicit = config_path or env.get("SEMSEARCH_CONFIG")
    path = Path(explicit) if explicit else Path("config.yaml")
    values: dict[str, Any] = {}
    if explicit and not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check --config or SEMSEARCH_CONFIG")
    if path.is_file():
        for key, value in _read_yaml(path).items():
            if key not in Settings.names():
                raise ConfigError(
                    f"{path}: unknown setting {key!r}; known settings: {', '.join(Settings.names())}"
                )
            values[key] = _coerce(key, value, str(path))
    for name in Settings.names():
        env_name = f"SEMSEARCH_{name.upper()}"
        if env.get(env_name):
            values[name] = _coerce(name, env[env_name], env_name)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return replace(Settings(), **values)


def resolve_model(settings: Settings, store_model: str | None) -> str:
    """The model to load: the one asked for, else the store's, else the packaged default."""
    return settings.model or store_model or DEFAULT_MODEL
