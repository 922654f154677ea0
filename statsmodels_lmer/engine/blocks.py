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
(BLAS) or from precomputed products of nonzero pairs, whichever is cheaper,
and subtracted in place from one ``m x m`` work array (the only one of that
size). When the crossing has structure, a sparse Cholesky factor of the whole
random part (:mod:`statsmodels_lmer.engine.sparse`) can be cheaper still; a
cost model chooses (:mod:`statsmodels_lmer.engine.cost`). Nothing of length
``n`` is touched after construction.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

from .._parallel import active_threads
from ..cached import cached_property
from ..terms import RandomTerm, compact_codes
from .centering import FixedCentering
from .cost import (
    EXPECTED_EVALUATIONS,
    SEPARATE_PRODUCT_ORDER,
    SMALL_SECONDS,
    DesignSizes,
    available_memory,
    check_memory,
    dense_fit_seconds,
    format_bytes,
    sparse_bytes,
    sparse_seconds,
)
from .sparse import (
    BACKEND_VARIABLE,
    MINIMUM_DEGREE_WORK,
    SECONDS_PER_DEGREE_UPDATE,
    SparseSystem,
    sparse_backend,
    sparse_switched_off,
)

__all__ = [
    "INT32_INDICES",
    "PAIR_CHUNK",
    "SHIFT_RATIO",
    "STRATEGY_NAMES",
    "THREADED_PAIRS",
    "ClassesProduct",
    "CrossProducts",
    "DenseProduct",
    "NestedLayout",
    "PairsProduct",
    "RawSums",
    "ResponseSums",
    "build_cross_products",
    "check_design_memory",
    "design_sizes",
    "engine_order",
    "finalize_cross_products",
    "fixed_gram",
    "least_squares_shift",
    "level_blocks",
    "model_blocks",
    "raw_sums",
    "response_sums",
    "shifted_response",
]

SHIFT_RATIO = 1e4
"""``y'Wy`` over the least-squares residual sum of squares above which the response's
sums are those of its least-squares residual (:func:`least_squares_shift`)."""

# Class products are kept only up to this many bytes.
_MAX_CLASS_PRODUCT_BYTES = 2 * 1024**3
# The sparse factorization is weighed only from this order of the dense block
# on, and only when a dense evaluation would take longer than this.
_SPARSE_MIN_ORDER = 1000
# The symbolic analysis the sparse path is weighed by costs 0.26 s on InstEval
# (qdldl's minimum degree in Python), where a dense evaluation takes 24 ms and
# the dense path is chosen anyway; below 50 ms per evaluation it is not tried.
_SPARSE_MIN_SECONDS = 0.05
# ... or when at most this share of the random part of the Schur complement can
# be nonzero (levels that meet within sites, as teachers within schools): there
# the sparse factor is small and the analysis pays for itself (mlmRev's star,
# 1454 teachers and schools: 35 ms a dense evaluation, 6 ms a sparse one).
_SPARSE_MAX_DENSITY = 0.25
# Weighed on a thin Schur complement alone, qdldl's minimum-degree count may spend
# this share of the dense fit's predicted seconds before it gives up (a uniform
# crossing can look thin and still fill in: 20,000 x 5,000 levels, bound 0.13).
_THIN_ANALYSIS_SHARE = 0.05


