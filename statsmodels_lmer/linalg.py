"""LAPACK's triangular and Cholesky solves, called as scipy.linalg calls them.

scipy's ``solve_triangular``, ``cho_factor`` and ``cho_solve`` validate
their input and dispatch over batches before calling LAPACK: about 10 us a
call, against 1 us for LAPACK itself on the small systems of a fit (the
solution, the convergence checks and the Newton step of a small model make
half a dozen such calls). These make the same LAPACK calls with the same
arguments, so their results are the same bit for bit; non-finite input is
refused (ValueError) as scipy refuses it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy.linalg import lapack

from ._parallel import active_threads, blas_threads

__all__ = ["cho_factor", "cho_solve", "r_factor", "solve_triangular", "unit_diagonal_eigenvalues"]

R_FACTOR_BLOCK_ROWS = 4096
"""Rows per block of :func:`r_factor` (at least four times the columns)."""

R_FACTOR_THREADED_WORK = 1e10
"""From this ``n p^2`` on, :func:`r_factor`'s blocks are factored in threads (below, a
thread pool's start cost more than it saved: 120 small factors of a type III table
spent 2.7 s starting threads on a loaded machine)."""


def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if not np.isfinite(a).all():
        raise ValueError("array must not contain infs or NaNs")
    return a


def solve_triangular(
    a: np.ndarray, b: np.ndarray, lower: bool = False, trans: bool = False
) -> np.ndarray:
    """``x`` with ``a x = b`` (``a' x = b`` when ``trans``), ``a`` triangular.

    Raises
    ------
    numpy.linalg.LinAlgError
        ``a`` has a zero on its diagonal.
    """
    a, b = _finite(a), _finite(b)
    if b.size == 0:
        return np.empty_like(b)
    if a.flags.f_contiguous:
        x, info = lapack.dtrtrs(a, b, lower=int(lower), trans=int(trans))
    else:  # LAPACK reads the transpose without a copy: the transposed system
        x, info = lapack.dtrtrs(a.T, b, lower=int(not lower), trans=int(not trans))
    if info > 0:
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    return x


def cho_factor(a: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor ``U`` of ``a = U'U`` (the lower triangle left as it was).

    Raises
    ------
    numpy.linalg.LinAlgError
        ``a`` is not positive definite.
    """
    c, info = lapack.dpotrf(_finite(a), lower=0, clean=0)
    if info > 0:
        raise np.linalg.LinAlgError(f"{info}-th leading minor not positive definite")
    return c


def cho_solve(factor: np.ndarray, b: np.ndarray, lower: bool = False) -> np.ndarray:
    """``x`` with ``a x = b`` from ``a``'s Cholesky factor (upper, or lower when ``lower``)."""
    b = _finite(b)
    if b.size == 0:
        return np.empty_like(b)
    x, _ = lapack.dpotrs(_finite(factor), b, lower=int(lower))
    return x


def unit_diagonal_eigenvalues(matrix: np.ndarray) -> np.ndarray:
    """Eigenvalues of the symmetric ``D M D``, ``D = diag(1 / sqrt(|M_ii|))`` (1 where that
    diagonal is 0 or not finite), in ascending order.

    ``D M D`` has a unit diagonal: its eigenvalues do not depend on the units of the
    parameters ``M`` is a Hessian or information matrix of. Thresholds on eigenvalues
    (Satterthwaite's and Kenward-Roger's pseudo-inverses) compare on them, so that
    measuring ``y`` in cents rather than dollars, or a covariate in days rather than
    hours, does not change which directions count.
    """
    matrix = np.asarray(matrix, dtype=float)
    diagonal = np.abs(np.diag(matrix))
    usable = np.isfinite(diagonal) & (diagonal > 0)
    scales = np.where(usable, 1.0 / np.sqrt(np.where(usable, diagonal, 1.0)), 1.0)
    return np.linalg.eigvalsh(matrix * np.outer(scales, scales))


def r_factor(X: np.ndarray) -> np.ndarray:
    """The R factor of ``X = QR`` (``min(n, p)`` x ``p``, upper triangular), by blocks of rows.

    LAPACK's Householder QR of a tall matrix works in panels the height of
    ``X``, which do not stay in cache: 9.8 s for 2e5 x 433 on one core. The
    R factors of blocks of :data:`R_FACTOR_BLOCK_ROWS` rows (four times the
    columns when more), stacked and factored again (TSQR), give the same
    ``R'R = X'X`` with the same backward stability in 4.5 s. The blocks are
    factored on one BLAS thread each, in as many threads as the work may use
    (:func:`~statsmodels_lmer._parallel.active_threads`): OpenBLAS's own
    threads on these panels took 2 to 10 times longer with another process
    running. Rows of ``R`` may differ in sign from LAPACK's; ``|diag(R)|``
    and ``R'R`` do not.
    """
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    rows = max(R_FACTOR_BLOCK_ROWS, 4 * p)
    if n <= 2 * rows or p == 0:
        return np.linalg.qr(X, mode="r")
    blocks = [X[start : start + rows] for start in range(0, n, rows)]
    if n * p * p < R_FACTOR_THREADED_WORK:  # threads would cost more than they save
        return _reduced(list(map(_block_r, blocks)), map)
    workers = min(active_threads(), len(blocks))  # before the limit below, which it reads
    with blas_threads(1), ThreadPoolExecutor(workers) as pool:
        return _reduced(list(pool.map(_block_r, blocks)), pool.map)


def _reduced(factors: list[np.ndarray], mapper: Any) -> np.ndarray:
    """The R factor of the stacked ``factors``, eight at a time."""
    while len(factors) > 1:
        groups = [factors[i : i + 8] for i in range(0, len(factors), 8)]
        factors = list(mapper(_block_r, map(np.vstack, groups)))
    return factors[0]


def _block_r(block: np.ndarray) -> np.ndarray:
    return np.linalg.qr(block, mode="r")
