"""What every command shares: consoles, option types, error reporting, opening a Session."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SemsearchError

if TYPE_CHECKING:
    from ..session import Session

out = Console(soft_wrap=False)
err = Console(stderr=True)

SPINNER_AFTER = 0.5  # seconds

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[str | None, typer.Option("--store", help="store directory [env SEMSEARCH_STORE; default ./semsearch-store]", show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="settings file [env SEMSEARCH_CONFIG; default ./config.yaml if present]", show_default=False)]
ModelOpt = Annotated[str | None, typer.Option("--model", help="'all-MiniLM-L6-v2' or a local model directory [default: the store's model]", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def reports_errors(func: F) -> F:
    """Print a SemsearchError as one 'Error: …' line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SemsearchError as exc:
            err.print(f"[red]Error:[/red] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def quiet_third_parties() -> None:
    """The process is the front end's: keep model libraries offline and quiet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


def open_session(config: Path | None, create: bool = False, **overrides: Any) -> Session:
    """The Session for the command's options (``None`` options fall back to env, file, default)."""
    from ..session import open_session

    return open_session(create=create, config=config, **overrides)


def load_model(session: Session, texts: int | None = None) -> None:
    """Load the session's model now, for ``texts`` texts if known (``Session.load_encoder``). A
    spinner appears if that takes over half a second (PyTorch, or a model's first ONNX export); the
    usual ONNX load (~0.1 s) prints nothing and does not even import the spinner."""
    loaded = threading.Event()

    def spin() -> None:
        if not loaded.wait(SPINNER_AFTER):
            with err.status("loading the model…", spinner="dots"):
                loaded.wait()

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        session.load_encoder(texts)
    finally:
        loaded.set()
        spinner.join()


def parse_where(text: str) -> tuple[str, str]:
    """``--where FIELD=VALUE`` as a pair."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise typer.BadParameter(f"--where takes FIELD=VALUE, not {text!r}")
    return name.strip(), value


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
