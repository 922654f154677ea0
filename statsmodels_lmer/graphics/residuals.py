"""Residual diagnostics: residuals against fitted values, scale-location, normal QQ,
and each group's data with its fitted line (lattice's ``xyplot`` per group).

Residuals are conditional (``y - X beta - Z b``), Pearson (times the square
root of the prior weights) and scaled by sigma, as lme4's
``residuals(m, type = "pearson", scaled = TRUE)``: a well specified model
gives values like standard normal draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from statsmodels.nonparametric.smoothers_lowess import lowess

from ..random_effects import term_for_group
from ..terms import level_key, term_level_keys
from ._mpl import finish, panel_axes, pyplot, qq_panel

__all__ = [
    "plot_diagnostics",
    "plot_group_fits",
    "plot_qq",
    "plot_residuals",
    "plot_scale_location",
]

RESIDUAL_LABEL = "scaled Pearson residual"


def _fitted_and_residuals(res: Any) -> tuple[np.ndarray, np.ndarray]:
    fitted = np.asarray(res.fittedvalues, dtype=float)
    return fitted, np.asarray(res.residuals(type="pearson", scaled=True), dtype=float)


def _single_axis(ax: Any) -> tuple[Any, Any]:
    if ax is None:
        return pyplot().subplots(figsize=(5.0, 4.0))
    return ax.figure, ax


def _smooth(axis: Any, x: np.ndarray, y: np.ndarray) -> None:
    """A lowess smoother (statsmodels), labelled ``"lowess"``."""
    span = float(np.ptp(x)) if x.size else 0.0
    curve = lowess(y, x, frac=2.0 / 3.0, it=0, delta=0.01 * span, return_sorted=True)
    axis.plot(curve[:, 0], curve[:, 1], color="C1", linewidth=1.2, label="lowess")


def _against_fitted(
    axis: Any, fitted: np.ndarray, values: np.ndarray, smooth: bool, ylabel: str, title: str
) -> None:
    axis.plot(fitted, values, "o", markersize=3, alpha=0.6, color="C0", label="observation")
    if smooth:
        _smooth(axis, fitted, values)
    axis.set_xlabel("fitted value (conditional)")
    axis.set_ylabel(ylabel)
    axis.set_title(title)


def plot_residuals(res: Any, ax: Any = None, smooth: bool = True) -> Any:
    """Scaled Pearson residuals against fitted values (lme4's ``plot(m)``).

    A flat cloud around 0 is what a good fit gives; a curved lowess line
    (``smooth``) points to a missing term, a funnel to unequal variance.

    Parameters
    ----------
    res : LmerResults
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    smooth : bool
        Add a lowess smoother.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axis = _single_axis(ax)
    fitted, resid = _fitted_and_residuals(res)
    _against_fitted(axis, fitted, resid, smooth, RESIDUAL_LABEL, "Residuals vs fitted")
    axis.axhline(0.0, color="0.5", linewidth=0.8)
    return finish(fig, ax)


def plot_scale_location(res: Any, ax: Any = None, smooth: bool = True) -> Any:
    """``sqrt(|scaled residual|)`` against fitted values: constant spread is flat.

    Parameters
    ----------
    res : LmerResults
    ax : matplotlib Axes, optional
    smooth : bool
        Add a lowess smoother.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axis = _single_axis(ax)
    fitted, resid = _fitted_and_residuals(res)
    root = np.sqrt(np.abs(resid))
    _against_fitted(axis, fitted, root, smooth, f"sqrt(|{RESIDUAL_LABEL}|)", "Scale-location")
    return finish(fig, ax)


def plot_qq(res: Any, ax: Any = None) -> Any:
    """Normal QQ plot of the scaled Pearson residuals, with R's ``qqline``.

    Parameters
    ----------
    res : LmerResults
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axis = _single_axis(ax)
    _, resid = _fitted_and_residuals(res)
    qq_panel(axis, resid, "Normal QQ of residuals", RESIDUAL_LABEL)
    return finish(fig, ax)


def plot_diagnostics(res: Any, smooth: bool = True) -> Any:
    """Residuals vs fitted, scale-location, QQ of residuals and of the first random effect.

    Parameters
    ----------
    res : LmerResults
    smooth : bool
        Lowess smoothers in the first two panels.

    Returns
    -------
    matplotlib.figure.Figure
        A 2 x 2 grid.
    """
    fig, axes = panel_axes(4, None, 2, size=4.0)
    plot_residuals(res, ax=axes[0], smooth=smooth)
    plot_scale_location(res, ax=axes[1], smooth=smooth)
    plot_qq(res, ax=axes[2])
    term = res.model.random_terms[0]
    modes = np.asarray(res.conditional_modes[0])[:, 0]
    title = f"Normal QQ of {term.column_names[0]} | {term.group}"
    qq_panel(axes[3], modes, title, "conditional mode")
    return finish(fig, None)


def _chosen_levels(term: Any, groups: Any, n_groups: int) -> list[int]:
    levels = list(term.levels)
    if groups is None:
        return list(range(min(int(n_groups), len(levels))))
    labels = list(term_level_keys(term))  # matched by value, whatever the dtype
    wanted = [level_key(g) for g in ([groups] if isinstance(groups, str | int) else groups)]
    unknown = [g for g in wanted if g not in labels]
    if unknown:
        raise KeyError(f"no levels {unknown} in {term.group}")
    return [labels.index(g) for g in wanted]


def plot_group_fits(
    res: Any,
    x: str | None = None,
    group: str | None = None,
    n_groups: int = 12,
    groups: Any = None,
    marginal: bool = True,
    ax: Any = None,
    ncols: int | None = None,
) -> Any:
    """Each group's data with its fit, one panel per group (lattice's ``xyplot``).

    With ``x`` (a numeric column of the data): the observations against
    ``x``, the conditional fit (fixed plus the group's random effects) as a
    line and, with ``marginal``, the population fit (fixed effects only)
    dashed. Without ``x``: observed against conditional fitted values, with
    the identity line.

    Parameters
    ----------
    res : LmerResults
    x : str, optional
        Column of the model's data for the horizontal axis.
    group : str, optional
        Grouping factor of the panels (default the first random term's).
    n_groups : int
        Draw the first ``n_groups`` levels (ignored when ``groups`` is given).
    groups : sequence, optional
        The levels to draw.
    marginal : bool
        Also draw the population-level fit (with ``x``).
    ax : sequence of matplotlib Axes, optional
        One Axes per group; default a new figure with shared axes.
    ncols : int, optional
        Panels per row of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pyplot()
    term = term_for_group(res.model.random_terms, group)
    chosen = _chosen_levels(term, groups, n_groups)
    endog = np.asarray(res.model.endog, dtype=float)
    fitted = np.asarray(res.fittedvalues, dtype=float)
    population = np.asarray(res.fittedvalues_marginal, dtype=float)
    xs = None
    if x is not None:
        frame = res.model.data.frame
        if x not in frame.columns:
            raise KeyError(f"no column {x!r} in the model's data")
        xs = np.asarray(frame[x], dtype=float)
    fig, axes = panel_axes(len(chosen), ax, ncols, sharex=True, sharey=True)
    codes = np.asarray(term.codes)
    for axis, code in zip(axes, chosen):
        rows = np.flatnonzero(codes == code)
        if xs is None:
            axis.plot(fitted[rows], endog[rows], "o", markersize=3, label="observed")
            ends = [
                min(fitted[rows].min(), endog[rows].min()),
                max(fitted[rows].max(), endog[rows].max()),
            ]
            axis.plot(ends, ends, color="0.5", linewidth=0.8, label="identity")
        else:
            rows = rows[np.argsort(xs[rows], kind="stable")]
            axis.plot(xs[rows], endog[rows], "o", markersize=3, label="observed")
            axis.plot(xs[rows], fitted[rows], color="C1", label="conditional fit")
            if marginal:
                axis.plot(xs[rows], population[rows], "--", color="0.4", label="population fit")
        axis.set_title(f"{term.group} {term.levels[code]}", fontsize=9)
    response = str(getattr(res.model, "endog_names", "response"))
    for axis in axes:
        axis.set_xlabel("fitted value" if xs is None else x)
        axis.set_ylabel(response)
    axes[0].legend(fontsize=7)
    return finish(fig, ax)
