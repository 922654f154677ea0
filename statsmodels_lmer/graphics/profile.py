"""Plots of fitted models: likelihood profiles (lme4's ``xyplot(profile(m))``).

matplotlib is an optional dependency: ``pip install "statsmodels_lmer[plot]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import interpolate, stats

from ..arguments import check_bool, check_level
from ..splines import back_spline
from ._mpl import chosen, panel_axes, pyplot

__all__ = ["plot_profile"]


def plot_profile(
    prof: Any,
    ax: Any = None,
    which: Any = None,
    conf: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
    absval: bool = False,
    ncols: int | None = None,
) -> Any:
    """Plot zeta against each profiled parameter, like lme4's ``xyplot(profile(m))``.

    Each panel shows the profile points, the interpolating spline through them, and
    vertical segments at the profile confidence limits for the levels in ``conf``
    (where the profile reaches them). Panels are titled with the parameter's
    descriptive name (``sd_Intercept|Subject``, ``cor_Days.Intercept|Subject``,
    ``sigma``, or the fixed effect's), from the profile's ``labels``.

    Parameters
    ----------
    prof : ProfileResult
        From :meth:`LmerResults.profile` (or its ``.frame``: columns ``.zeta``,
        the parameters and ``.par``).
    ax : matplotlib Axes or sequence of Axes, optional
        Where to draw: one Axes per parameter. Default: a new figure with a grid of panels.
    which : str or sequence of str, optional
        Parameters to plot (default all profiled ones).
    conf : sequence of float
        Confidence levels whose limits are marked, each strictly between 0 and 1.
    absval : bool
        Plot ``|zeta|`` (lme4's ``absVal = TRUE``).
    ncols : int, optional
        Panels per row of a new figure (default up to 4).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        When matplotlib is not installed (the ``plot`` extra).
    """
    pyplot()  # a clear ImportError before any work
    absval = check_bool("absval", absval)
    conf = _checked_conf(conf)
    frame = getattr(prof, "frame", prof)
    names = chosen(which, list(dict.fromkeys(frame[".par"])), "profiled parameters")
    if not names:
        raise ValueError("the profile frame has no parameters to plot")
    fig, axes = panel_axes(len(names), ax, ncols, sharey=True)
    levels = np.sort(stats.norm.ppf(0.5 + conf / 2.0))
    labels = getattr(prof, "labels", None) or {}
    for axis, name in zip(axes, names):
        _panel(axis, frame, name, levels, absval)
        axis.set_title(labels.get(name, name))
    axes[0].set_ylabel(r"$|\zeta|$" if absval else r"$\zeta$")
    if ax is None:
        fig.tight_layout()
    return fig


def _checked_conf(conf: Any) -> np.ndarray:
    """``conf`` as an array of levels, each strictly between 0 and 1 (lme4's check)."""
    values = [conf] if isinstance(conf, int | float | np.number) else conf
    if isinstance(values, str | bytes):
        raise TypeError(f"conf must be confidence levels (numbers), got {conf!r}")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"conf must be confidence levels (numbers), got {conf!r}") from None
    return np.array([check_level(value, "conf") for value in items], dtype=float)


def _panel(axis: Any, frame: pd.DataFrame, name: str, levels: np.ndarray, absval: bool) -> None:
    part = frame.loc[frame[".par"] == name, [name, ".zeta"]].dropna().sort_values(name)
    x, z = part[name].to_numpy(float), part[".zeta"].to_numpy(float)
    shown = np.abs if absval else np.asarray
    axis.grid(True, color="0.9")
    if x.size >= 3 and np.all(np.diff(x) > 0):
        grid = np.linspace(x[0], x[-1], 101)
        curve = interpolate.CubicSpline(x, z, bc_type="natural")(grid)
        axis.plot(grid, shown(curve), color="C0")
    else:
        axis.plot(x, shown(z), color="C0")
    axis.plot(x, shown(z), "+", color="C0", markersize=5)
    if not absval:
        axis.axhline(0.0, color="0.5", linewidth=0.8)
    try:
        back = back_spline(x, z)
    except (ValueError, np.linalg.LinAlgError):
        back = None
    if back is not None:
        targets = np.concatenate([-levels[::-1], levels])
        limits = back(targets)
        for limit, target in zip(limits, targets):
            if np.isfinite(limit):
                axis.plot([limit, limit], [0.0, shown(target)], color="C1", linewidth=0.8)
        if absval:
            for level in levels:
                lo, hi = back(np.array([-level, level]))
                if np.isfinite(lo) and np.isfinite(hi):
                    axis.plot([lo, hi], [level, level], color="C1", linewidth=0.8)
