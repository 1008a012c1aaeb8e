"""End to end on the real all-MiniLM-L6-v2 (packaged, loads offline): these must run in CI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semsearch.cli import app
from semsearch.core.codec import Float16Codec
from semsearch.core.matrices import contribution_matrix
from semsearch.encoder.torch_backend import SentenceTransformerEncoder
from tests.conftest import ARC_SAMPLE, SHARED_DATA

runner = CliRunner()
QUERY = "Which factor will most likely cause a person to develop a fever?"


@pytest.fixture(scope="session")
def real_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")


def stsb_pairs(limit: int) -> list[tuple[str, str]]:
    path = SHARED_DATA / "stsb" / "sts-test.csv"
    assert path.is_file(), f"{path} is missing: the real-model checks need ../shared/data"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[5], r[6]) for r in rows[:limit]]


def test_contribution_sum_equals_model_encode_cosine_on_stsb(real_encoder: SentenceTransformerEncoder) -> None:
    pairs = stsb_pairs(300)
    left = real_encoder.encode([a for a, _ in pairs])
    right = real_encoder.encode([b for _, b in pairs])
    reference = real_encoder.model.encode([a for a, _ in pairs] + [b for _, b in pairs], normalize_embeddings=True)
    codec = Float16Codec(real_encoder.dim)
    worst = 0.0
    for i, (q, d) in enumerate(zip(left, right)):
        stored = codec.decode(codec.encode(d.tokens.vectors), len(d.tokens.vectors), d.vector)  # as explain reads it
        total = contribution_matrix(q.tokens.vectors.astype(np.float64), stored.astype(np.float64)).sum()
        cosine = float(reference[i] @ reference[len(pairs) + i])
        worst = max(worst, abs(total - cosine))
        np.testing.assert_allclose(q.vector, reference[i], atol=1e-5)  # our pass = model.encode
    assert worst < 1e-4, worst


def test_ingest_search_explain_reproduce_the_fever_example(arc_store: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", QUERY, "--store", str(arc_store), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)["hits"][0]
    assert top["document_key"] == "Mercury_7216895"
    assert top["text"] == "Which best explains why a person infected with bacteria may have a fever?"
    png = tmp_path / "fever.png"
    result = runner.invoke(app, ["explain", "--id", str(top["passage_id"]), "--store", str(arc_store), "--png", str(png), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["query"]["text"] == QUERY
    assert abs(data["residual"]) < 1e-4 and data["index_score"] == pytest.approx(top["cosine"], abs=1e-6)
    assert top["cosine"] == pytest.approx(0.7217, abs=1e-4) and top["found_by"] == {"dense": 1, "lexical": 1}
    assert data["top_pairs"][0]["query"] == "fever" and data["top_pairs"][0]["passage"] == "fever"
    assert png.stat().st_size > 10_000


def test_explain_of_cached_query_needs_neither_torch_nor_the_model(arc_store: Path) -> None:
    assert runner.invoke(app, ["search", QUERY, "--store", str(arc_store), "-k", "1"]).exit_code == 0
    script = (
        "import sys\n"
        "for name in ('torch', 'sentence_transformers', 'transformers'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "from semsearch.cli import main\n"
        f"sys.argv = ['semsearch', 'explain', '--id', '382', '--store', {str(arc_store)!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    assert "residual" in proc.stdout and "fever" in proc.stdout
    info = subprocess.run(
        [sys.executable, "-c", script.replace("'explain', '--id', '382', ", "'info', ")], capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    assert "all-MiniLM-L6-v2" in info.stdout


def test_explain_against_new_query_text(arc_store: Path) -> None:
    result = runner.invoke(app, ["explain", "--id", "382", "--query", "bacteria cause fever", "--store", str(arc_store), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert abs(data["residual"]) < 1e-4
    assert "bacteria" in data["query"]["labels"]


def test_long_documents_are_split_into_passages_within_the_window(tmp_path: Path) -> None:
    text = " ".join(f"Sentence {i} discusses the immune response to bacterial infection and fever." for i in range(60))
    (tmp_path / "long.jsonl").write_text(json.dumps({"id": "long", "text": text}) + "\n")
    store = tmp_path / "store"
    result = runner.invoke(app, ["ingest", str(tmp_path / "long.jsonl"), "--store", str(store), "-q"])
    assert result.exit_code == 0, result.output
    import sqlite3

    con = sqlite3.connect(store / "semsearch.db")
    rows = con.execute("SELECT p.char_start, p.char_end, t.n FROM passages p JOIN tokens t ON t.passage_id = p.id ORDER BY p.ordinal").fetchall()
    assert len(rows) >= 4
    assert rows[0][0] == 0 and rows[-1][1] == len(text)
    assert all(n <= 256 for _, _, n in rows)
    assert all(b[0] < a[1] for a, b in zip(rows, rows[1:]))  # overlapping, nothing dropped


@pytest.mark.parametrize("columns", [80, 100, 120])
def test_the_demo_explanation_fits_the_terminal_and_shows_the_pairs_that_matter(arc_store: Path, columns: int) -> None:
    assert runner.invoke(app, ["search", QUERY, "--store", str(arc_store), "-k", "1"]).exit_code == 0
    proc = subprocess.run(
        [sys.executable, "-m", "semsearch", "explain", "--id", "382", "--store", str(arc_store), "--mode", "contribution"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": str(columns)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    header = next(line for line in lines if line.startswith("query")).split()
    assert {"fever", "person", "Which"} <= set(header)  # person↔person, the second word pair, is never hidden
    pairs = [line.split("↔") for line in lines if "↔" in line and "of the score" in line]
    assert pairs[0][0].strip() == "fever" and pairs[0][1].split()[0] == "fever"


def test_eight_threads_searching_one_session_with_the_real_model(arc_store: Path, real_encoder: SentenceTransformerEncoder) -> None:
    import threading

    import semsearch

    questions = [json.loads(line)["question"]["stem"] for line in ARC_SAMPLE.read_text().splitlines()[100:108]]
    with semsearch.open(arc_store, encoder=real_encoder) as session:
        expected = [[(h.passage_id, round(h.score, 5)) for h in session.search(q, k=5).hits] for q in questions]
        got: dict[int, list[list[tuple[int, float]]]] = {}

        def work(n: int) -> None:
            got[n] = [[(h.passage_id, round(h.score, 5)) for h in session.search(q, k=5).hits] for q in questions]

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(got[n] == expected for n in range(8))
