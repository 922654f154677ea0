"""Cost and memory models of the engine's strategies, and the memory check.

The engine chooses how to evaluate the profiled criterion (see docs/engine.md,
"Choosing a strategy") from the sizes of the design alone: the order ``m`` of
the dense Schur complement, the nonzeros of ``A_R1`` per level of the first
term, and, for the sparse factorization, the nonzeros and flops of its
Cholesky factor from a symbolic analysis. The constants are seconds of one
core of the 2-core benchmark machine (scipy's OpenBLAS), measured as
described in docs/engine.md; they only rank strategies, so a machine twice as
fast changes no choice.

Memory: every strategy's peak bytes are estimated before anything of that
size is allocated; a model none of whose strategies fits in the memory
available is refused with the figure and the remedy
(:func:`check_memory`). The limit is the least of ``MemAvailable`` of
``/proc/meminfo`` and the room under the process's ``ulimit -v`` and cgroup
memory limit, or the environment variable :data:`MEMORY_VARIABLE`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..exceptions import DataError

__all__ = [
    "ALWAYS_AVAILABLE",
    "CGROUP_FILES",
    "EVALUATION_OVERHEAD",
    "EXPECTED_EVALUATIONS",
    "GRADIENT_MAX_BYTES",
    "GRADIENT_OVERHEAD",
    "GRADIENT_WORK_ARRAYS",
    "MEMORY_VARIABLE",
    "POLISHED_MAX_THETA",
    "SCALING_SLAB_ELEMENTS",
    "SEPARATE_PRODUCT_ORDER",
    "DesignSizes",
    "SparseCounts",
    "available_memory",
    "blas_rate",
    "bobyqa_fit_calls",
    "check_memory",
    "cholmod_factor_seconds",
    "dense_call_seconds",
    "dense_factor_seconds",
    "dense_fit_seconds",
    "dense_gradient_bytes",
    "format_bytes",
    "gradient_fit_calls",
    "sparse_bytes",
    "sparse_seconds",
]

EXPECTED_EVALUATIONS = 60
"""Evaluations of a typical fit, to weigh setup against per-evaluation cost."""

ALWAYS_AVAILABLE = 64 * 2**20
"""Estimates up to this many bytes are not checked against the memory available
(unless :data:`MEMORY_VARIABLE` sets a limit)."""

MEMORY_VARIABLE = "STATSMODELS_LMER_MEMORY"
"""Environment variable overriding the memory limit: bytes with an optional
unit (``"6GiB"``, ``"500M"``), or ``"off"`` to skip the check."""

# -- seconds (one core; docs/engine.md, "Choosing a strategy") ----------------
SECONDS_PER_PAIR = 6.0e-9  # gather, multiply, reduceat, scatter of one pair product
SECONDS_PER_PAIR_SETUP = 1.5e-7  # forming, merging and sorting one pair product
SECONDS_PER_ELEMENT = 1.0e-9  # a memory-bound pass over one element
SECONDS_PER_CLASS_ELEMENT = 0.6e-9  # one element of a class product in dgemv
# An evaluation's fixed work on the sparse path (CHOLMOD): 0.4-0.7 ms measured at orders
# 150-2300; 1e-2 overstated thin site crossings of order 2000-7000 (predicted 14-21 ms an
# evaluation, measured 1.8-6 ms), so pairs were chosen for fits 5-9 times slower.
SECONDS_PER_SPARSE_CALL = 1.0e-3
# CHOLMOD's two factorizations (docs/engine.md, "CHOLMOD: supernodal or simplicial"),
# fitted on 24 designs (uniform crossings 1e5-2e6 rows, site crossings, medium designs):
SECONDS_PER_SPARSE_FLOP = 3.0e-11  # supernodal, per flop (sum of c_j^2) in BLAS
REFERENCE_BLAS_SECONDS_PER_FLOP = 3.0e-10  # the same on the reference (netlib) BLAS
SECONDS_PER_SUPERNODE = 5.0e-7  # supernodal, per supernode (0.25-0.8 us measured)
SECONDS_PER_THIN_UPDATE = 5.0e-9  # supernodal, per update entry of a one-column supernode
SIMPLICIAL_SECONDS_PER_FLOP = 3.1e-10  # simplicial (no BLAS), per flop
SIMPLICIAL_SECONDS_PER_ENTRY = 8.6e-9  # simplicial, per nonzero of L
SECONDS_PER_SPARSE_ENTRY = 6.0e-8  # per stored entry of the sparse matrix (refill)
SECONDS_PER_SOLVE_ENTRY = 2.0e-9  # per nonzero of L per right-hand side
QDLDL_SECONDS_PER_FLOP = 5.0e-10  # qdldl (simplicial, no BLAS), per flop
QDLDL_SECONDS_PER_ENTRY = 6.0e-9  # qdldl, per nonzero of L (and per solve)
QDLDL_SECONDS_PER_CALL = 3.0e-4  # qdldl, an evaluation's fixed work
QDLDL_SECONDS_PER_STORED = 1.0e-8  # qdldl, per stored entry of the sparse matrix (refill)
SMALL_SECONDS = 5e-5  # below this an evaluation is "tiny": the plain dense product

# -- bytes -------------------------------------------------------------------
BYTES_PER_PAIR = 40  # flat position, value, weight index (kept) and the product
BYTES_PER_PAIR_SETUP = 120  # transient while the pair products are formed
BYTES_PER_ENTRY = 40  # a stored entry of the sparse cross-products (with copies)
SPARSE_WORKSPACE = 32 * 2**20  # CHOLMOD's and scipy's workspaces
SEPARATE_PRODUCT_ORDER = 512
"""Up to this order ``m`` the dense strategy forms its product in an ``m x m`` array of its
own, then subtracts it (``engine.blocks.DenseProduct``); above, in place."""
SCALING_SLAB_ELEMENTS = 1 << 22
"""Elements of one temporary array of the dense path's scaling by a vector rest term
(32 MiB); an evaluation holds two at once (``engine.objective.RestScaling``)."""


def blas_rate(m: int) -> float:
    """Flops per second of one core in BLAS-3 work on blocks of order ``m``.

    ``dpotrf``, ``dgemm`` and ``dsyrk`` of scipy's OpenBLAS rise from about
    40 GF/s at m = 1000 to 75 at m = 2e4 on the benchmark machine (``dsyrk``
    counted as a full product: it runs at half the rate).
    """
    return 85e9 * m / (m + 1200.0)


def dense_factor_seconds(m: int) -> float:
    """One in-place dense evaluation besides the product: fill, scale, ``dpotrf``."""
    return m**3 / 3.0 / blas_rate(m) + 3.0 * m * m * SECONDS_PER_ELEMENT


@dataclass
class DesignSizes:
    """The sizes that fix each strategy's cost, from the cross-products or the codes.

    Attributes
    ----------
    first_levels, first_cols : int
        ``l1`` and ``p1`` of the first (eliminated) term.
    rest_sizes : list of (levels, cols)
        The other random terms.
    n_fixed : int
        ``p``.
    rows_per_level : ndarray, shape (l1,)
        Nonzero rows of ``A_R1`` in each first-term level's columns
        (rest levels met times their columns, plus ``p + 1``).
    n_classes : int
        Weight classes (at most ``l1``).
    rest_entries : int
        Stored entries of the random part of ``A_RR`` (observed level pairs).
    """

    first_levels: int
    first_cols: int
    rest_sizes: list[tuple[int, int]]
    n_fixed: int
    rows_per_level: np.ndarray
    n_classes: int
    rest_entries: int

    @property
    def n_random_rest(self) -> int:
        """``r``: random effects of the rest."""
        return sum(levels * cols for levels, cols in self.rest_sizes)

    @property
    def size_rest(self) -> int:
        """``m = r + p + 1``: the order of the dense Schur complement."""
        return self.n_random_rest + self.n_fixed + 1

    @property
    def n_first(self) -> int:
        """``q1 = l1 p1``."""
        return self.first_levels * self.first_cols

    @property
    def n_random(self) -> int:
        """``q``: all random effects."""
        return self.n_first + self.n_random_rest

    @property
    def n_theta(self) -> int:
        """Covariance parameters of unstructured terms of these sizes (an upper bound)."""
        cols = [self.first_cols] + [p for _, p in self.rest_sizes]
        return sum(p * (p + 1) // 2 for p in cols)

    @property
    def pairs_by_factor(self) -> bool:
        """Whether the pair products are formed by factor (vector first term, many classes)."""
        p1 = self.first_cols
        return p1 > 1 and self.n_classes * 2 * p1 > self.first_levels

    @property
    def n_pairs(self) -> float:
        """Pair products: ``p1 sum c_l (c_l + 1) / 2`` by factor, ``p1^2`` times that
        by class before weight classes merge them."""
        c = self.rows_per_level.astype(float)
        per_column = float(np.sum(c * (c + 1.0) / 2.0))
        p1 = self.first_cols
        return per_column * (p1 if self.pairs_by_factor else p1 * p1)

    @property
    def a_r1_entries(self) -> float:
        """Stored entries of ``A_R1``."""
        return float(self.first_cols * np.sum(self.rows_per_level))

    @property
    def vector_rest(self) -> bool:
        """Whether some rest term has several columns."""
        return any(cols > 1 for _, cols in self.rest_sizes)

    def base_bytes(self) -> float:
        """The cross-products every strategy keeps (sparse parts and small blocks)."""
        entries = self.a_r1_entries + self.rest_entries + 2.0 * self.size_rest * (self.n_fixed + 1)
        return BYTES_PER_ENTRY * entries + 8.0 * self.first_levels * self.first_cols**2

    def dense_seconds(self, strategy: str) -> tuple[float, float]:
        """``(setup, per evaluation)`` seconds of a dense strategy (``pairs``, ...)."""
        m, q1, p1 = self.size_rest, self.n_first, self.first_cols
        common = dense_factor_seconds(m)
        if strategy == "pairs":
            return self.n_pairs * SECONDS_PER_PAIR_SETUP, common + self.n_pairs * SECONDS_PER_PAIR
        if strategy == "classes":
            n_weights = self.n_classes * p1 * p1
            setup = m * m * q1 * p1 * p1 / blas_rate(m)
            return setup, common + (n_weights + 1) * m * m * SECONDS_PER_CLASS_ELEMENT
        flops = m * m * q1 * p1
        return 0.0, common + flops / blas_rate(m) + m * q1 * p1 * SECONDS_PER_ELEMENT

    def dense_bytes(self, strategy: str, buffers: int = 1) -> float:
        """Peak bytes of a dense strategy: ``buffers`` m x m arrays and its tables.

        A fit needs one work array (the solution keeps it as its factor);
        evaluations after the fit (derivatives, profiles) take a second.
        """
        m, q1, p1 = self.size_rest, self.n_first, self.first_cols
        total = self.base_bytes() + 8.0 * m * m * buffers
        if self.vector_rest and buffers:  # the scaling's slabs (a copy and a product)
            total += 2 * 8.0 * min(m * m, SCALING_SLAB_ELEMENTS)
        if strategy == "pairs":
            return total + self.n_pairs * max(BYTES_PER_PAIR, BYTES_PER_PAIR_SETUP)
        if strategy == "classes":  # the products, and while they are formed A_R1 dense twice
            products = 8.0 * m * m * (self.n_classes * p1 * p1 + 1)
            return total + products + 2 * 8.0 * m * q1
        separate = 8.0 * m * m if m <= SEPARATE_PRODUCT_ORDER else 0.0  # the product apart
        return total + 2 * 8.0 * m * q1 + separate  # A_R1 dense and its scaled copy


@dataclass
class SparseCounts:
    """Sizes of the sparse factorization of the whole random part.

    Attributes
    ----------
    order : int
        ``q``.
    entries : int
        Stored entries of the lower triangle of ``Lambda' Z'WZ Lambda + I``.
    factor_entries : float
        Nonzeros of its Cholesky factor ``L`` (from the symbolic analysis).
    flops : float
        ``sum_j c_j^2`` over the factor's column counts.
    n_rhs : int
        ``p + 1`` (the solves with ``[X y]``).
    backend : str
        ``"cholmod"`` or ``"qdldl"``.
    exact : bool
        Whether the counts are those of the backend's own ordering (CHOLMOD)
        rather than an estimate (qdldl, counted under a greedy minimum degree).
    reference_blas : bool
        Whether CHOLMOD runs on the reference (netlib) BLAS.
    supernodes : int
        Supernodes of the factor (CHOLMOD; :func:`~.sparse.supernode_sizes`).
    thin_updates : float
        Update entries of its one-column supernodes (CHOLMOD).
    """

    order: int
    entries: int
    factor_entries: float
    flops: float
    n_rhs: int
    backend: str
    exact: bool = True
    reference_blas: bool = False
    supernodes: int = 0
    thin_updates: float = 0.0

    @property
    def cholmod_mode(self) -> str:
        """CHOLMOD's factorization predicted faster: ``"supernodal"`` or ``"simplicial"``."""
        supernodal, simplicial = cholmod_factor_seconds(self)
        return "supernodal" if supernodal <= simplicial else "simplicial"


