"""Least-squares means (population marginal means), as lmerTest's ``ls_means``.

The method is lmerTest's (3.1). The reference grid crosses the levels of every
factor of the fixed part (the levels the model uses) and holds each numeric
variable at its mean over the model's rows (unweighted). The least-squares
mean of one level of a factor term (``f``, or a cell of ``f1:f2``) is the
equally weighted average of the model matrix rows of the grid points at that
level, applied to the fixed effects: other factors are averaged with equal
weights and covariates sit at their means, also in covariate-by-factor
interactions. Each mean (or, with ``pairwise=True``, each difference of two
means of a term, all pairs) is a one-row contrast tested with the package's
contrast machinery (:func:`~statsmodels_lmer.inference.hypotheses.contrast_test`),
so with its own Satterthwaite or Kenward-Roger df.

Factor terms are the fixed terms without numeric variables (lmerTest's
choice: ``f:x`` has no means). A factor is one column of the data, bare or
coded (``C(f, Sum)``, ``C(f, Treatment("b"))``, ``C(days)``); numeric
variables may be transformed (``np.log(x)`` is evaluated at the mean of
``x``; lmerTest cannot evaluate transformed variables on its grid).

In a rank-deficient design (lme4 drops aliased columns) a mean or difference
is estimable when its row over all the design's columns is orthogonal to the
null space of the full model matrix; rows that are not get NaN in every
column, as lmerTest's NA. (lmerTest tests the row sums of ``L N``, ``N`` the
null-space basis; we test every entry, which cannot be fooled by
cancellation; the tolerance is lmerTest's, ``sqrt(eps)``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats

from ..arguments import check_bool, check_level
from ..distributed.dask_fit import refuse_on_cluster
from ..exceptions import FormulaError
from ..tables import LmerTable
from ..transform_rows import names_in_code
from .contrasts import FixedTerm, fixed_terms
from .hypotheses import check_ddf, contrast_test

__all__ = ["LS_MEANS_COLUMNS", "LsMeansContrasts", "ls_means_contrasts", "ls_means_table"]

LS_MEANS_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "lower", "upper", "Pr(>|t|)"]
"""The columns of the table, lmerTest's names."""

_ESTIMABLE_TOL = float(np.sqrt(np.finfo(float).eps))
_NULLSPACE_TOL = 1e-8  # lmerTest's nullspace(): singular values below 1e-8 of the largest
_MAX_GRID = 1_000_000

_DDF_NAMES = {
    "satterthwaite": "Satterthwaite",
    "kenward-roger": "Kenward-Roger",
    "residual": "residual (n - p)",
}


@dataclass(frozen=True)
class LsMeansContrasts:
    """The contrasts of one term's least-squares means (or their differences).

    Attributes
    ----------
    term : str
        patsy's name of the factor term (``"recipe:temperature"``).
    labels : list of str
        One per row: the levels joined by ``":"`` (first factor varying
        fastest, R's order), or ``"a - b"`` for a difference.
    matrix : pandas.DataFrame
        Rows ``labels``, columns the model's fixed effects; non-estimable
        rows are NaN.
    """

    term: str
    labels: list[str]
    matrix: pd.DataFrame


@dataclass(frozen=True)
class _GridFactor:
    """One categorical factor of the fixed part on the reference grid."""

    name: str
    column: Any
    levels: tuple[Any, ...]


def ls_means_contrasts(
    res: Any, which: Any = None, pairwise: bool = False
) -> list[LsMeansContrasts]:
    """The contrast matrices of the least-squares means of the factor terms.

    Parameters
    ----------
    res : LmerResults
        A fitted model (only ``res.model`` is used).
    which : str, list of str or None
        Factor terms (patsy's names, ``"f1:f2"`` in either order); None: all.
    pairwise : bool
        Differences of all pairs of means of each term instead of the means.

    Returns
    -------
    list of LsMeansContrasts
        One per term, in R's term order (or the order of ``which``).
    """
    model = res.model
    refuse_on_cluster(model, "ls_means")
    chosen = _chosen_terms(model, which)
    if not chosen:
        return []
    spec = model.data.model_spec
    factors = _grid_factors(model, spec)
    grid, codes = _reference_grid(model, spec, factors)
    design = _design(spec, grid)
    null_space = _null_space(model, spec)
    names = list(model.exog_names)
    out = []
    for term in chosen:
        labels, full = _term_means(_factor_names(spec, term), factors, codes, design)
        if pairwise:
            labels, full = _pairs(labels, full)
        rows = full[names].to_numpy(dtype=float, copy=True)
        rows[~_estimable(full.to_numpy(dtype=float), null_space)] = np.nan
        out.append(LsMeansContrasts(term.name, labels, pd.DataFrame(rows, labels, names)))
    return out


