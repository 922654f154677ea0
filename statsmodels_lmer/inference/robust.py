"""Cluster-robust (sandwich) covariance of the fixed effects, as R's clubSandwich.

With clusters ``j`` (every grouping factor of the model nested in them), the
fitted model's marginal covariance is block diagonal: ``sigma^2 V_j`` with
``V_j = Z_j Lambda Lambda' Z_j' + I``. With ``W_j = V_j^-1``, the bread
``M = (sum_j X_j' W_j X_j)^-1`` (lme4's ``vcov / sigma^2``) and the marginal
residuals ``e_j = y_j - X_j beta``:

``V_CR = M [sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j] M``

with ``A_j`` the type's adjustment: ``I`` (CR0),
``sqrt(J (N - 1) / ((J - 1)(N - p))) I`` (CR1, Stata's small-sample factor, as
Cameron and Miller name it and statsmodels' OLS uses it; clubSandwich calls it
CR1S, also accepted here), ``sqrt(J / (J - 1)) I`` (CR1J, clubSandwich's CR1) or
Bell and McCaffrey's bias-reduced linearization (CR2) with the fitted model
as working covariance: ``A_j = F_j' G_j^-1/2 F_j``, ``F_j' F_j = V_j``,
``G_j = F_j (V_j - X_j M X_j') F_j'`` (inverse root over eigenvalues above
1e-12). These are clubSandwich's ``vcovCR`` defaults for ``lmerMod`` fits.

Tests use clubSandwich's small-sample approximations: for one contrast a t
statistic with Satterthwaite df, matching the first two moments of
``c V_CR c'`` under the working model; for several, the Hotelling T^2
approximation "HTZ" (Tipton and Pustejovsky 2015). Both need, per cluster,
``S_j = E_j V_j E_j'`` and ``T_j = E_j X_j`` with ``E_j = M X_j' W_j A_j``;
the J x J matrices of the method are never formed (their traces and
Frobenius products reduce to sums over clusters of p x p pieces), so the
cost after the per-cluster factorizations is ``O(J p^3)``.

The per-cluster work factors ``n_j x n_j`` matrices: very large clusters
(thousands of rows) are slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import stats

from ..distributed.dask_fit import refuse_on_cluster
from ..exceptions import DataError
from ..random_effects import scaled_z
from ..terms import grouping_codes
from .contrast_results import f_pvalue
from .satterthwaite import ContrastTest

__all__ = [
    "COV_TYPES",
    "ROBUST_TYPES",
    "ClusterRobust",
    "cluster_codes",
    "cluster_robust",
    "robust_from_options",
]

ROBUST_TYPES = ("CR0", "CR1", "CR1J", "CR2")
"""Cluster-robust types: CR1 is Stata's factor (clubSandwich's CR1S), CR1J is ``J / (J - 1)``."""

_ALIASES = {"CR1S": "CR1"}
"""The cluster-robust covariance types (clubSandwich's names)."""

_EIGEN_TOL = 1e-12


@dataclass
class ClusterRobust:
    """A cluster-robust covariance of the fixed effects and its tests.

    Attributes
    ----------
    type : str
        One of :data:`ROBUST_TYPES`.
    cluster_name : str
        The clustering variable's name (``"groups"`` for an unnamed array).
    n_clusters : int
        Number of clusters ``J``.
    cov : ndarray, shape (p, p)
        ``V_CR``.
    beta : ndarray, shape (p,)
        The fixed effects.
    bread_root : ndarray, shape (p, p)
        ``L`` with ``L L' = M``.
    S : ndarray, shape (J, p, p)
        ``E_j V_j E_j'`` per cluster.
    T : ndarray, shape (J, p, p)
        ``E_j X_j`` per cluster.
    """

    type: str
    cluster_name: str
    n_clusters: int
    cov: np.ndarray
    beta: np.ndarray
    bread_root: np.ndarray
    S: np.ndarray
    T: np.ndarray

    @property
    def description(self) -> str:
        """One line for summaries: type, cluster variable and count."""
        return f"cluster-robust {self.type} by {self.cluster_name} ({self.n_clusters} clusters)"

    def df_1d(self, contrast: np.ndarray) -> float:
        """Satterthwaite df of one contrast (clubSandwich's ``coef_test``)."""
        return self._htz_df(np.atleast_2d(np.asarray(contrast, dtype=float)))

    def coefficient_df(self) -> np.ndarray:
        """Satterthwaite df of each coefficient."""
        return np.array([self.df_1d(row) for row in np.eye(len(self.beta))])

    def test(self, L: np.ndarray, rhs: Any = 0.0) -> ContrastTest:
        """t test (one row, Satterthwaite df) or HTZ F test of ``L beta = rhs``."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],))
        estimate = L @ self.beta
        cov = L @ self.cov @ L.T
        diff = estimate - rhs
        q = L.shape[0]
        nu = self._htz_df(L)
        if q == 1:
            t = float(diff[0] / np.sqrt(cov[0, 0]))
            pvalue = float(2 * stats.t.sf(abs(t), nu))
            return ContrastTest(estimate, cov, t, 1, nu, pvalue, np.nan, True)
        wald = float(diff @ _solve_psd(cov, diff))
        delta = max((nu - q + 1) / nu, 0.0)
        fvalue = delta * wald / q
        den_df = nu - q + 1
        pvalue = f_pvalue(fvalue, q, den_df) if den_df > 0 else np.nan
        return ContrastTest(estimate, cov, fvalue, q, den_df, pvalue, np.nan)

    def _htz_df(self, C: np.ndarray) -> float:
        """HTZ's ``nu`` for the rows of C (Satterthwaite's df for one row)."""
        q = C.shape[0]
        # rows on a common scale first (nu does not depend on it), so that the
        # eigenvalue cut of the inverse root sees Omega's shape, not the units
        C = C / np.sqrt(np.maximum(np.diag(self.omega(C)), np.finfo(float).tiny))[:, None]
        C = _inverse_root(self.omega(C)) @ C
        D, H, N = self._moments(C)
        HH = np.einsum("jsp,jtp->jst", H, H)  # h_js . h_jt
        Dd = np.einsum("jss->js", D)
        HHd = np.einsum("jss->js", HH)
        total = 0.0
        for s in range(q):
            for t in range(q):
                total += (
                    np.sum(D[:, s, t] * D[:, t, s])
                    - 2 * np.sum(D[:, s, t] * HH[:, s, t])
                    + np.trace(N[t, s] @ N[t, s])
                    + np.sum(Dd[:, s] * Dd[:, t])
                    - np.sum(Dd[:, s] * HHd[:, t])
                    - np.sum(Dd[:, t] * HHd[:, s])
                    + np.trace(N[s, t] @ N[t, s])
                )
        return float(q * (q + 1) / total) if total > 0 else np.inf

    def _moments(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``D_j = C S_j C'``, ``H_j = C T_j L`` and ``N_ab = sum_j h_ja h_jb'``.

        Returned as D (J, q, q), H (J, q, p) and N (q, q, p, p); the trace
        part of Omega, ``sum_j H_j H_j'``, is ``N``'s traces.
        """
        D = np.einsum("sa,jab,tb->jst", C, self.S, C)
        H = np.einsum("sa,jab,bc->jsc", C, self.T, self.bread_root)
        N = np.einsum("jap,jbr->abpr", H, H)
        return D, H, N

    def omega(self, C: np.ndarray) -> np.ndarray:
        """Expected ``C V_CR C'`` under the working model (HTZ's Omega)."""
        D, H, _ = self._moments(np.atleast_2d(C))
        return D.sum(axis=0) - np.einsum("jsp,jtp->st", H, H)


