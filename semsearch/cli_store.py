"""Store maintenance and measurement commands: eval, index build, check, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

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

# eval ----------------------------------------------------------------------------------------

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

    quiet_third_parties()
    settings = settings_from(config, store=store, model=model)
    texts, judgements = read_queries(queries), read_qrels(qrels)
    check_ids(texts, judgements, qrels, queries)
    with open_store(settings) as st:
        encoder = load_model(settings, st.meta("model"))
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


@index_app.command("build")
@reports_errors
def index_build(
    factory: Annotated[str | None, typer.Option("--factory", help="FAISS factory string, e.g. Flat, HNSW32, IVF1024,SQ8 [default: the store's current one]", show_default=False)] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rebuild the index, or switch its type, from the sentence vectors kept in SQLite."""
    import time

    from .indexing import build_index, store_factory

    settings = settings_from(config, store=store)
    with open_store(settings) as st, held_writer_lock(st.path):
        chosen = factory or store_factory(st)
        started = time.perf_counter()
        with err.status(f"building {chosen}…"):
            index = build_index(st, chosen)
            index.save(st.path)
        st.set_meta({"index_factory": chosen})
        err.print(f"built {chosen} over {index.ntotal:,} vectors in {time.perf_counter() - started:.1f} s", highlight=False)


# check and delete ----------------------------------------------------------------------------
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
    from .errors import StoreError
    from .indexing import write_lock
    from .maintenance import check_store

    settings = settings_from(config, store=store)
    with open_store(settings) as st, write_lock(st.path) as held:
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


@reports_errors
def delete(
    doc: Annotated[list[str], typer.Option("--doc", help="key of a document to remove; repeat for several", show_default=False)],
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove documents with their passages, token vectors and index entries."""
    from .maintenance import delete_documents

    settings = settings_from(config, store=store)
    with open_store(settings) as st, held_writer_lock(st.path):
        removed = delete_documents(st, doc)
    err.print(f"deleted {len(set(doc)):,} documents ({removed:,} passages)", highlight=False)
