"""Influence of whole groups on the fixed effects (HLMdiag's case-deletion diagnostics).

Deleting the observations ``I`` of one level of a grouping factor changes the
fixed effects by ``beta_hat - beta_hat_(I)``. With the variance parameters
held at their estimates (``V = sigma^2 (W^-1 + Z Lambda Lambda' Z')`` fixed),
this change has a closed form (Christensen, Pearson and Johnson 1992; the
"one-step" measures of HLMdiag, Loy and Hofmann 2014). With ``C = vcov(beta)
= (X' V^-1 X)^-1``, ``P = V^-1 - V^-1 X C X' V^-1`` and ``e = y - X beta``::

    beta - beta_(I) = C (V^-1 X)_I' (P_II)^-1 (V^-1 e)_I
    Cook's distance   D_I = (beta - beta_(I))' C^-1 (beta - beta_(I)) / p
    MDFFITS           the same with C_(I)^-1 = X_(I)' V_(I)^-1 X_(I)
    COVRATIO          det(C_(I)) / det(C)
    COVTRACE          |tr(C^-1 C_(I)) - p|
    with C_(I) = C + C (V^-1 X)_I' (P_II)^-1 (V^-1 X)_I C.

Leverage is HLMdiag's (Demidenko and Stukel 2005; Nobre and Singer 2011):
``H1 = X C X' V^-1`` (fixed part), ``H2 = Z D Z' V^-1 (I - H1)`` (random part),
overall ``H1 + H2``, whose diagonal is ``1 - sigma^2 P_kk / w_k``; the
unconfounded random-effects leverage is ``diag(Z D Z') / sigma^2``. A group's
leverage is the mean over its observations.

``method="full"`` refits the model without each group instead (REML or ML as
the fit, starting from its theta) and compares the fixed effects and their
covariances of the refits (HLMdiag's ``case_delete``), adding the relative
variance change ``RVC = var_(I) / var - 1`` of each variance component.

Everything goes through Woodbury's identity ``V^-1 = (W - W A M^-1 A' W) /
sigma^2`` with ``A = Z Lambda`` and ``M = A'WA + I``: one dense q x q
inverse (``O(q^3)`` time, ``q^2`` memory, q = number of random effects), then
per group only its rows and the random effects they touch. No n x n matrix is
formed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp
from statsmodels.tools.sm_exceptions import ValueWarning

from .._parallel import Progress
from ..cached import cached_property
from ..exceptions import ignored_warnings, warn
from ..graphics.influence import plot_influence
from ..random_effects import term_for_group, varcorr_labels
from ..terms import carry_theta
from .predict import fitted_keyword
from .simulate import update_arguments

__all__ = ["OBSERVATION", "InfluenceResult", "influence"]

OBSERVATION = "observation"
"""The ``group`` that deletes each row in turn (lme4's ``influence(m)`` without groups)."""

PAIR_CHUNK = 4_000_000
"""Entry pairs per chunk in the per-row quadratic forms (a few arrays of this length)."""

UNDETERMINED = 1e-10
"""Below this share of the information left, a deletion leaves a fixed effect undetermined."""

ONE_STEP_COLUMNS = [
    "cooks_distance",
    "mdffits",
    "covtrace",
    "covratio",
    "leverage",
    "leverage_fixef",
    "leverage_ranef",
    "leverage_ranef_uc",
]


@dataclass(eq=False)
class _Marginal:
    """The fit's marginal quantities with ``V`` held at the estimates."""

    A: sp.csr_matrix  # Z Lambda, n x q
    w: np.ndarray  # prior weights
    sigma2: float
    m_inv: np.ndarray  # (A'WA + I)^-1, q x q
    vinv_x: np.ndarray  # V^-1 X, n x p
    vinv_e: np.ndarray  # V^-1 (y - X beta), n
    cov: np.ndarray  # C = (X' V^-1 X)^-1, p x p
    info: np.ndarray  # C^-1 = X' V^-1 X
    h_fixef: np.ndarray  # diag(X C X' V^-1), n

    @cached_property
    def cov_root(self) -> np.ndarray:
        """The lower Cholesky factor of ``C`` (shared by every group's check)."""
        return np.linalg.cholesky(self.cov)

    @classmethod
    def from_results(cls, res: Any) -> _Marginal:
        model = res.model
        X = np.asarray(model.exog, dtype=float)
        n = X.shape[0]
        w = np.ones(n) if model.weights is None else np.asarray(model.weights, dtype=float)
        Z = sp.hstack([term.z_matrix() for term in model.random_terms], format="csr")
        A = sp.csr_matrix(Z @ sp.csr_matrix(res.Lambda))
        wa = sp.csr_matrix(A.multiply(w[:, None]))
        M = np.asarray((A.T @ wa).todense()) + np.eye(A.shape[1])
        m_inv = _spd_inverse(M)
        sigma2 = float(res.scale)

        def vinv(values: np.ndarray) -> np.ndarray:
            weighted = values * (w if values.ndim == 1 else w[:, None])
            return (weighted - wa @ (m_inv @ (A.T @ weighted))) / sigma2

        y = np.asarray(model.endog, dtype=float)
        if model.offset is not None:
            y = y - model.offset
        vinv_x = vinv(X)
        info = X.T @ vinv_x
        info = 0.5 * (info + info.T)
        cov = np.linalg.inv(info)
        h_fixef = np.einsum("ij,ij->i", X @ cov, vinv_x)
        vinv_e = vinv(y - X @ np.asarray(res.params, dtype=float))
        return cls(A, w, sigma2, m_inv, vinv_x, vinv_e, cov, info, h_fixef)

    def vinv_block(self, rows: np.ndarray) -> np.ndarray:
        """``(V^-1)_II`` for the rows ``I`` (only the random effects they touch)."""
        a_rows = self.A[rows]
        touched = np.unique(a_rows.indices)
        a_block = a_rows[:, touched].toarray() * self.w[rows, None]
        inner = a_block @ self.m_inv[np.ix_(touched, touched)] @ a_block.T
        return (np.diag(self.w[rows]) - inner) / self.sigma2


def _group_measures(marg: _Marginal, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-step measures (Cook, MDFFITS, COVTRACE, COVRATIO, leverages) and the beta change."""
    p = marg.cov.shape[0]
    vinv_ii = marg.vinv_block(rows)
    vx = marg.vinv_x[rows]  # (V^-1 X)_I
    p_ii = vinv_ii - vx @ marg.cov @ vx.T
    deleted_info = marg.info - vx.T @ np.linalg.solve(vinv_ii, vx)  # X_(I)' V_(I)^-1 X_(I)
    overall = 1.0 - marg.sigma2 * np.diag(p_ii) / marg.w[rows]
    fixef = marg.h_fixef[rows]
    ranef_uc = np.asarray(marg.A[rows].multiply(marg.A[rows]).sum(axis=1)).ravel()
    leverages = [overall.mean(), fixef.mean(), (overall - fixef).mean(), ranef_uc.mean()]
    if _leaves_undetermined(marg.cov_root, deleted_info):
        return np.array([np.nan] * 4 + leverages), np.full(p, np.nan)
    p_solve_vx = np.linalg.solve(p_ii, vx)
    change = marg.cov @ (p_solve_vx.T @ marg.vinv_e[rows])  # beta - beta_(I)
    cooks = float(change @ marg.info @ change) / p
    mdffits = float(change @ deleted_info @ change) / p
    extra = vx.T @ p_solve_vx @ marg.cov  # C^-1 C_(I) - I
    covtrace = abs(float(np.trace(extra)))
    covratio = float(np.linalg.det(np.eye(p) + extra))
    return np.array([cooks, mdffits, covtrace, covratio, *leverages]), change


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix from its Cholesky factor
    (LAPACK's ``potri``: a third of the work of solving against the identity)."""
    factor, _ = sla.cho_factor(matrix, lower=True)
    inverse, info = sla.lapack.dpotri(factor, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotri failed with info={info}")
    return np.tril(inverse) + np.tril(inverse, -1).T


def _leaves_undetermined(cov_root: np.ndarray, deleted_info: np.ndarray) -> bool:
    """Whether the fixed effects are not all estimable without the deleted rows.

    With ``C = R R'`` (``cov_root``), the eigenvalues of
    ``R' X_(I)' V_(I)^-1 X_(I) R`` are the shares of the information that
    remain, between 0 and 1; one near 0 means a direction of beta that only
    the deleted rows determine.
    """
    remaining = np.linalg.eigvalsh(cov_root.T @ deleted_info @ cov_root)
    return bool(remaining.min() < UNDETERMINED)


def influence(
    res: Any, group: str | None = None, method: str = "one-step", progress: bool | None = None
) -> InfluenceResult:
    """Influence of each group, or each observation, on the fixed effects.

    HLMdiag's ``hlm_influence``; with ``group="observation"`` every row is
    deleted in turn, as lme4's ``influence(m)`` (no ``groups``) and HLMdiag's
    ``level = 1``.

    Parameters
    ----------
    res : LmerResults
    group : str, optional
        The grouping factor whose levels are deleted one at a time (a key of
        ``res.ngroups``); default the first random term's. ``"observation"``
        deletes each fitted row instead (unless a grouping factor has that
        name).
    method : {"one-step", "full"}
        Variance parameters held at the estimates (closed form, HLMdiag's
        default ``approx = TRUE``), or a full refit without each group
        (``approx = FALSE``, lme4's ``influence``; also gives the relative
        variance changes). With ``group="observation"`` the full method
        refits the model once per row.
    progress : bool or None
        Progress bar over the groups (None: the package setting, shown for
        long runs).

    Returns
    -------
    InfluenceResult
        ``frame`` has one row per level of the factor, or per fitted row
        (indexed by the data's row labels) for ``group="observation"``.

    Raises
    ------
    KeyError
        For an unknown grouping factor.
    ValueError
        For an unknown method.
    """
    if method not in ("one-step", "full"):
        raise ValueError(f"method must be 'one-step' or 'full', got {method!r}")
    res.model.require_data("influence diagnostics")
    by_row = _deletes_observations(res.model.random_terms, group)
    if by_row:
        index = pd.Index(res.model.data.row_labels, name=OBSERVATION)
        members = [np.array([row]) for row in range(len(index))]
    else:
        index, members = _group_members(res.model.random_terms, group)  # KeyError first
    marg = _Marginal.from_results(res)
    if by_row:
        values, changes = _observation_measures(marg)
    else:
        values, changes = _each_group_measures(marg, members, index.name, progress)
    frame = pd.DataFrame(values, index=index, columns=ONE_STEP_COLUMNS)
    frame.insert(0, "n_obs", [len(rows) for rows in members])
    names = [str(name) for name in res.model.exog_names]
    beta_change = pd.DataFrame(changes, index=index, columns=names)
    if method == "full":
        frame, beta_change = _full_refits(res, index, members, frame, progress)
    else:
        _warn_undetermined(frame["cooks_distance"], refits=False)
    return InfluenceResult(frame, beta_change, str(index.name), method)


def _deletes_observations(terms: Any, group: str | None) -> bool:
    """Whether ``group`` asks for row deletion (a factor of that name wins)."""
    return group == OBSERVATION and all(term.group != OBSERVATION for term in terms)


def _group_members(terms: Any, group: str | None) -> tuple[pd.Index, list[np.ndarray]]:
    """The levels of ``group`` and the row positions of each."""
    try:
        term = term_for_group(terms, group)
    except KeyError as err:
        raise KeyError(f"{err.args[0]}; group={OBSERVATION!r} deletes each row") from None
    levels = pd.Index(term.levels, name=term.group)
    codes = np.asarray(term.codes)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(levels) + 1))
    return levels, [order[bounds[g] : bounds[g + 1]] for g in range(len(levels))]


def _each_group_measures(
    marg: _Marginal, members: list[np.ndarray], group: str, progress: bool | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One-step measures and beta changes of every group, one group at a time."""
    values, changes = [], []
    with Progress(len(members), f"influence of each {group}", "group", progress) as bar:
        for rows in members:
            measures, change = _group_measures(marg, rows)
            values.append(measures)
            changes.append(change)
            bar.update()
    return values, changes


def _observation_measures(marg: _Marginal) -> tuple[np.ndarray, np.ndarray]:
    """The one-step measures of deleting each single row, all rows at once.

    The group formulas with ``I = {k}``: every block is a scalar, so with
    ``c_k = (V^-1 X)_k C (V^-1 X)_k'`` and ``P_kk = (V^-1)_kk - c_k`` the beta
    change is ``C (V^-1 X)_k' (V^-1 e)_k / P_kk``, Cook's distance
    ``((V^-1 e)_k / P_kk)^2 c_k / p``, COVRATIO ``1 + c_k / P_kk``. A row
    whose deletion leaves a fixed effect undetermined (``P_kk = 0``, leverage
    1) gets NaN measures.
    """
    p = marg.cov.shape[0]
    vinv_diag = (marg.w - marg.w**2 * _row_quadratic_forms(marg.A, marg.m_inv)) / marg.sigma2
    vx_cov = marg.vinv_x @ marg.cov
    c = np.einsum("ij,ij->i", vx_cov, marg.vinv_x)
    p_diag = vinv_diag - c
    defined = p_diag > UNDETERMINED * vinv_diag  # the share of information left
    safe_p = np.where(defined, p_diag, 1.0)
    ratio = np.where(defined, marg.vinv_e / safe_p, np.nan)
    change = vx_cov * ratio[:, None]
    cooks = ratio**2 * c / p
    mdffits = ratio**2 * (c - c**2 / vinv_diag) / p
    cov_change = np.where(defined, c / safe_p, np.nan)  # tr(C^-1 C_(k)) - p
    overall = 1.0 - marg.sigma2 * p_diag / marg.w
    ranef_uc = np.asarray(marg.A.multiply(marg.A).sum(axis=1)).ravel()
    values = np.column_stack(
        [
            cooks,
            mdffits,
            np.abs(cov_change),
            1.0 + cov_change,
            overall,
            marg.h_fixef,
            overall - marg.h_fixef,
            ranef_uc,
        ]
    )
    return values, change


def _row_quadratic_forms(A: sp.csr_matrix, middle: np.ndarray) -> np.ndarray:
    """``a_k M a_k'`` for every row ``a_k`` of ``A``, from the pairs of each row's entries.

    Rows are taken in chunks of at most about ``PAIR_CHUNK`` pairs.
    """
    A = sp.csr_matrix(A)
    n = A.shape[0]
    counts = np.diff(A.indptr)
    per_row = max(1, int(counts.max(initial=0)) ** 2)
    step = max(1, PAIR_CHUNK // per_row)
    out = np.zeros(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        pairs = counts[start:stop] ** 2
        rows = np.repeat(np.arange(start, stop), pairs)  # the row of each pair
        if rows.size == 0:
            continue
        within = np.arange(rows.size) - np.repeat(np.cumsum(pairs) - pairs, pairs)
        size = counts[rows]
        first = A.indptr[rows] + within // size
        second = A.indptr[rows] + within % size
        values = A.data[first] * A.data[second] * middle[A.indices[first], A.indices[second]]
        out[start:stop] = np.bincount(rows - start, weights=values, minlength=stop - start)
    return out


def _full_refits(
    res: Any,
    levels: pd.Index,
    members: list[np.ndarray],
    one_step: pd.DataFrame,
    progress: bool | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HLMdiag's ``case_delete``: refit without each group, compare the fits.

    A deletion whose refit leaves a fixed effect undetermined (its column is
    dropped as collinear) or cannot be fitted gets NaN measures.
    """
    model = res.model
    n = model.data.frame.shape[0]
    names = [str(c) for c in model.exog_names]
    beta = np.asarray(res.params, dtype=float)
    cov = np.asarray(res.cov_params(), dtype=float)
    cov_inv = np.linalg.inv(cov)
    p = int(np.linalg.matrix_rank(np.asarray(model.exog, dtype=float)))
    components = _component_variances(res.varcorr)
    comp_names = varcorr_labels(res.varcorr, model.random_terms, variances=True)
    rows_out, changes = [], []
    desc = f"influence: refits without each {levels.name}"
    with Progress(len(levels), desc, "refit", progress) as bar:
        for rows in members:
            keep = np.ones(n, dtype=bool)
            keep[rows] = False
            refit = _refit_without(res, keep)
            if refit is None or [str(c) for c in refit.model.exog_names] != names:
                rows_out.append([np.nan] * (4 + len(components)))
                changes.append(np.full(len(names), np.nan))
                bar.update()
                continue
            change = beta - np.asarray(refit.params, dtype=float)
            cov_del = np.asarray(refit.cov_params(), dtype=float)
            rvc = _component_variances(refit.varcorr).reindex(components.index) / components - 1
            measures = [
                float(change @ cov_inv @ change) / p,
                float(change @ np.linalg.solve(cov_del, change)) / p,
                abs(float(np.trace(cov_inv @ cov_del)) - cov.shape[0]),
                float(np.linalg.det(cov_del) / np.linalg.det(cov)),
            ]
            rows_out.append(measures + list(rvc))
            changes.append(change)
            bar.update()
    columns = ONE_STEP_COLUMNS[:4] + [f"rvc_{name}" for name in comp_names]
    out = pd.DataFrame(rows_out, index=levels, columns=columns)
    out.insert(0, "n_obs", one_step["n_obs"])
    for column in ONE_STEP_COLUMNS[4:]:
        out[column] = one_step[column]
    _warn_undetermined(out["cooks_distance"], refits=True)
    return out, pd.DataFrame(changes, index=levels, columns=names)


def _refit_without(res: Any, keep: np.ndarray) -> Any:
    """The model refitted on the rows ``keep`` from the fit's theta (None if it cannot be)."""
    model = res.model
    kwargs: dict[str, Any] = {"subset": None}  # the fitted rows already
    for name in ("weights", "offset"):
        values = fitted_keyword(model, name)  # offset() terms: from the formula
        if values is not None:
            kwargs[name] = values[keep]
    with ignored_warnings():  # a refit's warnings belong to the refit
        try:
            data, kwargs = update_arguments(model, model.data.frame.loc[keep], kwargs)
            reduced = type(model).from_formula(model.lmer_formula, data, **kwargs)
        except ValueError:  # e.g. a grouping factor left with one level
            return None
        # fewer rows can reorder the terms (lme4 orders them by number of levels)
        start = carry_theta(np.asarray(res.theta), model.random_terms, reduced.random_terms)
        return reduced.fit(reml=res.reml, start_theta=start)


def _component_variances(varcorr: pd.DataFrame) -> pd.Series:
    """The ``vcov`` column of ``varcorr`` keyed by (group, column, column)."""
    keys = pd.MultiIndex.from_frame(varcorr[["grp", "var1", "var2"]].astype(str))
    return pd.Series(varcorr["vcov"].to_numpy(dtype=float), index=keys)


def _warn_undetermined(cooks: pd.Series, refits: bool) -> None:
    """Warn when some deletions leave a fixed effect undetermined (NaN measures)."""
    missing = cooks.index[np.isnan(cooks.to_numpy(dtype=float))]
    if len(missing):
        listed = ", ".join(str(name) for name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        failed = " (or the refit failed)" if refits else ""
        warn(
            f"deleting {cooks.index.name} {listed}{more} leaves a fixed effect "
            f"undetermined{failed}; their influence measures are NaN",
            ValueWarning,
        )


@dataclass(eq=False)
class InfluenceResult:
    """Influence of each group on the fixed effects (HLMdiag's ``hlm_influence``).

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per level of ``group``: ``n_obs``, ``cooks_distance``,
        ``mdffits``, ``covtrace``, ``covratio``, ``leverage`` (overall),
        ``leverage_fixef``, ``leverage_ranef``, ``leverage_ranef_uc``; with
        ``method="full"`` also ``rvc_<component>`` (relative variance change
        of each variance component, ``sigma2`` for the residual).
    beta_change : pandas.DataFrame
        ``beta_hat - beta_hat_(I)`` per group (HLMdiag's ``beta_cdd``).
    group : str
        The grouping factor whose levels were deleted.
    method : str
        ``"one-step"`` or ``"full"``.
    """

    frame: pd.DataFrame
    beta_change: pd.DataFrame
    group: str
    method: str

    plot = plot_influence
    """Dot plots of the measures (:func:`statsmodels_lmer.graphics.plot_influence`)."""

    def cutoffs(self, column: str) -> tuple[float, float]:
        """Limits beyond which a group stands out (HLMdiag's "internal" cutoff).

        ``Q3 + 3 IQR`` of the measure's values above; below ``-inf``, except
        for COVRATIO and the relative variance changes (``rvc_*``), whose
        departures matter both ways (HLMdiag's ``dotplot_diag`` for them):
        ``Q1 - 3 IQR``.

        Raises
        ------
        KeyError
            When ``column`` is not one of the measures (listing them).
        """
        if not isinstance(column, str) or column not in self.frame.columns:
            raise KeyError(
                f"unknown measure {column!r}; the measures are {list(self.frame.columns)}"
            )
        values = self.frame[column].to_numpy(dtype=float)
        q1, q3 = np.quantile(values[np.isfinite(values)], [0.25, 0.75])
        two_sided = column == "covratio" or column.startswith("rvc_")
        lower = q1 - 3.0 * (q3 - q1) if two_sided else -np.inf
        return float(lower), float(q3 + 3.0 * (q3 - q1))

    def __repr__(self) -> str:
        top = self.frame["cooks_distance"].sort_values(ascending=False).head(3)
        listed = ", ".join(f"{name} ({value:.3g})" for name, value in top.items())
        return (
            f"<InfluenceResult: {len(self.frame)} levels of {self.group} ({self.method}); "
            f"largest Cook's distance: {listed}>"
        )
