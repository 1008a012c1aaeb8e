"""Results as terminal text: rich tables, the heatmap and text shaded by contribution."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..core.matrices import (
    Decomposition,
    column_order,
    column_shares,
    hidden_share,
    row_shares,
    special_share,
    top_impact,
    top_pairs,
)
from ..results import Explanation, Hit, SearchResult


def snippet(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def percent(share: float) -> str:
    return f"{100 * share:.0f}%" if abs(share) >= 0.095 else f"{100 * share:.1f}%"


def reasons_text(pairs: list[Any]) -> str:
    return ", ".join(f"{p.query}↔{p.passage} {percent(p.share)}" + (f" ×{p.count}" if p.count > 1 else "") for p in pairs)


# search ------------------------------------------------------------------------------------
def marked_snippet(hit: Hit, width: int = 160) -> Text:
    """The hit's best-matching sentence, matched words in bold (cut to ``width`` characters)."""
    if hit.snippet is None:
        return Text(snippet(hit.text, width))
    text = Text(hit.snippet.text)
    for start, end in hit.snippet.marks:
        text.stylize("bold underline", start, end)
    if len(text) > width:
        first = min((a for a, _ in hit.snippet.marks), default=0)
        begin = max(0, min(first - width // 3, len(text) - width))
        text = text[begin : begin + width - 1]
        text.append("…")
        if begin:
            text = Text("…") + text
    if hit.snippet.start > 0:
        text = Text("…") + text
    return text


def found_by(hit: Hit) -> str:
    return " ".join(f"{name[0]}{rank}" for name, rank in sorted(hit.found_by.items()))


def search_table(result: SearchResult) -> Table:
    title = f"{result.query}  [dim]({result.mode})[/dim]"
    table = Table(title=title, title_justify="left", show_lines=False)
    cosines = result.mode != "dense"  # the fused or BM25 score ranks; the cosine is what explain decomposes
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("rank", "right"), ("id", "right"), ("score", "right"), *((("cosine", "right"),) if cosines else ()),
        ("found by", "left"), ("document", "left"), ("best sentence", "left"),
    )
    for name, justify in columns:
        # an id is copied into other commands (a sharded store's have 13 digits): folded, never cut
        table.add_column(name, justify=justify, overflow="fold" if name in ("id", "best sentence") else "ellipsis")
    for hit in result.hits:
        text = marked_snippet(hit)
        if hit.reasons:
            text.append(f"\nwhy: {reasons_text(hit.reasons)}", style="dim")
        if hit.terms:
            text.append(f"\nwords (BM25 {hit.bm25:.2f}): " + ", ".join(f"{t.term} {percent(t.share)}" for t in hit.terms), style="dim")
        scores = [f"{hit.score:.4f}"] + ([f"{hit.cosine:.4f}" if hit.cosine is not None else ""] if cosines else [])
        table.add_row(str(hit.rank), str(hit.passage_id), *scores, found_by(hit), hit.document_key, text)
    if result.mode == "hybrid":
        table.caption = "found by: d = dense rank, l = lexical rank; score = the fused score; cosine = what explain decomposes"
    elif result.mode == "lexical":
        table.caption = "score = BM25; cosine = what explain decomposes"
    return table


# explain -----------------------------------------------------------------------------------
def _cell_style(value: float, scale: float) -> str:
    """A diverging background: red for positive, blue for negative, white near zero."""
    t = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    fade = int(255 * (1 - abs(t)))
    r, g, b = (255, fade, fade) if t >= 0 else (fade, fade, 255)
    fg = "black" if abs(t) < 0.6 else "white"
    return f"{fg} on rgb({r},{g},{b})"


def score_line(expl: Decomposition) -> str:
    parts = [f"score {expl.score:.6f} = sum of the contribution matrix"]
    if expl.index_score is not None:
        parts.append(f"index score {expl.index_score:.6f}")
        parts.append(f"residual {expl.residual:+.2e}")
    return " · ".join(parts)


ROW_LABEL = 14  # widest query label shown
LABEL = 10  # widest passage label shown as a column header
CELL = 5  # widest value: "-12.3" (% of the score) or "-.43" (cosine)
SHARE = 5  # the share column: "-3.2%", "100%"


def _label(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: float, mode: str) -> str:
    if mode == "cosine":
        text = f"{value:.2f}"
        return text.replace("0.", ".", 1) if abs(value) < 1 else text
    return f"{value:.1f}" if abs(value) < 10 else f"{value:.0f}"


def fitting(expl: Decomposition, order: list[int], max_cols: int, width: int, row_width: int) -> list[int]:
    """The columns of ``order`` (most needed first) that fit ``width`` characters, in text order.

    Each column is as wide as its header (at most ``LABEL``) or a value, plus one space before it.
    """
    used = row_width + 1 + SHARE
    chosen: list[int] = []
    for j in order[:max_cols]:
        need = 1 + max(CELL, len(_label(expl.doc.labels[j], LABEL)))
        if used + need > width:
            continue
        chosen.append(j)
        used += need
    return sorted(chosen)


def heatmap(expl: Decomposition, mode: str, max_cols: int, hide_special: bool = False, width: int = 200, rows_name: str = "query") -> Group:
    """Query units (rows) × the passage units that matter most (columns), coloured by value; never
    wider than ``width``."""
    rows = [i for i in range(len(expl.query.labels)) if not (hide_special and expl.query.special[i])]
    row_width = max([len(rows_name)] + [len(_label(expl.query.labels[i], ROW_LABEL)) for i in rows])
    cols, hidden = hidden_share(expl, fitting(expl, column_order(expl, hide_special), max_cols, width, row_width))
    if mode == "contribution":
        values = expl.contribution.astype(np.float64) / (expl.score if abs(expl.score) > 1e-12 else 1.0) * 100
        unit = "cells: % of the score"
    else:
        values = expl.cosine.astype(np.float64)
        unit = "cells: cosine of the pair"
    shown = values[np.ix_(rows, cols)] if rows and cols else np.zeros((0, 0))
    scale = float(np.abs(shown).max()) if shown.size else 1.0
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, padding=(0, 0, 0, 1), collapse_padding=False)
    table.add_column(rows_name, no_wrap=True, width=row_width)
    for j in cols:
        label = _label(expl.doc.labels[j], LABEL)
        table.add_column(label, justify="right", no_wrap=True, width=max(CELL, len(label)))
    table.add_column("share", justify="right", no_wrap=True, width=SHARE)
    shares = row_shares(expl)
    for r, i in enumerate(rows):
        cells = [Text(_cell(shown[r, c], mode), style=_cell_style(shown[r, c], scale)) for c in range(len(cols))]
        table.add_row(_label(expl.query.labels[i], ROW_LABEL), *cells, percent(shares[i]))
    footer = [unit]
    if len(cols) < len(expl.doc.labels):
        n_hidden = len(expl.doc.labels) - len(cols)
        footer.append(f"{n_hidden} of {len(expl.doc.labels)} passage {expl.level}s not shown hold {percent(hidden)} of the score")
    return Group(table, Text(" · ".join(footer), style="dim"))


