"""Word pooling and recode: a store of words explains exactly what a store of pieces explains at
the word level, `recode` rewrites a store in place (crash-safe, resumable), and `info` reports it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from semsearch.core.pooling import pool_words
from semsearch.errors import ConfigError, QueryError, StoreError
from semsearch.flows import maintenance
from tests.conftest import HashEncoder

runner = CliRunner()
DOCS = [
    {"id": f"d{i}", "text": f"Volcanoes erupt magma{i} while photosynthesising plantations grow; U.S. number {i}-{i * 7}."}
    for i in range(30)
]


def make(path: Path, **settings: object) -> semsearch.Session:
    settings.setdefault("token_codec", "float16")  # pooling compared without a codec's quantisation
    s = semsearch.open(path, create=True, encoder=HashEncoder(), **settings)
    s.ingest(DOCS)
    return s


def test_pooling_sums_each_words_pieces() -> None:
    enc = HashEncoder()
    tokens = enc.encode(["photosynthesising plantations"])[0].tokens
    words = pool_words(tokens, enc.special_tokens)
    assert words.pieces is not None and int(words.pieces.sum()) == len(tokens.vectors)
    assert len(words.vectors) == 4  # [CLS] photosynthesising plantations [SEP]
    np.testing.assert_allclose(words.vectors.sum(axis=0), tokens.vectors.sum(axis=0), atol=1e-5)
    assert [tokens.text[a:b] for a, b in words.offsets[1:3]] == ["photosynthesising", "plantations"]


def test_a_store_of_words_explains_exactly_what_a_store_of_pieces_does(tmp_path: Path) -> None:
    pieces, words = make(tmp_path / "p", token_pool="pieces"), make(tmp_path / "w", token_pool="words")
    assert words.info().token_pool == "words" and pieces.info().token_pool == "pieces"
    assert words.info().tokens < pieces.info().tokens
    assert words.info().token_store_bytes < 0.7 * pieces.info().token_store_bytes
    for query in ("photosynthesis magma", "U.S. volcanoes number 7"):
        a, b = pieces.search(query, k=3, mode="dense"), words.search(query, k=3, mode="dense")
        assert [h.passage_id for h in a.hits] == [h.passage_id for h in b.hits]
        for hit in a.hits:
            ea, eb = pieces.explain(hit.passage_id), words.explain(hit.passage_id)
            assert ea.decomposition.doc.labels == eb.decomposition.doc.labels
            np.testing.assert_allclose(eb.contribution, ea.contribution, atol=5e-5)  # float16 of sums vs of pieces
            np.testing.assert_allclose(eb.cosine, ea.cosine, atol=2e-3)
            np.testing.assert_allclose(eb.decomposition.impact, ea.decomposition.impact, atol=5e-5)
            assert abs(eb.score - eb.index_score) < 1e-4 and abs(eb.score - ea.score) < 1e-4
    with pytest.raises(QueryError, match="token view needs word pieces"):
        words.explain(a.hits[0].passage_id, level="token")
    pieces.explain(a.hits[0].passage_id, level="token")
    pieces.close()
    words.close()


def test_recode_pools_and_changes_the_codec_in_place(tmp_path: Path) -> None:
    s = make(tmp_path / "s", token_pool="pieces")
    hit = s.search("photosynthesis magma", k=1, mode="dense").hits[0]
    before = s.explain(hit.passage_id)
    report = s.recode(pool="words")
    assert report.before.token_pool == "pieces" and report.after.token_pool == "words"
    assert report.after.token_store_bytes < report.before.token_store_bytes and report.passages == s.info().passages
    after = s.explain(hit.passage_id)
    np.testing.assert_allclose(after.contribution, before.contribution, atol=5e-5)
    report = s.recode(codec="SQ8")
    assert report.after.token_codec == "SQ8" and report.after.bytes_per_token < report.before.bytes_per_token
    coded = s.explain(hit.passage_id)
    assert abs(coded.score - coded.index_score) < 1e-4  # the codec keeps the sum exact
    assert s.check().ok
    assert not s.recode(codec="SQ8").changed
    with pytest.raises(ConfigError, match="cannot be recoded back"):
        s.recode(pool="pieces")
    with pytest.raises(StoreError, match="recode --codec float16"):
        s.ingest([{"id": "x", "text": "y"}])  # this session's settings still ask for float16 pieces
    s.close()
    with pytest.raises(StoreError, match="pooled pieces cannot come back"):
        semsearch.open(tmp_path / "s", encoder=HashEncoder(), token_pool="pieces").ingest([{"id": "x", "text": "y"}])
    with semsearch.open(tmp_path / "s", encoder=HashEncoder()) as later:  # settings left empty: the store's
        later.ingest([{"id": "new", "text": "Glaciers carve valleys."}])
        found = later.search("glaciers", k=1, mode="lexical").hits[0]
        assert later.explain(found.passage_id).decomposition.doc.labels[1] == "Glaciers"
    with pytest.raises(StoreError, match="recode --codec float16"):
        semsearch.open(tmp_path / "s", encoder=HashEncoder(), token_codec="float16").ingest([{"id": "x", "text": "y"}])


def test_an_interrupted_recode_leaves_the_store_as_it_was_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(tmp_path / "s", token_pool="pieces")
    hit = s.search("photosynthesis magma", k=1, mode="dense").hits[0]
    before = s.explain(hit.passage_id)
    monkeypatch.setattr(maintenance, "RECODE_BATCH", 7)
    calls = []

    def crash(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.recode(codec="SQ8", pool="words", progress=crash)
    assert s.info().token_codec == "float16" and s.info().token_pool == "pieces"  # nothing swapped
    np.testing.assert_allclose(s.explain(hit.passage_id).contribution, before.contribution)
    assert s.check().ok
    s.delete(["d0"])  # the store stays writable between the interruption and the rerun
    resumed: list[int] = []
    s.recode(codec="SQ8", pool="words", progress=lambda done, total: resumed.append(done))
    assert resumed[0] == 7  # it went on from the 21 passages written before the interruption
    assert s.info().token_codec == "SQ8" and s.info().token_pool == "words" and s.check().ok
    con = sqlite3.connect(tmp_path / "s" / "semsearch.db")
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tokens_recode'").fetchone()[0] == 0
    con.close()
    s.close()


def test_another_process_sees_the_recoded_tokens(tmp_path: Path) -> None:
    reader = make(tmp_path / "s", token_pool="pieces")
    hit = reader.search("photosynthesis magma", k=1, mode="dense").hits[0]
    reader.explain(hit.passage_id)  # its codec is loaded
    with semsearch.open(tmp_path / "s", encoder=HashEncoder()) as writer:
        writer.recode(codec="SQ4", pool="words")
    again = reader.explain(hit.passage_id)
    assert abs(again.score - again.index_score) < 1e-4 and len(again.decomposition.doc.labels) > 3
    reader.close()


def test_recode_command(tmp_path: Path, corpus: Path, fake_encoder: object) -> None:
    assert runner.invoke(app, ["ingest", str(corpus), "-q"]).exit_code == 0
    info = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert info["token_pool"] == "words" and info["token_codec"] == "SQ6"  # the defaults for a new store
    result = runner.invoke(app, ["recode", "--codec", "SQ4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["before"]["token_codec"] == "SQ6" and data["after"]["token_codec"] == "SQ4"
    assert data["after"]["token_bytes_per_passage"] < data["before"]["token_bytes_per_passage"]
    text = runner.invoke(app, ["recode", "--codec", "SQ4"])
    assert text.exit_code == 0 and "nothing to do" in text.stdout
    assert runner.invoke(app, ["recode"]).exit_code == 2
    assert runner.invoke(app, ["recode", "--pool", "letters"]).exit_code == 2
    bad = runner.invoke(app, ["recode", "--codec", "ZIP9"])
    assert bad.exit_code == 1 and "ZIP9" in bad.output
    assert runner.invoke(app, ["explain", "--id", "1", "--tokens"]).exit_code == 1
