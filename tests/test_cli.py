"""The CLI through typer's CliRunner, on the fake encoder: what a user types and sees."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semsearch.cli import app

runner = CliRunner()


def run(*args: str, input: str | bytes | None = None) -> object:
    return runner.invoke(app, list(args), input=input)


@pytest.fixture
def ingested(fake_encoder: object, corpus: Path) -> Path:
    result = run("ingest", str(corpus), "-q")
    assert result.exit_code == 0, result.output
    return Path("semsearch-store")


def search_json(*args: str) -> dict:
    result = run("search", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_reports_counts_and_splits_long_documents(fake_encoder: object, corpus: Path) -> None:
    result = run("ingest", str(corpus), "-q")
    assert result.exit_code == 0, result.output
    assert "Ingested 5 documents" in result.stderr
    info = json.loads(run("info", "--json").stdout)
    assert info["documents"] == 5
    assert info["passages"] > 5  # the long document became several passages
    assert info["index_vectors"] == info["passages"]
    assert info["token_codec"] == "SQ6" and info["token_pool"] == "words"  # the defaults of a new store
    assert info["bytes_per_token"] == pytest.approx(info["token_store_bytes"] / info["tokens"])
    assert 6 * 16 / 8 <= info["bytes_per_token"] < 6 * 16 / 8 + 1  # 6 bits a dimension, and 4 bytes a passage
    assert info["model"] == "hash-encoder"


def test_search_ranks_by_cosine_and_returns_metadata(ingested: Path, fake_encoder: object) -> None:
    data = search_json("A person infected with bacteria may have a fever.", "-k", "3", "--mode", "dense")
    hits = data["hits"]
    assert data["mode"] == "dense"
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["document_key"] == "fever"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5) and hits[0]["cosine"] == pytest.approx(hits[0]["score"], abs=1e-6)
    assert hits[0]["meta"] == {"topic": "health"}
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert [h["found_by"] for h in hits] == [{"dense": 1}, {"dense": 2}, {"dense": 3}]


def test_search_table_shows_rank_id_score_document_and_snippet(ingested: Path) -> None:
    result = run("search", "moon orbit", "-k", "2")
    assert result.exit_code == 0, result.output
    assert "moon" in result.stdout and "rank" in result.stdout and "score" in result.stdout
    assert "semsearch explain --id" in result.stdout


def test_long_passages_cover_the_document_with_overlap(ingested: Path) -> None:
    con = sqlite3.connect("semsearch-store/semsearch.db")
    spans = con.execute(
        "SELECT char_start, char_end FROM passages p JOIN documents d ON d.id = p.document_id "
        "WHERE d.key = 'long' ORDER BY ordinal"
    ).fetchall()
    text = con.execute("SELECT text FROM documents WHERE key = 'long'").fetchone()[0]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start < end  # neighbours overlap: nothing falls between passages


def test_search_like_excludes_itself_without_loading_a_model(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch import encoder

    monkeypatch.setattr(encoder, "load_encoder", lambda *a, **k: pytest.fail("model loaded"))
    data = search_json("--like", "1", "-k", "3")
    ids = [h["passage_id"] for h in data["hits"]]
    assert 1 not in ids and len(ids) == 3


def test_explain_uses_the_cached_query_and_its_sum_is_the_score(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hits = search_json("bacteria fever", "-k", "1")["hits"]
    from semsearch import encoder

    monkeypatch.setattr(encoder, "load_encoder", lambda *a, **k: pytest.fail("model loaded"))
    result = run("explain", "--id", str(hits[0]["passage_id"]), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["query"]["text"] == "bacteria fever"
    assert data["sum"] == pytest.approx(hits[0]["cosine"], abs=1e-3)  # the dense score; hybrid's own score is fused
    assert abs(data["residual"]) < 1e-3
    matrix = np.array(data["contribution"])
    assert matrix.shape == (len(data["query"]["labels"]), len(data["passage"]["labels"]))
    assert np.array(data["cosine"]).max() <= 1.0 + 1e-6


def test_explain_terminal_view_png_and_modes(ingested: Path, tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("search", "moon earth")
    png = tmp_path / "why.png"
    result = run("explain", "--id", "3", "--mode", "contribution", "--png", str(png))
    assert result.exit_code == 0, result.output
    assert "sum of the contribution matrix" in result.stdout
    assert "top pairs" in result.stdout and "% of the score" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = run("explain", "--id", "3", "--tokens")  # the default store keeps one vector per word
    assert refused.exit_code == 1 and "token_pool: pieces" in refused.output
    words = json.loads(run("explain", "--id", "3", "--json").stdout)
    monkeypatch.setenv("SEMSEARCH_TOKEN_POOL", "pieces")
    assert run("ingest", str(corpus), "-q", "--store", "pieces-store").exit_code == 0
    run("search", "moon earth", "--store", "pieces-store")
    pieces = json.loads(run("explain", "--id", "3", "--json", "--tokens", "--store", "pieces-store").stdout)
    assert len(pieces["passage"]["labels"]) > len(words["passage"]["labels"])  # orbits → orbi ##ts
    assert "orbits" in words["passage"]["labels"] and "##ts" in pieces["passage"]["labels"]
    assert words["sum"] == pytest.approx(pieces["sum"], abs=1e-4)  # two stores: float16 of word sums vs of pieces


def test_explain_against_query_text_and_another_passage(ingested: Path) -> None:
    by_text = json.loads(run("explain", "--id", "2", "--query", "sunlight food", "--json").stdout)
    assert by_text["against"].endswith("sunlight food")
    pair = json.loads(run("explain", "--id", "2", "--against", "3", "--json").stdout)
    assert pair["against"] == "passage 3"
    assert abs(pair["residual"]) < 1e-3


def test_ingest_again_skips_unchanged_and_replaces_changed(ingested: Path, corpus: Path, fake_encoder: object) -> None:
    before = json.loads(run("info", "--json").stdout)
    result = run("ingest", str(corpus), "-q")
    assert "Ingested 0 documents" in result.stderr and "5 unchanged" in result.stderr
    lines = corpus.read_text().splitlines()
    lines[2] = json.dumps({"id": "moon", "text": "The moon is made of rock and dust."})
    corpus.write_text("\n".join(lines) + "\n")
    result = run("ingest", str(corpus), "-q")
    assert "1 replaced" in result.stderr
    after = json.loads(run("info", "--json").stdout)
    assert after["documents"] == before["documents"] and after["passages"] == before["passages"]
    assert search_json("The moon is made of rock and dust.", "-k", "1")["hits"][0]["text"].startswith("The moon is made")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"id": "a", "text": "fine"}\n[1, 2]\n', "bad.jsonl:2: expected a JSON object"),
        ('{"id": "a", "text": "fine"}\n{"id": "b", "body": "x"}\n', "bad.jsonl:2: no field 'text'"),
        ('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n', "bad.jsonl:2: not valid JSON"),
        ('{"id": "a", "text": {"x": 1}}\n', "bad.jsonl:1: field 'text' is dict"),
        ('{"id": "a", "text": "one"}\n{"id": "a", "text": "two"}\n', "bad.jsonl:2: id 'a' is also used at bad.jsonl:1"),
        ('{"id": "a", "text": "   "}\n', "bad.jsonl:1: the text is empty"),
    ],
)
def test_bad_jsonl_names_file_and_line_and_keeps_the_store(ingested: Path, content: str, expected: str) -> None:
    before = json.loads(run("info", "--json").stdout)
    Path("bad.jsonl").write_text(content)
    result = run("ingest", "bad.jsonl", "-q")
    assert result.exit_code == 1
    assert expected in result.stderr
    assert result.stderr.count("\n") <= 3  # one message, not a traceback
    assert json.loads(run("info", "--json").stdout) == before


def test_invalid_utf8_names_the_line(fake_encoder: object) -> None:
    Path("latin.txt").write_bytes(b"good line\ncaf\xe9 au lait\n")
    result = run("ingest", "latin.txt", "-q")
    assert result.exit_code == 1
    assert "latin.txt:2: not valid UTF-8" in result.stderr
    assert not Path("semsearch-store/semsearch.db").exists()


def test_missing_file_and_unknown_format(fake_encoder: object) -> None:
    result = run("ingest", "nope.jsonl")
    assert result.exit_code == 1 and "nope.jsonl: no such file" in result.stderr
    Path("data.xml").write_text("<x/>")
    result = run("ingest", "data.xml")
    assert result.exit_code == 1 and "--format" in result.stderr


def test_empty_query_unknown_id_and_missing_store(ingested: Path) -> None:
    result = run("search", "   ")
    assert result.exit_code == 1 and "query is empty" in result.stderr
    result = run("explain", "--id", "999")
    assert result.exit_code == 1 and "no passage with id 999" in result.stderr
    result = run("search", "--like", "999")
    assert result.exit_code == 1 and "no passage with id 999" in result.stderr
    result = run("info", "--store", "elsewhere")
    assert result.exit_code == 1 and "no store at elsewhere" in result.stderr


def test_explain_before_any_search_says_what_to_do(ingested: Path) -> None:
    result = run("explain", "--id", "1")
    assert result.exit_code == 1 and "no search has been run" in result.stderr


def test_store_built_with_another_model_is_refused(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semsearch import encoder
    from tests.conftest import HashEncoder

    other = HashEncoder(dim=8)
    other.name = "other-model"
    monkeypatch.setattr(encoder, "load_encoder", lambda *a, **k: other)
    result = run("search", "fever", "--model", "other-model")
    assert result.exit_code == 1
    assert "built with model 'hash-encoder'" in result.stderr and "'other-model'" in result.stderr


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    Path("junk").mkdir()
    Path("junk/semsearch.db").write_bytes(b"this is not sqlite at all" * 100)
    result = run("info", "--store", "junk")
    assert result.exit_code == 1 and "not a semsearch store" in result.stderr
    Path("other").mkdir()
    con = sqlite3.connect("other/semsearch.db")
    con.execute("CREATE TABLE things (x)")
    con.commit()
    con.close()
    result = run("info", "--store", "other")
    assert result.exit_code == 1 and "another tool" in result.stderr


def test_stdin_csv_tsv_and_folders(fake_encoder: object) -> None:
    result = run("ingest", "-", "--format", "jsonl", "-q", input='{"id": "s1", "text": "from standard input"}\n')
    assert result.exit_code == 0, result.output
    Path("t.csv").write_text('id,text,year\nc1,"a csv row, with a comma",1999\n')
    Path("t.tsv").write_text("id\ttext\nt1\ta tsv row\n")
    Path("notes").mkdir()
    Path("notes/a.md").write_text("# A markdown note\n\nabout glaciers")
    Path("notes/b.txt").write_text("a plain text note about deserts")
    result = run("ingest", "t.csv", "t.tsv", "notes", "-q")
    assert result.exit_code == 0, result.output
    keys = {r[0] for r in sqlite3.connect("semsearch-store/semsearch.db").execute("SELECT key FROM documents")}
    assert keys == {"s1", "c1", "t1", "notes/a.md", "notes/b.txt"}
    hit = search_json("a csv row, with a comma", "-k", "1")["hits"][0]
    assert hit["document_key"] == "c1" and hit["meta"] == {"year": "1999"}


def test_csv_with_a_short_row_names_the_line(fake_encoder: object) -> None:
    Path("t.csv").write_text("id,text\nc1,fine\nc2\n")
    result = run("ingest", "t.csv")
    assert result.exit_code == 1 and "t.csv:3: 1 fields where the header has 2" in result.stderr


def test_queries_file_answers_several_queries_with_one_model_load(ingested: Path, fake_encoder: object) -> None:
    Path("q.txt").write_text("moon\nfever\n")
    loads = []
    from semsearch import encoder

    original = encoder.load_encoder
    encoder.load_encoder = lambda *a, **k: loads.append(a[6]) or original(*a, **k)  # type: ignore[assignment]
    try:
        data = search_json("--queries", "q.txt", "-k", "1")
        search_json("moon", "-k", "1")
    finally:
        encoder.load_encoder = original  # type: ignore[assignment]
    assert [d["query"] for d in data] == ["moon", "fever"]
    assert loads == [2, 1]  # one load each, told how many texts it will encode (one: a quicker start)


def test_the_spinner_shows_for_a_slow_model_load_only(ingested: Path, fake_encoder: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import time

    from semsearch import encoder
    from semsearch.cli import common

    shown = []
    monkeypatch.setattr(common.err, "status", lambda text, **_: shown.append(text) or contextlib.nullcontext())
    original = encoder.load_encoder
    monkeypatch.setattr(common, "SPINNER_AFTER", 30.0)
    assert run("search", "moon", "-k", "1").exit_code == 0
    monkeypatch.setattr(common, "SPINNER_AFTER", 0.05)
    monkeypatch.setattr(encoder, "load_encoder", lambda *a, **k: time.sleep(0.5) or original(*a, **k))
    assert run("search", "fever", "-k", "1").exit_code == 0
    assert shown == ["loading the model…"]


def test_search_why_lists_matched_word_pairs(ingested: Path) -> None:
    data = search_json("bacteria fever", "-k", "1", "--why", "3")
    why = data["hits"][0]["why"]
    assert len(why) == 3 and {w["query"] for w in why} <= {"bacteria", "fever"}
    assert why[0]["share"] >= why[1]["share"] >= why[2]["share"]


def test_config_file_and_env_choose_the_store(fake_encoder: object, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("config.yaml").write_text("store: from-file\n")
    assert run("ingest", str(corpus), "-q").exit_code == 0
    assert Path("from-file/semsearch.db").exists()
    monkeypatch.setenv("SEMSEARCH_STORE", "from-env")
    assert run("ingest", str(corpus), "-q").exit_code == 0
    assert Path("from-env/semsearch.db").exists()
    Path("config.yaml").write_text("stor: typo\n")
    result = run("info")
    assert result.exit_code == 1 and "unknown setting 'stor'" in result.stderr and "store" in result.stderr
