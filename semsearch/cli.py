"""The ``semsearch`` command: parse options, call the library, render, turn errors into exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from .cli_common import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    StoreOpt,
    err,
    held_writer_lock,
    load_model,
    open_store,
    out,
    quiet_third_parties,
    reports_errors,
    settings_from,
)
from .cli_store import check, delete, eval_command, index_app
from .errors import StoreError

app = typer.Typer(
    help="Semantic search that shows why a passage matched, from stored token vectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    """semsearch: ingest a corpus, search it by meaning, and see why each hit matched."""
    if version:
        out.print(__version__)
        raise typer.Exit()


# ingest --------------------------------------------------------------------------------------
@app.command()
@reports_errors
def ingest(
    paths: Annotated[list[str], typer.Argument(help="files (.txt, .jsonl, .csv, .tsv, optionally .gz), folders of .txt/.md, or - for stdin", show_default=False)],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    text_field: Annotated[list[str] | None, typer.Option("--text-field", help="JSONL/CSV field holding the text; repeat to join several with a space (title, then text); dots reach nested fields", show_default=False)] = None,
    id_field: Annotated[str | None, typer.Option("--id-field", help="JSONL/CSV field holding the document id [default: 'id' or '_id' if present, else file:line]", show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="txt, jsonl, csv or tsv; needed for stdin (default txt) or an unknown extension", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="passages per forward pass [default 32]", show_default=False)] = None,
    long_documents: Annotated[str | None, typer.Option("--long-documents", help="'split' long documents into overlapping passages or 'truncate' them [default split]", show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda [default auto]", show_default=False)] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="'stop' at the first bad record (nothing is written), or 'skip' bad records and list them in STORE/skipped.jsonl")] = "stop",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Read documents, encode them once, and store sentence and token vectors.

    Documents longer than the model window are split into overlapping passages. Ingesting again
    adds new documents, re-encodes changed ones and skips unchanged ones.
    """
    from .documents import ReadOptions, read_all, spool_stdin
    from .ingest import ingest as run_ingest
    from .ingest import validate
    from .store import Store, store_exists

    quiet_third_parties()
    if on_error not in ("stop", "skip"):
        raise typer.BadParameter(f"--on-error must be 'stop' or 'skip', not {on_error!r}")
    settings = settings_from(config, store=store, model=model, batch_size=batch_size, long_documents=long_documents, device=device)
    opts = ReadOptions(text_fields=tuple(text_field or ("text",)), id_field=id_field, format=fmt)
    skip = on_error == "skip"
    spool = spool_stdin() if "-" in paths else None

    def items() -> Any:
        if spool is not None:
            spool.seek(0)
        return read_all(paths, opts, spool, skip=skip)

    checked = validate(items(), skip=skip)
    directory = Path(settings.store)
    with held_writer_lock(directory):
        store_model = None
        if store_exists(directory):
            with Store.open(directory) as existing:
                store_model = existing.meta("model")
        encoder = load_model(settings, store_model)
        with Store.open(directory, create=True) as st, _progress(checked.documents, quiet) as progress:
            report = run_ingest(st, encoder, checked.keep(items()), settings, progress)
            size = st.file_bytes()
        if checked.rejected:
            skipped = directory / "skipped.jsonl"
            skipped.write_text("".join(json.dumps({"source": r.source, "error": r.message}) + "\n" for r in checked.rejected))
            err.print(f"skipped {len(checked.rejected):,} bad records, listed in {skipped}", highlight=False)
    rate = report.passages / report.seconds if report.seconds else 0.0
    err.print(
        f"Ingested {report.documents:,} documents ({report.passages:,} passages, {report.tokens:,} tokens) "
        f"in {report.seconds:.1f} s, {rate:,.1f} passages/s; {report.unchanged:,} unchanged skipped, "
        f"{report.replaced:,} replaced; store {directory} is {size / 1e6:,.1f} MB",
        highlight=False,
    )


class _progress:
    """A rich progress bar on stderr over documents, showing passages and passages/s."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet

    def __enter__(self) -> Callable[[int, int], None] | None:
        if self.quiet:
            return None
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("docs ·"),
            TextColumn("{task.fields[passages]:,} passages · {task.fields[rate]:,.1f}/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, transient=False,
        )
        task = self.bar.add_task("ingest", total=self.total, passages=0, rate=0.0)
        start = time.perf_counter()
        self.bar.start()

        def update(docs: int, passages: int) -> None:
            elapsed = max(time.perf_counter() - start, 1e-9)
            self.bar.update(task, completed=docs, passages=passages, rate=passages / elapsed)

        return update

    def __exit__(self, *exc: object) -> None:
        if not self.quiet:
            self.bar.stop()


# search --------------------------------------------------------------------------------------
@app.command()
@reports_errors
def search(
    query: Annotated[str | None, typer.Argument(help="what to search for", show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", help="number of hits")] = 10,
    like: Annotated[int | None, typer.Option("--like", help="find the neighbours of this stored passage id instead (no model needed)", show_default=False)] = None,
    queries: Annotated[Path | None, typer.Option("--queries", help="a file of queries, one per line ('-' for stdin), answered with one model load", show_default=False)] = None,
    why: Annotated[int, typer.Option("--why", help="add each hit's top N matched word pairs with their share of the score", show_default=False)] = 0,
    where: Annotated[list[str] | None, typer.Option("--where", help="keep hits whose document metadata has FIELD=VALUE; repeat to require several", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Rank stored passages by cosine similarity to QUERY; the query's tokens are cached for explain."""
    from .indexing import IndexOptions
    from .render import search_dict, search_table
    from .search import search as run_search
    from .search import search_like

    quiet_third_parties()
    settings = settings_from(config, store=store, model=model)
    given = sum(x is not None for x in (query, like, queries))
    if given != 1:
        raise typer.BadParameter("give exactly one of QUERY, --like ID or --queries FILE")
    filters = [_parse_where(w) for w in where or []]
    with open_store(settings) as st:
        if like is not None:
            results = [search_like(st, like, k, IndexOptions.from_settings(settings), filters)]
        else:
            texts = [query] if query is not None else _read_queries(queries)
            encoder = load_model(settings, st.meta("model"))
            results = [
                run_search(st, encoder, t, k, why, settings.query_cache, IndexOptions.from_settings(settings), filters)
                for t in texts
            ]
    if as_json:
        data = [search_dict(r) for r in results]
        out.print_json(json.dumps(data[0] if len(data) == 1 and queries is None else data, ensure_ascii=False))
        return
    for result in results:
        out.print(search_table(result))
        if result.query_id is not None:
            out.print(f"[dim]explain a hit: semsearch explain --id ID  (query {result.query_id} is cached)[/dim]")


