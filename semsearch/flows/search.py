"""Search: encode the query, ask the index and the lexical index, fuse, read the hits from the
store, cache the query."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..core.fusion import MAX_TERMS, Fused, combine, query_terms, rrf, sentences
from ..core.matrices import Decomposition, column_shares, decompose, top_pairs
from ..core.types import TokenData
from ..encoder import Encoder
from ..errors import QueryError
from ..results import Hit, SearchResult, Snippet, TermShare
from ..store import MARK_END, MARK_START, Store, StoreBusy
from .indexing import IndexKeeper
from .query import check_id, check_k, encode_query

logger = logging.getLogger(__name__)
BRUTE_FORCE_LIMIT = 20_000  # filtered searches over fewer passages are scored exactly from SQLite
MODES = ("dense", "lexical", "hybrid")
GROUP_LIMIT = 20_000  # passages a --group-by document search reads at most to find k documents


def ranked(
    store: Store, keeper: IndexKeeper, vector: NDArray[np.float32], k: int, where: Sequence[tuple[str, str]] = ()
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k (scores, ids); with ``where``, only passages whose metadata match (still k if k match)."""
    index = keeper.current()
    k = max(1, min(k, index.ntotal))  # a huge -k asks for no more than there is
    if not where:
        scores, ids = index.search(vector, k)
        return scores[0], ids[0]
    allowed = store.documents.passage_ids_where(where)
    if len(allowed) > BRUTE_FORCE_LIMIT:
        scores, ids = index.search(vector, k, allowed)
        if int((ids[0] >= 0).sum()) >= min(k, len(allowed)):
            return scores[0], ids[0]
    found, vectors = store.documents.vectors_for(allowed)
    exact = vectors @ vector.astype(np.float32)
    order = np.argsort(-exact, kind="stable")[:k]
    return exact[order], found[order]


def hits(store: Store, fused: Sequence[Fused], k: int) -> list[Hit]:
    rows = store.documents.passages([f.id for f in fused[:k]])
    found: list[Hit] = []
    for f in fused[:k]:
        row = rows.get(f.id)
        if row is None:  # deleted since the index was read
            continue
        found.append(
            Hit(len(found) + 1, f.id, f.score, row.document_key, row.ordinal, row.char_start, row.char_end, row.text, row.meta, found_by=dict(f.ranks))
        )
    return found


@dataclass(frozen=True)
class Fusion:
    """How a search ranks: ``mode`` dense, lexical or hybrid; in hybrid mode ``method`` 'rrf' or
    'score' (a weighted sum of min-max normalised scores, ``weight`` on the dense side), over each
    retriever's top ``depth`` passages."""

    mode: str = "hybrid"
    method: str = "score"
    weight: float = 0.5
    depth: int = 100


HYBRID = Fusion()


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise QueryError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def retrieve(
    store: Store,
    keeper: IndexKeeper,
    vector: NDArray[np.float32],
    terms: Sequence[str],
    fusion: Fusion,
    wanted: int,
    where: Sequence[tuple[str, str]] = (),
    exclude: int | None = None,
    lexical: list[tuple[int, float]] | None = None,
) -> list[Fused]:
    """At least ``wanted`` passages (where there are), best first, by the fusion's mode;
    ``lexical`` is the lexical list when it was fetched already (``lexical_depth`` deep)."""
    return fuse(candidates(store, keeper, vector, terms, fusion, wanted, where, exclude, lexical), fusion)


def candidates(
    store: Store,
    keeper: IndexKeeper,
    vector: NDArray[np.float32],
    terms: Sequence[str],
    fusion: Fusion,
    wanted: int,
    where: Sequence[tuple[str, str]] = (),
    exclude: int | None = None,
    lexical: list[tuple[int, float]] | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """Each retriever's list of (passage id, score), best first, before fusion: what a sharded
    store merges across its shards."""
    extra = exclude is not None
    lists: dict[str, list[tuple[int, float]]] = {}
    depth = lexical_depth(fusion, wanted)
    if fusion.mode != "lexical":
        scores, ids = ranked(store, keeper, vector, depth + extra, where)
        lists["dense"] = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and i != exclude][:depth]
    if fusion.mode != "dense":
        if lexical is None:
            lexical = store.lexical.search(terms, depth + extra, where)
        lists["lexical"] = [(i, s) for i, s in lexical if i != exclude][:depth]
    return lists


