"""The library API that every front end shares, its JSON forms, threads, and the layering rules."""

from __future__ import annotations

import ast
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from tests.conftest import REPO, HashEncoder

PACKAGE = REPO / "semsearch"


def test_the_readme_example_runs_end_to_end(session: semsearch.Session) -> None:
    result = session.search("bacteria fever", k=3, why=2)
    assert [h.rank for h in result.hits] == [1, 2, 3] and result.hits[0].document_key == "fever"
    assert len(result.hits[0].reasons) == 2
    why = session.explain(result.hits[0].passage_id)
    assert why.query_id == result.query_id and why.against.startswith(f"query {result.query_id}:")
    assert why.score == pytest.approx(float(why.contribution.sum()), abs=1e-6)
    assert why.score == pytest.approx(result.hits[0].cosine, abs=1e-4)
    assert why.cosine.shape == why.contribution.shape


def test_every_call_of_the_api_returns_its_typed_result(session: semsearch.Session, tmp_path: Path) -> None:
    info = session.info()
    assert isinstance(info, semsearch.StoreInfo) and info.documents == 5 and info.model == "hash-encoder"
    first = session.search("volcanoes magma").hits[0]
    like = session.like(first.passage_id, k=2)
    assert like.query_id is None and first.passage_id not in [h.passage_id for h in like.hits]
    against = session.explain(first.passage_id, against=like.hits[0].passage_id)
    assert against.against == f"passage {like.hits[0].passage_id}" and against.query_id is None
    assert session.check().ok
    built = session.build_index("HNSW16")
    assert isinstance(built, semsearch.IndexReport) and built.vectors == info.passages
    assert session.info().index_factory == "HNSW16" and session.check().ok
    deleted = session.delete(["moon"])
    assert deleted.documents == 1 and session.info().documents == 4
    with pytest.raises(semsearch.NotFoundError, match="no document with key 'moon'"):
        session.delete(["moon"])
    report = session.evaluate({"q1": "fever bacteria"}, {"q1": {"fever": 1}}, k=3)
    assert report.measures["nDCG@3"] == pytest.approx(1.0)
    with pytest.raises(semsearch.QueryError):
        session.search("   ")
    with pytest.raises(semsearch.QueryError):
        session.search("fever", k=0)


def test_ingest_takes_records_as_well_as_paths(tmp_path: Path) -> None:
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder()) as s:
        report = s.ingest([{"id": "a", "text": "red apples", "kind": "fruit"}, {"text": "green leaves"}])
        assert (report.documents, report.passages) == (2, 2)
        hit = s.search("apples", k=1).hits[0]
        assert hit.document_key == "a" and hit.meta == {"kind": "fruit"}
        assert s.passage(hit.passage_id).text == "red apples"
        with pytest.raises(semsearch.InputError, match="<record 1>: no field 'text'"):
            s.ingest([{"body": "no text field"}])
        skipped = s.ingest([{"body": "no text field"}, {"id": "b", "text": "blue sky"}], on_error="skip")
        assert skipped.documents == 1 and skipped.rejected[0].source == "<record 1>"
        assert skipped.skipped_file and Path(skipped.skipped_file).is_file()


def test_a_session_without_a_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(semsearch.StoreError, match="run 'semsearch ingest' first"):
        semsearch.open(tmp_path / "none")
    with semsearch.open(tmp_path / "new", create=True, encoder=HashEncoder()) as s:
        with pytest.raises(semsearch.StoreError, match="no store at"):
            s.info()
        assert not (tmp_path / "new").exists()  # nothing is made before the first ingest


def test_the_cli_json_is_the_result_json(session: semsearch.Session, fake_encoder: HashEncoder) -> None:
    runner = CliRunner()
    store = str(session.path)
    cli = json.loads(runner.invoke(app, ["search", "moon earth", "-k", "3", "--why", "2", "--store", store, "--json"]).stdout)
    lib = session.search("moon earth", k=3, why=2).to_dict()
    assert cli["hits"] == lib["hits"] and cli["query"] == lib["query"]
    pid = lib["hits"][0]["passage_id"]
    cli_expl = json.loads(runner.invoke(app, ["explain", "--id", str(pid), "--store", store, "--json"]).stdout)
    assert cli_expl == json.loads(json.dumps(session.explain(pid).to_dict(8)))
    assert cli_expl["top_pairs"][0].keys() == lib["hits"][0]["why"][0].keys()  # one shape for a pair
    cli_info = json.loads(runner.invoke(app, ["info", "--store", store, "--json"]).stdout)
    assert cli_info == session.info().to_dict()


def test_explaining_other_text_leaves_the_last_searchs_query_the_default(session: semsearch.Session) -> None:
    result = session.search("plants sunlight")
    pid = result.hits[0].passage_id
    other = session.explain(pid, query="rocks in layers")
    assert other.query_id is None and other.against == "query: rocks in layers"
    assert session.explain(pid).query_id == result.query_id


