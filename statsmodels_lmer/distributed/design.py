"""patsy designs learned from data in partitions, and designs that pickle.

patsy learns a design (categorical levels, the statistics of stateful
transforms such as ``center(x)``) from all of the data it is given. With data in
partitions, each partition contributes a small summary, the summaries are
combined, and patsy's own :func:`patsy.design_matrix_builders` turns the
combined summary into the same ``DesignInfo`` it would have built from all the
rows at once:

* a stateful transform's statistics are sums over rows (``center``'s sum and
  count, ``standardize``'s count, mean and sum of squared deviations), so they
  combine exactly; other stateful transforms (``bs``, ``cr``, ...) need all the
  values at once and are refused;
* a categorical factor's levels are patsy's sorted set of its distinct values
  (or a categorical's categories), so each partition sends its distinct values;
* a numerical factor needs only its number of columns.

:class:`DesignLearner` runs this in stages (a stage is one pass over the
partitions): stage ``s`` memorizes pass ``s`` of the factors' transforms and
examines the factors whose transforms are done. Most formulas need one stage.

patsy's ``DesignInfo`` does not pickle (nor do its factors and transforms);
:class:`DesignSpec` is a picklable description that rebuilds it, which is how a
design learned on the client reaches the workers.
"""

from __future__ import annotations

import copy
import importlib
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
import patsy.builtins
import patsy.util
from patsy.categorical import guess_categorical
from patsy.state import Center, Standardize

from ..exceptions import FormulaError
from ..formula import not_python
from ..frame import fixed_part_error
from ..terms import term_columns_error
from ..transform_rows import names_in_code
from ..transforms import RScale

__all__ = [
    "DesignLearner",
    "DesignSpec",
    "FactorSpec",
    "Moments",
    "StageSummary",
    "evaluate_designs",
    "evaluation_error",
    "stage_summary",
]

NO_NA = patsy.NAAction(on_NA="raise", NA_types=[])
"""Rows with missing values are dropped before patsy sees them."""


# -- stateful transforms -------------------------------------------------------
class _CenterSums:
    """``center``'s statistics of some rows: column sums and the row count."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def memorize_chunk(self, x: Any) -> None:
        values = patsy.util.atleast_2d_column_default(np.asarray(x))
        self.count += values.shape[0]
        total = np.sum(values, axis=0, dtype=patsy.util.wide_dtype_for(values))
        self.total = total if self.total is None else self.total + total

    def merge(self, other: _CenterSums) -> None:
        self.count += other.count
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total

    def restore(self, transform: Center) -> None:
        # patsy's Center keeps ``_sum`` and ``_count`` (patsy 0.5 - 1.0)
        transform._sum = self.total
        transform._count = self.count


class Moments:
    """Count, mean and summed squared deviations of each column of some rows.

    ``standardize``'s statistics, and the column scales of the fixed part.
    Partitions combine by Chan et al.'s pairwise update, the parallel form of
    the online algorithm patsy uses row by row.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """The moments of the columns of a 2-d array."""
        out = cls()
        if values.shape[0]:
            out.n = values.shape[0]
            out.mean = values.mean(axis=0)
            out.m2 = ((values - out.mean) ** 2).sum(axis=0)
        return out

    @property
    def variance(self) -> np.ndarray:
        """Sample variances (``ddof = 1``)."""
        return self.m2 / (self.n - 1)

    def memorize_chunk(self, x: Any, center: bool = True, rescale: bool = True, ddof: int = 0):
        """Add rows, with the signature of patsy's ``Standardize.memorize_chunk``."""
        values = patsy.util.atleast_2d_column_default(np.asarray(x, dtype=float))
        self.merge(Moments.of(values))

    def merge(self, other: Moments) -> None:
        """Add the rows summarized by ``other``."""
        if other.n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean.copy(), other.m2.copy()
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.n / n)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        self.n = n

    def restore(self, transform: Standardize) -> None:
        """Set patsy's ``Standardize`` to these statistics."""
        # patsy's Standardize keeps current_n, current_mean and current_M2
        transform.current_n = self.n
        transform.current_mean = self.mean
        transform.current_M2 = self.m2


_STATISTICS = {Center: _CenterSums, Standardize: Moments, RScale: RScale}
"""patsy's stateful transforms that can be learned in partitions, and their statistics."""