def highlighted(side_text: str, spans: list[tuple[int, int]], special: np.ndarray, shares: np.ndarray) -> Text:
    """The text with each unit shaded by its share of the score."""
    text = Text()
    scale = float(np.abs(shares[~special]).max()) if (~special).any() else 1.0
    at = 0
    for (a, b), is_special, share in zip(spans, special, shares):
        if is_special or b <= at:
            continue
        text.append(side_text[at:a])
        text.append(side_text[a:b], style=_cell_style(share, scale))
        at = b
    text.append(side_text[at:])
    return text


def explanation_view(hit: Explanation, mode: str, max_cols: int, top: int, hide_special: bool, width: int = 200) -> Group:
    expl = hit.decomposition
    p = hit.passage
    parts: list[Any] = [
        Text(f"passage {p.id} · document {p.document_key} · passage {p.ordinal} (chars {p.char_start}–{p.char_end})", style="bold"),
        Text(f"against {hit.against}"),
        Text(score_line(expl)),
    ]
    parts += [Text("note: " + note, style="yellow") for note in expl.notes]
    parts.append(heatmap(expl, mode, max_cols, hide_special, width, hit.rows))
    pairs = top_pairs(expl, top, merge=True)
    if pairs:
        side = 14 if hit.rows == "query" else max(14, len(hit.rows))
        lines = [
            f"  {_label(q.query, side):>{side}} ↔ {_label(q.passage, 16):<16} {percent(q.share):>6} of the score"
            + (f" ({q.count} places)" if q.count > 1 else f" (cosine {q.cosine:.2f})")
            for q in pairs
        ]
        parts.append(Text("top pairs:\n" + "\n".join(lines)))
    impact = top_impact(expl, top)
    if impact:
        parts.append(Text("passage words whose removal would lower the score most: " + ", ".join(f"{w} {-v:+.3f}" for w, v in impact)))
    specials = sorted({label for side in (expl.query, expl.doc) for label, special in zip(side.labels, side.special) if special})
    parts.append(Text(f"special tokens ({', '.join(specials)}) hold {percent(special_share(expl))} of the score", style="dim"))
    parts.append(Text("passage, shaded by contribution:", style="bold"))
    parts.append(highlighted(expl.doc.text, expl.doc.spans, expl.doc.special, column_shares(expl)))
    parts.append(Text(f"{hit.rows}, shaded by contribution:", style="bold"))
    parts.append(highlighted(expl.query.text, expl.query.spans, expl.query.special, row_shares(expl)))
    if hit.lexical is not None:
        lex = hit.lexical
        terms = ", ".join(f"{t.term} {percent(t.share)} ({t.bm25:.2f})" for t in lex.terms) or "none of the query's words occur in the passage"
        parts.append(Text(f"words (BM25 {lex.bm25:.2f}, a different score from the cosine above): {terms}"))
    return Group(*parts)
