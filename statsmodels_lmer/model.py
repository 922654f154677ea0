"""``Lmer``: the linear mixed model as a statsmodels ``LikelihoodModel``."""

from __future__ import annotations

import inspect
import itertools
import warnings
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import patsy
from statsmodels.base.model import LikelihoodModel

from .blocks import CrossProducts, build_cross_products, engine_order
from .convergence import GRAD_TOL, HESS_TOL, SINGULAR_MESSAGE, check_conv, deriv12
from .exceptions import LmerConvergenceWarning, SingularFitWarning
from .formula import parse_formula
from .frame import build_model_frame
from .objective import ProfiledDeviance
from .optimizers import OptimizerResult, optimize_lmer, polish_theta
from .terms import RandomTerm

__all__ = ["Lmer", "lmer"]

NOBS_MAX_DERIVS = 10_000
"""Above this many observations the convergence derivatives are skipped by default."""


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
        Known offset added to the linear predictor.
    **kwargs
        Passed to statsmodels' ``Model`` (``missing``, ``formula``, ...).
    """

    def __init__(
        self,
        endog: Any,
        exog: Any,
        random_terms: list[RandomTerm],
        weights: Any = None,
        offset: Any = None,
        **kwargs: Any,
    ) -> None:
        self.random_terms = list(random_terms)
        self.n_dropped = kwargs.pop("n_dropped", 0)
        self.dropped_columns = kwargs.pop("dropped_columns", [])
        self.lmer_formula = kwargs.pop("lmer_formula", None)
        super().__init__(endog, exog, **kwargs)
        n = len(self.endog)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.offset = None if offset is None else np.asarray(offset, dtype=float)
        for term in self.random_terms:
            if len(term.codes) != n:
                raise ValueError(
                    f"random term {term.label!r} has {len(term.codes)} rows, endog has {n}"
                )
        self._engine = engine_order(self.random_terms)
        starts = np.cumsum([0] + [t.n_theta for t in self.random_terms])
        self.theta_slices = [slice(a, b) for a, b in itertools.pairwise(starts)]
        self.nobs = float(n)
        self.k_fixed = self.exog.shape[1]

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
        data : pandas.DataFrame
            The data; never modified.
        subset : array_like, optional
            Rows to use (anything ``data.loc`` accepts).
        drop_cols : list of str, optional
            Fixed-effects columns to drop from the model matrix.
        weights, offset : array_like or str, optional
            Prior weights / offset, as arrays or column names.
        missing : {"drop", "raise"}
            Rows with a missing value in a used column are dropped (and
            counted) or refused.
        eval_env : int or patsy.EvalEnvironment, optional
            Where patsy looks up names that are not columns.

        Returns
        -------
        Lmer
        """
        if args:
            raise TypeError("from_formula takes keyword arguments only after drop_cols")
        eval_env = _capture_env(kwargs.pop("eval_env", None))
        parsed = parse_formula(formula)
        mf = build_model_frame(
            parsed,
            data,
            weights=kwargs.pop("weights", None),
            offset=kwargs.pop("offset", None),
            subset=subset,
            missing=kwargs.pop("missing", "drop"),
            eval_env=eval_env,
        )
        exog = mf.exog
        if drop_cols:
            exog = exog.drop(columns=list(drop_cols))
        model = cls(
            mf.endog,
            exog,
            mf.terms,
            weights=mf.weights,
            offset=mf.offset,
            formula=parsed.fixed,
            model_spec=mf.design_info,
            n_dropped=mf.n_dropped,
            dropped_columns=mf.dropped_columns,
            lmer_formula=formula,
            **kwargs,
        )
        model.formula = formula
        model.data.frame = mf.frame
        return model

    # -- pickling ------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # patsy's DesignInfo does not pickle, and statsmodels would rebuild it
        # from a formula that has bar terms; drop it and rebuild on load.
        state = self.__dict__.copy()
        state.pop("_cross", None)  # cross-products are rebuilt when needed
        data = object.__new__(type(self.data))
        data.__dict__.update({k: v for k, v in self.data.__dict__.items() if k != "model_spec"})
        state["data"] = data
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        frame = getattr(self.data, "frame", None)
        fixed = getattr(self.data, "formula", None)
        if frame is not None and fixed:
            env = patsy.EvalEnvironment([{"np": np, "numpy": np}])
            try:
                design = patsy.dmatrix(fixed.split("~", 1)[1], frame, eval_env=env)
                self.data.model_spec = design.design_info
            except Exception:
                self.data.model_spec = None

    # -- engine --------------------------------------------------------
    @cached_property
    def _cross(self) -> CrossProducts:
        terms = [self.random_terms[i] for i in self._engine]
        y = np.asarray(self.endog, dtype=float)
        if self.offset is not None:
            y = y - self.offset
        X = np.asarray(self.exog, dtype=float)
        return build_cross_products(terms, X, y, self.weights)

    def devfun(self, reml: bool = True) -> ProfiledDeviance:
        """The objective of theta, as lme4's ``devFunOnly = TRUE``.

        Parameters
        ----------
        reml : bool
            REML criterion (default) or ML deviance.

        Returns
        -------
        ProfiledDeviance
            A callable ``f(theta) -> float`` with theta in lme4's order.
        """
        terms = [self.random_terms[i] for i in self._engine]
        slices = [self.theta_slices[i] for i in self._engine]
        return ProfiledDeviance(self._cross, terms, slices, reml)

    @property
    def theta_lower(self) -> np.ndarray:
        """Lower bounds of theta (0 on diagonals, -inf elsewhere)."""
        return np.concatenate([t.theta_lower() for t in self.random_terms])

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's starting theta."""
        return np.concatenate([t.theta_start() for t in self.random_terms])

    @cached_property
    def initial_theta(self) -> np.ndarray:
        """The theta a fit starts from by default, as lme4 chooses it.

        When every term is a random intercept on a factor of its own, lme4
        starts from ``sqrt(v / v_e)`` with ``v`` the variance of each factor's
        group means of ``y`` and ``v_e = var(y) - sum(v)`` (when that is
        positive and every ratio is at least 1e-10); otherwise from
        :attr:`theta_start` (1 on diagonals, 0 elsewhere).
        """
        terms = self.random_terms
        groups = [t.group for t in terms]
        if any(t.n_cols != 1 or t.column_names != ("Intercept",) for t in terms) or len(
            set(groups)
        ) != len(groups):
            return self.theta_start
        y = np.asarray(self.endog, dtype=float)
        group_vars = []
        for term in terms:
            means = np.bincount(term.codes, y) / np.bincount(term.codes)
            group_vars.append(np.var(means[term.codes], ddof=1))
        residual_var = np.var(y, ddof=1) - sum(group_vars)
        if not residual_var > 0:
            return self.theta_start
        ratios = np.asarray(group_vars) / residual_var
        if np.any(ratios < 1e-10) or not np.all(np.isfinite(ratios)):
            return self.theta_start
        return np.sqrt(ratios)

    @property
    def theta_names(self) -> list[str]:
        """Names of the theta elements."""
        return [name for t in self.random_terms for name in t.theta_names()]

    def fit(
        self,
        reml: bool = True,
        method: str | None = None,
        maxiter: int | None = None,
        start_theta: Any = None,
        xtol: float = 1e-8,
        ftol: float = 1e-8,
        check_conv: bool = True,
        calc_derivs: bool | None = None,
        polish: bool | None = None,
        boundary_tol: float = 1e-5,
        restart_edge: bool = True,
        grad_tol: float = GRAD_TOL,
        hess_tol: float = HESS_TOL,
        **kwargs: Any,
    ) -> Any:
        """Fit by REML (default) or maximum likelihood.

        The keywords mirror lme4's ``lmerControl``; the defaults are lme4's.

        Parameters
        ----------
        reml : bool
            REML (default, as lme4) or ML.
        method : str, optional
            Optimizer name (see :func:`statsmodels_lmer.optimizers.available_optimizers`);
            default BOBYQA when nlopt is installed (lme4's ``optimizer``).
        maxiter : int, optional
            Limit on objective evaluations (lme4's ``maxfun``/``maxeval``; 100000).
        start_theta : array_like, optional
            Starting theta (lme4's ``start``); default :attr:`initial_theta`,
            lme4's choice (from the variances of group means when every term
            is a random intercept, else 1 on diagonals and 0 off).
        xtol, ftol : float
            Absolute tolerances on theta and the objective (lme4: 1e-8 each).
        check_conv : bool
            Run lme4's convergence checks (``checkConv``) and warn: a
            :class:`~statsmodels_lmer.exceptions.SingularFitWarning` for a
            boundary fit, a
            :class:`~statsmodels_lmer.exceptions.LmerConvergenceWarning` for a
            large scaled gradient or a bad Hessian. See docs/checks.md.
        calc_derivs : bool, optional
            Compute the finite-difference gradient and Hessian at the optimum
            (lme4's ``calc.derivs``; ``2 k^2`` extra evaluations for ``k``
            theta elements). Without them only the singular-fit check runs.
            Default: on up to 10,000 observations and off above, as newer lme4
            releases do (``check.conv.nobsmax = 1e4``); pass True to force.
        polish : bool, optional
            After BOBYQA, a second short run from the estimate with a small
            first step, kept only if it lowers the objective (6-20 more
            evaluations). Default: on where the derivative checks are off
            (above 10,000 observations), where it plays their part of making
            sure the optimizer did not stop early.
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

        Returns
        -------
        LmerResultsWrapper
            ``converged`` is False when the optimizer reported failure or a
            convergence check failed. ``optinfo`` holds ``derivs``
            (``gradient``, ``Hessian``), ``conv`` (lme4's ``code``,
            ``messages``, ``max_grad``, ...), ``warnings`` (the texts of the
            warnings emitted), ``start`` and ``control`` (the fit keywords).
        """
        from .results import LmerResults, LmerResultsWrapper

        if kwargs:
            raise TypeError(f"fit() got unexpected keywords {sorted(kwargs)}")
        start = self.initial_theta if start_theta is None else _check_start(start_theta, self)
        if calc_derivs is None:
            calc_derivs = self.nobs <= NOBS_MAX_DERIVS
        if polish is None:
            polish = not calc_derivs
        objective = self.devfun(reml)
        result = optimize_lmer(
            objective,
            start,
            self.theta_lower,
            method,
            maxiter,
            xtol,
            ftol,
            restart_edge=restart_edge,
            boundary_tol=boundary_tol,
            polish=polish,
        )
        derivs = None
        if calc_derivs:
            derivs = deriv12(objective, result.theta, fx=result.fun)
            if check_conv and not polish:
                control_args = {"maxiter": maxiter, "xtol": xtol, "ftol": ftol}
                derivs = _polish_if_gradient_fails(
                    objective, result, derivs, self.theta_lower, grad_tol, control_args
                )
        solution = objective.solve(result.theta)
        res = LmerResults(self, solution, result, reml)
        control = {
            "maxiter": maxiter,
            "xtol": xtol,
            "ftol": ftol,
            "check_conv": check_conv,
            "calc_derivs": calc_derivs,
            "boundary_tol": boundary_tol,
            "restart_edge": restart_edge,
            "polish": polish,
            "grad_tol": grad_tol,
            "hess_tol": hess_tol,
        }
        _record_checks(res, result, derivs, start, control)
        return LmerResultsWrapper(res)

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
        from .results import LmerResults, LmerResultsWrapper

        theta = _check_start(theta, self)
        objective = self.devfun(reml)
        solution = objective.solve(theta)
        fixed = OptimizerResult(
            theta, solution.objective_value, 0, "fixed", "theta held fixed", True
        )
        return LmerResultsWrapper(LmerResults(self, solution, fixed, reml))

    def loglike(self, params: np.ndarray) -> float:
        """Not defined for fixed effects alone; use the fitted results' ``llf``."""
        raise NotImplementedError(
            "the log-likelihood of an Lmer model is a function of theta; "
            "use model.devfun() or the results' llf"
        )


