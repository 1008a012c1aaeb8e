"""The tamper suite: each attack of the adversarial review on a copy of a small store, answered by
a one-line error or a correct repair, never a traceback, a mass deletion or a wrong answer."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semsearch.cli import app

runner = CliRunner()
ATTACKS: list[str] = []  # filled by the tests as they run; the closing note counts them


def run(*args: str, input: str | None = None) -> object:
    result = runner.invoke(app, list(args), input=input)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def one_line_error(result: object, *words: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr  # type: ignore[attr-defined]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def store(fake_encoder: object, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMSEARCH_TOKEN_CODEC", "float16")  # the codec attacks below assume float16 tokens
    assert run("ingest", str(corpus), "-q").exit_code == 0
    monkeypatch.delenv("SEMSEARCH_TOKEN_CODEC")
    assert run("search", "fever bacteria").exit_code == 0
    return Path("semsearch-store")


def sql(store: Path, statement: str, params: tuple = ()) -> None:
    con = sqlite3.connect(store / "semsearch.db")
    con.execute(statement, params)
    con.commit()
    con.close()


def documents(store: Path) -> int:
    return int(json.loads(run("info", "--store", str(store), "--json").stdout)["documents"])


def test_changed_meta_is_restored_from_the_stored_data_never_by_deleting(store: Path) -> None:
    ATTACKS.append("meta dim changed")
    sql(store, "UPDATE meta SET value = '768' WHERE key = 'dim'")
    report = json.loads(run("check", "--json").stdout)
    assert not report["ok"] and "stored vectors have 16" in report["problems"][0]["problem"]
    result = run("check", "--repair")
    assert result.exit_code == 0 and "restored meta dim = 16" in result.stdout
    assert documents(store) == 5 and run("search", "moon").exit_code == 0

    ATTACKS.append("token codec changed with no trained state")
    sql(store, "UPDATE meta SET value = 'SQ8' WHERE key = 'token_codec'")
    assert "they are float16" in run("check").stdout
    assert run("check", "--repair").exit_code == 0 and documents(store) == 5
    assert run("explain", "--id", "1").exit_code == 0


def test_a_repair_never_removes_many_documents_without_force(store: Path) -> None:
    ATTACKS.append("most token rows damaged")
    sql(store, "UPDATE tokens SET token_ids = substr(token_ids, 1, 4)")
    result = run("check", "--repair")
    assert result.exit_code == 1 and "nothing was removed" in result.stdout and documents(store) == 5
    assert run("check", "--repair", "--force").exit_code == 0 and documents(store) == 0


def test_two_stdin_ingests_keep_both(fake_encoder: object) -> None:
    ATTACKS.append("stdin documents with the same line numbers")
    assert run("ingest", "-", "-q", input="first text about rivers\n").exit_code == 0
    assert run("ingest", "-", "-q", input="second text about mountains\n").exit_code == 0
    assert json.loads(run("info", "--json").stdout)["documents"] == 2
    assert run("ingest", "-", "-q", input="first text about rivers\n").stderr.count("1 unchanged skipped") == 1


def test_overwritten_pages_are_reported_in_one_line(store: Path) -> None:
    ATTACKS.append("database pages overwritten")
    data = bytearray((store / "semsearch.db").read_bytes())
    page = 4096
    for at in range(2 * page, len(data) - page, 3 * page):
        data[at : at + 512] = os.urandom(512)
    (store / "semsearch.db").write_bytes(bytes(data))
    (store / "semsearch.db-wal").unlink(missing_ok=True)
    for args in (["check"], ["check", "--repair"], ["search", "moon"], ["info"]):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output


def test_a_passage_vector_of_the_wrong_length(store: Path) -> None:
    ATTACKS.append("sentence vector of the wrong length")
    sql(store, "UPDATE passages SET vector = x'00000000' WHERE id = 3")
    (store / "index.faiss").unlink()
    assert len(json.loads(run("search", "moon", "-k", "3", "--json").stdout)["hits"]) == 3  # the others still answer
    one_line_error(run("search", "--like", "3"), "passage 3", "check --repair")
    assert "passage 3: sentence vector has 4 bytes" in run("check").stdout


def test_short_token_blobs(store: Path) -> None:
    ATTACKS.append("token ids blob too short")
    sql(store, "UPDATE tokens SET token_ids = substr(token_ids, 1, 8) WHERE passage_id = 1")
    one_line_error(run("explain", "--id", "1"), "passage 1", "damaged")
    ATTACKS.append("offsets blob too short")
    sql(store, "UPDATE tokens SET offsets = substr(offsets, 1, 8) WHERE passage_id = 2")
    one_line_error(run("explain", "--id", "2"), "passage 2", "damaged")
    assert run("check", "--repair", "--force").exit_code == 0 and documents(store) == 3


def test_damaged_index_files_and_counts(store: Path, tmp_path: Path) -> None:
    import faiss

    before = json.loads(run("search", "moon", "--json").stdout)["hits"]
    ATTACKS.append("index.faiss of another dimension")
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(32))
    other.add_with_ids(np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32), np.arange(1, 6))
    faiss.write_index(other, str(store / "index.faiss"))
    meta = json.loads((store / "index.json").read_text())
    (store / "index.json").write_text(json.dumps({**meta, "dim": 32}))
    assert json.loads(run("search", "moon", "--json").stdout)["hits"] == before

    ATTACKS.append("index.json with max_id 1e400")
    (store / "index.json").write_text((store / "index.json").read_text().replace('"max_id": ', '"max_id": 1e400, "x": '))
    for args in (["search", "moon"], ["info"], ["check"]):
        assert run(*args).exit_code == 0, args

    ATTACKS.append("passage_stats row deleted")
    sql(store, "DELETE FROM passage_stats")
    assert json.loads(run("info", "--json").stdout)["passages"] > 5
    assert run("search", "moon").exit_code == 0
    assert "counts is missing" in run("check").stdout
    repaired = run("check", "--repair")
    assert repaired.exit_code == 0 and run("check").exit_code == 0, repaired.stdout


def test_huge_k_and_ids(store: Path) -> None:
    ATTACKS.append("-k 2000000000")
    hits = json.loads(run("search", "moon", "-k", "2000000000", "--json").stdout)["hits"]
    assert 5 <= len(hits) <= json.loads(run("info", "--json").stdout)["passages"]
    ATTACKS.append("ids above 2^63-1")
    for args in (["explain", "--id", str(2**64)], ["search", "--like", str(2**63)], ["explain", "--id", "1", "--query-id", str(2**70)]):
        result = run(*args)
        assert result.exit_code in (1, 2) and "Traceback" not in result.output, args


@pytest.mark.parametrize("factory", ["IVF0,Flat", "HNSW0", "IVF100000,Flat"])
def test_impossible_factories_change_nothing(store: Path, factory: str) -> None:
    ATTACKS.append(f"index build --factory {factory}")
    result = run("index", "build", "--factory", factory)
    one_line_error(result)
    assert json.loads(run("info", "--json").stdout)["index_factory"] == "auto"
    assert run("search", "moon").exit_code == 0


def test_a_full_disk_stops_ingest_in_one_line_and_searches_go_on(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch.index.vectors import VectorIndex
    from semsearch.store.documents import Documents

    ATTACKS.append("disk full while writing documents")
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"m{i}", "text": f"more text {i}"}) + "\n" for i in range(3)))

    def full(*args: object, **kwargs: object) -> object:
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Documents, "write", full)
        one_line_error(run("ingest", str(more), "-q"), "disk", "full", "run the same command again")
    assert documents(store) == 5 and run("search", "moon").exit_code == 0

    ATTACKS.append("disk full while writing the index")

    def no_room(self: object, directory: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(VectorIndex, "save", no_room)
    assert run("ingest", str(more), "-q").exit_code == 0  # documents are committed; the index lives in memory
    (store / "index.faiss").unlink()
    assert json.loads(run("search", "more text 2", "-k", "1", "--json").stdout)["hits"][0]["document_key"] == "m2"


def test_wrong_answers_are_caught(store: Path) -> None:
    ATTACKS.append("NaN sentence vector")
    sql(store, "UPDATE passages SET vector = ? WHERE id = 2", (np.full(16, np.nan, dtype="<f4").tobytes(),))
    assert "passage 2: sentence vector holds NaN" in run("check").stdout
    ATTACKS.append("passage with no tokens")
    sql(store, "UPDATE tokens SET n = 0, token_ids = x'', offsets = x'', codes = x'' WHERE passage_id = 4")
    assert "passage 4: it has no tokens" in run("check").stdout
    assert run("check", "--repair", "--force").exit_code == 0 and documents(store) == 3


def test_an_index_with_other_vectors_or_other_ids(store: Path) -> None:
    import faiss

    top = json.loads(run("search", "moon earth", "-k", "1", "--json").stdout)["hits"][0]
    index = faiss.read_index(str(store / "index.faiss"))
    ids = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    dim = index.d

    ATTACKS.append("index with the right ids and other vectors")
    fake = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    vectors = np.random.default_rng(1).normal(size=(len(ids), dim)).astype(np.float32)
    fake.add_with_ids(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), ids)
    faiss.write_index(fake, str(store / "index.faiss"))
    assert "the index's vectors differ" in run("check").stdout
    assert run("check", "--repair").exit_code == 0
    again = json.loads(run("search", "moon earth", "-k", "1", "--json").stdout)["hits"][0]
    assert again["passage_id"] == top["passage_id"] and again["score"] == pytest.approx(top["score"], abs=1e-5)

    ATTACKS.append("index whose ids are not in the store")
    shifted = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    shifted.add_with_ids(vectors, ids + 1000)
    faiss.write_index(shifted, str(store / "index.faiss"))
    meta = json.loads((store / "index.json").read_text())
    (store / "index.json").write_text(json.dumps({**meta, "max_id": int(ids.max())}))
    assert json.loads(run("search", "moon earth", "-k", "1", "--json").stdout)["hits"][0]["passage_id"] == top["passage_id"]


def test_csv_keeps_quoted_newlines_and_a_binary_file_is_an_error(fake_encoder: object, tmp_path: Path) -> None:
    ATTACKS.append("CSV field with a quoted newline")
    (tmp_path / "lava.csv").write_text('id,text\nv1,"Lava flows\nout of the volcano"\nv2,plain row\n')
    assert run("ingest", str(tmp_path / "lava.csv"), "-q").exit_code == 0
    listed = {d["key"]: d for d in json.loads(run("list", "--json").stdout)}
    assert set(listed) == {"v1", "v2"}
    hits = json.loads(run("search", "lava", "-k", "2", "--json").stdout)["hits"]
    assert {h["document_key"]: h["text"] for h in hits}["v1"] == "Lava flows\nout of the volcano"
    ATTACKS.append("binary file named .csv")
    (tmp_path / "junk.csv").write_bytes(os.urandom(3000).replace(b"\n", b"x").replace(b"\x00", b"y"))
    one_line_error(run("ingest", str(tmp_path / "junk.csv"), "-q"), "junk.csv")
    assert json.loads(run("info", "--json").stdout)["documents"] == 2


def test_read_only_store_serves_reads(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import semsearch.store as store_module

    ATTACKS.append("store on a read-only mount")
    monkeypatch.setattr(store_module.os, "access", lambda *a, **k: False)  # as a read-only mount answers (root passes chmod)
    assert run("search", "moon", "-k", "2").exit_code == 0
    assert run("explain", "--id", "1").exit_code == 0
    assert run("info").exit_code == 0
    one_line_error(run("delete", "--doc", "moon"), "read-only")


def test_foreign_sqlite_files_are_left_as_they_were(fake_encoder: object, corpus: Path, tmp_path: Path) -> None:
    ATTACKS.append("foreign SQLite file as a store")
    foreign = tmp_path / "other"
    foreign.mkdir()
    con = sqlite3.connect(foreign / "semsearch.db")
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    for args in (["info"], ["search", "moon"], ["ingest", str(corpus)]):
        one_line_error(run(*args, "--store", str(foreign)), "another tool")
    con = sqlite3.connect(foreign / "semsearch.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()
    assert sorted(p.name for p in foreign.iterdir()) == ["semsearch.db"]


def test_a_fifo_named_index_json_does_not_hang(store: Path) -> None:
    ATTACKS.append("FIFO named index.json")
    (store / "index.json").unlink()
    os.mkfifo(store / "index.json")
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.extend([run("info").exit_code, run("search", "moon").exit_code]))
    worker.start()
    worker.join(timeout=60)
    assert done == [0, 0]
    shutil.rmtree(store)


def test_a_document_of_many_passages_is_stored_whole_in_bounded_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import semsearch
    from semsearch.documents import Document
    from semsearch.flows import ingest as ingesting
    from semsearch.store.documents import Documents
    from tests.conftest import HashEncoder

    ATTACKS.append("a document far longer than a chunk (one line)")
    monkeypatch.setattr(ingesting, "SEGMENT", 5_000)  # a 60 kB line is "huge" at toy size
    text = " ".join(f"word{i} about the long river" for i in range(2_500))
    parts: list[int] = []
    real = Documents.write_part

    def counting(self: Documents, *args: object) -> int:
        parts.append(len(args[1]))  # type: ignore[arg-type]
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Documents, "write_part", counting)
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder(), batch_size=4, sort_window=2) as s:
        report = s.ingest([Document("long", text), Document("short", "a short one")])
        listed = {d.key: d.passages for d in s.documents()}
        assert report.documents == 2 and listed["short"] == 1
        assert len(parts) > 10 and max(parts) <= 4 * 4 and sum(parts) == listed["long"]  # parts of four batches
        ordinals = [s.passage(pid).ordinal for pid in range(1, listed["long"] + 1)]
        assert ordinals == list(range(listed["long"]))
        first, last = s.passage(1), s.passage(listed["long"])
        assert first.char_start == 0 and last.char_end == len(text)
        assert s.check().ok

    class Failing(HashEncoder):
        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            if self.calls == 20:
                raise RuntimeError("model failed (simulated)")
            return super().encode(texts)

    changed = text.replace("river", "sea")
    with semsearch.open(tmp_path / "s", encoder=Failing(), batch_size=4, sort_window=2) as s:
        with pytest.raises(RuntimeError, match="model failed"):
            s.ingest([Document("long", changed)])
        kept = s.passage(1).text  # the old document stands whole: the part-written one rolled back
        assert "river" in kept and "sea" not in kept
        assert s.check().ok and {d.key for d in s.documents()} == {"long", "short"}


def _claim_huge(data: bytes, true_size: int, claimed: int) -> bytes:
    """FAISS data whose size field (a little-endian uint64 equal to ``true_size``, in the header
    before any vector data) now claims ``claimed``."""
    field = true_size.to_bytes(8, "little")
    at = data.find(field)
    assert 0 < at < 200, "size field not found in the header"
    return data[:at] + claimed.to_bytes(8, "little") + data[at + 8 :]


def test_crafted_faiss_headers_fail_without_allocating(store: Path, tmp_path: Path) -> None:
    import faiss

    ATTACKS.append("index.faiss whose header claims 2 GB")
    outer = faiss.read_index(str(store / "index.faiss"))  # kept: the inner index lives inside it
    true_size = outer.ntotal * outer.d  # FAISS writes a flat index's vectors with their count of floats
    crafted = _claim_huge((store / "index.faiss").read_bytes(), true_size, 2 << 30)
    (store / "index.faiss").write_bytes(crafted)
    probe = (
        "import resource, sys\n"
        "from semsearch.index.vectors import VectorIndex\n"
        "from pathlib import Path\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"loaded = VectorIndex.load(Path({str(store.resolve())!r}))\n"
        "grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024\n"
        "print(loaded is None, grew)\n"
    )
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    refused, grew_mb = out.stdout.split()
    assert refused == "True" and int(grew_mb) < 200  # refused, and resident memory did not grow by the claim
    assert run("search", "moon").exit_code == 0  # rebuilt from the store

    ATTACKS.append("token codec blob whose header claims 2 GB")
    import semsearch
    from semsearch.errors import StoreError
    from tests.conftest import HashEncoder

    with semsearch.open(tmp_path / "sq", create=True, encoder=HashEncoder(dim=16), token_codec="SQ8") as s:
        s.ingest([{"id": f"d{i}", "text": f"document {i} about things"} for i in range(30)])
        blob = s.store.blob("token_codec")
        assert blob is not None
        s.store.set_blob("token_codec", _claim_huge(blob, 2 * 16, 2 << 30))  # SQ8 keeps 2 × dim trained floats
        with pytest.raises(StoreError, match="token codec"):
            s.explain(1, against=2)


def test_review_findings_on_the_robustness_work(tmp_path: Path) -> None:
    """Found by a review: a long first document in a store with a trained codec, identical
    documents in check's vector sample, damaged tokens against the index, a search while a long
    document is being written."""
    import time

    import semsearch
    from semsearch.documents import Document
    from tests.conftest import HashEncoder

    long = " ".join(f"word{i} about the long river" for i in range(700))
    with semsearch.open(tmp_path / "sq", create=True, encoder=HashEncoder(), token_codec="SQ8", batch_size=4, sort_window=2) as s:
        s.ingest([Document("long", long)] + [Document(f"d{i}", f"text {i}") for i in range(30)])
        assert s.check().ok and s.explain(1, against=2).score

    with semsearch.open(tmp_path / "same", create=True, encoder=HashEncoder()) as s:
        s.ingest([Document(f"d{i}", "exactly the same words") for i in range(30)])
        assert s.check().ok  # ties are found, not "vectors differ"
        sql(tmp_path / "same", "UPDATE tokens SET offsets = substr(offsets, 1, 8) WHERE passage_id = 3")
        problems = [p.what for p in s.check().problems]
        assert len(problems) == 1 and problems[0].startswith("passage 3: token ids or offsets do not hold")  # no index problem

    class Slow(HashEncoder):
        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            time.sleep(0.02)
            return super().encode(texts)

    with semsearch.open(tmp_path / "busy", create=True, encoder=Slow(), batch_size=4, sort_window=2) as s:
        s.ingest([Document("first", "a first document about rivers")])
        worker = threading.Thread(target=lambda: s.ingest([Document("long", long)]))
        worker.start()
        time.sleep(0.5)
        started = time.perf_counter()
        result = s.search("rivers", k=1)  # while the long document's transaction is open
        assert time.perf_counter() - started < 5 and result.hits
        worker.join()
        assert {d.key for d in s.documents()} == {"first", "long"}