def fuse(lists: dict[str, list[tuple[int, float]]], fusion: Fusion) -> list[Fused]:
    """One ranking from the retrievers' lists, by the fusion's mode and method."""
    if fusion.mode != "hybrid":
        name = fusion.mode
        return [Fused(pid, score, {name: rank}) for rank, (pid, score) in enumerate(lists[name], start=1)]
    if fusion.method == "rrf":
        return rrf(lists)
    return combine(lists, {"dense": fusion.weight, "lexical": 1.0 - fusion.weight})


def lexical_depth(fusion: Fusion, wanted: int) -> int:
    return max(wanted, fusion.depth) if fusion.mode == "hybrid" else wanted


def _cosines(store: Store, vector: NDArray[np.float32], ids: Sequence[int]) -> dict[int, float]:
    if not ids:
        return {}
    found, vectors = store.documents.vectors_for(list(ids))
    return {int(i): float(s) for i, s in zip(found, vectors @ vector.astype(np.float32))}


def _found(
    store: Store,
    keeper: IndexKeeper,
    vector: NDArray[np.float32],
    terms: Sequence[str],
    fusion: Fusion,
    k: int,
    where: Sequence[tuple[str, str]],
    exclude: int | None = None,
    group: bool = False,
    lexical: list[tuple[int, float]] | None = None,
) -> list[Hit]:
    """The hits, each with its cosine and BM25. With ``group``, the best passage of each of ``k``
    documents. When the index names only passages the store does not hold (a foreign or tampered
    index file whose counts look right), it is rebuilt from the store and asked again."""
    for attempt in range(2):
        fused = _ranked_once(store, keeper, vector, terms, fusion, k, where, exclude, group, lexical)
        found = hits(store, fused, k)
        if found or not fused or fusion.mode == "lexical" or attempt:
            break
        logger.warning("the index of %s names passages the store does not hold; rebuilding it", store.path)
        keeper.rebuild()
    add_cosines(store, vector, found)
    return found


def add_cosines(store: Store, vector: NDArray[np.float32], found: list[Hit]) -> None:
    """Each hit's exact cosine with ``vector``, from its stored sentence vector."""
    cosines = _cosines(store, vector, [h.passage_id for h in found])
    for hit in found:
        hit.cosine = cosines.get(hit.passage_id)


def _ranked_once(
    store: Store,
    keeper: IndexKeeper,
    vector: NDArray[np.float32],
    terms: Sequence[str],
    fusion: Fusion,
    k: int,
    where: Sequence[tuple[str, str]],
    exclude: int | None,
    group: bool,
    lexical: list[tuple[int, float]] | None = None,
) -> list[Fused]:
    if not group:
        return retrieve(store, keeper, vector, terms, fusion, k, where, exclude, lexical)
    return best_of_documents(
        lambda wanted: retrieve(store, keeper, vector, terms, fusion, wanted, where, exclude),
        lambda fused: store.documents.keys_of([f.id for f in fused]),
        k,
        store.stats.kept().passages,
    )


def best_of_documents(
    fused_at: Callable[[int], list[Fused]], keys_of: Callable[[list[Fused]], dict[int, str]], k: int, passages: int
) -> list[Fused]:
    """The best passage of each of ``k`` documents, best first: ``fused_at(wanted)`` ranks that
    many passages, asked four times deeper until k documents are in (or ``passages``, at most
    ``GROUP_LIMIT``, were read); ``keys_of`` names their documents."""
    total = min(passages, max(GROUP_LIMIT, 4 * k))  # a request reads this many passages at most
    wanted = 4 * k
    while True:
        fused = fused_at(wanted)
        keys = keys_of(fused)
        best: dict[str, Fused] = {}
        for f in fused:
            key = keys.get(f.id)
            if key is not None and key not in best:
                best[key] = f
        if len(best) >= k or wanted >= total or len(fused) < wanted:
            return list(best.values())
        wanted *= 4


