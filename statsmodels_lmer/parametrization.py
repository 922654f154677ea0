"""The variance parametrizations: theta, the relative factor T, and sd/correlation.

lme4 keeps each random term's relative covariance factor ``T`` (``p x p``,
lower triangular) as the term's slice of theta: the lower triangle read
column by column. The covariance of the term's random effects is
``sigma^2 T T'``; lme4's ``confint``/``profile`` use the standard deviations
and correlations of that covariance instead (``Cv_to_Sv`` / ``Sv_to_Cv``).
This module holds the one implementation of each conversion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

__all__ = [
    "correlation_sds",
    "cov_to_sdcor",
    "factor_from_theta",
    "sdcor_to_cov",
    "sdcor_to_theta",
    "semidefinite_cholesky",
    "theta_from_factor",
    "theta_to_sdcor",
    "tril_colmajor",
]


@cache
def _tril(p: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.tril_indices(p)
    order = np.lexsort((rows, cols))
    rows, cols = rows[order], cols[order]
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def tril_colmajor(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a ``p x p`` lower triangle, column by column.

    This is lme4's order of theta within a term: ``T[0, 0], T[1, 0], ...,
    T[p-1, 0], T[1, 1], ...``. The arrays are read-only and cached.
    """
    return _tril(int(p))


def factor_from_theta(theta_part: np.ndarray, p: int) -> np.ndarray:
    """The lower-triangular ``p x p`` factor ``T`` filled from a term's theta."""
    T = np.zeros((p, p))
    T[tril_colmajor(p)] = theta_part
    return T


def theta_from_factor(T: np.ndarray) -> np.ndarray:
    """A term's theta: the lower triangle of ``T``, column by column."""
    return np.asarray(T)[tril_colmajor(T.shape[0])]


def cov_to_sdcor(cov: np.ndarray) -> np.ndarray:
    """Standard deviations and correlations of a covariance, in theta's positions.

    A diagonal position holds the standard deviation, an off-diagonal one the
    correlation (NaN when one of the two standard deviations is 0).
    """
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    rows, cols = tril_colmajor(cov.shape[0])
    out = np.empty(rows.size)
    for k, (r, c) in enumerate(zip(rows, cols)):
        if r == c:
            out[k] = sd[r]
        else:
            denom = sd[r] * sd[c]
            out[k] = cov[r, c] / denom if denom > 0 else np.nan
    return out


def sdcor_to_cov(values: np.ndarray, p: int) -> np.ndarray:
    """The covariance with the standard deviations and correlations of :func:`cov_to_sdcor`."""
    rows, cols = tril_colmajor(p)
    cor = np.eye(p)
    sd = np.empty(p)
    for v, r, c in zip(values, rows, cols):
        if r == c:
            sd[r] = v
        else:
            cor[r, c] = cor[c, r] = v
    return cor * np.outer(sd, sd)


def semidefinite_cholesky(a: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed).

    Returns None when ``a`` is not positive semi-definite (to a relative
    tolerance of 1e-12 on the pivots).
    """
    p = a.shape[0]
    L = np.zeros_like(a, dtype=float)
    scale = max(float(np.max(np.abs(np.diag(a)))) if p else 0.0, 1e-300)
    for j in range(p):
        d = a[j, j] - L[j, :j] @ L[j, :j]
        rest = a[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]
        if d < -1e-12 * scale:
            return None
        if d <= 1e-12 * scale:  # a zero pivot: the rest of the column must vanish too
            if np.any(np.abs(rest) > 1e-6 * scale):
                return None
            continue
        L[j, j] = math.sqrt(d)
        L[j + 1 :, j] = rest / L[j, j]
    return L


def theta_to_sdcor(
    terms: Sequence[Any], theta_slices: Sequence[slice], theta: np.ndarray, sigma: float
) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: theta and sigma -> (sd's and correlations of every term, sigma).

    Parameters
    ----------
    terms : sequence of RandomTerm
        Anything with ``n_cols`` (the term's ``p``).
    theta_slices : sequence of slice
        Each term's slice of theta.
    theta : ndarray
    sigma : float
    """
    theta = np.asarray(theta, dtype=float)
    parts = []
    for term, sl in zip(terms, theta_slices):
        T = factor_from_theta(theta[sl], term.n_cols)
        parts.append(cov_to_sdcor(sigma**2 * (T @ T.T)))
    return np.concatenate(parts + [np.array([sigma])])


def correlation_sds(terms: Sequence[Any], index: int) -> tuple[int, ...]:
    """The positions of the two sd's that correlation ``index`` couples (sd/cor layout).

    The layout is lme4's (:func:`theta_to_sdcor`): per term, the lower
    triangle column by column, sd's on the diagonal. Empty for an sd or sigma.
    """
    start = 0
    for term in terms:
        p = term.n_cols
        rows, cols = tril_colmajor(p)
        if index < start + rows.size:
            r, c = rows[index - start], cols[index - start]
            if r == c:
                return ()
            diagonal = {int(d): start + k for k, d in enumerate(rows) if rows[k] == cols[k]}
            return diagonal[int(c)], diagonal[int(r)]
        start += rows.size
    return ()


def sdcor_to_theta(terms: Sequence[Any], values: np.ndarray) -> np.ndarray | None:
    """lme4's ``Sv_to_Cv``: (sd's, correlations, sigma) -> theta; None if not PSD."""
    sigma = values[-1]
    out, start = [], 0
    for term in terms:
        p = term.n_cols
        k = p * (p + 1) // 2
        cov = sdcor_to_cov(values[start : start + k], p)
        start += k
        L = semidefinite_cholesky(cov / sigma**2)
        if L is None:
            return None
        out.append(theta_from_factor(L))
    return np.concatenate(out) if out else np.zeros(0)
