"""Sharded stores: N complete stores behind one --store DIR, searched as one."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch import shards
from semsearch.cli import app
from semsearch.errors import NotFoundError
from tests.conftest import HashEncoder

WORDS = "fever bacteria moon orbit rocks layers plants sunlight magma volcano river delta storm cloud cell energy".split()


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """64 short documents, some long enough to be split, with a topic field; four name a quasar."""
    rng = random.Random(7)
    docs = []
    for i in range(60):
        n = rng.choice([6, 9, 40])
        docs.append({"id": f"doc-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(n)) + ".", "topic": rng.choice(["a", "b"])})
    docs += [{"id": f"rare-{i}", "text": f"A quasar seen beyond the {WORDS[i]}.", "topic": "a"} for i in range(4)]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture
def pair(tmp_path: Path, many: Path) -> Iterator[tuple[semsearch.Session, semsearch.Session]]:
    """The same input in one store and in a store of three shards."""
    shards.create(tmp_path / "sharded", 3)
    one = semsearch.open(tmp_path / "one", create=True, encoder=HashEncoder(), token_codec="float16")
    three = semsearch.open(tmp_path / "sharded", encoder=HashEncoder(), token_codec="float16")
    one.ingest([many])
    three.ingest([many])
    yield one, three
    one.close()
    three.close()


def _hits(result: semsearch.SearchResult) -> list[tuple[str, int, int, float]]:
    return [(h.document_key, h.ordinal, h.rank, round(h.score, 6)) for h in result.hits]


def test_a_dense_search_over_shards_equals_one_store(pair: tuple[semsearch.Session, semsearch.Session]) -> None:
    one, three = pair
    assert isinstance(three, shards.ShardedSession)
    used = {i for i, s in enumerate(three.shards) if s.info().documents}
    assert used == {0, 1, 2}  # the hash spread the documents
    for query in ["fever bacteria", "moon orbit storm", "volcano magma rocks layers", "energy"]:
        for k in (1, 5, 20, 200):
            assert _hits(three.search(query, k=k, mode="dense")) == _hits(one.search(query, k=k, mode="dense"))
        where = [("topic", "a")]
        assert _hits(three.search(query, k=7, mode="dense", where=where)) == _hits(one.search(query, k=7, mode="dense", where=where))
    grouped = three.search("fever", k=5, mode="dense", group_by="document")
    assert _hits(grouped) == _hits(one.search("fever", k=5, mode="dense", group_by="document"))
    for mode in ("hybrid", "lexical"):  # BM25 is each shard's own: the same documents come back, not always in one order
        found = {h.document_key for h in three.search("quasar", k=10, mode=mode).hits if h.bm25}
        assert found == {h.document_key for h in one.search("quasar", k=10, mode=mode).hits if h.bm25} == {f"rare-{i}" for i in range(4)}


def test_grouped_searches_over_shards_rank_by_one_fusion(tmp_path: Path, many: Path) -> None:
    shards.create(tmp_path / "g", 3)
    with semsearch.open(tmp_path / "g", encoder=HashEncoder(), hybrid_depth=1000) as three:
        three.ingest([many])
        for mode in ("hybrid", "lexical", "dense"):
            for query in ("quasar volcano magma", "fever moon orbit"):
                grouped = three.search(query, k=6, mode=mode, group_by="document")
                flat = three.search(query, k=1000, mode=mode)
                firsts: list[tuple[str, int, float]] = []
                for hit in flat.hits:
                    if hit.document_key not in [key for key, _, _ in firsts]:
                        firsts.append((hit.document_key, hit.passage_id, hit.score))
                assert [(h.document_key, h.passage_id, h.score) for h in grouped.hits] == firsts[:6]
                assert [h.rank for h in grouped.hits] == list(range(1, len(grouped.hits) + 1))


def test_passage_ids_name_their_shard_and_explain_routes_by_them(pair: tuple[semsearch.Session, semsearch.Session]) -> None:
    one, three = pair
    result = three.search("fever bacteria moon", k=40, mode="dense", why=2)
    single = one.search("fever bacteria moon", k=40, mode="dense", why=2)
    assert {shards.split_id(h.passage_id)[0] for h in result.hits} == {0, 1, 2}
    for hit, same in zip(result.hits, single.hits):
        assert three.passage(hit.passage_id).text == hit.text == same.text
        assert [(p.query, p.passage) for p in hit.reasons] == [(p.query, p.passage) for p in same.reasons]
        why = three.explain(hit.passage_id)  # the last search's query, cached in shard 0
        assert why.query_id == result.query_id
        assert why.passage.id == hit.passage_id and why.passage.document_key == hit.document_key
        assert why.score == pytest.approx(one.explain(same.passage_id).score, abs=1e-6)
        assert why.score == pytest.approx(hit.score, abs=1e-4)
        assert float(why.decomposition.contribution.sum()) == pytest.approx(why.score, abs=1e-5)
    a, b = result.hits[0], next(h for h in result.hits if shards.split_id(h.passage_id)[0] != shards.split_id(result.hits[0].passage_id)[0])
    across = three.explain(a.passage_id, against=b.passage_id)
    same = one.explain(single.hits[0].passage_id, against=single.hits[result.hits.index(b)].passage_id)
    assert across.rows == f"passage {b.passage_id}"
    assert across.score == pytest.approx(same.score, abs=1e-6)
    assert three.explain(a.passage_id, query="fever").score == pytest.approx(one.explain(single.hits[0].passage_id, query="fever").score, abs=1e-6)
    like = three.like(a.passage_id, k=5, mode="dense")
    assert _hits(like) == _hits(one.like(single.hits[0].passage_id, k=5, mode="dense"))
    assert a.passage_id not in [h.passage_id for h in like.hits]
    with pytest.raises(NotFoundError, match="not one of its 3 shards"):
        three.explain(shards.global_id(7, 1))


def test_info_check_list_delete_and_reingest_over_shards(pair: tuple[semsearch.Session, semsearch.Session], many: Path) -> None:
    one, three = pair
    a, b = one.info(), three.info()
    assert (b.documents, b.passages, b.tokens, b.index_vectors, b.shards) == (a.documents, a.passages, a.tokens, a.index_vectors, 3)
    assert b.store_bytes == sum(s.info().store_bytes for s in three.shards)  # type: ignore[attr-defined]
    assert not three.check().problems and three.check().counts == one.check().counts
    assert sorted(d.key for d in three.documents()) == sorted(d.key for d in one.documents())
    with pytest.raises(NotFoundError, match="nothing was deleted"):
        three.delete(["doc-1", "no-such-doc"])
    assert three.info().documents == 64
    gone = three.delete(["doc-1", "doc-2", "doc-3", "doc-4"])
    assert gone.documents == 4 and gone.passages == one.delete(["doc-1", "doc-2", "doc-3", "doc-4"]).passages
    assert _hits(three.search("fever moon", k=60, mode="dense")) == _hits(one.search("fever moon", k=60, mode="dense"))
    again = three.ingest([many])
    assert (again.unchanged, again.documents) == (60, 4)  # each document went back to the shard it was in


def test_shard_of_is_stable_and_ids_fit_in_json_numbers() -> None:
    # the assignment is part of the store format: these values must never change
    assert [shards.shard_of(k, 4) for k in ("a", "doc-1", "Mercury_7216895")] == [2, 1, 1]
    top = shards.global_id(shards.MAX_SHARDS - 1, shards.LOCAL)
    assert top < 2**53 and shards.split_id(top) == (shards.MAX_SHARDS - 1, shards.LOCAL)
    assert shards.split_id(shards.global_id(0, 42)) == (0, 42)


def test_cli_makes_searches_and_explains_a_sharded_store(fake_encoder: object, many: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["shard", "create", "sh", "--shards", "2"])
    assert made.exit_code == 0 and "2 shards" in made.output
    again = runner.invoke(app, ["shard", "create", "sh", "--shards", "2"])
    assert again.exit_code == 1 and "not an empty directory" in again.output
    assert runner.invoke(app, ["shard", "create", "bad", "--shards", "0"]).exit_code == 1
    assert runner.invoke(app, ["ingest", str(many), "--store", "sh", "-q"]).exit_code == 0
    found = runner.invoke(app, ["search", "fever bacteria", "--store", "sh", "--json", "--mode", "dense"])
    assert found.exit_code == 0, found.output
    top = json.loads(found.output)["hits"][0]
    shown = runner.invoke(app, ["explain", "--id", str(top["passage_id"]), "--store", "sh", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["document"] == top["document_key"]
    info = json.loads(runner.invoke(app, ["info", "--store", "sh", "--json"]).output)
    assert info["shards"] == 2 and info["documents"] == 64
    assert runner.invoke(app, ["check", "--store", "sh"]).exit_code == 0
    assert runner.invoke(app, ["delete", "--doc", top["document_key"], "--store", "sh"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["info", "--store", "sh", "--json"]).output)["documents"] == 63
    parallel = tmp_path / "parallel"
    shards.create(parallel, 2)
    first = runner.invoke(app, ["ingest", str(many), "--store", str(parallel), "--shard", "1", "-q"])
    assert first.exit_code == 0, first.output
    with semsearch.open(parallel) as s:
        assert s.shards[1].info().documents == sum(shards.shard_of(f"doc-{i}", 2) == 1 for i in range(60)) + sum(  # type: ignore[attr-defined]
            shards.shard_of(f"rare-{i}", 2) == 1 for i in range(4)
        )
        assert not (parallel / "shard-000" / "semsearch.db").exists()
    rest = runner.invoke(app, ["ingest", str(many), "--store", str(parallel), "--shard", "0", "-q"])
    assert rest.exit_code == 0 and json.loads(runner.invoke(app, ["info", "--store", str(parallel), "--json"]).output)["documents"] == 64
    assert runner.invoke(app, ["ingest", str(many), "--store", str(parallel), "--shard", "2"]).exit_code == 1
    plain = runner.invoke(app, ["ingest", str(many), "--store", "plain", "--shard", "0"])
    assert plain.exit_code == 2 and "needs a sharded store" in plain.output
    empty = tmp_path / "empty"
    shards.create(empty, 2)
    nothing = runner.invoke(app, ["search", "fever", "--store", str(empty)])
    assert nothing.exit_code == 1 and "holds no documents yet" in nothing.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "shards.json").write_text("{not json")
    bad = runner.invoke(app, ["info", "--store", str(broken)])
    assert bad.exit_code == 1 and "shards.json cannot be read" in bad.output


def test_the_server_answers_over_a_sharded_store(pair: tuple[semsearch.Session, semsearch.Session]) -> None:
    from fastapi.testclient import TestClient

    from semsearch.server import create_app, warm_up

    one, three = pair
    warm_up(three)
    client = TestClient(create_app(three))
    found = client.get("/api/search", params={"q": "fever moon", "mode": "dense", "k": 5}).json()
    assert [h["document_key"] for h in found["hits"]] == [h.document_key for h in one.search("fever moon", k=5, mode="dense").hits]
    pid = found["hits"][-1]["passage_id"]
    why = client.get("/api/explain", params={"id": pid, "query_id": found["query_id"]}).json()
    assert why["passage_id"] == pid and np.isclose(why["sum"], why["score"])
    assert client.get(f"/api/passages/{pid}").json()["id"] == pid
    assert client.get("/api/info").json()["shards"] == 3


def test_an_80_column_table_shows_long_ids_whole(pair: tuple[semsearch.Session, semsearch.Session]) -> None:
    import io
    import re

    from rich.console import Console

    from semsearch.render.terminal import search_table

    _, three = pair
    result = three.search("fever bacteria moon", k=5, mode="dense")
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(search_table(result))
    lines = console.export_text().splitlines()[1:]
    assert all(len(line) <= 80 and line.rstrip()[-1] in "┓┃┩│└┘" for line in lines if line.strip())  # nothing cropped
    column = "".join(re.split(r"[│┃]", line)[2].strip() for line in lines if line.startswith("│"))
    assert "…" not in column and column == "".join(str(h.passage_id) for h in result.hits)  # folded, never cut