class PairsProduct:
    """``A_R1 Wt A_1R`` from precomputed products of nonzero pairs.

    Two layouts, both sorted by the products' places in the ``m x m`` result:

    * **by class** (scalar first terms, or few weight classes): the products
      ``a[r, k a] a[s, k b]`` of the nonzero entries in each level's columns
      are summed per weight class once (:func:`_pair_products`); an
      evaluation multiplies them by the class weights ``Wt[c, a, b]``.
    * **by factor** (vector first terms whose levels have distinct blocks,
      such as a random slope on a continuous covariate): with
      ``Wt_k = F_k F_k'``, an evaluation scales ``A_R1``'s entries to
      ``B = A_R1 blockdiag(F_k)`` and multiplies the pairs ``B[u, kc] B[v, kc]``
      of each column; ``p1`` times fewer pairs than by class, 8 bytes each.

    Each place's run is summed (``np.add.reduceat``) and subtracted in place,
    a chunk of pairs at a time. Suits sparse crossings such as InstEval.
    """

    name = "pairs"

    def __init__(self, cross: CrossProducts) -> None:
        self.size = cross.size_rest
        self.columns = None if _merge_by_class(cross) else _FirstColumns(cross)
        if self.columns is None:
            flat, value, weight = _pair_products(cross)
            order = np.argsort(flat, kind="stable")
            self.flat, self.value, self.weight = flat[order], value[order], weight[order]
            self._index_places(self.flat)
        else:
            flat, self.first, self.second = _factor_pairs(cross.a_r1)
            self._index_places(flat)  # the places are kept per run only
        self.shape = (cross.first_cols, cross.first_cols)
        self.n_weights = len(cross.class_counts) * cross.first_cols**2

    def _index_places(self, flat: np.ndarray) -> None:
        """The runs of equal places in the sorted pairs, and chunks of them."""
        self.n_pairs = len(flat)
        new_place = np.ones(self.n_pairs, dtype=bool)
        new_place[1:] = flat[1:] != flat[:-1]
        self.starts = np.flatnonzero(new_place).astype(_index_dtype(self.n_pairs))
        self.targets = flat[self.starts]
        self.chunks = _pair_chunks(self.starts, self.n_pairs)

    def with_response(self, cross: CrossProducts) -> PairsProduct:
        """The products for cross-products that differ in the response only.

        By factor the pairs point into ``A_R1``'s entries; by class the pairs
        of the response row (the last places) are formed again.
        """
        out = copy.copy(self)
        if self.columns is not None:
            out.columns = copy.copy(self.columns)
            out.columns.data = cross.a_r1.data
            return out
        m = self.size
        tail = int(np.searchsorted(self.flat, (m - 1) * m))
        flat, value, weight = _pair_products(cross, first_row=m - 1)
        order = np.argsort(flat, kind="stable")
        out.flat = np.concatenate([self.flat[:tail], flat[order]])
        out.value = np.concatenate([self.value[:tail], value[order]])
        out.weight = np.concatenate([self.weight[:tail], weight[order]])
        out._index_places(out.flat)
        return out

    def places(self) -> np.ndarray:
        """The flat place in the ``m x m`` result of each pair (in the pairs' order)."""
        if self.columns is None:
            return self.flat
        return np.repeat(self.targets, np.diff(self.starts, append=self.n_pairs))

    @property
    def needs_roots(self) -> bool:
        """Whether evaluations need the factors ``F`` of the class weights."""
        return self.columns is not None

    def products(
        self, weights: np.ndarray, roots: np.ndarray | None, pairs: slice = slice(None)
    ) -> np.ndarray:
        """The pair products (aligned with ``flat[pairs]``) at the class weights.

        ``weights`` are ``Wt`` per class ``(c, p1, p1)``; ``roots`` its factors
        ``F`` with ``Wt = F F'`` (by-factor layout only).
        """
        if self.columns is None:
            return self.value[pairs] * weights.reshape(-1)[self.weight[pairs]]
        scaled = self.columns.scaled(roots)
        out = np.take(scaled, self.first[pairs])
        out *= np.take(scaled, self.second[pairs])
        return out

    def subtract_from(
        self, work: np.ndarray, weights: np.ndarray, roots: np.ndarray | None = None
    ) -> None:
        """``work -= A_R1 Wt A_1R`` on the lower triangle, for class weights ``(c, p1, p1)``.

        Chunks of places are disjoint, so large tables are worked in threads
        (:func:`_in_threads`).
        """
        flat = work.reshape(-1)
        scaled = None if self.columns is None else self.columns.scaled(roots)

        def subtract(chunk: tuple[int, int]) -> None:
            first_run, last_run = chunk
            begin = self.starts[first_run]
            end = self.starts[last_run] if last_run < len(self.starts) else self.n_pairs
            if scaled is None:
                values = self.value[begin:end] * weights.reshape(-1)[self.weight[begin:end]]
            else:
                values = np.take(scaled, self.first[begin:end])
                values *= np.take(scaled, self.second[begin:end])
            runs = self.starts[first_run:last_run] - begin
            flat[self.targets[first_run:last_run]] -= np.add.reduceat(values, runs)

        _in_threads(subtract, self.chunks, self.n_pairs)

    @property
    def diagonal(self) -> np.ndarray:
        """Positions of the pairs on the diagonal (row == column), found when first needed."""
        found = self.__dict__.get("_diagonal")
        if found is None:
            rows, cols = np.divmod(self.flat, self.size)
            found = self.__dict__["_diagonal"] = np.flatnonzero(rows == cols)
        return found

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """``H[c, a, b] = <G_cab, Q>`` for a symmetric ``Q``: the adjoint of the product.

        Only lower-triangle pairs are stored, so the upper ones are the
        transposed class weights; diagonal pairs are counted once.
        """
        if self.columns is not None:
            return self._factor_layout_adjoint(q)
        size = self.n_weights
        values = self.value * q.reshape(-1)[self.flat]
        lower = np.bincount(self.weight, values, minlength=size).reshape(-1, *self.shape)
        diag = self.diagonal
        once = np.bincount(self.weight[diag], values[diag], minlength=size)
        return lower + lower.transpose(0, 2, 1) - once.reshape(lower.shape)

    def _factor_layout_adjoint(self, q: np.ndarray) -> np.ndarray:
        """The adjoint in the by-factor layout, from the pairs of each level's first column.

        A level's columns hold the same rows, so the pairs ``(e1, e2)`` of its
        first column give every row pair once; their partners in columns ``a``
        and ``b`` give ``A[r1, k a] A[r2, k b]`` (and the mirrored term off the
        diagonal). ``H_k`` is symmetric, so only ``a <= b`` is summed, a
        chunk of pairs at a time.
        """
        columns = self.columns
        n_classes, p1 = int(columns.n_classes), self.shape[0]
        flat_q = q.reshape(-1)
        upper = [(a, b) for a in range(p1) for b in range(a, p1)]

        def adjoint(chunk: tuple[np.ndarray, ...]) -> np.ndarray:
            e1, e2, place, classes = chunk
            part = np.zeros((n_classes, p1, p1))
            weight = flat_q[place]
            weight[e1 == e2] *= 0.5  # the diagonal appears once, not mirrored
            at_first = [columns.data[partner[e1]] for partner in columns.partners]
            at_second = [columns.data[partner[e2]] for partner in columns.partners]
            for a, b in upper:
                mixed = at_first[a] * at_second[b]
                mixed += at_second[a] * at_first[b]
                mixed *= weight
                part[:, a, b] = np.bincount(classes, mixed, minlength=n_classes)
            return part

        chunks = self._first_column_pairs()
        out = np.zeros((n_classes, p1, p1))
        for part in _in_threads(adjoint, chunks, sum(len(c[0]) for c in chunks)):
            out += part  # in chunk order, whatever the threads
        rows, cols = np.triu_indices(p1, 1)
        out[:, cols, rows] = out[:, rows, cols]
        return out

    def _first_column_pairs(self) -> list[tuple[np.ndarray, ...]]:
        """Chunks ``(e1, e2, place, class)`` of the pairs in each level's first column."""
        found = self.__dict__.get("_first_pairs")
        if found is None:
            columns = self.columns
            in_first = np.flatnonzero(columns.within[self.first] == 0)
            class_dtype = _index_dtype(int(columns.n_classes))
            found = []
            for start in range(0, len(in_first), PAIR_CHUNK):
                index = in_first[start : start + PAIR_CHUNK]
                e1 = self.first[index]
                place = self.targets[np.searchsorted(self.starts, index, side="right") - 1]
                classes = columns.class_of_entry[e1].astype(class_dtype)
                found.append((e1, self.second[index], place, classes))
            self.__dict__["_first_pairs"] = found
        return found


INT32_INDICES = np.iinfo(np.int32).max
"""Pair tables index places and pairs with int32 up to this count: half the bytes
of int64 to keep and to sort (the ``(x|A) + (x|B)`` table of 13M pairs kept 150
MiB instead of 250 and peaked at 300 MiB instead of 510 while it was built)."""

PAIR_CHUNK = 1 << 20
"""Pair products formed at once in an evaluation (8 MiB per temporary)."""

THREADED_PAIRS = 1 << 21
"""From this many pairs, the chunks of a product or its adjoint are worked in threads.

Their random gathers wait on memory and release the GIL: on two cores the
adjoint of ``(x|A) + (x|B)`` (1e5 rows, 5e3 x 2e3 levels) took 0.16 s
instead of 0.33 s.
"""


def _in_threads(task: Callable[[Any], Any], chunks: Sequence[Any], n_pairs: int) -> list[Any]:
    """``[task(chunk) for chunk in chunks]``, in as many threads as the work may use
    (:func:`~statsmodels_lmer._parallel.active_threads`) for at least
    :data:`THREADED_PAIRS` pairs."""
    workers = min(active_threads(), len(chunks)) if n_pairs >= THREADED_PAIRS else 1
    if workers < 2:
        return [task(chunk) for chunk in chunks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(task, chunks))


def _pair_chunks(starts: np.ndarray, n_pairs: int) -> list[tuple[int, int]]:
    """Ranges of runs (places) holding about :data:`PAIR_CHUNK` pairs each."""
    bounds = [0]
    while bounds[-1] < len(starts):
        limit = int(starts[bounds[-1]]) + PAIR_CHUNK
        bounds.append(max(bounds[-1] + 1, int(np.searchsorted(starts, limit, side="left"))))
    bounds[-1] = min(bounds[-1], len(starts))
    return list(itertools.pairwise(bounds)) if n_pairs else []


