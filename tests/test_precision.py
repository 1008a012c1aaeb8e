"""bfloat16 ingest on a CPU (the ``precision`` setting) with the real model: close to float32,
explanations still exact, and float32 wherever bfloat16 would be slow or off."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from semsearch.encoder import torch_backend
from semsearch.encoder.torch_backend import SentenceTransformerEncoder
from tests.conftest import ARC_SAMPLE
from tests.test_real_model import QUERY, stsb_pairs

runner = CliRunner()


def test_bf16_vectors_stay_close_to_fp32_on_stsb() -> None:
    fp32 = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "fp32")
    bf16 = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    texts = sorted({s for pair in stsb_pairs(200) for s in pair})
    exact, approx = fp32.encode(texts), bf16.encode(texts)
    sentence_error = [1.0 - float(a.vector @ b.vector) for a, b in zip(exact, approx)]
    assert max(sentence_error) < 1e-3 and np.mean(sentence_error) < 1e-4
    for a, b in zip(exact, approx):
        assert np.array_equal(a.tokens.token_ids, b.tokens.token_ids) and np.array_equal(a.tokens.offsets, b.tokens.offsets)
        cos = np.sum(a.tokens.vectors * b.tokens.vectors, axis=1) / np.linalg.norm(a.tokens.vectors, axis=1) / np.linalg.norm(b.tokens.vectors, axis=1)
        assert cos.min() > 0.99
        # the sentence vector is the mean of the very token vectors that are stored
        mean = b.tokens.vectors.mean(axis=0)
        assert float(mean @ b.vector) / float(np.linalg.norm(mean)) == pytest.approx(1.0, abs=1e-6)


def test_a_store_ingested_in_bf16_explains_exactly_and_finds_the_fever_question(tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = runner.invoke(app, ["ingest", str(ARC_SAMPLE), "--text-field", "question.stem", "--store", str(store), "--precision", "bf16", "-q"])
    assert done.exit_code == 0, done.output
    found = runner.invoke(app, ["search", QUERY, "-k", "1", "--json", "--store", str(store)])
    hit = json.loads(found.output)["hits"][0]
    assert hit["document_key"] == "Mercury_7216895" and hit["cosine"] == pytest.approx(0.7217, abs=1e-3)
    explained = json.loads(runner.invoke(app, ["explain", "--id", str(hit["passage_id"]), "--json", "--store", str(store)]).output)
    assert abs(explained["residual"]) < 1e-4 and explained["score"] == pytest.approx(hit["cosine"], abs=1e-5)


def test_auto_runs_fp32_where_the_cpu_has_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_backend, "bf16_is_fast", lambda torch: False)
    assert SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "auto").precision == "fp32"
    monkeypatch.setattr(torch_backend, "bf16_is_fast", lambda torch: True)
    assert SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "auto").precision == "bf16"


def test_bf16_that_strays_from_fp32_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch_backend, "BF16_TOLERANCE", 0.0)
    with caplog.at_level(logging.WARNING):
        encoder = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", "bf16")
    assert encoder.precision == "fp32"
    assert "ingesting in float32" in caplog.text


def test_precision_is_checked_like_any_setting(tmp_path: Path) -> None:
    with pytest.raises(semsearch.ConfigError, match="precision"):
        semsearch.open(tmp_path / "s", create=True, precision="fp16")
