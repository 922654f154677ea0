"""The parameters of ``confint`` and ``profile``: names, values, bounds, selection.

Parameters are named as lme4's ``confint`` rows: ``.sig01, .sig02, ...`` for
the random-effects standard deviations and correlations in theta order (per
term, the lower triangle column by column: a diagonal position is a standard
deviation, an off-diagonal one a correlation), ``.sigma`` for the residual
standard deviation, then the fixed effects under their statsmodels names.
With ``signames=False`` the variance parameters get lme4's descriptive names
(``sd_Intercept|Subject``, ``cor_Days.Intercept|Subject``, ``sigma``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..arguments import check_positions
from ..parametrization import theta_to_sdcor, tril_colmajor

__all__ = [
    "default_statistics",
    "descriptive_statistics",
    "parameter_names",
    "percent_labels",
    "select_parameters",
    "selection_items",
    "variance_bounds",
    "variance_names",
    "variance_parameters",
]


def variance_names(model: Any, signames: bool = True) -> list[str]:
    """Names of the variance parameters (sd's, correlations, sigma) of a model."""
    if signames:
        n_theta = sum(term.n_theta for term in model.random_terms)
        return [f".sig{k:02d}" for k in range(1, n_theta + 1)] + [".sigma"]
    names = []
    for term in model.random_terms:
        cols = term.column_names
        for r, c in zip(*tril_colmajor(term.n_cols)):
            if r == c:
                names.append(f"sd_{cols[r]}|{term.group}")
            else:
                names.append(f"cor_{cols[r]}.{cols[c]}|{term.group}")
    return names + ["sigma"]


def parameter_names(res: Any, signames: bool = True) -> list[str]:
    """Names of the variance parameters then the fixed effects, as lme4's ``confint`` rows.

    Parameters
    ----------
    res : LmerResults
    signames : bool
        ``.sig01, ..., .sigma`` (lme4's default) or descriptive names
        ``sd_<column>|<group>``, ``cor_<column>.<column>|<group>``, ``sigma``
        (lme4's ``oldNames = FALSE``).
    """
    return variance_names(res.model, signames) + list(res.model.exog_names)


def variance_bounds(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the sd/cor scale: sd in [0, inf), cor in [-1, 1], sigma in [0, inf)."""
    diagonal = np.asarray(model.theta_lower) == 0
    lower = np.where(diagonal, 0.0, -1.0)
    upper = np.where(diagonal, np.inf, 1.0)
    return np.append(lower, 0.0), np.append(upper, np.inf)


def variance_parameters(res: Any, signames: bool = True) -> pd.Series:
    """The random-effects sd's and correlations and sigma, named as lme4's ``confint`` rows."""
    model = res.model
    values = theta_to_sdcor(
        model.random_terms, model.theta_slices, np.asarray(res.theta), float(res.sigma)
    )
    return pd.Series(values, index=variance_names(model, signames))


def default_statistics(fit: Any) -> pd.Series:
    """The default bootstrap statistic: variance parameters then fixed effects."""
    variance = variance_parameters(fit)
    fixed = pd.Series(np.asarray(fit.params, dtype=float), index=list(fit.model.exog_names))
    return pd.concat([variance, fixed])


def descriptive_statistics(fit: Any) -> pd.Series:
    """:func:`default_statistics` with descriptive names (``sd_Days|Subject``)."""
    stat = default_statistics(fit)
    stat.index = parameter_names(fit, False)
    return stat


def select_parameters(which: Any, names: list[str], n_var: int, name: str = "which") -> list[int]:
    """lme4's ``get.which``: None, names, ``"theta_"``, ``"beta_"`` or positions.

    Positions are whole numbers ``0 .. len(names) - 1`` (negative ones count from
    the end); bools, fractions and positions out of range are refused, not
    wrapped. Duplicates are dropped; the positions come back sorted.

    Raises
    ------
    TypeError
        ``which`` (named ``name`` in the message) is not a name, a position or a
        sequence of them.
    KeyError
        An unknown name or a position out of range.
    ValueError
        An empty selection.
    """
    if which is None:
        return list(range(len(names)))
    items = selection_items(which, name)
    if not items:
        raise ValueError(
            f"{name} selects no parameters; give names ({', '.join(names)}), positions, "
            "'theta_' or 'beta_', or None for all"
        )
    chosen: set[int] = set()
    for item in items:
        if isinstance(item, str):
            if item == "theta_":
                chosen.update(range(n_var))
            elif item == "beta_":
                chosen.update(range(n_var, len(names)))
            elif item in names:
                chosen.add(names.index(item))
            else:
                raise KeyError(f"unknown parameter {item!r}; parameters are {names}")
        else:
            chosen.update(check_positions(name, [item], len(names)))
    return sorted(chosen)


def selection_items(which: Any, name: str) -> list[Any]:
    """``which`` (not None) as a list: one name or position, or a sequence of them.

    Raises
    ------
    TypeError
        A dict, a set or another object that is not a sequence (naming ``name``).
    """
    if isinstance(which, str | int | np.integer | bool | np.bool_):
        return [which]
    message = f"{name} must be a parameter name, a position or a list of them, got {which!r}"
    if isinstance(which, Mapping | set | frozenset):
        raise TypeError(message)
    try:
        return list(which)
    except TypeError:
        raise TypeError(message) from None


def percent_labels(probs: Sequence[float]) -> list[str]:
    """R's ``format.perc(probs, 3)``: ``"2.5 %"``, ``"97.5 %"``."""
    texts = [f"{100 * p:.3g}" for p in probs]
    decimals = max(len(t.split(".")[1]) if "." in t and "e" not in t else 0 for t in texts)
    return [f"{100 * p:.{decimals}f} %" for p in probs]
