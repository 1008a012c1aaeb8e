"""What a new user tripped on in the first hour, each checked as that user would look at it."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from tests.conftest import REPO, HashEncoder

runner = CliRunner()


def run(*args: str, input: str | None = None) -> object:
    return runner.invoke(app, list(args), input=input)


@pytest.fixture
def store(fake_encoder: object, corpus: Path) -> Path:
    assert run("ingest", str(corpus), "-q").exit_code == 0
    return Path("semsearch-store")


def test_version_flag(fake_encoder: object) -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"semsearch {semsearch.__version__}"


def test_why_alone_means_three_pairs_and_like_explains_too(store: Path) -> None:
    bare = json.loads(run("search", "volcanoes and magma", "--why", "--json").stdout)
    assert all(1 <= len(h["why"]) <= 3 for h in bare["hits"]) and max(len(h["why"]) for h in bare["hits"]) == 3
    assert json.loads(run("search", "--why", "volcanoes", "--json").stdout)["hits"][0]["why"]
    two = json.loads(run("search", "volcanoes and magma", "--why", "2", "--json").stdout)
    assert max(len(h["why"]) for h in two["hits"]) == 2
    like = json.loads(run("search", "--like", "1", "--why", "2", "--json").stdout)
    assert like["hits"] and all(h["why"] for h in like["hits"])


def test_an_index_the_store_is_too_small_for_says_what_fits(store: Path) -> None:
    result = run("index", "build", "--factory", "IVF1024,SQ8")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "needs at least 1,024 vectors" in result.stderr and "use IVF" in result.stderr
    assert run("search", "moon", "--json").exit_code == 0  # nothing was switched


def test_a_store_path_that_is_a_file(fake_encoder: object, corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for args in (["ingest", str(corpus), "--store", "afile"], ["info", "--store", "afile"], ["delete", "--doc", "x", "--store", "afile"]):
        result = run(*args)
        assert result.exit_code == 1 and "is a file, not a store directory" in result.stderr, args


def _explain_lines(store: Path, columns: int, *extra: str) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "semsearch", "explain", "--id", "1", "--store", str(store.resolve()), *extra],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_explain_fits_the_terminal_and_keeps_words_whole(store: Path, columns: int) -> None:
    assert run("search", "bacteria fever person").exit_code == 0
    lines = _explain_lines(store, columns, "--mode", "contribution")
    assert max(len(line) for line in lines) <= columns
    header = next(line for line in lines if line.startswith("query"))
    labels = json.loads(run("explain", "--id", "1", "--json").stdout)["passage"]["labels"]
    assert header.split()[0] == "query" and header.split()[-1] == "share"
    assert set(header.split()[1:-1]) <= set(labels)  # whole words, no column cut in half
    assert "bacteria" in header and "person" in header  # the words of the strongest pairs are shown
    assert "−-" not in "\n".join(lines)


def test_top_pairs_add_up_repeated_words_and_removal_lists_only_losses(store: Path) -> None:
    assert run("search", "fever fever fever bacteria").exit_code == 0
    data = json.loads(run("explain", "--id", "1", "--json").stdout)
    view = run("explain", "--id", "1").stdout
    pairs = [line for line in view.splitlines() if "of the score" in line and "↔" in line]
    assert len({tuple(line.split("of the score")[0].split()[:3]) for line in pairs}) == len(pairs)  # each word pair once
    assert "places)" in view  # fever (three times in the query) ↔ fever is one pair
    listed = view.split("lower the score most: ")[1].splitlines()[0]
    assert all(item.rsplit(" ", 1)[1].startswith("-") for item in listed.split(", "))
    losses = {data["passage"]["labels"][j] for j, v in enumerate(data["passage_impact"]) if v > 0}
    assert {item.rsplit(" ", 1)[0] for item in listed.split(", ")} <= losses


def test_explain_against_a_passage_names_its_rows(store: Path) -> None:
    view = run("explain", "--id", "1", "--against", "2").stdout
    assert "against passage 2" in view
    assert any(line.startswith("passage 2 ") for line in view.splitlines())  # the heatmap's row header
    assert "passage 2, shaded by contribution" in view
    assert json.loads(run("explain", "--id", "1", "--against", "2", "--json").stdout)["rows"] == "passage 2"


def test_explaining_other_text_keeps_the_last_search_as_the_default(store: Path) -> None:
    searched = json.loads(run("search", "the moon and the earth", "--json").stdout)
    assert run("explain", "--id", "1", "--query", "rocks in layers").exit_code == 0
    again = json.loads(run("explain", "--id", "1", "--json").stdout)
    assert again["query_id"] == searched["query_id"] and again["query"]["text"] == "the moon and the earth"


def test_the_size_after_ingest_is_the_size_info_reports(fake_encoder: object, corpus: Path) -> None:
    result = run("ingest", str(corpus), "-q")
    said = float(result.stderr.split(" is ")[-1].split(" MB")[0])
    info = json.loads(run("info", "--json").stdout)
    assert said == pytest.approx(info["store_bytes"] / 1e6, abs=0.05)
    assert not Path("semsearch-store/semsearch.db-wal").exists() or Path("semsearch-store/semsearch.db-wal").stat().st_size == 0


def test_progress_is_told_per_batch_before_the_first_commit(tmp_path: Path) -> None:
    from semsearch.documents import Document

    seen: list[semsearch.IngestProgress] = []
    with semsearch.open(tmp_path / "s", create=True, encoder=HashEncoder(), batch_size=2, sort_window=50) as s:
        s.ingest([Document(f"d{i}", f"document {i}") for i in range(30)], progress=seen.append)
    stages = [p.stage for p in seen]
    assert stages[0] == "model" and stages.count("encoding") >= 15
    first_commit = next(i for i, p in enumerate(seen) if p.stored)
    assert max(p.encoded for p in seen[:first_commit]) == 30  # the whole chunk was seen going through the model
    assert seen[-1].documents == seen[-1].total == 30 and seen[-1].stored == 30


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text number {i}"}) + "\n" for i in range(200)))
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.slow_ingest", "0.05", "ingest", str(corpus), "--store", str(store), "-q", "--batch-size", "4"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SEMSEARCH_SORT_WINDOW": "1"},
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (store / "semsearch.db").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in stderr and "run the same command again to resume" in stderr and "Traceback" not in stderr


def test_check_after_an_interrupted_ingest_reports_what_heals_itself(store: Path) -> None:
    (store / "index.faiss").unlink()
    result = run("check")
    assert result.exit_code == 0 and "note: index.faiss is missing" in result.stdout and "problem" not in result.stdout
    assert run("search", "moon", "--json").exit_code == 0
    assert "note" not in run("check").stdout  # the search rebuilt it


def test_a_folder_typed_two_ways_is_one_set_of_documents(fake_encoder: object, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("---\ntitle: Glaciers\ntags: [ice, geology]\n---\n\n# Glaciers\n\nIce that moves.\n")
    (notes / "b.txt").write_text("Rivers carry sediment.")
    assert run("ingest", "notes", "-q").exit_code == 0
    result = run("ingest", str(notes.resolve()), "-q")
    assert result.exit_code == 0 and "2 unchanged skipped" in result.stderr
    listed = json.loads(run("list", "--json").stdout)
    assert [d["key"] for d in listed] == ["notes/a.md", "notes/b.txt"]
    assert listed[0]["meta"] == {"title": "Glaciers", "tags": ["ice", "geology"]}
    hit = json.loads(run("search", "glaciers", "-k", "1", "--json").stdout)["hits"][0]
    assert hit["text"].startswith("# Glaciers") and hit["meta"]["title"] == "Glaciers"


def test_no_hits_says_so_without_the_explain_hint(store: Path) -> None:
    result = run("search", "moon", "--where", "topic=nothing")
    assert result.exit_code == 0 and "no hits for 'moon' with topic=nothing" in result.stdout
    assert "explain" not in result.stdout and "rank" not in result.stdout


def test_eval_says_what_it_retrieved_and_how_to_install_the_extra(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "fever"}\n')
    (tmp_path / "qrels.tsv").write_text("q1\tfever\t1\n")
    result = run("eval", "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv"))
    assert result.exit_code == 0 and "5 documents retrieved each" in result.stdout
    monkeypatch.setitem(sys.modules, "ir_measures", None)  # as if the extra were not installed
    result = run("eval", "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv"))
    assert result.exit_code == 1 and "pip install 'semsearch[eval]'" in result.stderr


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_pictures_take_the_format_of_their_name(store: Path, tmp_path: Path) -> None:
    assert run("search", "moon").exit_code == 0
    assert run("explain", "--id", "1", "--png", "why.jpg").exit_code == 0
    assert Path("why.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG
    assert run("explain", "--id", "1", "--png", "why.svg").exit_code == 0
    assert b"<svg" in Path("why.svg").read_bytes()[:500]
    result = run("explain", "--id", "1", "--png", "why.gif")
    assert result.exit_code == 1 and ".png, .jpg, .svg or .pdf" in result.stderr and not Path("why.gif").exists()


def test_a_long_passage_makes_a_picture_of_screen_size(fake_encoder: object, tmp_path: Path) -> None:
    fake_encoder.max_tokens = 400  # type: ignore[attr-defined]
    words = " ".join(f"word{i} about volcanoes" for i in range(80))
    (tmp_path / "long.jsonl").write_text(json.dumps({"id": "long", "text": words}) + "\n")
    assert run("ingest", str(tmp_path / "long.jsonl"), "-q").exit_code == 0
    assert run("search", "volcanoes").exit_code == 0
    assert run("explain", "--id", "1", "--png", "long.png", "--mode", "contribution").exit_code == 0
    width, height = _png_size(Path("long.png").read_bytes())
    assert width <= 1600 and height <= 1600


def test_one_shape_for_a_pair_plurals_and_gzip_advice(store: Path, tmp_path: Path) -> None:
    search = json.loads(run("search", "moon", "--why", "--json").stdout)
    expl = json.loads(run("explain", "--id", str(search["hits"][0]["passage_id"]), "--json").stdout)
    assert set(search["hits"][0]["why"][0]) == set(expl["top_pairs"][0])
    assert "deleted 1 document (1 passage)" in run("delete", "--doc", "moon").stderr
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    result = run("ingest", str(tmp_path / "bad.jsonl.gz"))
    assert result.exit_code == 1 and "is not gzip data" in result.stderr and "rename it" in result.stderr
    good = tmp_path / "good.jsonl.gz"
    with gzip.open(good, "wt") as f:
        f.write(json.dumps({"id": "g", "text": "gzip works"}) + "\n")
    assert run("ingest", str(good), "-q").exit_code == 0


def test_list_shows_keys_to_delete(store: Path) -> None:
    listed = json.loads(run("list", "--json", "--where", "topic=geology").stdout)
    assert [d["key"] for d in listed] == ["rocks", "long"] and listed[1]["passages"] > 1
    table = run("list").stdout
    assert "fever" in table and "passages" in table
    assert run("delete", "--doc", listed[0]["key"]).exit_code == 0
    assert [d["key"] for d in json.loads(run("list", "--json").stdout)] == ["fever", "plants", "moon", "long"]
