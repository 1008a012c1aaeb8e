"""`semsearch serve` against a real uvicorn process on the ARC sample, with the real model: the API,
its errors and token, serving through an ingest from another process, and the page in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import semsearch
from semsearch.cli import app
from semsearch.server import MAX_QUERY_CHARS, create_app

QUERY = "Which factor will most likely cause a person to develop a fever?"
TOKEN = "test-token-0123456789abcdef"
CHROMIUM = Path(os.environ.get("SEMSEARCH_CHROMIUM", "/usr/bin/chromium"))


@dataclass
class Server:
    url: str
    store: Path
    process: subprocess.Popen[bytes]

    def get(self, path: str, token: str | None = TOKEN, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(arc_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`semsearch serve` on a copy of the ARC store (tests ingest into it), with a token file."""
    home = tmp_path_factory.mktemp("serve")
    store = home / "store"
    shutil.copytree(arc_store, store)
    (home / "token").write_text(TOKEN + "\n")
    port = free_port()
    cmd = [sys.executable, "-m", "semsearch", "serve", "--store", str(store), "--port", str(port), "--token-file", str(home / "token")]
    process = subprocess.Popen(cmd, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"semsearch serve did not start: {process.communicate()[0].decode()}")
        time.sleep(0.2)
    yield Server(url, store, process)
    process.terminate()
    process.wait(timeout=30)


def test_search_answers_like_the_cli_json(server: Server) -> None:
    response = server.get("/api/search", q=QUERY, k=5, why=3)
    assert response.status_code == 200
    body = response.json()
    assert body["hits"][0]["document_key"] == "Mercury_7216895" and body["mode"] == "hybrid"
    assert abs(body["hits"][0]["cosine"] - 0.7217) < 1e-3 and body["hits"][0]["found_by"] == {"dense": 1, "lexical": 1}
    dense = server.get("/api/search", q=QUERY, k=5, mode="dense").json()
    assert dense["mode"] == "dense" and abs(dense["hits"][0]["score"] - 0.7217) < 1e-3
    assert body["hits"][0]["why"][0]["query"] == "fever" and body["hits"][0]["why"][0]["passage"] == "fever"
    cli = CliRunner().invoke(app, ["search", QUERY, "-k", "5", "--why", "3", "--json", "--store", str(server.store)])
    assert cli.exit_code == 0, cli.output
    from_cli = json.loads(cli.output)
    for a, b in zip(body["hits"], from_cli["hits"]):
        assert a.keys() == b.keys()
        assert a["passage_id"] == b["passage_id"] and abs(a["score"] - b["score"]) < 1e-5
    assert isinstance(body["query_id"], int)


def test_explain_by_query_id_adds_up_to_the_score(server: Server) -> None:
    found = server.get("/api/search", q=QUERY, k=1).json()
    hit = found["hits"][0]
    data = server.get("/api/explain", id=hit["passage_id"], query_id=found["query_id"]).json()
    assert data["passage_id"] == hit["passage_id"] and data["query_id"] == found["query_id"]
    assert abs(data["sum"] - data["score"]) < 1e-4 and abs(data["score"] - hit["cosine"]) < 1e-4
    assert data["lexical"]["score"] == "bm25" and abs(data["lexical"]["bm25"] - hit["bm25"]) < 1e-6
    rows, cols = len(data["query"]["labels"]), len(data["passage"]["labels"])
    assert len(data["contribution"]) == rows and len(data["cosine"][0]) == cols
    assert len(data["passage"]["spans"]) == cols and len(data["passage_impact"]) == cols
    assert (data["top_pairs"][0]["query"], data["top_pairs"][0]["passage"]) == ("fever", "fever")
    tokens = server.get("/api/explain", id=hit["passage_id"], query_id=found["query_id"], level="token")
    assert tokens.status_code == 400 and "token_pool: pieces" in tokens.json()["error"]  # the store keeps one vector per word
    text = server.get("/api/explain", id=hit["passage_id"], q="a fever").json()
    assert text["query_id"] is None and abs(text["sum"] - text["score"]) < 1e-4
    against = server.get("/api/explain", id=hit["passage_id"], against=hit["passage_id"]).json()
    assert abs(against["score"] - 1.0) < 1e-3 and against["rows"].startswith("passage")


