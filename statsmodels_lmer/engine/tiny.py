"""The criterion of tiny models in one dense factorization (sleepstudy, Penicillin, Pastes).

When all random effects, the fixed effects and the response together number
at most :data:`TINY_ORDER`, the whole system::

    [Lambda' Z'WZ Lambda + I   Lambda' Z'W[X y]]
    [[X y]'WZ Lambda           [X y]'W[X y]    ]

is a small dense matrix: scaling it by theta and one ``dpotrf`` cost fewer
Python calls than eliminating the first term block by block (half the time
of an evaluation of sleepstudy). The scaled matrix is a quadratic form in
``(theta, 1)``; its coefficient matrices are tabulated once
(:func:`parameter_products`), so an evaluation forms it in one
matrix-vector product (sleepstudy: 13.7 us an evaluation instead of 16.9).
The diagonal of the factor gives ``log|L_Z|^2``, ``log|R_X|^2`` and the
penalized residual sum of squares as the blocked path does. Only the
criterion is computed here; solutions, variances and derivatives stay on the
blocked path.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg as sla

from ..parametrization import tril_colmajor
from ..terms import RandomTerm
from .blocks import CrossProducts

__all__ = ["COMBINATION_MAX_BYTES", "TINY_ORDER", "TinySystem", "parameter_products", "tiny_system"]

TINY_ORDER = 64
"""Largest order ``q + p + 1`` evaluated by :class:`TinySystem` (two ``N x N``
products cost about 15 us at 64 and 140 us at 128, one core)."""

COMBINATION_MAX_BYTES = 2**20
"""Largest table of :func:`parameter_products` kept (``(K+1)(K+2)/2`` arrays of ``N x N``)."""


class TinySystem:
    """The whole system ``[Z X y]' W [Z X y]`` as a dense symmetric matrix, scaled per theta.

    Parameters
    ----------
    cross : CrossProducts
        The engine's cross-products (dense path: no sparse factorization).
    terms : list of RandomTerm
        The random terms in the engine's order (the first eliminated first).
    theta_slices : list of slice
        Each term's slice of theta, in the same order.
    """

    def __init__(
        self, cross: CrossProducts, terms: list[RandomTerm], theta_slices: list[slice]
    ) -> None:
        self.n_random = cross.first_levels * cross.first_cols + cross.n_random_rest
        self.n_fixed = cross.n_fixed
        self.order = self.n_random + cross.size_rest - cross.n_random_rest
        self.matrix = _full_matrix(cross)
        self.scalar = all(term.n_cols == 1 for term in terms)
        self.positions, self.theta_index = _lambda_entries(terms, theta_slices, self.order)
        n = self.order
        self.ones = np.arange(self.n_random, n) * (n + 1)  # Lambda's identity for [X y]
        n_theta = max((part.stop for part in theta_slices), default=0)
        pairs = (n_theta + 1) * (n_theta + 2) // 2
        self.products = None
        if pairs * n * n * 8 <= COMBINATION_MAX_BYTES:
            self.products, self.first, self.second = parameter_products(
                self.matrix, self.positions, self.theta_index, self.ones, n_theta
            )
            # the identity of Lambda' Z'Z Lambda + I rides on the constant term (c_K^2 = 1)
            self.products[-1, : self.n_random * (n + 1) : n + 1] += 1.0
        self.sections = np.array([0, self.n_random])

    def pieces(self, theta: np.ndarray) -> tuple[float, float, float] | None:
        """``log|L_Z|^2``, ``log|R_X|^2`` and the PWRSS at ``theta``; None if not positive."""
        n, q, p = self.order, self.n_random, self.n_fixed
        if self.products is not None:
            coefficients = np.concatenate((theta, _ONE))
            system = (
                (coefficients[self.first] * coefficients[self.second]) @ self.products
            ).reshape(n, n)
        elif self.scalar:
            scale = np.ones(n)
            scale[:q] = theta[self.theta_index]
            system = scale[:, None] * self.matrix
            system *= scale
        else:
            lam = np.zeros((n, n))
            flat = lam.reshape(-1)  # a view: faster than the flat iterator
            flat[self.positions] = theta[self.theta_index]
            flat[self.ones] = 1.0
            system = lam.T @ self.matrix @ lam
        diag = system.reshape(-1)[:: n + 1]  # a view of the diagonal
        if self.products is None:
            diag[:q] += 1.0
        # The transpose is Fortran-ordered: LAPACK factors it in place.
        _, info = sla.lapack.dpotrf(system.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return None
        logs = np.log(diag[: n - 1])
        pwrss = float(diag[-1]) ** 2
        if not p:
            return 2.0 * float(logs.sum()), 0.0, pwrss
        sums = np.add.reduceat(logs, self.sections)  # the random and the fixed part
        return 2.0 * float(sums[0]), 2.0 * float(sums[1]), pwrss


_ONE = np.ones(1)
"""The constant term's coefficient in :meth:`TinySystem.pieces`."""


