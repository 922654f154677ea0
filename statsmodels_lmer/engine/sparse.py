"""The profiled criterion through a sparse Cholesky factor of the whole random part.

For crossed designs whose level pairs have structure (sites, schools,
regions), the Cholesky factor of ``Lambda' Z'WZ Lambda + I`` stays sparse
under a fill-reducing ordering, while the engine's dense Schur complement
costs ``m^3 / 3`` flops whatever the structure. This module factors the whole
random part (order ``q``, lme4's layout) with a sparse Cholesky and keeps
``[X y]`` out of the factor:

* ``S = Lambda' Z'WZ Lambda + I = P' L L' P`` (the ordering ``P`` computed
  once, a numeric refactorization at each evaluation);
* ``G = L^-1 P Lambda' Z'W [X y]``, ``C = [X y]' W [X y] - G' G = R' R``;
* ``log|L_Z|^2 = log det S``, ``log|R_X|^2 = 2 sum log R_ii (i < p)``,
  ``r^2 = R_kk^2``.

``Z'WZ`` is held block by block (one ``p_i x p_j`` block per observed level
pair of two terms), so ``Lambda' Z'WZ Lambda`` is one small matrix product per
block, then gathered into the lower triangle of a CSC matrix of fixed
pattern.

Backends: CHOLMOD (supernodal, through scikit-sparse, the ``cholmod`` extra)
when it imports, else qdldl (the ``sparse`` extra; simplicial, no BLAS, so
only for very sparse factors). :func:`sparse_backend` says which. A backend's
factor is refilled in place, so the calls on one system are serialized by a
lock; a model stays usable from several threads.
"""

from __future__ import annotations

import copy
import heapq
import os
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .cost import SparseCounts

__all__ = [
    "BACKEND_VARIABLE",
    "MINIMUM_DEGREE_WORK",
    "SECONDS_PER_DEGREE_UPDATE",
    "SparseFactorPieces",
    "SparseSystem",
    "column_counts",
    "minimum_degree_counts",
    "reference_blas",
    "sparse_backend",
    "sparse_switched_off",
    "supernode_sizes",
    "symbolic_factor",
]

_CHUNK_BYTES = 128 * 2**20  # right-hand sides solved at once (conditional variances)


BACKEND_VARIABLE = "STATSMODELS_LMER_SPARSE"
"""Environment variable choosing the sparse backend: ``cholmod``, ``qdldl`` or ``off``."""


@cache
def _installed(name: str) -> bool:
    try:
        if name == "cholmod":
            import sksparse.cholmod  # noqa: F401
        else:
            import qdldl  # noqa: F401
    except ImportError:
        return False
    return True


def sparse_switched_off() -> bool:
    """Whether :data:`BACKEND_VARIABLE` switches the sparse path off (``off``, ``no``, ``0``)."""
    return os.environ.get(BACKEND_VARIABLE, "").strip().lower() in ("off", "none", "no", "0")


def sparse_backend() -> str | None:
    """The sparse Cholesky the engine may use: ``"cholmod"``, ``"qdldl"`` or None.

    CHOLMOD (scikit-sparse) when it imports, else qdldl, else None;
    :data:`BACKEND_VARIABLE` restricts the choice (``off``: none).
    """
    if sparse_switched_off():
        return None
    wanted = os.environ.get(BACKEND_VARIABLE, "").strip().lower()
    names = [wanted] if wanted in ("cholmod", "qdldl") else ["cholmod", "qdldl"]
    return next((name for name in names if _installed(name)), None)


_OPTIMIZED_BLAS = ("openblas", "mkl", "blis", "atlas", "flexiblas", "accelerate")


@cache
def reference_blas() -> bool:
    """Whether CHOLMOD runs on the reference (netlib) BLAS, about ten times slower.

    Read from the shared libraries mapped into the process once scikit-sparse
    is imported (Linux): a ``libblas.so`` outside any optimized BLAS's
    directory, such as Debian's ``/usr/lib/x86_64-linux-gnu/blas/``.
    """
    if not _installed("cholmod"):
        return False
    try:
        with open("/proc/self/maps") as handle:
            paths = {line.split()[-1] for line in handle if "libblas.so" in line}
    except OSError:
        return False
    return any(not any(name in path.lower() for name in _OPTIMIZED_BLAS) for path in paths)