def ls_means_table(
    res: Any,
    which: Any = None,
    level: float = 0.95,
    ddf: str = "satterthwaite",
    pairwise: bool = False,
) -> LmerTable:
    """lmerTest's least-squares means table (``ls_means``; ``difflsmeans`` with ``pairwise``).

    Parameters
    ----------
    res : LmerResults
        A fitted model.
    which : str, list of str or None
        Factor terms (patsy's names); None: every term without numeric variables.
    level : float
        Confidence level of ``lower`` and ``upper``.
    ddf : {"satterthwaite", "kenward-roger", "residual"}
        Denominator df of each row's t test.
    pairwise : bool
        Differences of all pairs of means of each term (``"a - b"``).

    Returns
    -------
    LmerTable
        Columns ``Estimate, Std. Error, df, t value, lower, upper, Pr(>|t|)``,
        indexed by (term, level); non-estimable rows are NaN.
    """
    level = check_level(level)
    pairwise = check_bool("pairwise", pairwise)
    method = check_ddf(ddf)
    contrasts = ls_means_contrasts(res, which, pairwise)
    rows, index = [], []
    for block in contrasts:
        for label, row in zip(block.labels, block.matrix.to_numpy()):
            rows.append(_t_row(res, row, level, method))
            index.append((block.term, label))
    table = pd.DataFrame(
        rows,
        index=pd.MultiIndex.from_tuples(index, names=["term", "level"]),
        columns=LS_MEANS_COLUMNS,
        dtype=float,
    )
    heading = [
        "Least Squares Means table:",
        f"Confidence level: {100 * level:g}%",
        f"Degrees of freedom method: {_method_label(res, method)}",
    ]
    return LmerTable.from_frame(table, heading, pvalue_columns=["Pr(>|t|)"])


def _method_label(res: Any, method: str) -> str:
    robust = getattr(res, "robust", None)
    if robust is not None:
        return f"clubSandwich Satterthwaite ({robust.description})"
    return _DDF_NAMES[method]


def _t_row(res: Any, row: np.ndarray, level: float, method: str) -> list[float]:
    if np.isnan(row).any():
        return [np.nan] * len(LS_MEANS_COLUMNS)
    test = contrast_test(res, row[None, :], 0.0, method)
    estimate = float(test.estimate[0])
    se = float(np.sqrt(test.cov[0, 0]))
    half = float(stats.t.ppf((1 + level) / 2, test.den_df)) * se
    return [
        estimate,
        se,
        test.den_df,
        estimate / se,
        estimate - half,
        estimate + half,
        test.pvalue,
    ]


# -- terms -------------------------------------------------------------------


def _chosen_terms(model: Any, which: Any) -> list[FixedTerm]:
    """The factor terms asked for (all without numeric variables when ``which`` is None)."""
    terms, _ = fixed_terms(model)
    factor_terms = [t for t in terms if not t.numeric]
    if which is None:
        return factor_terms
    wanted = [which] if isinstance(which, str) else list(which)
    by_name = {t.name: t for t in factor_terms}
    by_parts = {_parts(t.name): t for t in factor_terms}
    chosen = []
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"which must name terms as strings; got {name!r}")
        term = by_name.get(name) or by_parts.get(_parts(name))
        if term is None:
            available = ", ".join(by_name) or "none"
            raise KeyError(
                f"{name!r} is not a factor term of the fixed part; least-squares means "
                f"exist for the terms without numeric variables: {available}"
            )
        chosen.append(term)
    return chosen


def _parts(name: str) -> frozenset[str]:
    """The factors of a term name, whatever their order and spacing."""
    return frozenset(part.replace(" ", "") for part in name.split(":"))


def _factor_names(spec: Any, term: FixedTerm) -> list[str]:
    """The factors of a term in the formula's order (patsy's names)."""
    (found,) = [t for t in spec.terms if t.name() == term.name]
    return [factor.name() for factor in found.factors]


# -- the reference grid -------------------------------------------------------


def _grid_factors(model: Any, spec: Any) -> list[_GridFactor]:
    """The categorical factors of the fixed part with their data column and levels."""
    columns = {str(c): c for c in model.data.frame.columns}
    factors = []
    for factor, info in spec.factor_infos.items():
        if info.type != "categorical":
            continue
        used = sorted(names_in_code(factor.code) & set(columns))
        if len(used) != 1:
            raise FormulaError(
                f"least-squares means need each factor to be one column of the data; "
                f"{factor.name()!r} uses {len(used)} ({', '.join(used) or 'none'})"
            )
        factors.append(_GridFactor(factor.name(), columns[used[0]], tuple(info.categories)))
    return factors