class _FirstColumns:
    """``A_R1``'s entries and how to scale them to ``A_R1 blockdiag(F_k)``.

    Each level's ``p1`` columns hold the same rows (every observed pair stores
    all its ``p_i x p1`` entries), so entry ``e`` of column ``(k, c)`` has a
    partner at the same place in column ``(k, b)``.
    """

    def __init__(self, cross: CrossProducts) -> None:
        a = cross.a_r1
        p1 = cross.first_cols
        self.data = a.data
        column = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
        self.level, self.within = np.divmod(column, p1)
        self.class_of_entry = cross.class_of_level[self.level]
        self.n_classes = len(cross.class_counts)
        place = np.arange(a.nnz) - a.indptr[column]
        self.partners = [a.indptr[self.level * p1 + b] + place for b in range(p1)]

    def scaled(self, roots: np.ndarray) -> np.ndarray:
        """The entries of ``B = A_R1 blockdiag(F_k)`` (``roots``: F per class)."""
        out = np.zeros(len(self.data))
        for b, partner in enumerate(self.partners):
            out += self.data[partner] * roots[self.class_of_entry, b, self.within]
        return out


def _merge_by_class(cross: CrossProducts) -> bool:
    """Whether pair products are summed by weight class (see :class:`PairsProduct`).

    By class for a scalar first term, or when there are at least ``2 p1``
    levels per class; by factor otherwise, if each level's columns hold the
    same rows.
    """
    l1, p1 = cross.first_levels, cross.first_cols
    if p1 == 1 or len(cross.class_counts) * 2 * p1 <= l1:
        return True
    a = cross.a_r1
    counts = np.diff(a.indptr)
    if np.any(counts.reshape(l1, p1) != counts.reshape(l1, p1)[:, :1]):
        return True
    column = np.repeat(np.arange(a.shape[1]), counts)
    level = column // p1
    place = np.arange(a.nnz) - a.indptr[column]
    for b in range(p1):
        if not np.array_equal(a.indices[a.indptr[level * p1 + b] + place], a.indices):
            return True  # the columns of a level hold different rows: no partners
    return False


