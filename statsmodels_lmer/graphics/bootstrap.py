"""Bootstrap distributions: a histogram per statistic with its estimate and interval."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arguments import check_count
from ._mpl import chosen, panel_axes

__all__ = ["plot_bootstrap"]


def plot_bootstrap(
    boot: Any,
    which: Any = None,
    ax: Any = None,
    level: float = 0.95,
    bins: int = 30,
    ncols: int | None = None,
) -> Any:
    """Histograms of bootstrap replicates, one panel per statistic.

    Each panel marks the estimate at the fit (solid line) and the percentile
    interval at ``level`` (dashed lines), and is titled with the statistic's
    descriptive name (``sd_Intercept|Subject`` for ``.sig01``) when known.

    Parameters
    ----------
    boot : BootstrapResult
        From :meth:`LmerResults.bootstrap`.
    which : str or sequence of str, optional
        Statistics to draw (default all).
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per statistic; default a new figure.
    level : float
        Coverage of the marked percentile interval.
    bins : int
        Histogram bins, at least 1 (or, as numpy's ``histogram``, the bin
        edges or the name of a rule such as ``"auto"``).
    ncols : int, optional
        Panels per row of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(bins, str) and np.ndim(bins) == 0:
        bins = check_count("bins", bins)  # else numpy's: a rule's name or the bin edges
    frame = boot.frame
    names = chosen(which, list(frame.columns), "statistics")
    fig, axes = panel_axes(len(names), ax, ncols)
    limits = boot.confint(level=level)
    labels = getattr(boot, "labels", None) or {}
    for axis, name in zip(axes, names):
        values = frame[name].to_numpy(dtype=float)
        axis.hist(values[np.isfinite(values)], bins=bins, color="C0", alpha=0.7)
        axis.axvline(boot.t0.get(name, np.nan), color="k", linewidth=1.2)
        for limit in limits.loc[name]:
            axis.axvline(limit, color="C1", linestyle="--", linewidth=1.0)
        axis.set_title(labels.get(name, name))
        axis.set_xlabel("bootstrap replicate")
    axes[0].set_ylabel("count")
    if ax is None:
        fig.tight_layout()
    return fig
