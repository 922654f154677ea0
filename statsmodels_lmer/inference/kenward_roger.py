"""Kenward-Roger adjusted covariance and denominator df, as pbkrtest 0.5.2.

The marginal covariance of the response is linear in the variance parameters
``phi`` (the elements of each term's covariance ``Psi_t = sigma^2 T_t T_t'``,
lower triangle column by column, then the residual variance ``sigma^2``)::

    Sigma = Z D Z' + sigma^2 W^-1 = sum_i phi_i G_i,
    G_i = Z (I_l (x) E_ab) Z'  for element (a, b) of Psi_t,   G_res = W^-1,

with ``E_ab`` the symmetric unit matrix of the element. Kenward and Roger
(1997), as pbkrtest's ``vcovAdj`` computes them, with ``Phi = vcov(beta)``::

    P_i  = -X' Sigma^-1 G_i Sigma^-1 X
    Q_ij =  X' Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X
    K_ij =  tr(Sigma^-1 G_i Sigma^-1 G_j)
    I_ij =  K_ij - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j)
    W    =  2 I^-1 (pbkrtest's pseudo-inverse if min |eigenvalue| <= 1e-10, judged on
            D I D with a unit diagonal: pbkrtest judges I itself, in its units)
    U    =  sum_ij W_ij (Q_ij - P_i Phi P_j)
    Phi_A = Phi + 2 Phi U Phi.

For a contrast matrix ``L`` of rank ``q`` (pbkrtest's ``.KR_adjust`` and
``Lb_ddf``): ``Theta = L' (L Phi L')^-1 L``, ``u_i = Theta Phi P_i Phi``,
``A1 = sum_ij W_ij tr(u_i) tr(u_j)``, ``A2 = sum_ij W_ij tr(u_i u_j)`` and::

    B = (A1 + 6 A2) / (2q),  g = ((q+1) A1 - (q+4) A2) / ((q+2) A2),
    c1 = g / (3q + 2(1-g)),  c2 = (q-g) / (3q + 2(1-g)),  c3 = (q+2-g) / (3q + 2(1-g)),
    rho = ((1 - A2/q) / (1 - c2 B))^2 (1 + c1 B) / (q (1 - c3 B)),
    ddf = 4 + (q + 2) / (q rho - 1),
    F scaling = ddf (1 - A2/q) / (ddf - 2)   (1 when |ddf - 2| < 0.01),

and ``F = scaling * (L b - rhs)' (L Phi_A L')^-1 (L b - rhs) / q``. For one row
the scaling is exactly 1 and ``ddf = 2 / A2``; lmerTest then reports the t value
``(l'b - rhs) / sqrt(l' Phi_A l)``.

pbkrtest forms ``Sigma`` and the ``G_i`` as n x n matrices and inverts
``Sigma`` (O(n^3)). Here everything goes through Woodbury's identity::

    Sigma^-1 = (W - W Z Lambda M^-1 Lambda' Z' W) / sigma^2,   M = Lambda' Z'WZ Lambda + I,

so that with ``C = Z' Sigma^-1 Z`` (q x q) and ``B = Z' Sigma^-1 X`` (q x p):
``P_i = -B' E_i B``, ``Q_ij = B' E_i C E_j B``, ``K_ij = tr(E_i C E_j C)``; the
residual parameter's pieces use ``Sigma^-1 W^-1 = (I - W Z Lambda M^-1 Lambda' Z') / sigma^2``,
e.g. ``K_res,res = (n - q + ||M^-1||_F^2) / sigma^4``. No n x n or n x q matrix is
formed; with a single random term all q x q matrices are block diagonal and are
kept as per-level k x k blocks. Singular fits (Lambda not invertible) are fine.

Units: every ``phi_i`` is a covariance, so scaling the response by ``c``
scales all of them, ``Phi`` and ``Phi_A`` by ``c^2`` and leaves ``W I`` and the
df unchanged. The algebra runs in units of ``sigma^2`` (``phi / sigma^2``,
``Phi / sigma^2``): in the response's units ``sigma^4`` overflows for a
response about 1e76 and underflows about 1e-80, and pbkrtest's df there (19
instead of 17 from 1e55) came from ``I``'s round-off. ``information`` and
``varpar_cov`` are reported in the response's units.

Unlike pbkrtest, prior weights enter the residual covariance as ``W^-1``
(pbkrtest uses the identity whatever the weights, which disagrees with lme4's
``vcov``); without weights the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import stats

from .._parallel import Progress
from ..engine.blocks import model_blocks
from ..engine.cost import check_memory
from ..linalg import unit_diagonal_eigenvalues
from .contrast_results import f_pvalue

__all__ = ["KRTest", "KenwardRoger", "kr_ddf_and_scaling", "kr_pieces"]

_CONDITION_TOL = 1e-10  # pbkrtest: pseudo-inverse of the information below this

DENSE_Q_ARRAYS = 10
"""q x q arrays alive at the peak of Kenward-Roger with several random terms (measured:
``(1 | s/c)`` with 2,000 schools, q = 12,000, peaked at 11.0 GiB, 10 times 8 q^2 bytes)."""


@dataclass
class KRTest:
    """One Kenward-Roger test of ``L beta = rhs``.

    Attributes
    ----------
    estimate : ndarray, shape (r,)
        ``L beta`` (before subtracting rhs), one value per row of ``L``.
    cov : ndarray, shape (r, r)
        ``L Phi_A L'`` with ``Phi_A`` the adjusted covariance.
    statistic : float
        t value ``(l'beta - rhs) / sqrt(l' Phi_A l)`` when ``L`` has one row;
        otherwise the scaled F statistic as pbkrtest's ``KRmodcomp`` and
        lmerTest's ``contestMD(ddf = "Kenward-Roger")`` report it.
    num_df : int
        Numerator df ``q``, the rank of ``L``.
    den_df : float
        Kenward-Roger denominator df.
    scaling : float
        pbkrtest's F scaling (1.0 for one row, where it is exactly 1).
    pvalue : float
        Two-sided t p-value (one row) or upper-tail F p-value.
    f_unscaled : float
        The unscaled Wald F, ``(Lb - rhs)' (L Phi_A L')^-1 (Lb - rhs) / q``
        (``t**2`` for one row).
    mean_sq : float
        ``f_unscaled * sigma^2``: lmerTest's "Mean Sq" (Sum Sq = Mean Sq * NumDF).
    """

    estimate: np.ndarray
    cov: np.ndarray
    statistic: float
    num_df: int
    den_df: float
    scaling: float
    pvalue: float
    f_unscaled: float = np.nan
    mean_sq: float = np.nan

    @property
    def fvalue(self) -> float:
        """The (scaled) F statistic; ``t**2`` for a one-row contrast."""
        return self.statistic**2 if self.estimate.size == 1 else self.statistic


class KenwardRoger:
    """pbkrtest's Kenward-Roger machinery for one REML fit, using the model's structure.

    Parameters
    ----------
    res : LmerResults or LmerResultsWrapper
        A REML fit (lmerTest refuses Kenward-Roger for ML fits, and so do we).
    progress : bool or None
        Progress bar over the stages (None: the package setting, shown when
        they take more than a couple of seconds).

    Attributes
    ----------
    vcov : ndarray, shape (p, p)
        Unadjusted ``vcov(beta)`` (``Phi``).
    vcov_adjusted : ndarray, shape (p, p)
        pbkrtest's ``vcovAdj(model)`` (``Phi_A``).
    varpar_cov : ndarray, shape (m, m)
        ``W = 2 I^-1``, the asymptotic covariance of the variance parameters
        (each term's covariance elements, then sigma^2).
    varpar_names : list of str
        Names of those parameters.
    information : ndarray, shape (m, m)
        pbkrtest's ``IE2`` (``I`` in the module notes): twice the expected
        REML information of the variance parameters.

    Notes
    -----
    Cost, with ``n`` observations, ``q`` random effects (levels x columns over
    all terms), ``p`` fixed effects, ``k`` columns per term and ``m`` variance
    parameters (``sum k(k+1)/2 + 1``). Nothing of size n x n or n x q is formed.

    * Always: ``O(n k p)`` for the n x p products (``Sigma^-1 X`` through
      sparse ``Z``), ``O(m^2 q p^2)`` for the ``Q_ij``; each test ``O(m^2 p^3)``.
    * One random term (the common ``(x | subject)``): every q x q matrix is
      block diagonal with k x k blocks, so the rest costs ``O(n k^2 + q k^2)``
      time and ``O(q k + m q p)`` memory. n = 20000 with 2000 groups and a random slope
      takes about 10 ms.
    * Several terms (crossed or nested): dense ``M``, ``C = Z' Sigma^-1 Z`` and
      ``J`` (q x q): one Cholesky and a few triangular solves and products,
      ``O(q^3)`` time and about ten q x q arrays (``O(q^2)`` memory), plus
      ``O(m q^2 p)`` for ``C E_i B`` and ``O(q^2 k^2)`` for the traces ``K_ij``.
      q = 1000 takes about 0.3 s, q = 4000 several seconds.

    pbkrtest's n x n approach needs ``O(n^3)`` time and ``O(m n^2)`` memory.
    """

    def __init__(self, res: Any, progress: bool | None = None) -> None:
        res = getattr(res, "_results", res)
        if not res.reml:
            raise ValueError(
                "Kenward-Roger's method is only available for REML fits; refit with reml=True"
            )
        self.beta = np.asarray(res.params, dtype=float)
        self.sigma = float(res.sigma)
        s2 = np.float64(res.scale)  # sigma^2; numpy's float: no OverflowError
        self.vcov = np.asarray(res.normalized_cov_params, dtype=float) * s2
        self.exog_names = list(res.model.exog_names)
        P, Q, K, names = kr_pieces(res, progress=progress, unit_scale=True)
        self.varpar_names = names
        self._P = P
        # P and Q are of the engine's columns X T (T = I but for columns near the span
        # of earlier ones, engine/centering.py); the algebra runs in that basis, where it is well
        # conditioned, and the contrasts and the adjusted covariance map (L T, T A T').
        # Everything below is in units of sigma^2 (module docstring).
        self._centering = res.model.cross_products.centering
        phi = np.asarray(res.normalized_cov_params, dtype=float)
        if self._centering is not None:
            devfun = res.model.devfun(True)
            phi = devfun.engine_vcov_unscaled(np.asarray(res.theta, dtype=float))
        self._phi = phi
        phi_p = np.einsum("ab,ibc->iac", phi, P)  # Phi P_i
        trace_phi_q = np.einsum("ab,ijba->ij", phi, Q)
        trace_pp = np.einsum("iab,jba->ij", phi_p, phi_p)
        info = K - 2.0 * trace_phi_q + trace_pp
        info = 0.5 * (info + info.T)
        W = _inverse_times_two(info)
        self._information, self._varpar_cov, self._scale = info, W, float(s2)
        # U = sum_ij W_ij (Q_ij - P_i Phi P_j)
        p_phi_p = np.einsum("iab,jbc->ijac", P, phi_p)
        U = np.einsum("ij,ijab->ab", W, Q - p_phi_p)
        U = 0.5 * (U + U.T)
        adjusted = phi + 2.0 * phi @ U @ phi
        self._adjusted = 0.5 * (adjusted + adjusted.T) * s2
        self.vcov_adjusted = self._adjusted
        if self._centering is not None:
            self.vcov_adjusted = self._centering.covariance(self._adjusted)

    def __setstate__(self, state: dict) -> None:
        """Load a pickle, also one written before the algebra ran in units of
        ``sigma^2`` (its pieces in the response's units: the df, which do not depend
        on the units, come out the same)."""
        if "_varpar_cov" not in state and "varpar_cov" in state:
            state = dict(state)
            state["_information"] = state.pop("information")
            state["_varpar_cov"] = state.pop("varpar_cov")
            state["_scale"] = 1.0
        self.__dict__.update(state)

    @property
    def information(self) -> np.ndarray:
        """The information matrix ``I`` of the variance parameters (response's units)."""
        with np.errstate(over="ignore", under="ignore"):
            return self._information / np.float64(self._scale) ** 2

    @property
    def varpar_cov(self) -> np.ndarray:
        """``W = 2 I^-1``, their asymptotic covariance (response's units)."""
        with np.errstate(over="ignore", under="ignore"):
            return self._varpar_cov * np.float64(self._scale) ** 2

    def _engine_contrast(self, L: np.ndarray) -> np.ndarray:
        """``L T``: the contrast of the engine's coefficients (``L`` itself without centring)."""
        return L if self._centering is None else self._centering.contrast(L)

    # -- degrees of freedom --------------------------------------------
    def ddf(self, L: Any) -> float:
        """Kenward-Roger denominator df of ``L`` (pbkrtest's ``Lb_ddf`` for one row)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if L.shape[0] == 1:
            return self._adjust(L, 1)[0]
        L, q = _full_row_rank(L)
        return self._adjust(L, q)[0]

    def _adjust(self, L: np.ndarray, q: int) -> tuple[float, float]:
        """pbkrtest's ``.KR_adjust``: denominator df and F scaling for ``L``."""
        phi, L = self._phi, self._engine_contrast(L)
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        u = np.einsum("ab,ibc,cd->iad", theta @ phi, self._P, phi)
        traces = np.einsum("iaa->i", u)
        a1 = float(traces @ self._varpar_cov @ traces)
        a2 = float(np.sum(self._varpar_cov * np.einsum("iab,jba->ij", u, u)))
        return kr_ddf_and_scaling(a1, a2, q)

    # -- tests ---------------------------------------------------------
    def test(self, L: Any, rhs: Any = None) -> KRTest:
        """Kenward-Roger test of ``L beta = rhs``.

        Parameters
        ----------
        L : array_like, shape (p,) or (r, p)
            Contrast vector or matrix (columns in ``exog_names`` order).
        rhs : float or array_like, optional
            Hypothesized value(s); default 0.

        Returns
        -------
        KRTest
            One row: t test as lmerTest's ``contest1D(ddf = "Kenward-Roger")``.
            Several rows: F test as ``contestMD(ddf = "Kenward-Roger")``
            (pbkrtest's ``KRmodcomp``); rank-deficient ``L`` is reduced to a
            basis of its row space and ``q`` is its rank.
        """
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if L.ndim != 2 or L.shape[1] != len(self.beta):
            raise ValueError(
                f"L must have {len(self.beta)} columns ({', '.join(self.exog_names)}), "
                f"got shape {L.shape}"
            )
        rows = L.shape[0]
        rhs_vec = np.zeros(rows) if rhs is None else np.asarray(rhs, dtype=float).ravel()
        rhs_vec = np.broadcast_to(rhs_vec, (rows,)).astype(float)
        estimate = L @ self.beta
        cov = self._engine_contrast(L) @ self._adjusted @ self._engine_contrast(L).T
        if rows == 1:
            if not np.any(L):
                raise ValueError("the contrast is zero")
            ddf, _ = self._adjust(L, 1)
            t = float((estimate[0] - rhs_vec[0]) / np.sqrt(cov[0, 0]))
            pvalue = float(2.0 * stats.t.sf(abs(t), ddf))
            return KRTest(estimate, cov, t, 1, ddf, 1.0, pvalue, t**2, t**2 * self.sigma**2)
        beta_h = np.linalg.pinv(L) @ rhs_vec if np.any(rhs_vec != 0) else 0.0
        full, q = _full_row_rank(L)
        ddf, scaling = self._adjust(full, q)
        diff = full @ (self.beta - beta_h)
        engine = self._engine_contrast(full)
        wald = float(diff @ np.linalg.solve(engine @ self._adjusted @ engine.T, diff))
        f_unscaled = wald / q
        fvalue = scaling * f_unscaled
        pvalue = f_pvalue(fvalue, q, ddf)
        mean_sq = f_unscaled * self.sigma**2
        return KRTest(estimate, cov, fvalue, q, ddf, scaling, pvalue, f_unscaled, mean_sq)


def kr_ddf_and_scaling(a1: float, a2: float, q: int) -> tuple[float, float]:
    """Denominator df and F scaling from pbkrtest's ``A1``, ``A2`` and ``q``.

    Follows ``.KR_adjust`` including its guards: ``1 + c1 B`` below 1e-10 in
    absolute value counts as 0, ``(1 - A2/q) / (1 - c2 B)`` is 1 when both are
    below 1e-14, and the scaling is 1 when ``|ddf - 2| < 0.01``. When ``A2`` is 0
    (the contrast does not depend on the variance parameters) the df is infinite.
    Divisions by 0 follow R's arithmetic (``rho = 1 / q`` gives an infinite df),
    in numpy floats: Python's raised ZeroDivisionError.
    """
    if not a2 > 0:
        return np.inf, 1.0
    a1, a2, q = np.float64(a1), np.float64(a2), np.float64(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (a1 + 6.0 * a2) / (2.0 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        denom = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
        v0 = 1.0 + c1 * b
        v1 = 1.0 - c2 * b
        v2 = 1.0 - c3 * b
        if abs(v0) < 1e-10:
            v0 = 0.0
        x = 1.0 - a2 / q
        ratio = 1.0 if abs(x) < 1e-14 and abs(v1) < 1e-14 else x / v1
        rho = ratio**2 * v0 / (q * v2)
        ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scaling = 1.0 if abs(ddf - 2.0) < 1e-2 else ddf * x / (ddf - 2.0)
    return float(ddf), float(scaling)


def _full_row_rank(L: np.ndarray) -> tuple[np.ndarray, int]:
    """``L`` itself if of full row rank, else an orthonormal basis of its row space."""
    q = int(np.linalg.matrix_rank(L))
    if q == 0:
        raise ValueError("the contrast matrix is zero")
    if q == L.shape[0]:
        return L, q
    _, _, vt = np.linalg.svd(L, full_matrices=False)
    return vt[:q], q


# -- the structured pieces -------------------------------------------------
def _unit(k: int, a: int, b: int) -> np.ndarray:
    E = np.zeros((k, k))
    E[a, b] = E[b, a] = 1.0
    return E


class _DenseQ:
    """q-space quantities with dense q x q matrices (any set of terms).

    ``M = Lambda' Z'WZ Lambda + I``, ``C = Z' Sigma^-1 Z`` and
    ``J = (I - Lambda M^-1 Lambda' Z'WZ) / sigma^2`` (so ``Sigma^-1 Z = W Z J``).
    """

    def __init__(self, ztwz: sp.csr_matrix, Lam: sp.csr_matrix, s2: float):
        q = ztwz.shape[1]
        A0 = ztwz.toarray()  # Z'WZ
        LtA0 = np.asarray(Lam.T @ A0)  # Lambda' Z'WZ
        M = np.asarray(Lam.T @ LtA0.T) + np.eye(q)
        self._chol = sla.cholesky(0.5 * (M + M.T), lower=True)
        R = sla.solve_triangular(self._chol, LtA0, lower=True)  # L_M^-1 Lambda' Z'WZ
        C = (A0 - R.T @ R) / s2
        self.C = 0.5 * (C + C.T)
        J = -np.asarray(Lam @ sla.solve_triangular(self._chol, R, lower=True, trans="T"))
        J[np.diag_indices(q)] += 1.0
        self.J = J / s2
        del A0, LtA0, M, R
        m_inv = self.m_solve(np.eye(q))
        self.m_inv_fro2 = float(np.sum(m_inv * m_inv))

    def m_solve(self, rhs: np.ndarray) -> np.ndarray:
        return sla.cho_solve((self._chol, True), rhs)

    def c_times(self, cols: slice, rhs: np.ndarray) -> np.ndarray:
        """``C[:, cols] @ rhs`` (all q rows)."""
        return self.C[:, cols] @ rhs

    def h_tensor(self, bt: tuple, bu: tuple) -> np.ndarray:
        """``H[y, z, x, w] = sum_{k, m} C[(k,y), (m,z)] C[(k,x), (m,w)]`` for two terms."""
        cols_t, kt, lt = bt
        cols_u, ku, lu = bu
        c = self.C[cols_t, cols_u].reshape(lt, kt, lu, ku)
        D = c.transpose(1, 3, 0, 2).reshape(kt * ku, lt * lu)
        return (D @ D.T).reshape(kt, ku, kt, ku)

    def jc_level_sum(self, bt: tuple) -> np.ndarray:
        """Sum over the term's levels of the diagonal blocks of ``J'C``."""
        cols, k, levels = bt
        q = self.C.shape[0]
        jt = self.J[:, cols].reshape(q, levels, k)
        ct = self.C[:, cols].reshape(q, levels, k)
        return np.einsum("rlx,rly->xy", jt, ct)


class _BlockQ:
    """The same quantities for one term: every q x q matrix is block diagonal."""

    def __init__(self, A0: np.ndarray, T: np.ndarray, s2: float):
        levels, k = A0.shape[0], A0.shape[1]  # A0: per-level blocks of Z'WZ
        M = np.einsum("ba,lbc,cd->lad", T, A0, T) + np.eye(k)
        self._m_inv = np.linalg.inv(M)
        self._m_inv = 0.5 * (self._m_inv + self._m_inv.transpose(0, 2, 1))
        # T M^-1 T' A0 per level
        proj = np.einsum("ab,lbc,dc,lde->lae", T, self._m_inv, T, A0)
        C = (A0 - np.einsum("lab,lbc->lac", A0, proj)) / s2
        self.C = 0.5 * (C + C.transpose(0, 2, 1))
        self.J = (np.eye(k) - proj) / s2
        self.m_inv_fro2 = float(np.sum(self._m_inv * self._m_inv))
        self._shape = (levels, k)

    def _blockwise(self, blocks: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        levels, k = self._shape
        out = np.einsum("lab,lbr->lar", blocks, rhs.reshape(levels, k, -1))
        return out.reshape(levels * k, -1)

    def m_solve(self, rhs: np.ndarray) -> np.ndarray:
        return self._blockwise(self._m_inv, rhs)

    def c_times(self, cols: slice, rhs: np.ndarray) -> np.ndarray:
        return self._blockwise(self.C, rhs)

    def h_tensor(self, bt: tuple, bu: tuple) -> np.ndarray:
        return np.einsum("lyz,lxw->yzxw", self.C, self.C)

    def jc_level_sum(self, bt: tuple) -> np.ndarray:
        return np.einsum("lrx,lry->xy", self.J, self.C)


def kr_pieces(
    res: Any, structure: str = "auto", progress: bool | None = None, unit_scale: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``P`` (m, p, p), ``Q`` (m, m, p, p), ``K`` (m, m) and parameter names.

    Parameters are each term's covariance elements (lower triangle, column by
    column, lme4's term order), then the residual variance. ``structure``:
    "auto" (block-diagonal algebra for a single term, dense q x q otherwise)
    or "dense". ``progress``: a bar over the stages (None: the package setting).
    ``unit_scale``: the pieces of ``Sigma / sigma^2`` (``sigma^4`` times ``P``,
    ``sigma^6`` times ``Q``, ``sigma^4`` times ``K``), as if ``sigma`` were 1.
    """
    model = res.model
    n_params = sum(term.n_theta for term in model.random_terms)
    bar = Progress(2 * n_params + 2, "Kenward-Roger", "step", progress)
    bar.note("factor of the random-effects system")
    cross = model.cross_products
    ztwz, ztwx, xtwx = model_blocks(cross, model.engine_order, engine_columns=True)
    n, p = cross.nobs, cross.n_fixed
    s2 = 1.0 if unit_scale else float(res.scale)
    terms = model.random_terms
    q = ztwz.shape[1]
    Lam = sp.csr_matrix(res.Lambda)
    if len(terms) == 1 and structure == "auto":
        T = terms[0].factor(res.theta[model.theta_slices[0]])
        per_level = cross.a11_classes[cross.class_of_level]
        qs: _DenseQ | _BlockQ = _BlockQ(per_level, T, s2)
    else:
        check_memory(
            DENSE_Q_ARRAYS * 8.0 * q * q,
            f"Kenward-Roger's dense {q} x {q} matrices of the random effects",
            "Satterthwaite's df (the default ddf) need none of them.",
            task="Kenward-Roger's df for this model need",
        )
        qs = _DenseQ(ztwz, Lam, s2)

    # Sigma^-1 X = W Xt with Xt = (X - Z G) / s2; B = Z' Sigma^-1 X = Z'W Xt
    G = np.asarray(Lam @ qs.m_solve(np.asarray(Lam.T @ ztwx)))
    B = (ztwx - ztwz @ G) / s2
    # Sigma^-1 W^-1 Sigma^-1 X = W Xt2 with Xt2 = (Xt - Z G2) / s2; B2 = Z'W Xt2
    G2 = np.asarray(Lam @ qs.m_solve(np.asarray(Lam.T @ B)))
    B2 = (B - ztwz @ G2) / s2
    # Xt' W Xt, from the cross-products alone
    cross_g = ztwx.T @ G
    xt_w_xt = (xtwx - cross_g - cross_g.T + G.T @ (ztwz @ G)) / s2**2

    # parameters of the random terms
    blocks: list[tuple[slice, int, int]] = []  # (columns in Z, k, levels)
    start = 0
    for term in terms:
        blocks.append((slice(start, start + term.n_random), term.n_cols, term.n_levels))
        start += term.n_random
    params: list[tuple[int, np.ndarray]] = []  # (term, E)
    names: list[str] = []
    for index, term in enumerate(terms):
        k = term.n_cols
        cols = term.column_names
        for b in range(k):
            for a in range(b, k):
                params.append((index, _unit(k, a, b)))
                if a == b:
                    names.append(f"{term.label}: var({cols[a]})")
                else:
                    names.append(f"{term.label}: cov({cols[a]}, {cols[b]})")
    names.append("Residual: var")
    m = len(params) + 1

    bar.update(note="products for each variance parameter")
    EB = []  # (I (x) E_i) B on its term's rows
    CEB = []  # C E_i B, all q rows
    for index, E in params:
        cols, k, levels = blocks[index]
        eb = np.einsum("xy,lyc->lxc", E, B[cols].reshape(levels, k, p)).reshape(levels * k, p)
        EB.append(eb)
        CEB.append(qs.c_times(cols, eb))
        bar.update()

    P = np.empty((m, p, p))
    Q = np.empty((m, m, p, p))
    K = np.empty((m, m))
    for i, (ti, _) in enumerate(params):
        cols_i = blocks[ti][0]
        P[i] = -B[cols_i].T @ EB[i]
        for j in range(i, len(params)):
            Q[i, j] = EB[i].T @ CEB[j][cols_i]
            Q[j, i] = Q[i, j].T
        Q[i, m - 1] = EB[i].T @ B2[cols_i]
        Q[m - 1, i] = Q[i, m - 1].T
        bar.update()
    P[m - 1] = -xt_w_xt
    Q[m - 1, m - 1] = (xt_w_xt - B.T @ G2) / s2

    # K_ij = tr(E_i C E_j C) through per-term-pair fourth-order arrays
    bar.note("traces")
    H = {}
    for t in range(len(blocks)):
        for u in range(t, len(blocks)):
            H[t, u] = qs.h_tensor(blocks[t], blocks[u])  # [y, z, x, w]
    for i, (ti, Ei) in enumerate(params):
        for j in range(i, len(params)):
            tj, Ej = params[j]  # tj >= ti: params are in term order
            K[i, j] = K[j, i] = np.einsum("xy,zw,yzxw->", Ei, Ej, H[ti, tj])
    # K_i,res = tr(E_i Z' Sigma^-1 W^-1 Sigma^-1 Z) = tr(E_i J'C), level-diagonal blocks
    for i, (ti, Ei) in enumerate(params):
        K[i, m - 1] = K[m - 1, i] = np.sum(Ei * qs.jc_level_sum(blocks[ti]))
    # K_res,res = tr((Sigma^-1 W^-1)^2) = (n - q + ||M^-1||_F^2) / sigma^4
    K[m - 1, m - 1] = (n - q + qs.m_inv_fro2) / s2**2
    bar.update()
    bar.close()
    return P, Q, K, names


def _inverse_times_two(info: np.ndarray) -> np.ndarray:
    """``W = 2 I^-1``; pbkrtest's pseudo-inverse where ``I`` is near singular.

    pbkrtest inverts when ``min |eigenvalue| of I > 1e-10``, else takes
    ``MASS::ginv`` (singular values above ``sqrt(eps)`` times the largest). Both
    depend on the units of the variance parameters: with sleepstudy's Days in
    thousands the slope's variance fell below them, and Days' df became 4244
    instead of 17. So ``I`` is first judged on ``D I D`` with a unit diagonal
    (:func:`~statsmodels_lmer.linalg.unit_diagonal_eigenvalues`): when its eigenvalues are
    clear of 1e-10, ``I`` is inverted (exact in any units); otherwise
    pbkrtest's ``ginv`` of ``I`` follows.
    """
    if float(np.min(np.abs(unit_diagonal_eigenvalues(info)))) > _CONDITION_TOL:
        W = 2.0 * np.linalg.inv(info)
    else:  # MASS::ginv: singular values above sqrt(eps) * largest
        W = 2.0 * np.linalg.pinv(info, rcond=np.sqrt(np.finfo(float).eps))
    return 0.5 * (W + W.T)