GRADIENT_MAX_BYTES = 2 * 2**30
"""Largest working memory of one gradient (above it, derivative-free fits)."""

GRADIENT_WORK_ARRAYS = 4
"""``m x m`` arrays alive during a gradient, at most: the factor, the unscaled
Schur complement, the inverse of the factor's leading block (in the factor's own
array during a fit, a copy for Satterthwaite) and ``V Lambda_R'``."""


def dense_gradient_bytes(sizes: DesignSizes, strategy: str | None) -> float:
    """Estimated bytes of the arrays one gradient holds on a dense strategy (None: no product)."""
    m = sizes.size_rest
    needed = GRADIENT_WORK_ARRAYS * 8.0 * m * m
    if strategy == "dense":
        needed += 8.0 * m * sizes.first_levels * sizes.first_cols  # Q A_R1 in the adjoint
    return needed


def dense_fit_seconds(sizes: DesignSizes, strategy: str, n_theta: int) -> float:
    """Predicted seconds of a fit's calls on a dense strategy (its setup not included).

    :data:`EXPECTED_EVALUATIONS` evaluations, or :func:`gradient_fit_calls`
    gradients where those are cheaper and fit in :data:`GRADIENT_MAX_BYTES`
    (the fit then uses L-BFGS-B, see ``engine.gradient.gradient_available``).
    """
    evaluation, gradient = dense_call_seconds(sizes, strategy)
    seconds = EXPECTED_EVALUATIONS * evaluation
    if dense_gradient_bytes(sizes, strategy) <= GRADIENT_MAX_BYTES:
        seconds = min(seconds, gradient_fit_calls(n_theta) * gradient)
    return seconds