def _parse_where(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise typer.BadParameter(f"--where takes FIELD=VALUE, not {text!r}")
    return name.strip(), value


def _read_queries(path: Path | None) -> list[str]:
    from .errors import QueryError

    if path is None:
        return []
    try:
        raw = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryError(f"{path}: cannot read the queries ({exc})") from None
    texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        raise QueryError(f"{path}: holds no queries; write one per line")
    return texts


# explain -------------------------------------------------------------------------------------
@app.command()
@reports_errors
def explain(
    passage_id: Annotated[int, typer.Option("--id", help="the passage to explain (an id from search)", show_default=False)],
    query: Annotated[str | None, typer.Option("--query", help="explain against this text (one short encode of the query)", show_default=False)] = None,
    query_id: Annotated[int | None, typer.Option("--query-id", help="explain against this cached query [default: the last search's]", show_default=False)] = None,
    against: Annotated[int | None, typer.Option("--against", help="explain against another stored passage (no model needed)", show_default=False)] = None,
    mode: Annotated[str, typer.Option("--mode", help="'cosine': per-pair cosine (the seed's picture); 'contribution': additive cells that sum to the score")] = "cosine",
    tokens: Annotated[bool, typer.Option("--tokens", help="show raw word pieces instead of words")] = False,
    max_cols: Annotated[int, typer.Option("--max-cols", help="most passage columns shown in the terminal (those that matter most, in text order; also capped by the terminal's width)")] = 30,
    top: Annotated[int, typer.Option("--top", help="top contributing pairs listed")] = 8,
    hide_special: Annotated[bool, typer.Option("--hide-special", help="hide [CLS]/[SEP] from the pictures (never from the sums)")] = False,
    png: Annotated[Path | None, typer.Option("--png", help="also write a labelled heatmap PNG here", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Show why passage ID matched: query × passage matrix, exact score decomposition, top pairs.

    Built from stored token vectors: against the last search's cached query it loads no model.
    """
    from .render import explanation_dict, explanation_png, explanation_view
    from .why import explain_passage

    quiet_third_parties()
    if mode not in ("cosine", "contribution"):
        raise typer.BadParameter(f"--mode must be 'cosine' or 'contribution', not {mode!r}")
    if sum(x is not None for x in (query, query_id, against)) > 1:
        raise typer.BadParameter("give at most one of --query, --query-id and --against")
    if max_cols < 1:
        raise typer.BadParameter("--max-cols must be at least 1")
    settings = settings_from(config, store=store, model=model)
    with open_store(settings) as st:
        encoder = None
        if query is not None:
            from .ingest import check_model

            encoder = load_model(settings, st.meta("model"))
            check_model(st, encoder)
        hit = explain_passage(
            st, passage_id, query_text=query, encoder=encoder, query_id=query_id, against=against,
            level="token" if tokens else "word", cache=settings.query_cache,
        )
    if png is not None:
        try:
            png.write_bytes(explanation_png(hit, mode, hide_special))
        except OSError as exc:
            raise StoreError(f"cannot write {png}: {exc.strerror}; choose another --png path") from None
    if as_json:
        out.print_json(json.dumps(explanation_dict(hit, top), ensure_ascii=False))
    else:
        out.print(explanation_view(hit, mode, max_cols, top, hide_special, out.width))
        if png is not None:
            out.print(f"[dim]heatmap written to {png}[/dim]")


# info ----------------------------------------------------------------------------------------
@app.command()
@reports_errors
def info(as_json: JsonOpt = False, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Describe a store: model, counts, bytes per stored token, index and size (no model needed)."""
    from .index import read_info

    settings = settings_from(config, store=store)
    with open_store(settings) as st:
        counts = st.counts()
        token_bytes = st.token_bytes()
        size = st.file_bytes()
        index = read_info(st.path)
        data = {
            "store": str(st.path),
            "model": st.meta("model"),
            "dim": int(st.meta("dim") or 0),
            "pooling": st.meta("pooling"),
            "max_tokens": int(st.meta("max_tokens") or 0),
            **counts,
            "token_codec": st.meta("token_codec"),
            "bytes_per_token": token_bytes / counts["tokens"] if counts["tokens"] else 0.0,
            "token_store_bytes": token_bytes,
            "token_store_share": token_bytes / size if size else 0.0,
            "index_factory": st.meta("index_factory"),
            "index_vectors": index.ntotal if index else 0,
            "store_bytes": size,
            "schema_version": st.schema_version(),
        }
    if as_json:
        out.print_json(json.dumps(data))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else (f"{value:,}" if isinstance(value, int) else str(value))
        out.print(f"{key:<{width}}  {shown}", highlight=False)



app.command("eval")(eval_command)
app.add_typer(index_app, name="index")
app.command()(check)
app.command()(delete)


def main() -> None:
    app()
