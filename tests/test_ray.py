"""Ingest on a Ray cluster (a local one of two workers here, with the real model): the store it
makes equals a plain ingest's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch import shards
from semsearch.cli import app
from tests.conftest import ARC_SAMPLE

QUERIES = ["Which factor will most likely cause a person to develop a fever?", "What causes the seasons on Earth?", "how do plants make food"]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "arc-200.jsonl"
    path.write_text("".join(ARC_SAMPLE.read_text().splitlines(keepends=True)[:200]))
    return path


def _stored(session: semsearch.Session) -> dict[str, list[tuple[int, int, str, np.ndarray, np.ndarray, np.ndarray]]]:
    """Document key → its passages: offsets, text, sentence vector, token ids and token vectors."""
    found: dict[str, list[tuple[int, int, str, np.ndarray, np.ndarray, np.ndarray]]] = {}
    parts = session.shards if isinstance(session, shards.ShardedSession) else [session]
    for part in parts:
        store = part.store
        codec = store.codec()
        ids = [pid for (pid,) in store.db.execute("SELECT id FROM passages ORDER BY id").fetchall()]
        rows = store.documents.passages(ids)
        ids_found, vectors = store.documents.vectors_for(ids)
        vector_of = dict(zip(ids_found.tolist(), vectors))
        for pid in ids:
            row, tokens = rows[pid], store.tokens.of(pid, codec)
            found.setdefault(row.document_key, []).append((row.char_start, row.char_end, row.text, vector_of[pid], tokens.token_ids, tokens.vectors))
    return found


def _same(a: semsearch.Session, b: semsearch.Session) -> None:
    left, right = _stored(a), _stored(b)
    assert sorted(left) == sorted(right) and len(left) == 200
    for key, passages in left.items():
        assert [p[:3] for p in passages] == [p[:3] for p in right[key]]
        for x, y in zip(passages, right[key]):
            assert float(np.dot(x[3], y[3])) > 1 - 1e-5 and np.abs(x[3] - y[3]).max() < 1e-5
            assert np.array_equal(x[4], y[4])
            assert np.abs(x[5].astype(np.float32) - y[5].astype(np.float32)).max() < 2e-3  # float16 storage, one step at most
    for query in QUERIES:
        one, other = a.search(query, k=10, mode="dense").hits, b.search(query, k=10, mode="dense").hits
        assert [h.document_key for h in one] == [h.document_key for h in other]
        assert np.allclose([h.score for h in one], [h.score for h in other], atol=1e-5)


def test_a_ray_ingest_on_two_workers_equals_a_plain_ingest(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMSEARCH_TOKEN_CODEC", "float16")
    monkeypatch.setenv("SEMSEARCH_PRECISION", "fp32")  # bfloat16 passes differ with the threads that run them (~1e-4)
    runner = CliRunner()
    plain = runner.invoke(app, ["ingest", str(sample), "--text-field", "question.stem", "--store", "plain", "-q"])
    assert plain.exit_code == 0, plain.output
    shards.create(tmp_path / "sharded", 2)
    with_ray = runner.invoke(app, ["ingest", str(sample), "--text-field", "question.stem", "--store", "viaray", "-q", "--ray", "local", "--ray-workers", "2"])
    assert with_ray.exit_code == 0, with_ray.output
    assert "200 documents" in with_ray.output
    sharded = runner.invoke(app, ["ingest", str(sample), "--text-field", "question.stem", "--store", "sharded", "-q", "--ray", "local", "--ray-workers", "2"])
    assert sharded.exit_code == 0, sharded.output
    with semsearch.open("plain") as a, semsearch.open("viaray") as b, semsearch.open(tmp_path / "sharded") as c:
        _same(a, b)
        _same(a, c)
    import ray

    assert not ray.is_initialized()  # the local cluster it started was shut down


def test_ray_says_how_to_install_it(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    result = CliRunner().invoke(app, ["ingest", str(sample), "--text-field", "question.stem", "--store", "s", "-q", "--ray", "local"])
    assert result.exit_code == 1
    assert "pip install 'semsearch[ray]'" in result.output
    assert not Path("s", "semsearch.db").exists() or semsearch.open("s").info().documents == 0
    alone = CliRunner().invoke(app, ["ingest", str(sample), "--text-field", "question.stem", "--store", "s", "-q", "--ray-workers", "2"])
    assert alone.exit_code == 2 and "--ray-workers needs --ray" in alone.output