def _solve_psd(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(matrix, vector)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the hypothesis' robust covariance is singular: its rows are linearly dependent"
        ) from None


def _inverse_root(matrix: np.ndarray) -> np.ndarray:
    """Symmetric inverse square root; eigenvalues at or below 1e-12 of the largest give 0.

    Relative: Omega's scale is that of the coefficients' units (population in
    persons: 1e-14), and an absolute cut dropped the whole contrast (df inf).
    """
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    keep = values > _EIGEN_TOL * max(float(values.max(initial=0.0)), 0.0)
    scaled = vectors[:, keep] / np.sqrt(values[keep])
    return scaled @ vectors[:, keep].T


def cluster_codes(model: Any, groups: Any) -> tuple[np.ndarray, str]:
    """Cluster codes for the fitted rows and the clusters' name.

    ``groups`` is a column of the fitted data (by name), one value per fitted
    row, or None for the grouping factor with the fewest levels (clubSandwich's
    default).
    """
    frame = model.data.frame
    if groups is None:
        term = min(model.random_terms, key=lambda t: t.n_levels)
        return term.codes, term.group
    if isinstance(groups, str):
        if groups not in frame.columns:
            raise KeyError(f"cluster variable {groups!r} is not a column of the fitted data")
        if frame[groups].isna().any():
            raise DataError(f"cluster variable {groups!r} has missing values")
        codes, _ = grouping_codes(frame, (groups,))
        return codes, groups
    values = pd.Series(np.asarray(groups).ravel() if not isinstance(groups, pd.Series) else groups)
    if len(values) != len(frame):
        raise DataError(
            f"groups must have one value per fitted row ({len(frame)}), got {len(values)}"
        )
    if values.isna().any():
        raise DataError("groups has missing values")
    codes, _ = pd.factorize(values.to_numpy(), sort=True)
    name = values.name if isinstance(values.name, str) else "groups"
    return codes.astype(np.int64), name


