"""What a Session returns: typed dataclasses, each with one JSON form (``to_dict``).

The CLI's ``--json`` prints these dicts, and the HTTP API returns the same shapes.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .core.matrices import Decomposition, Pair, column_shares, row_shares, special_share, top_pairs
from .core.types import Passage
from .documents import Rejected


def pair_dict(pair: Pair) -> dict[str, Any]:
    """One query-word ↔ passage-word pair and its part of the score."""
    return {
        "query": pair.query,
        "passage": pair.passage,
        "row": pair.row,
        "col": pair.col,
        "contribution": pair.contribution,
        "share": round(pair.share, 6),
        "cosine": pair.cosine,
        "count": pair.count,
    }


@dataclass
class TermShare:
    """A query term found in a passage, and its part of the passage's BM25 score."""

    term: str
    bm25: float
    share: float

    def to_dict(self) -> dict[str, Any]:
        return {"term": self.term, "bm25": self.bm25, "share": round(self.share, 6)}


@dataclass
class Snippet:
    """The passage's best-matching sentence; ``marks`` are (start, end) of matched words in it."""

    text: str
    start: int  # where the sentence starts in the passage text
    marks: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "marks": [list(m) for m in self.marks]}


@dataclass
class Hit:
    """One ranked passage. ``score`` is what ranked it (the cosine in dense mode, BM25 in
    lexical mode, the fused score in hybrid mode); ``cosine`` and ``bm25`` are each retriever's
    own score (``bm25`` is None in dense mode without ``why``: it costs a walk of each query
    term's postings) and ``found_by`` the rank each retriever gave it. ``reasons`` (its top word pairs)
    and ``terms`` (the query terms in it, with their share of its BM25) come with ``why``."""

    rank: int
    passage_id: int
    score: float
    document_key: str
    ordinal: int
    char_start: int
    char_end: int
    text: str
    meta: dict[str, Any]
    reasons: list[Pair] = field(default_factory=list)
    cosine: float | None = None
    bm25: float | None = None
    found_by: dict[str, int] = field(default_factory=dict)
    terms: list[TermShare] = field(default_factory=list)
    snippet: Snippet | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in _HIT_FIELDS}  # asdict would deep-copy the reasons only to drop them
        data["meta"], data["found_by"] = copy.deepcopy(self.meta), dict(self.found_by)
        if self.reasons:
            data["why"] = [pair_dict(p) for p in self.reasons]
        if self.terms:
            data["terms"] = [t.to_dict() for t in self.terms]
        if self.snippet is not None:
            data["snippet"] = self.snippet.to_dict()
        return data


_HIT_FIELDS = [f.name for f in fields(Hit) if f.name not in ("reasons", "terms", "snippet")]


@dataclass
class SearchResult:
    """The hits for one query; ``query_id`` names its cached tokens (None for ``like``);
    ``mode`` is dense, lexical or hybrid."""

    query: str
    query_id: int | None
    hits: list[Hit]
    mode: str = "dense"

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "query_id": self.query_id, "mode": self.mode, "hits": [h.to_dict() for h in self.hits]}


@dataclass
class LexicalExplanation:
    """The lexical side of a match: the query terms found in the passage and each one's part of
    its BM25 score (a different score from the cosine, on its own scale)."""

    bm25: float
    terms: list[TermShare]

    def to_dict(self) -> dict[str, Any]:
        return {"score": "bm25", "bm25": self.bm25, "terms": [t.to_dict() for t in self.terms]}


