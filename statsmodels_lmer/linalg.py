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

import numpy as np
from scipy.linalg import lapack

__all__ = ["cho_factor", "cho_solve", "solve_triangular", "unit_diagonal_eigenvalues"]


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
