"""One partition of a distributed data frame: its complete rows, model arrays and sums.

Everything here runs on a worker, on one pandas partition, with plans that
pickle. Two passes over the partitions fit a model:

1. :func:`scan_partition` drops rows with missing values (and counts them),
   checks weights and offsets, finds the level combinations of every grouping
   factor, and runs a stage of the patsy design learning
   (:mod:`statsmodels_lmer.distributed.design`);
2. :func:`partition_sums` evaluates the learned designs on the complete rows,
   codes the grouping factors against the levels of the whole data, and
   computes the engine's additive sums with :func:`statsmodels_lmer.engine.blocks.raw_sums`,
   the same function the in-memory path uses on all rows, plus the small
   summaries of the fixed part that the in-memory path takes from ``X`` itself
   (its R factor, column scales, constant columns).

Sums of partitions add up; see :class:`PartitionSums`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
import scipy.linalg as sla

from ..data_checks import (
    ColumnMagnitudes,
    column_dtypes,
    numeric_objects,
    plain_columns,
    refuse_containers,
)
from ..engine.blocks import RawSums, raw_sums, shifted_response
from ..engine.centering import FixedCentering
from ..exceptions import DataError
from ..frame import check_fixed_values, column_or_array, magnitude_columns
from ..random_effects import term_contribution
from ..terms import RandomTerm, grouping_codes, match_levels
from ..transform_rows import names_in_code, patsy_columns
from .design import DesignSpec, Moments, StagePlan, StageSummary, evaluate_designs, stage_summary

__all__ = [
    "BarPlan",
    "ColumnProducts",
    "FixedSums",
    "ModelRows",
    "PartitionSums",
    "ProductPlan",
    "RowPlan",
    "ScanPlan",
    "ScanSummary",
    "SumShifts",
    "design_products",
    "fitted_partition",
    "model_rows",
    "partition_sums",
    "predict_partition",
    "r_factor_of",
    "scan_partition",
    "shifted_partition_sums",
]


# -- complete rows -------------------------------------------------------------------
@dataclass
class RowFilter:
    """Which rows of a partition the model uses, and how its columns are read.

    Attributes
    ----------
    used : list of str
        Columns the formula uses; a row missing any of them is dropped.
    weights, offset : str or None
        Columns of prior weights and offset (missing values drop the row too).
    as_object : list of str
        Categorical columns whose categories are not known in advance: read as
        values (patsy and the grouping factors then sort them).
    numbers : list of str
        Object columns used bare: converted to float where they hold only
        numbers (:func:`statsmodels_lmer.data_checks.numeric_objects`).
    """

    used: list[str]
    weights: str | None = None
    offset: str | None = None
    as_object: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Every column read."""
        extra = [c for c in (self.weights, self.offset) if c is not None and c not in self.used]
        return list(dict.fromkeys(self.used + extra))

    def complete(self, part: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """The partition's rows with no missing value, and how many were dropped."""
        return self._complete(part, self.columns)

    def complete_in(self, part: pd.DataFrame, names: list[str]) -> pd.DataFrame:
        """The partition's rows with no missing value in ``names``, read as :meth:`complete`
        reads them (the rows a stateful transform of those columns learns on, as in R)."""
        return self._complete(part, names)[0]

    def _complete(self, part: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
        frame = part[columns]
        as_object = [c for c in self.as_object if c in columns]
        if as_object:
            frame = frame.assign(**{c: frame[c].astype(object) for c in as_object})
        incomplete = frame.isna().any(axis=1).to_numpy()
        n_dropped = int(incomplete.sum())
        frame = frame.loc[~incomplete] if n_dropped else frame
        used = [c for c in self.used if c in columns]
        refuse_containers(frame, used, column_dtypes(frame))  # as the in-memory frame
        numbers = [c for c in self.numbers if c in columns]
        return plain_columns(numeric_objects(frame, numbers), used), n_dropped


# -- pass 1: scan --------------------------------------------------------------------
@dataclass
class ScanPlan:
    """What :func:`scan_partition` computes.

    Attributes
    ----------
    rows : RowFilter
    groups : list of tuple of str
        The grouping factors (one tuple of columns per distinct factor).
    stage : StagePlan
        The stage of the design learning run in this pass.
    """

    rows: RowFilter
    groups: list[tuple[str, ...]]
    stage: StagePlan


@dataclass
class ScanSummary:
    """Counts, checks, level combinations and a design stage of some partitions.

    Attributes
    ----------
    nobs, n_dropped : int
        Complete rows, and rows dropped for missing values.
    problems : dict
        Counts of values a column may not have: ``("weights", "negative")``,
        ``("weights", "zero")``, ``("weights", "infinite")``, ``("offset", "infinite")``.
    combos : dict
        ``factors -> DataFrame`` of the distinct level combinations.
    stage : StageSummary
    """

    nobs: int
    n_dropped: int
    problems: dict[tuple[str, str], int]
    combos: dict[tuple[str, ...], pd.DataFrame]
    stage: StageSummary

    def __add__(self, other: ScanSummary) -> ScanSummary:
        problems = dict(self.problems)
        for key, count in other.problems.items():
            problems[key] = problems.get(key, 0) + count
        combos = {
            key: pd.concat([frame, other.combos[key]], ignore_index=True).drop_duplicates()
            for key, frame in self.combos.items()
        }
        return ScanSummary(
            self.nobs + other.nobs,
            self.n_dropped + other.n_dropped,
            problems,
            combos,
            self.stage + other.stage,
        )


def scan_partition(part: pd.DataFrame, plan: ScanPlan) -> ScanSummary:
    """The :class:`ScanSummary` of one partition."""
    frame, n_dropped = plan.rows.complete(part)
    problems: dict[tuple[str, str], int] = {}
    for what in ("weights", "offset"):
        column = getattr(plan.rows, what)
        if column is None:
            continue
        # infinite values count on all rows (as in memory), the others on complete rows
        problems[what, "infinite"] = int(np.sum(np.isinf(part[column].to_numpy(dtype=float))))
        values = frame[column].to_numpy(dtype=float)
        if what == "weights":
            problems[what, "negative"] = int(np.sum(values < 0))
            problems[what, "zero"] = int(np.sum(values == 0))
    combos = {
        factors: frame[list(factors)].drop_duplicates().reset_index(drop=True)
        for factors in plan.groups
    }
    data = patsy_columns(frame, plan.rows.used) if len(frame) else None
    stage = stage_summary(plan.stage, data, _memorize_rows(part, plan, n_dropped, data))
    return ScanSummary(len(frame), n_dropped, problems, combos, stage)


def _memorize_rows(
    part: pd.DataFrame, plan: ScanPlan, n_dropped: int, data: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The rows each memorizing factor learns on: those complete in its own columns.

    As R's model frame (and the in-memory path, :mod:`statsmodels_lmer.transform_rows`),
    stateful transforms learn on every row where their input is present, also
    rows dropped for a missing value elsewhere.
    """
    out = {}
    for code in plan.stage.memorize:
        if not n_dropped and data is not None:
            out[code] = data
            continue
        read = names_in_code(code)  # parsed once, not once per column
        names = [c for c in plan.rows.used if str(c) in read]
        rows = plan.rows.complete_in(part, names)
        if len(rows):
            out[code] = patsy_columns(rows, names)
    return out


# -- pass 2: model arrays and sums ------------------------------------------------
@dataclass
class BarPlan:
    """One random term's grouping factor and columns, learned on the whole data.

    Attributes
    ----------
    term : RandomTerm
        The term without rows (``codes`` and ``Z`` empty): label, group,
        levels, column names, lhs and factors.
    design : int
        Index of the term's column design in :attr:`RowPlan.designs`.
    combos : pandas.DataFrame
        The distinct level combinations of the factors (the levels' source).
    """

    term: RandomTerm
    design: int
    combos: pd.DataFrame

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's level among the term's levels; -1 for a level not among them.

        The rows are coded together with the level combinations of the whole
        data, by the same :func:`statsmodels_lmer.terms.grouping_codes` as in
        memory, so that levels get the labels they get there.
        """
        factors = list(self.term.factors)
        stacked = pd.concat([self.combos, frame[factors]], ignore_index=True)
        codes, labels = grouping_codes(stacked, self.term.factors)
        # a copy of the levels for this call: pandas < 3 builds an index's hash
        # table lazily and not thread-safely (pandas issue 21150), and workers'
        # threads share the plan; a race made the levels look duplicated
        levels = self.term.levels.copy(deep=True)
        position = levels.get_indexer(labels)
        return position[codes[len(self.combos) :]]


@dataclass
class RowPlan:
    """How complete rows become model arrays: learned designs and levels.

    Attributes
    ----------
    rows : RowFilter
    response : str
        The response as written (for messages).
    designs : list of DesignSpec
        Response, fixed part, each term's columns, then the type III designs.
    bars : list of BarPlan
        The random terms in the model's (lme4's) order.
    engine_order : list of int
        The engine's order of the terms.
    fixed_keep : list of int or None
        Columns of the fixed part kept (aliased and dropped columns removed).
    full_designs : list of int
        Designs (indices) whose columns make lmerTest's full dummy design.
    """

    rows: RowFilter
    response: str
    designs: list[DesignSpec]
    bars: list[BarPlan]
    engine_order: list[int]
    fixed_keep: list[int] | None = None
    full_designs: list[int] = field(default_factory=list)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_built"}

    def built_designs(self) -> list[Any]:
        """The patsy ``DesignInfo`` objects (rebuilt once per process)."""
        built = self.__dict__.get("_built")
        if built is None:
            built = self.__dict__["_built"] = [spec.build() for spec in self.designs]
        return built


@dataclass
class ModelRows:
    """The model arrays of some complete rows.

    ``terms`` are in the model's order, with codes into the levels of the
    whole data; ``X`` has every column of the fixed part when ``full`` is
    asked, else only the kept ones.
    """

    frame: pd.DataFrame
    y: np.ndarray
    X: np.ndarray
    terms: list[RandomTerm]
    weights: np.ndarray | None
    offset: np.ndarray | None
    full: np.ndarray | None = None


def model_rows(
    part: pd.DataFrame, plan: RowPlan, check: bool = False, all_columns: bool = False
) -> ModelRows:
    """Evaluate a partition's complete rows with the learned designs.

    Parameters
    ----------
    check : bool
        Refuse non-finite values as the in-memory path does.
    all_columns : bool
        Keep every column of the fixed part (before dropping aliased ones) and
        build the type III designs' columns too.
    """
    frame, _ = plan.rows.complete(part)
    designs = plan.built_designs()
    wanted = list(range(2 + len(plan.bars)))
    if all_columns:
        wanted += plan.full_designs
    matrices = dict(
        zip(
            wanted,
            evaluate_designs(
                [designs[i] for i in wanted], patsy_columns(frame, plan.rows.used), len(frame)
            ),
        )
    )
    y, X = matrices[0][:, 0], matrices[1]
    if check:
        check_fixed_values(plan.response, y, X, designs[1])
    if not all_columns and plan.fixed_keep is not None:
        X = X[:, plan.fixed_keep]
    terms = [
        RandomTerm(
            bar.term.label,
            bar.term.group,
            bar.term.column_names,
            bar.codes(frame),
            bar.term.levels,
            matrices[bar.design],
            bar.term.lhs,
            bar.term.factors,
        )
        for bar in plan.bars
    ]
    if check:
        _check_term_values(terms)
    full = (
        np.column_stack([matrices[i] for i in plan.full_designs])
        if all_columns and plan.full_designs
        else None
    )
    return ModelRows(
        frame,
        y,
        X,
        terms,
        _column(frame, plan.rows.weights),
        _column(frame, plan.rows.offset),
        full,
    )


def _column(frame: pd.DataFrame, name: str | None) -> np.ndarray | None:
    return None if name is None else frame[name].to_numpy(dtype=float)


def _check_term_values(terms: list[RandomTerm]) -> None:
    for term in terms:
        if not np.all(np.isfinite(term.Z)):
            # NaN can only come from a transform (rows missing a value are dropped)
            made = " (its transform gives NaN on some rows)" if np.isnan(term.Z).any() else ""
            raise DataError(
                f"random-effects term ({term.lhs} | {term.group}) has non-finite values "
                f"in its columns{made}"
            )


@dataclass
class FixedSums:
    """What the in-memory path reads from ``X`` itself, as mergeable summaries.

    Attributes
    ----------
    r_factor : ndarray, shape (p + 2, p + 2)
        The R factor of ``[X y 1]`` (``X`` with every column, ``y`` the
        response minus any offset): aliased columns, the exact-fit check,
        ``X'X`` and the implicit constant come from it.
    y_range : ndarray
        Smallest and largest ``y`` (a constant response).
    moments : Moments
        Column means and variances (lme4's scale check).
    minimum, maximum : ndarray
        Column extremes (constant columns).
    binary : ndarray of bool
        Columns with only 0 and 1.
    r_full : ndarray or None
        The R factor of ``[X F]`` with ``F`` lmerTest's full dummy design (type
        III contrasts: ``F``'s least-squares coefficients on ``X`` without
        forming ``X'X``, whose squares lose the digits of a column far from zero).
    """

    r_factor: np.ndarray
    y_range: np.ndarray
    moments: Moments
    minimum: np.ndarray
    maximum: np.ndarray
    binary: np.ndarray
    r_full: np.ndarray | None

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray, full: np.ndarray | None) -> FixedSums:
        """The summaries of some rows."""
        n, p = X.shape
        columns = np.asfortranarray(X)  # reductions by column: several times faster
        augmented = np.empty((n, p + 2), order="F")
        augmented[:, :p] = columns
        augmented[:, p] = y
        augmented[:, p + 1] = 1.0
        return cls(
            r_factor_of(augmented),
            np.array([y.min(initial=np.inf), y.max(initial=-np.inf)]),
            Moments.of(columns),
            columns.min(axis=0, initial=np.inf),
            columns.max(axis=0, initial=-np.inf),
            np.all((columns == 0) | (columns == 1), axis=0),
            None if full is None else r_factor_of(np.asfortranarray(np.hstack([columns, full]))),
        )

    def __add__(self, other: FixedSums) -> FixedSums:
        moments = Moments()
        moments.merge(self.moments)
        moments.merge(other.moments)
        return FixedSums(
            _stacked_r(self.r_factor, other.r_factor),
            np.array(
                [min(self.y_range[0], other.y_range[0]), max(self.y_range[1], other.y_range[1])]
            ),
            moments,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
            self.binary & other.binary,
            None if self.r_full is None else _stacked_r(self.r_full, other.r_full),
        )


def _stacked_r(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The R factor of the rows behind two R factors."""
    return np.linalg.qr(np.vstack([first, second]), mode="r")


def r_factor_of(columns: np.ndarray) -> np.ndarray:
    """The R factor of the QR decomposition of ``columns`` (at most as many rows as columns).

    ``columns`` is overwritten (pass a Fortran-ordered copy).
    """
    k = columns.shape[1]
    (raw, _), *_ = sla.qr(columns, mode="raw", overwrite_a=True, check_finite=False)
    return np.triu(raw[:k])


@dataclass
class ColumnProducts:
    """The R factor of some rows' columns (``A'A = R'R``); partitions add by a QR of both.

    What :func:`design_products` sums: lmerTest's treatment-recoded designs
    for the type III contrasts of a model with other codings.
    """

    r_factor: np.ndarray

    def __add__(self, other: ColumnProducts) -> ColumnProducts:
        return ColumnProducts(np.linalg.qr(np.vstack([self.r_factor, other.r_factor]), mode="r"))


@dataclass
class ProductPlan:
    """What :func:`design_products` evaluates: learned designs and the model's rows.

    Attributes
    ----------
    model : RowPlan
        The model's plan (its complete rows and its fixed part ``X``).
    designs : list of DesignSpec
        The designs ``D_1, ..., D_k`` whose columns are multiplied.
    """

    model: RowPlan
    designs: list[DesignSpec]


def design_products(part: pd.DataFrame, plan: ProductPlan) -> ColumnProducts:
    """The R factor of ``[D_1 ... D_k 1 X]`` over a partition's complete rows.

    ``X`` is the model's fixed part without its dropped columns.
    """
    frame, _ = plan.model.rows.complete(part)
    designs = [spec.build() for spec in plan.designs] + [plan.model.built_designs()[1]]
    matrices = evaluate_designs(designs, patsy_columns(frame, plan.model.rows.used), len(frame))
    X = matrices[-1] if plan.model.fixed_keep is None else matrices[-1][:, plan.model.fixed_keep]
    columns = np.column_stack(matrices[:-1] + [np.ones(len(frame)), X])
    return ColumnProducts(r_factor_of(np.asfortranarray(columns)))


@dataclass
class PartitionSums:
    """Everything the fit needs from some rows; partitions add up.

    Attributes
    ----------
    raw : RawSums
        The engine's sums (every fixed column; see :meth:`RawSums.drop_fixed`).
    fixed : FixedSums
    level_counts, level_sums : list of ndarray
        Per term (model order): rows and response sums by level (lme4's
        starting theta).
    response : Moments
        Mean and variance of the response.
    magnitudes : ColumnMagnitudes
        The columns' magnitudes (values too large or small for double precision).
    term_moments : list of Moments
        Per term (model order): mean and spread of its columns (a column far from
        zero against its spread gets the in-memory path's warning).
    """

    raw: RawSums
    fixed: FixedSums
    level_counts: list[np.ndarray]
    level_sums: list[np.ndarray]
    response: Moments
    magnitudes: ColumnMagnitudes
    term_moments: list[Moments]

    def __add__(self, other: PartitionSums) -> PartitionSums:
        with np.errstate(over="ignore", invalid="ignore"):  # see partition_sums
            return self._plus(other)

    def _plus(self, other: PartitionSums) -> PartitionSums:
        response = Moments()
        response.merge(self.response)
        response.merge(other.response)
        term_moments = []
        for mine, theirs in zip(self.term_moments, other.term_moments):
            merged = Moments()
            merged.merge(mine)
            merged.merge(theirs)
            term_moments.append(merged)
        return PartitionSums(
            self.raw + other.raw,
            self.fixed + other.fixed,
            [a + b for a, b in zip(self.level_counts, other.level_counts)],
            [a + b for a, b in zip(self.level_sums, other.level_sums)],
            response,
            self.magnitudes + other.magnitudes,
            term_moments,
        )


def partition_sums(part: pd.DataFrame, plan: RowPlan) -> PartitionSums:
    """The :class:`PartitionSums` of one partition (checked as in memory).

    Values whose squares overflow are reported on the client, by name, from
    the summed magnitudes (as the in-memory path reports them before forming
    any product); numpy's overflow warnings on the workers are silenced.
    """
    rows = model_rows(part, plan, check=True, all_columns=True)
    with np.errstate(over="ignore", invalid="ignore"):
        return _sums_of_rows(rows, plan)


def _sums_of_rows(rows: ModelRows, plan: RowPlan) -> PartitionSums:
    y = rows.y if rows.offset is None else rows.y - rows.offset
    engine_terms = [rows.terms[i] for i in plan.engine_order]
    names = plan.built_designs()[1].column_names
    columns = magnitude_columns(plan.response, y, names, rows.X, rows.terms)
    return PartitionSums(
        raw_sums(engine_terms, rows.X, y, rows.weights),
        FixedSums.of(rows.X, y, rows.full),
        [np.bincount(t.codes, minlength=t.n_levels).astype(float) for t in rows.terms],
        [np.bincount(t.codes, rows.y, minlength=t.n_levels) for t in rows.terms],
        Moments.of(rows.y[:, None]),
        ColumnMagnitudes.of(columns, rows.weights),
        [Moments.of(np.asarray(t.Z, dtype=float)) for t in rows.terms],
    )


@dataclass(frozen=True)
class SumShifts:
    """How the engine's sums are formed from the rows where columns are far from zero.

    The in-memory path's conditioning (:func:`~.engine.blocks.build_cross_products`),
    decided from the summed sums and applied in one more pass over the rows:
    shifting the summed products instead would cancel the digits that matter.

    Attributes
    ----------
    centering : FixedCentering or None
        Fixed-effects columns centred on the columns before them (``X T``).
    beta_shift : ndarray or None
        The response's sums are those of ``y - X T beta_shift``.
    terms : list of ndarray or None
        Per random term (model order), the value subtracted from each of its
        columns (the centred-model check of a fit).
    """

    centering: FixedCentering | None = None
    beta_shift: np.ndarray | None = None
    terms: list[np.ndarray] | None = None


def shifted_partition_sums(part: pd.DataFrame, arguments: tuple) -> RawSums:
    """The engine's sums of a partition's rows, formed as ``arguments``'s
    :class:`SumShifts` says (``arguments``: the :class:`RowPlan` and those)."""
    plan, shifts = arguments
    rows = model_rows(part, plan)
    y = rows.y if rows.offset is None else rows.y - rows.offset
    X = rows.X if shifts.centering is None else shifts.centering.apply(rows.X)
    y = shifted_response(X, y, shifts.beta_shift)
    terms = rows.terms
    if shifts.terms is not None:
        terms = [
            dataclasses.replace(term, Z=np.asarray(term.Z, dtype=float) - shift)
            for term, shift in zip(terms, shifts.terms)
        ]
    with np.errstate(over="ignore", invalid="ignore"):
        return raw_sums([terms[i] for i in plan.engine_order], X, y, rows.weights)


# -- row-level results -----------------------------------------------------------------
def fitted_partition(
    part: pd.DataFrame,
    plan: RowPlan,
    params: np.ndarray,
    modes: list[np.ndarray],
    what: str = "fitted",
) -> pd.Series:
    """Fitted values or residuals of a partition's complete rows.

    ``what``: ``"fitted"`` (``X beta + Z b + offset``), ``"marginal"``
    (``X beta + offset``), ``"response"`` (``y``), or residuals ``"resid"``,
    ``"resid_marginal"``, ``"pearson"``, ``"pearson_marginal"``.
    """
    rows = model_rows(part, plan)
    values = _linear_predictor(rows, params, modes if "marginal" not in what else [])
    if what == "response":
        values = rows.y
    elif what.startswith(("resid", "pearson")):
        values = rows.y - values
        if what.startswith("pearson") and rows.weights is not None:
            values = values * np.sqrt(rows.weights)
    return pd.Series(values, index=rows.frame.index, dtype=float)


def _linear_predictor(rows: ModelRows, params: np.ndarray, modes: list[np.ndarray]) -> np.ndarray:
    values = rows.X @ params
    for term, effects in zip(rows.terms, modes):
        values = values + term_contribution(term.Z, term.codes, effects)
    if rows.offset is not None:
        values = values + rows.offset
    return values


def predict_partition(
    part: pd.DataFrame,
    plan: RowPlan,
    needed: list[str],
    params: np.ndarray,
    terms: list[tuple[int, list[int], np.ndarray]],
    allow_new_levels: bool,
    offset: str | None = None,
) -> pd.Series:
    """Predictions for a partition of new data, NaN where a needed value is missing.

    ``terms`` holds, per random term kept, its index in the model, the columns
    kept and its random effects. Levels match the fitted ones by value across
    dtypes; levels not seen in fitting get zero effects when
    ``allow_new_levels``, else are an error (as in memory); so do rows missing
    a grouping value, which are otherwise NaN. ``offset`` is the column of the
    rows' offset (added; a missing one gives NaN).
    """
    frame = part[needed]
    if plan.rows.as_object:
        present = [c for c in plan.rows.as_object if c in needed]
        frame = frame.assign(**{c: frame[c].astype(object) for c in present})
    designs = plan.built_designs()
    wanted = [designs[1]] + [designs[plan.bars[index].design] for index, _, _ in terms]
    labels_only = set()
    if allow_new_levels:  # a missing grouping value is a new level, as in lme4
        read = {n for d in wanted for f in d.factor_infos for n in names_in_code(f.code)}
        labels_only = {f for i, _, _ in terms for f in plan.bars[i].term.factors} - read
    checked = [c for c in needed if c not in labels_only]
    complete = ~frame[checked].isna().any(axis=1).to_numpy()
    row_offset = column_or_array(offset, part, "offset", "newdata")
    if row_offset is not None:
        complete &= ~np.isnan(row_offset)
    rows = numeric_objects(frame.loc[complete], [c for c in plan.rows.numbers if c in needed])
    rows = plain_columns(rows, needed)
    try:
        matrices = evaluate_designs(wanted, patsy_columns(rows, needed), len(rows))
    except patsy.PatsyError as err:  # a new level of a fixed factor: as in memory
        raise DataError(f"cannot build the fixed effects for newdata: {err.message}") from None
    X = matrices[0] if plan.fixed_keep is None else matrices[0][:, plan.fixed_keep]
    values = X @ params
    if row_offset is not None:
        values = values + row_offset[complete]
    for (index, cols, effects), Z in zip(terms, matrices[1:]):
        codes = match_levels(plan.bars[index].term, rows, allow_new_levels)
        values = values + term_contribution(Z[:, cols], codes, effects[:, cols])
    out = np.full(len(frame), np.nan)
    out[complete] = values
    return pd.Series(out, index=part.index, dtype=float)
