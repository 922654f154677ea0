"""The profiled deviance (ML) or REML criterion as a function of theta.

For a given theta the engine eliminates the first (block-diagonal) term level
by level, forms the dense Schur complement of the rest (see
:mod:`statsmodels_lmer.blocks`) and factors it with LAPACK. From the factor:

* ML:   ``ldL2 - log|W| + n (1 + log(2 pi r2 / n))``
* REML: ``ldL2 + ldRX2 - log|W| + (n - p) (1 + log(2 pi r2 / (n - p)))``

(Bates et al. 2015, eqs. 34 and 41), with ``r2`` the penalized weighted
residual sum of squares, the square of the factor's last diagonal element.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .blocks import CrossProducts
from .terms import RandomTerm

__all__ = ["ProfiledDeviance", "Solution"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(eq=False)
class _Factor:
    """Pieces of the blocked Cholesky factor at one theta."""

    T1: np.ndarray  # first term's T
    m_inv: np.ndarray  # (c, p1, p1) inverse of T'A11T + I per class
    log_det_first: float  # log det of the first block of L_Z, squared
    rest_lambda: np.ndarray | sp.spmatrix  # scale vector or sparse Lambda_R
    chol: np.ndarray | None  # dense lower factor of the Schur complement
    failed: bool


class ProfiledDeviance:
    """Objective of theta for one model: deviance (ML) or REML criterion.

    Parameters
    ----------
    cross : CrossProducts
        Cross-products in the engine's layout.
    terms : list of RandomTerm
        The random terms in the engine's order (first = eliminated).
    theta_slices : list of slice
        For each engine term, its slice of theta (theta in lme4's order).
    reml : bool
        REML criterion if True, else the ML deviance.
    """

    def __init__(
        self,
        cross: CrossProducts,
        terms: list[RandomTerm],
        theta_slices: list[slice],
        reml: bool,
    ) -> None:
        self.cross = cross
        self.terms = terms
        self.theta_slices = theta_slices
        self.reml = bool(reml)
        self.n_evaluations = 0
        self._scalar_rest = all(t.n_cols == 1 for t in terms[1:])

    def __call__(self, theta: np.ndarray) -> float:
        """The objective at ``theta`` (``inf`` where the factor fails)."""
        self.n_evaluations += 1
        theta = np.asarray(theta, dtype=float)
        if self.cross.nested is not None:
            return self._nested_criterion(theta)
        factor = self._factor(theta)
        if factor.failed:
            return np.inf
        return self._criterion(factor)

    def _nested_criterion(self, theta: np.ndarray) -> float:
        """The objective with the block-diagonal Schur complement of a nested rest term.

        Same value as the dense path (see :class:`~statsmodels_lmer.blocks.NestedLayout`);
        the blocks are factored one level at a time, then the small fixed block.
        """
        cross, layout = self.cross, self.cross.nested
        T1 = self.terms[0].factor(theta[self.theta_slices[0]])
        _, log_det_first, weights = self._first_block(T1)
        values = cross.pair_value * weights.reshape(-1)[cross.pair_weight]
        compact = np.bincount(layout.pair_index, values, minlength=layout.size)
        s_d, s_b, s_c = layout.split(compact)
        T2 = self.terms[1].factor(theta[self.theta_slices[1]])
        d = T2.T @ (layout.a_d - _symmetric(s_d)) @ T2 + np.eye(layout.cols)
        b = ((layout.a_b - s_b).reshape(-1, layout.levels, layout.cols) @ T2).transpose(1, 2, 0)
        c = layout.a_c - _symmetric(s_c[None])[0]
        try:
            chol_d = np.linalg.cholesky(d)
            solved = np.linalg.solve(chol_d, b)  # L_j^-1 B_j', shape (l2, p2, k)
            reduced = c - np.einsum("lpa,lpb->ab", solved, solved)
            chol_c = np.linalg.cholesky(reduced)
        except np.linalg.LinAlgError:
            return np.inf
        diag_c = np.diagonal(chol_c)
        p = cross.n_fixed
        ld_l2 = log_det_first + 2.0 * float(np.sum(np.log(np.diagonal(chol_d, axis1=1, axis2=2))))
        ld_rx2 = 2.0 * float(np.sum(np.log(diag_c[:p])))
        return self.criterion(ld_l2, ld_rx2, float(diag_c[-1] ** 2), self.reml)

    # -- factorization -------------------------------------------------
    def _factor(self, theta: np.ndarray) -> _Factor:
        T1 = self.terms[0].factor(theta[self.theta_slices[0]])
        m_inv, log_det_first, weights = self._first_block(T1)
        schur = self.cross.a_rr - self.cross.schur_product(weights)
        rest_lambda = self._rest_lambda(theta)
        schur = self._scale_rest(schur, rest_lambda)
        r = self.cross.n_random_rest
        schur[np.arange(r), np.arange(r)] += 1.0
        # The transpose is Fortran-ordered: LAPACK factors it in place as U = L'.
        upper, info = sla.lapack.dpotrf(schur.T, lower=0, clean=0, overwrite_a=1)
        return _Factor(T1, m_inv, log_det_first, rest_lambda, upper.T, info != 0)

    def _first_block(self, T1: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Inverse blocks, log-determinant and ``Wt`` of the first term."""
        a11, counts = self.cross.a11_classes, self.cross.class_counts
        if T1.shape[0] == 1:
            lam2 = T1[0, 0] ** 2
            m = lam2 * a11 + 1.0
            m_inv = 1.0 / m
            log_det = float(counts @ np.log(m[:, 0, 0]))
            return m_inv, log_det, lam2 * m_inv
        m = T1.T @ a11 @ T1 + np.eye(T1.shape[0])
        chol = np.linalg.cholesky(m)
        diag = np.diagonal(chol, axis1=1, axis2=2)
        log_det = float(counts @ (2.0 * np.log(diag).sum(axis=1)))
        m_inv = np.linalg.inv(m)
        return m_inv, log_det, T1 @ m_inv @ T1.T

    def _rest_lambda(self, theta: np.ndarray) -> np.ndarray | sp.spmatrix:
        extra = self.cross.n_fixed + 1
        if self._scalar_rest:
            parts = [
                np.full(term.n_levels, theta[sl][0])
                for term, sl in zip(self.terms[1:], self.theta_slices[1:])
            ]
            return np.concatenate(parts + [np.ones(extra)])
        blocks = [
            term.lambda_block(theta[sl]) for term, sl in zip(self.terms[1:], self.theta_slices[1:])
        ]
        return sp.block_diag(blocks + [sp.identity(extra)], format="csr")

    @staticmethod
    def _scale_rest(matrix: np.ndarray, rest_lambda: np.ndarray | sp.spmatrix) -> np.ndarray:
        """``Lambda_R' matrix Lambda_R``."""
        if isinstance(rest_lambda, np.ndarray):
            matrix *= rest_lambda[:, None]
            matrix *= rest_lambda[None, :]
            return matrix
        symmetric = np.tril(matrix) + np.tril(matrix, -1).T
        left = np.asarray(rest_lambda.T @ symmetric)
        return np.ascontiguousarray(np.asarray(rest_lambda.T @ left.T).T)

    # -- criterion -----------------------------------------------------
    def _log_dets(self, factor: _Factor) -> tuple[float, float, float]:
        r, p = self.cross.n_random_rest, self.cross.n_fixed
        diag = np.diagonal(factor.chol)
        ld_l2 = factor.log_det_first + 2.0 * float(np.sum(np.log(diag[:r])))
        ld_rx2 = 2.0 * float(np.sum(np.log(diag[r : r + p])))
        pwrss = float(diag[-1] ** 2)
        return ld_l2, ld_rx2, pwrss

    def _criterion(self, factor: _Factor) -> float:
        ld_l2, ld_rx2, pwrss = self._log_dets(factor)
        return self.criterion(ld_l2, ld_rx2, pwrss, self.reml)

    def criterion(self, ld_l2: float, ld_rx2: float, pwrss: float, reml: bool) -> float:
        """ML deviance or REML criterion from the factor's summaries."""
        n = self.cross.nobs
        ld_w = self.cross.sum_log_weights
        if not reml:
            return ld_l2 - ld_w + n * (1.0 + _LOG_2PI + np.log(pwrss / n))
        dof = n - self.cross.n_fixed
        return ld_l2 + ld_rx2 - ld_w + dof * (1.0 + _LOG_2PI + np.log(pwrss / dof))

    def components(self, theta: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        """``log|L_Z|^2``, ``log|R_X|^2``, the pwrss and ``(R_X' R_X)^-1`` at theta.

        The pieces of the unprofiled deviance (lmerTest's ``devfun_vp``) and of
        ``vcov(beta) / sigma^2``; theta may lie outside the bounds (for finite
        differences at a boundary).
        """
        factor = self._factor(np.asarray(theta, dtype=float))
        if factor.failed:
            raise np.linalg.LinAlgError("the penalized system is not positive definite")
        ld_l2, ld_rx2, pwrss = self._log_dets(factor)
        return ld_l2, ld_rx2, pwrss, _unscaled_vcov(factor.chol, self.cross)

    # -- solution ------------------------------------------------------
    def solve(self, theta: np.ndarray) -> Solution:
        """Fixed effects, spherical random effects and sigma at ``theta``.

        Raises
        ------
        numpy.linalg.LinAlgError
            When the factorization fails (rank-deficient fixed effects).
        """
        theta = np.asarray(theta, dtype=float)
        factor = self._factor(theta)
        if factor.failed:
            raise np.linalg.LinAlgError("the penalized system is not positive definite")
        return Solution(self, theta, factor)


class Solution:
    """Estimates at one theta: beta, u, b, sigma, vcov and conditional variances.

    Random effects are kept per engine term; ``b[i]`` has shape
    ``(n_levels, n_cols)``.
    """

    def __init__(self, objective: ProfiledDeviance, theta: np.ndarray, factor: _Factor):
        cross = objective.cross
        self._objective = objective
        self._factor = factor
        self.theta = theta
        r, p, m = cross.n_random_rest, cross.n_fixed, cross.size_rest
        chol = factor.chol
        coefs = sla.solve_triangular(
            chol[: m - 1, : m - 1], chol[m - 1, : m - 1], lower=True, trans="T"
        )
        u_rest, self.beta = coefs[:r], coefs[r : r + p]
        ld_l2, ld_rx2, self.pwrss = objective._log_dets(factor)
        self.log_det_l2, self.log_det_rx2 = ld_l2, ld_rx2
        self.objective_value = objective._criterion(factor)
        self.deviance_ml = objective.criterion(ld_l2, ld_rx2, self.pwrss, False)
        self.reml_criterion = objective.criterion(ld_l2, ld_rx2, self.pwrss, True)
        dof = cross.nobs - (p if objective.reml else 0)
        self.sigma = float(np.sqrt(self.pwrss / dof))
        self.u = [self._first_u(u_rest)] + self._split_rest(u_rest)
        self.b = [
            u @ term.factor(theta[sl]).T
            for u, term, sl in zip(self.u, objective.terms, objective.theta_slices)
        ]
        self.vcov_unscaled = _unscaled_vcov(chol, cross)

    def _first_u(self, u_rest: np.ndarray) -> np.ndarray:
        cross, factor = self._objective.cross, self._factor
        lam = factor.rest_lambda
        scaled = (
            lam[: len(u_rest)] * u_rest
            if isinstance(lam, np.ndarray)
            else (lam[: len(u_rest), : len(u_rest)] @ u_rest)
        )
        v = np.concatenate([scaled, self.beta, [-1.0]])
        rhs = np.asarray(cross.a_r1.T @ v).reshape(cross.first_levels, cross.first_cols)
        rhs = rhs @ factor.T1  # rows: (T1' x_k)'
        m_inv = factor.m_inv[cross.class_of_level]
        return -np.einsum("kab,kb->ka", m_inv, rhs)

    def _split_rest(self, u_rest: np.ndarray) -> list[np.ndarray]:
        parts, start = [], 0
        for n_levels, n_cols in self._objective.cross.rest_sizes:
            size = n_levels * n_cols
            parts.append(u_rest[start : start + size].reshape(n_levels, n_cols))
            start += size
        return parts

    @cached_property
    def conditional_variances(self) -> list[np.ndarray]:
        """``(M^-1)_kk`` blocks mapped to b: ``T (L L')^-1_kk T'`` per term.

        Multiply by ``sigma**2`` for the conditional covariance of ``b``.
        Shapes ``(n_levels, n_cols, n_cols)`` per engine term.
        """
        objective, factor, cross = self._objective, self._factor, self._objective.cross
        r = cross.n_random_rest
        first = factor.m_inv[cross.class_of_level]
        rest: list[np.ndarray] = []
        if r:
            l_rr = factor.chol[:r, :r]
            l_inv = sla.solve_triangular(l_rr, np.eye(r), lower=True)
            first = first + _block_gram(self._coupling(l_rr), cross.first_cols)
            start = 0
            for n_levels, n_cols in cross.rest_sizes:
                size = n_levels * n_cols
                rest.append(_block_gram(l_inv[:, start : start + size], n_cols))
                start += size
        blocks = [first] + rest
        out = []
        for block, term, sl in zip(blocks, objective.terms, objective.theta_slices):
            T = term.factor(self.theta[sl])
            out.append(T @ block @ T.T)
        return out

    def _coupling(self, l_rr: np.ndarray) -> np.ndarray:
        """``L_rr^-1 M_r1 M_11^-1`` (dense r x q1)."""
        cross, factor = self._objective.cross, self._factor
        r = cross.n_random_rest
        l1, p1 = cross.first_levels, cross.first_cols
        right = factor.T1 @ factor.m_inv[cross.class_of_level]  # (l1, p1, p1)
        rows, cols = [], []
        for a in range(p1):
            for b in range(p1):
                rows.append(np.arange(l1) * p1 + a)
                cols.append(np.arange(l1) * p1 + b)
        block_diag = sp.csr_matrix(
            (right.transpose(1, 2, 0).reshape(-1), (np.concatenate(rows), np.concatenate(cols))),
            shape=(l1 * p1, l1 * p1),
        )
        m_r1 = cross.a_r1[:r] @ block_diag
        lam = factor.rest_lambda
        m_r1 = sp.diags(lam[:r]) @ m_r1 if isinstance(lam, np.ndarray) else lam[:r, :r].T @ m_r1
        dense = m_r1.toarray() if sp.issparse(m_r1) else np.asarray(m_r1)
        return sla.solve_triangular(l_rr, dense, lower=True)


def _unscaled_vcov(chol: np.ndarray, cross: CrossProducts) -> np.ndarray:
    """``(R_X' R_X)^-1`` from the fixed-effects block of the dense factor."""
    r, p = cross.n_random_rest, cross.n_fixed
    if not p:
        return np.zeros((0, 0))
    return sla.cho_solve((chol[r : r + p, r : r + p], True), np.eye(p))


def _symmetric(lower: np.ndarray) -> np.ndarray:
    """Full symmetric blocks from blocks holding their lower triangle, shape (l, p, p)."""
    full = lower + lower.transpose(0, 2, 1)
    idx = np.arange(lower.shape[1])
    full[:, idx, idx] = lower[:, idx, idx]
    return full


def _block_gram(columns: np.ndarray, n_cols: int) -> np.ndarray:
    """Diagonal ``p x p`` blocks of ``C' C`` for column groups of size p."""
    rows = columns.shape[0]
    grouped = columns.reshape(rows, -1, n_cols)
    return np.einsum("rka,rkb->kab", grouped, grouped)