def _numeric_columns(model: Any, spec: Any) -> list[Any]:
    columns = {str(c): c for c in model.data.frame.columns}
    used: set[str] = set()
    for factor, info in spec.factor_infos.items():
        if info.type == "numerical":
            used |= names_in_code(factor.code) & set(columns)
    return [columns[name] for name in sorted(used)]


def _reference_grid(
    model: Any, spec: Any, factors: list[_GridFactor]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every combination of the factor levels (first factor fastest), covariates at their means.

    Returns the grid and the level codes of its rows (one column per factor).
    """
    sizes = [len(f.levels) for f in factors]
    n_rows = int(np.prod(sizes)) if sizes else 1
    if n_rows > _MAX_GRID:
        raise ValueError(
            f"the reference grid of least-squares means would have {n_rows} rows "
            f"(the factors {', '.join(f.name for f in factors)} crossed)"
        )
    codes = np.zeros((n_rows, len(factors)), dtype=int)
    stride = 1
    for j, size in enumerate(sizes):
        codes[:, j] = (np.arange(n_rows) // stride) % size
        stride *= size
    frame = model.data.frame
    columns: dict[Any, Any] = {}
    for j, factor in enumerate(factors):
        if factor.column in columns:
            raise FormulaError(
                f"least-squares means need each column coded once; {factor.column!r} "
                "is used by two factors"
            )
        columns[factor.column] = np.asarray(factor.levels, dtype=object)[codes[:, j]]
    for name in _numeric_columns(model, spec):
        if name in columns:
            raise FormulaError(
                f"least-squares means cannot hold {name!r} at its mean: it is also a factor"
            )
        columns[name] = np.full(n_rows, float(np.mean(frame[name].to_numpy(dtype=float))))
    return pd.DataFrame(columns, index=pd.RangeIndex(n_rows)), codes


def _design(spec: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """All columns of the fixed-part design (aliased ones included) for ``rows``."""
    (design,) = patsy.build_design_matrices([spec], rows, return_type="dataframe")
    return design


def _term_means(
    term_factors: list[str], factors: list[_GridFactor], codes: np.ndarray, design: pd.DataFrame
) -> tuple[list[str], pd.DataFrame]:
    """One averaged design row per level (cell) of a factor term."""
    position = {f.name: j for j, f in enumerate(factors)}
    order = [position[name] for name in term_factors]
    sizes = [len(factors[j].levels) for j in order]
    cell = np.zeros(len(codes), dtype=int)
    stride = 1
    for j, size in zip(order, sizes):
        cell += codes[:, j] * stride
        stride *= size
    n_cells = stride
    indicator = np.zeros((n_cells, len(codes)))
    indicator[cell, np.arange(len(codes))] = 1.0
    indicator /= indicator.sum(axis=1, keepdims=True)
    cells = np.arange(n_cells)
    labels = []
    for k in cells:
        parts, rest = [], k
        for j, size in zip(order, sizes):
            parts.append(str(factors[j].levels[rest % size]))
            rest //= size
        labels.append(":".join(parts))
    return labels, pd.DataFrame(indicator @ design.to_numpy(), labels, design.columns)


def _pairs(labels: list[str], means: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Differences of all pairs of rows (first minus second, R's ``combn`` order)."""
    pairs = list(combinations(range(len(labels)), 2))
    values = means.to_numpy()
    rows = np.array([values[i] - values[j] for i, j in pairs]).reshape(len(pairs), values.shape[1])
    names = [f"{labels[i]} - {labels[j]}" for i, j in pairs]
    return names, pd.DataFrame(rows, names, means.columns)


# -- estimability ---------------------------------------------------------------


def _null_space(model: Any, spec: Any) -> np.ndarray | None:
    """Basis of the null space of the full model matrix (None when it has full rank)."""
    if not getattr(model, "dropped_columns", None):
        return None
    full = _design(spec, model.data.frame).to_numpy(dtype=float)
    _, singular, vt = np.linalg.svd(full, full_matrices=False)
    rank = int(np.sum(singular > _NULLSPACE_TOL * singular[0])) if singular.size else 0
    return vt[rank:].T


def _estimable(rows: np.ndarray, null_space: np.ndarray | None) -> np.ndarray:
    """Whether each row (over all design columns) is orthogonal to the null space."""
    if null_space is None or null_space.shape[1] == 0:
        return np.ones(len(rows), dtype=bool)
    return np.all(np.abs(rows @ null_space) < _ESTIMABLE_TOL, axis=1)