def search(
    store: Store,
    keeper: IndexKeeper,
    encoder: Encoder,
    text: str,
    k: int = 10,
    why: int = 0,
    cache: int = 100,
    where: Sequence[tuple[str, str]] = (),
    fusion: Fusion = HYBRID,
    group: bool = False,
    helper: Executor | None = None,
) -> SearchResult:
    """The ``k`` best passages for ``text`` by the fusion's mode (``helper``, a thread pool, runs
    the lexical search while the query is encoded); with ``why`` > 0, each hit's
    top word pairs and the query terms it holds; ``group`` gives the best passage of each of k
    documents. ``where`` keeps passages whose document metadata has ``field == value`` for every
    pair. The query's tokens are cached for ``explain``."""
    check_k(k)
    check_mode(fusion.mode)
    terms = store.lexical.informative(query_terms(text))
    early = None
    if fusion.mode != "dense" and not group and helper is not None:
        # the lexical list does not need the query vector: fetch it while the model encodes
        early = helper.submit(store.lexical.search, terms, lexical_depth(fusion, k), where)
    vector, tokens = encode_query(encoder, text)
    lexical = None if early is None else early.result()
    found = _found(store, keeper, vector, terms, fusion, k, where, group=group, lexical=lexical)
    query_id = cache_query(store, vector, tokens, cache)
    known = None if lexical is None else Known(dict(lexical), len(lexical) < lexical_depth(fusion, k))
    describe(store, found, tokens, terms, why, fusion, known)
    return SearchResult(text, query_id, found, fusion.mode)


@dataclass(frozen=True)
class Known:
    """BM25 scores a search already has from its lexical list; ``complete`` when the list holds
    every passage that matches (shorter than asked), so that the others score 0."""

    scores: dict[int, float]
    complete: bool

    def covers(self, ids: Sequence[int]) -> bool:
        return self.complete or all(i in self.scores for i in ids)


def describe(
    store: Store, found: list[Hit], query: TokenData, terms: Sequence[str], why: int, fusion: Fusion, known: Known | None = None
) -> None:
    """What a page of hits shows besides its ranks: with ``why``, each hit's top word pairs
    against ``query`` and its terms' BM25 parts; always its BM25 (but in dense mode without
    ``why``) and best sentence. ``known`` BM25 scores are not asked of FTS5 again."""
    expls = add_reasons(store, query, found, why) if why else {}
    if why:
        add_terms(store, found, terms)
    add_snippets(store, found, terms, expls, scores=fusion.mode != "dense" or why > 0, known=known)


CACHE_WAIT = 0.5  # seconds a search waits to cache its query while another writer holds the store


def cache_query(store: Store, vector: NDArray[np.float32], tokens: TokenData, keep: int) -> int | None:
    """Cache the query for explain, unless the store is read-only or busy with a long write: a
    search never waits on an ingest (its query id is then None)."""
    if store.read_only:
        return None
    try:
        return store.queries.save(vector, tokens, keep, wait=CACHE_WAIT)
    except StoreBusy:
        logger.info("the store is busy; the query was not cached for explain")
        return None


def add_reasons(store: Store, query: TokenData, found: list[Hit], n_pairs: int) -> dict[int, Decomposition]:
    """Each hit's top word pairs (of its cosine, decomposed exactly); returns the decompositions."""
    codec, meta = store.codec(), store.meta
    expls = {}
    for hit in found:
        doc = store.tokens.of(hit.passage_id, codec)
        expl = decompose(query, doc, meta.special_tokens, "word", hit.cosine, meta.pooling)
        hit.reasons = top_pairs(expl, n_pairs, merge=True)
        expls[hit.passage_id] = expl
    return expls


def term_shares(scores: Sequence[float], terms: Sequence[str]) -> list[TermShare]:
    """The terms that carry BM25 score (FTS5 gives words in most passages an idf near 0: they
    are left out below 0.1% of the score), most first."""
    total = sum(scores)
    return [TermShare(t, s, s / total) for t, s in sorted(zip(terms, scores), key=lambda x: -x[1]) if s > 0 and s / total >= 1e-3]


