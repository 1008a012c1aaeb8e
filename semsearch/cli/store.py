"""Store maintenance and measurement commands: eval, index build, check, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    StoreOpt,
    err,
    open_session,
    out,
    parse_where,
    plural,
    quiet_third_parties,
    reports_errors,
)

# eval ----------------------------------------------------------------------------------------

@reports_errors
def eval_command(
    queries: Annotated[Path, typer.Option("--queries", help="BEIR queries: JSONL with _id and text", show_default=False)],
    qrels: Annotated[Path, typer.Option("--qrels", help="relevance judgements: TSV query-id, corpus-id, score (BEIR; header and CRLF accepted)", show_default=False)],
    k: Annotated[int, typer.Option("-k", help="cut-off for nDCG and MRR")] = 10,
    depth: Annotated[int, typer.Option("--depth", help="documents retrieved per query (MAP is computed over them)")] = 1000,
    mode: Annotated[str | None, typer.Option("--mode", help="'hybrid', 'dense' or 'lexical' [default: the search_mode setting, hybrid]", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
) -> None:
    """Measure retrieval quality on labelled queries: nDCG@k, MRR@k, Recall@100 and MAP.

    Document ids in the judgements are the store's document keys (BEIR's _id when ingested from
    a BEIR corpus); a document scores as its best passage. Metrics come from ir-measures.
    """
    from ..flows.evaluate import read_judged

    quiet_third_parties()
    texts, judged = read_judged(queries, qrels)  # bad files fail before the store and model open
    with open_session(config, store=store, model=model) as session:
        report = session.evaluate(texts, judged, k, depth, mode)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        return
    out.print(f"{report.queries} judged queries, {report.depth} documents retrieved each, {report.mode} mode")
    for name, value in report.measures.items():
        out.print(f"{name:<12} {100 * value:6.2f}", highlight=False)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False)


# index ---------------------------------------------------------------------------------------
index_app = typer.Typer(help="Inspect or rebuild the FAISS index from the stored sentence vectors (no model needed).", no_args_is_help=True)


@index_app.command("build")
@reports_errors
def index_build(
    factory: Annotated[str | None, typer.Option("--factory", help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,SQ8 [default: the store's current one]", show_default=False)] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rebuild the index, or switch its type, from the sentence vectors kept in SQLite."""
    with open_session(config, store=store) as session:
        with err.status(f"building {factory or 'the index'}…"):
            report = session.build_index(factory)
    chosen = report.factory if report.factory == report.resolved else f"{report.factory} ({report.resolved})"
    err.print(f"built {chosen} over {report.vectors:,} vectors in {report.seconds:.1f} s", highlight=False)


# shard ---------------------------------------------------------------------------------------
shard_app = typer.Typer(help="Sharded stores: N complete stores behind one --store DIR, documents assigned by a hash of their key.", no_args_is_help=True)


@shard_app.command("create")
@reports_errors
def shard_create(
    directory: Annotated[Path, typer.Argument(help="a new (or empty) directory for the sharded store", show_default=False)],
    shards: Annotated[int, typer.Option("--shards", help="how many shards (each a complete store; fixed once documents are in)", show_default=False)],
) -> None:
    """Make an empty sharded store; then ingest, search, explain, info, check, delete and serve
    take --store DIR as they take a single store."""
    from ..shards import create

    create(directory, shards)
    err.print(f"created {directory} with {plural(shards, 'shard')}; next: semsearch ingest FILES --store {directory}", highlight=False)


