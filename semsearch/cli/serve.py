"""``semsearch serve``: the store behind an HTTP API and a web page (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .common import ConfigOpt, StoreOpt, err, open_session, quiet_third_parties, reports_errors


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"--token-file {path} cannot be read ({exc.strerror}); write a secret into it, e.g. 'openssl rand -hex 32 > {path}'") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file {path} must hold one token of at least 16 characters without spaces, e.g. 'openssl rand -hex 32 > {path}'")
    return token


@reports_errors
def serve(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on; 0.0.0.0 opens it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port", min=0, max=65535)] = 8000,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="a file holding a secret: every /api request must then send 'Authorization: Bearer <secret>'", show_default=False)] = None,
    cors: Annotated[list[str] | None, typer.Option("--cors", help="an origin allowed to call the API from a browser (repeatable); off by default", show_default=False)] = None,
) -> None:
    """Serve the store: a JSON API (documented at /docs) and a web page at / that explains each hit.

    One process loads the query model and the index once and answers searches in milliseconds.
    It keeps answering while another process ingests into the store, and picks up the new passages.
    """
    quiet_third_parties()
    token = _read_token(token_file) if token_file is not None else None
    import uvicorn

    from ..server import create_app, warm_up

    with open_session(config, store=store) as session:
        with err.status("loading the model and the index…", spinner="dots"):
            warm_up(session)
        app = create_app(session, token=token, cors=cors)
        shown = f"[{host}]" if ":" in host else host
        err.print(f"serving {session.path} at http://{shown}:{port}/  (API docs at /docs; Ctrl-C stops)", highlight=False)
        if token is None and host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]Warning:[/yellow] {host} is reachable from other machines and no --token-file is set: anyone there can read the store")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
