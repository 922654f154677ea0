"""The blocked cross-product matrix ``A = [Z X y]' W [Z X y]``, computed once.

The engine splits the columns into the *first* random term (the one with the
most random effects) and the *rest* ``R = [Z_2 ... Z_k, X, y]``. The first
block ``Z_1' W Z_1`` is block diagonal (one ``p x p`` block per level), so it
is eliminated level by level; what remains is the dense Schur complement

    Lambda_R' (A_RR - A_R1 Wt A_1R) Lambda_R + I_r,

where ``Wt = blockdiag(T (T' A11_k T + I)^-1 T')`` depends on theta only
through the first term. ``Wt_k`` depends on level ``k`` only through its block
``A11_k``, so levels with equal blocks share a *weight class*; for balanced
designs there is one class. ``A_R1 Wt A_1R`` is then formed either densely
(BLAS) or from precomputed products of nonzero pairs, whichever is cheaper.
Nothing of length ``n`` is touched after construction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

from ..terms import RandomTerm, compact_codes

__all__ = [
    "ClassesProduct",
    "CrossProducts",
    "DenseProduct",
    "NestedLayout",
    "PairsProduct",
    "RawSums",
    "build_cross_products",
    "engine_order",
    "finalize_cross_products",
    "level_blocks",
    "model_blocks",
    "raw_sums",
]

# Rough costs in seconds (2-core machine), used only to choose between exact
# strategies: a bincount entry, a dense multiply-add in BLAS, a memory-bound
# element pass. Class products are kept only up to this many bytes.
_SECONDS_PER_PAIR = 1.5e-9
_SECONDS_PER_FLOP = 3.0e-11
_SECONDS_PER_ELEMENT = 1.0e-9
_MAX_CLASS_PRODUCT_BYTES = 2 * 1024**3
_SMALL_SECONDS = 5e-5
_SECONDS_PER_PAIR_SETUP = 1.0e-7  # building and merging the pair products
_EXPECTED_EVALUATIONS = 60


class PairsProduct:
    """``A_R1 Wt A_1R`` from precomputed products of nonzero pairs.

    The products ``a[r, k a] a[s, k b]`` of the nonzero entries in each level's
    columns are summed per weight class once (:func:`_pair_products`); an
    evaluation is one ``bincount`` of those sums times the class weights.
    Suits sparse crossings such as InstEval.
    """

    name = "pairs"

    def __init__(self, cross: CrossProducts) -> None:
        self.size = cross.size_rest
        self.flat, self.value, self.weight = _pair_products(cross)
        self.shape = (cross.first_cols, cross.first_cols)
        self.n_weights = len(cross.class_counts) * cross.first_cols**2

    @property
    def diagonal(self) -> np.ndarray:
        """Positions of the pairs on the diagonal (row == column), found when first needed."""
        found = self.__dict__.get("_diagonal")
        if found is None:
            rows, cols = np.divmod(self.flat, self.size)
            found = self.__dict__["_diagonal"] = np.flatnonzero(rows == cols)
        return found

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """The product (lower triangle) for class weights ``(c, p1, p1)``; a new array."""
        m = self.size
        values = self.value * weights.reshape(-1)[self.weight]
        return np.bincount(self.flat, values, minlength=m * m).reshape(m, m)

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """``H[c, a, b] = <G_cab, Q>`` for a symmetric ``Q``: the adjoint of the product.

        Only lower-triangle pairs are stored, so the upper ones are the
        transposed class weights; diagonal pairs are counted once.
        """
        size = self.n_weights
        values = self.value * q.reshape(-1)[self.flat]
        lower = np.bincount(self.weight, values, minlength=size).reshape(-1, *self.shape)
        diag = self.diagonal
        once = np.bincount(self.weight[diag], values[diag], minlength=size)
        return lower + lower.transpose(0, 2, 1) - once.reshape(lower.shape)


class ClassesProduct:
    """``A_R1 Wt A_1R`` as a combination of one dense product per weight class.

    ``G[c, a, b] = sum over levels k of class c of A[:, k a] A[:, k b]'`` is
    computed once; an evaluation is one matrix-vector product with the class
    weights. Suits dense crossings with few classes (1e4 x 1e3 crossed levels).
    """

    name = "classes"

    def __init__(self, cross: CrossProducts) -> None:
        self.size = cross.size_rest
        self.products = _class_products(cross)
        self.n_classes, self.first_cols = len(cross.class_counts), cross.first_cols

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """The product (full) for class weights ``(c, p1, p1)``; a new array."""
        m = self.size
        flat = self.products.reshape(len(self.products), m * m)
        return blas.dgemv(1.0, flat.T, weights.reshape(-1)).reshape(m, m)

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """``H[c, a, b] = <G_cab, Q>``: the adjoint of the product, shape (c, p1, p1)."""
        m = self.size
        flat = self.products.reshape(len(self.products), m * m)
        # flat.T is Fortran-ordered (no copy), as in the product
        out = blas.dgemv(1.0, flat.T, np.ascontiguousarray(q).reshape(-1), trans=1)
        return out.reshape(self.n_classes, self.first_cols, self.first_cols)


class DenseProduct:
    """``(A_R1 Wt) A_1R`` by BLAS at every evaluation.

    For a scalar first term ``Wt >= 0``, so the product is the ``syrk``
    ``(A sqrt(Wt)) (A sqrt(Wt))'``. Used for tiny problems (fewest roundings)
    and dense crossings with many weight classes. The scaled copy of ``A_R1``
    lives in a per-thread buffer (fresh pages are slow to fault in; one buffer
    per thread keeps a model usable from several threads at once).
    """

    name = "dense"

    def __init__(self, cross: CrossProducts) -> None:
        self.a_r1 = cross.a_r1.toarray()
        self.class_of_level = cross.class_of_level
        self.first_levels, self.first_cols = cross.first_levels, cross.first_cols
        self.n_classes = len(cross.class_counts)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _buffer(self) -> np.ndarray:
        buffer = getattr(self._local, "scaled", None)
        if buffer is None:
            buffer = self._local.scaled = np.empty_like(self.a_r1)
        return buffer

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """The product (lower triangle at least) for class weights; a new array."""
        # Products use scipy's BLAS, as the Cholesky factorization that follows
        # does: alternating numpy's and scipy's OpenBLAS thread pools costs
        # more than the product itself (measured: 100 ms -> 230 ms).
        per_level = weights[self.class_of_level]  # (l1, p1, p1)
        if self.first_cols == 1:
            # upper triangle of the Fortran result = lower triangle here
            scaled = self._buffer()
            np.multiply(self.a_r1, np.sqrt(per_level[:, 0, 0]), out=scaled)
            return blas.dsyrk(1.0, scaled.T, trans=1).T
        m = self.a_r1.shape[0]
        dense = self.a_r1.reshape(m, self.first_levels, self.first_cols)
        scaled = np.einsum("mka,kab->mkb", dense, per_level).reshape(m, -1)
        return blas.dgemm(1.0, scaled.T, self.a_r1.T, trans_a=1)

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """``H[c, a, b] = sum over levels k of class c of A_(k a)' Q A_(k b)``, (c, p1, p1)."""
        m, p1 = self.a_r1.shape[0], self.first_cols
        qa = blas.dgemm(1.0, q, self.a_r1)  # Q A, (m, l1 p1)
        shape = (m, self.first_levels, p1)
        per_level = np.einsum("sja,sjb->jab", self.a_r1.reshape(shape), qa.reshape(shape))
        n_classes = self.n_classes
        out = np.empty((n_classes, p1, p1))
        for a in range(p1):
            for b in range(p1):
                out[:, a, b] = np.bincount(
                    self.class_of_level, per_level[:, a, b], minlength=n_classes
                )
        return out