def bobyqa_fit_calls(n_theta: int, close_start: bool = False) -> float:
    """Evaluations of a BOBYQA fit with its verification.

    ``30 + 12 k^1.5`` from lme4's default start (measured: k = 2: 40-58,
    k = 6: 252, kb07 k = 20: 1451, k = 72: 5108); ``12 + 15 k`` from a close
    start with a first step of a quarter of theta (measured: k = 2: 33-46,
    InstEval k = 3: 57).
    """
    if close_start:
        return 12.0 + 15.0 * n_theta
    return 30.0 + 12.0 * n_theta**1.5


POLISHED_MAX_THETA = 10
"""Fits with at most this many theta are verified by the gradient's local model
(``fitting.run.LOCAL_GRADIENT_MAX_K``), which lets L-BFGS-B stop early."""


def gradient_fit_calls(n_theta: int) -> float:
    """Gradients of an L-BFGS-B fit with its verification.

    ``4 + 3 k`` with at most :data:`POLISHED_MAX_THETA` theta, whose local
    check reuses the optimizer's last gradients and lets it stop early
    (measured, interior optima: k = 2: 8-11, InstEval k = 3: 16, ``(x|A) +
    (x|B)`` k = 6: 15 from the level-regression start); ``8 + 4 k`` above
    (k = 20: 95, k = 72: 319, each ending with a restart).
    """
    if n_theta <= POLISHED_MAX_THETA:
        return 4.0 + 3.0 * n_theta
    return 8.0 + 4.0 * n_theta


