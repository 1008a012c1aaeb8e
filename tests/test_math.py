"""Explanation math and passage windows on synthetic arrays, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.core.matrices import (
    contribution_matrix,
    cosine_matrix,
    decompose,
    special_share,
    token_side,
    top_pairs,
    visible_columns,
)
from semsearch.core.types import TokenData
from semsearch.encoder import window_spans


def tokens(text: str, pieces: list[tuple[int, int]], dim: int = 8, seed: int = 0) -> TokenData:
    rng = np.random.default_rng(seed)
    offsets = [(0, 0)] + pieces + [(0, 0)]
    ids = [101] + [1000 + i for i in range(len(pieces))] + [102]
    return TokenData(text, rng.normal(size=(len(offsets), dim)).astype(np.float32), np.array(ids, np.int32), np.array(offsets, np.int32))


SPECIALS = {101: "[CLS]", 102: "[SEP]"}


def test_contributions_add_up_to_the_cosine_of_the_mean_vectors() -> None:
    rng = np.random.default_rng(1)
    for n, m in ((1, 1), (5, 40), (12, 3)):
        q, d = rng.normal(size=(n, 32)), rng.normal(size=(m, 32))
        qm, dm = q.mean(0), d.mean(0)
        expected = qm @ dm / np.linalg.norm(qm) / np.linalg.norm(dm)
        assert contribution_matrix(q, d).astype(np.float64).sum() == pytest.approx(expected, abs=1e-6)


def test_cosine_matrix_matches_pairwise_brute_force() -> None:
    rng = np.random.default_rng(2)
    q, d = rng.normal(size=(4, 16)), rng.normal(size=(6, 16))
    brute = [[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in d] for a in q]
    np.testing.assert_allclose(cosine_matrix(q, d), brute, atol=1e-6)


def test_word_pieces_merge_into_words_and_sums_are_kept() -> None:
    text = "fever? no"
    doc = tokens(text, [(0, 2), (2, 5), (5, 6), (7, 9)], seed=3)  # fe ##ver ? no
    side = token_side(doc, SPECIALS, "word")
    assert side.labels == ["[CLS]", "fever", "?", "no", "[SEP]"]
    assert token_side(doc, SPECIALS, "token").labels == ["[CLS]", "fe", "##ver", "?", "no", "[SEP]"]
    query = tokens("no fever", [(0, 2), (3, 5), (5, 8)], seed=4)
    words = decompose(query, doc, SPECIALS, "word")
    pieces = decompose(query, doc, SPECIALS, "token")
    assert words.contribution.shape == (4, 5) and pieces.contribution.shape == (5, 6)
    assert words.contribution.sum() == pytest.approx(pieces.contribution.sum(), abs=1e-5)
    assert words.score == pytest.approx(pieces.score, abs=1e-12)
    # "fever" (word 1) row in the query = the sum of its two pieces' rows
    np.testing.assert_allclose(words.contribution[2].sum(), pieces.contribution[2:4].sum(), atol=1e-6)
    # word cosine: cosine of the mean piece vectors
    qv = query.vectors[2:4].mean(0)
    dv = doc.vectors[1:3].mean(0)
    assert words.cosine[2, 1] == pytest.approx(qv @ dv / np.linalg.norm(qv) / np.linalg.norm(dv), abs=1e-5)


def test_top_pairs_skip_specials_and_shares_are_of_the_score() -> None:
    doc = tokens("alpha beta gamma", [(0, 5), (6, 10), (11, 16)], seed=5)
    query = tokens("beta", [(0, 4)], seed=6)
    expl = decompose(query, doc, SPECIALS, "word")
    pairs = top_pairs(expl, 10)
    assert all(p.query != "[CLS]" and p.passage not in ("[CLS]", "[SEP]") for p in pairs)
    assert [p.contribution for p in pairs] == sorted((p.contribution for p in pairs), reverse=True)
    assert pairs[0].share == pytest.approx(pairs[0].contribution / expl.score)
    total = special_share(expl) + sum(p.share for p in top_pairs(expl, 100))
    assert total == pytest.approx(1.0, abs=1e-6)


def test_visible_columns_report_what_they_hide() -> None:
    pieces = [(i * 2, i * 2 + 1) for i in range(30)]
    doc = tokens(" ".join("x" * 30), pieces, seed=7)
    query = tokens("q", [(0, 1)], seed=8)
    expl = decompose(query, doc, SPECIALS, "token")
    cols, hidden = visible_columns(expl, 5)
    assert len(cols) == 5 and cols == sorted(cols)
    shown = expl.contribution[:, cols].sum() / expl.score
    assert shown + hidden == pytest.approx(1.0, abs=1e-5)


def test_non_mean_pooling_is_flagged() -> None:
    doc = tokens("a b", [(0, 1), (2, 3)])
    expl = decompose(doc, doc, SPECIALS, "word", pooling="cls")
    assert not expl.decomposable and "does not add up" in expl.notes[0]


@pytest.mark.parametrize(("n", "window", "overlap"), [(5, 10, 2), (100, 10, 3), (257, 254, 32), (1000, 254, 32)])
def test_windows_cover_every_token_within_the_window(n: int, window: int, overlap: int) -> None:
    # words of 1-3 pieces, separated by a space
    offsets, word_ids, pos, w = [], [], 0, 0
    while len(offsets) < n:
        for _ in range(1 + w % 3):
            offsets.append((pos, pos + 2))
            word_ids.append(w)
            pos += 2
        pos += 1
        w += 1
    offsets, word_ids = offsets[:n], word_ids[:n]
    spans = window_spans(offsets, word_ids, pos, window, overlap, truncate=False)
    assert all(s.n_tokens <= window for s in spans)
    assert spans[0].start == 0 and spans[-1].end == (pos if n <= window else offsets[-1][1])
    starts = {a for a, _ in offsets}
    for s, t in zip(spans, spans[1:]):
        assert t.start < s.end  # overlap, no gap
        assert t.start in starts
    if n > window:
        first_pieces = {offsets[i][0] for i in range(n) if i == 0 or word_ids[i] != word_ids[i - 1]}
        assert all(s.start in first_pieces for s in spans)  # passages start on a word
        only = window_spans(offsets, word_ids, pos, window, overlap, truncate=True)
        assert len(only) == 1 and only[0].start == 0


def test_impact_is_the_exact_leave_one_word_out_drop_on_stored_vectors() -> None:
    text = "alpha beta gamma delta"
    doc = tokens(text, [(0, 5), (6, 10), (11, 16), (17, 22)], seed=9)
    query = tokens("beta", [(0, 4)], seed=10)
    expl = decompose(query, doc, SPECIALS, "word")
    for j in (1, 2, 3, 4):
        keep = [i for i in range(len(doc.vectors)) if i != j]
        rest = TokenData(text, doc.vectors[keep], doc.token_ids[keep], doc.offsets[keep])
        assert expl.impact[j] == pytest.approx(expl.score - decompose(query, rest, SPECIALS, "word").score, abs=1e-6)