def test_eight_threads_searching_one_session_return_what_one_thread_returns(session: semsearch.Session) -> None:
    queries = ["fever bacteria", "moon orbit", "sedimentary layers", "volcanoes magma", "photosynthesis food"] * 4
    expected = [_essence(session, q) for q in queries]
    results: dict[int, list[object]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            results[n] = [_essence(session, q) for q in queries]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(results[n] == expected for n in range(8))


def _essence(session: semsearch.Session, query: str) -> list[object]:
    result = session.search(query, k=4, why=1)
    explained = session.explain(result.hits[0].passage_id, query_id=result.query_id)
    return [(h.passage_id, round(h.score, 6), [p.passage for p in h.reasons]) for h in result.hits] + [round(explained.score, 6)]


# layering -------------------------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    """The semsearch modules a file imports, as dotted names relative to the package."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m.removeprefix("semsearch.") for m in found if m == "semsearch" or m.startswith("semsearch.")}


LAYER = {"core": 0, "errors": 0, "config": 0, "documents": 1, "encoder": 1, "store": 1, "index": 1, "results": 2,
         "render": 3, "flows": 3, "session": 4, "shards": 4, "cli": 5, "server": 5, "__init__": 5, "__main__": 5}
PARTS = ("store", "index", "encoder")


def _layer_of(module: str) -> str:
    return module.split(".")[0]


def test_layers_only_import_downwards_and_parts_do_not_know_each_other() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        me = _layer_of(".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for module in _imports(path):
            other = _layer_of(module)
            if other not in LAYER or other == me or module == "semsearch":
                continue
            if LAYER[other] > LAYER[me] or (me in PARTS and other in PARTS) or {me, other} == {"render", "flows"}:
                problems.append(f"{path.relative_to(REPO)} imports {module}")
    assert not problems


def test_no_sql_outside_the_store_package() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "store":
            continue
        text = path.read_text()
        if ".execute(" in text or "import sqlite" in text or "SELECT " in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_results_round_trip_through_json(session: semsearch.Session) -> None:
    result = session.search("fever", why=2)
    for value in (result.to_dict(), session.explain(result.hits[0].passage_id).to_dict(), session.info().to_dict(), session.check().to_dict()):
        assert json.loads(json.dumps(value)) == value
    assert np.isfinite(session.explain(result.hits[0].passage_id).to_dict()["sum"])


def test_documents_given_as_objects_meet_the_same_rules_and_skip_keeps_the_first(tmp_path: Path) -> None:
    from semsearch.documents import Document

    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder()) as s:
        docs = [Document("a", "first a"), Document("b", "just b"), Document("a", "second a"), Document("c", "  ")]
        report = s.ingest(docs, on_error="skip")
        assert (report.documents, len(report.rejected)) == (2, 2)
        assert {d.key: d.passages for d in s.documents()} == {"a": 1, "b": 1}
        assert s.passage(s.search("first", k=1).hits[0].passage_id).text == "first a"
        with pytest.raises(semsearch.InputError, match="the text is empty"):
            s.ingest([Document("d", "")])


def test_a_session_lets_searches_run_while_it_ingests(session: semsearch.Session, tmp_path: Path) -> None:
    """Reads never wait for the Session's writer: a search on another thread answers mid-ingest."""
    import time

    from semsearch.documents import Document

    class Slow(HashEncoder):
        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            time.sleep(0.05)
            return super().encode(texts)

    slow = semsearch.open(session.path, encoder=Slow(), batch_size=2, sort_window=1)
    done = threading.Event()
    answered: list[float] = []

    def ingest() -> None:
        slow.ingest([Document(f"x{i}", f"extra document number {i}") for i in range(40)])
        done.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    while not done.is_set():
        start = time.perf_counter()
        slow.like(1, k=2)
        slow.info()
        answered.append(time.perf_counter() - start)
        time.sleep(0.01)
    thread.join()
    assert len(answered) >= 5 and max(answered) < 0.5
    assert slow.info().documents == 45
    assert len(slow.store._connections) <= 2  # this thread's and the ingesting thread's; the writer's was closed
    slow.close()
    with pytest.raises(semsearch.StoreError, match="was closed"):
        slow.info()


def test_queries_arriving_together_share_a_model_pass_and_get_their_own_vectors() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from semsearch.session import _SerialEncoder

    class Slow(HashEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            self.batches.append(len(texts))
            time.sleep(0.02)
            return super().encode(texts)

    inner = Slow()
    shared = _SerialEncoder(inner, batch=16)
    texts = [f"query number {i} about {'fever ' * (i % 5)}" for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda t: shared.encode([t])[0], texts))
    alone = HashEncoder()
    for text, encoded in zip(texts, got):
        (expected,) = alone.encode([text])
        assert encoded.tokens.text == text and np.array_equal(encoded.vector, expected.vector)
    assert sum(inner.batches) == 64 and 1 < max(inner.batches) <= 16 and len(inner.batches) < 64
    assert _SerialEncoder(inner).encode(["one"])[0].tokens.text == "one"  # without batch: one pass per call

    class Broken(HashEncoder):
        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            time.sleep(0.02)
            raise RuntimeError(f"model failed on {len(texts)} texts")

    failing = _SerialEncoder(Broken(), batch=16)

    def attempt(text: str) -> str:
        try:
            failing.encode([text])
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    with ThreadPoolExecutor(8) as pool:
        errors = list(pool.map(attempt, [f"q{i}" for i in range(24)]))
    assert all(e.startswith("model failed on") for e in errors)  # every caller hears of its pass's failure, none hangs
    assert any(e != "model failed on 1 texts" for e in errors)


def test_queries_searched_at_once_are_cached_together_each_under_its_own_id(session: semsearch.Session) -> None:
    from concurrent.futures import ThreadPoolExecutor

    commits: list[int] = []
    save_all = session.store.queries._save_all

    def counted(queries: list) -> list[int]:  # type: ignore[type-arg]
        commits.append(len(queries))
        time.sleep(0.01)
        return save_all(queries)

    session.store.queries._grouped._run = counted
    texts = [f"what makes a fever number {i}" for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(lambda t: session.search(t, k=2), texts))
    ids = [r.query_id for r in found]
    assert None not in ids and len(set(ids)) == 48
    assert sum(commits) == 48 and len(commits) < 48  # fewer transactions than queries
    for text, result in zip(texts[-20:], found[-20:]):  # the cache keeps the last query_cache (100) of them
        assert result.query_id is not None
        assert session.explain(result.hits[0].passage_id, query_id=result.query_id).against == f"query {result.query_id}: {text}"