def dense_call_seconds(sizes: DesignSizes, strategy: str) -> tuple[float, float]:
    """Predicted seconds of one evaluation and of one gradient on a dense strategy.

    A gradient is an evaluation plus the adjoint of the product (as costly as
    the product), the inverse of the factor's leading block (``2 m^3 / 3``
    flops) and 16 passes over ``m x m`` arrays (24 with a vector-valued rest
    term; calibrated on InstEval, the 20,000 x 5,000 crossed model and
    ``(x|A) + (x|B)``); each call also has a fixed
    Python cost (:data:`EVALUATION_OVERHEAD`, :data:`GRADIENT_OVERHEAD`).
    """
    m = sizes.size_rest
    _, evaluation = sizes.dense_seconds(strategy)
    product = max(evaluation - dense_factor_seconds(m), 0.0)
    inverse = 2.0 * m**3 / 3.0 / blas_rate(m)
    passes = (24.0 if sizes.vector_rest else 16.0) * m * m * SECONDS_PER_ELEMENT
    gradient = evaluation + product + inverse + passes + GRADIENT_OVERHEAD
    return evaluation + EVALUATION_OVERHEAD, gradient


EVALUATION_OVERHEAD = 3e-5
"""Fixed seconds of one evaluation on the blocked path (Python calls)."""