def add_terms(store: Store, found: list[Hit], terms: Sequence[str]) -> None:
    """The query terms each hit holds, with their parts of its BM25 score (they add up to it)."""
    if not terms or not found:
        return
    parts = store.lexical.term_scores([h.passage_id for h in found], terms)
    for hit in found:
        hit.terms = term_shares(parts[hit.passage_id], terms)


def add_snippets(
    store: Store, found: list[Hit], terms: Sequence[str], expls: dict[int, Decomposition], scores: bool = True, known: Known | None = None
) -> None:
    """Each hit's BM25 (with ``scores``; from ``known`` where it covers the hits: FTS5's bm25()
    walks every term's postings again), and its best-matching sentence with its matched words
    marked: the sentence with most query terms (FTS5's tokeniser and stemmer decide), else the
    sentence holding most of the cosine (with ``why``), else the first sentence."""
    ids = [h.passage_id for h in found]
    reuse = scores and known is not None and known.covers(ids)
    marked = store.lexical.marked(ids, terms, scores and not reuse)
    for hit in found:
        local = hit.text
        bm25, text = marked.get(hit.passage_id, (0.0 if scores else None, ""))
        if reuse:
            assert known is not None
            bm25 = known.scores.get(hit.passage_id, 0.0)
        hit.bm25 = bm25
        if text and MARK_START not in local and MARK_END not in local:  # the markers cannot be told from the text
            plain, marks = _unmark(text)
            if plain == local:
                hit.snippet = _best_sentence(local, marks, [1.0] * len(marks))
                continue
        expl = expls.get(hit.passage_id)
        if expl is not None:
            shares = column_shares(expl)
            spans = [tuple(expl.doc.spans[j]) for j in range(len(shares)) if not expl.doc.special[j]]
            weights = [float(shares[j]) for j in range(len(shares)) if not expl.doc.special[j]]
            top = {tuple(expl.doc.spans[p.col]) for p in hit.reasons}
            best = _best_sentence(local, [(int(a), int(b)) for a, b in spans], weights)
            best.marks = [m for m in best.marks if (m[0] + best.start, m[1] + best.start) in top]
            hit.snippet = best
            continue
        start, end = sentences(local)[0]
        hit.snippet = Snippet(local[start:end], start)


def _unmark(text: str) -> tuple[str, list[tuple[int, int]]]:
    plain, marks, at = [], [], 0
    begin: int | None = None
    for piece in re.split(f"({MARK_START}|{MARK_END})", text):
        if piece == MARK_START:
            begin = at
        elif piece == MARK_END:
            if begin is not None:
                marks.append((begin, at))
            begin = None
        else:
            plain.append(piece)
            at += len(piece)
    return "".join(plain), marks


def _best_sentence(text: str, spans: Sequence[tuple[int, int]], weights: Sequence[float]) -> Snippet:
    """The sentence whose spans weigh most (the first on a tie), with those spans in it."""
    best: Snippet | None = None
    best_weight = -np.inf
    for start, end in sentences(text):
        inside = [(a, b, w) for (a, b), w in zip(spans, weights) if a >= start and b <= end]
        weight = sum(w for _, _, w in inside)
        if weight > best_weight + 1e-12:
            best_weight = weight
            best = Snippet(text[start:end], start, [(a - start, b - start) for a, b, _ in inside])
    assert best is not None
    return best


def like(
    store: Store,
    keeper: IndexKeeper,
    passage_id: int,
    k: int = 10,
    where: Sequence[tuple[str, str]] = (),
    why: int = 0,
    fusion: Fusion = HYBRID,
    group: bool = False,
) -> SearchResult:
    """Neighbours of a stored passage (itself excluded), without the model: its sentence vector
    for the dense side, its words for the lexical side."""
    check_k(k)
    check_id(passage_id)
    check_mode(fusion.mode)
    vector = store.documents.vector(passage_id)
    source = store.tokens.of(passage_id, store.codec())  # its text for the lexical side, its tokens for why
    terms = store.lexical.informative(query_terms(source.text, limit=4 * MAX_TERMS))[:MAX_TERMS]
    found = _found(store, keeper, vector, terms, fusion, k, where, exclude=passage_id, group=group)
    describe(store, found, source, terms, why, fusion)
    return SearchResult(f"like:{passage_id}", None, found, fusion.mode)
