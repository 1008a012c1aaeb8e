"""Retrieval quality on labelled data: BEIR-format queries and qrels, metrics from ir-measures.

A document scores as its best passage. Metrics: nDCG@k, MRR@k (RR@k), Recall@100 and MAP (AP over
the ``depth`` documents retrieved), computed by the maintained ``ir-measures`` library.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.fusion import query_terms
from ..encoder import Encoder
from ..errors import ConfigError, InputError
from ..results import EvalReport
from ..store import Store
from .indexing import IndexKeeper
from .query import check_k
from .search import Fusion, retrieve

DENSE = Fusion("dense")


def require_ir_measures() -> Any:
    """The ir-measures module, or an error saying how to install it."""
    try:
        import ir_measures  # only eval needs it
    except ImportError:
        raise ConfigError("semsearch eval needs the eval extra: pip install 'semsearch[eval]'") from None
    return ir_measures


def read_queries(path: Path) -> dict[str, str]:
    """BEIR queries: one JSON object per line with ``_id`` (or ``id``) and ``text``."""
    queries: dict[str, str] = {}
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not valid UTF-8; re-encode the file as UTF-8") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc}); each line must be {{\"_id\": ..., \"text\": ...}}") from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object with _id and text")
        qid = record.get("_id", record.get("id"))
        text = record.get("text")
        if qid is None or not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: a query needs an '_id' and a non-empty 'text'")
        queries[str(qid)] = text
    if not queries:
        raise InputError(f"{path}: holds no queries")
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Relevance judgements: ``query-id<TAB>corpus-id<TAB>score`` (BEIR, header optional,
    CRLF endings accepted) or TREC's ``query-id 0 corpus-id score``."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not valid UTF-8") from None
    for lineno, line in enumerate(lines, 1):
        parts = line.strip().split()
        if not parts:
            continue
        if lineno == 1 and parts[-1].lower() == "score":
            continue  # BEIR header
        if len(parts) == 4:
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise InputError(
                f"{path}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score', got {len(parts)} fields"
            )
        try:
            score = int(float(parts[2]))
        except ValueError:
            raise InputError(f"{path}:{lineno}: the score {parts[2]!r} is not a number") from None
        qrels[parts[0]][parts[1]] = score
    if not qrels:
        raise InputError(f"{path}: holds no judgements")
    return dict(qrels)


def read_judged(queries: Path, qrels: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and judgements read from BEIR files, checked against each other."""
    texts, judged = read_queries(queries), read_qrels(qrels)
    check_ids(texts, judged, f"{qrels}: ", str(queries), "pass the queries file that goes with these judgements")
    return texts, judged


def check_ids(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], where: str, missing_from: str, advice: str) -> None:
    """Every judged query must have its text."""
    unknown = [q for q in qrels if q not in queries]
    if unknown:
        shown = ", ".join(repr(q) for q in unknown[:5])
        raise InputError(f"{where}{len(unknown)} query ids are not in {missing_from} (for example {shown}); {advice}")


def run_queries(
    store: Store,
    keeper: IndexKeeper,
    encoder: Encoder,
    texts: dict[str, str],
    depth: int,
    batch_size: int = 32,
    fusion: Fusion = DENSE,
) -> dict[str, dict[str, float]]:
    """Top ``depth`` documents per query, each scored by its best passage, ranked as a search in
    the fusion's mode ranks them (queries encoded in batches)."""
    index = keeper.current()
    wanted = min(index.ntotal, depth * 4)
    run: dict[str, dict[str, float]] = {}
    ids = list(texts)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        vectors = np.vstack([e.vector for e in encoder.encode([texts[q] for q in chunk])])
        if fusion.mode == "dense":  # one FAISS call for the batch
            scores, found = index.search(vectors, wanted)
            lists = [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0] for row_ids, row_scores in zip(found, scores)]
        else:
            lists = []
            for q, v in zip(chunk, vectors):
                terms = store.lexical.informative(query_terms(texts[q]))
                lists.append([(f.id, f.score) for f in retrieve(store, keeper, v, terms, fusion, wanted)])
        keys = store.documents.keys_of(sorted({pid for ranked in lists for pid, _ in ranked}))
        for qid, ranked in zip(chunk, lists):
            docs: dict[str, float] = {}
            for pid, score in ranked:
                key = keys.get(pid)
                if key is not None and key not in docs:
                    docs[key] = score
                    if len(docs) == depth:
                        break
            run[qid] = docs
    return run


def evaluate(
    store: Store,
    keeper: IndexKeeper,
    encoder: Encoder,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 10,
    depth: int = 1000,
    fusion: Fusion = DENSE,
) -> EvalReport:
    ir_measures = require_ir_measures()
    from ir_measures import AP, RR, R, nDCG

    check_k(k)
    check_ids(queries, qrels, "", "the queries", "give the text of every judged query")
    judged = {q: queries[q] for q in qrels}
    depth = min(max(depth, k, 100), store.documents.count())  # what there is to retrieve
    run = run_queries(store, keeper, encoder, judged, depth, fusion=fusion)
    stored = store.documents.present({d for rel in qrels.values() for d in rel})
    missing = len({d for rel in qrels.values() for d in rel} - stored)
    measures = [nDCG @ k, RR @ k, R @ 100, AP]
    values = ir_measures.calc_aggregate(measures, {q: dict(r) for q, r in qrels.items()}, run)
    names = {str(nDCG @ k): f"nDCG@{k}", str(RR @ k): f"MRR@{k}", str(R @ 100): "Recall@100", str(AP): "MAP"}
    report = EvalReport({names[str(m)]: float(values[m]) for m in measures}, len(judged), depth, missing, mode=fusion.mode)
    if missing:
        report.notes.append(f"{missing} judged documents are not in the store; they count as not retrieved")
    return report