GRADIENT_OVERHEAD = 3e-4
"""Fixed seconds of one gradient (Python calls; measured on sleepstudy's blocked path)."""


def cholmod_factor_seconds(counts: SparseCounts) -> tuple[float, float]:
    """Seconds of CHOLMOD's supernodal and of its simplicial numeric factorization.

    The supernodal one runs dense blocks through BLAS but forms and scatters
    each one-column supernode's update slowly (the 10,000 x 1,000 uniform
    crossing at 1e6 rows: 410 ms against 215 simplicial, whose flops cost
    ten times more each); the simplicial one has no per-supernode work.
    """
    per_flop = REFERENCE_BLAS_SECONDS_PER_FLOP if counts.reference_blas else SECONDS_PER_SPARSE_FLOP
    supernodal = (
        counts.supernodes * SECONDS_PER_SUPERNODE
        + counts.flops * per_flop
        + counts.thin_updates * SECONDS_PER_THIN_UPDATE
    )
    simplicial = (
        counts.flops * SIMPLICIAL_SECONDS_PER_FLOP
        + counts.factor_entries * SIMPLICIAL_SECONDS_PER_ENTRY
    )
    return supernodal, simplicial


def sparse_seconds(counts: SparseCounts) -> float:
    """Seconds of one evaluation through the sparse factorization."""
    if counts.backend == "qdldl":  # measured on mlmRev's star and site-clustered crossings
        per_entry = QDLDL_SECONDS_PER_ENTRY * (1 + counts.n_rhs)
        fixed = QDLDL_SECONDS_PER_CALL + counts.entries * QDLDL_SECONDS_PER_STORED
        return fixed + counts.flops * QDLDL_SECONDS_PER_FLOP + counts.factor_entries * per_entry
    fixed = SECONDS_PER_SPARSE_CALL + counts.entries * SECONDS_PER_SPARSE_ENTRY
    solves = counts.n_rhs * counts.factor_entries * SECONDS_PER_SOLVE_ENTRY
    return fixed + min(cholmod_factor_seconds(counts)) + solves