def _check_nested(model: Any, codes: np.ndarray, name: str) -> None:
    n_clusters = int(codes.max()) + 1
    for term in model.random_terms:
        pairs = np.unique(term.codes * n_clusters + codes)
        spread = np.bincount(pairs // n_clusters, minlength=term.n_levels)
        if np.any(spread > 1):
            level = term.levels[int(np.argmax(spread > 1))]
            raise ValueError(
                f"random effects of {term.group!r} are not nested in the clusters "
                f"{name!r} (level {str(level)!r} occurs in {int(spread.max())} clusters): "
                "a cluster-robust covariance needs every grouping factor nested in the "
                "clusters, as clubSandwich requires; cluster by a coarser variable"
            )


def cluster_robust(res: Any, groups: Any = None, type: str = "CR2") -> ClusterRobust:
    """The cluster-robust covariance of a fit's fixed effects (clubSandwich's ``vcovCR``).

    Parameters
    ----------
    res : LmerResults
        A fitted model without prior weights.
    groups : str, array_like or None
        Cluster variable: a column of the fitted data, one value per fitted
        row, or None for the grouping factor with the fewest levels.
    type : {"CR2", "CR1", "CR1J", "CR0"}
        The adjustment (see the module notes).

    Returns
    -------
    ClusterRobust
    """
    kind = _ALIASES.get(str(type).upper(), str(type).upper())
    if kind not in ROBUST_TYPES:
        raise ValueError(f"type must be one of {', '.join(ROBUST_TYPES)}; got {type!r}")
    model = res.model
    refuse_on_cluster(model, "cluster-robust covariances")
    if model.weights is not None:
        raise ValueError(
            "cluster-robust covariances are not available for models with prior weights "
            "(clubSandwich refuses them too)"
        )
    codes, name = cluster_codes(model, groups)
    n_clusters = int(codes.max()) + 1
    if n_clusters < 2:
        raise ValueError("a cluster-robust covariance needs at least two clusters")
    _check_nested(model, codes, name)
    X = np.asarray(model.exog, dtype=float)
    y = np.asarray(model.endog, dtype=float)
    if model.offset is not None:
        y = y - model.offset
    beta = np.asarray(res.params, dtype=float)
    bread = np.asarray(res.normalized_cov_params, dtype=float)
    n, p = X.shape
    scale = _scalar_adjustment(kind, n_clusters, n, p)
    zl = scaled_z(model.random_terms, np.asarray(res.theta), model.theta_slices)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_clusters))])
    contributions = np.empty((n_clusters, p))
    S = np.empty((n_clusters, p, p))
    T = np.empty((n_clusters, p, p))
    for j in range(n_clusters):
        rows = order[bounds[j] : bounds[j + 1]]
        E, V = _cluster_pieces(zl[rows], X[rows], bread, kind, scale)
        contributions[j] = E @ (y[rows] - X[rows] @ beta)
        S[j] = E @ V @ E.T
        T[j] = E @ X[rows]
    cov = contributions.T @ contributions
    root = np.linalg.cholesky(bread)
    return ClusterRobust(kind, name, n_clusters, cov, beta, root, S, T)


