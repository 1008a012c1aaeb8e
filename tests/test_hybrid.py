"""Hybrid search: the FTS5 index kept in step with the store, the three modes, fusion, the lexical
side of why and explain, snippets, grouping, and check/repair of the lexical index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from semsearch.core.fusion import RRF_K, combine, query_terms, rrf
from semsearch.errors import QueryError
from tests.conftest import HashEncoder

runner = CliRunner()


def keys(result: semsearch.SearchResult) -> list[str]:
    return [h.document_key for h in result.hits]


def test_lexical_mode_finds_exact_words_and_follows_deletes_and_changes(session: semsearch.Session, tmp_path: Path) -> None:
    assert keys(session.search("photosynthesis", k=1, mode="lexical")) == ["plants"]
    assert keys(session.search("PHOTOSYNTHESIS!", k=1, mode="lexical")) == ["plants"]  # case and punctuation
    assert keys(session.search("orbiting", k=1, mode="lexical")) == ["moon"]  # Porter stemming: orbits ~ orbiting
    session.delete(["plants"])
    assert session.search("photosynthesis", k=5, mode="lexical").hits == []
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({"id": "moon", "text": "Tides follow the moon.", "topic": "space"}) + "\n")
    session.ingest([changed])
    assert session.search("orbits", k=5, mode="lexical").hits == []  # the old text is gone from the index
    assert keys(session.search("tides", k=5, mode="lexical")) == ["moon"]
    assert session.check().ok


def test_hits_say_which_retrievers_found_them_and_rrf_is_what_it_says(tmp_path: Path, corpus: Path) -> None:
    session = semsearch.open(tmp_path / "rrf", create=True, encoder=HashEncoder(), fusion="rrf")
    session.ingest([corpus])
    hybrid = session.search("sedimentary rocks layers", k=5, mode="hybrid")
    dense = {h.passage_id: h.rank for h in session.search("sedimentary rocks layers", k=100, mode="dense").hits}
    lexical = {h.passage_id: h.rank for h in session.search("sedimentary rocks layers", k=100, mode="lexical").hits}
    assert hybrid.mode == "hybrid" and hybrid.hits[0].document_key == "rocks"
    for hit in hybrid.hits:
        assert hit.found_by.get("dense") == dense.get(hit.passage_id)
        assert hit.found_by.get("lexical") == lexical.get(hit.passage_id)
        expected = sum(1 / (RRF_K + r) for r in hit.found_by.values())
        assert hit.score == pytest.approx(expected)
        assert hit.cosine is not None and hit.bm25 is not None
    top = hybrid.hits[0]
    assert top.found_by == {"dense": 1, "lexical": 1}
    assert [h.score for h in hybrid.hits] == sorted((h.score for h in hybrid.hits), reverse=True)
    session.close()


def test_score_fusion_weights_the_normalised_scores(tmp_path: Path, corpus: Path) -> None:
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder(), fusion="score", hybrid_weight=1.0) as s:
        s.ingest([corpus])
        only_dense = s.search("volcanoes and magma", k=3)
        dense = s.search("volcanoes and magma", k=3, mode="dense")
        assert [h.passage_id for h in only_dense.hits] == [h.passage_id for h in dense.hits]
        assert only_dense.hits[0].score == pytest.approx(1.0)  # the best dense score, normalised


def test_fusion_functions() -> None:
    lists = {"dense": [(1, 0.9), (2, 0.5)], "lexical": [(2, 7.0), (3, 1.0)]}
    fused = rrf(lists)
    assert [f.id for f in fused] == [2, 1, 3] and fused[0].ranks == {"dense": 2, "lexical": 1}
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    combined = combine({**lists, "lexical": [(2, 7.0), (3, 4.0), (4, 1.0)]}, {"dense": 0.4, "lexical": 0.6})
    by_id = {f.id: f.score for f in combined}
    assert by_id[1] == pytest.approx(0.4)  # top dense, not in the lexical list
    assert by_id[2] == pytest.approx(0.6)  # bottom dense, top lexical
    assert by_id[3] == pytest.approx(0.6 * 0.5)  # half way down the lexical scores
    assert by_id[4] == pytest.approx(0.0) and [f.id for f in combined] == [2, 1, 3, 4]
    alone = {f.id: f.score for f in combine({"dense": [(1, 0.9), (2, 0.5)], "lexical": [(9, 3.0)]}, {"dense": 0.5, "lexical": 0.5})}
    assert alone[9] == pytest.approx(0.5)  # a single lexical hit is that retriever's best, not its worst
    assert query_terms('Fever, fever AND "NEAR(x" *') == ["fever", "and", "near", "x"]


@pytest.mark.parametrize("query", ['"fever', "fever OR", "NEAR(fever bacteria)", "fever*", "-fever", "col:fever", "AND", "^fever", "'; DROP TABLE x; --"])
def test_fts5_syntax_in_a_query_is_just_words(session: semsearch.Session, query: str) -> None:
    for mode in ("lexical", "hybrid"):
        session.search(query, k=3, mode=mode)
    assert session.info().documents == 5


def test_why_gives_the_bm25_parts_of_each_term_and_explain_the_same(session: semsearch.Session) -> None:
    result = session.search("bacteria fever person", k=2, why=3, mode="hybrid")
    top = result.hits[0]
    assert top.document_key == "fever"
    assert {t.term for t in top.terms} == {"bacteria", "fever", "person"}
    assert sum(t.bm25 for t in top.terms) == pytest.approx(top.bm25, rel=1e-6)  # the parts add up to the BM25 score
    assert sum(t.share for t in top.terms) == pytest.approx(1.0, abs=1e-3)
    assert top.reasons  # the dense pairs still come, for the cosine
    why = session.explain(top.passage_id)
    assert why.score == pytest.approx(top.cosine, abs=1e-5)  # the dense side is still exact
    assert why.lexical is not None and why.lexical.bm25 == pytest.approx(top.bm25, rel=1e-6)
    data = why.to_dict()
    assert data["lexical"]["score"] == "bm25" and {t["term"] for t in data["lexical"]["terms"]} == {"bacteria", "fever", "person"}
    assert session.explain(top.passage_id, against=result.hits[1].passage_id).lexical is None


def test_snippets_show_the_best_matching_sentence_with_the_words_marked(tmp_path: Path) -> None:
    text = "Volcanoes are mountains. Some are quiet for centuries. Magma chambers feed an eruption of lava and magma."
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder()) as s:
        s.ingest([{"id": "v", "text": text}])
        hit = s.search("magma eruption", k=1, mode="lexical").hits[0]
        assert hit.snippet is not None
        assert hit.snippet.text == "Magma chambers feed an eruption of lava and magma."
        marked = [hit.snippet.text[a:b] for a, b in hit.snippet.marks]
        assert marked == ["Magma", "eruption", "magma"]
        assert hit.text[hit.snippet.start :].startswith(hit.snippet.text)  # start is within the passage


def test_control_characters_in_a_passage_do_not_break_its_snippet(tmp_path: Path) -> None:
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder()) as s:
        s.ingest([{"id": "c", "text": "ctrl\x03 then the magma word\x02 here."}])
        hit = s.search("magma", k=1, mode="lexical").hits[0]
        assert hit.snippet is not None and hit.bm25 is not None and hit.bm25 > 0


def test_group_by_document_gives_k_documents(session: semsearch.Session) -> None:
    passages = session.search("Sentence number talks about volcanoes", k=4, mode="lexical")
    assert keys(passages).count("long") >= 2  # the long document has several passages
    grouped = session.search("Sentence number talks about volcanoes", k=4, mode="lexical", group_by="document")
    assert len(set(keys(grouped))) == len(keys(grouped)) and keys(grouped)[0] == "long"
    for mode in ("dense", "hybrid"):
        grouped = session.search("volcanoes magma chambers", k=3, mode=mode, group_by="document")
        assert len(grouped.hits) == 3 and len(set(keys(grouped))) == 3
    with pytest.raises(QueryError):
        session.search("x", group_by="sentence")


def test_where_and_like_work_in_every_mode(session: semsearch.Session) -> None:
    for mode in ("dense", "lexical", "hybrid"):
        filtered = session.search("rocks layers volcanoes", k=10, where=[("topic", "geology")], mode=mode)
        assert filtered.hits and {h.meta["topic"] for h in filtered.hits} == {"geology"}
        rocks = session.search("sedimentary", k=1, mode="lexical").hits[0].passage_id
        like = session.like(rocks, k=3, mode=mode)
        assert rocks not in [h.passage_id for h in like.hits] and like.mode == mode
    with pytest.raises(QueryError):
        session.search("rocks", mode="fuzzy")


def test_check_finds_and_repair_rebuilds_a_damaged_lexical_index(session: semsearch.Session) -> None:
    path = session.path / "semsearch.db"
    session.close()
    con = sqlite3.connect(path)
    con.execute("DELETE FROM passage_text WHERE rowid IN (SELECT min(id) FROM passages)")
    con.execute("INSERT INTO passage_text (rowid, text) VALUES (999, 'ghost words')")
    con.commit()
    con.close()
    with semsearch.open(session.path, encoder=HashEncoder()) as s:
        report = s.check()
        problems = " ".join(p.what for p in report.problems)
        assert "missing from the lexical index" in problems and "passages that are gone" in problems
        repaired = s.check(repair=True)
        assert any("lexical" in r for r in repaired.repaired)
        assert s.check().ok
        assert keys(s.search("bacteria", k=1, mode="lexical")) == ["fever"]
        assert s.search("ghost", k=1, mode="lexical").hits == []


def test_cli_modes_json_and_errors(tmp_path: Path, corpus: Path, fake_encoder: object) -> None:
    assert runner.invoke(app, ["ingest", str(corpus), "-q"]).exit_code == 0
    result = runner.invoke(app, ["search", "photosynthesis sunlight", "--mode", "lexical", "--json", "--why", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "lexical" and data["hits"][0]["document_key"] == "plants"
    assert data["hits"][0]["found_by"] == {"lexical": 1} and data["hits"][0]["terms"]
    assert data["hits"][0]["snippet"]["marks"]
    table = runner.invoke(app, ["search", "photosynthesis sunlight", "--group-by", "document"])
    assert table.exit_code == 0 and "found by" in table.stdout and "hybrid" in table.stdout
    bad = runner.invoke(app, ["search", "x", "--mode", "fuzzy"])
    assert bad.exit_code == 2 and "--mode" in bad.output
    bad = runner.invoke(app, ["search", "x", "--group-by", "sentence"])
    assert bad.exit_code == 2 and "--group-by" in bad.output
    explained = runner.invoke(app, ["explain", "--id", str(data["hits"][0]["passage_id"])])
    assert explained.exit_code == 0 and "BM25" in explained.stdout and "a different score" in explained.stdout


@pytest.mark.parametrize("depth", [100, 1])
def test_each_hit_s_bm25_is_fts5_s_whether_or_not_the_lexical_list_held_it(tmp_path: Path, depth: int) -> None:
    words = "fever bacteria moon orbit rocks layers plants sunlight magma volcano".split()
    docs = [{"id": f"d{i}", "text": f"{words[i % 10]} and {words[(i * 3) % 10]} with {words[(i * 7) % 10]} fever."} for i in range(40)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder(), hybrid_depth=depth) as s:
        s.ingest([path])
        for query, k in (("magma volcano rocks", 8), ("orbit moon fever", 3), ("sunlight", 20)):
            for mode in ("hybrid", "lexical"):
                result = s.search(query, k=k, mode=mode)
                terms = s.store.lexical.informative(query_terms(query))
                direct = s.store.lexical.marked([h.passage_id for h in result.hits], terms, True)
                assert [h.bm25 for h in result.hits] == [direct.get(h.passage_id, (0.0, ""))[0] for h in result.hits]
                assert any(h.bm25 for h in result.hits)
