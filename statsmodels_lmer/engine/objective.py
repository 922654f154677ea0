"""The profiled deviance (ML) or REML criterion as a function of theta.

For a given theta the engine eliminates the first (block-diagonal) term level
by level, forms the dense Schur complement of the rest in one ``m x m`` work
array (see :mod:`statsmodels_lmer.engine.blocks`) and factors it in place with
LAPACK; or, when the cost model chose it, factors the whole random part with a
sparse Cholesky (:mod:`statsmodels_lmer.engine.sparse`). From the factor:

* ML:   ``ldL2 - log|W| + n (1 + log(2 pi r2 / n))``
* REML: ``ldL2 + ldRX2 - log|W| + (n - p) (1 + log(2 pi r2 / (n - p)))``

(Bates et al. 2015, eqs. 34 and 41), with ``r2`` the penalized weighted
residual sum of squares, the square of the factor's last diagonal element.

:class:`ProfiledDeviance` is the one deviance API of the package: the
profiled criterion (``__call__``), the unprofiled deviance at ``(theta,
sigma)`` (:meth:`ProfiledDeviance.deviance`, lmerTest's ``devfun_vp`` and
lme4's ``devfun2``), the pieces of both (:meth:`ProfiledDeviance.components`)
and the estimates at one theta (:meth:`ProfiledDeviance.solve`). Per-term
results come in lme4's term order.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .._parallel import SMALL_BLOCK, THREADED_BLOCK, blas_threads, threads_for_block
from ..cached import cached_property
from ..linalg import cho_solve, solve_triangular
from ..terms import RandomTerm
from .blocks import CrossProducts
from .cost import SCALING_SLAB_ELEMENTS
from .sparse import SparseFactorPieces
from .tiny import tiny_system

__all__ = [
    "Components",
    "Factorization",
    "ProfiledDeviance",
    "Solution",
    "fill_upper",
    "profiled_criterion",
]

LOG_2PI = math.log(2.0 * math.pi)
"""``log(2 pi)``."""


def profiled_criterion(
    ld_l2: float,
    ld_rx2: float,
    pwrss: float,
    nobs: float,
    n_fixed: int,
    sum_log_weights: float,
    reml: bool,
) -> float:
    """ML deviance or REML criterion with sigma profiled out (lme4 eqs. 34 and 41).

    Parameters
    ----------
    ld_l2, ld_rx2 : float
        ``log|L_Z|^2`` and ``log|R_X|^2``.
    pwrss : float
        Penalized weighted residual sum of squares ``r2``.
    nobs, n_fixed : float, int
        ``n`` and ``p``.
    sum_log_weights : float
        ``log|W|``.
    reml : bool
    """
    if not reml:
        return ld_l2 - sum_log_weights + nobs * (1.0 + LOG_2PI + np.log(pwrss / nobs))
    dof = nobs - n_fixed
    return ld_l2 + ld_rx2 - sum_log_weights + dof * (1.0 + LOG_2PI + np.log(pwrss / dof))


@dataclass(frozen=True)
class Components:
    """The pieces of the criterion at one theta.

    Attributes
    ----------
    log_det_l2 : float
        ``log|L_Z|^2``.
    log_det_rx2 : float
        ``log|R_X|^2``.
    pwrss : float
        Penalized weighted residual sum of squares.
    vcov_unscaled : ndarray
        ``(R_X' R_X)^-1``, ``vcov(beta) / sigma^2``.
    """

    log_det_l2: float
    log_det_rx2: float
    pwrss: float
    vcov_unscaled: np.ndarray


_SLAB_ELEMENTS = SCALING_SLAB_ELEMENTS
"""Elements of the temporary arrays of the block scaling (32 MiB; in the memory model)."""

_SMALL_ORDER = 256
"""Up to this order scalar terms scale the whole work array (two passes, fewer calls)."""


class RestScaling:
    """``Lambda_R`` for the rest ``R = [Z_2 ... Z_k, X, y]``, applied block by block.

    Scalar rest terms scale rows and columns by one number per term; vector
    terms apply their ``p x p`` factor ``T`` to each level's ``p`` rows (or
    columns), never forming a sparse ``Lambda``.
    """

    def __init__(self, terms: list[RandomTerm], theta_parts: list[np.ndarray], extra: int):
        self.factors = [term.factor(part) for term, part in zip(terms, theta_parts)]
        self.levels = [term.n_levels for term in terms]
        self.scalar = all(T.shape[0] == 1 for T in self.factors)
        self.r = sum(n * T.shape[0] for n, T in zip(self.levels, self.factors))
        self.extra = extra

    @cached_property
    def diagonal(self) -> np.ndarray:
        """The diagonal of ``Lambda_R`` (scalar terms only), ones for ``[X y]``."""
        parts = [np.full(n, T[0, 0]) for n, T in zip(self.levels, self.factors)]
        return np.concatenate(parts + [np.ones(self.extra)])

    def _blocks(self) -> list[tuple[slice, int, np.ndarray]]:
        out, start = [], 0
        for n, T in zip(self.levels, self.factors):
            size = n * T.shape[0]
            out.append((slice(start, start + size), n, T))
            start += size
        return out

    def scale_lower(self, work: np.ndarray) -> None:
        """``work <- Lambda_R' work Lambda_R`` on the lower triangle, in place.

        ``work`` (C-ordered ``m x m``) holds the symmetric matrix on its lower
        triangle; the upper triangle is left with meaningless values.
        """
        if self.scalar and work.shape[0] <= _SMALL_ORDER:
            work *= self.diagonal[:, None]  # rows, then columns (two roundings)
            work *= self.diagonal[None, :]
            return
        blocks = self._blocks()
        for rows, n, T in blocks:
            if T.shape[0] > 1:
                _symmetrize_level_blocks(work, rows.start, n, T.shape[0])
        for t, (rows_t, n_t, T_t) in enumerate(blocks):
            for rows_u, _, T_u in blocks[:t]:
                _scale_block(work, rows_t.start, n_t, T_t, rows_u.start, rows_u.stop, T_u, False)
            _scale_block(work, rows_t.start, n_t, T_t, rows_t.start, rows_t.stop, T_t, True)
        r = self.r
        for rows_u, n_u, T_u in blocks:
            p = T_u.shape[0]
            if p == 1:
                work[r:, rows_u] *= T_u[0, 0]
            else:
                view = work[r:, rows_u]
                view[...] = (view.reshape(-1, n_u, p) @ T_u).reshape(view.shape)

    def apply(self, u: np.ndarray) -> np.ndarray:
        """``Lambda_R u`` for the random part (length ``r``)."""
        if self.scalar:
            return self.diagonal[: len(u)] * u
        out = np.empty_like(u)
        for rows, n, T in self._blocks():
            out[rows] = (u[rows].reshape(n, T.shape[0]) @ T.T).ravel()
        return out

    def apply_transpose(self, matrix: np.ndarray) -> np.ndarray:
        """``Lambda_R' M`` for a dense ``r x c`` matrix ``M`` (a new array)."""
        if self.scalar:
            return self.diagonal[: matrix.shape[0], None] * matrix
        out = np.empty_like(matrix)
        for rows, n, T in self._blocks():
            block = matrix[rows].reshape(n, T.shape[0], -1)
            out[rows] = np.einsum("ba,lbc->lac", T, block).reshape(n * T.shape[0], -1)
        return out


