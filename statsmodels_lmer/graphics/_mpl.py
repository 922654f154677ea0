"""matplotlib, imported only when a plot is drawn (the ``plot`` extra)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["panel_axes", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib, an optional dependency: "
            'pip install "statsmodels_lmer[plot]" (or pip install matplotlib)'
        ) from exc
    return plt


def panel_axes(
    count: int, ax: Any = None, ncols: int | None = None, size: float = 3.0, sharey: bool = False
) -> tuple[Any, list[Any]]:
    """A figure and ``count`` Axes: the given ones, or a new grid of panels.

    Raises
    ------
    ValueError
        When fewer Axes than panels are given.
    """
    if ax is None:
        ncols = ncols or min(count, 4)
        nrows = math.ceil(count / ncols)
        fig, grid = pyplot().subplots(
            nrows, ncols, figsize=(size * ncols, size * nrows), sharey=sharey, squeeze=False
        )
        axes = list(grid.ravel())
        for extra in axes[count:]:
            extra.set_visible(False)
        return fig, axes[:count]
    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) < count:
        raise ValueError(f"{count} panels to draw but {len(axes)} Axes given")
    return axes[0].figure, axes[:count]
