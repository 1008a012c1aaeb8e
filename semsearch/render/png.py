"""Explanations as pictures (matplotlib, imported only when a picture is asked for).

The heatmap keeps at most ``MAX_COLUMNS`` passage words, those a reader needs most, in text
order. The others become one "other" column: their summed share of the score in contribution
mode, or their mean cosine in cosine mode. Below the heatmap, the passage is printed with each
word shaded by its share of the score, so a 250-token passage stays readable at screen size.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..core.matrices import Decomposition, column_order, column_shares
from ..errors import ConfigError
from ..results import Explanation

MAX_COLUMNS = 40
TEXT_FONT = 10.0  # points, monospaced: a character is about 0.6 of that wide
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


def image_format(suffix: str) -> str:
    """The matplotlib format for a file suffix, or an error listing the ones written."""
    try:
        return FORMATS[suffix.lower()]
    except KeyError:
        raise ConfigError(
            f"cannot write a {suffix or 'suffix-less'} picture; name the file .png, .jpg, .svg or .pdf"
        ) from None


def _columns(expl: Decomposition, mode: str, hide_special: bool) -> tuple[list[str], list[list[float]], int]:
    """Column labels, per column its values down the rows (an 'other' column last if needed), and
    how many columns are single passage units."""
    order = column_order(expl, hide_special)
    if mode == "contribution":
        values = expl.contribution.astype(np.float64) / (expl.score if abs(expl.score) > 1e-12 else 1.0) * 100
    else:
        values = expl.cosine.astype(np.float64)
    kept = sorted(order[: MAX_COLUMNS - 1]) if len(order) > MAX_COLUMNS else sorted(order)
    labels = [expl.doc.labels[j] for j in kept]
    columns = [values[:, j].tolist() for j in kept]
    rest = [j for j in order if j not in set(kept)]
    if rest:
        combine = values[:, rest].sum(axis=1) if mode == "contribution" else values[:, rest].mean(axis=1)
        labels.append(f"other {len(rest)} ({'sum' if mode == 'contribution' else 'mean'})")
        columns.append(combine.tolist())
    return labels, columns, len(kept)


def _segments(text: str, spans: list[tuple[int, int]], special: NDArray[np.bool_], shares: NDArray[np.float64]) -> list[tuple[str, float | None]]:
    """The text cut into shaded units and the plain text between them."""
    out: list[tuple[str, float | None]] = []
    at = 0
    for (a, b), is_special, share in zip(spans, special, shares):
        if is_special or b <= at:
            continue
        if a > at:
            out.append((text[at:a], None))
        out.append((text[a:b], float(share)))
        at = b
    if at < len(text):
        out.append((text[at:], None))
    return out


def _lines(segments: list[tuple[str, float | None]], width: int) -> list[list[tuple[int, str, float | None]]]:
    """Segments laid out in lines of ``width`` characters: (column, text, share), breaking at spaces."""
    lines: list[list[tuple[int, str, float | None]]] = [[]]
    x = 0
    for text, share in segments:
        pieces = [text] if share is not None else [p for p in re.split(r"(\s+)", text) if p]
        for piece in pieces:
            if share is None and piece.isspace():
                x += 1  # a run of white space, newlines included, shows as one space
                continue
            if x + len(piece) > width and x > 0:
                lines.append([])
                x = 0
            lines[-1].append((x, piece, share))
            x += len(piece)
    return lines


def explanation_png(hit: Explanation, mode: str, hide_special: bool = False, fmt: str = "png") -> bytes:
    """The heatmap and the passage shaded by contribution, as ``fmt`` (png, jpeg, svg, pdf)."""
    import matplotlib  # ~0.5 s to import: only when a picture is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    expl = hit.decomposition
    rows = [i for i in range(len(expl.query.labels)) if not (hide_special and expl.query.special[i])]
    labels, columns, single = _columns(expl, mode, hide_special)
    matrix = np.array(columns).T[rows] if columns else np.zeros((len(rows), 0))
    if mode == "contribution":
        # the colours follow single pairs; a summed "other" column may go past them (it saturates)
        bound = float(np.abs(matrix[:, :single]).max()) if single and rows else 1.0
        label, cmap, vmin, vmax = "share of the score (%)", "RdBu_r", -bound, bound
    else:
        label, cmap, vmin, vmax = "cosine similarity", "viridis", None, None
    width = min(max(8.0, 0.28 * len(labels) + 3.5), 16.0)
    text_columns = int(0.8 * width * 72 / (0.6 * TEXT_FONT))
    lines = _lines(_segments(expl.doc.text, expl.doc.spans, expl.doc.special, column_shares(expl)), text_columns)
    heat_h = min(max(2.5, 0.3 * len(rows) + 2.0), 20.0)
    text_h = 0.6 + 0.24 * len(lines)
    fig, (ax, text_ax) = plt.subplots(2, 1, figsize=(width, heat_h + text_h), height_ratios=[heat_h, text_h])
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), [expl.query.labels[i] for i in rows], fontsize=8)
    ax.set_xlabel(f"passage {hit.passage.id} ({hit.passage.document_key})")
    ax.set_ylabel(hit.rows)
    title = f"{mode} matrix · score {expl.score:.4f}"
    if expl.index_score is not None:
        title += f" (index {expl.index_score:.4f})"
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label, fraction=0.03, pad=0.01)
    _shaded_text(text_ax, lines, text_columns, colormaps["RdBu_r"])
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=100)
    plt.close(fig)
    return out.getvalue()


def _shaded_text(ax: Any, lines: list[list[tuple[int, str, float | None]]], columns: int, cmap: Any) -> None:
    """The passage in a monospaced font, each word on a background for its share of the score."""
    shares = [abs(s) for line in lines for _, _, s in line if s is not None]
    scale = max(shares) if shares else 1.0
    ax.set_xlim(0, columns)
    ax.set_ylim(len(lines) + 0.5, -1.2)
    ax.axis("off")
    ax.text(0, -0.9, "passage, shaded by contribution (red adds to the score, blue takes away)", fontsize=9, va="center")
    for y, line in enumerate(lines):
        for x, text, share in line:
            box, ink = None, "black"
            if share is not None:
                face = cmap(0.5 + 0.5 * share / scale)
                box = {"facecolor": face, "edgecolor": "none", "pad": 1.0}
                ink = "white" if 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] < 0.5 else "black"  # readable on dark cells
            ax.text(x, y + 0.3, text, family="monospace", fontsize=TEXT_FONT, va="center", bbox=box, color=ink)
