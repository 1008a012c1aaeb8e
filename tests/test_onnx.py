"""The query path on ONNX Runtime, checked against PyTorch on real data with the real model."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from semsearch.encoder import load_encoder
from semsearch.encoder.export import export, onnx_file, parity
from semsearch.encoder.files import model_path, onnx_spec
from semsearch.encoder.onnx_backend import OnnxEncoder
from semsearch.encoder.torch_backend import SentenceTransformerEncoder
from tests.conftest import REPO, SHARED_DATA

runner = CliRunner()
QUERY = "Which factor will most likely cause a person to develop a fever?"
NO_TORCH = (
    "import sys\n"
    "for name in ('torch', 'sentence_transformers', 'transformers'):\n"
    "    sys.modules[name] = None  # any import of them now raises ImportError\n"
    "from semsearch.cli import main\n"
    "sys.argv = ['semsearch', *sys.argv[1:]]\n"
    "main()\n"
)


def stsb_sentences(limit: int) -> list[str]:
    path = SHARED_DATA / "stsb" / "sts-test.csv"
    assert path.is_file(), f"{path} is missing: the real-model checks need ../shared/data"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [s for r in rows[: limit // 2] for s in (r[5], r[6])]


@pytest.fixture(scope="module")
def torch_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu")


@pytest.fixture(scope="module")
def onnx_encoder() -> OnnxEncoder:
    encoder = load_encoder("all-MiniLM-L6-v2", "cpu", "onnx", os.environ["SEMSEARCH_MODEL_CACHE"], purpose="ingest")
    assert isinstance(encoder, OnnxEncoder)
    return encoder


def test_onnx_vectors_equal_pytorchs_on_stsb(torch_encoder: SentenceTransformerEncoder, onnx_encoder: OnnxEncoder) -> None:
    sentences = stsb_sentences(400)
    check = {"sentence": 0.0, "token": 0.0}
    for start in range(0, len(sentences), 50):
        part = parity(torch_encoder, onnx_encoder, sentences[start : start + 50])  # same ids and offsets, or it raises
        check = {k: max(check[k], part[k]) for k in check}
    assert check["sentence"] < 1e-5 and check["token"] < 1e-5, check
    assert onnx_encoder.special_tokens == torch_encoder.special_tokens
    assert (onnx_encoder.dim, onnx_encoder.max_tokens, onnx_encoder.pooling) == (torch_encoder.dim, torch_encoder.max_tokens, torch_encoder.pooling)
    long = " ".join(sentences[:60])  # past the 256-token window: both truncate alike
    assert parity(torch_encoder, onnx_encoder, [long])["worst"] < 1e-5
    text = sentences[7]
    assert [[(s.start, s.end) for s in spans] for spans in onnx_encoder.split([long, text], 32, False)] == [
        [(s.start, s.end) for s in spans] for spans in torch_encoder.split([long, text], 32, False)
    ]


def test_ingest_on_onnx_stores_what_pytorch_stores(tmp_path: Path, torch_encoder: SentenceTransformerEncoder, onnx_encoder: OnnxEncoder) -> None:
    from semsearch.documents import Document

    docs = [Document(f"s{i}", text) for i, text in enumerate(stsb_sentences(200))]
    stores = {}
    for name, encoder in (("torch", torch_encoder), ("onnx", onnx_encoder)):
        # float16 pieces: the backends' parity, not a codec's quantisation (each store trains its own)
        with semsearch.open(tmp_path / name, create=True, encoder=encoder, token_codec="float16", token_pool="pieces") as s:
            s.ingest(docs)
            ids, vectors = next(s.store.documents.iter_vectors())
            codec = s.store.codec()
            stores[name] = (ids, vectors, [s.store.tokens.of(int(i), codec).vectors for i in ids[:50]])
    (ti, tv, tt), (oi, ov, ot) = stores["torch"], stores["onnx"]
    assert np.array_equal(ti, oi)
    assert float(np.max(1 - np.sum(tv * ov, axis=1))) < 1e-5
    assert float(np.max(np.abs(tv - ov))) < 1e-5
    for a, b in zip(tt, ot):
        assert a.shape == b.shape and float(np.max(np.abs(a - b))) < 2e-3  # float16 storage of both


def test_query_commands_need_no_torch(arc_store: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("how do plants make food\nwhat causes the seasons\n")
    (tmp_path / "q.jsonl").write_text(json.dumps({"_id": "q1", "text": QUERY}) + "\n")
    (tmp_path / "qrels.tsv").write_text("q1\tMercury_7216895\t1\n")
    store = ["--store", str(arc_store)]
    runs = {
        "search": ["search", QUERY, "-k", "3", "--json", *store],
        "search --queries": ["search", "--queries", str(queries), "--json", *store],
        "explain --query": ["explain", "--id", "382", "--query", "bacteria cause fever", "--json", *store],
        "eval": ["eval", "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv"), "--json", *store],
    }
    outputs = {}
    for name, args in runs.items():
        proc = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        outputs[name] = json.loads(proc.stdout)
    top = outputs["search"]["hits"][0]
    assert top["document_key"] == "Mercury_7216895" and top["cosine"] == pytest.approx(0.7217, abs=1e-4)
    assert len(outputs["search --queries"]) == 2
    assert abs(outputs["explain --query"]["residual"]) < 1e-4
    assert outputs["eval"]["MRR@10"] == pytest.approx(1.0)
    explained = runner.invoke(app, ["explain", "--id", str(top["passage_id"]), "--json", *store])
    assert abs(json.loads(explained.stdout)["residual"]) < 1e-4  # the ONNX query's tokens against stored tokens


def test_a_model_onnx_cannot_reproduce_runs_on_pytorch_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "cls-model"
    shutil.copytree(model_path("all-MiniLM-L6-v2"), model)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    assert "not the mean" in str(onnx_spec(model))
    with caplog.at_level(logging.WARNING):
        first = load_encoder(str(model), "cpu", "onnx", str(tmp_path / "cache"))
        load_encoder(str(model), "cpu", "onnx", str(tmp_path / "cache"))
    assert isinstance(first, SentenceTransformerEncoder) and first.pooling == "cls"
    warnings = [r.getMessage() for r in caplog.records if "runs on PyTorch" in r.getMessage()]
    assert len(warnings) == 1 and "not the mean of the tokens" in warnings[0]
    assert not (tmp_path / "cache").exists()  # nothing was exported


def test_bad_arguments_fail_before_any_model_loads(arc_store: Path) -> None:
    script = NO_TORCH.replace("from semsearch.cli import main\n", "sys.modules['onnxruntime'] = None\nfrom semsearch.cli import main\n")
    for args, message in ((["search", "  "], "the query is empty"), (["search", "fever", "-k", "0"], "-k must be at least 1")):
        proc = subprocess.run([sys.executable, "-c", script, *args, "--store", str(arc_store)], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_ingest_makes_the_export_so_that_the_first_search_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "models"
    monkeypatch.setenv("SEMSEARCH_MODEL_CACHE", str(cache))
    (tmp_path / "notes.txt").write_text("Vaccines train the immune system.\nRivers carry sediment to the sea.\n")
    result = runner.invoke(app, ["ingest", str(tmp_path / "notes.txt"), "--store", str(tmp_path / "s"), "-q"])
    assert result.exit_code == 0, result.output
    checks = list(cache.glob("onnx-*/check.json"))
    assert len(checks) == 1 and json.loads(checks[0].read_text())["worst"] < 1e-5
    folder = checks[0].parent
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no half-made export left behind
    assert sorted(p.name for p in folder.iterdir()) == ["check.json", "model.data", "model.onnx"]
    assert (folder / "model.onnx").stat().st_size < 1_000_000 < (folder / "model.data").stat().st_size  # weights mapped, not parsed
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "search", "immune", "-k", "1", "--json", "--store", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "SEMSEARCH_MODEL_CACHE": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hits"][0]["text"] == "Vaccines train the immune system."


def test_an_export_that_loses_the_race_leaves_the_winner_in_place(tmp_path: Path) -> None:
    path = model_path("all-MiniLM-L6-v2")
    spec = onnx_spec(path)
    assert not isinstance(spec, str)
    first = onnx_file(path, spec, str(tmp_path))
    before = {p.name: p.stat().st_mtime_ns for p in first.parent.iterdir()}
    killed = tmp_path / f".{first.parent.name}-killed"  # what an export killed mid-way leaves
    (killed / "plain.onnx").parent.mkdir()
    (killed / "plain.onnx").write_bytes(b"half")
    os.utime(killed, (0, 0))
    running = tmp_path / f".{first.parent.name}-running"  # another process's export under way
    running.mkdir()
    old_layout = tmp_path / first.parent.name.removesuffix("-ext1")
    old_layout.mkdir()
    check = export(path, spec, first.parent)  # a second process, finishing after the first
    assert check["worst"] < 1e-5
    assert {p.name: p.stat().st_mtime_ns for p in first.parent.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.parent.name, running.name])
    assert first.parent.stat().st_mode & 0o777 == 0o777 & ~_umask()  # readable by others, as the cache's other folders


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_one_text_model_gives_the_vectors_of_the_prepacked_one(onnx_encoder: OnnxEncoder) -> None:
    one_text = load_encoder("all-MiniLM-L6-v2", "cpu", "onnx", os.environ["SEMSEARCH_MODEL_CACHE"], texts=1)
    assert isinstance(one_text, OnnxEncoder)
    assert one_text._session.get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # prepacked: the key is not set
        onnx_encoder._session.get_session_options().get_session_config_entry("session.disable_prepacking")
    for text in stsb_sentences(20) + [QUERY]:
        (a,), (b,) = onnx_encoder.encode([text]), one_text.encode([text])
        assert np.array_equal(a.tokens.token_ids, b.tokens.token_ids)
        assert float(a.vector @ b.vector) > 1 - 1e-6 and np.abs(a.tokens.vectors - b.tokens.vectors).max() < 1e-4


def test_queries_encoded_together_equal_queries_encoded_alone(onnx_encoder: OnnxEncoder) -> None:
    texts = stsb_sentences(16) + ["fever", "Which factor will most likely cause a person to develop a fever? " * 3]
    together = onnx_encoder.encode(texts)  # padded to the longest: the server batches queries that arrive at once
    for text, encoded in zip(texts, together):
        (alone,) = onnx_encoder.encode([text])
        assert np.array_equal(encoded.tokens.token_ids, alone.tokens.token_ids)
        assert float(np.dot(encoded.vector, alone.vector)) > 1 - 1e-6
        assert np.abs(encoded.tokens.vectors - alone.tokens.vectors).max() < 1e-4


def test_the_pytorch_encoder_s_own_tokenising_equals_sentence_transformers_preprocessing(torch_encoder: SentenceTransformerEncoder) -> None:
    texts = stsb_sentences(64) + ["  leading and trailing  ", "Ⅻ ﬁ straße İstanbul", "word " * 400]
    assert torch_encoder._batch is not None  # the fast path, chosen by a probe at load
    fast = torch_encoder.encode(texts)
    fast_path, torch_encoder._batch = torch_encoder._batch, None
    try:
        slow = torch_encoder.encode(texts)
    finally:
        torch_encoder._batch = fast_path
    for a, b in zip(fast, slow):
        assert np.array_equal(a.tokens.token_ids, b.tokens.token_ids) and np.array_equal(a.tokens.offsets, b.tokens.offsets)
        assert np.abs(a.vector - b.vector).max() < 1e-6 and np.abs(a.tokens.vectors - b.tokens.vectors).max() < 1e-5