def test_passage_info_health_and_docs(server: Server) -> None:
    passage = server.get("/api/passages/382").json()
    assert passage["document_key"] == "Mercury_7216895" and "fever" in passage["text"]
    info = server.get("/api/info").json()
    assert info["passages"] >= 1000 and info["model"] == "all-MiniLM-L6-v2"
    assert httpx.get(server.url + "/healthz").json()["ok"] is True
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "/swagger/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    assert httpx.get(server.url + "/swagger/swagger-ui-bundle.js").status_code == 200
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/api/search", "/api/explain", "/api/passages/{passage_id}", "/api/info", "/healthz"} <= set(paths)
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")


def test_token_is_required_for_the_api(server: Server) -> None:
    for token in (None, "wrong-token-0123456789abcdef", TOKEN[:-1]):
        response = server.get("/api/search", token=token, q=QUERY)
        assert response.status_code == 401 and "Bearer" in response.json()["error"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert server.get("/api/info", token=None).status_code == 401
    assert server.get("/api/info").status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"q": ""}, 400, "empty"),
        ({"q": "   "}, 400, "empty"),
        ({}, 400, "give q"),
        ({"q": "fever", "k": 0}, 422, "k"),
        ({"q": "fever", "k": "ten"}, 422, "k"),
        ({"q": "fever", "k": 10**9}, 422, "k"),
        ({"q": "fever", "why": -1}, 422, "why"),
        ({"q": "x" * (MAX_QUERY_CHARS + 1)}, 400, "at most 2,000"),
        ({"q": "fever", "where": "nofield"}, 400, "FIELD=VALUE"),
        ({"like": 999999}, 404, "999999"),
        ({"q": "fever", "mode": "fuzzy"}, 422, "mode"),
        ({"q": "fever", "group_by": "sentence"}, 422, "group_by"),
    ],
)
def test_bad_searches_get_json_errors(server: Server, params: dict[str, Any], status: int, words: str) -> None:
    response = server.get("/api/search", **params)
    assert response.status_code == status
    body = response.json()
    assert words in body["error"] and "Traceback" not in response.text


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/explain", {"id": 999999, "q": "fever"}, 404),
        ("/api/explain", {"id": 382}, 400),  # no query named: a server has no "last search" of one user
        ("/api/explain", {"id": -3, "q": "fever"}, 404),
        ("/api/explain", {"id": "abc"}, 422),
        ("/api/explain", {"id": 382, "level": "letters"}, 422),
        ("/api/explain", {"id": 382, "query_id": 424242}, 404),
        ("/api/explain", {"id": 382, "q": "fever", "against": 5}, 400),
        ("/api/explain", {"id": 382, "q": ""}, 400),
        ("/api/passages/999999", {}, 404),
        ("/api/passages/zero", {}, 422),
        ("/api/nothing", {}, 404),
    ],
)
def test_bad_explains_get_json_errors(server: Server, path: str, params: dict[str, Any], status: int) -> None:
    response = server.get(path, **params)
    assert response.status_code == status, response.text
    assert response.json()["error"] and "Traceback" not in response.text


def test_where_and_k_are_bounded_by_what_is_stored(server: Server) -> None:
    body = server.get("/api/search", q="energy", k=1000, where="answerKey=D").json()
    assert 0 < len(body["hits"]) < 1000
    assert all(h["meta"]["answerKey"] == "D" for h in body["hits"])


