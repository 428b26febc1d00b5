"""Matplotlib helpers the reports share: a headless pyplot, a grid of axes, a placeholder.

Both reports (``report.py``: the comparison; ``study.py``: a study) draw with these, so a
change of backend or layout is made once.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["pyplot", "grid", "empty_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display; imported only when drawing)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def grid(n: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure with ``n`` axes, three to a row, each ``width`` x ``height`` inches; the
    unused cells of the last row are hidden."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows),
                                  squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def empty_figure(message: str) -> Any:
    """A small figure saying why there is nothing to plot."""
    fig, ax = pyplot().subplots(figsize=(6, 1.6))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    ax.set_axis_off()
    return fig