def _transform_statistics(transform: Any, code: str) -> Any:
    for kind, statistics in _STATISTICS.items():
        if type(transform) is kind:
            return statistics()
    raise FormulaError(
        f"{code!r} uses the stateful transform {type(transform).__name__}, which needs all "
        "the values at once and cannot be learned from a Dask DataFrame; center(), "
        "standardize() and scale() can: compute other transforms (splines, ...) as "
        "columns first"
    )


# -- factors that pickle ---------------------------------------------------------
@dataclass(frozen=True)
class _ModuleName:
    name: str


@dataclass
class FactorSpec:
    """A patsy factor and its learned state, in a form that pickles.

    Attributes
    ----------
    code : str
        The factor's Python code (``"np.log(x)"``, ``"C(g)"``).
    namespace : dict
        Values of the names the code uses that are not data columns (patsy's
        builtins are supplied again when the factor is rebuilt).
    statistics : dict
        Learned statistics of the factor's stateful transforms, by patsy's
        name for each (``"_patsy_stobj0__center__"``).
    """

    code: str
    namespace: dict[str, Any]
    statistics: dict[str, Any] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        # modules (``np``) pickle by name
        namespace = {
            name: _ModuleName(value.__name__) if isinstance(value, types.ModuleType) else value
            for name, value in self.namespace.items()
        }
        return {**self.__dict__, "namespace": namespace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        namespace = {
            name: importlib.import_module(value.name) if isinstance(value, _ModuleName) else value
            for name, value in state["namespace"].items()
        }
        self.__dict__.update({**state, "namespace": namespace})

    @classmethod
    def from_factor(cls, factor: Any, state: dict, columns: set[str]) -> FactorSpec:
        """The spec of a memorized ``patsy.EvalFactor`` (its state from patsy)."""
        names = names_in_code(factor.code) - columns
        env = state["eval_env"].namespace
        builtins = vars(patsy.builtins)
        namespace = {
            name: env[name]
            for name in sorted(names)
            if name in env and builtins.get(name) is not env[name]
        }
        return cls(factor.code, namespace)

    def build(self) -> tuple[Any, dict]:
        """A fresh ``patsy.EvalFactor`` and its memorize state, statistics restored."""
        factor = patsy.EvalFactor(self.code)
        state: dict = {}
        factor.memorize_passes_needed(state, patsy.EvalEnvironment([dict(self.namespace)]))
        for name, statistics in self.statistics.items():
            statistics.restore(state["transforms"][name])
        return factor, state


@dataclass
class DesignSpec:
    """A patsy ``DesignInfo`` as plain data: it pickles, and :meth:`build` rebuilds it.

    Attributes
    ----------
    column_names : list of str
    factors : dict
        ``code -> (FactorSpec, type, num_columns, categories)``.
    terms : list
        ``(factor codes, [(subterm factor codes, {code: (matrix, suffixes)}, num_columns)])``.
    """

    column_names: list[str]
    factors: dict[str, tuple[FactorSpec, str, int | None, tuple | None]]
    terms: list[tuple[tuple[str, ...], list[tuple[tuple[str, ...], dict, int]]]]

    @classmethod
    def from_design(cls, info: Any, specs: dict[str, FactorSpec]) -> DesignSpec:
        """The spec of a ``DesignInfo`` whose factors are described in ``specs`` (by code)."""
        factors = {
            f.code: (specs[f.code], fi.type, fi.num_columns, fi.categories)
            for f, fi in info.factor_infos.items()
        }
        terms = []
        for term, subterms in info.term_codings.items():
            coded = [
                (
                    tuple(f.code for f in sub.factors),
                    {
                        f.code: (np.asarray(cm.matrix), list(cm.column_suffixes))
                        for f, cm in sub.contrast_matrices.items()
                    },
                    sub.num_columns,
                )
                for sub in subterms
            ]
            terms.append((tuple(f.code for f in term.factors), coded))
        return cls(list(info.column_names), factors, terms)

    def build(self) -> Any:
        """The ``patsy.DesignInfo``."""
        built = {code: spec.build() for code, (spec, *_rest) in self.factors.items()}
        factor_infos = {
            built[code][0]: patsy.FactorInfo(
                built[code][0], kind, built[code][1], num_columns, categories
            )
            for code, (_spec, kind, num_columns, categories) in self.factors.items()
        }
        codings = OrderedDict()
        for codes, subterms in self.terms:
            term = patsy.Term([built[c][0] for c in codes])
            codings[term] = [
                patsy.SubtermInfo(
                    [built[c][0] for c in sub_codes],
                    {built[c][0]: patsy.ContrastMatrix(m, s) for c, (m, s) in matrices.items()},
                    num_columns,
                )
                for sub_codes, matrices, num_columns in subterms
            ]
        return patsy.DesignInfo(self.column_names, factor_infos, codings)


def evaluate_designs(designs: list[Any], data: dict[str, Any], n_rows: int) -> list[np.ndarray]:
    """Model matrices of ``n_rows`` rows for learned ``DesignInfo`` objects (float arrays)."""
    if not any(info.factor_infos for info in designs):  # intercepts only: patsy needs a factor
        return [np.ones((n_rows, len(info.column_names))) for info in designs]
    # the designs fix the levels (the used categories, :meth:`DesignLearner.designs`); a
    # partition's Categorical keeps every category, which patsy would refuse as a mismatch
    data = {name: _plain_categories(values) for name, values in data.items()}
    matrices = patsy.build_design_matrices(designs, data, NA_action=NO_NA, return_type="matrix")
    return [np.asarray(m, dtype=float) for m in matrices]


def _plain_categories(values: Any) -> Any:
    """A categorical column's values as objects; anything else as it is."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        return np.asarray(values, dtype=object)
    return values


def _used_categories(values: Any) -> Any:
    """Distinct values of a categorical without the categories no row holds.

    R's model frame drops unused factor levels, and so does the in-memory
    model frame (:func:`~statsmodels_lmer.data_checks.drop_unused_categories`).
    """
    if isinstance(values, pd.Categorical):
        return values.remove_unused_categories()
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        return values.cat.remove_unused_categories()
    return values


# -- learning in stages -------------------------------------------------------------
@dataclass
class StageSummary:
    """What one or more partitions tell about the factors in one stage.

    Attributes
    ----------
    statistics : dict
        ``code -> {transform name: statistics}`` for the factors memorizing.
    values : dict
        ``code -> ("categorical", distinct values) or ("numerical", first row)``
        for the factors examined.
    """

    statistics: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def __add__(self, other: StageSummary) -> StageSummary:
        out = StageSummary(copy.deepcopy(self.statistics), dict(self.values))
        for code, stats in other.statistics.items():
            mine = out.statistics.setdefault(code, {})
            for name, value in stats.items():
                if name in mine:
                    mine[name].merge(value)
                else:
                    mine[name] = copy.deepcopy(value)
        for code, value in other.values.items():
            out.values[code] = _combine_values(code, out.values.get(code), value)
        return out


@dataclass
class StagePlan:
    """What each factor does in one stage: memorize a pass, or be examined.

    ``contexts`` tells, by factor code, what an error evaluating the factor
    names (see :func:`evaluation_error`).
    """

    factors: dict[str, FactorSpec]
    memorize: dict[str, int]
    examine: list[str]
    contexts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    columns: tuple[str, ...] = ()  # the data's, for the close names an error suggests


def stage_summary(
    plan: StagePlan,
    data: dict[str, Any] | None,
    memorize_data: dict[str, dict[str, Any]] | None = None,
) -> StageSummary:
    """The :class:`StageSummary` of one partition (run on a worker).

    ``data``: the partition's complete rows (None: it has none), which the
    factors are examined on; ``memorize_data``: by factor code, the rows a
    memorizing factor learns on (default ``data``; a factor missing from it
    has no rows there).
    """
    out = StageSummary()
    for code, which_pass in plan.memorize.items():
        rows = data if memorize_data is None else memorize_data.get(code)
        if rows is None:
            continue
        factor, state = plan.factors[code].build()
        recorders = {
            name: _transform_statistics(state["transforms"][name], code)
            for name in state["pass_bins"][which_pass]
        }
        state["transforms"].update(recorders)
        context = plan.contexts.get(code, ())
        function = factor.memorize_chunk
        _guarded(context, code, function, state, which_pass, rows, columns=plan.columns)
        out.statistics[code] = recorders
    if data is None:
        return out
    for code in plan.examine:
        factor, state = plan.factors[code].build()
        context = plan.contexts.get(code, ())
        value = _guarded(context, code, factor.eval, state, data, columns=plan.columns)
        out.values[code] = _value_summary(value)
    return out


def _guarded(
    context: tuple[str, ...], code: str, function: Any, *args: Any, columns: Any = ()
) -> Any:
    try:
        return function(*args)
    except (patsy.PatsyError, NameError, SyntaxError) as err:
        raise evaluation_error(context, code, err, columns) from None


def evaluation_error(
    context: tuple[str, ...], code: str, err: Exception, columns: Any = ()
) -> Exception:
    """The in-memory path's error for a factor patsy cannot evaluate.

    ``context`` is ``("fixed", fixed part)`` or ``("term", lhs, term)`` for
    the formula the factor first appears in; empty: the factor's own code.
    ``columns``: the data's, for the close names suggested.
    """
    if context and context[0] == "term":
        if isinstance(err, SyntaxError):
            return FormulaError(
                f"cannot evaluate the columns of random-effects term {context[2]}: "
                f"{not_python(err)}"
            )
        message = getattr(err, "message", None) or str(err)
        return term_columns_error(context[1], context[2], message, columns)
    return fixed_part_error(context[1] if context else code, err, columns)


def _value_summary(value: Any) -> tuple[str, Any]:
    if guess_categorical(value):
        return "categorical", _distinct(value)
    return "numerical", np.asarray(value)[:1]


def _is_box(value: Any) -> bool:
    """A patsy ``C(...)`` result."""
    return all(hasattr(value, name) for name in ("data", "contrast", "levels"))


@dataclass
class _BoxValues:
    """The distinct values inside a ``C(...)`` result (which does not pickle)."""

    values: Any


def _distinct(value: Any) -> Any:
    if _is_box(value):
        return _BoxValues(_distinct(value.data))
    if isinstance(value, np.ndarray) and value.dtype == bool:
        return np.unique(value)
    return pd.unique(pd.Series(value) if not isinstance(value, pd.Series) else value)


def _combine_values(code: str, mine: Any, other: tuple[str, Any]) -> tuple[str, Any]:
    if mine is None:
        return other
    if mine[0] != other[0] or isinstance(mine[1], _BoxValues) != isinstance(other[1], _BoxValues):
        raise FormulaError(
            f"{code!r} is categorical in some partitions and numerical in others; "
            "give the column one type (astype) before fitting"
        )
    if mine[0] == "numerical":
        return mine
    return "categorical", _union(mine[1], other[1])


def _union(a: Any, b: Any) -> Any:
    if isinstance(a, _BoxValues):
        return _BoxValues(_union(a.values, b.values))
    if isinstance(a, np.ndarray) and a.dtype == bool:
        return np.unique(np.concatenate([a, np.asarray(b, dtype=bool)]))
    return pd.unique(pd.concat([pd.Series(a), pd.Series(b)], ignore_index=True))


class _LearnedFactor:
    """A factor whose state and distinct values are already known.

    Stands in for a patsy factor in :func:`patsy.design_matrix_builders`, which
    then codes categoricals, names columns and builds the ``DesignInfo`` exactly
    as from the full data; the factors are swapped back afterwards.
    """

    def __init__(self, factor: Any, state: dict, value: Any) -> None:
        self.factor, self.state, self.value = factor, state, value
        self.origin = factor.origin

    def name(self) -> str:
        return self.factor.name()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LearnedFactor) and self.factor == other.factor

    def __hash__(self) -> int:
        return hash((_LearnedFactor, self.factor))

    def memorize_passes_needed(self, state: dict, eval_env: Any) -> int:
        state.update(self.state)
        return 0

    def eval(self, state: dict, data: Any) -> Any:
        return self.value


class DesignLearner:
    """Learns patsy designs for several formulas from data in partitions.

    Parameters
    ----------
    formulas : list of str
        patsy formulas (``"y ~ x + f"``, or one-sided ``"1 + x"``); a two-sided
        formula gives two designs (response, then model matrix).
    eval_env : patsy.EvalEnvironment
        Where names that are not columns are looked up.
    columns : iterable of str
        The data's column names (excluded from the factors' namespaces).
    contexts : list of tuple, optional
        Per formula, what an error evaluating one of its factors names
        (:func:`evaluation_error`); a factor belongs to the first formula
        that uses it.

    Notes
    -----
    Use: for each stage, send :meth:`plan` to the partitions, combine their
    :func:`stage_summary` results and pass the sum to :meth:`absorb`; then
    :meth:`designs` gives the ``DesignInfo`` objects and :meth:`specs` their
    picklable :class:`DesignSpec`.
    """

    def __init__(
        self,
        formulas: list[str],
        eval_env: Any,
        columns: Any,
        contexts: list[tuple[str, ...]] | None = None,
    ) -> None:
        self.termlists = []
        self.contexts: dict[str, tuple[str, ...]] = {}
        self.factors: dict[str, Any] = {}
        for index, text in enumerate(formulas):
            desc = patsy.ModelDesc.from_formula(text)
            termlists = [desc.lhs_termlist] if desc.lhs_termlist else []
            termlists.append(desc.rhs_termlist)
            self.termlists.extend(termlists)
            for factor in (f for termlist in termlists for t in termlist for f in t.factors):
                self.factors.setdefault(factor.code, factor)
                if contexts is not None:
                    self.contexts.setdefault(factor.code, contexts[index])
        self.columns = tuple(map(str, columns))
        columns = set(self.columns)
        self.states: dict[str, dict] = {}
        self.passes: dict[str, int] = {}
        self.factor_specs: dict[str, FactorSpec] = {}
        for code, factor in self.factors.items():
            state: dict = {}
            self.passes[code] = factor.memorize_passes_needed(state, eval_env)
            for transform in state["transforms"].values():
                _transform_statistics(transform, code)  # refuses what cannot be learned
            self.states[code] = state
            self.factor_specs[code] = FactorSpec.from_factor(factor, state, columns)
        self.values: dict[str, Any] = {}
        self.stage = 0

    @property
    def n_stages(self) -> int:
        """Passes over the data needed: one more than the most memorize passes."""
        return max(self.passes.values(), default=0) + 1

    @property
    def done(self) -> bool:
        """Whether every stage has been absorbed."""
        return self.stage >= self.n_stages

    def plan(self) -> StagePlan:
        """What the partitions compute in the current stage (it pickles)."""
        memorize = {c: self.stage for c, n in self.passes.items() if self.stage < n}
        examine = [c for c, n in self.passes.items() if n == self.stage]
        specs = {
            code: FactorSpec(spec.code, spec.namespace, dict(spec.statistics))
            for code, spec in self.factor_specs.items()
        }
        return StagePlan(specs, memorize, examine, self.contexts, self.columns)

    def absorb(self, summary: StageSummary) -> None:
        """Take the combined summary of the current stage and move to the next."""
        for code, statistics in summary.statistics.items():
            state = self.states[code]
            for name, stats in statistics.items():
                stats.restore(state["transforms"][name])
                self.factor_specs[code].statistics[name] = stats
            self.factors[code].memorize_finish(state, self.stage)
        for code in self.plan().examine:
            if code not in summary.values:
                raise FormulaError(f"no rows to learn {code!r} from")
            self.values[code] = summary.values[code][1]
        self.stage += 1

    def designs(self, empty: dict[str, Any]) -> list[Any]:
        """The learned ``DesignInfo`` objects, one per termlist (lhs before rhs).

        ``empty`` holds the columns without rows (a Dask frame's ``_meta``):
        a ``C(...)`` factor is evaluated on it for its contrast and levels.
        """
        learned = {
            code: _LearnedFactor(self.factors[code], self.states[code], self._value(code, empty))
            for code in self.factors
        }
        swapped = [
            [patsy.Term([learned[f.code] for f in term.factors]) for term in termlist]
            for termlist in self.termlists
        ]
        infos = patsy.design_matrix_builders(
            swapped, lambda: iter([None]), patsy.EvalEnvironment([{}]), NA_action=NO_NA
        )
        return [self._unswap(info) for info in infos]

    def _value(self, code: str, empty: dict[str, Any]) -> Any:
        value = self.values[code]
        if not isinstance(value, _BoxValues):
            return _used_categories(value)
        context, function = self.contexts.get(code, ()), self.factors[code].eval
        box = _guarded(context, code, function, self.states[code], empty, columns=self.columns)
        return patsy.builtins.C(_used_categories(value.values), box.contrast, box.levels)

    def _unswap(self, info: Any) -> Any:
        """The same ``DesignInfo`` with the original factors back in place."""
        factor = {learned: learned.factor for learned in info.factor_infos}
        factor_infos = {
            factor[f]: patsy.FactorInfo(
                factor[f], fi.type, self.states[f.factor.code], fi.num_columns, fi.categories
            )
            for f, fi in info.factor_infos.items()
        }
        codings = OrderedDict()
        for term, subterms in info.term_codings.items():
            codings[patsy.Term([factor[f] for f in term.factors])] = [
                patsy.SubtermInfo(
                    [factor[f] for f in sub.factors],
                    {factor[f]: cm for f, cm in sub.contrast_matrices.items()},
                    sub.num_columns,
                )
                for sub in subterms
            ]
        return patsy.DesignInfo(info.column_names, factor_infos, codings)

    def specs(self, designs: list[Any]) -> list[DesignSpec]:
        """Picklable specs of designs returned by :meth:`designs`."""
        return [DesignSpec.from_design(info, self.factor_specs) for info in designs]