def sparse_bytes(counts: SparseCounts, sizes: DesignSizes) -> float:
    """Peak bytes of the sparse path: the factor (with supernodal padding),
    the block values in three arrays, the solves with ``[X y]``."""
    factor = 2.5 * 8.0 * counts.factor_entries
    entries = BYTES_PER_ENTRY * counts.entries
    solves = 3 * 8.0 * counts.order * counts.n_rhs
    return sizes.base_bytes() + factor + entries + solves + SPARSE_WORKSPACE


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _parse_bytes(text: str) -> float | None:
    """Bytes from ``"6GiB"``, ``"500M"``, ``"1e9"``; None for ``"off"``."""
    value = text.strip().lower()
    if value in ("off", "none", "no", "0", "inf"):
        return None
    match = re.fullmatch(r"([0-9.e+]+)\s*([kmgt]?)(i?b)?", value)
    if match is None:
        raise ValueError(
            f"{MEMORY_VARIABLE}={text!r}: give bytes with an optional unit ('6GiB', '500M') "
            "or 'off'"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def available_memory() -> float | None:
    """Bytes the engine may use: :data:`MEMORY_VARIABLE`, else the least of
    ``MemAvailable``, the room left under the process's address-space limit
    (``ulimit -v``) and under its cgroup's memory limit (a container's or a
    batch job's).

    None when the check is off or no figure is known (no ``/proc``).
    """
    override = os.environ.get(MEMORY_VARIABLE)
    if override is not None:
        return _parse_bytes(override)
    figures = [_proc_value("/proc/meminfo", "MemAvailable:"), _address_space_room()]
    figures.append(_cgroup_room())
    known = [value for value in figures if value is not None]
    return min(known) if known else None


def _proc_value(path: str, key: str) -> float | None:
    """A ``kB`` figure of a ``/proc`` file (``MemAvailable:``, ``VmSize:``), in bytes."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _address_space_room() -> float | None:
    """Bytes left under ``RLIMIT_AS`` (None without a limit)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = _proc_value("/proc/self/status", "VmSize:") or 0.0
    return max(0.0, float(soft) - used)


CGROUP_FILES = [
    (  # cgroup v2
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory.current",
        "/sys/fs/cgroup/memory.stat",
        "inactive_file",
    ),
    (  # cgroup v1
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "/sys/fs/cgroup/memory/memory.stat",
        "total_inactive_file",
    ),
]
"""(limit, usage, stat file, reclaimable key) of the cgroup memory controller, tried in order."""


def _cgroup_room() -> float | None:
    """Bytes left under this process's cgroup memory limit (None without one).

    The usage less the inactive page cache, which the kernel reclaims before
    it runs out (the usage counts it: 538 MB of a 1.54 GB usage here).
    """
    for limit_path, usage_path, stat_path, reclaimable in CGROUP_FILES:
        try:
            with open(limit_path) as handle:
                text = handle.read().strip()
            with open(usage_path) as handle:
                used = float(handle.read().strip())
        except (OSError, ValueError):
            continue
        if text == "max" or not text.isdigit() or int(text) >= 2**60:  # v1's "no limit"
            return None
        return max(0.0, float(text) - used + _stat_value(stat_path, reclaimable))
    return None


def _stat_value(path: str, key: str) -> float:
    """A ``key value`` line of a cgroup stat file (0 when missing)."""
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return float(value)
    except (OSError, ValueError):
        return 0.0
    return 0.0


def format_bytes(value: float) -> str:
    """``3.2 GiB``, ``640 MiB``, ``12 KiB``."""
    if value >= 2**30:
        return f"{value / 2**30:.1f} GiB"
    if value >= 2**20:
        return f"{value / 2**20:.0f} MiB"
    return f"{value / 2**10:.0f} KiB"


def check_memory(
    needed: float, what: str, remedy: str, task: str = "fitting this model needs"
) -> None:
    """Refuse (DataError) when ``needed`` bytes exceed the memory available.

    Parameters
    ----------
    needed : float
        Estimated peak bytes of the cheapest way to fit the model.
    what : str
        What needs them ("the dense Schur complement of order 20003").
    remedy : str
        What the user can do.
    task : str
        The start of the message: what needs the memory.

    Raises
    ------
    DataError
    """
    if needed <= ALWAYS_AVAILABLE and os.environ.get(MEMORY_VARIABLE) is None:
        return  # no need to read /proc/meminfo
    limit = available_memory()
    if limit is None or needed <= limit:
        return
    raise DataError(
        f"{task} about {format_bytes(needed)} ({what}), more than the "
        f"{format_bytes(limit)} available. {remedy} To try anyway, raise the limit with "
        f"the environment variable {MEMORY_VARIABLE} (e.g. {MEMORY_VARIABLE}=64GiB, or "
        "'off')."
    )