def _factor_pairs(a_r1: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(e1, e2)`` of entries of one column with ``row(e1) >= row(e2)``.

    Returns the flat place ``row(e1) m + row(e2)`` (sorted) and the two entry
    indices (int32).
    """
    m = a_r1.shape[0]
    indptr, indices = a_r1.indptr, a_r1.indices
    counts = np.diff(indptr)
    column = np.repeat(np.arange(a_r1.shape[1]), counts)
    place = np.arange(a_r1.nnz) - indptr[column]
    repeats = place + 1  # entry e pairs with the entries above it and itself
    pair_dtype = _index_dtype(int(np.sum(repeats)))
    first = np.repeat(np.arange(a_r1.nnz, dtype=np.int32), repeats)
    # second = the column's first entry + the pair's offset within its run
    second = np.arange(len(first), dtype=pair_dtype)
    second -= np.repeat((np.cumsum(repeats) - repeats - indptr[column]).astype(pair_dtype), repeats)
    second = second.astype(np.int32, copy=False)
    flat = indices[first].astype(_index_dtype(m * m)) * m + indices[second]
    order = np.argsort(flat, kind="stable")
    flat = flat[order]  # one array at a time: each unsorted one is freed
    first = first[order]
    return flat, first, second[order]


def _index_dtype(count: int) -> type[np.signedinteger]:
    """int32 for indices below ``count`` up to :data:`INT32_INDICES`, else int64."""
    return np.int32 if count <= INT32_INDICES else np.int64


class ClassesProduct:
    """``A_R1 Wt A_1R`` as a combination of one dense product per weight class.

    ``G[c, a, b] = sum over levels k of class c of A[:, k a] A[:, k b]'`` is
    computed once; an evaluation is one matrix-vector product with the class
    weights. Suits dense crossings with few classes (1e4 x 1e3 crossed levels).
    """

    name = "classes"
    needs_roots = False

    def __init__(self, cross: CrossProducts) -> None:
        self.size = cross.size_rest
        self.products = _class_products(cross)
        self.n_classes, self.first_cols = len(cross.class_counts), cross.first_cols

    def subtract_from(
        self, work: np.ndarray, weights: np.ndarray, roots: np.ndarray | None = None
    ) -> None:
        """``work -= A_R1 Wt A_1R`` (full), for class weights ``(c, p1, p1)``."""
        m = self.size
        flat = self.products.reshape(len(self.products), m * m)
        work -= blas.dgemv(1.0, flat.T, weights.reshape(-1)).reshape(m, m)

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """``H[c, a, b] = <G_cab, Q>``: the adjoint of the product, shape (c, p1, p1)."""
        m = self.size
        flat = self.products.reshape(len(self.products), m * m)
        # flat.T is Fortran-ordered (no copy), as in the product
        out = blas.dgemv(1.0, flat.T, np.ascontiguousarray(q).reshape(-1), trans=1)
        return out.reshape(self.n_classes, self.first_cols, self.first_cols)


class DenseProduct:
    """``(A_R1 Wt) A_1R`` by BLAS at every evaluation, into the work array.

    For a scalar first term ``Wt >= 0``, so the product is the ``syrk``
    ``(A sqrt(Wt)) (A sqrt(Wt))'``. Used for tiny problems (fewest roundings)
    and dense crossings with many weight classes. The scaled copy of ``A_R1``
    lives in a per-thread buffer (fresh pages are slow to fault in; one buffer
    per thread keeps a model usable from several threads at once).
    """

    name = "dense"

    def __init__(self, cross: CrossProducts) -> None:
        # C order: the scaled buffer (``empty_like``) is then C-ordered too, its
        # transpose is the Fortran array ``dsyrk`` reads without a copy, and the
        # per-level reshape is a view. ``toarray()`` of the CSC matrix is
        # Fortran-ordered: each evaluation copied an m x q1 array (a third more
        # than the memory model's peak).
        self.a_r1 = dense_c_order(cross.a_r1)
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

    @property
    def needs_roots(self) -> bool:
        """Whether :meth:`subtract_from` reads the roots (a vector first term)."""
        return self.first_cols > 1

    def subtract_from(
        self, work: np.ndarray, weights: np.ndarray, roots: np.ndarray | None = None
    ) -> None:
        """``work -= A_R1 Wt A_1R`` (lower triangle), for class weights and their roots.

        ``Wt = F F'`` per class, so the product is the ``syrk`` of ``A_R1 F``.
        Through the roots (Cholesky solves) rather than ``Wt`` (an explicit
        inverse) a vector first term keeps the pair products' accuracy: with
        weights spread over 1e8 the criterion erred by 1e-9 relative.
        """
        # Products use scipy's BLAS, as the Cholesky factorization that follows
        # does: alternating numpy's and scipy's OpenBLAS thread pools costs
        # more than the product itself (measured: 100 ms -> 230 ms). The
        # Fortran-ordered transpose of ``work`` is updated in place.
        m = self.a_r1.shape[0]
        if self.first_cols == 1:
            scaled = self._buffer()
            np.multiply(self.a_r1, np.sqrt(weights[self.class_of_level, 0, 0]), out=scaled)
        else:
            dense = self.a_r1.reshape(m, self.first_levels, self.first_cols)
            per_level = roots[self.class_of_level]  # F per level, (l1, p1, p1)
            scaled = np.einsum("mka,kab->mkb", dense, per_level).reshape(m, -1)
        # upper triangle of the Fortran view = lower triangle here
        if m > SEPARATE_PRODUCT_ORDER:  # BLAS subtracts in place; below, formed apart
            blas.dsyrk(-1.0, scaled.T, beta=1.0, c=work.T, trans=1, overwrite_c=1)
        else:
            work -= blas.dsyrk(1.0, scaled.T, trans=1).T

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """``H[c, a, b] = sum over levels k of class c of A_(k a)' Q A_(k b)``, (c, p1, p1)."""
        m, p1 = self.a_r1.shape[0], self.first_cols
        # Q A (m, l1 p1) from Fortran views (Q is symmetric): no copies of the operands
        qa = blas.dgemm(1.0, q.T, self.a_r1.T, trans_b=1)
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
STRATEGY_NAMES = ("pairs", "classes", "dense", "sparse")
"""Every strategy: the three dense products, and the sparse factorization."""


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
    a_rr : scipy.sparse.csr_matrix, shape (m, m)
        ``R' W R``: its random part at the observed level pairs, ``[X y]``
        in full.
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
    product : PairsProduct, ClassesProduct, DenseProduct or None
        How ``A_R1 Wt A_1R`` is formed (set by :func:`finalize_cross_products`);
        None on the sparse path.
    nested : NestedLayout or None
        The compact layout when the one rest term is nested in the first.
    sparse : SparseSystem or None
        The sparse factorization of the whole random part, when chosen.
    fill_positions, fill_values : ndarray
        The lower triangle of ``A_RR``: flat positions in the ``m x m`` work
        array (sorted) and values.
    beta_shift : ndarray, shape (p,), optional
        The sums are those of ``y - X beta_shift`` (see :func:`least_squares_shift`):
        the engine's fixed effects are ``beta - beta_shift``.
    centering : FixedCentering, optional
        The sums are those of ``X T`` (columns nearly in the span of earlier ones
        centred on them, :mod:`~.centering`): the engine's fixed effects are
        ``T^-1 beta`` and their covariance ``T^-1 C T^-T``.
    measured_threads : int or None
        The BLAS threads that evaluated faster when a fit measured them
        (``ProfiledDeviance.measured_threads``); later work on these sums uses
        them. None: not measured (the rule of ``threads_for_block``).
    """

    first_levels: int
    first_cols: int
    a11_classes: np.ndarray
    class_of_level: np.ndarray
    class_counts: np.ndarray
    a_r1: sp.csc_matrix
    a_rr: sp.csr_matrix
    rest_sizes: list[tuple[int, int]]
    n_random_rest: int
    n_fixed: int
    nobs: int
    sum_log_weights: float
    product: SchurProduct | None = None
    nested: NestedLayout | None = None
    sparse: SparseSystem | None = None
    fill_positions: np.ndarray | None = None
    fill_values: np.ndarray | None = None
    beta_shift: np.ndarray | None = None
    centering: FixedCentering | None = None
    measured_threads: int | None = None

    @property
    def size_rest(self) -> int:
        """Order ``m`` of the dense Schur complement."""
        return self.a_rr.shape[0]

    @property
    def strategy(self) -> str:
        """The strategy: ``"pairs"``, ``"classes"``, ``"dense"`` or ``"sparse"``."""
        if self.sparse is not None:
            return "sparse"
        return "" if self.product is None else self.product.name

    def model_beta(self, beta: np.ndarray) -> np.ndarray:
        """``X``'s fixed effects from those of the sums' columns: plus ``beta_shift``,
        times ``T`` of ``centering`` (``beta`` itself when neither applies)."""
        if self.beta_shift is not None:  # the sums are of y - X beta_shift
            beta = beta + self.beta_shift
        return beta if self.centering is None else self.centering.beta(beta)

    def fixed_block(self) -> np.ndarray:
        """``[X y]' W [X y]`` (dense, ``(p + 1) x (p + 1)``)."""
        return trailing_block(self.a_rr, self.n_fixed + 1)

    def fill_lower(self, work: np.ndarray) -> None:
        """Set ``work`` (C-ordered ``m x m``) to ``A_RR`` on its lower triangle, 0 elsewhere."""
        work.fill(0.0)
        work.reshape(-1)[self.fill_positions] = self.fill_values

    def with_response(self, sums: ResponseSums) -> CrossProducts:
        """The cross-products of the same model with another response.

        Only the response's row and column (``Z'Wy``, ``X'Wy``, ``y'Wy``) are
        replaced; the weight classes, the strategy's tables (but the
        response's pair products) and the sparse ordering are kept. A refit
        of a simulated response (``bootstrap``, ``simulate`` and ``refit``)
        then skips the setup.
        """
        m = self.size_rest
        response = np.concatenate([sums.rest, sums.fixed, [sums.total]])
        a_r1 = self.a_r1.copy()
        in_row = a_r1.indices == m - 1
        column = np.repeat(np.arange(a_r1.shape[1]), np.diff(a_r1.indptr))
        a_r1.data[in_row] = sums.first.reshape(-1)[column[in_row]]
        a_rr = sp.csr_matrix(self.a_rr, copy=True)
        row = np.repeat(np.arange(m), np.diff(a_rr.indptr))
        a_rr.data[a_rr.indices == m - 1] = response[row[a_rr.indices == m - 1]]
        a_rr.data[row == m - 1] = response[a_rr.indices[row == m - 1]]
        out = dataclasses.replace(
            self, a_r1=a_r1, a_rr=a_rr, product=None, nested=None, beta_shift=sums.beta_shift
        )
        out.fill_positions, out.fill_values = _lower_entries(a_rr)
        if self.sparse is not None:
            out.sparse = self.sparse.with_response(a_r1, a_rr)
        elif isinstance(self.product, PairsProduct):
            out.product = self.product.with_response(out)
            if self.nested is not None:
                out.nested = _nested_layout(out, *self.rest_sizes[0], out.product)
        elif self.product is not None:
            out.product = _STRATEGIES[self.product.name](out)
        return out

    def schur_adjoint(self, q: np.ndarray) -> np.ndarray:
        """The adjoint of the product ``A_R1 Wt A_1R``: ``<d product / d Wt[c, a, b], Q>``.

        ``H[c, a, b] = sum over levels k of class c of A_R(k a)' Q A_R(k b)``
        for a symmetric ``(m, m)`` matrix ``Q``; shape ``(c, p1, p1)``. Used
        by the analytic gradient (:mod:`statsmodels_lmer.engine.gradient`).
        """
        return self.product.schur_adjoint(q)

    @cached_property
    def sizes(self) -> DesignSizes:
        """The sizes the cost and memory models read (see :func:`design_sizes`), found once."""
        return design_sizes(
            self.a11_classes.shape[1],
            self.first_levels,
            self.a_r1,
            self.a_rr,
            self.rest_sizes,
            self.n_fixed,
            len(self.class_counts),
        )


def design_sizes(
    first_cols: int,
    first_levels: int,
    a_r1: sp.spmatrix,
    a_rr: sp.spmatrix,
    rest_sizes: list[tuple[int, int]],
    n_fixed: int,
    n_classes: int | None = None,
) -> DesignSizes:
    """:class:`~statsmodels_lmer.engine.cost.DesignSizes` of summed cross-products."""
    a = a_r1.tocsc()  # no copy of a CSC matrix
    per_column = np.diff(a.indptr)
    rows = per_column.reshape(first_levels, first_cols).max(axis=1) if first_levels else per_column
    r = sum(levels * cols for levels, cols in rest_sizes)
    a_rr = a_rr.tocsr()
    rest_entries = int(np.sum(a_rr.indices[: a_rr.indptr[r]] < r)) if r else 0
    return DesignSizes(
        first_levels=first_levels,
        first_cols=first_cols,
        rest_sizes=list(rest_sizes),
        n_fixed=n_fixed,
        rows_per_level=rows,
        n_classes=first_levels if n_classes is None else n_classes,
        rest_entries=rest_entries,
    )


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

    def schur_compact(
        self, weights: np.ndarray, roots: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``A_R1 Wt A_1R`` in the compact layout: its (D, B, C) parts."""
        values = self.pairs.products(weights, roots)
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
    r, m = cross.n_random_rest, cross.size_rest
    if not _is_nested(cross):
        return None  # a first-term level meets several rest levels: crossed
    rows, cols = np.divmod(pairs.places().astype(np.int64), m)
    index = _compact_index(rows, cols, r, p2, m)
    if np.any(index < 0):
        return None
    a_rr = sp.csr_matrix(cross.a_rr)
    first_rows = np.arange(l2) * p2
    a_d = np.empty((l2, p2, p2))
    for i in range(p2):
        for j in range(p2):
            a_d[:, i, j] = np.asarray(a_rr[first_rows + i, first_rows + j]).ravel()
    return NestedLayout(l2, p2, index, pairs, a_d, a_rr[r:, :r].toarray(), cross.fixed_block())


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
        Of ``y - X beta_shift`` (:func:`least_squares_shift`), with ``beta_shift``,
        and of ``X T`` where columns near the span of earlier ones are centred (``centering``).
    """
    centering = FixedCentering.of(X)
    if centering is not None:
        X = centering.apply(X)
    raw = raw_sums(terms, X, y, weights)
    shift = least_squares_shift(fixed_gram(raw))
    if shift is not None:  # rare: the sums again, of the shifted response
        raw = raw_sums(terms, X, shifted_response(X, y, shift), weights)
    cross = finalize_cross_products(raw, strategy)
    cross.beta_shift = shift
    cross.centering = centering
    return cross


def least_squares_shift(gram: np.ndarray) -> np.ndarray | None:
    """Least-squares coefficients of ``y`` on ``X`` to subtract before the sums, or None.

    ``gram`` is ``[X y]' W [X y]``. The profiled deviance reads the penalized
    residual sum of squares off the Cholesky factor of the cross-products of
    ``[Z X y]``: ``y'Wy`` minus the fitted part, which cancels to round-off of
    ``y'Wy``. A response whose mean is large against its spread
    (``1e5 + N(0, 1)``) lost 5 digits of sigma and the log-likelihood that way.
    The same model for ``y - X beta_shift`` has the same theta, pwrss and
    deviance, and fixed effects ``beta - beta_shift`` (for any shift: its
    accuracy does not matter). None (no shift) where ``y'Wy`` is within
    :data:`SHIFT_RATIO` of the least-squares residual sum of squares (less
    than 4 digits at stake). From the ``(p + 1)``-square sums: microseconds,
    where a least-squares fit on the rows took 2 s at 1e7 rows.
    """
    p = gram.shape[0] - 1
    if p == 0:
        return None
    xtx, xty, yty = gram[:p, :p], gram[:p, p], float(gram[p, p])
    try:
        shift = np.linalg.solve(xtx, xty)
    except np.linalg.LinAlgError:  # rank-deficient X: any least-squares solution
        shift = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    if not np.all(np.isfinite(shift)) or yty <= SHIFT_RATIO * (yty - float(xty @ shift)):
        return None
    return shift


def fixed_gram(raw: RawSums) -> np.ndarray:
    """``[X y]' W [X y]`` from raw sums (the last ``p + 1`` rows and columns of ``A_RR``)."""
    return trailing_block(raw.a_rr, raw.n_fixed + 1)


def dense_c_order(a: sp.csc_matrix) -> np.ndarray:
    """A CSC matrix dense in C order, scattered from its arrays.

    scipy's ``toarray(order="C")`` converts to CSR first (18 us on small
    models, a copy of the entries on large ones); a matrix with duplicate
    entries (none here: they are summed when built) goes through it.
    """
    if not a.has_canonical_format:
        return a.toarray(order="C")
    out = np.zeros(a.shape)
    columns = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
    out[a.indices, columns] = a.data
    return out


def trailing_block(matrix: sp.spmatrix, k: int) -> np.ndarray:
    """The last ``k`` rows and columns of a sparse matrix without duplicate entries, dense.

    Read off the CSR arrays: scipy's slicing and ``toarray`` cost 15 us.
    """
    a = matrix.tocsr()
    m = a.shape[0]
    start = a.indptr[m - k]
    rows = np.repeat(np.arange(k), np.diff(a.indptr[m - k :]))
    cols = a.indices[start:] - (m - k)
    inside = cols >= 0
    out = np.zeros((k, k))
    out[rows[inside], cols[inside]] = a.data[start:][inside]
    return out


def shifted_response(X: np.ndarray, y: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """``y - X shift`` (``y`` itself without a shift).

    The columns' parts are subtracted one at a time, the largest first: the
    intercept's part of ``1e9 + 1e-2 N(0, 1)`` cancels exactly (the operands are
    within a factor of 2), and each smaller part rounds at the scale of what is
    left. ``y - X @ shift`` rounded the fitted values at ``1e9`` and blurred the
    remaining digits of the noise as much as storing ``y`` did.
    """
    if shift is None:
        return y
    parts = np.abs(shift) * np.sqrt(np.einsum("ij,ij->j", X, X))
    out = np.array(y, dtype=float)
    for j in np.argsort(-parts):
        if shift[j] != 0.0:
            out -= X[:, j] * shift[j]
    return out


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
    a_rr : scipy.sparse.csr_matrix, shape (m, m)
        ``R' W R`` (stored entries: the observed level pairs and ``[X y]``).
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
    a_rr: sp.csr_matrix
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
            _add_sparse(self.a_rr, other.a_rr).tocsr(),
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
            sp.csr_matrix(self.a_rr)[keep][:, keep].tocsr(),
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


@dataclass(eq=False)
class ResponseSums:
    """The cross-products of one response vector: what a refit needs anew.

    Attributes
    ----------
    first : ndarray, shape (l1, p1)
        ``Z_1' W y`` per level of the first term.
    rest : ndarray, shape (r,)
        ``Z_k' W y`` of the other terms, in the engine's layout.
    fixed : ndarray, shape (p,)
        ``X' W y``.
    total : float
        ``y' W y``.
    beta_shift : ndarray, optional
        The sums are those of ``y - X beta_shift``, as in :class:`CrossProducts`.
    """

    first: np.ndarray
    rest: np.ndarray
    fixed: np.ndarray
    total: float
    beta_shift: np.ndarray | None = None


def response_sums(
    terms: list[RandomTerm],
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    centering: FixedCentering | None = None,
) -> ResponseSums:
    """:class:`ResponseSums` of ``y``, computed as :func:`raw_sums` computes them.

    Parameters are those of :func:`build_cross_products`; ``centering`` is the
    model's cross-products' (``X`` is centred as they were).
    """
    if centering is not None:
        X = centering.apply(X)
    root_w = np.ones(len(y)) if weights is None else np.sqrt(weights)
    xy = np.column_stack([X, y]) * root_w[:, None]
    gram = xy.T @ xy
    shift = least_squares_shift(gram)
    if shift is not None:
        xy[:, -1] = shifted_response(X, y, shift) * root_w
        gram = xy.T @ xy
    wy = xy[:, -1:]
    first = _by_columns(terms[0], _weighted_columns(terms[0], root_w), wy)
    rest = [_by_columns(t, _weighted_columns(t, root_w), wy)[:, 0] for t in terms[1:]]
    return ResponseSums(
        first=first[:, 0].reshape(terms[0].n_levels, terms[0].n_cols),
        rest=np.concatenate(rest) if rest else np.zeros(0),
        fixed=gram[:-1, -1].copy(),
        total=float(gram[-1, -1]),
        beta_shift=shift,
    )


def finalize_cross_products(raw: RawSums, strategy: str | None = None) -> CrossProducts:
    """:class:`CrossProducts` from summed :class:`RawSums`.

    Groups the first term's levels into weight classes and picks the
    strategy (the one asked for, or the cheapest that fits in memory by the
    cost model of :mod:`statsmodels_lmer.engine.cost`); with one rest term
    nested in the first, the compact nested layout.

    Raises
    ------
    DataError
        When no strategy fits in the memory available (the figure and the
        remedy are in the message).
    """
    if strategy not in (None, *STRATEGY_NAMES):
        raise ValueError(
            f"strategy must be None, 'pairs', 'classes', 'dense' or 'sparse', got {strategy!r}"
        )
    classes, class_of_level, counts = _weight_classes(raw.a11)
    levels, cols = raw.a11.shape[0], raw.a11.shape[1]
    cross = CrossProducts(
        first_levels=levels,
        first_cols=cols,
        a11_classes=classes,
        class_of_level=class_of_level,
        class_counts=counts,
        a_r1=raw.a_r1,
        a_rr=raw.a_rr.tocsr(),  # no new matrix when it is CSR already
        rest_sizes=list(raw.rest_sizes),
        n_random_rest=raw.n_random_rest,
        n_fixed=raw.n_fixed,
        nobs=raw.nobs,
        sum_log_weights=raw.sum_log_weights,
    )
    cross.fill_positions, cross.fill_values = _lower_entries(cross.a_rr)
    sizes = cross.sizes
    if strategy in (None, "pairs") and _is_nested(cross):
        tiny = sizes.dense_seconds("dense")[1] < SMALL_SECONDS
        if strategy == "pairs" or not tiny:
            cross.product = PairsProduct(cross)
            cross.nested = _nested_layout(cross, *raw.rest_sizes[0], cross.product)
            if cross.nested is not None:  # no m x m array: the pair products and the sums
                need = sizes.dense_bytes("pairs", buffers=0)
                check_memory(need, "the pair products of the nested terms", _remedy(sizes))
                return cross
    name, system = _choose_strategy(cross, sizes, strategy)
    if system is not None:
        cross.product, cross.sparse = None, system
    elif cross.product is None or cross.product.name != name:
        cross.product = _STRATEGIES[name](cross)
    return cross


def _lower_entries(a_rr: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions (sorted) and values of the lower triangle of ``A_RR``."""
    m = a_rr.shape[0]
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(a_rr.indptr))  # no COO copy
    lower = rows >= a_rr.indices
    positions = rows[lower] * m + a_rr.indices[lower]
    order = np.argsort(positions, kind="stable")
    return positions[order], a_rr.data[lower][order]


def _is_nested(cross: CrossProducts) -> bool:
    """Whether the one rest term's levels each contain whole levels of the first term."""
    if len(cross.rest_sizes) != 1 or not cross.n_random_rest:
        return False
    a = cross.a_r1
    random = a.indices < cross.n_random_rest
    column = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
    level = a.indices[random] // cross.rest_sizes[0][1]
    first_level = column[random] // cross.first_cols
    owner = np.full(cross.first_levels, -1)
    owner[first_level] = level
    return bool(np.all(owner[first_level] == level))


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
    """The distinct blocks (sorted as rows), each level's class and the class sizes.

    ``np.unique(flat, axis=0, ...)``'s result, by a lexicographic sort of the
    rows (25 us less on small models).
    """
    flat = a11.reshape(len(a11), -1)
    order = np.lexsort(flat.T[::-1])
    ranked = flat[order]
    starts = np.ones(len(ranked), dtype=bool)
    starts[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    class_of_ranked = np.cumsum(starts) - 1
    class_of_level = np.empty(len(flat), dtype=np.intp)
    class_of_level[order] = class_of_ranked
    counts = np.bincount(class_of_ranked).astype(float)
    p = a11.shape[1]
    return ranked[starts].reshape(-1, p, p), class_of_level, counts


def _weighted_columns(term: RandomTerm, root_w: np.ndarray) -> np.ndarray:
    return term.Z * root_w[:, None]


Triplets = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(data, rows, cols)`` of a sparse block, every observed entry stored (zeros too)."""


def _crossed_block(a: RandomTerm, za: np.ndarray, b: RandomTerm, zb: np.ndarray) -> Triplets:
    """``Z_a' W Z_b`` for two terms, summed over the observed level pairs, as triplets
    (shape ``(a.n_levels p_a, b.n_levels p_b)``, each entry once).

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
    return np.concatenate(data), np.concatenate(rows), np.concatenate(cols)


def _dense_triplets(block: np.ndarray) -> Triplets:
    """Every entry of a dense block as triplets."""
    grid_rows, grid_cols = np.indices(block.shape)
    return block.ravel(), grid_rows.ravel(), grid_cols.ravel()


def _by_columns(term: RandomTerm, z: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``Z_t' W [X y]``, shape (l p, p_x + 1)."""
    p = z.shape[1]
    out = np.empty((term.n_levels * p, xy.shape[1]))
    for a in range(p):
        for j in range(xy.shape[1]):
            out[a::p, j] = np.bincount(term.codes, z[:, a] * xy[:, j], minlength=term.n_levels)
    return out


def _dense_csr(block: np.ndarray) -> sp.csr_matrix:
    """A dense block as CSR with every entry stored (zeros too), indices sorted."""
    n_rows, n_cols = block.shape
    indptr = np.arange(0, n_rows * n_cols + 1, n_cols)
    indices = np.tile(np.arange(n_cols), n_rows)
    out = sp.csr_matrix((np.ascontiguousarray(block).ravel(), indices, indptr), shape=block.shape)
    out.has_sorted_indices = True
    return out


def _nonzero_csc(block: np.ndarray) -> sp.csc_matrix:
    """The nonzero entries of a dense block as CSC (``csc_matrix(block)``, 30 us less)."""
    stored = block.T != 0
    indptr = np.concatenate([[0], np.cumsum(stored.sum(axis=1))])
    indices = np.nonzero(stored)[1]
    out = sp.csc_matrix((block.T[stored], indices, indptr), shape=block.shape)
    out.has_sorted_indices = True
    return out


def _assemble(
    pieces: list[tuple[Triplets, int, int]], shape: tuple[int, int], by_columns: bool
) -> sp.csc_matrix | sp.csr_matrix:
    """One matrix from triplet blocks placed at ``(row0, col0)``: CSC when ``by_columns``,
    else CSR; every entry kept (zeros too), indices sorted.

    The blocks do not overlap, so the entries are ordered and counted here
    (scipy's COO matrix and its conversion cost 80 us for two small terms);
    overlapping entries would go through scipy, which sums them.
    """
    data = np.concatenate([t[0] for t, _, _ in pieces])
    rows = np.concatenate([t[1] + row0 for t, row0, _ in pieces])
    cols = np.concatenate([t[2] + col0 for t, _, col0 in pieces])
    major, minor = (cols, rows) if by_columns else (rows, cols)
    order = np.lexsort((minor, major))
    major, minor = major[order], minor[order]
    if np.any((major[1:] == major[:-1]) & (minor[1:] == minor[:-1])):
        coo = sp.coo_matrix((data, (rows, cols)), shape=shape)
        out = coo.tocsc() if by_columns else coo.tocsr()
        out.sum_duplicates()
        return out
    counts = np.bincount(major, minlength=shape[1] if by_columns else shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    matrix = sp.csc_matrix if by_columns else sp.csr_matrix
    out = matrix((data[order], minor, indptr), shape=shape)
    out.has_sorted_indices = True
    return out


def _rest_by_first(
    rest: list[RandomTerm],
    z_rest: list[np.ndarray],
    xy: np.ndarray,
    first: RandomTerm,
    z1: np.ndarray,
) -> sp.csc_matrix:
    """``R' W Z_1`` as a sparse (m x l1 p1) matrix."""
    by_fixed = _by_columns(first, z1, xy).T
    if not rest:  # one term: [X y]' W Z_1 is all there is
        return _nonzero_csc(by_fixed)
    pieces, row0 = [], 0
    for term, zt in zip(rest, z_rest):
        pieces.append((_crossed_block(term, zt, first, z1), row0, 0))
        row0 += term.n_random
    pieces.append((_dense_triplets(by_fixed), row0, 0))
    return _assemble(pieces, (row0 + xy.shape[1], first.n_random), by_columns=True)


def _rest_by_rest(
    rest: list[RandomTerm], z_rest: list[np.ndarray], xy: np.ndarray
) -> sp.csr_matrix:
    """``R' W R`` as a sparse (m x m) matrix: the observed level pairs, ``[X y]`` in full."""
    if not rest:  # one term: the dense [X y]' W [X y] (built directly, 70 us less)
        return _dense_csr(xy.T @ xy)
    sizes = [t.n_random for t in rest]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    r = int(starts[-1])
    m = r + xy.shape[1]
    pieces: list[tuple[Triplets, int, int]] = []
    for i, (ti, zi) in enumerate(zip(rest, z_rest)):
        for j in range(i + 1):
            data, rows, cols = _crossed_block(ti, zi, rest[j], z_rest[j])
            pieces.append(((data, rows, cols), starts[i], starts[j]))
            if j != i:
                pieces.append(((data, cols, rows), starts[j], starts[i]))
        data, rows, cols = _dense_triplets(_by_columns(ti, zi, xy))
        pieces.append(((data, rows, cols), starts[i], r))
        pieces.append(((data, cols, rows), r, starts[i]))
    pieces.append((_dense_triplets(xy.T @ xy), r, r))
    return _assemble(pieces, (m, m), by_columns=False)


def _choose_strategy(
    cross: CrossProducts, sizes: DesignSizes, strategy: str | None
) -> tuple[str, SparseSystem | None]:
    """The strategy asked for, or the cheapest that fits in memory; the sparse system if sparse.

    Each dense strategy's seconds (setup plus :data:`EXPECTED_EVALUATIONS`
    evaluations, or the gradients of an L-BFGS-B fit where those are cheaper:
    :func:`~.cost.dense_fit_seconds`) and bytes come from :class:`DesignSizes`;
    the sparse factorization (no gradient: :data:`EXPECTED_EVALUATIONS`
    evaluations) is weighed when a backend is installed, the dense block has
    at least ``_SPARSE_MIN_ORDER`` rows and a dense evaluation would be slow
    or would not fit, from the counts of its symbolic analysis.
    """
    if strategy is not None:
        system = _sparse_system(cross) if strategy == "sparse" else None
        need = _strategy_bytes(strategy, sizes, system)
        check_memory(need, _describe(strategy, sizes, system), _remedy(sizes))
        return strategy, system
    if sizes.dense_seconds("dense")[1] < SMALL_SECONDS:  # tiny: the plain product, fewest roundings
        check_memory(sizes.dense_bytes("dense"), _describe("dense", sizes, None), _remedy(sizes))
        return "dense", None
    options: dict[str, tuple[float, float]] = {}  # name -> (seconds of a fit, bytes)
    per_eval = {}
    m, p1 = sizes.size_rest, sizes.first_cols
    for name in ("pairs", "classes", "dense"):
        if name == "classes" and sizes.n_classes * p1 * p1 * m * m * 8 > _MAX_CLASS_PRODUCT_BYTES:
            continue
        setup, per_eval[name] = sizes.dense_seconds(name)
        seconds = setup + dense_fit_seconds(sizes, name, sizes.n_theta)
        options[name] = (seconds, sizes.dense_bytes(name))
    system = None
    limit = available_memory()
    dense_fits = any(limit is None or need <= limit for _, need in options.values())
    needed = min(per_eval.values()) > _SPARSE_MIN_SECONDS or not dense_fits
    thin = not needed and schur_density(cross) <= _SPARSE_MAX_DENSITY
    if sparse_backend() is not None and m >= _SPARSE_MIN_ORDER and (needed or thin):
        work = MINIMUM_DEGREE_WORK
        if thin:  # weighed on the chance: its analysis may cost 5 % of the dense fit
            dense_fit = min(seconds for seconds, _ in options.values())
            work = min(work, _THIN_ANALYSIS_SHARE * dense_fit / SECONDS_PER_DEGREE_UPDATE)
        system = _sparse_system(cross, work)
        options["sparse"] = (
            EXPECTED_EVALUATIONS * sparse_seconds(system.counts),
            sparse_bytes(system.counts, sizes),
        )
    feasible = {k: v for k, v in options.items() if limit is None or v[1] <= limit}
    if not feasible:
        name = min(options, key=lambda k: options[k][1])
        check_memory(options[name][1], _describe(name, sizes, system), _remedy(sizes))
    name = min(feasible, key=lambda k: feasible[k][0])
    return name, system if name == "sparse" else None


def schur_density(cross: CrossProducts) -> float:
    """A bound on the nonzero share of the Schur complement's random part.

    Its pattern is ``A_RR``'s observed level pairs and, for each level of the
    first term, every pair of the rest's random effects that level meets; the
    bound counts both (overlaps twice) against the ``r (r + 1) / 2`` entries of
    the lower triangle. Above 1 for uniform crossings (InstEval: 2.7), small
    for levels nested in sites (mlmRev's star: 0.08).
    """
    r = cross.n_random_rest
    if not r:
        return 0.0
    a = sp.csc_matrix(cross.a_r1)
    column = np.repeat(np.arange(a.shape[1]), np.diff(a.indptr))
    met = np.bincount(column[a.indices < r], minlength=a.shape[1])
    per_level = met.reshape(cross.first_levels, cross.first_cols).max(axis=1).astype(float)
    pairs = float(np.sum(per_level * (per_level + 1.0) / 2.0))
    a_rr = cross.a_rr
    rest = float(np.sum(a_rr.indices[: a_rr.indptr[r]] < r)) / 2.0
    return (pairs + rest) / (r * (r + 1.0) / 2.0)


def _sparse_system(cross: CrossProducts, work: float = MINIMUM_DEGREE_WORK) -> SparseSystem:
    backend = sparse_backend()
    if backend is None:
        raise ImportError(
            "strategy='sparse' needs a sparse Cholesky: pip install "
            "'statsmodels_lmer[cholmod]' (scikit-sparse, with Debian's libsuitesparse-dev) "
            f"or 'statsmodels_lmer[sparse]' (qdldl); {BACKEND_VARIABLE} must not be 'off'"
        )
    per_level = cross.a11_classes[cross.class_of_level]
    return SparseSystem(
        per_level, cross.a_r1, cross.a_rr, cross.rest_sizes, cross.n_fixed, backend, work
    )


def _strategy_bytes(name: str, sizes: DesignSizes, system: SparseSystem | None) -> float:
    if system is not None:
        return sparse_bytes(system.counts, sizes)
    return sizes.dense_bytes(name)


def _describe(name: str, sizes: DesignSizes, system: SparseSystem | None) -> str:
    """What the memory is for, in a refusal message."""
    if system is not None:
        return (
            f"a sparse Cholesky factor of order {system.counts.order} with "
            f"{system.counts.factor_entries:.3g} nonzeros"
        )
    m = sizes.size_rest
    if name == "classes":
        count = sizes.n_classes * sizes.first_cols**2
        return f"{count} dense {m} x {m} products of the first term's weight classes"
    return (
        f"the dense {m} x {m} Schur complement of the {sizes.n_random_rest} random effects "
        f"besides the largest term's, {format_bytes(8.0 * m * m)} each"
    )


def _remedy(sizes: DesignSizes) -> str:
    """What a user can do about a model that does not fit."""
    hint = ""
    if sparse_backend() is None:
        action = (
            f"Allow the sparse Cholesky (unset {BACKEND_VARIABLE}, which switches it off)"
            if sparse_switched_off()
            else "Install a sparse Cholesky (the 'cholmod' extra, with Debian's "
            "libsuitesparse-dev; see docs/engine.md)"
        )
        hint = f"{action}, which needs far less when the crossing has structure, use "
    return (
        f"{hint or 'Use '}fewer levels in the terms after the largest ({sizes.n_random_rest} "
        "random effects now), or a machine with more memory."
    )


def check_design_memory(terms: list[RandomTerm], n_fixed: int) -> None:
    """Refuse, before anything is built, a model whose dense block cannot fit.

    Only the dense ``m x m`` work array is counted (a lower bound of every
    dense strategy); with a sparse backend installed the decision waits for
    its symbolic analysis (:func:`finalize_cross_products`).

    Raises
    ------
    DataError
    """
    if sparse_backend() is not None or len(terms) < 2:
        return
    m = sum(t.n_random for t in terms[1:]) + n_fixed + 1
    first = terms[0]
    if len(terms) == 2:
        owner = np.full(first.n_levels, -1)
        owner[first.codes] = terms[1].codes
        if np.all(owner[first.codes] == terms[1].codes):
            return  # nested: the compact layout has no m x m array
    sizes = DesignSizes(
        first.n_levels,
        first.n_cols,
        [(t.n_levels, t.n_cols) for t in terms[1:]],
        n_fixed,
        np.zeros(first.n_levels),
        1,
        0,
    )
    check_memory(8.0 * m * m, _describe("pairs", sizes, None), _remedy(sizes))


def _class_products(cross: CrossProducts) -> np.ndarray:
    """``G[c, a, b] = sum over levels k of class c of A[:, k a] A[:, k b]'``.

    Holds ``A`` dense and one class's columns of it while it runs (the
    memory model's ``2 m q1`` setup doubles, :meth:`DesignSizes.dense_bytes`).
    """
    dense = dense_c_order(cross.a_r1)  # the per-level reshape is then a view
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


def _pair_products(
    cross: CrossProducts, first_row: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products of nonzero pairs in each level's columns, summed by class.

    One sparse product ``G = A_tilde B'`` does it: ``A_tilde`` holds
    ``A_R1[r, k p1 + a]`` at row ``(class(k) p1 + a) m + r``, column ``k``, and
    ``B`` holds ``A_R1[s, k p1 + b]`` at row ``b m + s``, column ``k``, so
    ``G[(c, a, r), (b, s)] = sum over levels k of class c``. Returns the flat
    lower-triangle position ``r m + s``, the summed product and the index of
    ``Wt[c, a, b]`` in the flattened class weights. ``first_row``: only the
    pairs of rows ``r >= first_row``.
    """
    a = cross.a_r1.tocoo()
    m = a.shape[0]
    l1, p1 = cross.first_levels, cross.first_cols
    n_classes = len(cross.class_counts)
    level, within = np.divmod(a.col, p1)
    rows_tilde = (cross.class_of_level[level] * p1 + within) * m + a.row
    left = a.row >= first_row
    a_tilde = sp.csr_matrix(
        (a.data[left], (rows_tilde[left], level[left])), shape=(n_classes * p1 * m, l1)
    )
    b_rows = within * m + a.row
    b = sp.csr_matrix((a.data, (b_rows, level)), shape=(p1 * m, l1))
    g = (a_tilde @ b.T).tocoo()
    class_a, r = np.divmod(g.row, m)
    b_index, s = np.divmod(g.col, m)
    keep = r >= s
    flat = r[keep].astype(_index_dtype(m * m)) * m + s[keep]
    weight = class_a[keep].astype(np.int64) * p1 + b_index[keep]
    return flat, g.data[keep], weight


def model_blocks(
    cross: CrossProducts, order: list[int], engine_columns: bool = False
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """``Z' W Z``, ``Z' W X`` and ``X' W X`` with the terms in the model's order.

    With ``engine_columns``, ``X`` is the engine's ``X T`` where ``cross.centering``
    centres columns near the span of earlier ones (:mod:`~.centering`).

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
    a_rr = sp.csr_matrix(cross.a_rr)
    ztwz = sp.bmat([[first, rest_first.T], [rest_first, a_rr[:r, :r]]], format="csr")
    ztwx = np.vstack([cross.a_r1[r : r + p].T.toarray(), a_rr[:r, r : r + p].toarray()])
    xtwx = cross.fixed_block()[:p, :p]
    if cross.centering is not None and not engine_columns:  # the sums are of X T
        ztwx, xtwx = cross.centering.original_cross(ztwx, xtwx)
    sizes = [l1 * p1] + [levels * k for levels, k in cross.rest_sizes]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    by_term = {term: np.arange(starts[k], starts[k + 1]) for k, term in enumerate(order)}
    perm = np.concatenate([by_term[t] for t in range(len(order))])
    return ztwz[perm][:, perm].tocsr(), ztwx[perm], xtwx
