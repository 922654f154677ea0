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

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from .._parallel import Progress
from ..graphics.influence import plot_influence
from ..random_effects import term_for_group, varcorr_labels
from .predict import fitted_keyword

__all__ = ["InfluenceResult", "influence"]

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
        m_inv = sla.cho_solve(sla.cho_factor(M, lower=True), np.eye(A.shape[1]))
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
    p_solve_vx = np.linalg.solve(p_ii, vx)
    change = marg.cov @ (p_solve_vx.T @ marg.vinv_e[rows])  # beta - beta_(I)
    cooks = float(change @ marg.info @ change) / p
    deleted_info = marg.info - vx.T @ np.linalg.solve(vinv_ii, vx)  # X_(I)' V_(I)^-1 X_(I)
    mdffits = float(change @ deleted_info @ change) / p
    extra = vx.T @ p_solve_vx @ marg.cov  # C^-1 C_(I) - I
    covtrace = abs(float(np.trace(extra)))
    covratio = float(np.linalg.det(np.eye(p) + extra))
    overall = 1.0 - marg.sigma2 * np.diag(p_ii) / marg.w[rows]
    fixef = marg.h_fixef[rows]
    ranef_uc = np.asarray(marg.A[rows].multiply(marg.A[rows]).sum(axis=1)).ravel()
    leverages = [overall.mean(), fixef.mean(), (overall - fixef).mean(), ranef_uc.mean()]
    return np.array([cooks, mdffits, covtrace, covratio, *leverages]), change


def influence(
    res: Any, group: str | None = None, method: str = "one-step", progress: bool | None = None
) -> InfluenceResult:
    """Influence of each group on the fixed effects (HLMdiag's ``hlm_influence``).

    Parameters
    ----------
    res : LmerResults
    group : str, optional
        The grouping factor whose levels are deleted one at a time (a key of
        ``res.ngroups``); default the first random term's.
    method : {"one-step", "full"}
        Variance parameters held at the estimates (closed form, HLMdiag's
        default ``approx = TRUE``), or a full refit without each group
        (``approx = FALSE``; also gives the relative variance changes).
    progress : bool or None
        Progress bar over the groups (None: the package setting, shown for
        long runs).

    Returns
    -------
    InfluenceResult
        ``frame`` has one row per level of the factor.

    Raises
    ------
    KeyError
        For an unknown grouping factor.
    ValueError
        For an unknown method.
    """
    if method not in ("one-step", "full"):
        raise ValueError(f"method must be 'one-step' or 'full', got {method!r}")
    term = term_for_group(res.model.random_terms, group)
    levels = pd.Index(term.levels, name=term.group)
    codes = np.asarray(term.codes)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(levels) + 1))
    members = [order[bounds[g] : bounds[g + 1]] for g in range(len(levels))]
    names = [str(name) for name in res.model.exog_names]
    marg = _Marginal.from_results(res)
    rows_out, changes = [], []
    with Progress(len(levels), f"influence of each {term.group}", "group", progress) as bar:
        for rows in members:
            values, change = _group_measures(marg, rows)
            rows_out.append(values)
            changes.append(change)
            bar.update()
    frame = pd.DataFrame(rows_out, index=levels, columns=ONE_STEP_COLUMNS)
    frame.insert(0, "n_obs", [len(rows) for rows in members])
    beta_change = pd.DataFrame(changes, index=levels, columns=names)
    if method == "full":
        frame, beta_change = _full_refits(res, levels, members, frame, progress)
    return InfluenceResult(frame, beta_change, term.group, method)


def _full_refits(
    res: Any,
    levels: pd.Index,
    members: list[np.ndarray],
    one_step: pd.DataFrame,
    progress: bool | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HLMdiag's ``case_delete``: refit without each group, compare the fits."""
    model = res.model
    frame = model.data.frame
    n = frame.shape[0]
    beta = np.asarray(res.params, dtype=float)
    cov = np.asarray(res.cov_params(), dtype=float)
    cov_inv = np.linalg.inv(cov)
    p = int(np.linalg.matrix_rank(np.asarray(model.exog, dtype=float)))
    components = res.varcorr["vcov"].to_numpy(dtype=float)
    comp_names = varcorr_labels(res.varcorr, model.random_terms, variances=True)
    rows_out, changes = [], []
    desc = f"influence: refits without each {levels.name}"
    with Progress(len(levels), desc, "refit", progress) as bar:
        for rows in members:
            keep = np.ones(n, dtype=bool)
            keep[rows] = False
            # the fitted rows already: no subset= to apply again
            kwargs = {"reml": res.reml, "start_theta": np.asarray(res.theta), "subset": None}
            for name in ("weights", "offset"):
                values = fitted_keyword(model, name)  # offset() terms: from the formula
                if values is not None:
                    kwargs[name] = values[keep]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a refit's warnings belong to the refit
                refit = res.update(data=frame.loc[keep], **kwargs)
            change = beta - np.asarray(refit.params, dtype=float)
            cov_del = np.asarray(refit.cov_params(), dtype=float)
            rvc = refit.varcorr["vcov"].to_numpy(dtype=float) / components - 1.0
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
    beta_change = pd.DataFrame(changes, index=levels, columns=[str(c) for c in model.exog_names])
    return out, beta_change


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
        """
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
