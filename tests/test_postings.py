"""BM25 from memory (a server's postings) against FTS5's own bm25(): the same lists, scores and
marks, while the store changes under it, and FTS5 whenever the memory cannot answer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import semsearch
from semsearch.core.fusion import query_terms
from semsearch.store.lexical import Lexical
from tests.conftest import ARC_SAMPLE, HashEncoder


def questions(start: int, count: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in ARC_SAMPLE.read_text().splitlines()[start : start + count]]
    return [{"id": r["id"], "text": r["question"]["stem"]} for r in rows]


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def arc_session(tmp_path: Path) -> Iterator[semsearch.Session]:
    """600 ARC questions in a store made with the fake encoder (BM25 does not need the model)."""
    s = semsearch.open(tmp_path / "store", create=True, encoder=HashEncoder())
    s.ingest([write(tmp_path / "arc.jsonl", questions(0, 600))])
    yield s
    s.close()


def fts5(lexical: Lexical) -> Lexical:
    """The same index answering from FTS5 only."""
    plain = Lexical(lexical._store)
    assert plain._memory(["water"]) is None
    return plain


def in_memory(lexical: Lexical) -> None:
    lexical.keep_in_memory(1_000_000)
    assert lexical._memory(["water"]) is not None, "the postings were read and are current"


def same_ranking(mine: list[tuple[int, float]], theirs: list[tuple[int, float]]) -> None:
    """The same scores rank by rank and the same passages, but for those tied with the last
    (FTS5 orders ties its own way, and a cut may fall among them)."""
    assert [round(s, 9) for _, s in mine] == [round(s, 9) for _, s in theirs]
    last = round(mine[-1][1], 9) if mine else None
    assert {(i, round(s, 9)) for i, s in mine if round(s, 9) != last} == {(i, round(s, 9)) for i, s in theirs if round(s, 9) != last}


def close(a: object, b: object) -> bool:
    """Equal JSON, floats within 1e-9."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9
    return a == b


QUERIES = [q["text"] for q in questions(700, 60)] + ["orbiting planets", "x_ray machines", "don't panic", "zzzz unknown"]


def test_memory_ranks_scores_and_marks_as_fts5_does(arc_session: semsearch.Session) -> None:
    lexical = arc_session.store.lexical
    plain = fts5(lexical)
    in_memory(lexical)
    ids = [h.passage_id for h in arc_session.search("water cycle evaporation", k=20, mode="dense").hits]
    for text in QUERIES:
        terms = plain.informative(query_terms(text))
        assert lexical.informative(query_terms(text)) == terms, text
        for k in (1, 10, 100, 1000):
            same_ranking(lexical.search(terms, k), plain.search(terms, k))
        same_ranking(lexical.search(terms, 5, only=ids), plain.search(terms, 5, only=ids))
        mine_marked, their_marked = lexical.marked(ids, terms), plain.marked(ids, terms)
        assert {i: t for i, (_, t) in mine_marked.items()} == {i: t for i, (_, t) in their_marked.items()}, text
        assert {i: s for i, (s, _) in mine_marked.items()} == pytest.approx({i: s for i, (s, _) in their_marked.items()}, abs=1e-9)
        mine, theirs = lexical.term_scores(ids, terms), plain.term_scores(ids, terms)
        assert {i: pytest.approx(v, abs=1e-9) for i, v in mine.items()} == theirs


def test_a_word_fts5_splits_is_asked_of_fts5(arc_session: semsearch.Session) -> None:
    lexical = arc_session.store.lexical
    in_memory(lexical)
    assert lexical._memory(["x_ray"]) is None  # the phrase "x ray" needs positions
    assert lexical._memory(["x", "ray"]) is not None


def test_changed_passages_are_answered_by_fts5_until_the_postings_are_read_again(arc_session: semsearch.Session, tmp_path: Path) -> None:
    lexical = arc_session.store.lexical
    in_memory(lexical)
    before = lexical._postings
    arc_session.ingest([write(tmp_path / "more.jsonl", questions(600, 100))])
    arc_session.delete([questions(0, 1)[0]["id"]])
    plain = fts5(lexical)
    for text in QUERIES[:20]:
        terms = plain.informative(query_terms(text))
        same_ranking(lexical.search(terms, 50), plain.search(terms, 50))  # right away: FTS5 answers
    deadline = time.monotonic() + 30
    while lexical._memory(["water"]) is None or lexical._postings is before:  # a read starts behind
        assert time.monotonic() < deadline, "the postings were not read again"
        time.sleep(0.2)
    assert lexical._postings is not None and lexical._postings.fingerprint == arc_session.store.stats.kept().fingerprint
    for text in QUERIES[:20]:
        terms = plain.informative(query_terms(text))
        same_ranking(lexical.search(terms, 50), plain.search(terms, 50))


def test_a_server_session_searches_as_a_cli_session_does(arc_session: semsearch.Session, tmp_path: Path) -> None:
    arc_session.close()
    with semsearch.open(tmp_path / "store", encoder=HashEncoder()) as cli, semsearch.open(tmp_path / "store", encoder=HashEncoder()) as server:
        server.warm_up()
        assert server.store.lexical._postings is not None
        for text in QUERIES[:15]:
            for mode in ("hybrid", "lexical"):
                a = cli.search(text, k=10, why=2, mode=mode).to_dict()
                b = server.search(text, k=10, why=2, mode=mode).to_dict()
                a.pop("query_id"), b.pop("query_id")
                assert close(b, a), text


def test_postings_are_not_kept_beyond_the_setting(tmp_path: Path, arc_session: semsearch.Session) -> None:
    arc_session.close()
    with semsearch.open(tmp_path / "store", encoder=HashEncoder(), lexical_memory=10) as s:
        s.warm_up()
        assert s.store.lexical._postings is None
        assert s.search("water", k=3, mode="lexical").hits


def test_passages_without_a_word_and_a_full_stem_cache_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch.store import postings

    rows = questions(0, 200) + [{"id": f"symbols-{i}", "text": "— ★ — … ★"} for i in range(5)]
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder()) as s:
        s.ingest([write(tmp_path / "with-symbols.jsonl", rows)])
        lexical = s.store.lexical
        monkeypatch.setattr(postings, "STEM_CACHE", 3)  # the cache starts again every few words
        in_memory(lexical)
        plain = fts5(lexical)
        for text in QUERIES[:20]:
            terms = plain.informative(query_terms(text))
            assert lexical.informative(query_terms(text)) == terms
            same_ranking(lexical.search(terms, 100), plain.search(terms, 100))  # N counts the passages without words