SchurProduct = PairsProduct | ClassesProduct | DenseProduct
"""The strategies that form ``A_R1 Wt A_1R``."""

_STRATEGIES: dict[str, type] = {
    "pairs": PairsProduct,
    "classes": ClassesProduct,
    "dense": DenseProduct,
}


@dataclass(eq=False)
class CrossProducts:
    """Cross-products of the model matrices in the engine's block layout.

    Attributes
    ----------
    first_levels, first_cols : int
        Levels ``l1`` and columns ``p1`` of the first (eliminated) term.
    a11_classes : ndarray, shape (c, p1, p1)
        The distinct per-level blocks of ``Z_1' W Z_1``.
    class_of_level : ndarray of int, shape (l1,)
        Weight class of each level of the first term.
    class_counts : ndarray, shape (c,)
        Number of levels in each weight class.
    a_r1 : scipy.sparse.csc_matrix, shape (m, l1 * p1)
        ``R' W Z_1`` with ``R = [Z_2 ... Z_k, X, y]``.
    a_rr : ndarray, shape (m, m)
        ``R' W R`` (dense).
    rest_sizes : list of (n_levels, n_cols)
        Layout of the random part of ``R``.
    n_random_rest : int
        Number of random effects in ``R`` (``r``).
    n_fixed : int
        Number of fixed-effects columns ``p``.
    nobs : int
        Number of observations.
    sum_log_weights : float
        ``log |W|``.
    product : PairsProduct, ClassesProduct or DenseProduct
        How ``A_R1 Wt A_1R`` is formed (set by :func:`build_cross_products`).
    nested : NestedLayout or None
        The compact layout when the one rest term is nested in the first.
    """

    first_levels: int
    first_cols: int
    a11_classes: np.ndarray
    class_of_level: np.ndarray
    class_counts: np.ndarray
    a_r1: sp.csc_matrix
    a_rr: np.ndarray
    rest_sizes: list[tuple[int, int]]
    n_random_rest: int
    n_fixed: int
    nobs: int
    sum_log_weights: float
    product: SchurProduct | None = None
    nested: NestedLayout | None = None

    @property
    def size_rest(self) -> int:
        """Order ``m`` of the dense Schur complement."""
        return self.a_rr.shape[0]

    @property
    def strategy(self) -> str:
        """Name of the product strategy: ``"pairs"``, ``"classes"`` or ``"dense"``."""
        return "" if self.product is None else self.product.name

    def schur_product(self, weights: np.ndarray) -> np.ndarray:
        """``A_R1 Wt A_1R`` (lower triangle at least) for class weights ``(c, p1, p1)``.

        A new array at every call (callers may overwrite it).
        """
        return self.product(weights)

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """The adjoint of :meth:`schur_product`: ``<d product / d Wt[c, a, b], Q>``.

        ``H[c, a, b] = sum over levels k of class c of A_R(k a)' Q A_R(k b)``
        for a symmetric ``(m, m)`` matrix ``Q``; shape ``(c, p1, p1)``. Used
        by the analytic gradient (:mod:`statsmodels_lmer.engine.gradient`).
        """
        return self.product.schur_adjoint(q)


