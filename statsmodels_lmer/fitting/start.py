"""A starting theta for vector-valued terms from regressions within each level.

lme4 starts every model with a vector-valued term at ``theta = 1`` on the
diagonals and 0 elsewhere. For large fits on the analytic gradient, where one
evaluation costs seconds, a start near the optimum saves a third of the
evaluations; this module estimates one by the method of moments:

1. ``r``: the response (minus any offset) less its least-squares fit on the
   fixed-effect columns.
2. For each term ``t`` and each level ``l`` of its grouping factor with more
   rows than columns and a well-conditioned cross-product, the least-squares
   coefficients ``b_l`` of ``r`` on the term's columns, and the pooled
   residual variance ``s_t^2``.
3. ``Sigma_t = cov(b_l) - s_t^2 mean((Z_l' Z_l)^-1)``: the spread of the
   level coefficients less their average sampling variance.
4. ``sigma^2 = sum_t s_t^2 - (T - 1) var(r)``: within a level of ``t`` the
   residual holds ``sigma^2`` and every other term's variance, while ``r``
   holds them all.
5. ``theta_t``: the Cholesky factor of ``Sigma_t / sigma^2`` (eigenvalues
   below :data:`EIGEN_FLOOR` of the largest raised to it), in lme4's order.

Steps 2-5 work on the term's columns divided by their root mean squares
(the estimate is then mapped back), so the start does not depend on the
columns' units.

It returns None (the caller keeps lme4's start) when too few levels or rows
can be used, or when an estimate is not positive. Terms sharing a grouping
factor are the caller's to exclude (``Lmer`` does: the step 4 argument needs a
factor of its own for every term).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..parametrization import theta_from_factor

__all__ = ["EIGEN_FLOOR", "MIN_LEVELS", "column_rms", "level_regression_theta"]

MIN_LEVELS = 10
"""Levels with a usable regression needed for each term."""

EIGEN_FLOOR = 1e-3
"""Eigenvalues of ``Sigma_t`` are raised to this multiple of the largest."""

CONDITION_LIMIT = 1e8
"""A level's ``Z_l' Z_l`` with a larger condition number is left out."""


def level_regression_theta(
    response: np.ndarray,
    fixed: np.ndarray,
    codes: Sequence[np.ndarray],
    columns: Sequence[np.ndarray],
    n_levels: Sequence[int],
) -> np.ndarray | None:
    """The moment estimate of theta described in the module docstring, or None.

    Parameters
    ----------
    response : ndarray, shape (n,)
        The response less any offset.
    fixed : ndarray, shape (n, p)
        The fixed-effect model matrix.
    codes : sequence of ndarray
        Each term's level index of every row.
    columns : sequence of ndarray
        Each term's raw model columns, shape ``(n, p_t)``.
    n_levels : sequence of int
        Each term's number of levels.

    Returns
    -------
    ndarray or None
        Theta in lme4's order (terms in the order given).
    """
    y = np.asarray(response, dtype=float)
    X = np.asarray(fixed, dtype=float)
    rank = 0
    if X.shape[1]:
        coefs, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
        y = y - X @ coefs
    total = float(y @ y) / max(len(y) - rank, 1)
    pieces, within, scales = [], [], []
    for term_codes, term_columns, levels in zip(codes, columns, n_levels):
        Z, scale = _unit_columns(np.asarray(term_columns, dtype=float))
        found = _level_moments(y, np.asarray(term_codes), Z, int(levels))
        if found is None:
            return None
        pieces.append(found[0])
        within.append(found[1])
        scales.append(scale)
    sigma2 = sum(within) - (len(within) - 1) * total
    if not (np.isfinite(sigma2) and sigma2 > 1e-10 * max(total, 1e-300)):
        return None
    thetas = [_theta_of(cov / sigma2, scale) for cov, scale in zip(pieces, scales)]
    if any(theta is None for theta in thetas):
        return None
    return np.concatenate(thetas)


def column_rms(Z: np.ndarray) -> np.ndarray:
    """Each column's root mean square, 1 where it is 0, not finite or has no rows.

    The unit of a random-effects column: this module's regressions and
    :mod:`~statsmodels_lmer.fitting.rescale` work in it.
    """
    Z = np.asarray(Z, dtype=float)
    if not len(Z):
        return np.ones(Z.shape[1])
    rms = np.sqrt(np.mean(Z * Z, axis=0))
    rms[~(np.isfinite(rms) & (rms > 0))] = 1.0
    return rms


def _unit_columns(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The term's columns divided by their root mean squares, and those.

    The regressions, their condition limit and the eigenvalue floor then do not
    depend on the columns' units: a slope on ``x * 1e-6`` gets the start of a
    slope on ``x``, scaled (its theta is 1e6 times larger).
    """
    scale = column_rms(Z)
    return Z / scale, scale


def _level_moments(
    y: np.ndarray, codes: np.ndarray, Z: np.ndarray, levels: int
) -> tuple[np.ndarray, float] | None:
    """``(Sigma_t, s_t^2)`` from the regressions within each level, or None."""
    p = Z.shape[1]
    counts = np.bincount(codes, minlength=levels)
    cross = np.empty((levels, p, p))
    for a in range(p):
        for b in range(a, p):
            cross[:, a, b] = cross[:, b, a] = np.bincount(codes, Z[:, a] * Z[:, b], levels)
    zy = np.stack([np.bincount(codes, Z[:, a] * y, levels) for a in range(p)], axis=1)
    yy = np.bincount(codes, y * y, levels)
    usable = counts > p
    if p > 1 and np.any(usable):
        usable[usable] = np.linalg.cond(cross[usable]) < CONDITION_LIMIT
    elif p == 1:
        usable &= cross[:, 0, 0] > 0
    n_usable = int(np.count_nonzero(usable))
    if n_usable < MIN_LEVELS or counts[usable].sum() * 2 < len(y):
        return None
    inverse = np.linalg.inv(cross[usable])
    coefs = np.einsum("lab,lb->la", inverse, zy[usable])
    rss = yy[usable] - np.einsum("la,la->l", coefs, zy[usable])
    s2 = float(rss.sum()) / float(counts[usable].sum() - p * n_usable)
    spread = np.atleast_2d(np.cov(coefs, rowvar=False))
    return spread - s2 * inverse.mean(axis=0), s2


def _theta_of(relative: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    """lme4's theta of a relative covariance of unit columns (:func:`_unit_columns`),
    its small eigenvalues raised, in the columns' own units; None if not positive."""
    values, vectors = np.linalg.eigh((relative + relative.T) / 2)
    if not (np.all(np.isfinite(values)) and values[-1] > 0):
        return None
    values = np.maximum(values, EIGEN_FLOOR * values[-1])
    factor = np.linalg.cholesky((vectors * values) @ vectors.T)
    return theta_from_factor(factor / scale[:, None])