def _symmetrize_level_blocks(work: np.ndarray, start: int, levels: int, p: int) -> None:
    """Copy the lower triangle of each level's ``p x p`` diagonal block onto its upper one."""
    m = work.shape[0]
    flat = work.reshape(-1)
    base = start + np.arange(levels) * p
    for a in range(p):
        for b in range(a + 1, p):
            flat[(base + a) * m + base + b] = flat[(base + b) * m + base + a]


def _scale_block(
    work: np.ndarray,
    row0: int,
    levels: int,
    T_row: np.ndarray,
    col0: int,
    col_stop: int,
    T_col: np.ndarray,
    diagonal: bool,
) -> None:
    """``T_row' V T_col`` for the block of a row term and a column term, in row slabs.

    ``diagonal``: the two terms are one, and only the block-lower part (columns
    up to each slab's last level) is scaled.
    """
    p_row, p_col = T_row.shape[0], T_col.shape[0]
    width = col_stop - col0
    per_slab = max(1, _SLAB_ELEMENTS // max(1, width * p_row))
    for first in range(0, levels, per_slab):
        last = min(levels, first + per_slab)
        i0, i1 = row0 + first * p_row, row0 + last * p_row
        c1 = i1 if diagonal else col_stop
        view = work[i0:i1, col0:c1]
        if p_row == 1 and p_col == 1:
            view *= T_row[0, 0]  # rows, then columns (two roundings, as Lambda' (S Lambda))
            view *= T_col[0, 0]
            continue
        scaled = np.matmul(T_row.T, view.reshape(last - first, p_row, -1))
        scaled = scaled.reshape(last - first, p_row, -1, p_col) @ T_col
        view[...] = scaled.reshape(view.shape)


class _WorkArrays:
    """``m x m`` work arrays reused across evaluations (fresh pages are slow to fault in).

    A buffer is taken for one evaluation and given back after; one is kept.
    Safe from several threads (each evaluation holds its own buffer).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return np.empty((self.size, self.size))

    def give(self, work: np.ndarray) -> None:
        with self._lock:
            if not self._free:
                self._free.append(work)


@dataclass(eq=False)
class _Factor:
    """Pieces of the blocked Cholesky factor at one theta."""

    T1: np.ndarray  # first term's T
    m_inv: np.ndarray  # (c, p1, p1) inverse of T'A11T + I per class
    log_det_first: float  # log det of the first block of L_Z, squared
    rest: RestScaling
    chol: np.ndarray | None  # dense lower factor of the Schur complement
    failed: bool
    schur: np.ndarray | None = None  # A_RR - A_R1 Wt A_1R before scaling (when kept)


@dataclass(eq=False)
class Factorization:
    """The blocked factor at one theta, with what derivatives need (:mod:`.gradient`).

    Attributes
    ----------
    T1 : ndarray
        The first term's ``T``.
    m_inv : ndarray, shape (c, p1, p1)
        ``(T1' A11_c T1 + I)^-1`` per weight class.
    rest : RestScaling
        ``Lambda_R``.
    chol : ndarray, shape (m, m)
        Lower Cholesky factor of the scaled Schur complement ``S``.
    schur : ndarray, shape (m, m)
        The unscaled Schur complement ``A_RR - A_R1 Wt A_1R`` (symmetric).
    log_det_l2, log_det_rx2, pwrss : float
        ``log|L_Z|^2``, ``log|R_X|^2`` and the penalized weighted RSS.
    """

    T1: np.ndarray
    m_inv: np.ndarray
    rest: RestScaling
    chol: np.ndarray | None
    schur: np.ndarray
    log_det_l2: float
    log_det_rx2: float
    pwrss: float


@dataclass(eq=False)
class _SparseFactor:
    """The sparse factorization's pieces at one theta (and the ``T`` it was made with)."""

    pieces: SparseFactorPieces
    factors: list[np.ndarray]


@dataclass(eq=False)
class _NestedFactor:
    """The factor at one theta with the compact nested layout (no ``m x m`` array).

    The random part of the Schur complement is block diagonal (one
    ``p2 x p2`` block per level of the rest term); with the fixed-and-response
    block ``k x k`` (``k = p + 1``) the factor is ``[[L_D, 0], [S', L_C]]``
    with ``S_j = L_Dj^-1 B_j`` (see :class:`~statsmodels_lmer.engine.blocks.NestedLayout`).
    """

    T1: np.ndarray
    m_inv: np.ndarray  # (c, p1, p1) inverse of T'A11T + I per class
    log_det_first: float
    rest: RestScaling
    chol_d: np.ndarray  # (l2, p2, p2) lower factors of the random blocks
    solved: np.ndarray  # (l2, p2, k) L_Dj^-1 B_j'
    chol_c: np.ndarray  # (k, k) lower factor of the reduced fixed-and-response block

    def log_dets(self) -> tuple[float, float, float]:
        """``log|L_Z|^2``, ``log|R_X|^2`` and the pwrss."""
        diag_c = np.diagonal(self.chol_c)
        p = diag_c.size - 1
        log_d = float(np.sum(np.log(np.diagonal(self.chol_d, axis1=1, axis2=2))))
        ld_l2 = self.log_det_first + 2.0 * log_d
        return ld_l2, 2.0 * float(np.sum(np.log(diag_c[:p]))), float(diag_c[-1] ** 2)

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """Spherical random effects of the rest term (level by level) and beta."""
        p = self.chol_c.shape[0] - 1
        beta = solve_triangular(self.chol_c[:p, :p], self.chol_c[p, :p], lower=True, trans=True)
        rhs = self.solved[:, :, p] - self.solved[:, :, :p] @ beta
        upper = np.swapaxes(self.chol_d, 1, 2)
        u = np.linalg.solve(upper, rhs[..., None])[..., 0]
        return u.reshape(-1), beta

    def vcov_unscaled(self) -> np.ndarray:
        """``(R_X' R_X)^-1``."""
        p = self.chol_c.shape[0] - 1
        return _inverse_from_factor(self.chol_c[:p, :p])


class ProfiledDeviance:
    """Objective of theta for one model: deviance (ML) or REML criterion.

    A callable ``f(theta) -> float`` with theta in lme4's order. Several
    threads may evaluate one object at once: each evaluation works in its own
    ``m x m`` array (kept for the next one), and the sparse factorization is
    serialized by a lock.

    Parameters
    ----------
    cross : CrossProducts
        Cross-products in the engine's layout.
    terms : list of RandomTerm
        The random terms in lme4's order.
    theta_slices : list of slice
        Each term's slice of theta.
    engine_order : list of int
        Indices of ``terms`` in the engine's order (first = eliminated).
    reml : bool
        REML criterion if True, else the ML deviance.

    Attributes
    ----------
    monitor : callable or None
        Called with each value and each :meth:`factorization`'s value (a fit
        sets its progress display here); not pickled.
    """

    def __init__(
        self,
        cross: CrossProducts,
        terms: list[RandomTerm],
        theta_slices: list[slice],
        engine_order: list[int],
        reml: bool,
    ) -> None:
        self.cross = cross
        self.model_terms = list(terms)
        self.engine_order = list(engine_order)
        self.terms = [terms[i] for i in engine_order]
        self.theta_slices = [theta_slices[i] for i in engine_order]
        self.reml = bool(reml)
        self.n_theta = sum(part.stop - part.start for part in theta_slices)
        self.n_evaluations = 0
        self.monitor: Callable[[float], None] | None = None
        self._work = _WorkArrays(cross.size_rest)
        self._tiny = tiny_system(cross, self.terms, self.theta_slices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_work"]
        state["monitor"] = None  # a fit's progress display stays with the fit
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_tiny", None)  # pickles of earlier versions: the blocked path
        state.setdefault("monitor", None)
        self.__dict__.update(state)
        self._work = _WorkArrays(self.cross.size_rest)

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return self.cross.nobs

    @property
    def whole_system(self) -> bool:
        """Whether the criterion is evaluated on the tiny path (:mod:`.tiny`).

        Its evaluations cost a few microseconds, less than a tenth of a
        gradient, so derivative-free fits are cheaper there.
        """
        return self._tiny is not None

    def blas_threads(self, threads: int | None = None) -> AbstractContextManager[None]:
        """A context limiting BLAS threads for work on this objective.

        ``threads`` when given, else one thread when the dense block is small
        (see :func:`statsmodels_lmer._parallel.threads_for_block`).
        """
        if self.cross.sparse is not None:  # CHOLMOD's supernodes: the default rule, no cap
            return blas_threads(
                threads_for_block(min(self.cross.sparse.order, SMALL_BLOCK), threads)
            )
        if threads is None:
            threads = self.cross.measured_threads
        return blas_threads(threads_for_block(self.cross.size_rest, threads))

    def measured_threads(self, theta: np.ndarray) -> int | None:
        """One BLAS thread or BLAS's default for this objective, by timing one of each.

        Only for a dense block that the default rule gives several threads
        (:func:`~statsmodels_lmer._parallel.threads_for_block`) on a machine with
        several CPUs: OpenBLAS's threads spin while they wait, so while other
        processes keep the cores busy two threads are far slower than one (the
        20,000 x 5,000 crossing: 11.5 s an evaluation against 1.4 s, with one
        busy process), where on a quiet machine they are faster. One evaluation
        each at ``theta``; the default wins only when 10% faster. The choice is
        kept on the cross-products for later work on them (summary, profiles).
        None: not measured.
        """
        rows = self.cross.size_rest
        if self.cross.sparse is not None or (os.cpu_count() or 1) < 2:
            return None
        if threads_for_block(rows, None) is not None:  # one thread by the rule
            return None
        seconds = {}
        for limit in (1, None):
            with blas_threads(limit):
                start = perf_counter()
                self._criterion_at(np.asarray(theta, dtype=float))
                seconds[limit] = perf_counter() - start
        choice = None if seconds[None] < 0.9 * seconds[1] else 1
        self.cross.measured_threads = choice
        return choice

    def __call__(self, theta: np.ndarray) -> float:
        """The objective at ``theta`` (``inf`` where the factor fails).

        Each value is passed to :attr:`monitor` when one is set (a fit's
        progress display).
        """
        self.n_evaluations += 1
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_theta,):  # a scalar for one theta; a wrong length
            theta = self.checked_theta(theta)
        value = self._criterion_at(theta)
        if self.monitor is not None:
            self.monitor(value)
        return value

    def checked_theta(self, theta: Any) -> np.ndarray:
        """``theta`` as a vector of :attr:`n_theta` values (a scalar for a single theta).

        Raises
        ------
        ValueError
            Another number of values.
        """
        theta = np.atleast_1d(np.asarray(theta, dtype=float)).ravel()
        if theta.size != self.n_theta:
            raise ValueError(f"theta must have {self.n_theta} value(s), got {theta.size}")
        return theta

    def _criterion_at(self, theta: np.ndarray) -> float:
        if self._tiny is not None:
            pieces = self._tiny.pieces(theta)
            return np.inf if pieces is None else self.criterion(*pieces, self.reml)
        if self.cross.nested is not None:
            return self._nested_criterion(theta)
        factor = self._factor(theta)
        if factor is None:
            return np.inf
        value = self.criterion(*self._log_dets(factor), self.reml)
        self._release(factor)
        return value

    def _nested_criterion(self, theta: np.ndarray) -> float:
        """The objective with the block-diagonal Schur complement of a nested rest term.

        Same value as the dense path (see :class:`~statsmodels_lmer.engine.blocks.NestedLayout`);
        the blocks are factored one level at a time, then the small fixed block.
        """
        factor = self._nested_factor(theta)
        return np.inf if factor is None else self.criterion(*factor.log_dets(), self.reml)

    def _nested_factor(self, theta: np.ndarray) -> _NestedFactor | None:
        """The factor in the compact nested layout (None where it fails)."""
        layout = self.cross.nested
        T1 = self.terms[0].factor(theta[self.theta_slices[0]])
        m_inv, log_det_first, weights, roots = self._first_block(T1)
        s_d, s_b, s_c = layout.schur_compact(weights, roots)
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
            return None
        rest = RestScaling(
            self.terms[1:], [theta[sl] for sl in self.theta_slices[1:]], self.cross.n_fixed + 1
        )
        return _NestedFactor(T1, m_inv, log_det_first, rest, chol_d, solved, chol_c)

    # -- factorization -------------------------------------------------
    def term_factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each term's ``T`` at theta, in the engine's order."""
        return [term.factor(theta[sl]) for term, sl in zip(self.terms, self.theta_slices)]

    def _factor(
        self, theta: np.ndarray, solve: bool = False, keep_schur: bool = False
    ) -> _Factor | _SparseFactor | _NestedFactor | None:
        """The factor at theta, or None where it fails; give it back with :meth:`_release`.

        ``keep_schur`` (dense path only) also keeps a copy of the unscaled Schur
        complement (lower triangle) for the derivatives.
        """
        if self.cross.sparse is not None:
            factors = self.term_factors(theta)
            pieces = self.cross.sparse.factor(factors, solve=solve)
            return None if pieces is None else _SparseFactor(pieces, factors)
        if self.cross.nested is not None and not keep_schur:  # no m x m array
            return self._nested_factor(theta)
        if self.cross.size_rest < THREADED_BLOCK:
            factor = self._factor_now(theta, keep_schur)
        else:
            # BLAS would use several threads here: keep to the fit's setting (one thread
            # for blocks below SMALL_BLOCK) when called directly, outside a fit.
            with self.blas_threads():
                factor = self._factor_now(theta, keep_schur)
        if factor.failed:
            self._release(factor)
            return None
        return factor

    def _release(self, factor: _Factor | _SparseFactor) -> None:
        """Give the factor's work array back for the next evaluation."""
        if isinstance(factor, _Factor) and factor.chol is not None:
            self._work.give(factor.chol)
            factor.chol = None

    def _factor_now(self, theta: np.ndarray, keep_schur: bool = False) -> _Factor:
        T1 = self.terms[0].factor(theta[self.theta_slices[0]])
        m_inv, log_det_first, weights, roots = self._first_block(T1)
        cross = self.cross
        work = self._work.take()
        cross.fill_lower(work)
        cross.product.subtract_from(work, weights, roots)
        unscaled = work.copy() if keep_schur else None
        rest = RestScaling(
            self.terms[1:],
            [theta[sl] for sl in self.theta_slices[1:]],
            cross.n_fixed + 1,
        )
        r, m = cross.n_random_rest, cross.size_rest
        if r:
            rest.scale_lower(work)
            work.reshape(-1)[0 : r * (m + 1) : m + 1] += 1.0
        # The transpose is Fortran-ordered: LAPACK factors it in place as U = L'.
        _, info = sla.lapack.dpotrf(work.T, lower=0, clean=0, overwrite_a=1)
        return _Factor(T1, m_inv, log_det_first, rest, work, info != 0, unscaled)

    def _first_block(
        self, T1: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray | None]:
        """Inverse blocks, log-determinant, ``Wt`` and (when the product needs them)
        its factors ``F = T chol(T'A11T + I)^-T`` of the first term, per class."""
        a11, counts = self.cross.a11_classes, self.cross.class_counts
        needs_roots = self.cross.product is not None and self.cross.product.needs_roots
        if T1.shape[0] == 1:
            lam2 = T1[0, 0] ** 2
            m = lam2 * a11 + 1.0
            m_inv = 1.0 / m
            log_det = float(counts @ np.log(m[:, 0, 0]))
            roots = T1[0, 0] / np.sqrt(m) if needs_roots else None
            return m_inv, log_det, lam2 * m_inv, roots
        m = T1.T @ a11 @ T1 + np.eye(T1.shape[0])
        chol = np.linalg.cholesky(m)
        diag = np.diagonal(chol, axis1=1, axis2=2)
        log_det = float(counts @ (2.0 * np.log(diag).sum(axis=1)))
        m_inv = np.linalg.inv(m)
        roots = None
        if needs_roots:
            transposed = np.broadcast_to(T1.T, chol.shape)
            roots = np.swapaxes(np.linalg.solve(chol, transposed), 1, 2)
        return m_inv, log_det, T1 @ m_inv @ T1.T, roots

    def _factor_or_raise(self, theta: np.ndarray, solve: bool = False) -> _Factor | _SparseFactor:
        factor = self._factor(np.asarray(theta, dtype=float), solve)
        if factor is None:
            raise np.linalg.LinAlgError("the penalized system is not positive definite")
        return factor

    def factorization(self, theta: np.ndarray) -> Factorization | None:
        """The dense blocked factor at theta and the unscaled Schur complement.

        For derivatives (:mod:`statsmodels_lmer.engine.gradient`); None where
        the penalized system is not positive definite. The Schur complement
        is returned with both triangles filled.
        """
        if self.cross.product is None:
            raise ValueError(
                "the derivatives need the dense Schur complement (not the sparse path)"
            )
        factor = self._factor(np.asarray(theta, dtype=float), keep_schur=True)
        if factor is None:
            return None
        # the work array stays with the result (not given back for the next evaluation)
        _symmetrize_lower(factor.schur)
        log_dets = self._log_dets(factor)
        if self.monitor is not None:
            self.monitor(self.criterion(*log_dets, self.reml))
        return Factorization(
            factor.T1, factor.m_inv, factor.rest, factor.chol, factor.schur, *log_dets
        )

    def give_back(self, factorization: Factorization) -> None:
        """Return a :meth:`factorization`'s work array for the next evaluation.

        Only when nothing uses the factorization any more (its ``chol`` is
        dropped): fresh ``m x m`` pages are slow to fault in.
        """
        if factorization.chol is not None:
            self._work.give(factorization.chol)
            factorization.chol = None

    # -- criterion -----------------------------------------------------
    def _log_dets(self, factor: _Factor | _SparseFactor) -> tuple[float, float, float]:
        if isinstance(factor, _SparseFactor):
            pieces = factor.pieces
            return pieces.log_det_l2, pieces.log_det_rx2, pieces.pwrss
        if isinstance(factor, _NestedFactor):
            return factor.log_dets()
        r, p, m = self.cross.n_random_rest, self.cross.n_fixed, self.cross.size_rest
        diag = factor.chol.reshape(-1)[:: m + 1]  # the C-ordered work array's diagonal
        logs = np.log(diag[: m - 1])
        ld_l2 = factor.log_det_first + 2.0 * float(logs[:r].sum())
        ld_rx2 = 2.0 * float(logs[r : r + p].sum())
        pwrss = float(diag[-1]) ** 2
        return ld_l2, ld_rx2, pwrss

    def _vcov_unscaled(
        self, factor: _Factor | _SparseFactor, engine_columns: bool = False
    ) -> np.ndarray:
        """``(R_X' R_X)^-1`` of ``X``, or of the engine's columns ``X T`` (``engine_columns``)."""
        if isinstance(factor, _SparseFactor):
            vcov = factor.pieces.vcov_unscaled
        elif isinstance(factor, _NestedFactor):
            vcov = factor.vcov_unscaled()
        else:
            vcov = _unscaled_vcov(factor.chol, self.cross)
        centering = self.cross.centering
        return vcov if centering is None or engine_columns else centering.covariance(vcov)

    def engine_vcov_unscaled(self, theta: np.ndarray) -> np.ndarray:
        """``(R_X' R_X)^-1`` of the columns the sums are of: ``X T`` when
        ``cross.centering`` centres columns near the span of earlier ones
        (:mod:`~.centering`), else ``X``.

        Well conditioned where the covariance of ``X``'s coefficients is not; the
        two are ``C = T C~ T'``.
        """
        factor = self._factor_or_raise(theta)
        vcov = self._vcov_unscaled(factor, engine_columns=True)
        self._release(factor)
        return vcov

    def criterion(self, ld_l2: float, ld_rx2: float, pwrss: float, reml: bool) -> float:
        """ML deviance or REML criterion (sigma profiled out) from the factor's summaries."""
        cross = self.cross
        return profiled_criterion(
            ld_l2, ld_rx2, pwrss, cross.nobs, cross.n_fixed, cross.sum_log_weights, reml
        )

    def components(self, theta: np.ndarray) -> Components:
        """``log|L_Z|^2``, ``log|R_X|^2``, the pwrss and ``(R_X' R_X)^-1`` at theta.

        theta may lie outside the bounds (for finite differences at a boundary).

        Raises
        ------
        numpy.linalg.LinAlgError
            When the penalized system is not positive definite.
        """
        factor = self._factor_or_raise(theta)
        ld_l2, ld_rx2, pwrss = self._log_dets(factor)
        parts = Components(ld_l2, ld_rx2, pwrss, self._vcov_unscaled(factor))
        self._release(factor)
        return parts

    def deviance(
        self, theta: np.ndarray, sigma: float, reml: bool | None = None, pwrss: float | None = None
    ) -> float:
        """The deviance at ``(theta, sigma)``, sigma not profiled out.

        ``log|L_Z|^2 (+ log|R_X|^2) - log|W| + r2 / sigma^2 + d log(2 pi sigma^2)``
        with ``d = n`` (ML) or ``n - p`` (REML): lmerTest's ``devfun_vp`` and
        (ML) lme4's ``devfun2``. Minimizing over sigma gives the profiled
        criterion.

        Parameters
        ----------
        theta : ndarray
        sigma : float
        reml : bool, optional
            Default: the object's own criterion.
        pwrss : float, optional
            Use this ``r2`` instead of the one at theta (a fixed effect held
            away from its estimate adds to it).

        Raises
        ------
        numpy.linalg.LinAlgError
            When the penalized system is not positive definite.
        """
        reml = self.reml if reml is None else bool(reml)
        parts = self.components(theta)
        r2 = parts.pwrss if pwrss is None else pwrss
        dof = self.cross.nobs - (self.cross.n_fixed if reml else 0)
        value = parts.log_det_l2 - self.cross.sum_log_weights + r2 / sigma**2
        value += dof * (LOG_2PI + 2.0 * math.log(sigma))
        return value + (parts.log_det_rx2 if reml else 0.0)

    # -- solution ------------------------------------------------------
    def solve(self, theta: np.ndarray) -> Solution:
        """Fixed effects, spherical random effects and sigma at ``theta``.

        Raises
        ------
        numpy.linalg.LinAlgError
            When the factorization fails (rank-deficient fixed effects).
        """
        theta = np.asarray(theta, dtype=float)
        return Solution(self, theta, self._factor_or_raise(theta, solve=True))


class Solution:
    """Estimates at one theta: beta, u, b, sigma, vcov and conditional variances.

    Per-term arrays are in lme4's term order: ``b[i]`` and ``u[i]`` have
    shape ``(n_levels, n_cols)``. On the dense path the solution keeps the
    factor (its ``m x m`` array); on the sparse path the conditional
    variances refactor at theta when first asked for. The random effects are
    formed when first asked for (a fit needs only beta, sigma and vcov: a
    sparse product with ``A_R1`` and the per-level solves cost a tenth of a
    millisecond on small models).
    """

    def __init__(
        self, objective: ProfiledDeviance, theta: np.ndarray, factor: _Factor | _SparseFactor
    ):
        cross = objective.cross
        self._objective = objective
        self._factor = factor
        self.theta = theta
        ld_l2, ld_rx2, self.pwrss = objective._log_dets(factor)
        self.log_det_l2, self.log_det_rx2 = ld_l2, ld_rx2
        self.objective_value = objective.criterion(ld_l2, ld_rx2, self.pwrss, objective.reml)
        self.deviance_ml = objective.criterion(ld_l2, ld_rx2, self.pwrss, False)
        self.reml_criterion = objective.criterion(ld_l2, ld_rx2, self.pwrss, True)
        dof = cross.nobs - (cross.n_fixed if objective.reml else 0)
        self.sigma = float(np.sqrt(self.pwrss / dof))
        if isinstance(factor, _SparseFactor):
            self.beta = factor.pieces.beta
            self._u_rest = None
        elif isinstance(factor, _NestedFactor):
            self._u_rest, self.beta = factor.coefficients()
        else:
            r, p = cross.n_random_rest, cross.n_fixed
            coefs = _back_substitution(factor.chol)
            self._u_rest, self.beta = coefs[:r], coefs[r : r + p]
        self._engine_beta = self.beta  # what the factor solved for
        self.beta = cross.model_beta(self.beta)
        self.vcov_unscaled = objective._vcov_unscaled(factor)

    @cached_property
    def _engine_u(self) -> list[np.ndarray]:
        """The spherical random effects per term, in the engine's order."""
        cross = self._objective.cross
        if self._u_rest is None:  # sparse path: solved with beta
            first = [(cross.first_levels, cross.first_cols)]
            return self._split(self._factor.pieces.u, first)
        return [self._first_u(self._u_rest)] + self._split(self._u_rest, [])

    @cached_property
    def u(self) -> list[np.ndarray]:
        """Spherical random effects per term, shape ``(n_levels, n_cols)``."""
        return self._model_order(self._engine_u)

    @cached_property
    def b(self) -> list[np.ndarray]:
        """Random effects per term, ``u`` times the term's ``T'``: shape ``(n_levels, n_cols)``."""
        factors = self._objective.term_factors(self.theta)
        return self._model_order([u @ T.T for u, T in zip(self._engine_u, factors)])

    def _model_order(self, per_engine_term: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.empty(0)] * len(per_engine_term)
        for position, index in enumerate(self._objective.engine_order):
            out[index] = per_engine_term[position]
        return out

    def _first_u(self, u_rest: np.ndarray) -> np.ndarray:
        cross, factor = self._objective.cross, self._factor
        v = np.concatenate([factor.rest.apply(u_rest), self._engine_beta, [-1.0]])
        rhs = np.asarray(cross.a_r1.T @ v).reshape(cross.first_levels, cross.first_cols)
        rhs = rhs @ factor.T1  # rows: (T1' x_k)'
        m_inv = factor.m_inv[cross.class_of_level]
        return -np.einsum("kab,kb->ka", m_inv, rhs)

    def _split(self, u: np.ndarray, leading: list[tuple[int, int]]) -> list[np.ndarray]:
        """``u`` cut into (levels, cols) per term: ``leading`` terms, then the rest's."""
        parts, start = [], 0
        for n_levels, n_cols in leading + list(self._objective.cross.rest_sizes):
            size = n_levels * n_cols
            parts.append(u[start : start + size].reshape(n_levels, n_cols))
            start += size
        return parts

    @cached_property
    def conditional_variances(self) -> list[np.ndarray]:
        """``(M^-1)_kk`` blocks mapped to b: ``T (L L')^-1_kk T'`` per term.

        Multiply by ``sigma**2`` for the conditional covariance of ``b``.
        Shapes ``(n_levels, n_cols, n_cols)`` per term, in lme4's term order.
        """
        objective, factor = self._objective, self._factor
        factors = objective.term_factors(self.theta)
        if isinstance(factor, _SparseFactor):
            blocks = objective.cross.sparse.inverse_blocks(factors)
            if blocks is None:
                raise np.linalg.LinAlgError("the penalized system is not positive definite")
        elif isinstance(factor, _NestedFactor):
            blocks = self._nested_inverse_blocks(factors[1])
        else:
            blocks = self._dense_inverse_blocks()
        out = [T @ block @ T.T for block, T in zip(blocks, factors)]
        return self._model_order(out)

    def _dense_inverse_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of ``(L_Z L_Z')^-1`` per term (engine order), in column chunks."""
        cross, factor = self._objective.cross, self._factor
        r = cross.n_random_rest
        first = factor.m_inv[cross.class_of_level].copy()
        rest: list[np.ndarray] = []
        if not r:
            return [first]
        l1, p1 = cross.first_levels, cross.first_cols
        for levels in _level_chunks(l1, p1, r):
            first[levels] += _block_gram(self._coupling(levels), p1)
        start = 0
        for n_levels, n_cols in cross.rest_sizes:
            blocks = []
            for levels in _level_chunks(n_levels, n_cols, r):
                columns = start + (levels[:, None] * n_cols + np.arange(n_cols)).ravel()
                unit = np.zeros((r, len(columns)))
                unit[columns, np.arange(len(columns))] = 1.0
                solved = _leading_lower_solve(factor.chol, unit)
                blocks.append(_block_gram(solved, n_cols))
            rest.append(np.concatenate(blocks) if blocks else np.zeros((0, n_cols, n_cols)))
            start += n_levels * n_cols
        return [first] + rest

    def _nested_inverse_blocks(self, T2: np.ndarray) -> list[np.ndarray]:
        """:meth:`_dense_inverse_blocks` with the block-diagonal rest of a nested layout.

        A first-term level k lies in one rest level j, so its coupling
        ``L_rr^-1 M_r1 M_11^-1`` has the one block ``L_Dj^-1 T2' A_jk T1 M_k^-1``.
        """
        cross, factor = self._objective.cross, self._factor
        l2, p2 = cross.rest_sizes[0]
        l1, p1 = cross.first_levels, cross.first_cols
        inverse_chol = np.linalg.inv(factor.chol_d)
        rest = np.einsum("lba,lbc->lac", inverse_chol, inverse_chol)  # (L L')^-1 per level
        entries = sp.coo_matrix(cross.a_r1[: l2 * p2])
        level_j, a = np.divmod(entries.row, p2)
        level_k, b = np.divmod(entries.col, p1)
        blocks = np.zeros((l1, p2, p1))
        np.add.at(blocks, (level_k, a, b), entries.data)
        parent = np.zeros(l1, dtype=np.int64)
        parent[level_k] = level_j
        right = factor.T1 @ factor.m_inv[cross.class_of_level]  # (l1, p1, p1)
        scaled = np.einsum("ba,kbc->kac", T2, blocks @ right)  # T2' A_jk T1 M_k^-1
        coupling = np.linalg.solve(factor.chol_d[parent], scaled)
        first = factor.m_inv[cross.class_of_level] + np.einsum("kab,kac->kbc", coupling, coupling)
        return [first, rest]

    def _coupling(self, levels: np.ndarray) -> np.ndarray:
        """``L_rr^-1 M_r1 M_11^-1`` for some first-term levels (dense r x len(levels) p1)."""
        cross, factor = self._objective.cross, self._factor
        r, p1 = cross.n_random_rest, cross.first_cols
        right = factor.T1 @ factor.m_inv[cross.class_of_level[levels]]  # (k, p1, p1)
        columns = (levels[:, None] * p1 + np.arange(p1)).ravel()
        a = cross.a_r1[:r][:, columns].toarray().reshape(r, len(levels), p1)
        m_r1 = np.einsum("rka,kab->rkb", a, right).reshape(r, -1)
        return _leading_lower_solve(factor.chol, factor.rest.apply_transpose(m_r1))


def _leading_lower_solve(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L_rr^-1 rhs`` for the leading ``len(rhs)`` rows of the C-ordered lower factor.

    Forward substitution through the whole array gives the leading rows
    unchanged; LAPACK's wrapper would copy a slice (another ``m x m`` array,
    once per chunk of columns), while the whole C-ordered array is passed as
    its transpose without a copy (:func:`~statsmodels_lmer.linalg.solve_triangular`).
    """
    rows, m = rhs.shape[0], chol.shape[0]
    padded = np.zeros((m, rhs.shape[1]))
    padded[:rows] = rhs
    return solve_triangular(chol, padded, lower=True)[:rows]


def _back_substitution(chol: np.ndarray) -> np.ndarray:
    """``L_11^-T l`` of the C-ordered lower factor ``[[L_11, 0], [l', d]]``: the
    spherical random effects and beta, without copying the leading block.

    ``L' z = d e_m`` gives ``z = (-L_11^-T l, 1)``.
    """
    m = chol.shape[0]
    rhs = np.zeros(m)
    rhs[-1] = chol[m - 1, m - 1]
    return -solve_triangular(chol, rhs, lower=True, trans=True)[: m - 1]


def _level_chunks(levels: int, cols: int, rows: int, chunk_bytes: int = 128 * 2**20) -> list:
    """Level index arrays whose ``rows x (levels cols)`` doubles fit in ``chunk_bytes``."""
    per_chunk = max(1, chunk_bytes // (8 * max(rows, 1) * cols))
    return [np.arange(a, min(levels, a + per_chunk)) for a in range(0, levels, per_chunk)]


def _unscaled_vcov(chol: np.ndarray, cross: CrossProducts) -> np.ndarray:
    """``(R_X' R_X)^-1`` from the fixed-effects block of the dense factor."""
    r, p = cross.n_random_rest, cross.n_fixed
    return _inverse_from_factor(chol[r : r + p, r : r + p])


def _inverse_from_factor(lower: np.ndarray) -> np.ndarray:
    """``(L L')^-1`` from a lower Cholesky factor ``L`` (empty for an empty one)."""
    p = lower.shape[0]
    if not p:
        return np.zeros((0, 0))
    return cho_solve(lower, np.eye(p), lower=True)


def _symmetric(lower: np.ndarray) -> np.ndarray:
    """Full symmetric blocks from blocks holding their lower triangle, shape (l, p, p)."""
    full = lower + lower.transpose(0, 2, 1)
    idx = np.arange(lower.shape[1])
    full[:, idx, idx] = lower[:, idx, idx]
    return full


def fill_upper(matrix: np.ndarray) -> None:
    """Copy the strict lower triangle of a square matrix onto the upper one, in place."""
    _symmetrize_lower(matrix)


def _symmetrize_lower(matrix: np.ndarray, block: int = 512) -> None:
    """Copy the strict lower triangle onto the upper one, in place, a panel at a time."""
    m = matrix.shape[0]
    for start in range(0, m, block):
        stop = min(start + block, m)
        matrix[start:stop, stop:] = matrix[stop:, start:stop].T
        panel = matrix[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        panel[upper] = panel.T[upper]


def _block_gram(columns: np.ndarray, n_cols: int) -> np.ndarray:
    """Diagonal ``p x p`` blocks of ``C' C`` for column groups of size p."""
    rows = columns.shape[0]
    grouped = columns.reshape(rows, -1, n_cols)
    return np.einsum("rka,rkb->kab", grouped, grouped)
