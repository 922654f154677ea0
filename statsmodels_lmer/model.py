"""``Lmer``: the linear mixed model as a statsmodels ``LikelihoodModel``."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import patsy
from statsmodels.base.model import LikelihoodModel

from .arguments import check_bool
from .cached import cached_property
from .data_checks import far_column_names, far_columns, native_byte_order
from .distributed.dask_fit import (
    PartitionedModel,
    RowsOnCluster,
    build_partitioned,
    is_dask_frame,
    translate_partitioned,
)
from .engine.blocks import (
    CrossProducts,
    build_cross_products,
    check_design_memory,
    engine_order,
    response_sums,
)
from .engine.cost import MEMORY_VARIABLE, available_memory, format_bytes
from .engine.objective import ProfiledDeviance
from .exceptions import (
    DataError,
    LmerConvergenceWarning,
    OutOfMemoryError,
    ignored_warnings,
    warn,
)
from .fitting.fit import OptSummary, check_estimates, check_reproduced, fit_theta, uses_gradient
from .fitting.options import CLOSE_START_STEP, FitOptions, unknown_keyword_error
from .fitting.rescale import optimizer_scale, theta_scales, theta_scales_of_rms
from .fitting.start import level_regression_theta
from .formula import deep_parsing, parse_formula, quote_formula
from .formula_env import FormulaNamespace
from .frame import build_model_frame, check_response_fit, checked_drop_cols
from .mixedlm_formula import MixedLMSpec, translate_mixedlm
from .parametrization import tril_colmajor
from .restricted import check_restricted, restricted_env
from .results import LmerResults, LmerResultsWrapper
from .terms import RandomTerm, unique_names
from .transform_rows import design_matrix, readable_design
from .transforms import FORMULA_TRANSFORMS

__all__ = [
    "FIT_ARGUMENTS",
    "MIXEDLM_ARRAY_CALL",
    "MIXEDLM_KEYWORDS",
    "MODEL_KEYWORDS",
    "Lmer",
    "MixedLM",
    "lmer",
    "mixedlm",
]

MIXEDLM_ARRAY_CALL = (
    "for MixedLM's array call MixedLM(endog, exog, groups, exog_re) put the "
    "arrays in a DataFrame and use sml.mixedlm('y ~ 0 + x1 + x2', df, "
    "groups='g', re_formula='0 + z1 + z2') (docs/migration_mixedlm.md)"
)
"""What to do instead of statsmodels MixedLM's array call."""

MIXEDLM_KEYWORDS = ("groups", "re_formula", "vc_formula")
"""statsmodels MixedLM's way of giving the random effects (see :func:`mixedlm`)."""

FIT_ARGUMENTS = ("start_theta", "cov_type", "cov_kwds")
"""Keywords of :meth:`Lmer.fit` besides ``reml`` and the optimizer options (FitOptions)."""

STEP_FLOOR = 0.1
"""Relative first steps apply to ``max(|theta|, STEP_FLOOR)`` (theta can be 0)."""


def first_step(theta: np.ndarray, fraction: float) -> np.ndarray:
    """The NLopt first step ``fraction * max(|theta|, STEP_FLOOR)`` of each element."""
    return fraction * np.maximum(np.abs(np.asarray(theta, dtype=float)), STEP_FLOOR)


MODEL_KEYWORDS = (
    "weights",
    "offset",
    "subset",
    "missing",
    "eval_env",
    "drop_cols",
    "restricted",
    *MIXEDLM_KEYWORDS,
    "progress",
    "transform_data",
)
"""The keywords of :meth:`Lmer.from_formula` besides the formula and the data."""


