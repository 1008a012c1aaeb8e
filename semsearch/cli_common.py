"""What every command shares: consoles, option types, error reporting, settings, locks."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from .config import Settings, load_settings, resolve_model
from .errors import SemsearchError, StoreError

out = Console(soft_wrap=False)
err = Console(stderr=True)

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
            err.print(f"[red]Error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def quiet_third_parties() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, overrides)


def load_model(settings: Settings, store_model: str | None) -> Any:
    from . import encoder

    with err.status("loading the model…", spinner="dots"):
        return encoder.load_encoder(resolve_model(settings, store_model), settings.device)


def open_store(settings: Settings) -> Any:
    from .store import Store

    return Store.open(settings.store)



@contextmanager
def held_writer_lock(directory: Path) -> Iterator[None]:
    """The store's writer lock, or a StoreError saying who holds it."""
    from .indexing import write_lock

    with write_lock(directory) as held:
        if not held:
            raise StoreError(f"another semsearch process is writing to {directory}; wait for it to finish")
        yield
