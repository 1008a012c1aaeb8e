"""Nothing lost: kills, resumption, updates, deletes, filters, concurrency and hostile input."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from semsearch.cli import app
from semsearch.store import SCHEMA_VERSION, Store, migrations
from tests.conftest import REPO

runner = CliRunner()


def run(*args: str) -> object:
    return runner.invoke(app, list(args))


def snapshot(store: Path) -> dict:
    """The store's content, independent of row ids: what must survive any failure."""
    con = sqlite3.connect(store / "semsearch.db")
    docs = {k: (h, src) for k, h, src in con.execute("SELECT key, content_hash, source FROM documents")}
    rows = con.execute(
        "SELECT d.key, p.ordinal, p.char_start, p.char_end, p.vector, t.n, t.token_ids, t.offsets, t.codes "
        "FROM passages p JOIN documents d ON d.id = p.document_id JOIN tokens t ON t.passage_id = p.id"
    ).fetchall()
    con.close()
    passages = {(r[0], r[1]): hashlib.sha256(repr(r[2:]).encode()).hexdigest() for r in rows}
    return {"documents": docs, "passages": passages}


def write_corpus(path: Path, n: int, prefix: str = "doc") -> Path:
    lines = [
        json.dumps({
            "id": f"{prefix}{i}",
            "text": f"{prefix} {i} is about subject {i % 13} with words {' '.join(str(j) for j in range(i % 17))}",
            "group": str(i % 3),
        })
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def slow_ingest(args: list[str], pause: float = 0.01) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.slow_ingest", str(pause), "ingest", *args, "-q", "--batch-size", "4"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SEMSEARCH_SORT_WINDOW": "1"},
    )


def assert_sound(store: Path) -> None:
    result = run("check", "--store", str(store), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"]


# crashes and resumption --------------------------------------------------------------------
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_store(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 120)
    reference = tmp_path / "reference"
    proc = slow_ingest([str(corpus), "--store", str(reference)])
    started = time.perf_counter()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()  # type: ignore[union-attr]
    full = time.perf_counter() - started
    expected = snapshot(reference)
    rng = random.Random(7)
    killed = 0
    for trial in range(12):
        store = tmp_path / f"trial{trial}"
        proc = slow_ingest([str(corpus), "--store", str(store)])
        time.sleep(rng.uniform(0.0, full))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        if rng.random() < 0.5 and (store / "index.faiss").exists():
            (store / "index.faiss").write_bytes(b"")  # a torn index file must not matter either
        resume = slow_ingest([str(corpus), "--store", str(store)], pause=0.0)
        out, err = resume.communicate(timeout=120)
        assert resume.returncode == 0, err.decode()
        assert snapshot(store) == expected, f"trial {trial}"
        assert_sound(store)
        result = run("explain", "--id", "1", "--against", "2", "--store", str(store), "--json")
        assert result.exit_code == 0, result.output
    assert killed >= 10


def test_resume_skips_what_is_stored_instead_of_reencoding(tmp_path: Path, fake_encoder: object) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 30)
    assert run("ingest", str(corpus), "-q").exit_code == 0
    calls = fake_encoder.calls  # type: ignore[attr-defined]
    result = run("ingest", str(corpus), "-q")
    assert "30 unchanged skipped" in result.stderr
    assert fake_encoder.calls == calls  # type: ignore[attr-defined]


