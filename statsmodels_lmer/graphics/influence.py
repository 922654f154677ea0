"""Influence of each group (HLMdiag's ``dotplot_diag``): one dot plot per measure."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._mpl import chosen, dot_panel, finish, panel_axes, pyplot

__all__ = ["plot_influence"]

TITLES = {
    "cooks_distance": "Cook's distance",
    "mdffits": "MDFFITS",
    "covtrace": "COVTRACE",
    "covratio": "COVRATIO",
    "leverage": "leverage (overall)",
    "leverage_fixef": "leverage (fixed part)",
    "leverage_ranef": "leverage (random part)",
    "leverage_ranef_uc": "leverage (random part, unconfounded)",
}


def plot_influence(
    infl: Any,
    which: Any = ("cooks_distance", "leverage"),
    ax: Any = None,
    ncols: int | None = None,
    max_labels: int = 40,
) -> Any:
    """Dot plots of influence measures per group, sorted, with HLMdiag's cutoff.

    Each panel shows one measure for every level of the grouping factor,
    ordered by value; the dashed line is HLMdiag's internal cutoff
    (``infl.cutoffs``: ``Q3 + 3 IQR``, and also ``Q1 - 3 IQR`` for COVRATIO)
    and the levels beyond it are drawn in red.

    Parameters
    ----------
    infl : InfluenceResult
        From :meth:`LmerResults.influence`.
    which : str or sequence of str
        Columns of ``infl.frame`` (default Cook's distance and leverage).
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per measure; default a new figure.
    ncols : int, optional
        Panels per row of a new figure.
    max_labels : int
        Above this many groups the level names are not printed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pyplot()
    columns = chosen(which, list(infl.frame.columns), "measures")
    fig, axes = panel_axes(len(columns), ax, ncols, size=3.5)
    for axis, column in zip(axes, columns):
        values = infl.frame[column].sort_values(kind="stable")
        lower, upper = infl.cutoffs(column)
        numbers = values.to_numpy(dtype=float)
        beyond = (numbers > upper) | (numbers < lower)
        dot_panel(axis, values.index, numbers, highlight=beyond, max_labels=max_labels)
        for limit in (lower, upper):
            if np.isfinite(limit):
                axis.axvline(limit, color="C3", linestyle="--", linewidth=0.8, label="cutoff")
        axis.set_title(TITLES.get(column, column))
        axis.set_xlabel(f"deleting each {infl.group}")
        if not np.all(np.isfinite(numbers)):
            axis.set_title(TITLES.get(column, column) + " (some not finite)")
    return finish(fig, ax)
