"""Store schema, migrations, codecs and the index against brute force."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from semsearch.codec import Float16Codec, f32_from_bytes, f32_to_bytes
from semsearch.config import load_settings
from semsearch.documents import Document
from semsearch.errors import ConfigError, StoreError
from semsearch.index import VectorIndex
from semsearch.indexing import build_index, open_index
from semsearch.ingest import ingest
from semsearch.store import SCHEMA_VERSION, Store, migrations


def test_migrations_create_every_table_from_blank(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", create=True) as st:
        assert {"meta", "documents", "passages", "tokens", "queries"} <= set(st.db.table_names())
        assert st.schema_version() == SCHEMA_VERSION == len(migrations.pending(st.db)) + SCHEMA_VERSION
        assert st.meta("format") == "semsearch-store"


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


def test_index_is_rebuilt_from_sqlite_when_deleted_or_truncated(tmp_path: Path, fake_encoder: object) -> None:
    from tests.conftest import HashEncoder

    settings = load_settings(overrides={"store": str(tmp_path / "s")})
    with Store.open(tmp_path / "s", create=True) as st:
        ingest(st, HashEncoder(), _docs(40), settings)
        reference = open_index(st)
        query = st.passage_vector(5)
        expected = reference.search(query, 5)[1]
    for damage in ("delete", "truncate", "sidecar"):
        index_file = tmp_path / "s" / "index.faiss"
        if damage == "delete":
            index_file.unlink()
        elif damage == "truncate":
            index_file.write_bytes(index_file.read_bytes()[:100])
        else:
            (tmp_path / "s" / "index.json").write_text("{not json")
        with Store.open(tmp_path / "s") as st:
            index = open_index(st)
            assert index.ntotal == 40
            np.testing.assert_array_equal(index.search(query, 5)[1], expected)
        assert index_file.stat().st_size > 1000


def test_index_catches_up_with_passages_it_missed(tmp_path: Path) -> None:
    from tests.conftest import HashEncoder

    settings = load_settings(overrides={"store": str(tmp_path / "s")})
    with Store.open(tmp_path / "s", create=True) as st:
        ingest(st, HashEncoder(), _docs(10), settings)
        old = VectorIndex.load(st.path)
        assert old is not None
        ingest(st, HashEncoder(), _docs(20), settings)
    # put the older index back, as if a crash had happened before the newer one was saved
    old.save(tmp_path / "s")
    with Store.open(tmp_path / "s") as st:
        assert open_index(st).ntotal == 20
        assert build_index(st, "Flat").ntotal == 20


def test_kept_passage_count_follows_inserts_replacements_and_deletes(tmp_path: Path) -> None:
    from semsearch.maintenance import check_store, delete_documents
    from tests.conftest import HashEncoder

    settings = load_settings(overrides={"store": str(tmp_path / "s")})
    with Store.open(tmp_path / "s", create=True) as st:
        ingest(st, HashEncoder(), _docs(12), settings)
        assert st.kept_stats() == st.counted_stats()
        assert st.passage_fingerprint()[0] == 12 and st.counts()["tokens"] > 12
        changed = [Document(d.key, d.text + " changed", source=d.source) for d in _docs(3)]
        ingest(st, HashEncoder(), changed, settings)  # replaces three documents
        assert st.kept_stats() == st.counted_stats()
        top_key = st.db.execute(
            "SELECT d.key FROM documents d JOIN passages p ON p.document_id = d.id ORDER BY p.id DESC LIMIT 1"
        ).fetchone()[0]
        delete_documents(st, [top_key])  # the highest id goes: max id must drop with it
        assert st.kept_stats() == st.counted_stats()
        assert st.passage_fingerprint()[0] == 11
        st.db.execute("UPDATE passage_stats SET count = 5, token_bytes = 7")
        report = check_store(st)
        assert any("counts kept" in p.what for p in report.problems)
        assert check_store(st, repair=True).repaired
        assert check_store(st).ok and st.kept_stats() == st.counted_stats()


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
    from semsearch.indexing import resolve_factory

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
    from tests.conftest import HashEncoder

    settings = load_settings(overrides={"store": str(tmp_path / "s"), "batch_size": 2, "sort_window": 1})
    real_write = Store.write_documents
    calls = {"n": 0}

    def failing_write(self: Store, docs: object, codec: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real_write(self, docs, codec)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "write_documents", failing_write)
    with Store.open(tmp_path / "s", create=True) as st, pytest.raises(OSError, match="disk full"):
        ingest(st, HashEncoder(), _docs(20), settings)
    monkeypatch.setattr(Store, "write_documents", real_write)
    with Store.open(tmp_path / "s") as st:
        assert st.counts()["documents"] == 4  # two whole chunks of two documents

    class BrokenEncoder(HashEncoder):
        def encode(self, texts: list[str]) -> list:  # type: ignore[override]
            if self.calls == 5:
                raise RuntimeError("model failed (simulated)")
            return super().encode(texts)

    with Store.open(tmp_path / "s") as st, pytest.raises(RuntimeError, match="model failed"):
        ingest(st, BrokenEncoder(), _docs(20), settings)
    with Store.open(tmp_path / "s") as st:
        documents = st.counts()["documents"]
        assert 4 <= documents < 20 and documents % 2 == 0
        ingest(st, HashEncoder(), _docs(20), settings)  # resumes: unchanged documents are skipped
        assert st.counts()["documents"] == 20 and st.passage_fingerprint()[0] == 20


def test_refined_fast_scan_index_filters_by_id_and_survives_a_delete(tmp_path: Path) -> None:
    """The 'auto' layout from 100k (IDMap2 over Refine over IVF fast-scan PQ), at toy size."""
    from semsearch.indexing import IndexOptions
    from semsearch.maintenance import check_store, delete_documents
    from tests.conftest import HashEncoder

    settings = load_settings(overrides={"store": str(tmp_path / "s"), "index": "IVF4,PQ4x4fs,Refine(SQfp16)"})
    with Store.open(tmp_path / "s", create=True) as st:
        ingest(st, HashEncoder(), _docs(80), settings)
        index = open_index(st, options=IndexOptions(nprobe=4, k_factor=80))
        ids, vectors = next(st.iter_vectors())
        query = vectors[7]
        allowed = ids[ids % 3 == 0]
        got_scores, got = index.search(query, 5, allowed)
        order = np.argsort(-(vectors @ query), kind="stable")
        expected = [int(i) for i in ids[order] if i % 3 == 0][:5]
        assert set(got[0].tolist()) <= set(allowed.tolist())
        assert got[0].tolist() == expected  # every list probed, every candidate re-scored: exact
        np.testing.assert_allclose(got_scores[0], np.sort(vectors[np.isin(ids, expected)] @ query)[::-1], atol=2e-3)
        delete_documents(st, ["d7"])
        assert 8 not in open_index(st).ids() and check_store(st).ok


def test_mmap_index_gives_the_same_hits(tmp_path: Path) -> None:
    from semsearch.indexing import IndexOptions
    from tests.conftest import HashEncoder

    settings = load_settings(overrides={"store": str(tmp_path / "s"), "index": "IVF4,Flat"})
    with Store.open(tmp_path / "s", create=True) as st:
        ingest(st, HashEncoder(), _docs(60), settings)
        query = st.passage_vector(9)
        plain = open_index(st).search(query, 5)[1]
        mapped = open_index(st, options=IndexOptions(mmap=True))
        np.testing.assert_array_equal(mapped.search(query, 5)[1], plain)