def tiny_system(
    cross: CrossProducts, terms: list[RandomTerm], theta_slices: list[slice]
) -> TinySystem | None:
    """A :class:`TinySystem` when the model is tiny and on the dense path, else None.

    One scalar term is cheap on the blocked path (no Schur complement to
    form): there only up to half :data:`TINY_ORDER` (measured break-even).
    """
    order = cross.first_levels * cross.first_cols + cross.size_rest
    one_scalar = cross.n_random_rest == 0 and cross.first_cols == 1
    if order > TINY_ORDER // (2 if one_scalar else 1) or cross.sparse is not None:
        return None
    return TinySystem(cross, terms, theta_slices)


def parameter_products(
    matrix: np.ndarray,
    positions: np.ndarray,
    theta_index: np.ndarray,
    ones: np.ndarray,
    n_theta: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Lambda' M Lambda`` as a quadratic form in ``c = (theta, 1)``, tabulated.

    ``Lambda = sum_k theta_k E_k + F`` with ``E_k`` the entries of theta
    element ``k`` and ``F`` the identity on ``[X y]``, so
    ``Lambda' M Lambda = sum_{a <= b} c_a c_b G_ab`` with
    ``G_aa = B_a' M B_a`` and ``G_ab = B_a' M B_b + B_b' M B_a``
    (``B = E_0, ..., E_{K-1}, F``). One evaluation is then a single
    matrix-vector product (about 3 us for sleepstudy, against 6 us for
    building ``Lambda`` and two products).

    Each ``B_a`` has at most one entry per column (a theta element sits once
    in each level's block, the levels' blocks in columns of their own), so
    ``(B_a' M B_b)[i, j] = M[s_a(i), s_b(j)]`` with ``s_a(i)`` the row of
    column ``i``'s entry (a zero row where there is none): the tables are
    read off ``M`` by indexing, as the products of ones and zeros gave them
    exactly (a column gather, then a gather of whole rows: 27 us for
    sleepstudy, against 62 us for the products).

    Returns
    -------
    products : ndarray, shape (P, N * N)
        The ``G_ab``, ``P = (K + 1)(K + 2) / 2``.
    first, second : ndarray of int
        ``a`` and ``b`` of each row.
    """
    n, k = matrix.shape[0], n_theta + 1
    padded = np.zeros((n + 1, n + 1))  # row and column n: the zeros of a column without entry
    padded[:n, :n] = matrix
    source = np.full((k, n), n)  # s_a(i)
    rows, cols = np.divmod(positions, n)
    source[theta_index, cols] = rows
    source[n_theta, ones % n] = ones // n
    flat = source.ravel()
    every = padded[:, flat][flat].reshape(k, n, k, n).transpose(0, 2, 1, 3)  # B_a' M B_b
    first, second = np.array(list(itertools.combinations_with_replacement(range(k), 2))).T
    products = every[first, second]
    apart = first != second  # B_b' M B_a is the transpose of B_a' M B_b (M symmetric)
    products[apart] += every[second[apart], first[apart]]
    return products.reshape(first.size, n * n), first, second


def _full_matrix(cross: CrossProducts) -> np.ndarray:
    """``[Z_1 R]' W [Z_1 R]`` as a dense symmetric array (first term's levels first).

    Its lower triangle is filled, then mirrored (adding the zeros above it).
    """
    l1, p1, m = cross.first_levels, cross.first_cols, cross.size_rest
    q1 = l1 * p1
    n = q1 + m
    lower = np.zeros((n, n))
    flat = lower.reshape(-1)  # a view
    rows, cols = tril_colmajor(p1)  # each level's block, lower triangle
    base = np.arange(l1)[:, None] * p1
    blocks = cross.a11_classes[cross.class_of_level]
    flat[((base + rows) * n + base + cols).ravel()] = blocks[:, rows, cols].ravel()
    lower[q1:, :q1] = cross.a_r1.toarray()
    rows, cols = np.divmod(cross.fill_positions, m)
    flat[(q1 + rows) * n + q1 + cols] = cross.fill_values
    full = lower + lower.T
    full.reshape(-1)[:: n + 1] = flat[:: n + 1]  # the diagonal once
    return full


def _lambda_entries(
    terms: list[RandomTerm], theta_slices: list[slice], order: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of ``Lambda``'s entries in an ``order x order`` array and their theta.

    For scalar terms only the diagonal's theta (one per random effect) matter.
    """
    positions, index, start = [], [], 0
    for term, part in zip(terms, theta_slices):
        p, levels = term.n_cols, term.n_levels
        rows, cols = tril_colmajor(p)
        base = start + np.arange(levels)[:, None] * p
        positions.append(((base + rows) * order + base + cols).ravel())
        index.append(np.tile(part.start + np.arange(rows.size), levels))
        start += levels * p
    return np.concatenate(positions), np.concatenate(index)
