"""Shared fixtures: a tiny deterministic fake encoder, temporary stores, the real model once."""

from __future__ import annotations

import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import semsearch
from semsearch import encoder as encoder_module
from semsearch.encoder import Encoded, Span, window_spans
from semsearch.store import TokenData

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ARC_SAMPLE = REPO / "samples" / "arc" / "arc-easy-train-1000.jsonl"
PIECE = re.compile(r"\w{1,4}|[^\w\s]")
WORD = re.compile(r"\w+|[^\w\s]")


class HashEncoder:
    """Mean pooling over per-piece vectors seeded from a stable hash: numpy only, instant.

    Words split into pieces of at most 4 characters, so word-piece merging is exercised.
    """

    name = "hash-encoder"
    pooling = "mean"
    special_tokens = {1: "[CLS]", 2: "[SEP]"}

    def __init__(self, dim: int = 16, max_tokens: int = 24) -> None:
        self.dim = dim
        self.max_tokens = max_tokens
        self.calls = 0

    def _vector(self, piece: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(piece.lower().encode()))
        return (rng.normal(size=self.dim) + 0.5).astype(np.float32)

    def _pieces(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        offsets, word_ids = [], []
        for w, word in enumerate(WORD.finditer(text)):
            for piece in PIECE.finditer(word.group()):
                offsets.append((word.start() + piece.start(), word.start() + piece.end()))
                word_ids.append(w)
        return offsets, word_ids

    def split(self, texts: list[str], overlap: int, truncate: bool) -> list[list[Span]]:
        result = []
        for text in texts:
            offsets, word_ids = self._pieces(text)
            result.append(window_spans(offsets, word_ids, len(text), self.max_tokens - 2, overlap, truncate))
        return result

    def encode(self, texts: list[str]) -> list[Encoded]:
        self.calls += 1
        out = []
        for text in texts:
            offsets, _ = self._pieces(text)
            offsets = offsets[: self.max_tokens - 2]
            pieces = [text[a:b] for a, b in offsets]
            ids = [1] + [zlib.crc32(p.lower().encode()) % 30000 + 10 for p in pieces] + [2]
            vecs = np.stack([self._vector("[CLS]")] + [self._vector(p) for p in pieces] + [self._vector("[SEP]")])
            mean = vecs.mean(axis=0)
            out.append(
                Encoded(
                    vector=(mean / np.linalg.norm(mean)).astype(np.float32),
                    tokens=TokenData(
                        text,
                        vecs,
                        np.array(ids, dtype=np.int32),
                        np.array([(0, 0)] + offsets + [(0, 0)], dtype=np.int32).reshape(-1, 2),
                    ),
                )
            )
        return out


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> HashEncoder:
    """Every model load in the CLI returns this fake (and fails on a model other than its own)."""
    fake = HashEncoder()

    def load(name: str, *args: object, **kwargs: object) -> HashEncoder:
        if name not in ("all-MiniLM-L6-v2", fake.name):
            from semsearch.errors import ModelError

            raise ModelError(f"model {name!r} is not a local directory")
        return fake

    monkeypatch.setattr(encoder_module, "load_encoder", load)
    return fake


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in its own directory, with a store there and no stray settings."""
    monkeypatch.chdir(tmp_path)
    for name in ("SEMSEARCH_STORE", "SEMSEARCH_CONFIG", "SEMSEARCH_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A five-document JSONL corpus, one of them long enough to be split by the fake encoder."""
    docs = [
        {"id": "fever", "text": "A person infected with bacteria may have a fever.", "topic": "health"},
        {"id": "plants", "text": "Plants use sunlight to make food by photosynthesis.", "topic": "biology"},
        {"id": "moon", "text": "The moon orbits the earth about once a month.", "topic": "space"},
        {"id": "rocks", "text": "Sedimentary rocks form in layers over long periods of time.", "topic": "geology"},
        {
            "id": "long",
            "text": " ".join(f"Sentence number {i} talks about volcanoes and magma chambers." for i in range(8)),
            "topic": "geology",
        },
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


@pytest.fixture
def session(tmp_path: Path, corpus: Path) -> Iterator[semsearch.Session]:
    """The five-document corpus in a store of its own, opened with the fake encoder."""
    s = semsearch.open(tmp_path / "store", create=True, encoder=HashEncoder())
    s.ingest([corpus])
    yield s
    s.close()


@pytest.fixture(scope="session")
def arc_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed ARC sample ingested once with the real model (tests may search it, not change it)."""
    from typer.testing import CliRunner

    from semsearch.cli import app

    store = tmp_path_factory.mktemp("arc") / "store"
    result = CliRunner().invoke(app, ["ingest", str(ARC_SAMPLE), "--text-field", "question.stem", "--store", str(store), "-q"])
    assert result.exit_code == 0, result.output
    return store


_MADE_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """The real model's ONNX export is made once per test run, in a folder of its own (not the
    user's cache); subprocesses of the tests inherit it, and it is removed at the end."""
    if not os.environ.get("SEMSEARCH_MODEL_CACHE"):
        _MADE_CACHE.append(tempfile.mkdtemp(prefix="semsearch-test-models-"))
        os.environ["SEMSEARCH_MODEL_CACHE"] = _MADE_CACHE[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    for folder in _MADE_CACHE:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("SEMSEARCH_MODEL_CACHE", None)