# maintenance -------------------------------------------------------------------------------
def test_check_finds_damage_and_repair_fixes_it(tmp_path: Path, fake_encoder: object) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 20)
    assert run("ingest", str(corpus), "-q").exit_code == 0
    assert_sound(Path("semsearch-store"))
    con = sqlite3.connect("semsearch-store/semsearch.db")
    con.execute("UPDATE tokens SET codes = substr(codes, 1, 10) WHERE passage_id = 3")
    con.commit()
    con.close()
    Path("semsearch-store/index.faiss").unlink()
    result = run("check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert "passage 3" in " ".join(p["problem"] for p in report["problems"])
    assert any("index.faiss is missing" in note and "next search" in note for note in report["notes"])  # it heals itself
    result = run("check", "--repair")
    assert result.exit_code == 0, result.output
    assert "removed 1 damaged document: doc2" in result.stdout and "rebuilt the index" in result.stdout
    assert run("ingest", str(corpus), "-q").exit_code == 0  # the removed document comes back
    assert json.loads(run("info", "--json").stdout)["documents"] == 20
    assert_sound(Path("semsearch-store"))


def test_delete_removes_documents_tokens_and_index_entries(tmp_path: Path, fake_encoder: object) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 10)
    assert run("ingest", str(corpus), "-q").exit_code == 0
    result = run("delete", "--doc", "doc3", "--doc", "missing")
    assert result.exit_code == 1 and "'missing'" in result.stderr and "nothing was deleted" in result.stderr
    assert json.loads(run("info", "--json").stdout)["documents"] == 10
    assert run("delete", "--doc", "doc3", "--doc", "doc4").exit_code == 0
    info = json.loads(run("info", "--json").stdout)
    assert info["documents"] == 8 and info["index_vectors"] == info["passages"]
    keys = {h["document_key"] for h in json.loads(run("search", "doc 3 is about subject 3", "-k", "10", "--json").stdout)["hits"]}
    assert "doc3" not in keys and "doc4" not in keys
    assert_sound(Path("semsearch-store"))


def test_where_filters_keep_k_results_and_bind_values(tmp_path: Path, fake_encoder: object) -> None:
    corpus = write_corpus(tmp_path / "corpus.jsonl", 30)
    assert run("ingest", str(corpus), "-q").exit_code == 0
    hits = json.loads(run("search", "subject", "-k", "7", "--where", "group=1", "--json").stdout)["hits"]
    assert len(hits) == 7 and all(h["meta"]["group"] == "1" for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    hits = json.loads(run("search", "subject", "--where", "group=1' OR '1'='1", "--json").stdout)["hits"]
    assert hits == []
    result = run("search", "subject", "--where", "nogroup")
    assert result.exit_code == 2 and "FIELD=VALUE" in result.output
    like = json.loads(run("search", "--like", "2", "-k", "4", "--where", "group=2", "--json").stdout)["hits"]
    assert len(like) == 4 and all(h["meta"]["group"] == "2" for h in like)


def test_on_error_skip_ingests_the_valid_records_and_reports_the_rest(tmp_path: Path, fake_encoder: object) -> None:
    Path("mixed.jsonl").write_bytes(
        b'{"id": "a", "text": "good one"}\n[1]\n{"id": "b", "text": "good two"}\n\xff\xfe\n{"id": "a", "text": "dup"}\n{"id": "c"}\n'
    )
    result = run("ingest", "mixed.jsonl", "--on-error", "skip", "-q")
    assert result.exit_code == 0, result.output
    assert "skipped 4 bad records" in result.stderr
    report = [json.loads(line) for line in Path("semsearch-store/skipped.jsonl").read_text().splitlines()]
    assert [r["source"] for r in report] == ["mixed.jsonl:2", "mixed.jsonl:4", "mixed.jsonl:5", "mixed.jsonl:6"]
    assert json.loads(run("info", "--json").stdout)["documents"] == 2


# migrations --------------------------------------------------------------------------------
def test_an_older_store_is_upgraded_by_the_migrations(tmp_path: Path) -> None:
    import sqlite_utils

    path = tmp_path / "old"
    path.mkdir()
    db = sqlite_utils.Database(path / "semsearch.db")
    migrations.apply(db, stop_before="m002_add_document_ingested_at")
    db["meta"].insert({"key": "format", "value": "semsearch-store"})
    db.execute("INSERT INTO documents (key, source, text, meta, content_hash) VALUES ('k', 's', 't', '{}', 'h')")
    for pid in (3, 7):
        db.execute(
            "INSERT INTO passages (id, document_id, ordinal, char_start, char_end, vector) VALUES (?, 1, 0, 0, 1, x'00')",
            [pid],
        )
    db.conn.commit()
    db.close()
    with Store.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 6
        assert store.db.execute("SELECT ingested_at FROM documents WHERE key = 'k'").fetchone()[0] > 0
        assert store.stats.kept().fingerprint == (2, 7)  # m004 counted what was there
        assert store.stats.counted().passages == 2
        assert sorted(pid for pid, _ in store.lexical.search(["t"], 10)) == [3, 7]  # m005 indexed what was there


# concurrency -------------------------------------------------------------------------------
def test_searches_keep_working_while_an_ingest_runs_and_a_second_ingest_is_refused(tmp_path: Path, fake_encoder: object) -> None:
    store = tmp_path / "store"
    first = write_corpus(tmp_path / "first.jsonl", 20, "old")
    assert run("ingest", str(first), "--store", str(store), "-q").exit_code == 0
    second = write_corpus(tmp_path / "second.jsonl", 150, "new")
    proc = slow_ingest([str(second), "--store", str(store)], pause=0.02)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:  # wait until it is writing
        con = sqlite3.connect(store / "semsearch.db")
        writing = con.execute("SELECT count(*) FROM documents").fetchone()[0] > 20
        con.close()
        if writing:
            break
        time.sleep(0.1)
    blocked = run("ingest", str(first), "--store", str(store), "-q")
    assert blocked.exit_code == 1 and "another semsearch process is writing" in blocked.stderr
    counts, searches = [], 0
    while proc.poll() is None and searches < 200:
        result = run("search", "subject 3", "-k", "5", "--store", str(store), "--json")
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)["hits"]
        assert len(hits) == 5
        con = sqlite3.connect(store / "semsearch.db")
        for hit in hits:  # never half a document: every passage of a hit's document is there
            total = con.execute(
                "SELECT count(*) FROM passages p JOIN documents d ON d.id = p.document_id WHERE d.key = ?",
                [hit["document_key"]],
            ).fetchone()[0]
            assert total >= 1 and hit["ordinal"] < total
        counts.append(con.execute("SELECT count(*) FROM documents").fetchone()[0])
        con.close()
        searches += 1
    assert proc.wait(timeout=120) == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert searches >= 3 and counts == sorted(counts)
    assert_sound(store)
    assert json.loads(run("info", "--store", str(store), "--json").stdout)["documents"] == 170