def _polish_if_gradient_fails(
    objective: ProfiledDeviance,
    result: OptimizerResult,
    derivs: dict[str, np.ndarray],
    lower: np.ndarray,
    grad_tol: float,
    control_args: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Polish the estimate when the scaled gradient check would fail.

    BOBYQA sometimes stops on ``ftol_abs`` short of the optimum; a second
    short run (see :func:`~statsmodels_lmer.optimizers.polish_theta`) usually
    reaches it, and only then are the checks (and their warnings) recorded.
    Returns the derivatives at the final estimate (recomputed only if it moved).
    """
    conv = check_conv(derivs, result.theta, lower, grad_tol=grad_tol)
    if conv.singular or conv.max_grad is None or conv.max_grad < grad_tol:
        return derivs
    result.n_evaluations += polish_theta(objective, result, lower, **control_args)
    if not result.polished:
        return derivs
    return deriv12(objective, result.theta, fx=result.fun)


def _record_checks(
    res: Any,
    result: OptimizerResult,
    derivs: dict[str, np.ndarray] | None,
    start: np.ndarray,
    control: dict[str, Any],
) -> None:
    """Derivatives, lme4's convergence checks and warnings, into ``res.optinfo``."""
    info = res.optinfo
    info["start"] = np.asarray(start, dtype=float).copy()
    info["control"] = dict(control)
    info["restarted"] = result.restarted
    info["polished"] = result.polished
    info["boundary_snapped"] = list(result.boundary_snapped)
    emitted: list[tuple[str, type[Warning]]] = []
    if not result.success:
        emitted.append(
            (
                f"optimizer {result.method} did not converge: {result.message}",
                LmerConvergenceWarning,
            )
        )
    info["derivs"] = derivs
    conv = None
    if control["check_conv"]:
        conv = check_conv(
            derivs,
            result.theta,
            res.model.theta_lower,
            grad_tol=control["grad_tol"],
            hess_tol=control["hess_tol"],
        )
        if conv.singular:
            emitted.append((SINGULAR_MESSAGE, SingularFitWarning))
        emitted.extend((text, LmerConvergenceWarning) for text in conv.warnings)
    info["conv"] = None if conv is None else conv.as_dict()
    info["warnings"] = [text for text, _ in emitted]
    res.converged = bool(result.success) and not (conv is not None and conv.failed)
    for text, category in emitted:
        warnings.warn(text, category, stacklevel=3)


def _check_start(start: Any, model: Lmer) -> np.ndarray:
    values = np.asarray(start, dtype=float).ravel()
    if values.shape != model.theta_start.shape:
        raise ValueError(
            f"theta must have {model.theta_start.size} values "
            f"({', '.join(model.theta_names)}), got {values.size}"
        )
    if np.any(values < model.theta_lower):
        raise ValueError("theta has diagonal elements below their lower bound 0")
    return values


def _capture_env(eval_env: Any, depth: int = 2) -> Any:
    if eval_env is None:
        return patsy.EvalEnvironment.capture(depth)
    if isinstance(eval_env, int):
        return patsy.EvalEnvironment.capture(eval_env + depth)
    return eval_env


def lmer(formula: str, data: pd.DataFrame, REML: bool = True, **kwargs: Any) -> Any:
    """Fit a linear mixed model in one call, as R's ``lme4::lmer``.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame
        The data.
    REML : bool
        REML (default) or maximum likelihood.
    **kwargs
        Model keywords (``weights``, ``offset``, ``subset``, ``missing``)
        and fit keywords (``method``, ``maxiter``, ``start_theta``, ``xtol``,
        ``ftol``, ``check_conv``, ...; see :meth:`Lmer.fit`).

    Returns
    -------
    LmerResultsWrapper
    """
    fit_keys = set(inspect.signature(Lmer.fit).parameters) - {"self", "reml", "kwargs"}
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    kwargs.setdefault("eval_env", _capture_env(kwargs.pop("eval_env", None)))
    model = Lmer.from_formula(formula, data, **kwargs)
    return model.fit(reml=REML, **fit_kwargs)