@dataclass
class Explanation:
    """Why ``passage`` matched: the query × passage matrices and the exact score decomposition."""

    passage: Passage
    against: str
    query_id: int | None
    decomposition: Decomposition
    rows: str = "query"  # what the rows are: "query", or "passage 7" for --against
    lexical: LexicalExplanation | None = None  # the query terms in the passage (BM25), for query text

    @property
    def score(self) -> float:
        """The sum of the contribution matrix (equal to the cosine for mean pooling)."""
        return self.decomposition.score

    @property
    def contribution(self) -> NDArray[np.float32]:
        return self.decomposition.contribution

    @property
    def cosine(self) -> NDArray[np.float32]:
        return self.decomposition.cosine

    @property
    def index_score(self) -> float | None:
        return self.decomposition.index_score

    @property
    def residual(self) -> float | None:
        return self.decomposition.residual

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        expl = self.decomposition

        def side(s: Any) -> dict[str, Any]:
            return {"text": s.text, "labels": s.labels, "spans": [list(x) for x in s.spans], "special": [bool(x) for x in s.special]}

        return {
            "passage_id": self.passage.id,
            "document": self.passage.document_key,
            "against": self.against,
            "rows": self.rows,
            "query_id": self.query_id,
            "level": expl.level,
            "decomposable": expl.decomposable,
            "query": side(expl.query),
            "passage": side(expl.doc),
            "cosine": expl.cosine.astype(float).tolist(),
            "contribution": expl.contribution.astype(float).tolist(),
            "score": expl.score,
            "sum": float(expl.contribution.astype(np.float64).sum()),
            "index_score": expl.index_score,
            "residual": expl.residual,
            "special_share": special_share(expl),
            "query_shares": row_shares(expl).tolist(),
            "passage_shares": column_shares(expl).tolist(),
            "top_pairs": [pair_dict(p) for p in top_pairs(expl, top)],
            "passage_impact": expl.impact.tolist(),
            "notes": expl.notes,
            "lexical": None if self.lexical is None else self.lexical.to_dict(),
        }


@dataclass(frozen=True)
class IngestProgress:
    """Where an ingest is: ``stage`` is 'model' (loading it, after the input was checked), then
    'encoding' after each batch and each stored chunk: about ``documents`` of ``total`` are
    encoded, ``encoded`` passages in all, of which ``stored`` are committed."""

    stage: str
    documents: int
    total: int
    encoded: int
    stored: int


@dataclass
class IngestReport:
    """What one ingest did; ``rejected`` lists records skipped with ``on_error='skip'``."""

    documents: int
    passages: int
    tokens: int
    unchanged: int
    replaced: int
    seconds: float
    store_bytes: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    skipped_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejected"] = [{"source": r.source, "error": r.message} for r in self.rejected]
        return data


@dataclass
class StoreInfo:
    """A store described without the model."""

    store: str
    model: str | None
    dim: int
    pooling: str
    max_tokens: int
    documents: int
    passages: int
    tokens: int
    token_codec: str
    token_pool: str
    bytes_per_token: float
    token_bytes_per_passage: float
    token_store_bytes: int
    token_store_share: float
    index_factory: str | None
    index_vectors: int
    store_bytes: int
    schema_version: int
    shards: int = 1  # a sharded store: its shards' figures added up

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Problem:
    """One thing wrong with a store and what fixes it."""

    what: str
    fix: str


@dataclass
class CheckReport:
    """What ``check`` found, and what ``check --repair`` did."""

    counts: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what opening the store heals by itself

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts,
            "problems": [{"problem": p.what, "fix": p.fix} for p in self.problems],
            "notes": self.notes,
            "repaired": self.repaired,
        }


@dataclass
class DeleteReport:
    """Documents and passages removed."""

    documents: int
    passages: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IndexReport:
    """An index built from the stored sentence vectors: the factory asked for (maybe ``auto``)
    and the one it resolved to."""

    factory: str
    resolved: str
    vectors: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalReport:
    """Aggregate metrics over the judged queries."""

    measures: dict[str, float]
    queries: int
    depth: int
    missing_documents: int = 0
    notes: list[str] = field(default_factory=list)
    mode: str = "dense"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "queries": self.queries, "depth": self.depth, **self.measures, "missing_documents": self.missing_documents}


@dataclass
class RecodeReport:
    """A store's token storage before and after ``recode``."""

    before: StoreInfo
    after: StoreInfo
    passages: int
    seconds: float
    changed: bool = True

    def to_dict(self) -> dict[str, Any]:
        keys = ("token_codec", "token_pool", "tokens", "bytes_per_token", "token_bytes_per_passage", "token_store_bytes", "store_bytes")
        return {
            "changed": self.changed,
            "passages": self.passages,
            "seconds": self.seconds,
            "before": {k: getattr(self.before, k) for k in keys},
            "after": {k: getattr(self.after, k) for k in keys},
        }