# hostile input -----------------------------------------------------------------------------
GOOD = st.builds(lambda i, t: json.dumps({"id": f"h{i}", "text": t}), st.integers(0, 30), st.text(min_size=1, max_size=40))
BAD_LINES = st.one_of(
    st.binary(max_size=40),
    st.just(b"\x00\x00"),
    st.just(b'{"id": "x", "text": "nul \\u0000 inside"}'),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"id": ["list"], "text": "wrong id type"}'),
    st.just(b'{"id": "y", "text": 12.5e400}'),
    st.just(b'{"id": "z", "text": ""}'),
    st.just(b"x" * 20_000),
    st.just(b'"just a string"'),
)
LINE = st.one_of(GOOD.map(lambda s: s.encode()), BAD_LINES)


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semsearch import encoder
    from tests.conftest import HashEncoder

    path = tmp_path_factory.mktemp("seed") / "store"
    corpus = write_corpus(path.parent / "seed.jsonl", 15, "seed")
    original = encoder.load_encoder
    encoder.load_encoder = lambda *a, **k: HashEncoder()  # type: ignore[assignment]
    try:
        assert run("ingest", str(corpus), "--store", str(path), "-q").exit_code == 0
    finally:
        encoder.load_encoder = original  # type: ignore[assignment]
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=8), fmt=st.sampled_from(["jsonl", "csv", "tsv", "txt"]), skip=st.booleans())
def test_hostile_input_either_ingests_or_stops_clearly_and_never_corrupts(
    lines: list[bytes], fmt: str, skip: bool, seeded_store: Path, tmp_path: Path, fake_encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semsearch import documents

    monkeypatch.setattr(documents, "MAX_LINE_BYTES", 10_000)  # "enormous" without gigabytes
    work = tmp_path / f"w{random.getrandbits(32)}"
    store = work / "store"
    shutil.copytree(seeded_store, store)
    before = snapshot(store)
    data = b"\n".join(lines) + b"\n"
    if fmt in ("csv", "tsv"):
        data = (b"id,text\n" if fmt == "csv" else b"id\ttext\n") + data
    source = work / f"input.{fmt}"
    source.write_bytes(data)
    args = ["ingest", str(source), "--store", str(store), "-q"] + (["--on-error", "skip"] if skip else [])
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert result.stderr.startswith("Error:") and "Traceback" not in result.stderr
        assert str(source) in result.stderr or "input." in result.stderr
        assert snapshot(store) == before
    else:
        after = snapshot(store)
        assert set(before["documents"]) <= set(after["documents"])
        assert all(after["documents"][k] == v for k, v in before["documents"].items())
    assert_sound(store)
    shutil.rmtree(work)