@dataclass(eq=False)
class NestedLayout:
    """Compact layout of the Schur complement when the rest term is nested.

    With one rest term whose levels each contain whole levels of the first
    term (classrooms within schools), the random part of the Schur complement
    is block diagonal: ``l2`` blocks of ``p2 x p2``. Its entries are kept as
    ``D`` (those blocks), ``B`` (fixed-and-response rows against the random
    columns) and ``C`` (fixed-and-response block), so an evaluation is linear
    in the number of levels instead of cubic.

    Attributes
    ----------
    levels, cols : int
        ``l2`` and ``p2`` of the rest term.
    pair_index : ndarray
        Compact position of each pair product of ``pairs``.
    pairs : PairsProduct
        The pair products, summed into the compact layout at each evaluation.
    a_d, a_b, a_c : ndarray
        The cross-products in the compact layout: (l2, p2, p2), (k, l2 p2), (k, k)
        with ``k = p + 1``.
    """

    levels: int
    cols: int
    pair_index: np.ndarray
    pairs: PairsProduct
    a_d: np.ndarray
    a_b: np.ndarray
    a_c: np.ndarray

    @property
    def size(self) -> int:
        """Length of the compact vector."""
        k = self.a_c.shape[0]
        return self.a_d.size + k * self.a_b.shape[1] + k * k

    def schur_compact(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``A_R1 Wt A_1R`` in the compact layout: its (D, B, C) parts."""
        values = self.pairs.value * weights.reshape(-1)[self.pairs.weight]
        return self.split(np.bincount(self.pair_index, values, minlength=self.size))

    def split(self, compact: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(D, B, C) views of a compact vector."""
        k = self.a_c.shape[0]
        n_d, n_b = self.a_d.size, k * self.a_b.shape[1]
        return (
            compact[:n_d].reshape(self.a_d.shape),
            compact[n_d : n_d + n_b].reshape(self.a_b.shape),
            compact[n_d + n_b :].reshape(k, k),
        )


def _nested_layout(
    cross: CrossProducts, l2: int, p2: int, pairs: PairsProduct
) -> NestedLayout | None:
    """The compact layout, or None when the rest term (l2 levels, p2 columns) is not nested."""
    a = cross.a_r1
    r, m = cross.n_random_rest, cross.size_rest
    random = a.indices < r
    column = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
    level = a.indices[random] // p2
    first_level = column[random] // cross.first_cols
    owner = np.full(cross.first_levels, -1)
    owner[first_level] = level
    if np.any(owner[first_level] != level):
        return None  # a first-term level meets several rest levels: crossed
    rows, cols = np.divmod(pairs.flat, m)
    index = _compact_index(rows, cols, r, p2, m)
    if np.any(index < 0):
        return None
    a_rr = cross.a_rr
    blocks = a_rr[:r, :r].reshape(l2, p2, l2, p2)
    a_d = np.ascontiguousarray(blocks[np.arange(l2), :, np.arange(l2), :])
    return NestedLayout(l2, p2, index, pairs, a_d, a_rr[r:, :r].copy(), a_rr[r:, r:].copy())


def _compact_index(rows: np.ndarray, cols: np.ndarray, r: int, p2: int, m: int) -> np.ndarray:
    """Compact position of lower-triangle entries (row >= col); -1 if off the layout."""
    k = m - r
    l2 = r // p2
    n_d = l2 * p2 * p2
    out = np.full(rows.shape, -1, dtype=np.int64)
    both_random = (rows < r) & (cols < r)
    same_block = both_random & (rows // p2 == cols // p2)
    block = rows[same_block] // p2
    out[same_block] = block * p2 * p2 + (rows[same_block] % p2) * p2 + cols[same_block] % p2
    mixed = (rows >= r) & (cols < r)
    out[mixed] = n_d + (rows[mixed] - r) * r + cols[mixed]
    fixed = (rows >= r) & (cols >= r)
    out[fixed] = n_d + k * r + (rows[fixed] - r) * k + (cols[fixed] - r)
    return out


def engine_order(terms: list[RandomTerm]) -> list[int]:
    """Indices of the terms with the largest first (by random effects)."""
    first = max(range(len(terms)), key=lambda i: (terms[i].n_random, -i))
    return [first] + [i for i in range(len(terms)) if i != first]


def build_cross_products(
    terms: list[RandomTerm],
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    strategy: str | None = None,
) -> CrossProducts:
    """Compute all cross-products once, in the engine's block layout.

    Parameters
    ----------
    terms : list of RandomTerm
        Random terms in the engine's order (see :func:`engine_order`).
    X : ndarray, shape (n, p)
        Fixed-effects model matrix.
    y : ndarray, shape (n,)
        Response, with any offset already subtracted.
    weights : ndarray, shape (n,), optional
        Prior weights (all positive).
    strategy : {None, "pairs", "classes", "dense"}
        How ``A_R1 Wt A_1R`` is formed; ``None`` picks the cheapest.

    Returns
    -------
    CrossProducts
    """
    return finalize_cross_products(raw_sums(terms, X, y, weights), strategy)


@dataclass(eq=False)
class RawSums:
    """The sums over rows behind :class:`CrossProducts`, before any choice is made.

    Every array is a sum over rows, so the sums of two blocks of rows add up
    (``a + b``) to the sums of their union: this is what one partition of a
    distributed data frame contributes. :func:`finalize_cross_products` then
    finds the weight classes, the product strategy and the nested layout.

    Attributes
    ----------
    a11 : ndarray, shape (l1, p1, p1)
        Per-level blocks of ``Z_1' W Z_1``.
    a_r1 : scipy.sparse.csc_matrix, shape (m, l1 * p1)
        ``R' W Z_1`` with ``R = [Z_2 ... Z_k, X, y]``.
    a_rr : ndarray, shape (m, m)
        ``R' W R``.
    rest_sizes : list of (n_levels, n_cols)
        Layout of the random part of ``R``.
    n_fixed : int
        Number of fixed-effects columns ``p``.
    nobs : int
        Number of rows.
    sum_log_weights : float
        ``log |W|``.
    """

    a11: np.ndarray
    a_r1: sp.csc_matrix
    a_rr: np.ndarray
    rest_sizes: list[tuple[int, int]]
    n_fixed: int
    nobs: int
    sum_log_weights: float

    @property
    def n_random_rest(self) -> int:
        """Number of random effects in ``R`` (``r``)."""
        return sum(levels * cols for levels, cols in self.rest_sizes)

    def __add__(self, other: RawSums) -> RawSums:
        if (
            self.a11.shape != other.a11.shape
            or self.a_rr.shape != other.a_rr.shape
            or self.rest_sizes != other.rest_sizes
        ):
            raise ValueError("cannot add the sums of models with different layouts")
        return RawSums(
            self.a11 + other.a11,
            _add_sparse(self.a_r1, other.a_r1),
            self.a_rr + other.a_rr,
            list(self.rest_sizes),
            self.n_fixed,
            self.nobs + other.nobs,
            self.sum_log_weights + other.sum_log_weights,
        )

    def drop_fixed(self, columns: list[int]) -> RawSums:
        """The sums without some fixed-effects columns (positions in ``X``)."""
        if not columns:
            return self
        r, m = self.n_random_rest, self.a_rr.shape[0]
        drop = {r + j for j in columns}
        keep = np.array([i for i in range(m) if i not in drop])
        return RawSums(
            self.a11,
            self.a_r1[keep].tocsc(),
            self.a_rr[np.ix_(keep, keep)].copy(),
            list(self.rest_sizes),
            self.n_fixed - len(set(columns)),
            self.nobs,
            self.sum_log_weights,
        )


def _add_sparse(a: sp.spmatrix, b: sp.spmatrix) -> sp.csc_matrix:
    """``a + b`` keeping every stored entry (scipy's ``+`` drops exact zeros).

    Stored entries mark the observed level pairs, which the strategies count.
    """
    a, b = a.tocoo(), b.tocoo()
    out = sp.coo_matrix(
        (
            np.concatenate([a.data, b.data]),
            (np.concatenate([a.row, b.row]), np.concatenate([a.col, b.col])),
        ),
        shape=a.shape,
    ).tocsc()
    out.sum_duplicates()
    out.sort_indices()
    return out


def raw_sums(
    terms: list[RandomTerm],
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
) -> RawSums:
    """The additive sums of some rows (see :class:`RawSums`).

    Parameters are those of :func:`build_cross_products`; the terms' level
    codes index their full level sets, so that sums over different rows line up.
    """
    n = len(y)
    root_w = np.ones(n) if weights is None else np.sqrt(weights)
    first, rest = terms[0], terms[1:]
    z1 = _weighted_columns(first, root_w)
    xy = np.column_stack([X, y]) * root_w[:, None]
    z_rest = [_weighted_columns(t, root_w) for t in rest]
    return RawSums(
        a11=level_blocks(first.codes, z1, first.n_levels),
        a_r1=_rest_by_first(rest, z_rest, xy, first, z1),
        a_rr=_rest_by_rest(rest, z_rest, xy),
        rest_sizes=[(t.n_levels, t.n_cols) for t in rest],
        n_fixed=X.shape[1],
        nobs=n,
        sum_log_weights=0.0 if weights is None else float(np.sum(np.log(weights))),
    )


def finalize_cross_products(raw: RawSums, strategy: str | None = None) -> CrossProducts:
    """:class:`CrossProducts` from summed :class:`RawSums`.

    Groups the first term's levels into weight classes, picks the product
    strategy (the one asked for, or the cheapest) and, with one rest term
    nested in the first, the compact nested layout.
    """
    classes, class_of_level, counts = _weight_classes(raw.a11)
    levels, cols = raw.a11.shape[0], raw.a11.shape[1]
    cross = CrossProducts(
        first_levels=levels,
        first_cols=cols,
        a11_classes=classes,
        class_of_level=class_of_level,
        class_counts=counts,
        a_r1=raw.a_r1,
        a_rr=raw.a_rr,
        rest_sizes=list(raw.rest_sizes),
        n_random_rest=raw.n_random_rest,
        n_fixed=raw.n_fixed,
        nobs=raw.nobs,
        sum_log_weights=raw.sum_log_weights,
    )
    cross.product = _choose_strategy(cross, strategy)
    if isinstance(cross.product, PairsProduct) and len(raw.rest_sizes) == 1:
        cross.nested = _nested_layout(cross, *raw.rest_sizes[0], cross.product)
    return cross


def level_blocks(codes: np.ndarray, z: np.ndarray, n_levels: int) -> np.ndarray:
    """Per-level blocks of ``z' z`` (``Z' W Z`` for weighted columns), shape (l, p, p)."""
    p = z.shape[1]
    blocks = np.empty((n_levels, p, p))
    for a in range(p):
        for b in range(a + 1):
            blocks[:, a, b] = np.bincount(codes, z[:, a] * z[:, b], minlength=n_levels)
            blocks[:, b, a] = blocks[:, a, b]
    return blocks


def _weight_classes(a11: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = a11.reshape(len(a11), -1)
    classes, class_of_level, counts = np.unique(
        flat, axis=0, return_inverse=True, return_counts=True
    )
    p = a11.shape[1]
    return classes.reshape(-1, p, p), class_of_level.ravel(), counts.astype(float)


def _weighted_columns(term: RandomTerm, root_w: np.ndarray) -> np.ndarray:
    return term.Z * root_w[:, None]


def _crossed_block(a: RandomTerm, za: np.ndarray, b: RandomTerm, zb: np.ndarray) -> sp.csr_matrix:
    """``Z_a' W Z_b`` for two terms, summed over the observed level pairs.

    Linear in n (bincounts over the distinct (level a, level b) pairs), where
    a sparse matrix product would sort n entries.
    """
    if a is b:
        keys, index = np.arange(a.n_levels), a.codes
        level_a = level_b = keys
    else:
        keys, index = compact_codes(a.codes * b.n_levels + b.codes, a.n_levels * b.n_levels)
        level_a, level_b = np.divmod(keys, b.n_levels)
    pa, pb = za.shape[1], zb.shape[1]
    data, rows, cols = [], [], []
    for i in range(pa):
        for j in range(pb):
            data.append(np.bincount(index, za[:, i] * zb[:, j], minlength=len(keys)))
            rows.append(level_a * pa + i)
            cols.append(level_b * pb + j)
    return sp.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(a.n_levels * pa, b.n_levels * pb),
    )


def _by_columns(term: RandomTerm, z: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``Z_t' W [X y]``, shape (l p, p_x + 1)."""
    p = z.shape[1]
    out = np.empty((term.n_levels * p, xy.shape[1]))
    for a in range(p):
        for j in range(xy.shape[1]):
            out[a::p, j] = np.bincount(term.codes, z[:, a] * xy[:, j], minlength=term.n_levels)
    return out


def _rest_by_first(
    rest: list[RandomTerm],
    z_rest: list[np.ndarray],
    xy: np.ndarray,
    first: RandomTerm,
    z1: np.ndarray,
) -> sp.csc_matrix:
    """``R' W Z_1`` as a sparse (m x l1 p1) matrix."""
    blocks = [_crossed_block(t, zt, first, z1) for t, zt in zip(rest, z_rest)]
    blocks.append(sp.csr_matrix(_by_columns(first, z1, xy).T))
    stacked = sp.vstack(blocks, format="csc")
    stacked.sum_duplicates()
    stacked.sort_indices()
    return stacked


def _rest_by_rest(rest: list[RandomTerm], z_rest: list[np.ndarray], xy: np.ndarray) -> np.ndarray:
    sizes = [t.n_random for t in rest]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    r = int(starts[-1])
    m = r + xy.shape[1]
    a_rr = np.zeros((m, m))
    for i, (ti, zi) in enumerate(zip(rest, z_rest)):
        rows = slice(starts[i], starts[i + 1])
        for j in range(i + 1):
            block = _crossed_block(ti, zi, rest[j], z_rest[j]).toarray()
            a_rr[rows, starts[j] : starts[j + 1]] = block
            a_rr[starts[j] : starts[j + 1], rows] = block.T
        cross = _by_columns(ti, zi, xy)
        a_rr[rows, r:] = cross
        a_rr[r:, rows] = cross.T
    a_rr[r:, r:] = xy.T @ xy
    return a_rr


def _choose_strategy(cross: CrossProducts, strategy: str | None = None) -> SchurProduct:
    """The product strategy: the one asked for, or the cheapest by the cost model.

    See :class:`PairsProduct`, :class:`ClassesProduct` and :class:`DenseProduct`.
    """
    if strategy not in (None, *_STRATEGIES):
        raise ValueError(f"strategy must be None, 'pairs', 'classes' or 'dense', got {strategy!r}")
    name = _cheapest_strategy(cross) if strategy is None else strategy
    return _STRATEGIES[name](cross)


def _cheapest_strategy(cross: CrossProducts) -> str:
    a = cross.a_r1
    m, q1 = a.shape
    p1 = cross.first_cols
    per_level = np.diff(a.indptr).reshape(cross.first_levels, p1).sum(axis=1)
    n_pairs = float(np.sum(per_level.astype(float) ** 2))
    n_weights = len(cross.class_counts) * p1 * p1
    flops = m * m * q1 * p1 * (0.5 if p1 == 1 else 1.0)  # syrk for a scalar term
    per_eval = {
        "pairs": n_pairs * _SECONDS_PER_PAIR + m * m * _SECONDS_PER_ELEMENT,
        "dense": flops * _SECONDS_PER_FLOP + m * q1 * p1 * _SECONDS_PER_ELEMENT,
    }
    if per_eval["dense"] < _SMALL_SECONDS:
        return "dense"  # tiny problems: the plain product, fewest roundings
    setup = {"pairs": n_pairs * _SECONDS_PER_PAIR_SETUP, "dense": 0.0}
    if n_weights * m * m * 8 <= _MAX_CLASS_PRODUCT_BYTES:
        per_eval["classes"] = (n_weights + 1) * m * m * _SECONDS_PER_ELEMENT
        setup["classes"] = m * m * q1 * p1 * p1 * _SECONDS_PER_FLOP
    total = {k: setup[k] + _EXPECTED_EVALUATIONS * per_eval[k] for k in per_eval}
    return min(total, key=total.get)


def _class_products(cross: CrossProducts) -> np.ndarray:
    """``G[c, a, b] = sum over levels k of class c of A[:, k a] A[:, k b]'``."""
    dense = cross.a_r1.toarray()
    m = dense.shape[0]
    p1 = cross.first_cols
    levels = dense.reshape(m, cross.first_levels, p1)
    n_classes = len(cross.class_counts)
    products = np.empty((n_classes, p1, p1, m, m))
    for c in range(n_classes):
        block = levels[:, cross.class_of_level == c, :]
        for a in range(p1):
            for b in range(p1):
                products[c, a, b] = block[:, :, a] @ block[:, :, b].T
    return products.reshape(n_classes * p1 * p1, m, m)


def _pair_products(cross: CrossProducts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products of nonzero pairs in each level's columns, summed by class.

    One sparse product ``G = A_tilde B'`` does it: ``A_tilde`` holds
    ``A_R1[r, k p1 + a]`` at row ``(class(k) p1 + a) m + r``, column ``k``, and
    ``B`` holds ``A_R1[s, k p1 + b]`` at row ``b m + s``, column ``k``, so
    ``G[(c, a, r), (b, s)] = sum over levels k of class c``. Returns the flat
    lower-triangle position ``r m + s``, the summed product and the index of
    ``Wt[c, a, b]`` in the flattened class weights.
    """
    a = cross.a_r1.tocoo()
    m = a.shape[0]
    l1, p1 = cross.first_levels, cross.first_cols
    n_classes = len(cross.class_counts)
    level, within = np.divmod(a.col, p1)
    rows_tilde = (cross.class_of_level[level] * p1 + within) * m + a.row
    a_tilde = sp.csr_matrix((a.data, (rows_tilde, level)), shape=(n_classes * p1 * m, l1))
    b_rows = within * m + a.row
    b = sp.csr_matrix((a.data, (b_rows, level)), shape=(p1 * m, l1))
    g = (a_tilde @ b.T).tocoo()
    class_a, r = np.divmod(g.row, m)
    b_index, s = np.divmod(g.col, m)
    keep = r >= s
    flat = r[keep].astype(np.int64) * m + s[keep]
    weight = class_a[keep].astype(np.int64) * p1 + b_index[keep]
    return flat, g.data[keep], weight


def model_blocks(
    cross: CrossProducts, order: list[int]
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """``Z' W Z``, ``Z' W X`` and ``X' W X`` with the terms in the model's order.

    Parameters
    ----------
    cross : CrossProducts
        Cross-products in the engine's layout.
    order : list of int
        The engine order (:func:`engine_order`): the model's term at each of
        the engine's positions.

    Returns
    -------
    ztwz : scipy.sparse.csr_matrix, shape (q, q)
    ztwx : ndarray, shape (q, p)
    xtwx : ndarray, shape (p, p)
    """
    l1, p1 = cross.first_levels, cross.first_cols
    r, p = cross.n_random_rest, cross.n_fixed
    per_level = cross.a11_classes[cross.class_of_level]
    rows = (np.arange(l1)[:, None, None] * p1 + np.arange(p1)[None, :, None]).repeat(p1, 2)
    cols = rows.transpose(0, 2, 1)
    first = sp.csr_matrix((per_level.ravel(), (rows.ravel(), cols.ravel())), shape=(l1 * p1,) * 2)
    rest_first = cross.a_r1[:r]
    ztwz = sp.bmat(
        [[first, rest_first.T], [rest_first, sp.csr_matrix(cross.a_rr[:r, :r])]], format="csr"
    )
    ztwx = np.vstack([cross.a_r1[r : r + p].T.toarray(), cross.a_rr[:r, r : r + p]])
    xtwx = cross.a_rr[r : r + p, r : r + p].copy()
    sizes = [l1 * p1] + [levels * k for levels, k in cross.rest_sizes]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    by_term = {term: np.arange(starts[k], starts[k + 1]) for k, term in enumerate(order)}
    perm = np.concatenate([by_term[t] for t in range(len(order))])
    return ztwz[perm][:, perm].tocsr(), ztwx[perm], xtwx
