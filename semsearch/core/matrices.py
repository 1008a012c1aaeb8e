"""Why a passage matched a query: token-pair matrices from stored token vectors (numpy only).

With mean pooling, for a query Q (n tokens) and a passage D (m tokens),

    cos(q, d) = Σᵢⱼ Qᵢ·Dⱼ / (n · m · |mean Q| · |mean D|)

so ``contribution[i, j] = Qᵢ·Dⱼ / (n m |Q̄| |D̄|)`` adds up exactly to the score. ``cosine[i, j]`` is
the per-pair cosine the seed article plots: bounded and intuitive, but not additive.

Word level: word pieces that touch with no space between letters or digits (``fe`` + ``ver``) form
one word. A word's contribution is the sum of its pieces' contributions (so sums still equal the
score); a word's cosine is the cosine between the *means* of the two words' piece vectors, which is
what mean pooling would make of each word alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import QueryError
from .types import TokenData

LEVELS = ("word", "token")
MODES = ("cosine", "contribution")


@dataclass
class Side:
    """One text's units (tokens or words) as shown in an explanation."""

    text: str
    labels: list[str]
    spans: list[tuple[int, int]]
    special: NDArray[np.bool_]
    groups: list[list[int]]


@dataclass
class Decomposition:
    """The query × passage matrices, the score and how exactly they agree.

    ``impact[j]`` is the score lost if passage unit j's token vectors left the passage mean (the
    others unchanged): a leave-one-out computed from stored vectors, with no model run.
    """

    query: Side
    doc: Side
    cosine: NDArray[np.float32]
    contribution: NDArray[np.float32]
    score: float
    index_score: float | None
    level: str
    decomposable: bool = True
    notes: list[str] = field(default_factory=list)
    impact: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def residual(self) -> float | None:
        return None if self.index_score is None else self.score - self.index_score


@dataclass
class Pair:
    """A query unit and a passage unit, with the pair's part of the score and its cosine."""

    query: str
    passage: str
    row: int
    col: int
    contribution: float
    share: float
    cosine: float
    count: int = 1


def _continues(text: str, prev: tuple[int, int], cur: tuple[int, int]) -> bool:
    return (
        cur[0] == prev[1]
        and cur[0] > 0
        and cur[0] < len(text)
        and text[cur[0] - 1].isalnum()
        and text[cur[0]].isalnum()
    )


def token_side(tokens: TokenData, special_tokens: dict[int, str], level: str = "word") -> Side:
    """Labels, character spans and grouping of a text's tokens (or of its words)."""
    spans = [(int(a), int(b)) for a, b in tokens.offsets]
    special = np.array(
        [int(t) in special_tokens and a == b for t, (a, b) in zip(tokens.token_ids, spans)], dtype=bool
    )
    groups: list[list[int]] = []
    labels: list[str] = []
    pooled = tokens.pieces is not None  # rows are whole words already
    for i, (a, b) in enumerate(spans):
        if special[i]:
            groups.append([i])
            labels.append(special_tokens.get(int(tokens.token_ids[i]), "[?]"))
            continue
        joined = not pooled and i > 0 and not special[i - 1] and _continues(tokens.text, spans[i - 1], (a, b))
        if joined and level == "word":
            groups[-1].append(i)
            labels[-1] = tokens.text[spans[groups[-1][0]][0] : b]
        else:
            groups.append([i])
            labels.append(("##" if joined else "") + tokens.text[a:b])
    merged_spans = [(spans[g[0]][0], spans[g[-1]][1]) for g in groups]
    return Side(tokens.text, labels, merged_spans, np.array([special[g[0]] for g in groups]), groups)


