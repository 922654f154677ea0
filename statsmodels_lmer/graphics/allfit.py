"""Estimates per optimizer from ``allfit`` (lme4's ``allFit``), one panel per quantity."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._mpl import chosen, dot_panel, finish, panel_axes, pyplot

__all__ = ["plot_allfit"]


def _quantities(summary: Any) -> dict[str, tuple[str, pd.Series]]:
    """Key -> (panel title, values per optimizer that ran)."""
    out = {"llf": ("log-likelihood", summary.llik)}
    for name in summary.fixef.columns:
        out[str(name)] = (str(name), summary.fixef[name])
    labels = getattr(summary, "sdcor_labels", {}) or {}
    for name in summary.sdcor.columns:
        out[str(name)] = (labels.get(name, str(name)), summary.sdcor[name])
    return out


def _scaled(diff: np.ndarray) -> tuple[np.ndarray, int]:
    """Differences in units of ``10**power`` when they are tiny or huge (power 0 otherwise)."""
    largest = float(np.max(np.abs(diff[np.isfinite(diff)]), initial=0.0))
    if largest == 0.0 or 1e-3 <= largest < 1e4:
        return diff, 0
    power = int(np.floor(np.log10(largest)))
    return diff / 10.0**power, power


def plot_allfit(af: Any, which: Any = None, ax: Any = None, ncols: int | None = None) -> Any:
    """Each optimizer's estimates, one panel per quantity (log-likelihood, fixed
    effects, standard deviations and correlations, sigma).

    Optimizers usually agree to many digits, so each panel shows the
    difference of every optimizer's estimate from the best fit's (the one
    with the highest log-likelihood, whose value is in the title), with a
    vertical line at 0; optimizers that do not agree with the best fit
    (``summary().agree``) are drawn in red. Optimizers that failed are left out.

    Parameters
    ----------
    af : AllFitResult
        From :meth:`LmerResults.allfit`.
    which : str or sequence of str, optional
        Quantities to draw: ``"llf"``, fixed-effect names, or the columns of
        ``af.summary().sdcor`` (``"Subject.Intercept"``, ``"sigma"``);
        default all.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per quantity; default a new figure.
    ncols : int, optional
        Panels per row of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When no optimizer produced a fit.
    """
    pyplot()
    summary = af.summary()
    if summary.best is None:
        raise ValueError("no optimizer produced a fit: nothing to plot")
    quantities = _quantities(summary)
    keys = chosen(which, list(quantities), "quantities")
    fig, axes = panel_axes(len(keys), ax, ncols, size=3.5)
    for axis, key in zip(axes, keys):
        title, values = quantities[key]
        names = list(values.index)
        agree = summary.agree.reindex(names).to_numpy(dtype=bool)
        best = float(values[summary.best])
        diff, power = _scaled(values.to_numpy(dtype=float) - best)
        dot_panel(axis, names, diff, highlight=~agree)
        axis.axvline(0.0, color="0.5", linewidth=0.8, label="best fit")
        axis.set_title(f"{title}\nbest fit: {best:.7g}", fontsize=10)
        unit = f" (x 1e{power})" if power else ""
        axis.set_xlabel(f"estimate - best fit{unit}")
    return finish(fig, ax)
