"""Models from a Dask DataFrame: two passes over the partitions, then a local fit.

:func:`build_partitioned` is what ``Lmer.from_formula`` does with a Dask
DataFrame:

1. **scan** (:func:`~statsmodels_lmer.distributed.partition.scan_partition`):
   rows with missing values are dropped and counted, weights and offsets
   checked, the levels of every grouping factor and the patsy design of the
   fixed part and of each term's columns learned from the whole data
   (categorical levels, ``center``/``standardize`` statistics); formulas with
   nested stateful transforms take a pass more per level of nesting;
2. **sums** (:func:`~statsmodels_lmer.distributed.partition.partition_sums`):
   each partition's cross-products ``[Z X y]' W [Z X y]`` with the in-memory
   code, summed in a tree.

The client then holds only the summed blocks (their size is logged before the
second pass); the optimizer runs locally on them exactly as for an in-memory
model. Row-level results (fitted values, residuals, predictions) are lazy Dask
collections computed from the partitions (:class:`DaskRows`).

Passes run on the Dask client in use (``distributed.Client``) or on Dask's
default scheduler; ``progress=True`` shows Dask's progress bar. Dask is
imported only here, and only when a Dask DataFrame is given.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
from statsmodels.base.data import PandasData
from statsmodels.tools.sm_exceptions import ValueWarning

from ..data_checks import (
    FAR_MESSAGE,
    check_exact_fit,
    check_observation_counts,
    check_response_type,
    check_zero_columns,
    far_column_names,
    far_positions,
    fitted_terms_size,
    refuse_datetimes,
)
from ..engine.blocks import (
    CrossProducts,
    RawSums,
    engine_order,
    finalize_cross_products,
    fixed_gram,
    least_squares_shift,
)
from ..engine.centering import FixedCentering
from ..exceptions import DataError, FormulaError, ResponseTypeError, UnknownColumnError, warn
from ..formula import ParsedFormula, deep_parsing, quote_formula
from ..frame import (
    SCALE_MESSAGE,
    aliased_columns,
    bare_columns,
    check_groups,
    check_weight_counts,
    checked_drop_cols,
    kept_columns,
    refuse_empty_terms,
    scales_differ,
    used_columns,
    warn_aliased,
)
from ..mixedlm_formula import MixedLMSpec, translate_mixedlm
from ..terms import RandomTerm, grouping_codes, order_terms
from ..transform_rows import names_in_code, r_term_order, readable_design, readable_name
from ..transforms import FORMULA_TRANSFORMS
from .design import DesignLearner, DesignSpec, Moments
from .partition import (
    BarPlan,
    PartitionSums,
    ProductPlan,
    RowFilter,
    RowPlan,
    ScanPlan,
    ScanSummary,
    SumShifts,
    design_products,
    fitted_partition,
    partition_sums,
    predict_partition,
    scan_partition,
    shifted_partition_sums,
)

__all__ = [
    "COLLECT_LIMIT",
    "QUANTILE_BINS",
    "DaskRows",
    "PartitionedModel",
    "RowsOnCluster",
    "block_bytes",
    "build_partitioned",
    "exact_quantiles",
    "is_dask_frame",
    "reduce_partitions",
    "refuse_on_cluster",
    "translate_partitioned",
]

LOGGER = logging.getLogger("statsmodels_lmer")
SPLIT_EVERY = 8
"""Partition results combined per task of the tree reduction."""


def is_dask_frame(data: Any) -> bool:
    """Whether ``data`` is a Dask DataFrame (checked without importing Dask)."""
    return type(data).__module__.startswith("dask.") and hasattr(data, "npartitions")


ROWS_STAY = (
    "stay on the cluster (the model was fitted from a Dask DataFrame): this method needs "
    "all rows in memory. Row-level results are lazy Dask collections (fittedvalues, resid, "
    "residuals(), predict()); fit a pandas DataFrame (compute() it) for the rest"
)


def refuse_on_cluster(model: Any, what: str) -> None:
    """Refuse ``what`` (a method needing all rows in memory) for a model on a Dask cluster.

    Raises
    ------
    TypeError
        ``model.partitions`` is set.
    """
    if getattr(model, "partitions", None) is not None:
        raise TypeError(f"{what}: the rows of this model {ROWS_STAY}")


class RowsOnCluster:
    """Stands for row-level arrays of a model whose rows stay on the cluster.

    ``model.endog``, ``model.exog``, ``model.weights`` and ``model.offset`` of
    a model built from a Dask DataFrame; anything that tries to read them as
    an array gets a clear error instead of pulling all rows to the client.
    Weights and offset remember their column, so that refits (``update``,
    ``ranova``) read the same column of the Dask DataFrame.
    """

    def __init__(self, what: str, shape: tuple[int, ...], column: str | None = None) -> None:
        self.what, self.shape, self.column = what, shape, column

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(f"the {self.what} of this model {ROWS_STAY}")

    def __repr__(self) -> str:
        return f"RowsOnCluster({self.what!r}, shape={self.shape})"


class PartitionedData(PandasData):
    """statsmodels' model data for a model whose rows stay on the cluster.

    Names and the patsy design as statsmodels keeps them; row-level results
    (lazy Dask collections) are passed through unwrapped.
    """

    def __init__(self, exog_names: list[str], endog_name: str, spec: DesignSpec, formula: str):
        self._xnames, self._ynames = list(exog_names), endog_name
        self.spec, self.formula = spec, formula
        self.frame = None
        self.k_constant, self.const_idx = 0, None
        self.orig_exog = RowsOnCluster("fixed-effects columns", (0, len(exog_names)))
        self.orig_endog = RowsOnCluster("responses", (0,))
        self._cache: dict[str, Any] = {}

    @property
    def xnames(self) -> list[str]:
        """Fixed-effects column names."""
        return self._xnames

    @property
    def ynames(self) -> str:
        """The response's name."""
        return self._ynames

    @property
    def row_labels(self) -> None:
        """No row labels on the client."""
        return None

    @property
    def model_spec(self) -> Any:
        """patsy's ``DesignInfo`` of the fixed part (rebuilt after unpickling)."""
        if "model_spec" not in self._cache:
            self._cache["model_spec"] = readable_design(self.spec.build())
        return self._cache["model_spec"]

    def attach_rows(self, result: Any) -> Any:
        """Row-level results are Dask collections already."""
        return result

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass
class PartitionedModel:
    """What ``Lmer`` needs from a Dask DataFrame (see :func:`build_partitioned`).

    ``codes`` are the Python code of the response and of every term (for the
    names the formula uses besides its columns).
    """

    terms: list[RandomTerm]
    data: PartitionedData
    k_constant: int
    nobs: int
    n_dropped: int
    dropped_columns: list[str]
    rows: DaskRows
    codes: tuple[str, ...] = ()


