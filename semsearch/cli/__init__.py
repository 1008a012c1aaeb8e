"""The ``semsearch`` command: parse options, call the library, render, turn errors into exit codes."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from .. import __version__
from ..errors import StoreError
from ..flows.query import check_k, check_query
from ..flows.search import MODES
from ..results import IngestProgress
from ..shards import ShardedSession
from .common import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    StoreOpt,
    err,
    load_model,
    open_session,
    out,
    parse_where,
    quiet_third_parties,
    reports_errors,
)
from .serve import serve
from .store import check, delete, eval_command, index_app, list_command, recode, shard_app

app = typer.Typer(
    help="Semantic search that shows why a passage matched, from stored token vectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"semsearch {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True)] = False,
) -> None:
    """semsearch: ingest a corpus, search it by meaning, and see why each hit matched."""


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
    precision: Annotated[str | None, typer.Option("--precision", help="on a CPU: 'bf16' (bfloat16, faster with AMX or AVX-512 BF16), 'fp32', or 'auto' (bf16 where the CPU has it) [default auto]", show_default=False)] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="'stop' at the first bad record (nothing is written), or 'skip' bad records and list them in STORE/skipped.jsonl")] = "stop",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    ray: Annotated[str | None, typer.Option("--ray", help="encode on a Ray cluster: 'local' starts one on this machine, else a running cluster's address ('auto', 'ray://HEAD:10001'); needs pip install 'semsearch[ray]'", show_default=False)] = None,
    ray_workers: Annotated[int, typer.Option("--ray-workers", help="with --ray: model actors (0: one per GPU, else one per two CPUs)")] = 0,
    shard: Annotated[int | None, typer.Option("--shard", help="a sharded store: ingest only the documents of shard N (0-based), so that one process per shard can run at once", show_default=False)] = None,
) -> None:
    """Read documents, encode them once, and store sentence and token vectors.

    Documents longer than the model window are split into overlapping passages. Ingesting again
    adds new documents, re-encodes changed ones and skips unchanged ones.
    """
    quiet_third_parties()
    if on_error not in ("stop", "skip"):
        raise typer.BadParameter(f"--on-error must be 'stop' or 'skip', not {on_error!r}")
    with open_session(
        config, create=True, store=store, model=model, batch_size=batch_size, long_documents=long_documents, device=device, precision=precision
    ) as session:
        if ray_workers and not ray:
            raise typer.BadParameter("--ray-workers needs --ray local or --ray ADDRESS")
        if shard is not None and not isinstance(session, ShardedSession):
            raise typer.BadParameter(f"--shard needs a sharded store, and {session.path} is not one (semsearch shard create DIR --shards N)")
        run = functools.partial(session.ingest, shard=shard) if isinstance(session, ShardedSession) else session.ingest
        with _progress(quiet) as progress:
            try:
                report = run(
                    paths, text_fields=tuple(text_field or ("text",)), id_field=id_field, format=fmt, on_error=on_error, progress=progress,
                    ray=ray, ray_workers=ray_workers,
                )
            except KeyboardInterrupt:
                progress.__exit__()
                err.print(
                    f"interrupted: the documents stored so far are kept, whole ({progress.last.stored:,} passages or more); "
                    "run the same command again to resume: stored documents are skipped",
                    highlight=False,
                )
                raise typer.Exit(code=130) from None
    if report.skipped_file:
        err.print(f"skipped {len(report.rejected):,} bad records, listed in {report.skipped_file}", highlight=False)
    rate = report.passages / report.seconds if report.seconds else 0.0
    err.print(
        f"Ingested {report.documents:,} documents ({report.passages:,} passages, {report.tokens:,} tokens) "
        f"in {report.seconds:.1f} s, {rate:,.1f} passages/s; {report.unchanged:,} unchanged skipped, "
        f"{report.replaced:,} replaced; store {session.path} is {report.store_bytes / 1e6:,.1f} MB",
        highlight=False,
    )


class _progress:
    """A spinner while the model loads, then a rich progress bar on stderr over documents, with
    passages encoded and stored, and passages/s."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.status: Any = None
        self.last = IngestProgress("model", 0, 0, 0, 0)

    def __enter__(self) -> _progress:
        return self

    def __call__(self, state: IngestProgress) -> None:
        self.last = state
        if self.quiet:
            return
        if state.stage == "model":
            self.status = err.status("loading the model…", spinner="dots")
            self.status.start()
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.bar is None:
            self._start(state.total)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, completed=state.documents, encoded=state.encoded, stored=state.stored, rate=state.encoded / elapsed)

    def _start(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("ingest"), BarColumn(bar_width=20), MofNCompleteColumn(), TextColumn("docs ·"),
            TextColumn("{task.fields[encoded]:,} passages ({task.fields[stored]:,} stored) · {task.fields[rate]:,.1f}/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, transient=False,
        )
        self.task = self.bar.add_task("ingest", total=total, encoded=0, stored=0, rate=0.0)
        self.started = time.perf_counter()
        self.bar.start()

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# search --------------------------------------------------------------------------------------
class _OptionalWhy(TyperCommand):
    """``--why`` alone means ``--why 3`` (typer has no options with an optional value)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given: list[str] = []
        for i, arg in enumerate(args):
            given.append(arg)
            if arg == "--why" and not (i + 1 < len(args) and args[i + 1].isdigit()):
                given.append(str(DEFAULT_WHY))
        return list(super().parse_args(ctx, given))


DEFAULT_WHY = 3


@app.command(cls=_OptionalWhy)
@reports_errors
def search(
    query: Annotated[str | None, typer.Argument(help="what to search for", show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", help="number of hits")] = 10,
    like: Annotated[int | None, typer.Option("--like", help="find the neighbours of this stored passage id instead (no model needed)", show_default=False)] = None,
    queries: Annotated[Path | None, typer.Option("--queries", help="a file of queries, one per line ('-' for stdin), answered with one model load", show_default=False)] = None,
    why: Annotated[int, typer.Option("--why", help="add each hit's top N matched word pairs with their share of the score; --why alone means 3", show_default=False)] = 0,
    where: Annotated[list[str] | None, typer.Option("--where", metavar="FIELD=VALUE", help="keep hits whose document metadata has FIELD=VALUE; repeat to require several", show_default=False)] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="'hybrid' (meaning and words fused), 'dense' (cosine) or 'lexical' (BM25) [default: the search_mode setting, hybrid]", show_default=False)] = None,
    group_by: Annotated[str | None, typer.Option("--group-by", help="'document': the best passage of each of k documents", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Rank stored passages for QUERY by meaning and words (hybrid), by cosine (dense) or by BM25
    (lexical); each hit says which retrievers found it. The query's tokens are cached for explain."""
    from ..render.terminal import search_table

    quiet_third_parties()
    given = sum(x is not None for x in (query, like, queries))
    if given != 1:
        raise typer.BadParameter("give exactly one of QUERY, --like ID or --queries FILE")
    filters = [parse_where(w) for w in where or []]
    if mode is not None and mode not in MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if group_by not in (None, "document", "passage"):
        raise typer.BadParameter(f"--group-by takes 'document' (or 'passage', the default), not {group_by!r}")
    texts = [query] if query is not None else _read_queries(queries)
    check_k(k)  # bad arguments fail before the model loads
    for text in texts:
        check_query(text)
    with open_session(config, store=store, model=model) as session:
        if like is not None:
            results = [session.like(like, k, filters, why, mode, group_by)]
        else:
            load_model(session, len(texts))
            results = [session.search(t, k, filters, why, mode, group_by) for t in texts]
    if as_json:
        data = [r.to_dict() for r in results]
        out.print_json(json.dumps(data[0] if len(data) == 1 and queries is None else data, ensure_ascii=False))
        return
    for result in results:
        if not result.hits:
            out.print(f"no hits for {result.query!r}" + (" with " + ", ".join(where or []) if where else ""), highlight=False)
            continue
        out.print(search_table(result))
        if result.query_id is not None:
            out.print(f"[dim]explain a hit: semsearch explain --id ID  (query {result.query_id} is cached)[/dim]")


def _read_queries(path: Path | None) -> list[str]:
    from ..errors import QueryError

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
    png: Annotated[Path | None, typer.Option("--png", help="also write the heatmap and the shaded passage as a picture here (.png, .jpg, .svg or .pdf)", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Show why passage ID matched: query × passage matrix, exact score decomposition, top pairs.

    Built from stored token vectors: against the last search's cached query it loads no model.
    """
    from ..render.png import image_format
    from ..render.terminal import explanation_view

    quiet_third_parties()
    if mode not in ("cosine", "contribution"):
        raise typer.BadParameter(f"--mode must be 'cosine' or 'contribution', not {mode!r}")
    if sum(x is not None for x in (query, query_id, against)) > 1:
        raise typer.BadParameter("give at most one of --query, --query-id and --against")
    if max_cols < 1:
        raise typer.BadParameter("--max-cols must be at least 1")
    picture = image_format(png.suffix) if png is not None else "png"
    with open_session(config, store=store, model=model) as session:
        if query is not None:
            load_model(session, 1)
        hit = session.explain(passage_id, query=query, query_id=query_id, against=against, level="token" if tokens else "word")
    if png is not None:
        from ..render.png import explanation_png

        try:
            png.write_bytes(explanation_png(hit, mode, hide_special, picture))
        except OSError as exc:
            raise StoreError(f"cannot write {png}: {exc.strerror}; choose another --png path") from None
    if as_json:
        out.print_json(json.dumps(hit.to_dict(top), ensure_ascii=False))
    else:
        out.print(explanation_view(hit, mode, max_cols, top, hide_special, out.width))
        if png is not None:
            out.print(f"[dim]heatmap written to {png}[/dim]")


# info ----------------------------------------------------------------------------------------
@app.command()
@reports_errors
def info(as_json: JsonOpt = False, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Describe a store: model, counts, bytes per stored token, index and size (no model needed)."""
    with open_session(config, store=store) as session:
        data = session.info().to_dict()
    if as_json:
        out.print_json(json.dumps(data))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else (f"{value:,}" if isinstance(value, int) else str(value))
        out.print(f"{key:<{width}}  {shown}", highlight=False)


app.command("eval")(eval_command)
app.add_typer(index_app, name="index")
app.add_typer(shard_app, name="shard")
app.command()(check)
app.command()(delete)
app.command("list")(list_command)
app.command()(serve)
app.command()(recode)


def main() -> None:
    app()
