"""Random effects: caterpillar plots (lme4's ``dotplot(ranef(m, condVar = TRUE))``,
merTools' ``plotREsim``) and normal QQ plots (lme4's ``qqmath(ranef(m))``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._mpl import chosen, dot_panel, finish, panel_axes, pyplot, qq_panel

__all__ = ["plot_ranef", "plot_ranef_qq", "plot_resim"]


def _z(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    return float(stats.norm.ppf(0.5 + level / 2.0))


def _panels(res: Any, group: Any) -> list[tuple[Any, int, int]]:
    """(term, term index, column) for each panel, terms of the chosen factors only."""
    terms = res.model.random_terms
    groups = chosen(group, list(dict.fromkeys(term.group for term in terms)), "grouping factors")
    return [
        (term, index, column)
        for g in groups
        for index, term in enumerate(terms)
        if term.group == g
        for column in range(term.n_cols)
    ]


def plot_ranef(
    res: Any,
    group: Any = None,
    level: float = 0.95,
    order: bool = True,
    ax: Any = None,
    ncols: int | None = None,
    max_labels: int = 40,
) -> Any:
    """Caterpillar plot of the conditional modes, as lme4's ``dotplot(ranef(m, condVar = TRUE))``.

    One panel per column of each random term (``Intercept | Subject``,
    ``Days | Subject``): a point per level at its conditional mode and a bar
    of ``+- z * conditional SD`` (``z`` the normal quantile of ``level``).
    Levels are ordered by the first column of their grouping factor, in
    every panel of that factor, as lme4 does.

    Parameters
    ----------
    res : LmerResults
    group : str or list of str, optional
        Grouping factors to draw (default all).
    level : float
        Coverage of the intervals (0.95: modes +- 1.96 conditional SD).
    order : bool
        Order levels by their mode (else in level order).
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per panel; default a new figure.
    ncols : int, optional
        Panels per row of a new figure.
    max_labels : int
        Above this many levels the level names are not printed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pyplot()
    z = _z(level)
    panels = _panels(res, group)
    fig, axes = panel_axes(len(panels), ax, ncols, size=3.5)
    orders: dict[str, np.ndarray] = {}
    for axis, (term, index, column) in zip(axes, panels):
        modes = np.asarray(res.conditional_modes[index])[:, column]
        sds = np.sqrt(np.asarray(res.conditional_covariances[index])[:, column, column])
        if term.group not in orders:
            orders[term.group] = (
                np.argsort(modes, kind="stable") if order else np.arange(modes.size)
            )
        rows = orders[term.group]
        dot_panel(
            axis,
            np.asarray(term.levels)[rows],
            modes[rows],
            modes[rows] - z * sds[rows],
            modes[rows] + z * sds[rows],
            max_labels=max_labels,
        )
        axis.axvline(0.0, color="0.5", linewidth=0.8)
        axis.set_title(f"{term.column_names[column]} | {term.group}")
        axis.set_xlabel(f"conditional mode, {100 * level:g}% interval")
    return finish(fig, ax)


def plot_resim(
    frame: pd.DataFrame,
    level: float = 0.95,
    stat: str = "median",
    ax: Any = None,
    ncols: int | None = None,
    max_labels: int = 40,
) -> Any:
    """Caterpillar plot of simulated random effects, as merTools' ``plotREsim``.

    One panel per grouping factor and term of ``frame`` (the output of
    :meth:`LmerResults.resim`): a point per level at ``stat`` and a bar of
    ``stat +- z * sd``, levels ordered by ``stat``; levels whose interval
    excludes 0 are drawn in red (merTools' highlighting).

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``groupFctr, groupID, term, mean, median, sd``.
    level : float
        Coverage of the intervals.
    stat : {"median", "mean"}
        The centre of each interval.
    ax, ncols, max_labels
        As :func:`plot_ranef`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pyplot()
    if stat not in ("median", "mean"):
        raise ValueError(f"stat must be 'median' or 'mean', got {stat!r}")
    missing = {"groupFctr", "groupID", "term", stat, "sd"} - set(frame.columns)
    if missing:
        raise KeyError(f"frame lacks columns {sorted(missing)}: pass the output of resim()")
    z = _z(level)
    keys = list(dict.fromkeys(zip(frame["groupFctr"], frame["term"])))
    fig, axes = panel_axes(len(keys), ax, ncols, size=3.5)
    for axis, (group, term) in zip(axes, keys):
        part = frame[(frame["groupFctr"] == group) & (frame["term"] == term)]
        part = part.sort_values(stat, kind="stable")
        centre = part[stat].to_numpy(dtype=float)
        half = z * part["sd"].to_numpy(dtype=float)
        lower, upper = centre - half, centre + half
        dot_panel(
            axis,
            part["groupID"].to_numpy(),
            centre,
            lower,
            upper,
            highlight=(lower > 0) | (upper < 0),
            max_labels=max_labels,
        )
        axis.axvline(0.0, color="0.5", linewidth=0.8)
        axis.set_title(f"{term} | {group}")
        axis.set_xlabel(f"simulated effect ({stat}), {100 * level:g}% interval")
    return finish(fig, ax)


def plot_ranef_qq(res: Any, group: Any = None, ax: Any = None, ncols: int | None = None) -> Any:
    """Normal QQ plot of the conditional modes, one panel per term column.

    Sorted modes against normal quantiles at R's ``ppoints``, with the line
    through the quartiles (R's ``qqline``); a curved or broken pattern
    questions the normality of the random effects.

    Parameters
    ----------
    res : LmerResults
    group : str or list of str, optional
        Grouping factors to draw (default all).
    ax, ncols
        As :func:`plot_ranef`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pyplot()
    panels = _panels(res, group)
    fig, axes = panel_axes(len(panels), ax, ncols)
    for axis, (term, index, column) in zip(axes, panels):
        modes = np.asarray(res.conditional_modes[index])[:, column]
        title = f"{term.column_names[column]} | {term.group}"
        qq_panel(axis, modes, title, "conditional mode")
    return finish(fig, ax)
