"""matplotlib, imported only when a plot is drawn (the ``plot`` extra), and shared panels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from ..arguments import check_count

__all__ = [
    "check_axes",
    "chosen",
    "dot_panel",
    "finish",
    "normal_scores",
    "panel_axes",
    "pyplot",
    "qq_panel",
]


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
    count: int,
    ax: Any = None,
    ncols: int | None = None,
    size: float = 3.0,
    sharey: bool = False,
    sharex: bool = False,
) -> tuple[Any, list[Any]]:
    """A figure and ``count`` Axes: the given ones, or a new grid of panels.

    Raises
    ------
    TypeError
        When ``ax`` holds something other than matplotlib Axes, or ``ncols``
        is not a whole number.
    ValueError
        When fewer Axes than panels are given, or ``ncols`` is below 1.
    """
    if ncols is not None:
        ncols = check_count("ncols", ncols)
    if ax is None:
        ncols = ncols or min(count, 4)
        nrows = math.ceil(count / ncols)
        fig, grid = pyplot().subplots(
            nrows,
            ncols,
            figsize=(size * ncols, size * nrows),
            sharey=sharey,
            sharex=sharex,
            squeeze=False,
        )
        axes = list(grid.ravel())
        for extra in axes[count:]:
            extra.set_visible(False)
        return fig, axes[:count]
    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    check_axes(axes)
    if len(axes) < count:
        raise ValueError(f"{count} panels to draw but {len(axes)} Axes given")
    return axes[0].figure, axes[:count]


def check_axes(axes: list[Any]) -> None:
    """Each of ``axes`` must be a matplotlib Axes (a TypeError naming ``ax`` otherwise)."""
    from matplotlib.axes import Axes  # matplotlib is there: ax holds its objects

    wrong = [axis for axis in axes if not isinstance(axis, Axes)]
    if wrong or not axes:
        shown = wrong[0] if wrong else axes
        raise TypeError(
            f"ax must be a matplotlib Axes or a sequence of them, got {type(shown).__name__} "
            f"{shown!r}"
        )


def chosen(which: Any, available: list[str], what: str) -> list[str]:
    """The panels asked for by ``which`` (a name or names; None: all ``available``).

    Raises
    ------
    KeyError
        Naming the unknown ones and listing the ``available`` ``what``.
    """
    if which is None:
        return list(available)
    wanted = [which] if isinstance(which, str) else list(which)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise KeyError(f"unknown {what} {unknown}; available: {list(available)}")
    return wanted


def finish(fig: Any, ax: Any) -> Any:
    """Tidy the layout of a figure the function created (not of Axes given to it)."""
    if ax is None:
        fig.tight_layout()
    return fig


def normal_scores(count: int) -> np.ndarray:
    """Normal quantiles at R's ``ppoints(count)`` (the x of a normal QQ plot)."""
    a = 3.0 / 8.0 if count <= 10 else 0.5
    return stats.norm.ppf((np.arange(1, count + 1) - a) / (count + 1 - 2 * a))


def qq_panel(axis: Any, values: np.ndarray, title: str, ylabel: str) -> None:
    """A normal QQ plot of ``values`` with the line through the quartiles (R's qqline)."""
    values = np.sort(np.asarray(values, dtype=float))
    scores = normal_scores(values.size)
    axis.plot(scores, values, "o", markersize=3, alpha=0.7, color="C0", label="observed")
    q1, q3 = np.quantile(values, [0.25, 0.75])
    z1, z3 = stats.norm.ppf([0.25, 0.75])
    slope = (q3 - q1) / (z3 - z1)
    ends = np.array([scores[0], scores[-1]])
    axis.plot(ends, q1 + slope * (ends - z1), color="C1", linewidth=1.0, label="quartile line")
    axis.set_title(title)
    axis.set_xlabel("standard normal quantiles")
    axis.set_ylabel(ylabel)


def dot_panel(
    axis: Any,
    labels: Any,
    centre: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    highlight: np.ndarray | None = None,
    max_labels: int = 40,
) -> None:
    """Horizontal dot plot: one row per label (bottom to top), optional intervals.

    The points are the Line2D labelled ``"estimate"``; the intervals the
    LineCollection labelled ``"interval"`` (segments from lower to upper).
    ``highlight`` marks rows drawn in a second colour. With more than
    ``max_labels`` rows the tick labels are left out and the (last eight)
    highlighted rows are named in the panel's corner.
    """
    rows = np.arange(len(centre))
    colours = np.where(highlight, "C3", "C0") if highlight is not None else "C0"
    if lower is not None and upper is not None:
        axis.hlines(rows, lower, upper, colors=colours, linewidth=1.0, label="interval")
    axis.plot(centre, rows, "o", color="C0", markersize=3, label="estimate")
    if highlight is not None and np.any(highlight):
        axis.plot(centre[highlight], rows[highlight], "o", color="C3", markersize=3)
    axis.set_ylim(-0.8, len(centre) - 0.2)
    if len(centre) <= max_labels:
        axis.set_yticks(rows, [str(label) for label in labels], fontsize=8)
    else:
        axis.set_yticks([])
        axis.set_ylabel(f"{len(centre)} levels, ordered")
        marked = [str(labels[row]) for row in rows[highlight]] if highlight is not None else []
        if marked:  # name the highlighted rows (the last eight)
            more = ", ..." if len(marked) > 8 else ""
            axis.text(
                0.98,
                0.02,
                "marked: " + ", ".join(marked[-8:][::-1]) + more,
                transform=axis.transAxes,
                ha="right",
                va="bottom",
                fontsize=7,
                color="C3",
                wrap=True,
            )
    axis.grid(True, axis="x", color="0.9")
