"""The ``semsearch`` command: parse options, call the library, render, turn errors into exit codes."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from . import __version__
from .config import Settings, load_settings, resolve_model
from .errors import SemsearchError, StoreError

app = typer.Typer(
    help="Semantic search that shows why a passage matched, from stored token vectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


def _quiet_third_parties() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, overrides)


def _load_encoder(settings: Settings, store_model: str | None) -> Any:
    from . import encoder

    with err.status("loading the model…", spinner="dots"):
        return encoder.load_encoder(resolve_model(settings, store_model), settings.device)


def _open_store(settings: Settings) -> Any:
    from .store import Store

    return Store.open(settings.store)


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
    from .indexing import write_lock
    from .ingest import ingest as run_ingest
    from .ingest import validate
    from .store import Store, store_exists

    _quiet_third_parties()
    if on_error not in ("stop", "skip"):
        raise typer.BadParameter(f"--on-error must be 'stop' or 'skip', not {on_error!r}")
    settings = _settings(config, store=store, model=model, batch_size=batch_size, long_documents=long_documents, device=device)
    opts = ReadOptions(text_fields=tuple(text_field or ("text",)), id_field=id_field, format=fmt)
    skip = on_error == "skip"
    spool = spool_stdin() if "-" in paths else None

    def items() -> Any:
        if spool is not None:
            spool.seek(0)
        return read_all(paths, opts, spool, skip=skip)

    checked = validate(items(), skip=skip)
    directory = Path(settings.store)
    with write_lock(directory) as held:
        if not held:
            raise StoreError(f"another semsearch process is writing to {directory}; wait for it to finish")
        store_model = None
        if store_exists(directory):
            with Store.open(directory) as existing:
                store_model = existing.meta("model")
        encoder = _load_encoder(settings, store_model)
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

    _quiet_third_parties()
    settings = _settings(config, store=store, model=model)
    given = sum(x is not None for x in (query, like, queries))
    if given != 1:
        raise typer.BadParameter("give exactly one of QUERY, --like ID or --queries FILE")
    filters = [_parse_where(w) for w in where or []]
    with _open_store(settings) as st:
        if like is not None:
            results = [search_like(st, like, k, IndexOptions.from_settings(settings), filters)]
        else:
            texts = [query] if query is not None else _read_queries(queries)
            encoder = _load_encoder(settings, st.meta("model"))
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

    _quiet_third_parties()
    if mode not in ("cosine", "contribution"):
        raise typer.BadParameter(f"--mode must be 'cosine' or 'contribution', not {mode!r}")
    if sum(x is not None for x in (query, query_id, against)) > 1:
        raise typer.BadParameter("give at most one of --query, --query-id and --against")
    if max_cols < 1:
        raise typer.BadParameter("--max-cols must be at least 1")
    settings = _settings(config, store=store, model=model)
    with _open_store(settings) as st:
        encoder = None
        if query is not None:
            from .ingest import check_model

            encoder = _load_encoder(settings, st.meta("model"))
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

    settings = _settings(config, store=store)
    with _open_store(settings) as st:
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


# eval ----------------------------------------------------------------------------------------
@app.command("eval")
@reports_errors
def eval_command(
    queries: Annotated[Path, typer.Option("--queries", help="BEIR queries: JSONL with _id and text", show_default=False)],
    qrels: Annotated[Path, typer.Option("--qrels", help="relevance judgements: TSV query-id, corpus-id, score (BEIR; header and CRLF accepted)", show_default=False)],
    k: Annotated[int, typer.Option("-k", help="cut-off for nDCG and MRR")] = 10,
    depth: Annotated[int, typer.Option("--depth", help="documents retrieved per query (MAP is computed over them)")] = 1000,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Measure retrieval quality on labelled queries: nDCG@k, MRR@k, Recall@100 and MAP.

    Document ids in the judgements are the store's document keys (BEIR's _id when ingested from
    a BEIR corpus); a document scores as its best passage. Metrics come from ir-measures.
    """
    from .evaluate import check_ids, evaluate, read_qrels, read_queries
    from .indexing import IndexOptions

    _quiet_third_parties()
    settings = _settings(config, store=store, model=model)
    texts, judgements = read_queries(queries), read_qrels(qrels)
    check_ids(texts, judgements, qrels, queries)
    with _open_store(settings) as st:
        encoder = _load_encoder(settings, st.meta("model"))
        report = evaluate(st, encoder, texts, judgements, k, depth, IndexOptions.from_settings(settings))
    if as_json:
        out.print_json(json.dumps({"queries": report.queries, "depth": report.depth, **report.measures, "missing_documents": report.missing_documents}))
        return
    out.print(f"{report.queries} judged queries, {report.depth} documents retrieved each")
    for name, value in report.measures.items():
        out.print(f"{name:<12} {100 * value:6.2f}", highlight=False)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False)


