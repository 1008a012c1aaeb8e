"""``semsearch serve``: one Session behind a JSON API and a web page that explores explanations.

The API returns the shapes of the CLI's ``--json`` (the results' ``to_dict``). Endpoints are
plain ``def``s: FastAPI runs them in its thread pool, and a Session is made to be shared by
threads (one SQLite connection per thread, the encoder's calls serialised). Nothing here runs SQL
or touches the model directly: the Session does.

    from semsearch.server import create_app
    app = create_app(semsearch.open("my-store"), token="s3cret")   # any ASGI server runs it
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ConfigError, ModelError, NotFoundError, QueryError, SemsearchError
from ..session import Session

logger = logging.getLogger(__name__)
MAX_QUERY_CHARS = 2_000  # the model reads 256 tokens at most; longer text only costs tokenising
MAX_K = 1_000
MAX_WHY = 50
MAX_WHERE = 20

STATIC = resources.files(__package__) / "static"


class _Json(Response):
    """JSON without FastAPI's per-value encoder: an explanation's matrices are thousands of floats."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _parse_where(items: list[str]) -> list[tuple[str, str]]:
    if len(items) > MAX_WHERE:
        raise QueryError(f"at most {MAX_WHERE} where filters, not {len(items)}")
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"where takes FIELD=VALUE, not {item!r}")
        pairs.append((name.strip(), value))
    return pairs


def _check_text(q: str, what: str = "q") -> str:
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(f"{what} is {len(q):,} characters long; at most {MAX_QUERY_CHARS:,} are accepted (the model reads about 256 tokens)")
    return q


def create_app(session: Session, token: str | None = None, cors: list[str] | None = None) -> FastAPI:
    """The ASGI application serving ``session``. With ``token``, every ``/api`` request needs
    ``Authorization: Bearer <token>``; ``cors`` lists the origins allowed to call the API."""
    app = FastAPI(
        title="semsearch",
        version=__version__,
        description="Semantic search that shows why a passage matched. The shapes are those of the CLI's `--json`.",
        docs_url=None,  # served below from the vendored Swagger UI: no CDN
        redoc_url=None,
    )
    if cors:
        app.add_middleware(CORSMiddleware, allow_origins=cors, allow_methods=["GET"], allow_headers=["Authorization"])
    expected = f"Bearer {token}".encode() if token else None

    def authorised(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            advice = "this server needs 'Authorization: Bearer <token>' (the token in its --token-file)"
            raise HTTPException(401, advice, headers={"WWW-Authenticate": "Bearer"})

    Auth = Depends(authorised)

    @app.exception_handler(SemsearchError)
    def semsearch_error(request: Request, exc: SemsearchError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return _error(404, str(exc))
        if isinstance(exc, (QueryError, ConfigError)):
            return _error(400, str(exc))
        if isinstance(exc, ModelError):
            return _error(500, str(exc))
        return _error(503, str(exc))  # StoreError: busy, damaged, read-only

    @app.exception_handler(ValueError)
    def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and the router's 404 and 405
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("error answering %s", request.url.path)
        return _error(500, "internal error; the server's log has the details")

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return _error(422, problems or "invalid request")

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict[str, Any]:
        """Liveness: the store opens and its passages are counted (no model)."""
        return {"ok": True, "passages": session.info().passages}

    @app.get("/api/search", tags=["search"], response_class=_Json, dependencies=[Auth])
    def search(
        q: Annotated[str | None, Query(description="the query text")] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="hits to return (at most the passage count)")] = 10,
        why: Annotated[int, Query(ge=0, le=MAX_WHY, description="top word pairs per hit")] = 0,
        where: Annotated[list[str] | None, Query(description="FIELD=VALUE metadata filter, repeatable")] = None,
        like: Annotated[int | None, Query(description="rank the neighbours of this stored passage instead of q")] = None,
        mode: Annotated[str | None, Query(pattern="^(hybrid|dense|lexical)$", description="hybrid, dense or lexical (default: search_mode)")] = None,
        group_by: Annotated[str | None, Query(pattern="^(document|passage)$", description="'document': the best passage of each of k documents")] = None,
    ) -> _Json:
        """The k best passages for q (hybrid, dense or lexical), each with the retrievers that
        found it, its cosine and BM25, its best sentence, its reasons with `why`, and the query id
        that explain takes (like `semsearch search --json`)."""
        filters = _parse_where(where or [])
        if like is not None:
            return _Json(session.like(like, k, filters, why, mode, group_by).to_dict())
        if q is None:
            raise QueryError("give q=TEXT to search for (or like=ID for a stored passage's neighbours)")
        return _Json(session.search(_check_text(q), k, filters, why, mode, group_by).to_dict())

    @app.get("/api/explain", tags=["search"], response_class=_Json, dependencies=[Auth])
    def explain(
        id: Annotated[int, Query(description="the passage to explain")],
        query_id: Annotated[int | None, Query(description="a search's query id (no model)")] = None,
        q: Annotated[str | None, Query(description="new query text instead (one short encode)")] = None,
        against: Annotated[int | None, Query(description="another stored passage instead (no model)")] = None,
        level: Annotated[str, Query(pattern="^(word|token)$", description="'word' or 'token'")] = "word",
        top: Annotated[int, Query(ge=0, le=MAX_WHY, description="top pairs listed")] = 10,
    ) -> _Json:
        """Why passage `id` matched: words, offsets, the cosine and contribution matrices, score,
        sum, residual and each word's impact (like `semsearch explain --json`)."""
        if q is not None:
            q = _check_text(q)
        if q is None and query_id is None and against is None:  # "the last search" is nobody's in particular on a server
            raise QueryError("give query_id (from a search), q=TEXT or against=ID")
        return _Json(session.explain(id, query=q, query_id=query_id, against=against, level=level).to_dict(top))

    @app.get("/api/passages/{passage_id}", tags=["store"], response_class=_Json, dependencies=[Auth])
    def passage(passage_id: int) -> _Json:
        """One stored passage: its text, document, offsets, source and metadata."""
        return _Json(asdict(session.passage(passage_id)))

    @app.get("/api/info", tags=["store"], response_class=_Json, dependencies=[Auth])
    def info() -> _Json:
        """Model, counts, bytes per token, index and size (like `semsearch info --json`)."""
        return _Json(session.info().to_dict())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="semsearch API",
            swagger_js_url="/swagger/swagger-ui-bundle.js",
            swagger_css_url="/swagger/swagger-ui.css",
            swagger_favicon_url="/swagger/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    try:
        from swagger_ui_bundle import swagger_ui_path

        app.mount("/swagger", StaticFiles(directory=str(swagger_ui_path)), name="swagger")
    except ImportError:  # pragma: no cover - a dependency; /docs then lacks its script
        pass
    return app


def warm_up(session: Session) -> None:
    """Load the query model and the index before the first request."""
    session.warm_up()