class Lmer(LikelihoodModel):
    """Linear mixed model fitted the lme4 way (profiled deviance in theta).

    ``y = X beta + Z b + e`` with ``b = Lambda_theta u``,
    ``u ~ N(0, sigma^2 I)`` and ``e ~ N(0, sigma^2 W^-1)``.
    Usually created with :meth:`from_formula` (or :func:`lmer`).

    Parameters
    ----------
    endog : array_like, shape (n,)
        Response.
    exog : array_like, shape (n, p)
        Fixed-effects model matrix.
    random_terms : list of RandomTerm
        Random-effects terms evaluated on the same rows (lme4's order).
    weights : array_like, optional
        Positive prior weights.
    offset : array_like, optional
        Known offset added to the linear predictor: the total of the
        formula's ``offset(...)`` terms and the ``offset=`` keyword.
    **kwargs
        Passed to statsmodels' ``Model`` (``missing``, ``formula``, ...).

    Attributes
    ----------
    offset : ndarray or None
        The offset of each fitted row (formula terms plus keyword).
    offset_terms : tuple of str
        The code inside each ``offset(...)`` term of the formula.
    offset_argument : ndarray or None
        The ``offset=`` keyword's part of :attr:`offset` (lme4's ``offset``
        argument), for ``update()`` and predictions.
    partitions : DaskRows or None
        For a model built from a Dask DataFrame, its rows on the cluster (see
        :mod:`statsmodels_lmer.distributed`); None for in-memory data.
    dropped_rows : ndarray of int or None
        Positions in the data (after ``subset``) of the rows dropped for
        missing values (lme4's ``na.action``), for a model built from a frame.
    """

    partitions: Any = None
    dropped_rows: np.ndarray | None = None
    subset_given: bool = False
    missing: str = "drop"

    def __init__(
        self,
        endog: Any,
        exog: Any,
        random_terms: list[RandomTerm] | None = None,
        weights: Any = None,
        offset: Any = None,
        **kwargs: Any,
    ) -> None:
        self.random_terms = _checked_random_terms(random_terms)  # MixedLM's groups=: refused
        self.n_dropped = kwargs.pop("n_dropped", 0)
        self.dropped_rows = kwargs.pop("dropped_rows", None)
        self.dropped_columns = kwargs.pop("dropped_columns", [])
        self.lmer_formula = kwargs.pop("lmer_formula", None)
        self.weights_column = kwargs.pop("weights_column", None)
        self.offset_column = kwargs.pop("offset_column", None)
        self.offset_terms: tuple[str, ...] = tuple(kwargs.pop("offset_terms", ()))
        argument = kwargs.pop("offset_argument", None if self.offset_terms else offset)
        self.restricted = bool(kwargs.pop("restricted", False))
        self.formula_namespace = kwargs.pop("formula_namespace", None) or FormulaNamespace()
        self.mixedlm_spec: MixedLMSpec | None = kwargs.pop("mixedlm_spec", None)
        self.data_name: str | None = kwargs.pop("data_name", None)
        super().__init__(endog, exog, **kwargs)
        n = len(self.endog)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.offset = None if offset is None else np.asarray(offset, dtype=float)
        self.offset_argument = None if argument is None else np.asarray(argument, dtype=float)
        for term in self.random_terms:
            if len(term.codes) != n:
                raise ValueError(
                    f"random term {term.label!r} has {len(term.codes)} rows, endog has {n}"
                )
        self._set_layout(n, self.exog.shape[1])

    def _set_layout(self, nobs: int, k_fixed: int) -> None:
        self.engine_order = engine_order(self.random_terms)
        starts = np.cumsum([0] + [t.n_theta for t in self.random_terms])
        self.theta_slices = [slice(a, b) for a, b in itertools.pairwise(starts)]
        self.nobs = float(nobs)
        self.k_fixed = k_fixed

    # -- construction --------------------------------------------------
    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        subset: Any = None,
        drop_cols: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Lmer:
        """Create a model from an lme4 formula and a DataFrame.

        Parameters
        ----------
        formula : str
            lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``;
            ``(x || g)``, ``(1 | a/b)`` and ``(1 | a:b)`` are expanded as lme4.
        data : pandas.DataFrame or dask.dataframe.DataFrame
            The data; never modified. A Dask DataFrame is read in two passes
            over its partitions and only the summed cross-products come to
            the client (see docs/dask.md); weights and offset are then column
            names.
        subset : array_like, optional
            Rows to use (anything ``data.loc`` accepts; not for Dask).
        drop_cols : list of str, optional
            Fixed-effects columns to drop from the model matrix.
        weights, offset : array_like or str, optional
            Prior weights / offset, as arrays or column names. The offset is
            added to the formula's ``offset(...)`` terms, as lme4's
            ``offset`` argument (see :mod:`~statsmodels_lmer.offsets`).
        missing : {"drop", "raise"}
            Rows with a missing value in a used column are dropped (and
            counted) or refused.
        eval_env : int or patsy.EvalEnvironment, optional
            Where patsy looks up names that are not columns.
        restricted : bool
            Accept only column names, numbers, operators and a whitelist of
            transforms in the formula, and look names up in the data only
            (for formulas from untrusted users; see docs/security.md).
        groups, re_formula, vc_formula : optional
            statsmodels MixedLM's random-effects specification, instead of
            bar terms in the formula: ``groups`` a column name or one value
            per row, ``re_formula`` the random coefficients per group
            (``"~Time"``), ``vc_formula`` variance components
            (``{"Litter": "0 + C(Litter)"}``). They become lme4 terms
            (``(Time | Pig)``, ``(1 | Pig:Litter)``); see :func:`mixedlm`.
            With a Dask DataFrame, ``groups`` is a column name.
        progress : bool
            Dask DataFrames only: show Dask's progress bar for each pass.
        transform_data : pandas.DataFrame, optional
            The rows stateful transforms (``scale(x)``, ``ns(x, df=3)``) learn
            their statistics on; default every row of ``data`` where their
            input is present, before ``subset`` and the dropping of incomplete
            rows, as R's model frame (:mod:`~statsmodels_lmer.transform_rows`).
            ``update()`` without new data passes the model's own.

        Returns
        -------
        Lmer
        """
        if args:
            raise TypeError("from_formula takes keyword arguments only after drop_cols")
        _refuse_mixedlm_positions(subset, drop_cols, kwargs)
        unknown = [k for k in kwargs if k not in MODEL_KEYWORDS]
        if unknown:
            raise mixedlm_keyword_error("from_formula()", unknown, list(MODEL_KEYWORDS))
        restricted = kwargs.pop("restricted", False)
        check_bool("restricted", restricted)
        data_name = _data_name(data)
        mixedlm_args = {k: kwargs.pop(k) for k in MIXEDLM_KEYWORDS if k in kwargs}
        spec = None
        if any(value is not None for value in mixedlm_args.values()):
            translate = translate_partitioned if is_dask_frame(data) else translate_mixedlm
            if isinstance(data, pd.DataFrame):  # the translation counts the groups
                data = native_byte_order(data)
            formula, data, spec = translate(formula, data, **mixedlm_args)
        parsed = parse_formula(formula)
        if restricted:
            if kwargs.get("eval_env") is not None:
                raise TypeError("eval_env cannot be combined with restricted=True")
            check_restricted(quote_formula(parsed, _columns_of(data)), _columns_of(data))
            eval_env = restricted_env()
        else:
            eval_env = _capture_env(kwargs.pop("eval_env", None))
        weights, offset = kwargs.pop("weights", None), kwargs.pop("offset", None)
        progress = kwargs.pop("progress", False)
        transform_data = kwargs.pop("transform_data", None)
        if is_dask_frame(data):
            if transform_data is not None:
                raise TypeError("transform_data is not supported for a Dask DataFrame")
            built = build_partitioned(
                parsed,
                data,
                weights=weights,
                offset=offset,
                subset=subset,
                eval_env=eval_env,
                drop_cols=drop_cols,
                progress=progress,
                **kwargs,
            )
            model = cls._from_partitioned(built, formula, data)
            model.restricted, model.mixedlm_spec = restricted, spec
            model.formula_namespace = FormulaNamespace.capture(built.codes, data.columns, eval_env)
            return model
        missing = kwargs.pop("missing", "drop")
        mf = build_model_frame(
            parsed,
            data,
            weights=weights,
            offset=offset,
            subset=subset,
            missing=missing,
            eval_env=eval_env,
            transform_data=transform_data,
        )
        model = cls(
            mf.endog,
            _drop_columns(mf.exog, drop_cols),
            mf.terms,
            weights=mf.weights,
            offset=mf.offset,
            formula=mf.formula.fixed,
            model_spec=mf.design_info,
            n_dropped=mf.n_dropped,
            dropped_rows=mf.dropped_rows,
            dropped_columns=mf.dropped_columns,
            lmer_formula=formula,
            weights_column=weights if isinstance(weights, str) else None,
            offset_column=offset if isinstance(offset, str) else None,
            offset_terms=mf.offset_terms,
            offset_argument=mf.offset_argument,
            restricted=restricted,
            formula_namespace=FormulaNamespace.capture(mf.codes, mf.frame.columns, eval_env),
            mixedlm_spec=spec,
            data_name=data_name,
        )
        model.formula = formula
        model.data.frame = mf.frame
        model.data.transform_data = mf.transform_data
        model.subset_given, model.missing = subset is not None, missing  # for update(data=)
        return model

    @classmethod
    def _from_partitioned(cls, built: PartitionedModel, formula: str, ddf: Any) -> Lmer:
        """A model whose rows stay in a Dask DataFrame (see :meth:`from_formula`)."""
        model = cls.__new__(cls)
        rows = built.rows
        model.random_terms = built.terms
        model.n_dropped, model.dropped_columns = built.n_dropped, built.dropped_columns
        model.lmer_formula, model.formula = formula, formula
        model.data, model.k_constant = built.data, built.k_constant
        model.endog, model.exog = model.data.orig_endog, model.data.orig_exog
        columns = rows.plan.rows
        n = (built.nobs,)
        model.weights = (
            None if columns.weights is None else RowsOnCluster("weights", n, columns.weights)
        )
        model.offset = (
            None if columns.offset is None else RowsOnCluster("offset", n, columns.offset)
        )
        model.weights_column, model.offset_column = columns.weights, columns.offset
        model.offset_terms, model.offset_argument = (), model.offset
        model.restricted, model.formula_namespace = False, FormulaNamespace()
        model.mixedlm_spec, model.data_name = None, None
        model._data_attr, model._init_keys = [], []
        rows.frame = model.data.frame = ddf[columns.columns].dropna()  # the complete rows
        model.partitions = rows
        model._set_layout(built.nobs, len(built.data.xnames))
        return model

    # -- pickling ------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # patsy's DesignInfo does not pickle, and statsmodels would rebuild it
        # from a formula that has bar terms; drop it and rebuild on load.
        state = self.__dict__.copy()
        state.pop("cross_products", None)  # rebuilt when needed
        state.pop("_centred_shadow", None)
        data = object.__new__(type(self.data))
        data.__dict__.update({k: v for k, v in self.data.__dict__.items() if k != "model_spec"})
        state["data"] = data
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, default in (
            ("weights_column", None),
            ("offset_column", None),
            ("dropped_rows", None),
        ):
            state.setdefault(name, default)  # pickles of earlier versions
        state.setdefault("restricted", False)
        state.setdefault("formula_namespace", FormulaNamespace())
        state.setdefault("offset_terms", ())
        state.setdefault("offset_argument", state.get("offset"))
        self.__dict__.update(state)
        frame = getattr(self.data, "frame", None)
        fixed = getattr(self.data, "formula", None)
        if frame is not None and fixed and self.partitions is None:
            rhs = fixed.split("~", 1)[1]
            try:
                with deep_parsing(rhs):
                    design = design_matrix(
                        rhs, frame, self.formula_env(), getattr(self.data, "transform_data", None)
                    )
                self.data.model_spec = readable_design(design.design_info)
            except Exception:  # reported by formula_env() or design_info when needed
                self.data.model_spec = None

    def formula_env(self) -> patsy.EvalEnvironment:
        """Where the formula's names are looked up for new data (numpy and the captured names).

        Raises
        ------
        FormulaError
            When the model was unpickled without a function its formula uses.
        """
        error = self.formula_namespace.missing_error()
        if error is not None:
            raise error
        return self.formula_namespace.env()

    # -- engine --------------------------------------------------------
    @cached_property
    def cross_products(self) -> CrossProducts:
        """The blocked cross-products ``[Z X y]' W [Z X y]`` (built once, when first needed)."""
        return self._build_cross_products(None)

    def _build_cross_products(self, strategy: str | None) -> CrossProducts:
        if self.partitions is not None:
            return self.partitions.cross_products(strategy)
        self.require_data("Computations on the criterion (Kenward-Roger df, profiles, refits)")
        terms = [self.random_terms[i] for i in self.engine_order]
        check_design_memory(terms, self.exog.shape[1])
        y = np.asarray(self.endog, dtype=float)
        if self.offset is not None:
            y = y - self.offset
        X = np.asarray(self.exog, dtype=float)
        return build_cross_products(terms, X, y, self.weights, strategy)

    def with_response(self, endog: Any) -> Lmer:
        """The same model with a new response vector (for ``refit``, bootstrap, simulation).

        The random terms, fixed effects, weights and offset are this model's.
        The new model reuses this model's cross-products (built here if they
        are not yet) and forms only the response's (``Z'Wy``, ``X'Wy``,
        ``y'Wy``): its fit skips the setup. Nothing of this model changes.

        Parameters
        ----------
        endog : array_like, shape (nobs,)
            The new response for the fitted rows (finite).

        Returns
        -------
        Lmer
        """
        y = np.asarray(endog, dtype=float).ravel()
        if y.shape != (int(self.nobs),):
            also = ""
            if self.n_dropped:
                also = (
                    f" (refit() also takes {int(self.nobs) + self.n_dropped}, one per row of "
                    "the data, ignoring the rows dropped for missing values)"
                )
            raise ValueError(f"endog must have {int(self.nobs)} values, got {y.size}{also}")
        if not np.all(np.isfinite(y)):
            raise ValueError("endog has non-finite values")
        response = y if self.offset is None else y - self.offset
        X = None if self.exog is None else np.asarray(self.exog, dtype=float)
        if X is not None:
            offset = self.offset is not None
            check_response_fit(self.endog_names, response, X, self.weights, offset)
        new = type(self)(
            pd.Series(y, index=self.data.row_labels, name=self.endog_names),
            self.data.orig_exog,
            self.random_terms,
            weights=self.weights,
            offset=self.offset,
            weights_column=self.weights_column,
            offset_column=self.offset_column,
            offset_terms=self.offset_terms,
            offset_argument=self.offset_argument,
            restricted=self.restricted,
            formula_namespace=self.formula_namespace,
            n_dropped=self.n_dropped,
            dropped_rows=self.dropped_rows,
            dropped_columns=self.dropped_columns,
            mixedlm_spec=self.mixedlm_spec,
            data_name=self.data_name,
            **self._formula_keywords(),
        )
        new.lmer_formula = self.lmer_formula
        if hasattr(self, "formula"):
            new.formula = self.formula
        new.data.frame = self.data.frame
        new.data.transform_data = getattr(self.data, "transform_data", None)
        new.data.model_spec = getattr(self.data, "model_spec", None)
        if self.partitions is None:  # after unpickling (bootstrap workers) built once here
            built = self.cross_products
            terms = [self.random_terms[i] for i in self.engine_order]
            sums = response_sums(terms, X, response, self.weights, built.centering)
            new.cross_products = built.with_response(sums)
        return new

    def _formula_keywords(self) -> dict[str, Any]:
        """statsmodels' ``formula`` and ``model_spec`` keywords of this model, if it has them."""
        fixed = getattr(self.data, "formula", None)
        if fixed is None:
            return {}
        return {"formula": fixed, "model_spec": getattr(self.data, "model_spec", None)}

    def devfun(self, reml: bool = True, strategy: str | None = None) -> ProfiledDeviance:
        """The objective of theta, as lme4's ``devFunOnly = TRUE``.

        Parameters
        ----------
        reml : bool
            REML criterion (default) or ML deviance.
        strategy : {None, "pairs", "classes", "dense", "sparse"}
            How the engine forms its products (see
            :mod:`statsmodels_lmer.engine.blocks`), or ``"sparse"``: a sparse
            Cholesky factor of the whole random part (needs the ``cholmod``
            or ``sparse`` extra); default the cheapest that fits in memory,
            shared with the fit. Another strategy builds cross-products of
            its own.

        Returns
        -------
        ProfiledDeviance
            A callable ``f(theta) -> float`` with theta in lme4's order; safe
            to call from several threads.
        """
        cross = self.cross_products if strategy is None else self._build_cross_products(strategy)
        return ProfiledDeviance(
            cross, self.random_terms, self.theta_slices, self.engine_order, reml
        )

    @property
    def theta_lower(self) -> np.ndarray:
        """Lower bounds of theta (0 on diagonals, -inf elsewhere)."""
        return np.concatenate([t.theta_lower() for t in self.random_terms])

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's starting theta."""
        return np.concatenate([t.theta_start() for t in self.random_terms])

    @property
    def initial_theta(self) -> np.ndarray:
        """The theta a fit starts from by default, as lme4 chooses it.

        When every term is a random intercept on a factor of its own, lme4
        starts from ``sqrt(v / v_e)`` with ``v`` the variance of each factor's
        group means of ``y`` and ``v_e = var(y) - sum(v)`` (when that is
        positive and every ratio is at least 1e-10); otherwise from
        :attr:`theta_start` (1 on diagonals, 0 elsewhere).
        """
        moments = self._moment_theta
        return self.theta_start if moments is None else moments

    @cached_property
    def _moment_theta(self) -> np.ndarray | None:
        """lme4's start from the variances of group means (see :attr:`initial_theta`), or None."""
        terms = self.random_terms
        groups = [t.group for t in terms]
        if any(t.n_cols != 1 or t.column_names != ("Intercept",) for t in terms) or len(
            set(groups)
        ) != len(groups):
            return None
        if self.partitions is not None:
            group_vars, total_var = self.partitions.group_mean_variances()
        else:
            y = np.asarray(self.endog, dtype=float)
            group_vars = []
            for term in terms:
                means = np.bincount(term.codes, y) / np.bincount(term.codes)
                group_vars.append(np.var(means[term.codes], ddof=1))
            total_var = np.var(y, ddof=1)
        residual_var = total_var - sum(group_vars)
        if not residual_var > 0:
            return None
        ratios = np.asarray(group_vars) / residual_var
        if np.any(ratios < 1e-10) or not np.all(np.isfinite(ratios)):
            return None
        return np.sqrt(ratios)

    def _default_start(self, objective: Any, options: FitOptions) -> np.ndarray:
        """:attr:`initial_theta`, or for a gradient fit of vector-valued terms the
        estimate from regressions within each level (:mod:`~.fitting.start`).

        lme4's start (1 on diagonals) is taken in the columns' units when the
        optimizer works in them (:mod:`~.fitting.rescale`): ``1 / scale``.
        """
        if self._moment_theta is None and options.method is None and uses_gradient(objective):
            regression = self._regression_theta
            if regression is not None:
                return regression
        scale = optimizer_scale(self._theta_scale)
        if self._moment_theta is None and scale is not None:
            return self.theta_start / scale
        return self.initial_theta

    @cached_property
    def _theta_scale(self) -> np.ndarray | None:
        """Each theta element's column scale (:func:`~.fitting.rescale.theta_scales`)."""
        if self.partitions is not None:
            return theta_scales_of_rms(self.partitions.column_rms())
        return theta_scales([t.Z for t in self.random_terms])

    @cached_property
    def _regression_theta(self) -> np.ndarray | None:
        """:func:`~.fitting.start.level_regression_theta` for this model, or None.

        Only for in-memory, unweighted data with a vector-valued term and a
        grouping factor of its own for every term.
        """
        terms = self.random_terms
        groups = [t.group for t in terms]
        if (
            self.partitions is not None
            or self.weights is not None
            or len(set(groups)) != len(groups)
            or all(t.n_cols == 1 for t in terms)
        ):
            return None
        response = np.asarray(self.endog, dtype=float)
        if self.offset is not None:
            response = response - self.offset
        return level_regression_theta(
            response,
            np.asarray(self.exog, dtype=float),
            [t.codes for t in terms],
            [t.Z for t in terms],
            [t.n_levels for t in terms],
        )

    @property
    def data_removed(self) -> bool:
        """Whether the results' ``remove_data()`` dropped the model's rows."""
        return self.exog is None and self.partitions is None

    def require_data(self, needed_for: str) -> None:
        """Refuse, by name, a computation that needs the rows after ``remove_data()``.

        Raises
        ------
        DataError
            The results' ``remove_data()`` dropped the model's arrays.
        """
        if self.data_removed:
            raise DataError(
                f"{needed_for} need the model's rows, which remove_data() dropped; keep "
                "a copy of the results from before remove_data(), or refit"
            )

    @property
    def theta_names(self) -> list[str]:
        """Names of the theta elements, unique as lme4's (``g.x``, then ``g.x.1``)."""
        return unique_names([name for t in self.random_terms for name in t.theta_names()])

    def fit(
        self,
        reml: bool = True,
        start_theta: Any = None,
        cov_type: str = "nonrobust",
        cov_kwds: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Fit by REML (default) or maximum likelihood.

        The keywords mirror lme4's ``lmerControl``; the defaults are lme4's.

        Parameters
        ----------
        reml : bool
            REML (default, as lme4) or ML.
        start_theta : array_like, optional
            Starting theta (lme4's ``start``); default :attr:`initial_theta`,
            lme4's choice (from the variances of group means when every term
            is a random intercept, else 1 on diagonals and 0 off), except in
            fits on the analytic gradient with a vector-valued term (and no
            ``method``): the estimate from regressions within each level
            (:func:`~statsmodels_lmer.fitting.start.level_regression_theta`)
            where it exists. ``res.optinfo["start"]`` holds the start used.
        cov_type : {"nonrobust", "cluster", "CR2", "CR1S", "CR1", "CR0"}
            Covariance of the fixed effects used by ``bse``, tests and the
            summary: lme4's model-based one (default) or cluster-robust, as
            statsmodels' ``fit(cov_type="cluster", cov_kwds={"groups": g})``;
            see :meth:`LmerResults.get_robustcov_results`.
        cov_kwds : dict, optional
            ``groups`` (column name or one value per fitted row) and
            ``type`` (default CR2) for ``cov_type="cluster"``.
        method : str, optional
            Optimizer name (see :func:`statsmodels_lmer.available_optimizers`);
            ``"bobyqa"`` is lme4's ``optimizer``. Default: chosen by a cost
            model (:func:`~statsmodels_lmer.engine.gradient.gradient_available`):
            L-BFGS-B on the analytic gradient where gradients are predicted to
            pay, else BOBYQA when NLopt is installed (tiny models, the nested
            layout, the sparse path, few parameters on a large dense block),
            else L-BFGS-B on finite differences.
        maxiter : int, optional
            Limit on objective evaluations of each optimizer run (lme4's
            ``maxfun``; 100000).
        xtol, ftol : float
            Absolute tolerances on theta and the objective (lme4: 1e-8 each).
        check_conv : bool
            Run lme4's convergence checks (``checkConv``) and warn: a
            :class:`~statsmodels_lmer.exceptions.SingularFitWarning` for a
            boundary fit, a
            :class:`~statsmodels_lmer.exceptions.LmerConvergenceWarning` for a
            large scaled gradient, a bad Hessian or an unverified optimum.
            See docs/checks.md.
        calc_derivs : bool, optional
            Compute the gradient and Hessian at the optimum (lme4's
            ``calc.derivs``; never at a singular fit, where the checks ignore
            them). Default: on up to 10,000 observations and off above, as
            newer lme4 releases do (``check.conv.nobsmax = 1e4``).
        deriv_method : {"analytic", "deriv12"}
            The analytic gradient and central differences of it (``2 k``
            gradients for ``k`` theta elements; default), or lme4's
            ``deriv12`` (``2 k^2`` evaluations).
        verify : bool
            Verify the optimum (default on): by its local quadratic model at
            an interior estimate with at most three theta or where lme4's
            derivatives are computed anyway, else by restarting the
            optimizer from its estimate until a restart lowers the objective
            by at most ``verify_tol``, at most five times. A fit whose
            optimum is not verified is not reported converged, boundary and
            singular fits included (docs/checks.md).
        verify_tol : float
            The largest fall of the objective a verification restart may
            find for the optimum to count as verified (1e-6).
        boundary_tol : float
            Theta elements closer than this to their lower bound are moved
            onto it when that does not increase the objective (lme4's
            ``boundary.tol``, 1e-5); 0 disables.
        restart_edge : bool
            Restart the optimizer when an element on its bound has a negative
            one-sided derivative into the interior (lme4's ``restart_edge``).
        grad_tol, hess_tol : float
            Tolerances of the gradient check (lme4's ``check.conv.grad``,
            2e-3) and the Hessian checks (``check.conv.hess``, 1e-6).
        threads : int, optional
            BLAS threads (see :class:`~statsmodels_lmer.fitting.options.FitOptions`).
        initial_step : float, optional
            BOBYQA's first step relative to the start (lme4's ``rhobeg``
            through ``optCtrl``): ``initial_step * max(|theta|, 0.1)``; for
            L-BFGS-B on the analytic gradient, the root mean square of
            these steps is the length of its first move. Default 0.25 from
            lme4's start estimated from group means, the optimizer's own
            choice otherwise (L-BFGS-B: a move of length 1).
        progress : bool, optional
            A bar counting the objective's evaluations, with the lowest
            value so far and the stage (as MixedModels.jl's fit shows).
            Default: the package setting (:func:`set_progress`), drawn
            only once the fit has run for two seconds, and not for the
            fits inside a job with its own bar (bootstrap, allfit);
            True: at once; False: never.

        Returns
        -------
        LmerResultsWrapper
            ``converged`` is False when the optimizer reported failure, the
            optimum could not be verified or a convergence check failed.
            ``opt_summary`` holds what was done (an :class:`OptSummary`);
            ``optinfo`` the same as lme4's dictionary layout.
        """
        check_bool("reml", reml)
        options = _fit_options(kwargs, "fit()")
        with _out_of_memory_explained():
            objective = self.devfun(reml)
            if start_theta is None:
                start = self._default_start(objective, options)
            else:
                start = _check_theta(start_theta, self)
            fraction = options.initial_step
            if fraction is None and start_theta is None and self._moment_theta is not None:
                fraction = CLOSE_START_STEP  # a start estimated from the data is close
            step = None if fraction is None else first_step(start, fraction)
            threads = options.threads
            if threads is None:  # large dense blocks: one thread or all, as measured
                threads = objective.measured_threads(start)
            summary, solution = self._optimized(objective, start, options, step, threads)
        if options.verify:
            summary, solution = self._check_centred(reml, summary, solution)
        res = LmerResults(self, solution, summary, reml)
        for text, category in summary.messages:
            warn(text, category)
        if str(cov_type).lower() != "nonrobust" or cov_kwds:
            return res.get_robustcov_results(cov_type, **(cov_kwds or {}))
        return LmerResultsWrapper(res)

    def _check_centred(
        self, reml: bool, summary: OptSummary, solution: Any
    ) -> tuple[OptSummary, Any]:
        """Verify a fit with random-effects columns far from zero by the centred model.

        ``(x | g)`` with ``x = 1000 + 0.001 * Days`` is the model of the centred
        column, but its optimum has a correlation within about 1e-11 of -1 and an
        intercept SD of 2e5 relative to sigma: lme4 and the optimizers here stop
        21 log-likelihood units short, at a point that passes every check (a
        singular fit, whose derivatives are not checked). The same model with
        those columns centred (``x - mean(x)``) is well conditioned; its fit's
        criterion is the true optimum. A fit above it by more than the
        verification tolerance is fitted again from the centred optimum mapped
        back to these columns (kept when lower); if it is still above, it
        stopped short and is not converged (``summary.centred``). A Dask
        model's centred sums take one more pass over its partitions.

        Returns the summary and solution, those of the second fit when it was lower.
        """
        far = self.far_random_positions()
        if not any(far):
            return summary, solution
        shadow = self._centred_shadow_model(far)
        with ignored_warnings():
            centred = shadow.fit(reml=reml, progress=False)
        best = float(centred.opt_summary.run.fun)
        tolerance = max(summary.options.verify_tol, 1e-9 * abs(best))
        first = float(solution.objective_value)
        restarted = False
        if first - best > tolerance:
            again = self._fit_from_centred(reml, summary.options, centred.theta, far)
            if again is not None and again[1].objective_value < first:
                (summary, solution), restarted = again, True
        value = float(solution.objective_value)
        gap = value - best
        short = gap > tolerance
        names = far_column_names(self.random_terms, far)
        summary.centred = {
            "columns": names,
            "objective": best,
            "gap": gap,
            "short": short,
            "first_objective": first,
            "restarted": restarted,
        }
        if short:
            criterion = "REML criterion" if reml else "deviance"
            summary.messages.append(
                (
                    f"the same model with {', '.join(names)} centred reaches a {criterion} "
                    f"{gap:.4g} lower ({best:.10g} against {value:.10g}): this fit "
                    "stopped short of the optimum, which is hard to reach with columns far "
                    "from zero. Use a centred copy of the column (and a scaled one if its "
                    "spread is small), e.g. df.assign(x=(df.x - df.x.mean()) / df.x.std()): "
                    "the model is the same",
                    LmerConvergenceWarning,
                )
            )
        return summary, solution

    def _fit_from_centred(
        self, reml: bool, options: FitOptions, centred_theta: Any, far: list[list[int]]
    ) -> tuple[OptSummary, Any] | None:
        """A fit started from the centred model's optimum mapped back to these columns
        (``T T' = S T_c T_c' S'``), or None when it fails."""
        start = self._theta_in_centred(centred_theta, far, back=True)
        step = first_step(start, CLOSE_START_STEP)
        try:
            with ignored_warnings():
                return self._optimized(self.devfun(reml), start, options, step, options.threads)
        except (DataError, ArithmeticError, np.linalg.LinAlgError, ValueError):
            return None

    def _optimized(
        self,
        objective: ProfiledDeviance,
        start: np.ndarray,
        options: FitOptions,
        step: np.ndarray | None,
        threads: int | None,
    ) -> tuple[OptSummary, Any]:
        """The optimizer's run from ``start`` and the solution at its theta, checked
        (finite estimates, the criterion reproduced at them)."""
        with objective.blas_threads(threads):
            summary = fit_theta(
                objective, start, self.theta_lower, options, self.nobs, step, self._theta_scale
            )
            solution = _solved(objective, summary.theta)
        check_estimates(solution)
        check_reproduced(summary, solution)
        return summary, solution

    def far_random_positions(self) -> list[list[int]]:
        """Per random term, the positions of its columns far from zero against their
        spread (:func:`~statsmodels_lmer.data_checks.far_columns`), for a term with an
        intercept; from the partitions' moments for a Dask model."""
        if self.partitions is not None:
            return self.partitions.far_columns(self.random_terms)
        return [far_columns(term) for term in self.random_terms]

    def centred_twin(self, theta: Any, reml: bool) -> Any:
        """Results of this model at ``theta``, computed with its far columns centred.

        A term ``(x | g)`` with ``x`` far from zero (``1e4 + N(0, 1)``) is the
        model of ``(x - mean | g)``: ``Z b = Z_c S^-1 b`` with ``S`` the shift of
        those columns by the intercept's, so the same covariances have the
        relative factor ``T_c``, ``T_c T_c' = S^-1 T T' S^-T``. The estimates are
        the same; the derivatives Satterthwaite and Kenward-Roger take in theta
        are well conditioned there and nonsense in the original columns (df 17.7
        and 4.1e7 against 22.6 and 23.7). None when no column is far.
        """
        far = self.far_random_positions()
        if not any(far):
            return None
        shadow = self._centred_shadow_model(far)
        with ignored_warnings():
            return shadow.results_at(self._theta_in_centred(theta, far), reml=reml)

    def _theta_in_centred(self, theta: Any, far: list[list[int]], back: bool = False) -> np.ndarray:
        """``theta`` for the same covariances with the ``far`` columns centred (``S^-1``),
        or, with ``back``, from the centred columns' theta to these (``S``)."""
        theta = np.asarray(theta, dtype=float)
        mapped = theta.copy()
        for index, (term, cols) in enumerate(zip(self.random_terms, far)):
            if cols:
                where = self.theta_slices[index]
                means = self._column_means(index)
                mapped[where] = _centred_theta(term, theta[where], cols, -means if back else means)
        return mapped

    def _centred_shadow_model(self, far: list[list[int]]) -> Lmer:
        """:meth:`_centred_model`, built once (a Dask model's takes a pass over the rows)."""
        shadow = self.__dict__.get("_centred_shadow")
        if shadow is None:
            shadow = self.__dict__["_centred_shadow"] = self._centred_model(far)
        return shadow

    def _column_means(self, index: int) -> np.ndarray:
        """The means of a random term's columns over the rows (as the centring used them)."""
        if self.partitions is not None:
            return np.asarray(self.partitions.term_moments[index].mean, dtype=float)
        return np.asarray(self.random_terms[index].Z, dtype=float).mean(axis=0)

    def _centred_model(self, far: list[list[int]]) -> Lmer:
        """The same model with the given columns of each term centred."""
        if self.partitions is None:
            terms = [_centred_term(term, cols) for term, cols in zip(self.random_terms, far)]
            return Lmer(
                np.asarray(self.endog), np.asarray(self.exog), terms, self.weights, self.offset
            )
        shadow = copy.copy(self)
        for name in ("cross_products", "_theta_scale"):  # cached from the original sums
            shadow.__dict__.pop(name, None)
        shadow.partitions = self.partitions.centred(far)
        return shadow

    def results_at(self, theta: Any, reml: bool = True) -> Any:
        """Results with theta held fixed at the given value (no optimization).

        Parameters
        ----------
        theta : array_like
            Theta in lme4's order (see :attr:`theta_names`).
        reml : bool
            Whether the estimates are the REML (default) or ML ones.

        Returns
        -------
        LmerResultsWrapper
        """
        check_bool("reml", reml)
        theta = _check_theta(theta, self, "theta")
        objective = self.devfun(reml)
        with objective.blas_threads():
            solution = _solved(objective, theta)
        summary = OptSummary.fixed(theta, solution.objective_value)
        return LmerResultsWrapper(LmerResults(self, solution, summary, reml))

    def predict(self, params: Any, exog: Any = None, *args: Any, **kwargs: Any) -> np.ndarray:
        """The fixed part ``exog @ params`` (MixedLM's ``model.predict``: no random effects).

        Parameters
        ----------
        params : array_like
            Fixed effects (or a longer vector whose first ``k_fixed`` values
            are, as MixedLM's ``params``).
        exog : array_like, optional
            Rows of the fixed-effects design; default the model's, with the
            model's offset added (new rows have none: ``res.predict(newdata,
            re_formula="0")`` evaluates their offset). For predictions with
            random effects, from new data by formula, use the results'
            ``predict``.

        Returns
        -------
        ndarray
            One value per row of ``exog``.
        """
        if args or kwargs:
            raise TypeError("model.predict takes params and exog; res.predict(newdata) for more")
        own_rows = exog is None
        exog = self.exog if own_rows else np.atleast_2d(np.asarray(exog, dtype=float))
        if params is None or np.size(params) < exog.shape[1]:
            raise ValueError(
                f"params must have {exog.shape[1]} fixed-effect values "
                f"({', '.join(self.exog_names)}), got {params!r}"
            )
        beta = np.asarray(params, dtype=float).ravel()[: exog.shape[1]]
        fixed = exog @ beta
        if own_rows and self.offset is not None:  # the model's rows: their offset too
            fixed = fixed + np.asarray(self.offset, dtype=float)
        return fixed

    def score(self, params: np.ndarray) -> np.ndarray:
        """Not defined for fixed effects alone (statsmodels' MLE hook)."""
        raise NotImplementedError(_THETA_MESSAGE.format(what="score"))

    def hessian(self, params: np.ndarray) -> np.ndarray:
        """Not defined for fixed effects alone (statsmodels' MLE hook)."""
        raise NotImplementedError(_THETA_MESSAGE.format(what="hessian"))

    def information(self, params: np.ndarray) -> np.ndarray:
        """Not defined for fixed effects alone (statsmodels' MLE hook)."""
        raise NotImplementedError(_THETA_MESSAGE.format(what="information"))

    def loglike(self, params: np.ndarray) -> float:
        """Not defined for fixed effects alone; use the fitted results' ``llf``."""
        raise NotImplementedError(
            "the log-likelihood of an Lmer model is a function of theta; "
            "use model.devfun() or the results' llf"
        )


def _fit_options(kwargs: dict[str, Any], where: str) -> FitOptions:
    """FitOptions from fit keywords; unknown keywords are a TypeError naming them."""
    fit_kwargs, unknown = FitOptions.split(kwargs)
    if unknown:
        known = [*FitOptions.names(), *FIT_ARGUMENTS, "reml"]
        raise mixedlm_keyword_error(where, list(unknown), known)
    return FitOptions(**fit_kwargs)


_MIXEDLM_KEYWORD_HINTS = {
    "free": "for uncorrelated random effects write (x || g) in the formula",
    "start_params": "pass start_theta= (lme4's theta: relative Cholesky factors)",
    "do_cg": "the fit chooses and verifies its optimizer; drop it",
    "use_sqrt": "the fit works on lme4's theta; drop it",
    "full_output": "res.optinfo has what was done; drop it",
    "fit_kwargs": "pass the fit keywords directly (maxiter=, xtol=, ...)",
    "use_sparse": "the engine chooses dense or sparse itself; drop it",
    "exog_vc": "give the variance components by formula: vc_formula= or (1 | g:f) terms",
}
"""MixedLM keywords with no counterpart here, and what to do instead."""


def mixedlm_keyword_error(where: str, unknown: list[str], known: list[str]) -> TypeError:
    """:func:`unknown_keyword_error`, with what to do for MixedLM's own keywords."""
    hinted = [k for k in unknown if k in _MIXEDLM_KEYWORD_HINTS]
    if not hinted:
        return unknown_keyword_error(where, unknown, known)
    parts = [f"{k!r} ({_MIXEDLM_KEYWORD_HINTS[k]})" for k in hinted]
    others = [k for k in unknown if k not in hinted]
    extra = f"; {unknown_keyword_error(where, others, known)}" if others else ""
    return TypeError(f"{where} got MixedLM's keyword {', '.join(parts)}{extra}")


def _refuse_mixedlm_positions(subset: Any, drop_cols: Any, kwargs: dict[str, Any]) -> None:
    """Refuse MixedLM's positional ``re_formula``/``vc_formula`` in statsmodels' slots.

    MixedLM's ``from_formula(formula, data, re_formula, vc_formula)`` has them
    third and fourth; statsmodels' (and ours) ``subset`` and ``drop_cols``: a
    dict in ``drop_cols`` dropped fixed columns instead of adding a component.
    """
    mixedlm = isinstance(drop_cols, dict) or (
        isinstance(subset, str) and ("~" in subset or kwargs.get("groups") is not None)
    )
    if mixedlm:
        raise TypeError(
            "from_formula's third and fourth arguments are statsmodels' subset and "
            "drop_cols, not MixedLM's re_formula and vc_formula: pass those by keyword "
            "(re_formula='~Days', vc_formula={...}, groups=...)"
        )


def _data_name(data: Any) -> str | None:
    """The data set's name when it carries one (``data.attrs["name"]``)."""
    name = getattr(data, "attrs", {}).get("name") if isinstance(data, pd.DataFrame) else None
    return name if isinstance(name, str) else None


def _columns_of(data: Any) -> list[Any]:
    """The column names of ``data`` (a pandas or Dask DataFrame, or a dict of columns)."""
    if isinstance(data, pd.DataFrame | dict):
        return list(data.keys())
    if is_dask_frame(data):
        return list(data.columns)
    raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")


def _drop_columns(exog: pd.DataFrame, drop_cols: Any) -> pd.DataFrame:
    """``exog`` without the ``drop_cols`` columns; unknown names are refused."""
    if drop_cols is None:
        return exog
    names = checked_drop_cols(list(exog.columns), drop_cols)
    return exog.drop(columns=names) if names else exog


@contextmanager
def _out_of_memory_explained() -> Iterator[None]:
    """numpy's ``MemoryError`` or CHOLMOD's out-of-memory error in a fit as an
    :class:`OutOfMemoryError` that says what to do."""
    try:
        yield
    except Exception as err:
        out_of_memory = (
            isinstance(err, MemoryError) or type(err).__name__ == "CholmodOutOfMemoryError"
        )
        if not out_of_memory or isinstance(err, OutOfMemoryError):
            raise
        limit = available_memory()
        room = f" (available now: {format_bytes(limit)})" if limit else ""
        raise OutOfMemoryError(
            f"the fit ran out of memory{room}: {err}. Free memory or use a machine with "
            f"more; setting {MEMORY_VARIABLE} to the memory really available (e.g. under a "
            "limit the package cannot see) lets the engine choose a leaner way or refuse "
            "at once"
        ) from err


def _check_theta(values: Any, model: Lmer, name: str = "start_theta") -> np.ndarray:
    """Theta given by the caller, checked: length, finite, within the bounds."""
    try:
        theta = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, got {values!r}") from None
    if theta.shape != model.theta_start.shape:
        raise ValueError(
            f"{name} must have {model.theta_start.size} values "
            f"({', '.join(model.theta_names)}), got {theta.size}"
        )
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"{name} has non-finite values: {theta.tolist()}")
    if np.any(theta < model.theta_lower):
        raise ValueError(f"{name} has diagonal elements below their lower bound 0")
    return theta


_THETA_MESSAGE = (
    "the {what} of an Lmer model is not a function of the fixed effects alone: the "
    "criterion is profiled over theta; use model.devfun() (and its gradient, "
    "res.optinfo['derivs']) or the results' cov_params()"
)


_FORMULA_SYNTAX = {"C": patsy.builtins.C, "I": patsy.builtins.I, "Q": patsy.builtins.Q}
"""Formula syntax no name of the caller's hides (as R's ``I()``; a column still does)."""


def _capture_env(eval_env: Any, depth: int = 2) -> Any:
    """The caller's namespace, with R's transforms (``scale``) ahead of patsy's built-ins.

    ``C``, ``I`` and ``Q`` are patsy's whatever the caller calls ``C``: a module
    imported as ``C`` made ``C(temp, Poly)`` fail with "'module' object is not
    callable". ``np`` (numpy) is there when the caller has no ``np`` of its own,
    as in the restricted and Dask paths.
    """
    if eval_env is None:
        eval_env = patsy.EvalEnvironment.capture(depth)
    elif isinstance(eval_env, int):
        eval_env = patsy.EvalEnvironment.capture(eval_env + depth)
    if not isinstance(eval_env, patsy.EvalEnvironment):
        return eval_env
    outer = eval_env.with_outer_namespace({"np": np, "numpy": np, **FORMULA_TRANSFORMS})
    return patsy.EvalEnvironment([_FORMULA_SYNTAX, outer.namespace], outer.flags)


def lmer(formula: str, data: pd.DataFrame, REML: bool = True, **kwargs: Any) -> Any:
    """Fit a linear mixed model in one call, as R's ``lme4::lmer``.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame or dask.dataframe.DataFrame
        The data (see :meth:`Lmer.from_formula` for Dask).
    REML : bool
        REML (default) or maximum likelihood.
    **kwargs
        Model keywords (``weights``, ``offset``, ``subset``, ``missing``,
        ``eval_env``, ``drop_cols``, ``restricted``, ``transform_data``, and
        MixedLM's ``groups``, ``re_formula``, ``vc_formula``; see
        :meth:`Lmer.from_formula`) and fit keywords (``method``, ``maxiter``,
        ``start_theta``, ``xtol``, ``ftol``, ``check_conv``, ``cov_type``,
        ``cov_kwds``, ...; see :meth:`Lmer.fit`). ``progress`` goes to both: the fit's
        bar, and Dask's for the passes over a Dask DataFrame. Any other
        keyword is a TypeError.

    Returns
    -------
    LmerResultsWrapper
    """
    check_bool("REML", REML)
    fit_names = {*FitOptions.names(), *FIT_ARGUMENTS}
    known = [*fit_names, *MODEL_KEYWORDS, "REML"]
    unknown = [k for k in kwargs if k not in fit_names and k not in MODEL_KEYWORDS]
    if unknown:
        raise unknown_keyword_error("lmer()", unknown, known)
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_names}
    if "progress" in fit_kwargs:  # the fit's bar, and Dask's for the passes over the data
        kwargs["progress"] = fit_kwargs["progress"]
    if not kwargs.get("restricted", False):
        kwargs["eval_env"] = _capture_env(kwargs.get("eval_env"))
    model = Lmer.from_formula(formula, data, **kwargs)
    return model.fit(reml=REML, **fit_kwargs)


def _solved(objective: ProfiledDeviance, theta: np.ndarray) -> Any:
    """The solution at theta, or a DataError when the model cannot be evaluated there."""
    try:
        return objective.solve(theta)
    except np.linalg.LinAlgError:
        raise DataError(
            "the penalized system cannot be factored at theta (largest |theta| "
            f"{np.max(np.abs(theta)):.3g}): the criterion probably decreases without "
            "bound, as when the random effects cannot be told apart from each other or "
            "from the residual; simplify the random-effects terms"
        ) from None


def _centred_theta(
    term: RandomTerm, theta_part: np.ndarray, columns: list[int], means: np.ndarray
) -> np.ndarray:
    """A term's theta for the same covariance with ``columns`` centred (see ``centred_twin``).

    ``S^-1`` adds each centred column's mean times its row to the intercept's row;
    ``T_c`` is the lower factor of ``(S^-1 T)(S^-1 T)'`` from a QR (singular ``T`` too),
    with a nonnegative diagonal as lme4's theta.
    """
    p = term.n_cols
    inverse_shift = np.eye(p)
    intercept = list(term.column_names).index("Intercept")
    inverse_shift[intercept, columns] = means[columns]
    upper = np.linalg.qr((inverse_shift @ term.factor(theta_part)).T, mode="r")
    lower = upper.T * np.where(np.diagonal(upper) < 0, -1.0, 1.0)[None, :]
    return lower[tril_colmajor(p)]


def _centred_term(term: RandomTerm, columns: list[int]) -> RandomTerm:
    """``term`` with the given columns centred (the same model when it has an intercept)."""
    if not columns:
        return term
    Z = np.array(term.Z, dtype=float)
    Z[:, columns] -= Z[:, columns].mean(axis=0)
    return dataclasses.replace(term, Z=Z)


def _checked_random_terms(random_terms: Any) -> list[RandomTerm]:
    """The model's random terms, or a TypeError for MixedLM's array call."""
    terms = list(random_terms) if isinstance(random_terms, list | tuple) else None
    if terms is None or not all(isinstance(term, RandomTerm) for term in terms):
        raise TypeError(
            "Lmer(endog, exog, random_terms) takes a list of RandomTerm; " + MIXEDLM_ARRAY_CALL
        )
    return terms


def mixedlm(
    formula: str,
    data: pd.DataFrame,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    subset: Any = None,
    *args: Any,
    **kwargs: Any,
) -> Lmer:
    """An :class:`Lmer` model from statsmodels MixedLM's arguments, as ``smf.mixedlm``.

    ``sml.mixedlm(formula, data, groups=..., re_formula=..., vc_formula=...)``
    builds the model that ``statsmodels.formula.api.mixedlm`` describes,
    written as lme4 terms:

    * random coefficients ``re_formula`` per group: ``(re | groups)`` (a
      random intercept when neither ``re_formula`` nor ``vc_formula`` is
      given);
    * each variance component ``{"name": "0 + C(f)"}``: ``(1 | groups:f)``, a
      random effect per level of ``f`` within each group with one variance;
      ``{"name": "0 + x"}`` (numeric ``x``): ``(0 + x | groups)``;
    * with a constant ``groups`` (MixedLM's idiom for crossed effects) the
      components are ``(1 | f)``: ``(1 | a) + (1 | b)`` for two factors.

    Parameters
    ----------
    formula : str
        The fixed-effects formula (``"Weight ~ Time"``).
    data : pandas.DataFrame
        The data; not modified.
    re_formula : str, optional
        Random coefficients per group (``"~Time"``).
    vc_formula : dict of str, optional
        Variance components (``{"Litter": "0 + C(Litter)"}``).
    subset : array_like, optional
        Rows to use.
    **kwargs
        ``groups`` (required: a column name or one value per row) and the
        other keywords of :meth:`Lmer.from_formula` (``weights``,
        ``offset``, ``missing``, ...).

    Returns
    -------
    Lmer
        Fit with ``.fit()`` (REML by default, as MixedLM). The results carry
        MixedLM's names (``fe_params``, ``cov_re``, ``vcomp``,
        ``random_effects``, ``bse_fe``, ``bse_re``, ...) besides lme4's.
    """
    if args:
        raise TypeError("mixedlm() takes keyword arguments only after subset")
    if kwargs.get("groups") is None:
        raise TypeError("mixedlm() needs groups= (a column name or one value per row)")
    if not kwargs.get("restricted", False):
        kwargs["eval_env"] = _capture_env(kwargs.get("eval_env"))
    return Lmer.from_formula(
        formula, data, subset=subset, re_formula=re_formula, vc_formula=vc_formula, **kwargs
    )


class MixedLM:
    """statsmodels' ``MixedLM`` for its code with the import swapped.

    ``MixedLM.from_formula(formula, data, re_formula=, vc_formula=, groups=)``
    is :func:`mixedlm`: the model MixedLM describes, written as lme4 terms, an
    :class:`Lmer`. The array call ``MixedLM(endog, exog, groups, exog_re)``
    raises a TypeError saying what to write instead.
    """

    from_formula = staticmethod(mixedlm)

    def __new__(cls, *args: Any, **kwargs: Any) -> MixedLM:
        raise TypeError("sml.MixedLM(...) has no array form here; " + MIXEDLM_ARRAY_CALL)
