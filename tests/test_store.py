"""Store schema, migrations, codecs and the index against brute force, through the library API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import semsearch
from semsearch.core.codec import Float16Codec, f32_from_bytes, f32_to_bytes
from semsearch.documents import Document
from semsearch.errors import ConfigError, StoreError
from semsearch.index import VectorIndex, resolve_factory
from semsearch.store import SCHEMA_VERSION, Store, migrations
from semsearch.store.documents import Documents
from tests.conftest import HashEncoder


def session(path: Path, encoder: HashEncoder | None = None, **settings: object) -> semsearch.Session:
    return semsearch.open(path, create=True, encoder=encoder or HashEncoder(), **settings)


def test_migrations_create_every_table_from_blank(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as st:
        assert {"meta", "documents", "passages", "tokens", "queries"} <= set(st.db.table_names())
        assert st.schema_version() == SCHEMA_VERSION == len(migrations.pending(st.db)) + SCHEMA_VERSION
        assert st.meta.format == "semsearch-store"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "s", create=True).close()
    con = sqlite3.connect(tmp_path / "s" / "semsearch.db")
    con.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('semsearch', 'm999_future', '2030-01-01')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this semsearch"):
        Store.open(tmp_path / "s")


def test_float16_codec_round_trip_and_error_bound() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 384)).astype(np.float32)
    codec = Float16Codec(384)
    blob = codec.encode(vectors)
    assert len(blob) == 50 * 384 * 2
    back = codec.decode(blob, 50)
    assert np.abs(back - vectors).max() < 4e-3
    with pytest.raises(StoreError, match="check --repair"):
        codec.decode(blob[:-2], 50)
    v = rng.normal(size=384).astype(np.float32)
    np.testing.assert_array_equal(f32_from_bytes(f32_to_bytes(v)), v)


def test_flat_index_matches_numpy_top_k() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10, 510, dtype=np.int64)
    index = VectorIndex.create("Flat", 32)
    index.add(ids, vectors)
    query = vectors[7] + 0.1 * rng.normal(size=32).astype(np.float32)
    query /= np.linalg.norm(query)
    scores, found = index.search(query, 5)
    brute = np.argsort(-(vectors @ query))[:5]
    np.testing.assert_array_equal(found[0], ids[brute])
    np.testing.assert_allclose(scores[0], (vectors @ query)[brute], atol=1e-5)


def test_bad_factory_string_says_what_to_give() -> None:
    with pytest.raises(ConfigError, match="valid factory string"):
        VectorIndex.create("NotAnIndex99", 8)


def _docs(n: int) -> list[Document]:
    return [Document(key=f"d{i}", text=f"document {i} about topic {i % 7} and word{i}", source=f"x:{i}") for i in range(n)]


def test_index_is_rebuilt_from_sqlite_when_deleted_or_truncated(tmp_path: Path) -> None:
    with session(tmp_path / "s") as s:
        s.ingest(_docs(40))
        reference = s.keeper.current()
        query = s.store.documents.vector(5)
        expected = reference.search(query, 5)[1]
    for damage in ("delete", "truncate", "sidecar"):
        index_file = tmp_path / "s" / "index.faiss"
        if damage == "delete":
            index_file.unlink()
        elif damage == "truncate":
            index_file.write_bytes(index_file.read_bytes()[:100])
        else:
            (tmp_path / "s" / "index.json").write_text("{not json")
        with semsearch.open(tmp_path / "s") as s:
            index = s.keeper.current()
            assert index.ntotal == 40
            np.testing.assert_array_equal(index.search(query, 5)[1], expected)
        assert index_file.stat().st_size > 1000


def test_index_catches_up_with_passages_it_missed(tmp_path: Path) -> None:
    with session(tmp_path / "s") as s:
        s.ingest(_docs(10))
        old = VectorIndex.load(s.path)
        assert old is not None
        s.ingest(_docs(20))
    # put the older index back, as if a crash had happened before the newer one was saved
    old.save(tmp_path / "s")
    with semsearch.open(tmp_path / "s") as s:
        assert s.keeper.current().ntotal == 20
        assert s.build_index("Flat").vectors == 20


def test_kept_passage_count_follows_inserts_replacements_and_deletes(tmp_path: Path) -> None:
    with session(tmp_path / "s") as s:
        s.ingest(_docs(12))
        st = s.store
        assert st.stats.kept() == st.stats.counted()
        assert s.info().passages == 12 and s.info().tokens > 12
        changed = [Document(d.key, d.text + " changed", source=d.source) for d in _docs(3)]
        assert s.ingest(changed).replaced == 3
        assert st.stats.kept() == st.stats.counted()
        top_key = st.documents.passage(st.stats.kept().max_id).document_key
        assert s.delete([top_key]).passages == 1  # the highest id goes: max id must drop with it
        assert st.stats.kept() == st.stats.counted()
        assert s.info().passages == 11
        st.db.execute("UPDATE passage_stats SET count = 5, token_bytes = 7")
        report = s.check()
        assert any("counts kept" in p.what for p in report.problems)
        assert s.check(repair=True).repaired
        assert s.check().ok and st.stats.kept() == st.stats.counted()


@pytest.mark.parametrize(("codec", "per_token"), [("SQ8", 16), ("SQ4", 8), ("PQ4x4", 2)])
def test_trained_faiss_codecs_are_stored_and_explain_stays_close(
    codec: str, per_token: int, tmp_path: Path, fake_encoder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from semsearch.cli import app

    runner = CliRunner()
    monkeypatch.setenv("SEMSEARCH_TOKEN_CODEC", codec)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(f'{{"id": "d{i}", "text": "passage {i} about topic {i % 5} and more words"}}' for i in range(40)))
    result = runner.invoke(app, ["ingest", str(corpus), "-q"])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["info", "--json"])
    import json

    data = json.loads(info.stdout)
    header = 4 * data["passages"] / data["tokens"]  # a FAISS codec keeps 4 bytes a passage
    assert data["token_codec"] == codec and data["bytes_per_token"] == pytest.approx(per_token + header)
    runner.invoke(app, ["search", "topic 3 words"])
    expl = json.loads(runner.invoke(app, ["explain", "--id", "4", "--json"]).stdout)
    assert abs(expl["residual"]) < 1e-5  # the decomposition stays exact whatever the codec
    monkeypatch.setenv("SEMSEARCH_TOKEN_CODEC", "float16")
    result = runner.invoke(app, ["ingest", str(corpus), "-q"])
    assert result.exit_code == 1 and f"keeps tokens as '{codec}'" in result.stderr


def test_unknown_codec_is_refused_before_the_store_is_touched(tmp_path: Path, fake_encoder: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from semsearch.cli import app

    monkeypatch.setenv("SEMSEARCH_TOKEN_CODEC", "ZZ9")
    (tmp_path / "c.txt").write_text("one line\n")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "c.txt"), "-q"])
    assert result.exit_code == 1 and "FAISS has no codec 'ZZ9'" in result.stderr
    monkeypatch.setenv("SEMSEARCH_TOKEN_CODEC", "float16")
    assert CliRunner().invoke(app, ["ingest", str(tmp_path / "c.txt"), "-q"]).exit_code == 0


def test_auto_index_picks_by_size() -> None:
    assert resolve_factory("auto", 5_000, 384) == "Flat"
    assert resolve_factory("auto", 126_000, 384) == "IVF1024,PQ96x4fs,Refine(SQfp16)"
    assert resolve_factory("auto", 1_000_000, 384) == "IVF4096,PQ96x4fs,Refine(SQfp16)"
    assert resolve_factory("auto", 10_000_000, 768) == "IVF16384,PQ192x4fs,Refine(SQfp16)"
    assert resolve_factory("auto", 126_000, 390) == "IVF1024,Flat"
    assert resolve_factory("HNSW32", 10, 384) == "HNSW32"


def test_a_failing_write_or_encode_stops_ingest_with_its_error_and_keeps_whole_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing runs on its own thread: its failure must reach the caller, and nothing may hang."""
    small = {"batch_size": 2, "sort_window": 1}
    real_write = Documents.write
    calls = {"n": 0}

    def failing_write(self: Documents, docs: object, codec: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real_write(self, docs, codec)  # type: ignore[arg-type]

    monkeypatch.setattr(Documents, "write", failing_write)
    with session(tmp_path / "s", **small) as s, pytest.raises(OSError, match="disk full"):
        s.ingest(_docs(20))
    monkeypatch.setattr(Documents, "write", real_write)
    with semsearch.open(tmp_path / "s") as s:
        assert s.info().documents == 4  # two whole chunks of two documents

    class BrokenEncoder(HashEncoder):
        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            if self.calls == 5:
                raise RuntimeError("model failed (simulated)")
            return super().encode(texts)

    with session(tmp_path / "s", BrokenEncoder(), **small) as s, pytest.raises(RuntimeError, match="model failed"):
        s.ingest(_docs(20))
    with session(tmp_path / "s", **small) as s:
        documents = s.info().documents
        assert 4 <= documents < 20 and documents % 2 == 0
        report = s.ingest(_docs(20))  # resumes: unchanged documents are skipped
        assert report.unchanged == documents
        assert s.info().documents == 20 and s.info().passages == 20


def test_refined_fast_scan_index_filters_by_id_and_survives_a_delete(tmp_path: Path) -> None:
    """The 'auto' layout from 100k (IDMap2 over Refine over IVF fast-scan PQ), at toy size."""
    with session(tmp_path / "s", index="IVF4,PQ4x4fs,Refine(SQfp16)", nprobe=4, k_factor=80) as s:
        s.ingest(_docs(80))
        index = s.keeper.current()
        ids, vectors = next(s.store.documents.iter_vectors())
        query = vectors[7]
        allowed = ids[ids % 3 == 0]
        got_scores, got = index.search(query, 5, allowed)
        order = np.argsort(-(vectors @ query), kind="stable")
        expected = [int(i) for i in ids[order] if i % 3 == 0][:5]
        assert set(got[0].tolist()) <= set(allowed.tolist())
        assert got[0].tolist() == expected  # every list probed, every candidate re-scored: exact
        np.testing.assert_allclose(got_scores[0], np.sort(vectors[np.isin(ids, expected)] @ query)[::-1], atol=2e-3)
        s.delete(["d7"])
        assert 8 not in s.keeper.current().ids() and s.check().ok


def test_mmap_index_gives_the_same_hits(tmp_path: Path) -> None:
    with session(tmp_path / "s", index="IVF4,Flat") as s:
        s.ingest(_docs(60))
        query = s.store.documents.vector(9)
        plain = s.keeper.current().search(query, 5)[1]
    with semsearch.open(tmp_path / "s", mmap=True) as s:
        np.testing.assert_array_equal(s.keeper.current().search(query, 5)[1], plain)


def test_a_store_whose_creation_was_cut_short_can_be_created_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch.store import schema

    applied = schema.migrations.apply

    def cut_short(db: object, **kwargs: object) -> None:
        applied(db, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # as a kill after the tables, before the format marker

    monkeypatch.setattr(schema.migrations, "apply", cut_short)
    with pytest.raises(KeyboardInterrupt):
        Store.open(tmp_path / "store", create=True)
    monkeypatch.undo()
    with sqlite3.connect(tmp_path / "store" / "semsearch.db") as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0
    with semsearch.open(tmp_path / "store", create=True, encoder=HashEncoder()) as s:
        s.ingest([Document(key="a", text="A fever follows an infection.", source="t")])
        assert s.info().documents == 1