# check and delete ----------------------------------------------------------------------------
@reports_errors
def check(
    repair: Annotated[bool, typer.Option("--repair", help="restore meta from the stored data, rebuild the index and remove damaged documents (ingest them again)")] = False,
    force: Annotated[bool, typer.Option("--force", help="with --repair: remove damaged documents even when they are many")] = False,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Verify a store: schema, counts, index ↔ passages, token blobs, unit vectors (no model needed).

    Exits 1 when problems remain.
    """
    with open_session(config, store=store) as session:
        report = session.check(repair=repair, force=force)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        for line in report.repaired:
            out.print(f"repaired: {line}", highlight=False)
        for note in report.notes:
            out.print(f"note: {note}", highlight=False)
        for p in report.problems:
            out.print(f"problem: {p.what} — fix: {p.fix}", highlight=False)
        c = report.counts
        state = "ok" if report.ok else f"{len(report.problems)} problems"
        out.print(f"{state}: {c['documents']:,} documents, {c['passages']:,} passages, {c['tokens']:,} tokens", highlight=False)
    if not report.ok:
        raise typer.Exit(code=1)


@reports_errors
def delete(
    doc: Annotated[list[str], typer.Option("--doc", help="key of a document to remove; repeat for several", show_default=False)],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove documents with their passages, token vectors and index entries."""
    with open_session(config, store=store) as session:
        report = session.delete(doc)
    err.print(f"deleted {plural(report.documents, 'document')} ({plural(report.passages, 'passage')})", highlight=False)


@reports_errors
def list_command(
    where: Annotated[list[str] | None, typer.Option("--where", metavar="FIELD=VALUE", help="keep documents whose metadata has FIELD=VALUE; repeat to require several", show_default=False)] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many documents", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List stored documents: key (what 'semsearch delete --doc' takes), source, passages, when ingested."""
    import datetime

    from rich.table import Table

    filters = [parse_where(w) for w in where or []]
    with open_session(config, store=store) as session:
        docs = session.documents(filters, limit)
    if as_json:
        out.print_json(json.dumps([d.to_dict() for d in docs], ensure_ascii=False))
        return
    if not docs:
        out.print("no documents" + (" with " + ", ".join(where or []) if where else ""), highlight=False)
        return
    table = Table(show_lines=False)
    for name, justify in (("key", "left"), ("source", "left"), ("passages", "right"), ("ingested", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for d in docs:
        when = datetime.datetime.fromtimestamp(d.ingested_at).strftime("%Y-%m-%d %H:%M") if d.ingested_at else ""
        table.add_row(d.key, d.source, f"{d.passages:,}", when)
    out.print(table)
    err.print(f"{len(docs):,} {'document' if len(docs) == 1 else 'documents'}", highlight=False)


# recode --------------------------------------------------------------------------------------
@reports_errors
def recode(
    codec: Annotated[str | None, typer.Option("--codec", help="token codec: float16, SQ8, SQ4, PQ64, … [default: the store's]", show_default=False)] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="'words' (one vector per word; the word view stays exact) or 'pieces' [default: the store's]", show_default=False)] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rewrite the stored token vectors with another codec or pooled into words, without the model.

    Batches go into a shadow table that replaces the tokens in one transaction at the end: an
    interrupted recode leaves the store as it was, and running it again resumes. Word pieces
    pooled into words cannot be recoded back.
    """
    if codec is None and pool is None:
        raise typer.BadParameter("give --codec and/or --pool")
    if pool is not None and pool not in ("words", "pieces"):
        raise typer.BadParameter(f"--pool takes 'words' or 'pieces', not {pool!r}")
    with open_session(config, store=store) as session:
        with err.status("recoding the token vectors…", spinner="dots") as status:
            report = session.recode(codec, pool, lambda done, total: status.update(f"recoding the token vectors… {done:,} of {total:,} passages"))
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        return
    if not report.changed:
        out.print(f"the store already keeps tokens as {report.before.token_codec}, per {report.before.token_pool[:-1]}; nothing to do", highlight=False)
        return
    b, a = report.before, report.after
    out.print(f"recoded {report.passages:,} passages in {report.seconds:.1f} s", highlight=False)
    out.print(f"  before: {b.token_codec}, {b.token_pool}: {b.tokens:,} vectors, {b.bytes_per_token:,.1f} B each, "
              f"{b.token_bytes_per_passage:,.0f} B a passage; store {b.store_bytes / 1e6:,.1f} MB", highlight=False)
    out.print(f"  after:  {a.token_codec}, {a.token_pool}: {a.tokens:,} vectors, {a.bytes_per_token:,.1f} B each, "
              f"{a.token_bytes_per_passage:,.0f} B a passage; store {a.store_bytes / 1e6:,.1f} MB", highlight=False)