def _scalar_adjustment(kind: str, n_clusters: int, nobs: int, n_fixed: int) -> float:
    """``A_j = a I`` for CR0, CR1J and CR1 (CR2: 1, unused)."""
    if kind == "CR1J":
        return float(np.sqrt(n_clusters / (n_clusters - 1)))
    if kind == "CR1":
        return float(np.sqrt(n_clusters * (nobs - 1) / ((n_clusters - 1) * (nobs - n_fixed))))
    return 1.0


def _cluster_pieces(
    zl_rows: sp.csr_matrix, X: np.ndarray, bread: np.ndarray, kind: str, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """``E_j = M X_j' W_j A_j`` and ``V_j`` for one cluster."""
    used = np.unique(zl_rows.indices)
    Zj = zl_rows[:, used].toarray()
    V = Zj @ Zj.T + np.eye(len(X))
    chol = sla.cholesky(V, lower=True)
    WX = sla.cho_solve((chol, True), X)  # W_j X_j
    if kind != "CR2":
        return scale * (bread @ WX.T), V
    F = chol.T  # F' F = V
    G = F @ (V - X @ bread @ X.T) @ F.T
    A = F.T @ _inverse_root(G) @ F
    return bread @ WX.T @ A, V


COV_TYPES = ("nonrobust", "cluster", *ROBUST_TYPES, *_ALIASES)
"""``cov_type`` values of ``fit`` and ``get_robustcov_results``."""


def robust_from_options(res: Any, cov_type: str, options: dict[str, Any]) -> ClusterRobust | None:
    """Parse statsmodels' ``cov_type`` and keywords; None for ``"nonrobust"``.

    ``cov_type="cluster"`` takes ``groups`` and ``type`` (default ``"CR2"``,
    clubSandwich's default); ``cov_type="CR0"`` (or CR1, CR1J, CR2) is the
    same with that type.
    """
    if not isinstance(cov_type, str) or cov_type.upper() not in {c.upper() for c in COV_TYPES}:
        raise ValueError(f"cov_type must be one of {', '.join(COV_TYPES)}; got {cov_type!r}")
    options = dict(options or {})
    unknown = sorted(set(options) - {"groups", "type"})
    if unknown:
        raise TypeError(
            f"unknown cluster-robust option(s) {', '.join(map(repr, unknown))}; "
            "use groups= (the clusters) and type= (one of "
            f"{', '.join(ROBUST_TYPES)})"
        )
    if cov_type.lower() == "nonrobust":
        if options:
            raise TypeError("cov_type='nonrobust' takes no options")
        return None
    kind = options.get("type", "CR2") if cov_type.lower() == "cluster" else cov_type.upper()
    if cov_type.lower() != "cluster" and "type" in options:
        raise TypeError(f"cov_type={cov_type!r} already names the type; drop type=")
    return cluster_robust(res, options.get("groups"), kind)
