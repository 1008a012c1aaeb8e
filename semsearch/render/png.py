"""Explanations as PNG heatmaps (matplotlib, imported only when a picture is asked for)."""

from __future__ import annotations

import io

import numpy as np

from ..results import Explanation


def explanation_png(hit: Explanation, mode: str, hide_special: bool = False) -> bytes:
    """A labelled heatmap of the full matrix; the figure grows with it so labels stay legible."""
    import matplotlib  # ~0.5 s to import: only when a PNG is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    expl = hit.decomposition
    rows = [i for i in range(len(expl.query.labels)) if not (hide_special and expl.query.special[i])]
    cols = [j for j in range(len(expl.doc.labels)) if not (hide_special and expl.doc.special[j])]
    if mode == "contribution":
        values = expl.contribution.astype(np.float64) / (expl.score if abs(expl.score) > 1e-12 else 1.0) * 100
        label, cmap = "share of the score (%)", "RdBu_r"
        bound = float(np.abs(values[np.ix_(rows, cols)]).max()) or 1.0
        vmin, vmax = -bound, bound
    else:
        values = expl.cosine.astype(np.float64)
        label, cmap, vmin, vmax = "cosine similarity", "viridis", None, None
    matrix = values[np.ix_(rows, cols)]
    width = min(max(6.0, 0.26 * len(cols) + 3.0), 120.0)
    height = min(max(3.0, 0.3 * len(rows) + 2.2), 60.0)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), [expl.doc.labels[j] for j in cols], rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), [expl.query.labels[i] for i in rows], fontsize=8)
    ax.set_xlabel(f"passage {hit.passage.id} ({hit.passage.document_key})")
    ax.set_ylabel("query")
    title = f"{mode} matrix · score {expl.score:.4f}"
    if expl.index_score is not None:
        title += f" (index {expl.index_score:.4f})"
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label, fraction=0.03, pad=0.01)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