# -- symbolic analysis ---------------------------------------------------------
def column_counts(lower: sp.csc_matrix) -> np.ndarray:
    """Column counts of the Cholesky factor of a symmetric matrix (diagonal included).

    ``lower`` holds the lower triangle (with the diagonal) of the matrix in
    the order it will be factored. The elimination tree, a postorder and the
    counts follow Gilbert, Ng and Peyton (1994), in ``O(nnz)`` steps
    (Davis, *Direct Methods for Sparse Linear Systems*, ch. 4).
    """
    return symbolic_factor(lower)[1]


def symbolic_factor(lower: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The elimination tree (parent of each column, -1 at roots) and the column counts.

    See :func:`column_counts`.
    """
    n = lower.shape[0]
    lower = sp.csc_matrix(lower)
    lower.sort_indices()
    upper = lower.tocsr()  # row k of the lower triangle = column k of the upper one
    parent = _elimination_tree(upper.indptr.tolist(), upper.indices.tolist(), n)
    post = _postorder(parent)
    counts = _counts(lower.indptr.tolist(), lower.indices.tolist(), parent, post)
    return np.asarray(parent, dtype=np.int64), np.asarray(counts, dtype=float)


def supernode_sizes(parent: np.ndarray, counts: np.ndarray) -> tuple[int, float]:
    """Supernodes of the factor and the update entries of its one-column supernodes.

    Column ``j + 1`` continues ``j``'s supernode when it is ``j``'s parent and
    its count is one less (the same rows below); CHOLMOD's relaxed supernodes
    are at least this coarse. A one-column supernode with ``b`` rows below
    sends an update of ``b (b + 1) / 2`` entries, which CHOLMOD's supernodal
    factorization forms and scatters far more slowly than it does BLAS work.

    Returns
    -------
    n_supernodes : int
    thin_updates : float
        The sum of ``b (b + 1) / 2`` over the one-column supernodes.
    """
    n = len(counts)
    if n == 0:
        return 0, 0.0
    columns = np.arange(n - 1)
    continues = np.zeros(n, dtype=bool)
    continues[1:] = (parent[:-1] == columns + 1) & (counts[1:] == counts[:-1] - 1)
    starts = np.flatnonzero(~continues)
    widths = np.diff(np.append(starts, n))
    below = counts[starts[widths == 1]] - 1.0
    return len(starts), float(np.sum(below * (below + 1.0) / 2.0))


def _elimination_tree(indptr: list[int], indices: list[int], n: int) -> list[int]:
    parent = [-1] * n
    ancestor = [-1] * n
    for k in range(n):
        for p in range(indptr[k], indptr[k + 1]):
            i = indices[p]
            while i != -1 and i < k:
                following = ancestor[i]
                ancestor[i] = k
                if following == -1:
                    parent[i] = k
                i = following
    return parent


def _postorder(parent: list[int]) -> list[int]:
    n = len(parent)
    children: list[list[int]] = [[] for _ in range(n)]
    roots = []
    for j in range(n - 1, -1, -1):
        (roots if parent[j] == -1 else children[parent[j]]).append(j)
    post: list[int] = []
    stack = roots[::-1]
    expanded = [False] * n
    while stack:
        j = stack[-1]
        if expanded[j]:
            post.append(stack.pop())
            continue
        expanded[j] = True
        stack.extend(children[j])
    return post


def _counts(indptr: list[int], indices: list[int], parent: list[int], post: list[int]) -> list[int]:
    n = len(parent)
    first, max_first, prev_leaf = [-1] * n, [-1] * n, [-1] * n
    ancestor = list(range(n))
    delta = [0] * n
    for k, j in enumerate(post):
        delta[j] = 1 if first[j] == -1 else 0  # a leaf of the tree
        while j != -1 and first[j] == -1:
            first[j] = k
            j = parent[j]
    for j in post:
        if parent[j] != -1:
            delta[parent[j]] -= 1
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            if i <= j or first[j] <= max_first[i]:
                continue  # not a leaf of row i's subtree
            max_first[i] = first[j]
            previous = prev_leaf[i]
            prev_leaf[i] = j
            delta[j] += 1
            if previous == -1:
                continue  # the first leaf of row i's subtree
            q = previous  # the least common ancestor, with path compression
            while q != ancestor[q]:
                q = ancestor[q]
            s = previous
            while s != q:
                s, ancestor[s] = ancestor[s], q
            delta[q] -= 1
        if parent[j] != -1:
            ancestor[j] = parent[j]
    for j in range(n):
        if parent[j] != -1:
            delta[parent[j]] += delta[j]
    return delta


SECONDS_PER_DEGREE_UPDATE = 1e-7
"""One set update of the minimum-degree count (mlmRev's star: 1e6 in 0.1 s)."""

MINIMUM_DEGREE_WORK = 1e7
"""Set updates the minimum-degree count may spend before it gives up. qdldl factors
without BLAS at about 1e9 flop/s, so a factor needing many more flops per evaluation
is better left to the dense path or to CHOLMOD. On the uniform crossing of 200,000
rows, 20,000 x 5,000 levels (a 13 s fit on the dense path), the count gives up after
0.6 s with 3e6, 1.4 s with 1e7 and 3.1 s with 3e7; partially crossed designs of
10,000 rows with four terms (order 9,000 to 12,000) need up to 1e7 (0.3 s) and then
factor in 0.02 to 0.15 s an evaluation against 0.3 to 4 s on the dense path."""


DENSE_TAIL_SHARE = 0.5
"""Once the least degree left is this share of the nodes left, the count takes the rest
as a dense block (an upper bound on its fill): counting a dense tail node by node is
cubic in its size. Partially crossed terms eliminate to such a tail: 12,578 rows, (1 |
g:h) 5,399 levels, (0 + f | g) 1,384, (z | h) 264, (1 | site) 8 (order 10,087) leave
472 nodes of degree 366, whose count would spend 3.5e7 of the 3.8e7 set updates."""


def minimum_degree_counts(
    lower: sp.csc_matrix, work: float = MINIMUM_DEGREE_WORK
) -> np.ndarray | None:
    """Column counts of the Cholesky factor under a greedy minimum-degree ordering.

    An estimate of the fill of qdldl's AMD ordering (whose permutation is not
    known before it factors). Eliminating a node joins its neighbours into a
    clique, ``O(degree^2)`` set updates; None when that exceeds ``work``
    (the factor is then too full for a simplicial factorization to pay). A
    dense tail (:data:`DENSE_TAIL_SHARE`) is counted as dense at once.
    """
    n = lower.shape[0]
    full = sp.csr_matrix(lower + lower.T)
    indptr, indices = full.indptr, full.indices
    adjacent = [set(indices[indptr[v] : indptr[v + 1]].tolist()) - {v} for v in range(n)]
    heap = [(len(nodes), v) for v, nodes in enumerate(adjacent)]
    heapq.heapify(heap)
    done = bytearray(n)
    counts = []
    spent = 0
    while heap:
        degree, v = heapq.heappop(heap)
        if done[v] or degree != len(adjacent[v]):
            continue  # eliminated, or an outdated degree
        remaining = n - len(counts)
        if degree >= DENSE_TAIL_SHARE * (remaining - 1):  # the rest as dense: a bound
            counts.extend(range(remaining, 0, -1))
            break
        done[v] = 1
        neighbours = adjacent[v]
        counts.append(len(neighbours) + 1)
        spent += len(neighbours) ** 2
        if spent > work:
            return None
        for u in neighbours:
            joined = adjacent[u]
            joined.discard(v)
            joined |= neighbours
            joined.discard(u)
            heapq.heappush(heap, (len(joined), u))
        adjacent[v] = set()
    return np.asarray(counts, dtype=float)


# -- block storage ---------------------------------------------------------------
@dataclass
class _BlockSegment:
    """The blocks of one pair of terms ``(ti >= tj)`` in the flat storage."""

    ti: int
    tj: int
    start: int
    n_blocks: int


class _BlockPattern:
    """The lower block triangle of ``Z'WZ`` held block by block, and its CSC pattern.

    ``values`` (flat) holds, for each pair of terms, the ``p_i x p_j`` blocks of
    the observed level pairs (diagonal blocks in full); ``gather`` takes the
    flat storage to the data of the lower-triangle CSC matrix (sorted indices)
    and ``diagonal`` marks the diagonal entries there.
    """

    def __init__(self, ztz: sp.coo_matrix, sizes: list[tuple[int, int]]) -> None:
        self.sizes = sizes
        offsets = np.concatenate([[0], np.cumsum([lv * p for lv, p in sizes])]).astype(np.int64)
        self.offsets = offsets
        self.order = int(offsets[-1])
        term_of = np.repeat(np.arange(len(sizes)), [lv * p for lv, p in sizes])
        cols_of = np.array([p for _, p in sizes])
        row, col, data = ztz.row.astype(np.int64), ztz.col.astype(np.int64), ztz.data
        ti, tj = term_of[row], term_of[col]
        li, ai = np.divmod(row - offsets[ti], cols_of[ti])
        lj, bj = np.divmod(col - offsets[tj], cols_of[tj])
        keep = (ti > tj) | ((ti == tj) & (li >= lj))
        row, col, data = row[keep], col[keep], data[keep]
        ti, tj, li, lj, ai, bj = ti[keep], tj[keep], li[keep], lj[keep], ai[keep], bj[keep]
        self.segments: list[_BlockSegment] = []
        self.values = np.zeros(0)
        flat = np.empty(len(row), dtype=np.int64)
        parts, start = [], 0
        n_terms = len(sizes)
        for a in range(n_terms):
            for b in range(a + 1):
                mask = (ti == a) & (tj == b)
                if not np.any(mask):
                    continue
                pa, pb = sizes[a][1], sizes[b][1]
                keys, block = np.unique(li[mask] * sizes[b][0] + lj[mask], return_inverse=True)
                flat[mask] = start + (block.ravel() * pa + ai[mask]) * pb + bj[mask]
                self.segments.append(_BlockSegment(a, b, start, len(keys)))
                parts.append(len(keys) * pa * pb)
                start += len(keys) * pa * pb
        self.values = np.zeros(start)
        self.values[flat] = data
        lower = row >= col
        csc = sp.csc_matrix(
            (flat[lower] + 1.0, (row[lower], col[lower])), shape=(self.order,) * 2
        )  # positions + 1: no entry is an explicit zero
        csc.sort_indices()
        self.indices, self.indptr = csc.indices, csc.indptr
        self.gather = csc.data.astype(np.int64) - 1
        diagonal = self.indptr[:-1]  # the first entry of each sorted column
        if not np.array_equal(self.indices[diagonal], np.arange(self.order)):
            raise ValueError("the random-effects cross-products lack a diagonal entry")
        self.diagonal = diagonal

    def scaled(self, factors: list[np.ndarray]) -> np.ndarray:
        """``Lambda' Z'WZ Lambda`` in the flat storage (a new array)."""
        out = np.empty_like(self.values)
        for seg in self.segments:
            pa, pb = self.sizes[seg.ti][1], self.sizes[seg.tj][1]
            stop = seg.start + seg.n_blocks * pa * pb
            Ta, Tb = factors[seg.ti], factors[seg.tj]
            if pa == 1 and pb == 1:
                np.multiply(
                    self.values[seg.start : stop], Ta[0, 0] * Tb[0, 0], out=out[seg.start : stop]
                )
                continue
            blocks = self.values[seg.start : stop].reshape(-1, pa, pb)
            out[seg.start : stop] = np.matmul(Ta.T, blocks @ Tb).reshape(-1)
        return out

    def matrix(self, factors: list[np.ndarray]) -> sp.csc_matrix:
        """The lower triangle of ``Lambda' Z'WZ Lambda + I`` as a CSC matrix."""
        data = self.scaled(factors)[self.gather]
        data[self.diagonal] += 1.0
        return sp.csc_matrix((data, self.indices, self.indptr), shape=(self.order,) * 2)

    def pattern(self) -> sp.csc_matrix:
        """The lower triangle's pattern (ones)."""
        ones = np.ones(len(self.indices))
        return sp.csc_matrix((ones, self.indices, self.indptr), shape=(self.order,) * 2)


# -- backends ----------------------------------------------------------------------
class _CholmodFactor:
    """CHOLMOD (scikit-sparse): the ordering once, a numeric refactorization per call.

    ``mode`` is CHOLMOD's supernodal ``L L'`` or its simplicial ``L D L'``
    (unit ``L``), whichever :attr:`SparseCounts.cholmod_mode` predicts faster.
    """

    name = "cholmod"

    def __init__(self, lower: sp.csc_matrix, mode: str = "supernodal") -> None:
        from sksparse.cholmod import analyze

        self.mode = mode
        self.factor = analyze(lower, mode=mode)

    def permutation(self) -> np.ndarray:
        return np.asarray(self.factor.P())

    def refactor(self, lower: sp.csc_matrix) -> bool:
        from sksparse.cholmod import CholmodNotPositiveDefiniteError

        try:
            self.factor.cholesky_inplace(lower)
        except CholmodNotPositiveDefiniteError:
            return False
        if self.mode == "simplicial":  # L D L' does not need a positive definite matrix
            return bool(np.all(self.factor.D() > 0))
        return True

    def logdet(self) -> float:
        return float(self.factor.logdet())

    def _half(self, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``H = L^-1 P rhs`` and ``D^-1 H`` (``H`` itself for ``L L'``).

        ``rhs' S^-1 rhs = H' D^-1 H``.
        """
        simplicial = self.mode == "simplicial"
        half = self.factor.solve_L(self.factor.apply_P(rhs), use_LDLt_decomposition=simplicial)
        return half, self.factor.solve_D(half) if simplicial else half

    def gram(self, rhs: np.ndarray) -> np.ndarray:
        """``rhs' S^-1 rhs`` through the half solve ``L^-1 P rhs``."""
        half, scaled = self._half(rhs)
        return half.T @ scaled

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.factor.solve_A(rhs)

    def inverse_diagonal_blocks(self, starts: np.ndarray, width: int) -> np.ndarray:
        """``(S^-1)[J, J]`` for the column blocks ``J = starts[i] + range(width)``."""
        columns = (starts[:, None] + np.arange(width)).ravel()
        unit = np.zeros((self.factor.P().size, len(columns)))
        unit[columns, np.arange(len(columns))] = 1.0
        half, scaled = self._half(unit)
        shape = (half.shape[0], len(starts), width)
        return np.einsum("rka,rkb->kab", half.reshape(shape), scaled.reshape(shape))


class _QdldlFactor:
    """qdldl: its own AMD ordering; ``update`` refactors with the same pattern."""

    name = "qdldl"

    def __init__(self, lower: sp.csc_matrix) -> None:
        import qdldl

        tagged = sp.csc_matrix(
            (np.arange(1, lower.nnz + 1, dtype=float), lower.indices, lower.indptr), lower.shape
        )
        upper = sp.csc_matrix(tagged.T)
        upper.sort_indices()
        self._from_lower = (upper.data - 1).astype(np.int64)
        self._upper = upper
        self._upper.data = lower.data[self._from_lower]
        self.solver = qdldl.Solver(self._upper, upper=True)
        self._pivots = np.asarray(self.solver.factors()[1])

    def refactor(self, lower: sp.csc_matrix) -> bool:
        self._upper.data = lower.data[self._from_lower]
        self.solver.update(self._upper, upper=True)
        self._pivots = np.asarray(self.solver.factors()[1])
        return bool(np.all(self._pivots > 0))

    def logdet(self) -> float:
        return float(np.sum(np.log(self._pivots)))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        if rhs.ndim == 1:
            return np.asarray(self.solver.solve(rhs))
        return np.column_stack([self.solver.solve(rhs[:, j]) for j in range(rhs.shape[1])])

    def gram(self, rhs: np.ndarray) -> np.ndarray:
        return rhs.T @ self.solve(rhs)

    def inverse_diagonal_blocks(self, starts: np.ndarray, width: int) -> np.ndarray:
        columns = (starts[:, None] + np.arange(width)).ravel()
        unit = np.zeros((self._upper.shape[0], len(columns)))
        unit[columns, np.arange(len(columns))] = 1.0
        solved = self.solve(unit)[columns].reshape(len(starts), width, len(starts), width)
        return solved[np.arange(len(starts)), :, np.arange(len(starts)), :]


def _make_backend(
    name: str, lower: sp.csc_matrix, mode: str = "supernodal"
) -> _CholmodFactor | _QdldlFactor:
    return _CholmodFactor(lower, mode) if name == "cholmod" else _QdldlFactor(lower)


def _fixed_blocks(
    a_r1: sp.csr_matrix, a_rr: sp.csr_matrix, r: int
) -> tuple[np.ndarray, np.ndarray]:
    """``Z'W [X y]`` (q x (p + 1)) and ``[X y]' W [X y]`` from the engine's cross-products."""
    return np.vstack([a_r1[r:].T.toarray(), a_rr[:r, r:].toarray()]), a_rr[r:, r:].toarray()


# -- the system --------------------------------------------------------------------
@dataclass
class SparseFactorPieces:
    """What one sparse factorization gives: the criterion's pieces and the estimates.

    ``u`` (all random effects, spherical, in the engine's layout) and ``beta``
    are filled only when asked for (:meth:`SparseSystem.factor` with
    ``solve=True``).
    """

    log_det_l2: float
    log_det_rx2: float
    pwrss: float
    vcov_unscaled: np.ndarray
    beta: np.ndarray | None = None
    u: np.ndarray | None = None


class SparseSystem:
    """The penalized system of all random terms, for a sparse Cholesky factor.

    Parameters
    ----------
    a11 : ndarray, shape (l1, p1, p1)
        Per-level blocks of the first term's ``Z_1' W Z_1``.
    a_r1 : scipy.sparse matrix, shape (m, l1 p1)
        ``[Z_2 ... Z_k X y]' W Z_1``.
    a_rr : scipy.sparse matrix, shape (m, m)
        ``[Z_2 ... Z_k X y]' W [Z_2 ... Z_k X y]``.
    rest_sizes : list of (levels, cols)
        The other terms, in the engine's order.
    n_fixed : int
        ``p``.
    backend : {"cholmod", "qdldl"}
    work : float
        Budget of qdldl's minimum-degree count (:data:`MINIMUM_DEGREE_WORK`).

    The ordering (CHOLMOD's, or qdldl's own AMD) is computed once; the counts
    (:attr:`counts`) come from a symbolic analysis before any numeric work.
    """

    def __init__(
        self,
        a11: np.ndarray,
        a_r1: sp.spmatrix,
        a_rr: sp.spmatrix,
        rest_sizes: list[tuple[int, int]],
        n_fixed: int,
        backend: str,
        work: float = MINIMUM_DEGREE_WORK,
    ) -> None:
        l1, p1 = a11.shape[0], a11.shape[1]
        self.sizes = [(l1, p1)] + list(rest_sizes)
        self.n_fixed = n_fixed
        self.backend_name = backend
        q1 = l1 * p1
        r = sum(lv * p for lv, p in rest_sizes)
        a_r1, a_rr = sp.csr_matrix(a_r1), sp.csr_matrix(a_rr)
        first = sp.block_diag(list(a11), format="coo") if l1 else sp.coo_matrix((0, 0))
        ztz = sp.bmat([[first, None], [a_r1[:r], a_rr[:r, :r]]], format="coo")
        self.pattern = _BlockPattern(ztz, self.sizes)
        self.a_rk, self.a_kk = _fixed_blocks(a_r1, a_rr, r)
        self.order = q1 + r
        self._lock = threading.Lock()
        self._backend: _CholmodFactor | _QdldlFactor | None = None
        self.counts = self._analyze(work)

    def with_response(self, a_r1: sp.spmatrix, a_rr: sp.spmatrix) -> SparseSystem:
        """The system for cross-products that differ in the response only.

        Shares the pattern, the ordering and the factor (and its lock).
        """
        out = copy.copy(self)
        r = self.order - self.sizes[0][0] * self.sizes[0][1]
        out.a_rk, out.a_kk = _fixed_blocks(sp.csr_matrix(a_r1), sp.csr_matrix(a_rr), r)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_backend"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _initial_matrix(self) -> sp.csc_matrix:
        """The system at ``Lambda = I`` (positive definite: ``Z'WZ + I``)."""
        return self.pattern.matrix([np.eye(p) for _, p in self.sizes])

    def _analyze(self, work: float) -> SparseCounts:
        """Column counts of the factor under CHOLMOD's ordering, or under a greedy
        minimum degree for qdldl (whose own AMD ordering is known only once it factors;
        ``work`` bounds that count, see :func:`minimum_degree_counts`)."""
        lower = self.pattern.pattern()
        supernodes, thin_updates = 0, 0.0
        if self.backend_name == "cholmod":
            # CHOLMOD orders alike in either mode; simplicial is the more common choice
            self._backend = _CholmodFactor(self._initial_matrix(), "simplicial")
            perm = self._backend.permutation()
            full = (lower + sp.triu(lower.T, 1)).tocsr()
            parent, counts = symbolic_factor(sp.tril(full[perm][:, perm]).tocsc())
            supernodes, thin_updates = supernode_sizes(parent, counts)
        else:
            counts = minimum_degree_counts(lower, work)
            if counts is None:  # too much fill to count: as dense
                counts = np.arange(self.order, 0, -1, dtype=float)
        out = SparseCounts(
            order=self.order,
            entries=len(self.pattern.indices),
            factor_entries=float(counts.sum()),
            flops=float(np.sum(counts**2)),
            n_rhs=self.n_fixed + 1,
            backend=self.backend_name,
            exact=self.backend_name == "cholmod",
            reference_blas=self.backend_name == "cholmod" and reference_blas(),
            supernodes=supernodes,
            thin_updates=thin_updates,
        )
        if self.backend_name == "cholmod" and out.cholmod_mode != "simplicial":
            self._backend = None  # analysed in that mode on first use: the chooser may go dense
        return out

    def _refactor(self, factors: list[np.ndarray]) -> bool:
        lower = self.pattern.matrix(factors)
        if self._backend is None:
            self._backend = _make_backend(
                self.backend_name, self._initial_matrix(), self.counts.cholmod_mode
            )
        return self._backend.refactor(lower)

    def _scaled_rk(self, factors: list[np.ndarray]) -> np.ndarray:
        """``Lambda' Z'W [X y]`` (q x (p + 1))."""
        out = np.empty_like(self.a_rk)
        for (levels, cols), start, T in zip(self.sizes, self.pattern.offsets, factors):
            block = self.a_rk[start : start + levels * cols].reshape(levels, cols, -1)
            out[start : start + levels * cols] = np.matmul(T.T, block).reshape(levels * cols, -1)
        return out

    def factor(self, factors: list[np.ndarray], solve: bool = False) -> SparseFactorPieces | None:
        """The criterion's pieces at the terms' ``T`` (engine order); None if not positive definite.

        ``solve`` also computes ``beta`` and the spherical random effects ``u``.
        """
        with self._lock:
            if not self._refactor(factors):
                return None
            backend = self._backend
            log_det = backend.logdet()
            s_rk = self._scaled_rk(factors)
            reduced = self.a_kk - backend.gram(s_rk)
            try:
                chol = np.linalg.cholesky(reduced)
            except np.linalg.LinAlgError:
                return None
            p = self.n_fixed
            diag = np.diagonal(chol)
            if np.any(diag[:p] <= 0):
                return None
            vcov = sla.cho_solve((chol[:p, :p], True), np.eye(p)) if p else np.zeros((0, 0))
            pieces = SparseFactorPieces(
                log_det, 2.0 * float(np.sum(np.log(diag[:p]))), float(diag[-1] ** 2), vcov
            )
            if solve:
                beta = (
                    sla.solve_triangular(chol[:p, :p].T, chol[p, :p], lower=False)
                    if p
                    else np.zeros(0)
                )
                pieces.beta = beta
                pieces.u = backend.solve(s_rk @ np.concatenate([-beta, [1.0]]))
            return pieces

    def inverse_blocks(self, factors: list[np.ndarray]) -> list[np.ndarray] | None:
        """Diagonal blocks ``(S^-1)_kk`` per term, shape (levels, cols, cols) each."""
        out = []
        with self._lock:
            if not self._refactor(factors):
                return None
            for (levels, cols), start in zip(self.sizes, self.pattern.offsets):
                per_chunk = max(1, _CHUNK_BYTES // (8 * self.order * cols))
                blocks = []
                for first in range(0, levels, per_chunk):
                    level = np.arange(first, min(levels, first + per_chunk))
                    starts = start + level * cols
                    blocks.append(self._backend.inverse_diagonal_blocks(starts, cols))
                out.append(np.concatenate(blocks) if blocks else np.zeros((0, cols, cols)))
        return out