def test_keeps_serving_through_an_ingest_from_another_process(server: Server, tmp_path: Path) -> None:
    sentence = "Glaciers number {i} carve deep U-shaped valleys as the ice slowly moves downhill. "
    new = [{"id": f"new-{i}", "text": sentence.format(i=i) * 20, "batch": "new"} for i in range(40)]  # two passages each
    corpus = tmp_path / "new.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in new) + "\n")
    before = server.get("/api/info").json()["passages"]
    ingest = subprocess.Popen(
        [sys.executable, "-m", "semsearch", "ingest", str(corpus), "--store", str(server.store), "-q", "--batch-size", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    statuses, partial, seen = [], [], set()
    while ingest.poll() is None:
        # every stored passage of the new documents (an exact filtered search): never half a document
        response = server.get("/api/search", q="glaciers carve valleys", k=200, where="batch=new")
        statuses.append(response.status_code)
        if response.status_code == 200:
            parts: dict[str, set[int]] = {}
            for hit in response.json()["hits"]:
                parts.setdefault(hit["document_key"], set()).add(hit["ordinal"])
            partial += [key for key, ordinals in parts.items() if ordinals != {0, 1}]
            seen |= set(parts)
        time.sleep(0.05)
    assert ingest.returncode == 0, ingest.communicate()[0].decode()
    assert statuses and set(statuses) == {200}
    assert not partial, f"half documents served: {partial}"
    after = server.get("/api/search", q="glaciers carve valleys", k=200, where="batch=new").json()
    assert {h["document_key"] for h in after["hits"]} == {f"new-{i}" for i in range(40)}  # picked up without a restart
    assert len(after["hits"]) == 80
    assert server.get("/api/info").json()["passages"] == before + 80
    top = server.get("/api/search", q="Glaciers number 7 carve deep U-shaped valleys", k=3).json()["hits"]
    assert top[0]["document_key"].startswith("new-")  # through the index too, not only the filter


def test_cors_is_off_unless_asked_for(arc_store: Path) -> None:
    from fastapi.testclient import TestClient

    with semsearch.open(arc_store) as session:
        closed = TestClient(create_app(session)).get("/api/info", headers={"Origin": "https://example.org"})
        assert closed.status_code == 200 and "access-control-allow-origin" not in closed.headers
        opened = TestClient(create_app(session, cors=["https://example.org"])).get("/api/info", headers={"Origin": "https://example.org"})
        assert opened.headers["access-control-allow-origin"] == "https://example.org"


def test_serve_refuses_a_weak_or_missing_token_file(arc_store: Path, tmp_path: Path) -> None:
    weak = tmp_path / "weak"
    weak.write_text("abc\n")
    for path, words in ((weak, "at least 16"), (tmp_path / "absent", "cannot be read")):
        result = CliRunner().invoke(app, ["serve", "--store", str(arc_store), "--token-file", str(path)])
        assert result.exit_code == 1 and words in result.output
    result = CliRunner().invoke(app, ["serve", "--store", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no store" in result.output.lower()


# the page, in a real browser ---------------------------------------------------------------------
def test_page_finds_the_fever_hit_and_explains_it(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: 'apt-get install -y chromium' (scripts/test.sh does it as root)"
    shots = Path(os.environ.get("SEMSEARCH_SCREENSHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/?" + str(httpx.QueryParams({"q": QUERY})))
            page.locator("#token").fill(TOKEN)  # the page asks for the server's token
            page.locator("#auth button").click()
            first = page.locator("a.hit").first
            first.wait_for()
            shown = re.search(r"\b0\.\d{4}\b", first.inner_text())
            assert "Mercury_7216895" in first.inner_text() and shown is not None and abs(float(shown.group()) - 0.7217) <= 1e-3
            assert page.locator("a.hit").first.locator("mark").count() >= 1  # highlighted snippet
            page.screenshot(path=str(shots / "serve-search.png"))
            first.click()
            cell = page.locator('#heatmap td[data-query="fever"][data-passage="fever"]')
            cell.wait_for()
            assert "id=382" in page.url
            cell.hover()
            tip = page.locator("#tooltip")
            tip.wait_for(state="visible")
            text = tip.inner_text()
            assert "fever ↔ fever" in text and "cosine 0.96" in text and "% of the score" in text
            page.screenshot(path=str(shots / "serve-explain.png"))
            page.get_by_label("cosine").check()  # the toggle repaints the cells
            assert page.locator("#heatmap").get_attribute("data-mode") == "cosine"
            page.get_by_label("special tokens").check()
            assert page.locator("#heatmap th", has_text="[CLS]").count() >= 1
            page.locator("#heatmap").focus()  # the keyboard walks the matrix
            page.keyboard.press("ArrowRight")
            assert " and " in page.locator("#cell-readout").inner_text()
            page.reload()  # the URL holds the state
            page.locator('#heatmap td[data-query="fever"][data-passage="fever"]').wait_for()
            assert page.locator("#ex-title").inner_text().startswith("Why Mercury_7216895")
            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width} px wide at phone width"
            page.locator("#explanation").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "serve-phone.png"))
            assert not errors, errors
        finally:
            browser.close()
