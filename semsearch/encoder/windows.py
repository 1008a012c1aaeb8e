"""Cutting a tokenised text into passages that fit the model window (pure: both backends share it)."""

from __future__ import annotations

from ..core.types import Span


def window_spans(
    offsets: list[tuple[int, int]],
    word_ids: list[int | None],
    text_len: int,
    window: int,
    overlap: int,
    truncate: bool,
) -> list[Span]:
    """Cut a tokenised text into spans of at most ``window`` tokens, at word boundaries.

    Neighbouring spans share about ``overlap`` tokens; with ``truncate`` only the first is kept.
    Pure function of the tokenisation, so the fake encoder in the tests shares it.
    """
    n = len(offsets)
    if n <= window:
        return [Span(0, text_len, n)]

    def word_start(i: int, floor: int) -> int:
        while i > floor and word_ids[i] is not None and word_ids[i] == word_ids[i - 1]:
            i -= 1
        return i

    spans: list[Span] = []
    start = 0
    while start < n:
        end = min(start + window, n)
        if end < n:
            moved = word_start(end, start + window // 2)
            end = moved if moved > start else end
        spans.append(Span(offsets[start][0], offsets[end - 1][1], end - start))
        if end >= n or truncate:
            break
        nxt = word_start(max(end - overlap, start + 1), start + 1)
        start = nxt if nxt > start else end
    return spans