# index ---------------------------------------------------------------------------------------
index_app = typer.Typer(help="Inspect or rebuild the FAISS index from the stored sentence vectors (no model needed).", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("build")
@reports_errors
def index_build(
    factory: Annotated[str | None, typer.Option("--factory", help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,SQ8 [default: the store's current one]", show_default=False)] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rebuild the index, or switch its type, from the sentence vectors kept in SQLite."""
    import time

    from .indexing import build_index, store_factory, write_lock

    settings = _settings(config, store=store)
    with _open_store(settings) as st, write_lock(st.path) as held:
        if not held:
            raise StoreError(f"an ingest is writing to {st.path}; build the index when it has finished")
        chosen = factory or store_factory(st)
        started = time.perf_counter()
        with err.status(f"building {chosen}…"):
            index = build_index(st, chosen)
            index.save(st.path)
        st.set_meta({"index_factory": chosen})
        err.print(f"built {chosen} over {index.ntotal:,} vectors in {time.perf_counter() - started:.1f} s", highlight=False)


# check and delete ----------------------------------------------------------------------------
@app.command()
@reports_errors
def check(
    repair: Annotated[bool, typer.Option("--repair", help="rebuild the index and remove damaged documents (ingest them again)")] = False,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Verify a store: schema, counts, index ↔ passages, token blobs, unit vectors (no model needed).

    Exits 1 when problems remain.
    """
    from .indexing import write_lock
    from .maintenance import check_store

    settings = _settings(config, store=store)
    with _open_store(settings) as st, write_lock(st.path) as held:
        if repair and not held:
            raise StoreError(f"another semsearch process is writing to {st.path}; repair when it has finished")
        report = check_store(st, repair=repair)
        if repair and report.problems:
            repaired = report.repaired
            report = check_store(st)  # what is left after the repair
            report.repaired = repaired
    problems = [{"problem": p.what, "fix": p.fix} for p in report.problems]
    if as_json:
        out.print_json(json.dumps({"ok": report.ok, "counts": report.counts, "problems": problems, "repaired": report.repaired}))
    else:
        for line in report.repaired:
            out.print(f"repaired: {line}", highlight=False)
        for p in report.problems:
            out.print(f"problem: {p.what} — fix: {p.fix}", highlight=False)
        c = report.counts
        state = "ok" if report.ok else f"{len(report.problems)} problems"
        out.print(f"{state}: {c['documents']:,} documents, {c['passages']:,} passages, {c['tokens']:,} tokens", highlight=False)
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
@reports_errors
def delete(
    doc: Annotated[list[str], typer.Option("--doc", help="key of a document to remove; repeat for several", show_default=False)],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove documents with their passages, token vectors and index entries."""
    from .indexing import write_lock
    from .maintenance import delete_documents

    settings = _settings(config, store=store)
    with _open_store(settings) as st, write_lock(st.path) as held:
        if not held:
            raise StoreError(f"another semsearch process is writing to {st.path}; wait for it to finish")
        removed = delete_documents(st, doc)
    err.print(f"deleted {len(set(doc)):,} documents ({removed:,} passages)", highlight=False)


def main() -> None:
    app()