# -- Dask mechanics ------------------------------------------------------------------
def _client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _compute(value: Any, progress: bool) -> Any:
    """Compute one Dask object on the client in use, with Dask's progress bar if asked."""
    import dask

    client = _client()
    if client is not None:
        future = client.compute(value)
        if progress:
            from distributed import progress as show_progress

            show_progress(future)
        return future.result()
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(value)[0]
    return dask.compute(value)[0]


def _add_all(values: list[Any]) -> Any:
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def reduce_partitions(
    collection: Any, function: Any, argument: Any, progress: bool, combine: Any = _add_all
) -> Any:
    """``function(partition, argument)`` on every partition, combined in a tree.

    Only the combined result comes to the client. ``argument`` is sent once
    (a shared task), not once per partition.
    """
    import dask

    shared = dask.delayed(argument, pure=True)
    mapped = [dask.delayed(function, pure=True)(part, shared) for part in collection.to_delayed()]
    while len(mapped) > 1:
        mapped = [
            dask.delayed(combine, pure=True)(mapped[i : i + SPLIT_EVERY])
            for i in range(0, len(mapped), SPLIT_EVERY)
        ]
    return _compute(mapped[0], progress)


# -- building a model ----------------------------------------------------------------
def build_partitioned(
    parsed: ParsedFormula,
    ddf: Any,
    weights: Any = None,
    offset: Any = None,
    subset: Any = None,
    missing: str = "drop",
    eval_env: Any = None,
    drop_cols: Any = None,
    progress: bool = False,
) -> PartitionedModel:
    """Learn the design and sum the cross-products of a Dask DataFrame.

    Parameters are those of ``Lmer.from_formula``; ``weights`` and ``offset``
    must be column names. Checks and messages are the in-memory path's.

    Raises
    ------
    TypeError
        ``subset`` given, or weights/offset not given as column names.
    UnknownColumnError, DataError, ResponseTypeError, FormulaError
        As for a pandas DataFrame.
    """
    if subset is not None:
        raise TypeError("subset= is not supported for a Dask DataFrame; filter it first")
    if parsed.offsets:
        terms = " + ".join(f"offset({code})" for code in parsed.offsets)
        raise FormulaError(
            f"{terms} in the formula is not supported for a Dask DataFrame: add the offset "
            "as a column (ddf = ddf.assign(off=...)) and pass offset='off' instead"
        )
    if missing not in ("drop", "raise", "none"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    eval_env = patsy.EvalEnvironment([{"np": np, "numpy": np}]) if eval_env is None else eval_env
    parsed = quote_formula(parsed, ddf.columns)
    with deep_parsing(parsed.fixed):
        used, bare, codes = used_columns(parsed, ddf)
    predictors, response = bare_columns(parsed, used, bare)
    refuse_datetimes(ddf._meta, predictors)
    rows = RowFilter(
        used,
        _column_name(weights, ddf, "weights"),
        _column_name(offset, ddf, "offset"),
    )
    rows.as_object = [
        c
        for c in rows.columns
        if isinstance(ddf.dtypes[c], pd.CategoricalDtype) and not ddf[c].cat.known
    ]
    rows.numbers = [c for c in predictors + response if pd.api.types.is_object_dtype(ddf.dtypes[c])]
    frame = ddf[rows.columns]
    fixed_terms = _fixed_term_formulas(parsed.fixed)
    formulas = [parsed.fixed] + [bar.lhs for bar in parsed.bars] + fixed_terms
    contexts = (
        [("fixed", parsed.fixed)]
        + [("term", bar.lhs, str(bar)) for bar in parsed.bars]
        + [("fixed", parsed.fixed)] * len(fixed_terms)
    )
    with deep_parsing(parsed.fixed):
        learner = DesignLearner(formulas, eval_env, ddf.columns, contexts)
    groups = list(dict.fromkeys(bar.factors for bar in parsed.bars))
    scan = reduce_partitions(
        frame, scan_partition, ScanPlan(rows, groups, learner.plan()), progress
    )
    _check_scan(scan, missing, rows)
    learner.absorb(scan.stage)
    while not learner.done:
        learner.absorb(
            reduce_partitions(frame, _stage_of_partition, (rows, learner.plan()), progress)
        )
    empty = {str(c): frame._meta[c] for c in rows.used}
    designs = learner.designs(empty)
    for index, bar in enumerate(parsed.bars):  # lme4's column order in each bar term
        designs[2 + index] = r_term_order(designs[2 + index], bar.lhs)
    check_response_type(parsed.response, designs[0])
    refuse_empty_terms(designs[1])
    specs = learner.specs(designs)
    bars = _bar_plans(parsed, designs, scan)
    terms = [bar.term for bar in bars]
    check_groups(terms, scan.nobs)
    plan = RowPlan(
        rows,
        parsed.response,
        specs,
        bars,
        engine_order(terms),
        full_designs=list(range(2 + len(bars), len(designs))) if len(fixed_terms) > 1 else [],
    )
    LOGGER.info(
        "summing the cross-products of %d rows: about %.0f MiB on the client at most",
        scan.nobs,
        block_bytes(terms, len(designs[1].column_names)) / 2**20,
    )
    sums = reduce_partitions(frame, partition_sums, plan, progress)
    built = _finish(parsed, designs, specs, plan, sums, scan, drop_cols, progress)
    built.rows.condition_sums(frame)
    built.codes = codes
    return built


def translate_partitioned(
    formula: str,
    ddf: Any,
    groups: Any = None,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
) -> tuple[str, Any, MixedLMSpec]:
    """:func:`~statsmodels_lmer.mixedlm_formula.translate_mixedlm` for a Dask DataFrame.

    The translation needs the columns' types (from the frame's metadata) and,
    with ``vc_formula``, whether ``groups`` has one value (MixedLM's idiom for
    crossed effects), which takes a pass over that column.

    Raises
    ------
    TypeError
        ``groups`` is not a column name.
    """
    if groups is not None and not isinstance(groups, str):
        raise TypeError(
            "with a Dask DataFrame, groups= must be the name of a column, "
            f"got {type(groups).__name__}"
        )
    probe = ddf._meta  # no rows: the columns and their types
    if vc_formula is not None and groups in ddf.columns:
        distinct = ddf[groups].dropna().drop_duplicates().head(2, npartitions=-1)
        probe = pd.concat([probe, distinct.to_frame()], ignore_index=True)
    formula, _, spec = translate_mixedlm(formula, probe, groups, re_formula, vc_formula)
    return formula, ddf, spec


def _stage_of_partition(part: pd.DataFrame, argument: Any) -> Any:
    rows, stage = argument
    return scan_partition(part, ScanPlan(rows, [], stage)).stage


def _column_name(value: Any, ddf: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, RowsOnCluster) and value.column is not None:
        value = value.column  # a refit of a model built from a Dask DataFrame
    if not isinstance(value, str):
        raise TypeError(
            f"with a Dask DataFrame, {what} must be the name of a column, "
            f"got {type(value).__name__}"
        )
    if value not in ddf.columns:
        raise UnknownColumnError(f"{what} column {value!r} is not in the data")
    dtype = ddf.dtypes[value]
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise ResponseTypeError(f"{what} must be numeric")
    return value


def _fixed_term_formulas(fixed: str) -> list[str]:
    """``"0 + term"`` for each term of the fixed part (lmerTest's full dummy design)."""
    desc = patsy.ModelDesc.from_formula(fixed)
    return [f"0 + {term.name()}" for term in desc.rhs_termlist if term.factors]


def _check_scan(scan: ScanSummary, missing: str, rows: RowFilter) -> None:
    total = scan.nobs + scan.n_dropped
    if scan.n_dropped and missing != "drop":
        raise DataError(
            f"{scan.n_dropped} of {total} rows have missing values in the columns "
            f"the model uses ({', '.join(rows.used)}); pass missing='drop' to drop them"
        )
    if total == 0:
        raise DataError("data has no rows")
    if scan.nobs == 0:  # the in-memory message
        raise DataError(
            f"no rows left to fit: every row has a missing value in a column the model "
            f"uses ({', '.join(rows.used)}; {total} rows)"
        )
    for what in ("weights", "offset"):
        if scan.problems.get((what, "infinite"), 0):
            raise DataError(f"{what} has infinite values")
    check_weight_counts(
        scan.problems.get(("weights", "negative"), 0), scan.problems.get(("weights", "zero"), 0)
    )


def _bar_plans(parsed: ParsedFormula, designs: list[Any], scan: ScanSummary) -> list[BarPlan]:
    plans = {}
    for index, bar in enumerate(parsed.bars):
        design = designs[2 + index]
        if not design.column_names:
            raise FormulaError(f"random-effects term {bar} has no columns")
        combos = scan.combos[bar.factors]
        _, levels = grouping_codes(combos, bar.factors)
        names = tuple(readable_name(name) for name in design.column_names)
        term = RandomTerm(
            bar.group,
            bar.group,
            names,
            np.empty(0, dtype=np.int64),
            levels,
            np.empty((0, len(names))),
            bar.lhs,
            bar.factors,
        )
        plans[id(term)] = BarPlan(term, 2 + index, combos)
    ordered = order_terms([plan.term for plan in plans.values()])
    return [plans[id(term)] for term in ordered]


def block_bytes(terms: list[RandomTerm], n_fixed: int) -> int:
    """Upper bound of the bytes of the summed cross-products (what the client holds).

    ``Z_1'WZ_1`` per level, ``R'WZ_1`` as a sparse matrix of at most
    ``m x q_1`` entries, ``R'WR`` dense (``m`` = random effects of the other
    terms + fixed columns + 1, ``q_1`` = random effects of the largest term).
    """
    first = terms[engine_order(terms)[0]]
    m = sum(t.n_random for t in terms) - first.n_random + n_fixed + 1
    return 8 * first.n_levels * first.n_cols**2 + 12 * m * first.n_random + 8 * m * m


def _finish(
    parsed: ParsedFormula,
    designs: list[Any],
    specs: list[DesignSpec],
    plan: RowPlan,
    sums: PartitionSums,
    scan: ScanSummary,
    drop_cols: Any,
    progress: bool,
) -> PartitionedModel:
    """Check the sums as the in-memory path checks the rows, drop aliased and unwanted
    fixed columns, assemble the model's data.
    """
    sums.magnitudes.check()
    names = [readable_name(name) for name in designs[1].column_names]
    p = len(names)
    r_factor = _square_r(sums.fixed.r_factor)
    diagonal = np.abs(np.diagonal(r_factor))
    aliased = aliased_columns(r_factor[:p, :p], diagonal=diagonal[:p])
    if aliased:
        warn_aliased([names[j] for j in aliased])
    keep = kept_columns(p, aliased)
    has_offset = plan.rows.offset is not None
    y_range = (float(sums.fixed.y_range[0]), float(sums.fixed.y_range[1]))
    check_observation_counts(parsed.response, scan.nobs, len(keep), y_range, has_offset)
    check_exact_fit(
        parsed.response,
        diagonal[p],
        float(np.linalg.norm(r_factor[:, p])),
        y_range,
        fitted_terms_size(r_factor[: p + 1, : p + 1], keep),
    )
    continuous = ~sums.fixed.binary[keep]
    if scan.nobs >= 2 and np.any(continuous):
        sd = np.sqrt(sums.fixed.moments.variance[keep][continuous])
        if scales_differ(sd):
            warn(SCALE_MESSAGE, ValueWarning)
    terms = [bar.term for bar in plan.bars]
    check_zero_columns(terms, [(m.mean == 0) & (m.m2 == 0) for m in sums.term_moments])
    _warn_far_columns(terms, sums.term_moments)
    dropped = [names[j] for j in aliased]
    unwanted = set(checked_drop_cols([names[j] for j in keep], drop_cols))
    keep = [j for j in keep if names[j] not in unwanted]
    plan.fixed_keep = keep if len(keep) < p else None
    raw = sums.raw.drop_fixed([j for j in range(p) if j not in keep])
    data = PartitionedData(
        [names[j] for j in keep], designs[0].column_names[0], specs[1], parsed.fixed
    )
    data.k_constant = _k_constant(sums, r_factor, keep)
    rows = DaskRows(plan, raw, sums, r_factor, keep, progress)
    return PartitionedModel(
        [bar.term for bar in plan.bars],
        data,
        data.k_constant,
        scan.nobs,
        scan.n_dropped,
        dropped,
        rows,
    )


def _warn_far_columns(terms: list[Any], moments: list[Any]) -> None:
    """The in-memory path's warning for random-effects columns far from zero against
    their spread, from the summed moments of the terms' columns."""
    far = far_column_names(terms, _far_positions_of_moments(terms, moments))
    if far:
        warn(FAR_MESSAGE.format(names=", ".join(far)), ValueWarning)


def _far_positions_of_moments(terms: list[Any], moments: list[Moments]) -> list[list[int]]:
    """Per term, :func:`far_positions` from its columns' moments (none for a term
    without rows)."""
    return [
        far_positions(term, m.mean, np.sqrt(m.m2 / m.n)) if m.n else []
        for term, m in zip(terms, moments)
    ]


def _sum_shifts(r_factor: np.ndarray, keep: list[int], raw: RawSums) -> SumShifts | None:
    """The in-memory path's conditioning of the sums, decided from the summed ones.

    Fixed-effects columns nearly in the span of the columns before them are
    centred on them (:class:`FixedCentering` of the R factor of ``X``: the same
    fits as of ``X``'s rows); a response far from its least-squares fit's
    residuals is replaced by those (coefficients from the R factor of
    ``[X y]``, in the centred columns: ``X s = (X T) C s``). None: neither.
    """
    response = r_factor.shape[1] - 2  # the columns of r_factor: X, y, 1
    r_fixed = r_factor[:, keep]
    centering = FixedCentering.of(r_fixed) if keep else None
    shift = None
    if keep and least_squares_shift(fixed_gram(raw)) is not None:
        shift = np.linalg.lstsq(r_fixed, r_factor[:, response], rcond=None)[0]
        if centering is not None:
            shift = centering.coefficients @ shift
    if centering is None and shift is None:
        return None
    return SumShifts(centering, shift)


def _coefficients(r_factor: np.ndarray, basis: list[int], targets: Any) -> np.ndarray:
    """Least-squares coefficients of some columns on others, from the R factor of the rows
    (``[a b] = Q R``: ``b``'s fit on ``a`` is ``R_b``'s on ``R_a``)."""
    return np.linalg.lstsq(r_factor[:, basis], r_factor[:, list(targets)], rcond=None)[0]


def _square_r(r_factor: np.ndarray) -> np.ndarray:
    """The R factor padded with rows of zeros to a square (fewer rows than columns)."""
    k = r_factor.shape[1]
    if r_factor.shape[0] >= k:
        return r_factor[:k]
    return np.vstack([r_factor, np.zeros((k - r_factor.shape[0], k))])


def _k_constant(sums: PartitionSums, r_factor: np.ndarray, keep: list[int]) -> int:
    """statsmodels' ``k_constant`` of the kept columns, from their summaries.

    An explicit constant column (equal extremes, nonzero), else an implicit
    one: appending a column of ones does not raise the rank.
    """
    fixed = sums.fixed
    constant = [j for j in keep if fixed.minimum[j] == fixed.maximum[j]]
    if any(fixed.moments.mean[j] != 0 for j in constant):
        return 1
    ones = r_factor.shape[0] - 1  # the columns of r_factor: X, y, 1
    rank = np.linalg.matrix_rank(r_factor[:, keep]) if keep else 0
    augmented = np.linalg.matrix_rank(r_factor[:, keep + [ones]])
    return int(rank == augmented)


# -- the model's rows on the cluster -----------------------------------------------------
class DaskRows:
    """The row-level side of a model built from a Dask DataFrame (``model.partitions``).

    Holds the Dask DataFrame (the columns the model uses), the learned
    :class:`~statsmodels_lmer.distributed.partition.RowPlan` and the summed
    sums. Row-level results are lazy Dask Series of the complete rows.

    Attributes
    ----------
    raw_sums : RawSums
        The summed cross-products without dropped columns (the engine's input).
    fixed_r : ndarray
        A factor ``R`` of the kept fixed columns, ``R'R = X'X`` (unweighted):
        their R factor's columns.
    ones_coefficients : ndarray
        Least-squares coefficients of a column of ones on the kept columns.
    full_coefficients : ndarray or None
        Those of lmerTest's full dummy design ``F`` (type III), or None.
    term_moments : list of Moments
        Per term (model order): mean and spread of its columns over the rows.
    shifts : SumShifts or None
        How :attr:`raw_sums` are formed where fixed-effects columns or the
        response are far from zero (the in-memory path's conditioning), or None.
    """

    shifts: SumShifts | None = None  # pickles of earlier versions
    term_moments: list[Moments] = []  # replaced, never mutated

    def __init__(
        self,
        plan: RowPlan,
        raw: RawSums,
        sums: PartitionSums,
        r_factor: np.ndarray,
        keep: list[int],
        progress: bool,
    ) -> None:
        self.frame: Any = None
        self.plan, self.raw_sums, self.progress = plan, raw, progress
        self.level_counts, self.level_sums = sums.level_counts, sums.level_sums
        self.response = sums.response
        self.term_moments = sums.term_moments
        ones = r_factor.shape[1] - 1  # the columns of r_factor: X, y, 1
        self.fixed_r = r_factor[:, keep]
        self.ones_coefficients = _coefficients(r_factor, keep, [ones])[:, 0]
        r_full = sums.fixed.r_full
        self.full_coefficients = None
        if r_full is not None:
            p = r_factor.shape[1] - 2
            self.full_coefficients = _coefficients(r_full, keep, range(p, r_full.shape[1]))
        self.weighted = plan.rows.weights is not None
        self.has_offset = plan.rows.offset is not None
        self.shifts = _sum_shifts(r_factor, keep, raw)

    def condition_sums(self, frame: Any) -> None:
        """Form :attr:`raw_sums` again, as :attr:`shifts` says (one more pass), if needed."""
        if self.shifts is not None:
            self.raw_sums = reduce_partitions(
                frame, shifted_partition_sums, (self.plan, self.shifts), self.progress
            )

    def cross_products(self, strategy: str | None) -> CrossProducts:
        """The engine's cross-products of the summed sums (see ``Lmer.cross_products``)."""
        cross = finalize_cross_products(self.raw_sums, strategy)
        if self.shifts is not None:
            cross.centering, cross.beta_shift = self.shifts.centering, self.shifts.beta_shift
        return cross

    def group_mean_variances(self) -> tuple[list[float], float]:
        """Variance over rows of each term's group means of y, and the variance of y.

        lme4's starting values for random-intercept models (``Lmer.initial_theta``).
        """
        n = self.response.n
        mean = float(self.response.mean[0])
        out = []
        for counts, sums in zip(self.level_counts, self.level_sums):
            seen = counts > 0
            means = sums[seen] / counts[seen]
            out.append(float(np.sum(counts[seen] * (means - mean) ** 2) / (n - 1)))
        return out, float(self.response.variance[0])

    def column_rms(self) -> list[np.ndarray]:
        """Root mean square of each term's columns over the rows (model order)."""
        return [np.sqrt(m.mean**2 + m.m2 / m.n) for m in self.term_moments]

    def far_columns(self, terms: list[RandomTerm]) -> list[list[int]]:
        """Per term, the positions of :func:`far_columns`' columns, from the moments."""
        return _far_positions_of_moments(terms, self.term_moments)

    def centred(self, columns: list[list[int]]) -> DaskRows:
        """A copy whose sums are those of the rows with the given columns centred.

        ``columns``: per term (model order), positions in its columns. One
        pass over the partitions; the copy's moments have those means at 0.
        """
        shifts, moments = [], []
        for cols, m in zip(columns, self.term_moments):
            shift = np.zeros(m.mean.size)
            shift[cols] = m.mean[cols]
            shifts.append(shift)
            centred = Moments()
            centred.n, centred.mean, centred.m2 = m.n, m.mean - shift, m.m2
            moments.append(centred)
        rows = copy.copy(self)
        how = dataclasses.replace(self.shifts or SumShifts(), terms=shifts)
        rows.raw_sums = reduce_partitions(
            self.frame, shifted_partition_sums, (self.plan, how), self.progress
        )
        rows.term_moments = moments
        return rows

    def learned_designs(self, formulas: list[str]) -> list[Any]:
        """patsy ``DesignInfo`` of one-sided formulas, learned in passes over the model's rows.

        As the model's own designs (levels, ``center``/``scale`` statistics of
        the complete rows); computed once per list of formulas.
        """
        return [spec.build() for spec in self._learned_specs(tuple(formulas))]

    def design_products(self, formulas: list[str]) -> tuple[list[Any], np.ndarray]:
        """Designs of one-sided formulas learned from the model's rows, with their products.

        Returns the :meth:`learned_designs` of the formulas and the R factor
        of ``[D_1 ... D_k 1 X]`` (``X``: the model's kept fixed columns),
        padded to a square: ``R'R`` holds every cross-product. Computed once
        per list of formulas (lmerTest's treatment-recoded type III designs).
        """
        key = tuple(formulas)
        specs = self._learned_specs(key)
        cache = self.__dict__.setdefault("_products", {})
        if key not in cache:
            products = reduce_partitions(
                self.frame, design_products, ProductPlan(self.plan, specs), self.progress
            )
            cache[key] = _square_r(products.r_factor)
        return [spec.build() for spec in specs], cache[key]

    def _learned_specs(self, formulas: tuple[str, ...]) -> list[DesignSpec]:
        cache = self.__dict__.setdefault("_designs", {})
        if formulas in cache:
            return cache[formulas]
        rows = self.plan.rows
        namespace: dict[str, Any] = {"np": np, "numpy": np}
        for design in self.plan.designs[1:]:
            for factor, *_ in design.factors.values():
                namespace.update(factor.namespace)
        env = patsy.EvalEnvironment([namespace]).with_outer_namespace(FORMULA_TRANSFORMS)
        learner = DesignLearner(list(formulas), env, self.frame.columns)
        while not learner.done:
            learner.absorb(
                reduce_partitions(
                    self.frame, _stage_of_partition, (rows, learner.plan()), self.progress
                )
            )
        empty = {str(c): self.frame._meta[c] for c in rows.used}
        cache[formulas] = learner.specs(learner.designs(empty))
        return cache[formulas]

    def full_design_names(self) -> list[str]:
        """Column names of lmerTest's full dummy design (type III contrasts)."""
        designs = [self.plan.designs[i] for i in self.plan.full_designs]
        return [readable_name(name) for design in designs for name in design.column_names]

    # -- lazy row-level results -------------------------------------------------------
    def values(self, res: Any, what: str) -> Any:
        """A lazy Dask Series over the complete rows (see ``fitted_partition``)."""
        import dask

        modes = [np.asarray(m) for m in res.conditional_modes]
        arguments = dask.delayed((self.plan, np.asarray(res.params, dtype=float), modes), pure=True)
        return self.frame.map_partitions(
            _values_of_partition, arguments, what, meta=pd.Series(dtype=float)
        )

    def residual_quantiles(self, res: Any, probs: list[float]) -> np.ndarray:
        """Exact quantiles of the scaled Pearson residuals (passes over the partitions)."""
        scaled = self.values(res, "pearson") / float(res.sigma)
        return exact_quantiles(scaled, probs, self.progress)

    def predict(
        self,
        res: Any,
        newdata: Any,
        terms: list[tuple[int, list[int]]],
        allow_new_levels: bool,
        offset: str | None = None,
    ) -> Any:
        """Lazy predictions for the rows of a Dask DataFrame (NaN where a value is missing).

        ``offset``: the column of newdata holding the offset (added), or None.
        """
        import dask

        needed = self._needed_columns(terms, newdata)
        if offset is not None and offset not in newdata.columns:
            raise UnknownColumnError(f"offset column {offset!r} is not in newdata")
        modes = res.conditional_modes
        kept = [(index, cols, np.asarray(modes[index])) for index, cols in terms]
        arguments = dask.delayed(
            (
                self.plan,
                needed,
                np.asarray(res.params, dtype=float),
                kept,
                allow_new_levels,
                offset,
            ),
            pure=True,
        )
        return newdata.map_partitions(_predict_of_partition, arguments, meta=pd.Series(dtype=float))

    def _needed_columns(self, terms: list[tuple[int, list[int]]], newdata: Any) -> list[str]:
        designs = self.plan.built_designs()
        indices = [1] + [self.plan.bars[index].design for index, _ in terms]
        names: set[str] = set()
        for i in indices:
            for factor in designs[i].factor_infos:
                names |= names_in_code(factor.code)
        group = [f for index, _ in terms for f in self.plan.bars[index].term.factors]
        missing = [f for f in group if f not in newdata.columns]
        if missing:
            raise UnknownColumnError(f"newdata lacks the grouping column(s) {missing}")
        names |= set(group)
        return [str(c) for c in newdata.columns if str(c) in names]


def _values_of_partition(part: pd.DataFrame, arguments: tuple, what: str) -> pd.Series:
    plan, params, modes = arguments
    return fitted_partition(part, plan, params, modes, what)


def _predict_of_partition(part: pd.DataFrame, arguments: tuple) -> pd.Series:
    plan, needed, params, kept, allow_new_levels, offset = arguments
    return predict_partition(part, plan, needed, params, kept, allow_new_levels, offset)


# -- exact quantiles -------------------------------------------------------------------
QUANTILE_BINS = 4096
"""Bins of each histogram pass of :func:`exact_quantiles`."""
COLLECT_LIMIT = 1_000_000
"""Largest number of values :func:`exact_quantiles` collects for one order statistic."""


def exact_quantiles(values: Any, probs: list[float], progress: bool = False) -> np.ndarray:
    """``np.quantile(values, probs)`` of a Dask Series, exactly, without collecting it.

    One pass finds the count and range; histogram passes narrow each needed
    order statistic to a bin of at most a million values (usually one pass);
    a last pass collects those values.
    """
    n, low, high = reduce_partitions(values, _count_range, None, progress, _combine_ranges)
    positions = (n - 1) * np.asarray(probs, dtype=float)
    ranks = sorted({int(np.floor(h)) for h in positions} | {int(np.ceil(h)) for h in positions})
    # per rank k: the k-th smallest value is in [lo, hi) ([lo, hi] when closed),
    # with `below` values under lo
    state = {k: _Interval(low, high, 0, True) for k in ranks}
    pending = set(ranks) if low < high else set()
    while pending:
        counts = reduce_partitions(values, _histograms, {k: state[k] for k in pending}, progress)
        for k in sorted(pending):
            state[k], size = state[k].narrowed(k, counts[k])
            if size <= COLLECT_LIMIT or state[k].lo == state[k].hi:
                pending.discard(k)
    wide = {k: iv for k, iv in state.items() if iv.lo < iv.hi}
    collected = reduce_partitions(values, _collect, wide, progress) if wide else {}
    order = {
        k: float(np.sort(collected[k])[k - iv.below]) if k in wide else iv.lo
        for k, iv in state.items()
    }
    lower = np.array([order[int(np.floor(h))] for h in positions])
    upper = np.array([order[int(np.ceil(h))] for h in positions])
    return lower + (positions - np.floor(positions)) * (upper - lower)


@dataclass(frozen=True)
class _Interval:
    lo: float
    hi: float
    below: int
    closed: bool

    def contains(self, values: np.ndarray) -> np.ndarray:
        inside = (values >= self.lo) & (values < self.hi)
        return inside | (values == self.hi) if self.closed else inside

    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, QUANTILE_BINS + 1)

    def bins(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value inside: ``[e_j, e_j+1)``, the last bin closed if the interval is."""
        return np.clip(
            np.searchsorted(self.edges(), values, side="right") - 1, 0, QUANTILE_BINS - 1
        )

    def narrowed(self, rank: int, counts: np.ndarray) -> tuple[_Interval, int]:
        """The bin holding the rank-th value, and how many values it holds."""
        cumulative = self.below + np.cumsum(counts)
        j = int(np.searchsorted(cumulative, rank, side="right"))
        edges = self.edges()
        below = int(cumulative[j - 1]) if j else self.below
        closed = self.closed and j == QUANTILE_BINS - 1
        return _Interval(float(edges[j]), float(edges[j + 1]), below, closed), int(counts[j])


def _count_range(part: pd.Series, _: Any) -> tuple[int, float, float]:
    values = part.to_numpy(dtype=float)
    if not len(values):
        return 0, np.inf, -np.inf
    return len(values), float(values.min()), float(values.max())


def _combine_ranges(items: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    return sum(i[0] for i in items), min(i[1] for i in items), max(i[2] for i in items)


class _ByRank(dict):
    """Per-rank arrays of partitions: histograms add, collected values concatenate."""

    def __add__(self, other: _ByRank) -> _ByRank:
        return _ByRank(
            {
                k: v + other[k] if v.dtype.kind == "i" else np.concatenate([v, other[k]])
                for k, v in self.items()
            }
        )


def _histograms(part: pd.Series, intervals: dict[int, _Interval]) -> _ByRank:
    values = part.to_numpy(dtype=float)
    out = _ByRank()
    for k, interval in intervals.items():
        inside = values[interval.contains(values)]
        out[k] = np.bincount(interval.bins(inside), minlength=QUANTILE_BINS).astype(np.int64)
    return out


def _collect(part: pd.Series, intervals: dict[int, _Interval]) -> _ByRank:
    values = part.to_numpy(dtype=float)
    return _ByRank({k: values[interval.contains(values)] for k, interval in intervals.items()})