def contribution_matrix(q: NDArray[np.floating[Any]], d: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Row-pair contributions ``qᵢ·dⱼ / (|Σq| |Σd|)``; their sum is cos(Σq, Σd), the cosine of the
    mean-pooled vectors. For piece rows this is ``qᵢ·dⱼ / (n m |q̄| |d̄|)``; word rows (each the sum
    of its pieces) give each word's contribution, the sum of its pieces'."""
    scale = float(np.linalg.norm(q.sum(axis=0))) * float(np.linalg.norm(d.sum(axis=0)))
    return ((q @ d.T) / max(scale, 1e-12)).astype(np.float32)


def cosine_matrix(q: NDArray[np.floating[Any]], d: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return (qn @ dn.T).astype(np.float32)


def _membership(groups: list[list[int]], n: int) -> NDArray[np.float64]:
    """A (groups × tokens) 0/1 matrix: row g marks the tokens of group g."""
    member = np.zeros((len(groups), n))
    for g, tokens in enumerate(groups):
        member[g, tokens] = 1.0
    return member


def word_impact(q: NDArray[np.float64], d: NDArray[np.float64], member: NDArray[np.float64]) -> NDArray[np.float64]:
    """Score lost when each group's token vectors (rows of ``member``) leave the passage mean."""
    qm = q.mean(axis=0)
    qm = qm / max(float(np.linalg.norm(qm)), 1e-12)
    total = d.sum(axis=0)
    base = float(qm @ total) / max(float(np.linalg.norm(total)), 1e-12)
    rest = total[None, :] - member @ d
    norms = np.linalg.norm(rest, axis=1)
    impact = base - (rest @ qm) / np.maximum(norms, 1e-12)
    impact[member.sum(axis=1) >= len(d)] = 0.0  # removing every token leaves nothing to compare
    return impact


def decompose(
    query: TokenData,
    doc: TokenData,
    special_tokens: dict[int, str],
    level: str = "word",
    index_score: float | None = None,
    pooling: str = "mean",
) -> Decomposition:
    """Both matrices for ``query`` against ``doc`` at word or token level."""
    if level == "token" and (query.pieces is not None or doc.pieces is not None):
        raise QueryError(
            "the token view needs word pieces, but this store keeps one vector per word (token_pool: words); "
            "use the word view, or ingest into a store made with token_pool: pieces"
        )
    q = query.vectors.astype(np.float64)
    d = doc.vectors.astype(np.float64)
    qs, ds = token_side(query, special_tokens, level), token_side(doc, special_tokens, level)
    contribution = contribution_matrix(q, d)
    score = float(contribution.astype(np.float64).sum())
    md = _membership(ds.groups, len(d))
    if level == "word":
        mq = _membership(qs.groups, len(q))
        contribution = (mq @ contribution.astype(np.float64) @ md.T).astype(np.float32)
        # a word's vector for the cosine is the mean of its pieces' (the scale cancels)
        cosine = cosine_matrix(mq @ q, md @ d)
    else:
        cosine = cosine_matrix(q, d)
    notes = []
    decomposable = pooling == "mean"
    if not decomposable:
        notes.append(
            f"the model pools with {pooling!r}, not 'mean': the contribution matrix does not add "
            "up to its score, so only the cosine matrix is meaningful"
        )
    impact = word_impact(q, d, md)
    return Decomposition(qs, ds, cosine, contribution, score, index_score, level, decomposable, notes, impact)


def top_impact(expl: Decomposition, k: int = 8) -> list[tuple[str, float]]:
    """The passage words (not special tokens) whose removal would lower the score, most first."""
    order = [j for j in np.argsort(-expl.impact) if not expl.doc.special[j] and expl.impact[j] > 0][:k]
    return [(expl.doc.labels[j], float(expl.impact[j])) for j in order]


def top_pairs(expl: Decomposition, k: int = 10, include_special: bool = False, merge: bool = False) -> list[Pair]:
    """The ``k`` word/token pairs that add most to the score.

    With ``merge``, cells whose query and passage words are the same (``fever``↔``fever`` at two
    places) count as one pair: contributions and shares add up, ``count`` says how many cells,
    and row, column and cosine are those of the strongest cell.
    """
    c = expl.contribution.astype(np.float64).copy()
    if not include_special:
        c[expl.query.special, :] = -np.inf
        c[:, expl.doc.special] = -np.inf
    order = np.argsort(-c, axis=None, kind="stable")
    pairs: list[Pair] = []
    merged: dict[tuple[str, str], Pair] = {}
    for flat in order:
        i, j = divmod(int(flat), c.shape[1])
        if not np.isfinite(c[i, j]):
            break
        value = float(expl.contribution[i, j])
        words = (expl.query.labels[i], expl.doc.labels[j])
        if merge and words in merged:
            pair = merged[words]
            pair.contribution += value
            pair.share = _share(pair.contribution, expl.score)
            pair.count += 1
            continue
        if len(pairs) == k and not merge:
            break
        pair = Pair(words[0], words[1], i, j, value, _share(value, expl.score), float(expl.cosine[i, j]))
        pairs.append(pair)
        merged[words] = pair
    if merge:
        pairs.sort(key=lambda p: -p.contribution)
    return pairs[:k]


def _share(value: float, total: float) -> float:
    return value / total if abs(total) > 1e-12 else 0.0


def row_shares(expl: Decomposition) -> NDArray[np.float64]:
    """Each query unit's share of the score."""
    return expl.contribution.astype(np.float64).sum(axis=1) / (expl.score if abs(expl.score) > 1e-12 else 1.0)


def column_shares(expl: Decomposition) -> NDArray[np.float64]:
    """Each passage unit's share of the score."""
    return expl.contribution.astype(np.float64).sum(axis=0) / (expl.score if abs(expl.score) > 1e-12 else 1.0)


def special_share(expl: Decomposition) -> float:
    """The share of the score held by pairs with a special token on either side."""
    c = expl.contribution.astype(np.float64)
    mask = expl.query.special[:, None] | expl.doc.special[None, :]
    return _share(float(c[mask].sum()), expl.score)


def column_order(expl: Decomposition, hide_special: bool = False) -> list[int]:
    """Passage units by how much a reader needs their column: those of the strongest word pairs
    first (so ``person``↔``person`` is never hidden behind a column of many weak cells), then the
    rest by their total |contribution|."""
    candidates = [j for j in range(len(expl.doc.labels)) if not (hide_special and expl.doc.special[j])]
    weight = np.abs(expl.contribution.astype(np.float64)).sum(axis=0)
    allowed = set(candidates)
    order = [j for j in dict.fromkeys(p.col for p in top_pairs(expl, len(candidates), merge=True)) if j in allowed]
    rest = allowed - set(order)
    return order + sorted(rest, key=lambda j: -weight[j])


def visible_columns(expl: Decomposition, max_cols: int, hide_special: bool = False) -> tuple[list[int], float]:
    """The ``max_cols`` passage units worth a column (``column_order``), kept in text order.

    Returns the column indices and the share of the score that the other columns hold.
    """
    return hidden_share(expl, sorted(column_order(expl, hide_special)[:max_cols]))


def hidden_share(expl: Decomposition, chosen: list[int]) -> tuple[list[int], float]:
    """``chosen`` columns and the share of the score that the others hold."""
    shown = np.zeros(len(expl.doc.labels), dtype=bool)
    shown[chosen] = True
    return chosen, float(column_shares(expl)[~shown].sum())
