"""``LmerResults``: a fitted linear mixed model inside statsmodels' results classes.

``params`` are the fixed effects; ``cov_params()`` is ``sigma^2 (R_X' R_X)^-1``
as lme4's ``vcov``. Variance parameters (theta, sigma, ``varcorr``) and the
conditional modes of the random effects are attributes of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import statsmodels.base.wrapper as wrap
from scipy import stats
from statsmodels.base.model import LikelihoodModelResults, LikelihoodResultsWrapper
from statsmodels.stats.contrast import ContrastResults
from statsmodels.tools.sm_exceptions import ValueWarning

from .arguments import (
    check_alpha,
    check_bool,
    check_nonnegative,
    check_positions,
    check_positive,
)
from .cached import cached_property
from .engine.objective import Solution
from .exceptions import warn
from .fitting.fit import OptSummary, uses_gradient
from .fitting.options import CLOSE_START_STEP, FitOptions, unknown_keyword_error
from .formula import update_formula
from .inference.contrast_results import LmerContrastResults
from .inference.exact_lrt import ExactLRTResult, exact_lrt, exact_rlrt
from .inference.hypotheses import (
    anova_table,
    coef_table,
    contrast_test,
    parse_constraints,
    refuse_null_contrast,
    t_tests,
    warn_rank_deficient,
)
from .inference.kenward_roger import KenwardRoger
from .inference.ls_means import ls_means_table
from .inference.robust import ClusterRobust, robust_from_options
from .inference.satterthwaite import Satterthwaite
from .intervals.bootstrap import BootstrapResult, bootstrap
from .intervals.confint import confint
from .intervals.profile import ProfileResult, profile
from .parametrization import cov_to_sdcor
from .random_effects import ranef_frames, ranef_long_table, term_contribution
from .summary import lmer_print, lmer_repr, lmer_summary, lmer_summary2
from .tools import allfit as allfit_tool
from .tools import (
    compare,
    diagnostics,
    mixedlm_names,
    multilevel,
    panel,
    predict,
    prediction,
    simulate,
)
from .tools import pbmodcomp as pbmodcomp_tool
from .tools import step as step_tool
from .tools.influence import InfluenceResult, influence
from .tools.pbmodcomp import PBModComp
from .tools.step import StepResult

__all__ = ["LmerResults", "LmerResultsWrapper"]


class LmerResults(LikelihoodModelResults):
    """Results of :meth:`statsmodels_lmer.Lmer.fit`.

    Parameters
    ----------
    model : Lmer
        The fitted model.
    solution : Solution
        Estimates at the optimal theta.
    opt_summary : OptSummary
        What the fit of theta did and found.
    reml : bool
        Whether the fit was by REML.
    robust : ClusterRobust, optional
        A cluster-robust covariance used for ``cov_params``, standard errors
        and tests instead of the model-based one (see
        :meth:`get_robustcov_results`).

    Notes
    -----
    ``tvalues``, ``pvalues``, ``conf_int`` and the summary use Satterthwaite's
    denominator degrees of freedom per coefficient (``ddf``, as lmerTest);
    ``t_test``, ``f_test`` and ``wald_test`` compute them for each contrast and
    take ``ddf="kenward-roger"`` or ``ddf="residual"`` (``n - p``) instead.
    ``df_resid`` is lme4's ``n - npar``.
    """

    def __init__(
        self,
        model: Any,
        solution: Solution,
        opt_summary: OptSummary,
        reml: bool,
        robust: ClusterRobust | None = None,
    ):
        super().__init__(
            model,
            solution.beta,
            normalized_cov_params=solution.vcov_unscaled,
            scale=solution.sigma**2,
            use_t=True,
        )
        self.reml = bool(reml)
        self._solution = solution
        self.theta = solution.theta.copy()
        self.sigma = solution.sigma
        self.nobs = int(model.nobs)
        self.k_fixed = len(solution.beta)
        self.n_params = self.k_fixed + len(self.theta) + 1
        self.df_resid = float(self.nobs - self.n_params)
        self.df_resid_inference = float(self.nobs - self.k_fixed)
        self.df_model = float(self.k_fixed - model.k_constant)
        self.opt_summary = opt_summary
        self.converged = opt_summary.converged
        self.robust = robust
        if robust is None:
            self.cov_type = "nonrobust"
            self.cov_kwds = {"description": "model-based covariance (lme4's vcov)"}
        else:
            self.cov_type = "cluster"
            self.cov_kwds = {
                "groups": robust.cluster_name,
                "type": robust.type,
                "n_groups": robust.n_clusters,
                "description": robust.description,
            }
            self.cov_params_default = robust.cov

    def blas_threads(self) -> AbstractContextManager[None]:
        """A context limiting BLAS threads as the fit did (its ``threads=`` setting)."""
        return self.model.devfun(self.reml).blas_threads(self.opt_summary.options.threads)

    @property
    def optinfo(self) -> dict[str, Any]:
        """What the fit did, as lme4's ``optinfo`` (see :class:`OptSummary`)."""
        return self.opt_summary.as_optinfo()

    # -- pickling -------------------------------------------------------
    # Row- and level-sized values recomputed cheaply on demand: not pickled, so
    # that a pickle stays the size of a fresh fit's whatever was computed. The
    # Satterthwaite and Kenward-Roger pieces are kept: small, and costly to redo.
    _NOT_PICKLED = (
        "_cache",
        "fittedvalues",
        "fittedvalues_marginal",
        "resid",
        "ranef",
        "varcorr",
        "conditional_covariances",
    )

    def __getstate__(self) -> dict[str, Any]:
        # The solution holds the factor and the cross-products (tens of MB for
        # large models); it is recomputed from theta on load, unless the data
        # were removed (remove_data(), save(remove_data=True)): then it is kept.
        state = {k: v for k, v in self.__dict__.items() if k not in self._NOT_PICKLED}
        if not self._data_removed():
            state["_solution"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = {}
        if self._solution is None:
            self._solution = self.model.devfun(self.reml).solve(self.theta)

    def remove_data(self) -> None:
        """statsmodels' ``remove_data``, after computing the Satterthwaite df.

        ``summary()``, ``pvalues``, ``conf_int()`` and the t and F tests need
        them, and they cannot be computed without the rows (statsmodels asks
        for ``summary()`` before ``remove_data()``; here that is done for you).
        Computations that need the rows afterwards raise a ``DataError``.
        """
        if not self._data_removed() and self.model.partitions is None:
            self.ddf  # noqa: B018 - computes and keeps the Satterthwaite pieces
        super().remove_data()

    def _data_removed(self) -> bool:
        """Whether ``remove_data()`` took the model's arrays (the solution cannot be redone)."""
        return getattr(self.model, "exog", None) is None and self.model.partitions is None

    # -- likelihood summaries -------------------------------------------
    @property
    def reml_criterion(self) -> float:
        """REML criterion at the estimates (``REMLcrit``)."""
        return self._solution.reml_criterion

    @property
    def deviance(self) -> float:
        """ML deviance at the estimates (``deviance(m, REML = FALSE)``)."""
        return self._solution.deviance_ml

    @property
    def objective(self) -> float:
        """The optimized criterion: REML criterion or ML deviance."""
        return self._solution.objective_value

    @cached_property
    def llf(self) -> float:
        """Log-likelihood; the REML log-likelihood for REML fits, as lme4."""
        return -0.5 * self.objective

    @cached_property
    def aic(self) -> float:
        """Akaike information criterion with ``p + len(theta) + 1`` parameters."""
        return -2.0 * self.llf + 2.0 * self.n_params

    @cached_property
    def bic(self) -> float:
        """Bayesian information criterion as lme4."""
        return -2.0 * self.llf + np.log(self.nobs) * self.n_params

    # -- fixed effects --------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates as a named Series."""
        return pd.Series(self.params, index=self.model.exog_names, name="fixef")

    # -- inference -------------------------------------------------------
    @cached_property
    def satterthwaite(self) -> Satterthwaite:
        """lmerTest's Satterthwaite machinery for this fit (computed when first needed).

        Holds the Hessian of the deviance in ``(theta, sigma)``, the
        asymptotic covariance of those parameters (``vcov_varpar``) and the
        Jacobian of ``vcov(beta)``. With random-effects columns far from zero,
        taken in the centred columns' theta (:meth:`Lmer.centred_twin`).
        """
        with self.blas_threads():
            return Satterthwaite(self._derivative_source())

    def _derivative_source(self) -> Any:
        """These results, or the same point in centred random-effects columns
        (:meth:`Lmer.centred_twin`) when some column is far from zero."""
        twin = self.model.centred_twin(self.theta, self.reml)
        return self if twin is None else twin

    @cached_property
    def kenward_roger(self) -> KenwardRoger:
        """pbkrtest's Kenward-Roger machinery for this (REML) fit, when first needed.

        Holds the adjusted covariance ``vcov_adjusted`` and the covariance of
        the variance parameters (in the centred columns' theta, as
        :attr:`satterthwaite`).
        """
        with self.blas_threads():
            return KenwardRoger(self._derivative_source())

    @cached_property
    def ddf(self) -> np.ndarray:
        """Satterthwaite denominator df of each coefficient.

        lmerTest's for the model-based covariance; clubSandwich's for a
        cluster-robust one.
        """
        if self.robust is not None:
            return self.robust.coefficient_df()
        return self.satterthwaite.coefficient_df()

    def get_robustcov_results(
        self, cov_type: str = "cluster", use_t: Any = None, **kwds: Any
    ) -> Any:
        """These results with a cluster-robust covariance of the fixed effects.

        statsmodels' method: ``cov_params``, ``bse``, ``tvalues``,
        ``pvalues``, ``conf_int``, ``t_test``, ``f_test``, ``anova`` and the
        summary then use the robust covariance, with clubSandwich's
        small-sample tests (Satterthwaite df for one contrast, the HTZ
        Hotelling T^2 approximation for several).

        Parameters
        ----------
        cov_type : {"cluster", "CR2", "CR1", "CR1S", "CR1J", "CR0", "nonrobust"}
            ``"cluster"`` with ``type=`` (default ``"CR2"``), or the type
            directly. CR2 is Bell and McCaffrey's bias-reduced linearization
            with the fitted model as working covariance (clubSandwich's
            default for lme4 fits); CR1 and CR1S scale CR0 by Stata's
            ``J (N - 1) / ((J - 1)(N - p))`` (clubSandwich's CR1S), CR1J by
            ``J / (J - 1)`` (clubSandwich's CR1).
        use_t : None
            Kept for statsmodels' signature; tests always use t and F.
        groups : str or array_like, optional
            The clusters: a column of the fitted data or one value per
            fitted row; default the grouping factor with the fewest levels.
            Every grouping factor of the model must be nested in them.
        type : str, optional
            With ``cov_type="cluster"``: one of CR2, CR1S, CR1, CR0.

        Returns
        -------
        LmerResultsWrapper
            New results; ``cov_type``, ``cov_kwds`` and ``robust`` say
            which covariance they use.
        """
        self.model.require_data("Cluster-robust covariances")
        if use_t is False:
            raise ValueError("cluster-robust tests use t and F distributions; use_t must be None")
        robust = robust_from_options(self, cov_type, kwds)
        new = LmerResults(self.model, self._solution, self.opt_summary, self.reml, robust)
        return LmerResultsWrapper(new)

    @cached_property
    def pvalues(self) -> np.ndarray:
        """Two-sided p-values from t distributions with Satterthwaite df."""
        return 2 * stats.t.sf(np.abs(np.asarray(self.tvalues)), self.ddf)

    def conf_int(self, alpha: float = 0.05, cols: Any = None) -> np.ndarray:
        """Confidence intervals for the fixed effects with Satterthwaite t quantiles.

        statsmodels' method: fixed effects only, ``coef -+ t(ddf) * SE``. For
        lme4's intervals, variance parameters included (profile, Wald or
        bootstrap), see :meth:`confint`.

        Parameters
        ----------
        alpha : float
            1 - coverage.
        cols : array_like of int or str, optional
            Coefficients to return, by position or by name (``["Days"]``).

        Returns
        -------
        ndarray, shape (p, 2)
        """
        check_alpha(alpha)
        quantile = stats.t.ppf(1 - alpha / 2, self.ddf)
        params, bse = np.asarray(self.params), np.asarray(self.bse)
        ci = np.column_stack([params - quantile * bse, params + quantile * bse])
        return ci if cols is None else ci[self._coefficient_positions(cols)]

    def _coefficient_positions(self, cols: Any) -> np.ndarray:
        """Positions of coefficients given by position or name; KeyError/IndexError naming them."""
        names = list(self.model.exog_names)
        if isinstance(cols, str | int | np.integer):
            cols = [cols]
        if isinstance(cols, dict | slice) or not isinstance(cols, Iterable):
            raise TypeError(f"cols must be coefficient names or positions (a list), got {cols!r}")
        positions = []
        for item in cols:
            if isinstance(item, str):
                if item not in names:
                    raise KeyError(f"no coefficient {item!r}; the coefficients are {names}")
                positions.append(names.index(item))
            else:
                positions.extend(check_positions("cols", [item], len(names)))
        return np.asarray(positions, dtype=int)

    def t_test(
        self, r_matrix: Any, cov_p: Any = None, use_t: Any = None, ddf: str = "satterthwaite"
    ) -> LmerContrastResults:
        """t tests of each row of a linear hypothesis, with per-contrast df.

        Parameters
        ----------
        r_matrix : str, list of str, array_like or tuple (L, q)
            The hypothesis, as statsmodels reads it (``"Days = 10"``,
            ``"Days = 10, Intercept = 250"``).
        cov_p
            Not supported (kept for statsmodels' signature); must be None.
        use_t : bool, optional
            None or True: t tests with ``ddf``'s df; False: statsmodels' z
            tests (normal distribution, as MixedLM reports).
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            Denominator df method (lmerTest's contest1D; pbkrtest; ``n - p``).

        Returns
        -------
        LmerContrastResults
            statsmodels' ``ContrastResults`` with one df per row:
            ``df_denom`` (a float for one row), ``summary()``,
            ``summary_frame()`` (with a ``df`` column) and ``conf_int()``.
            With ``use_t=False``, statsmodels' ``ContrastResults`` of z tests.
        """
        _no_override(cov_p)
        if use_t is not None and not check_bool("use_t", use_t):
            return super().t_test(r_matrix, use_t=False)
        return t_tests(self, r_matrix, ddf)

    def t_test_pairwise(self, term_name: str, *args: Any, **kwargs: Any) -> Any:
        """statsmodels' pairwise t tests of the levels of one categorical fixed term.

        ``term_name`` is the term as the fixed part names it (``"f"``, or
        ``"C(f, Treatment('b'))"``, as in ``anova()``'s index). The tests are
        statsmodels' (its ``method`` adjustments) on :meth:`t_test`'s
        Satterthwaite df.

        Parameters
        ----------
        term_name : str
            The categorical fixed term.
        *args, **kwargs
            statsmodels' ``t_test_pairwise`` arguments (``method``, ``alpha``,
            ``factor_labels``, ...).

        Raises
        ------
        KeyError
            No fixed term of that name.
        ValueError
            The term is not a single categorical factor.
        """
        design = getattr(self.model.data, "model_spec", None)
        if design is None:
            raise ValueError("t_test_pairwise needs the fixed part's design; this model has none")
        names = list(design.term_names)
        if term_name not in names:
            raise KeyError(
                f"no fixed-effects term {term_name!r}; the terms are {names} "
                "(a factor f is the term 'f', written as in the formula)"
            )
        term = design.terms[names.index(term_name)]
        infos = [design.factor_infos[factor] for factor in term.factors]
        if len(infos) != 1 or infos[0].type != "categorical":
            kind = "an interaction" if len(infos) > 1 else "numeric"
            raise ValueError(
                "t_test_pairwise compares the levels of one categorical factor; "
                f"{term_name!r} is {kind}"
            )
        if "alpha" in kwargs:
            kwargs["alpha"] = check_alpha(kwargs["alpha"])
        return super().t_test_pairwise(term_name, *args, **kwargs)

    def wald_test_terms(
        self,
        skip_single: bool = False,
        extra_constraints: Any = None,
        combine_terms: Any = None,
        scalar: bool = True,
    ) -> Any:
        """statsmodels' joint tests of each fixed-effect term, on :meth:`wald_test`'s F tests.

        Parameters
        ----------
        skip_single, extra_constraints, scalar
            statsmodels' arguments.
        combine_terms : list of str, optional
            Term names (or parts of them): the terms whose names contain one
            are also tested jointly. Each must match a term.
        """
        if combine_terms is not None:
            if isinstance(combine_terms, str) or not isinstance(combine_terms, Iterable):
                raise TypeError(f"combine_terms must be a list of strings, got {combine_terms!r}")
            design = getattr(self.model.data, "model_spec", None)
            names = [] if design is None else list(design.term_names)
            unknown = [c for c in combine_terms if not any(str(c) in n for n in names)]
            if unknown:
                raise KeyError(f"combine_terms {unknown} match no fixed-effects term of {names}")
        return super().wald_test_terms(skip_single, extra_constraints, combine_terms, scalar)

    def f_test(
        self, r_matrix: Any, cov_p: Any = None, invcov: Any = None, ddf: str = "satterthwaite"
    ) -> ContrastResults:
        """Joint F test of a linear hypothesis with its denominator df.

        Satterthwaite's df for the F statistic as lmerTest's contestMD (the
        contrast covariance is eigen-decomposed and the per-direction df
        combined); ``ddf="kenward-roger"`` uses pbkrtest's scaled F.

        Parameters
        ----------
        r_matrix : array_like, str or tuple
            The hypothesis, as statsmodels takes it: a contrast matrix, a
            string (``"Days = 10, Intercept = 250"``) or ``(R, q)``.
        cov_p, invcov : None
            statsmodels' overrides of the covariance; not supported (the df
            belong to the model's own covariance).
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            Denominator df method.

        Returns
        -------
        ContrastResults
            statsmodels' F test result (``fvalue``, ``pvalue``, ``df_num``,
            ``df_denom``).
        """
        _no_override(cov_p, invcov)
        L, q = parse_constraints(self, r_matrix)
        refuse_null_contrast(L, q)
        warn_rank_deficient(L)
        test = contrast_test(self, L, q, ddf)
        out = ContrastResults(F=test.fvalue, df_denom=test.den_df, df_num=test.num_df)
        out.pvalue = float(test.pvalue)  # scipy's F gives NaN for an infinite df
        return out

    def wald_test(
        self,
        r_matrix: Any,
        cov_p: Any = None,
        invcov: Any = None,
        use_f: Any = None,
        df_constraints: Any = None,
        scalar: bool = True,
        ddf: str = "satterthwaite",
    ) -> ContrastResults:
        """Wald test of a linear hypothesis: the F test of :meth:`f_test`.

        With ``use_f=False`` the chi-square form (statsmodels' own) is returned.

        Parameters
        ----------
        r_matrix : array_like, str or tuple
            The hypothesis, as in :meth:`f_test`.
        cov_p, invcov : None
            Not supported with the F form (see :meth:`f_test`).
        use_f : bool, optional
            False: statsmodels' chi-square Wald test; otherwise the F test.
        df_constraints, scalar
            statsmodels' arguments of the chi-square form.
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            Denominator df of the F form.
        """
        if use_f is not None and not check_bool("use_f", use_f):
            return super().wald_test(
                r_matrix, cov_p, invcov, use_f=False, df_constraints=df_constraints, scalar=scalar
            )
        if df_constraints is not None:
            raise TypeError(
                "df_constraints is for the chi-square form (use_f=False); the F form's "
                "numerator df is the rank of the contrasts"
            )
        return self.f_test(r_matrix, cov_p, invcov, ddf=ddf)

    def coef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Fixed-effects table with columns ``coef, std_err, df, t, pvalue``.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            Kenward-Roger also adjusts the standard errors (pbkrtest's vcovAdj).
        """
        return coef_table(self, ddf)

    def anova(self, type: int | str = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
        """ANOVA table of the fixed-effect terms, as lmerTest's ``anova(m)``.

        Parameters
        ----------
        type : {3, 2, 1}
            Type III (marginal, lmerTest's contrasts), type II (each term
            adjusted for the terms that do not contain it, lmerTest's
            ``type = 2``) or type I (sequential). As in lmerTest, the row of
            a factor that interacts with a covariate tests the factor at the
            covariate's 0 in types II and III alike: with ``y ~ A*x + B``, A's
            F was 3.24 with ``x`` and 0.57 with ``x + 7`` (car's type II: 29.72
            for both). Center the covariate for a test at its mean.
        ddf : {"satterthwaite", "kenward-roger", "residual", "lme4"}
            ``"lme4"``: lme4's own ``anova(m)``, as lmerTest's ``ddf =
            "lme4"`` gives it (sequential sums of squares of ``R_X beta``,
            columns ``npar, SumSq, MeanSq, F``, no df; ``type`` is ignored).

        Returns
        -------
        pandas.DataFrame
            Columns ``SumSq, MeanSq, NumDF, DenDF, F, pvalue`` by term.
        """
        return anova_table(self, type, ddf)

    def ls_means(
        self,
        which: Any = None,
        level: float = 0.95,
        ddf: str = "satterthwaite",
        pairwise: bool = False,
    ) -> pd.DataFrame:
        """Least-squares means of the factor terms, as lmerTest's ``ls_means(m)``.

        Means over a reference grid: other factors averaged with equal
        weights, numeric covariates at their means; each row a t test with
        its own df. See :mod:`statsmodels_lmer.inference.ls_means`.

        Parameters
        ----------
        which : str, list of str or None
            Factor terms (``"recipe"``, ``"recipe:temperature"``); None: all
            terms without numeric variables.
        level : float
            Confidence level of ``lower`` and ``upper``.
        ddf : {"satterthwaite", "kenward-roger", "residual"}
        pairwise : bool
            Differences of all pairs of means of each term (``"a - b"``).

        Returns
        -------
        pandas.DataFrame
            Columns ``Estimate, Std. Error, df, t value, lower, upper,
            Pr(>|t|)`` indexed by (term, level); NaN rows are not estimable.
        """
        return ls_means_table(self, which, level, ddf, pairwise)

    def difflsmeans(
        self, which: Any = None, level: float = 0.95, ddf: str = "satterthwaite"
    ) -> pd.DataFrame:
        """Differences of all pairs of least-squares means, as lmerTest's ``difflsmeans(m)``.

        ``ls_means(which, level, ddf, pairwise=True)``.

        Parameters
        ----------
        which, level, ddf
            As in :meth:`ls_means`: the factor terms (default all), the
            confidence level and the denominator df method.

        Returns
        -------
        LmerTable
            One row per pair (``"A - B"``): estimate, SE, df, t, p-value and
            interval.
        """
        return ls_means_table(self, which, level, ddf, pairwise=True)

    def drop1(self, test: str = "F", ddf: str = "satterthwaite", scope: Any = None) -> pd.DataFrame:
        """Tests of dropping each marginal fixed-effect term (lmerTest / lme4).

        Parameters
        ----------
        test : {"F", "Chisq"}
            ``"F"``: lmerTest's F tests of the term's coefficients;
            ``"Chisq"``: lme4's likelihood-ratio tests, refitting by ML
            without each term.
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            Denominator df for ``test="F"``.
        scope : str, list of str or None
            The marginal terms to test (a name, names or ``"~ x + f"``, as
            lme4's and lmerTest's ``scope``); None: all of them.

        Returns
        -------
        LmerTable
            See :func:`statsmodels_lmer.tools.compare.drop1` for the columns.
        """
        return compare.drop1(self, test=test, ddf=ddf, scope=scope)

    def step(
        self,
        ddf: str = "satterthwaite",
        alpha_random: float = 0.1,
        alpha_fixed: float = 0.05,
        reduce_fixed: bool = True,
        reduce_random: bool = True,
        keep: list[str] | None = None,
    ) -> StepResult:
        """Backward elimination of random, then fixed terms, as lmerTest's ``step``.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger"}
            Denominator df of the fixed-effects F tests.
        alpha_random, alpha_fixed : float
            A term is eliminated while its p-value is above these.
        reduce_fixed, reduce_random : bool
            False keeps that part as it is.
        keep : list of str, optional
            Fixed-effect terms never removed (names as in :meth:`anova`).

        Returns
        -------
        StepResult
            ``.random``, ``.fixed`` and the final ``.model``; see
            :func:`statsmodels_lmer.tools.step.step`.
        """
        self.model.require_data("step() refits")
        return step_tool.step(
            self, ddf, alpha_random, alpha_fixed, reduce_fixed, reduce_random, keep
        )

    def pbmodcomp(
        self,
        small: Any,
        nsim: int = 1000,
        seed: Any = None,
        n_jobs: int | None = 1,
        progress: bool | None = None,
    ) -> PBModComp:
        """Parametric bootstrap test against a nested model (pbkrtest's ``PBmodcomp``).

        Parameters
        ----------
        small : LmerResults or str
            The nested model fitted to the same rows, or a formula for
            :meth:`update` (``". ~ . - x"``).
        nsim : int
            Simulated responses (pbkrtest's default 1000).
        seed : int or numpy.random.Generator, optional
            The same seed gives the same statistics whatever ``n_jobs``.
        n_jobs : int or None
            Worker processes for the refits (``-1``: every CPU).
        progress : bool or None
            Progress bar over the refits (None: the package setting).

        Returns
        -------
        PBModComp
            See :func:`statsmodels_lmer.tools.pbmodcomp.pbmodcomp`.
        """
        self.model.require_data("pbmodcomp() refits")
        return pbmodcomp_tool.pbmodcomp(self, small, nsim, seed, n_jobs, progress)

    def krmodcomp(self, small: Any) -> ContrastResults:
        """Kenward-Roger F test against a nested fit or formula (pbkrtest's ``KRmodcomp``).

        See :func:`statsmodels_lmer.tools.compare.krmodcomp`.
        """
        return compare.krmodcomp(self, small)

    def satmodcomp(self, small: Any) -> ContrastResults:
        """Satterthwaite F test against a nested fit or formula (pbkrtest's ``SATmodcomp``).

        See :func:`statsmodels_lmer.tools.compare.satmodcomp`.
        """
        return compare.satmodcomp(self, small)

    def ranova(self, reduce_terms: bool = True) -> pd.DataFrame:
        """Likelihood-ratio tests of the random-effects terms, as lmerTest's ``ranova``.

        See :func:`statsmodels_lmer.tools.compare.ranova`.

        Parameters
        ----------
        reduce_terms : bool
            Reduce a term with slopes by each droppable column term
            (default, lmerTest's), or remove every term as a whole.
        """
        self.model.require_data("ranova() refits")
        return compare.ranova(self, reduce_terms)

    def refit_ml(self) -> Any:
        """This model refitted by maximum likelihood (itself if already ML).

        Starts from the REML theta, as lme4's ``refitML``. The optimizer is
        the one a fresh ML fit would use: L-BFGS-B on the analytic gradient
        where the engine chooses it, else BOBYQA with a first step of a
        quarter of the start (the ML optimum is close). BOBYQA from that start
        stopped short on badly scaled models (nlme's Spruce: max|grad| 0.012,
        not converged, where a fresh ML fit converges).
        """
        if not self.reml:
            return self
        step = None if uses_gradient(self.model.devfun(False)) else CLOSE_START_STEP
        return self.model.fit(reml=False, start_theta=self.theta, initial_step=step)

    # -- variance components -------------------------------------------
    def term_covariance(self, index: int) -> np.ndarray:
        """Covariance ``sigma^2 T T'`` of one random term's effects (lme4's term order).

        Parameters
        ----------
        index : int or str
            Position of the term in ``model.random_terms``, or its label
            (lme4's ``grp``: ``"Subject"``, ``"g.1"`` for a second term on g).
        """
        terms = self.model.random_terms
        labels = [term.label for term in terms]
        if isinstance(index, str):
            if index not in labels:
                raise KeyError(f"no random-effects term {index!r}; the terms are {labels}")
            index = labels.index(index)
        else:
            (index,) = check_positions("index", [index], len(terms))
        term = terms[index]
        T = term.factor(self.theta[self.model.theta_slices[index]])
        return self.scale * (T @ T.T)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(m))``.

        Columns ``grp, var1, var2, vcov, sdcor``: variances (sdcor = standard
        deviation) then covariances (sdcor = correlation) for each term, then
        the residual.
        """
        rows = []
        for index, term in enumerate(self.model.random_terms):
            cov = self.term_covariance(index)
            sdcor = cov_to_sdcor(cov)
            names = term.column_names
            rows.extend(
                (term.label, name, None, cov[j, j], np.sqrt(cov[j, j]))
                for j, name in enumerate(names)
            )
            k = 0  # position in the column-major lower triangle (theta's order)
            for c in range(len(names)):
                for r in range(c, len(names)):
                    if r != c:
                        rows.append((term.label, names[c], names[r], cov[r, c], sdcor[k]))
                    k += 1
        rows.append(("Residual", None, None, self.scale, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor (lme4's ``ngrps``)."""
        out: dict[str, int] = {}
        for term in self.model.random_terms:
            out.setdefault(term.group, term.n_levels)
        return out

    @property
    def Lambda(self) -> sp.csc_matrix:
        """Relative covariance factor ``Lambda_theta`` (sparse, lme4's layout)."""
        blocks = [
            term.lambda_block(self.theta[sl])
            for term, sl in zip(self.model.random_terms, self.model.theta_slices)
        ]
        return sp.block_diag(blocks, format="csc")

    def is_singular(self, tol: float = 1e-4) -> bool:
        """True when a theta element with lower bound 0 is below ``tol`` (lme4).

        Parameters
        ----------
        tol : float
            lme4's ``isSingular`` tolerance (1e-4).
        """
        tol = check_nonnegative("tol", tol)
        lower = self.model.theta_lower
        return bool(np.any(self.theta[lower == 0] < tol))

    # -- statsmodels MixedLM's names ----------------------------------------
    @property
    def fe_params(self) -> pd.Series:
        """The fixed effects (MixedLM's ``fe_params``; the same as ``params``)."""
        return self.fixef.rename("fe_params")

    @property
    def bse_fe(self) -> pd.Series:
        """Standard errors of the fixed effects (MixedLM's ``bse_fe``)."""
        return pd.Series(np.asarray(self.bse), index=self.model.exog_names, name="bse_fe")

    @property
    def cov_re(self) -> pd.DataFrame:
        """Covariance of one group's random coefficients (MixedLM's ``cov_re``).

        On the data's scale (``sigma^2 T T'``); rows and columns named as
        MixedLM names them (the intercept takes the group's name). See
        :mod:`statsmodels_lmer.tools.mixedlm_names`.
        """
        return mixedlm_names.cov_re(self)

    @property
    def cov_re_unscaled(self) -> pd.DataFrame:
        """``cov_re / scale`` (MixedLM's ``cov_re_unscaled``; lme4's ``T T'``)."""
        return self.cov_re / self.scale

    @property
    def vcomp(self) -> np.ndarray:
        """Variances of the variance components (MixedLM's ``vcomp``), on the data's scale."""
        return mixedlm_names.vcomp(self)

    @property
    def bse_re(self) -> pd.Series:
        """Standard errors of ``cov_re``'s lower triangle and of ``vcomp`` (delta method).

        Named as MixedLM's variance parameters (``"Pig Var"``,
        ``"Pig x Time Cov"``); see :func:`statsmodels_lmer.tools.mixedlm_names.bse_re`.
        """
        return mixedlm_names.bse_re(self)

    @property
    def random_effects(self) -> dict[Any, pd.Series]:
        """Conditional modes per group, a Series per level (MixedLM's ``random_effects``)."""
        return mixedlm_names.random_effects(self)

    @property
    def random_effects_cov(self) -> dict[Any, pd.DataFrame]:
        """Conditional covariance of each group's random effects (MixedLM's name)."""
        return mixedlm_names.random_effects_cov(self)

    @property
    def k_fe(self) -> int:
        """Number of fixed effects (MixedLM's ``k_fe``)."""
        return self.k_fixed

    @property
    def k_re(self) -> int:
        """Number of random coefficients per group (MixedLM's ``k_re``)."""
        return len(self.cov_re)

    @property
    def k_re2(self) -> int:
        """Number of distinct elements of ``cov_re`` (MixedLM's ``k_re2``)."""
        return self.k_re * (self.k_re + 1) // 2

    @property
    def k_vc(self) -> int:
        """Number of variance components (MixedLM's ``k_vc``)."""
        return len(self.vcomp)

    @property
    def method(self) -> str:
        """``"REML"`` or ``"ML"`` (MixedLM's ``method``)."""
        return "REML" if self.reml else "ML"

    # -- random effects ------------------------------------------------
    @property
    def conditional_modes(self) -> list[np.ndarray]:
        """Each term's conditional modes ``b`` (levels x columns), lme4's term order."""
        return self._solution.b

    @cached_property
    def conditional_covariances(self) -> list[np.ndarray]:
        """Each term's conditional covariances of ``b``, shape (levels, columns, columns).

        ``sigma^2 Lambda (L L')^-1 Lambda'`` blocks, as lme4's ``condVar``.
        """
        return [v * self.scale for v in self._solution.conditional_variances]

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects, per grouping factor.

        Each DataFrame has the factor's levels as index and the term columns
        as columns (terms on the same factor, as from ``||``, are combined).
        """
        return ranef_frames(self.model.random_terms, self.conditional_modes)

    def ranef_table(self) -> pd.DataFrame:
        """Long table ``grpvar, term, grp, condval, condsd`` as lme4's
        ``as.data.frame(ranef(m, condVar = TRUE))``.
        """
        return ranef_long_table(
            self.model.random_terms, self.conditional_modes, self.conditional_covariances
        )

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: fixed effects plus matching random effects.

        A column several terms share (``(x | g) + (1 | g)``: two intercepts)
        gets each term's effect once (lme4's ``coef`` adds the first twice).
        Columns match by name as R's do: a random ``f[b]`` (``0 + f | g``) adds
        to the fixed ``f[T.b]``, both ``fb`` in R; a random column without a
        fixed one (``f[a]``) is a column of its own.
        """
        fixef = self.fixef
        by_key = {_coef_key(name): name for name in fixef.index}
        out = {}
        for group, frame in self.ranef.items():
            table = pd.DataFrame(
                np.tile(fixef.to_numpy(), (len(frame), 1)),
                index=frame.index,
                columns=fixef.index,
            )
            for position, column in enumerate(frame.columns):
                values = frame.iloc[:, position].to_numpy()
                name = column if column in table.columns else by_key.get(_coef_key(column), column)
                if name in table.columns:
                    values = table[name].to_numpy() + values
                table[name] = values
            out[group] = table
        return out

    # -- fitted values and residuals ------------------------------------
    def _random_part(self) -> np.ndarray:
        terms = self.model.random_terms
        parts = [term_contribution(t.Z, t.codes, b) for t, b in zip(terms, self.conditional_modes)]
        return np.sum(parts, axis=0)

    @cached_property
    def fittedvalues(self) -> np.ndarray:
        """Conditional fitted values ``X beta + Z b (+ offset)``.

        A lazy Dask Series for a model fitted from a Dask DataFrame (so are
        ``resid``, ``fittedvalues_marginal`` and ``residuals()``).
        """
        if self.model.partitions is not None:
            return self.model.partitions.values(self, "fitted")
        self.model.require_data("fitted values and residuals")
        fitted = np.asarray(self.model.exog) @ self.params + self._random_part()
        if self.model.offset is not None:
            fitted = fitted + self.model.offset
        return fitted

    @cached_property
    def resid(self) -> np.ndarray:
        """Conditional (response) residuals ``y - fitted``."""
        if self.model.partitions is not None:
            return self.model.partitions.values(self, "resid")
        return np.asarray(self.model.endog) - self.fittedvalues

    @cached_property
    def fittedvalues_marginal(self) -> np.ndarray:
        """Marginal (population-level) fitted values ``X beta (+ offset)``."""
        if self.model.partitions is not None:
            return self.model.partitions.values(self, "marginal")
        fitted = np.asarray(self.model.exog) @ np.asarray(self.params)
        if self.model.offset is not None:
            fitted = fitted + self.model.offset
        return fitted

    def residuals(
        self, type: str = "response", scaled: bool = False, marginal: bool = False
    ) -> np.ndarray:
        """Residuals as lme4's ``residuals.merMod``, conditional by default.

        Parameters
        ----------
        type : {"response", "pearson"}
            Raw residuals, or residuals times the square root of the weights.
        scaled : bool
            Divide by sigma.
        marginal : bool
            ``y - X beta`` (random effects left in the residual) instead of
            the conditional ``y - X beta - Z b``.

        Returns
        -------
        ndarray
        """
        if type not in ("response", "pearson"):
            raise ValueError(f"type must be 'response' or 'pearson', got {type!r}")
        scaled, marginal = check_bool("scaled", scaled), check_bool("marginal", marginal)
        if self.model.partitions is not None:
            what = ("pearson" if type == "pearson" else "resid") + ("_marginal" if marginal else "")
            values = self.model.partitions.values(self, what)
            return values / self.sigma if scaled else values
        fitted = self.fittedvalues_marginal if marginal else self.fittedvalues
        values = np.asarray(self.model.endog, dtype=float) - np.asarray(fitted)
        if type == "pearson" and self.model.weights is not None:
            values = values * np.sqrt(self.model.weights)
        return values / self.sigma if scaled else values

    def hatvalues(self) -> np.ndarray:
        """Leverages of the conditional fit, as lme4's ``hatvalues``.

        See :func:`statsmodels_lmer.tools.prediction.hatvalues`.
        """
        return prediction.hatvalues(self)

    def cooks_distance(self) -> np.ndarray:
        """Cook's distances from the leverages, as lme4's ``cooks.distance(m)``.

        See :func:`statsmodels_lmer.tools.prediction.cooks_distance`; the
        distances of deleting rows or groups and refitting are
        :meth:`influence`'s.
        """
        return prediction.cooks_distance(self)

    # -- prediction, simulation, refits ----------------------------------
    def predict(
        self,
        exog: Any = None,
        *,
        re_formula: Any = None,
        allow_new_levels: bool = False,
        offset: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Predictions for new data, as lme4's ``predict(m, newdata, re.form, ...)``.

        By default the prediction is conditional on every random effect
        (``re_formula=None``); ``re_formula="0"`` gives the population level.

        Parameters
        ----------
        exog : pandas.DataFrame, optional
            New data (``newdata=`` is accepted too); default the fitted rows.
        re_formula : None, "0" or str
            ``None``: all random effects; ``"0"`` (or ``"~0"``): none, the
            population-level prediction; or bar terms such as
            ``"~ (1 | Subject)"`` to include only those.
        allow_new_levels : bool
            Levels not seen in fitting get zero random effects instead of an
            error (nested terms keep the effects of the known outer levels).
            Levels match by value whatever the column's type (``3``, ``3.0``
            and ``"3"`` are one level).
        offset : array_like or str, optional
            The offset of each row; by default the fitted offset for the
            fitted rows, or the column it was taken from. A model fitted with
            an offset array needs it for new data.

        Returns
        -------
        pandas.Series or ndarray
            Fixed part, offset and the selected random effects: a Series
            indexed like ``exog`` when new data are given (as statsmodels'
            formula models), else an array for the fitted rows; NaN for rows
            with a missing value in a column the model uses.
        """
        known = ["newdata", "re_formula", "allow_new_levels", "offset"]
        newdata = _newdata(exog, kwargs, "predict()", known)
        allow_new_levels = check_bool("allow_new_levels", allow_new_levels)
        values = predict.predict(self, newdata, re_formula, allow_new_levels, offset)
        if isinstance(newdata, pd.DataFrame):  # statsmodels: a Series indexed like exog
            return pd.Series(values, index=newdata.index, name="predicted")
        return values

    def get_prediction(
        self,
        exog: Any = None,
        conditional: bool = False,
        allow_new_levels: bool = False,
        **kwargs: Any,
    ) -> prediction.PredictionResults:
        """Predictions with standard errors and intervals, as statsmodels' ``get_prediction``.

        Parameters
        ----------
        exog : pandas.DataFrame, optional
            New data (``newdata=`` is accepted too); default the fitted rows.
        conditional : bool
            False (default): the population-level prediction ``x' beta`` with
            its standard error ``sqrt(x' V x)`` and t intervals with the
            contrast's own df. True: ``x' beta + z' b`` with the standard
            error of its prediction error (Henderson's, from the inverse of
            the mixed-model equations) and normal intervals.
        allow_new_levels : bool
            With ``conditional=True``, give unseen levels zero random effects
            (and add their variance) instead of an error.

        Returns
        -------
        PredictionResults
            ``summary_frame(alpha)`` has statsmodels' columns ``mean,
            mean_se, mean_ci_lower, mean_ci_upper, obs_ci_lower,
            obs_ci_upper`` and ``df``. See :mod:`statsmodels_lmer.tools.prediction`.
        """
        known = ["newdata", "conditional", "allow_new_levels"]
        newdata = _newdata(exog, kwargs, "get_prediction()", known)
        conditional = check_bool("conditional", conditional)
        allow_new_levels = check_bool("allow_new_levels", allow_new_levels)
        return prediction.get_prediction(self, newdata, conditional, allow_new_levels)

    def simulate(
        self,
        nsim: int = 1,
        seed: Any = None,
        re_formula: Any = None,
        use_u: bool = False,
        newdata: pd.DataFrame | None = None,
        newparams: dict[str, Any] | None = None,
        allow_new_levels: bool = False,
        weights: Any = None,
        offset: Any = None,
    ) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``).

        New random effects are drawn by default; ``use_u=True`` conditions on
        all estimated random effects and ``re_formula`` on the listed terms.
        ``newdata`` and ``newparams`` simulate other rows and other parameter
        values, as for a power analysis (docs/intervals.md).

        Parameters
        ----------
        nsim : int
            Number of simulated response vectors.
        seed : int or numpy.random.Generator, optional
        re_formula : str, optional
            Random-effects terms to condition on, e.g. ``"~ (1 | Subject)"``.
        use_u : bool
            Condition on all estimated random effects (lme4's ``use.u``).
        newdata : pandas.DataFrame, optional
            Rows to simulate for (no response column needed); random effects
            are drawn for each level present.
        newparams : dict, optional
            ``"beta"``, ``"theta"`` and/or ``"sigma"`` to simulate from
            instead of the estimates (lme4's ``newparams``).
        allow_new_levels : bool
            Accept new levels of a conditioned term (drawn anew).
        weights, offset : array_like or str, optional
            For the rows of ``newdata``; default from the model's columns.

        Returns
        -------
        pandas.DataFrame
            One column per simulation (``sim_1``, ...), rows as the fitted
            rows or ``newdata``. See :func:`statsmodels_lmer.tools.simulate.simulate`.
        """
        return simulate.simulate(
            self,
            nsim,
            seed=seed,
            re_formula=re_formula,
            use_u=use_u,
            newdata=newdata,
            newparams=newparams,
            allow_new_levels=allow_new_levels,
            weights=weights,
            offset=offset,
        )

    def refit(self, endog: Any, **fit_kwargs: Any) -> Any:
        """The same model fitted to a new response (lme4's ``refit``).

        Parameters
        ----------
        endog : array_like, shape (nobs,)
            New response for the fitted rows; a pandas Series is matched to
            them by its index.
        **fit_kwargs
            Passed to :meth:`Lmer.fit`; by default the same REML setting and
            the optimizer the fit was asked for (``method=``), starting from
            the fitted theta.

        Returns
        -------
        LmerResults
        """
        return simulate.refit(self, endog, **fit_kwargs)

    def update(self, formula: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        """Refit with a new formula and/or data (lme4's ``update``).

        Parameters
        ----------
        formula : str, optional
            A full lme4 formula, or one with R's ``update`` dots: ``.`` for
            the old response and terms (``". ~ . - Days"``,
            ``". ~ . + (1 | g)"``, ``"np.log(.) ~ ."``; see
            :func:`~statsmodels_lmer.formula.update_formula`); default the
            current one.
        data : pandas.DataFrame, optional
            Default the fitted rows (with their weights and offset).
        **kwargs
            Model keywords (``weights``, ``offset``, ``subset``, ``missing``)
            and fit keywords (``reml`` or lme4's ``REML``, ``method``, ...);
            by default the fit keeps REML or ML as this one.
        """
        model = self.model
        fit_kwargs, model_kwargs = FitOptions.split(kwargs)
        if "REML" in model_kwargs and "reml" in model_kwargs:
            raise TypeError("update() got both REML= and reml=; pass one")
        if "REML" in model_kwargs:
            fit_kwargs["reml"] = model_kwargs.pop("REML")
        for name in ("reml", "start_theta", "cov_type", "cov_kwds"):
            if name in model_kwargs:
                fit_kwargs[name] = model_kwargs.pop(name)
        fit_kwargs.setdefault("reml", self.reml)
        data, model_kwargs = simulate.update_arguments(model, data, model_kwargs)
        if formula is None:
            formula = model.lmer_formula
        elif model.lmer_formula is not None:
            given, formula = formula, update_formula(model.lmer_formula, formula)
            if formula == update_formula(model.lmer_formula, ". ~ .") and "-" in given:
                warn(
                    f"update({given!r}) leaves the formula {model.lmer_formula!r} unchanged: "
                    "a term it removes is not in the model (as R, no term is removed)",
                    ValueWarning,
                )
        new = type(model).from_formula(formula, data, **model_kwargs)
        return new.fit(**fit_kwargs)

    def allfit(self, **kwargs: Any) -> Any:
        """Refit with every available optimizer, as lme4's ``allFit``.

        Parameters
        ----------
        **kwargs
            ``optimizers`` (names from
            :func:`statsmodels_lmer.available_optimizers`; default all),
            ``progress`` (bool or None: the package setting) and ``n_jobs``
            (worker processes, as joblib's); see
            :func:`statsmodels_lmer.tools.allfit.allfit`.

        Returns
        -------
        AllFitResult
            ``.table`` (one row per optimizer) and ``.summary()``, which says
            which optimizers agree with the best fit.
        """
        return allfit_tool.allfit(self, **kwargs)

    def influence(
        self, group: str | None = None, method: str = "one-step", **kwargs: Any
    ) -> InfluenceResult:
        """Influence of each group on the fixed effects (HLMdiag's ``hlm_influence``).

        Cook's distance, MDFFITS, COVTRACE, COVRATIO and leverage for deleting
        each level of ``group``, or each row with ``group="observation"``
        (lme4's ``influence(m)``).

        Parameters
        ----------
        group : str, optional
            The grouping factor whose levels are deleted one at a time (a key
            of ``ngroups``; default the first random term's), or
            ``"observation"``.
        method : {"one-step", "full"}
            Variance parameters held at the estimates (closed form, HLMdiag's
            default), or a full refit per deletion (lme4's ``influence``).
        **kwargs
            ``progress``; see :func:`statsmodels_lmer.tools.influence.influence`.

        Returns
        -------
        InfluenceResult
            ``.frame`` (one row per deletion) and ``.plot()``.
        """
        return influence(self, group=group, method=method, **kwargs)

    def exact_rlrt(
        self, m_alt: Any = None, m0: Any = None, nsim: int = 10_000, seed: Any = None, **kwargs: Any
    ) -> ExactLRTResult:
        """Exact restricted LRT of this model's one variance component (RLRsim's ``exactRLRT``).

        Parameters
        ----------
        m_alt, m0 : LmerResults, optional
            To test the component inside a larger model: the full model and
            the model without the tested effect (same fixed effects). Without
            them the null model is the linear model with the same fixed
            effects.
        nsim : int
            Number of simulated values of the null distribution.
        seed : int or numpy.random.Generator, optional
        **kwargs
            ``grid`` and ``progress``; see
            :func:`statsmodels_lmer.inference.exact_lrt.exact_rlrt`.

        Returns
        -------
        ExactLRTResult
        """
        self.model.require_data("exact_rlrt() simulations")
        return exact_rlrt(self, m_alt, m0, nsim=nsim, seed=seed, **kwargs)

    def exact_lrt(
        self, m0: Any = None, nsim: int = 10_000, seed: Any = None, **kwargs: Any
    ) -> ExactLRTResult:
        """Exact LRT of this model's one variance component (RLRsim's ``exactLRT``).

        Parameters
        ----------
        m0 : statsmodels results of a linear model, optional
            The null model on the same rows (e.g. ``smf.ols(...).fit()``);
            default the linear model with the same fixed effects.
        nsim : int
            Number of simulated values of the null distribution.
        seed : int or numpy.random.Generator, optional
        **kwargs
            ``grid`` and ``progress``; see
            :func:`statsmodels_lmer.inference.exact_lrt.exact_lrt`.

        Returns
        -------
        ExactLRTResult
        """
        self.model.require_data("exact_lrt() simulations")
        return exact_lrt(self, m0, nsim=nsim, seed=seed, **kwargs)

    # -- intervals ------------------------------------------------------
    def confint(self, method: str = "profile", level: float = 0.95, **kwargs: Any) -> pd.DataFrame:
        """Intervals for variance parameters and fixed effects, as lme4's ``confint``.

        Unlike statsmodels' :meth:`conf_int` (fixed effects, Satterthwaite t),
        this covers the variance parameters too.

        Parameters
        ----------
        method : {"profile", "wald", "boot"}
            Likelihood profile (REML fits profiled on the ML deviance, as
            lme4), Wald (fixed effects only, normal quantiles) or parametric
            bootstrap percentiles (``nsim=``, ``seed=``).
        level : float

        Returns
        -------
        pandas.DataFrame
            Rows ``.sig01, ..., .sigma`` and the fixed effects; columns
            ``"2.5 %"``, ``"97.5 %"``. See :func:`statsmodels_lmer.intervals.confint`.
        """
        with self.blas_threads():
            return confint(LmerResultsWrapper(self), method=method, level=level, **kwargs)

    def profile(self, which: Any = None, **kwargs: Any) -> ProfileResult:
        """Likelihood profiles (zeta) as lme4's ``profile``.

        Parameters
        ----------
        which : None, str, int or sequence
            Parameters to profile: names, positions, ``"theta_"`` or
            ``"beta_"``; default all.
        **kwargs
            lme4's grid controls (``alpha_max``, ``maxpts``, ``delta``,
            ``delta_cutoff``, ``maxmult``), ``signames``, ``at``, ``progress``
            and ``n_jobs``; see :func:`statsmodels_lmer.intervals.profile.profile`.

        Returns
        -------
        ProfileResult
            ``.frame``, ``.confint()`` and ``.plot()``.
        """
        with self.blas_threads():
            return profile(self, which=which, **kwargs)

    def bootstrap(
        self, nsim: int, seed: Any = None, func: Any = None, **kwargs: Any
    ) -> BootstrapResult:
        """Parametric bootstrap as lme4's ``bootMer``: one row per replicate.

        Parameters
        ----------
        nsim : int
            Number of replicates.
        seed : int or numpy.random.Generator, optional
            The same seed gives the same replicates, whatever ``n_jobs``.
        func : callable, optional
            ``func(fitted_results)`` returning a Series, dict or array; default
            the variance parameters on lme4's scale (``.sig01, ..., .sigma``)
            and the fixed effects.
        **kwargs
            ``progress``, ``n_jobs``, ``use_u`` (condition on the estimated
            random effects, lme4's ``use.u``) and ``fit_kwargs`` (for the
            refits); see :func:`statsmodels_lmer.intervals.bootstrap.bootstrap`.

        Returns
        -------
        BootstrapResult
            ``.frame`` (one row per replicate), ``.confint()`` and ``.plot()``.
        """
        self.model.require_data("bootstrap() refits")
        return bootstrap(LmerResultsWrapper(self), nsim, seed=seed, func=func, **kwargs)

    # -- multilevel summaries and simulation tools -----------------------
    def icc(self) -> pd.DataFrame:
        """Intraclass correlations (adjusted, conditional), as ``performance::icc``.

        See :func:`statsmodels_lmer.tools.multilevel.icc`.
        """
        self.model.require_data("ICCs (icc())")
        return multilevel.icc(self)

    def r2(self) -> pd.Series:
        """Nakagawa's marginal and conditional R2, as ``performance::r2_nakagawa``."""
        self.model.require_data("R2 values (r2())")
        return multilevel.r2(self)

    def resim(self, n_sims: int = 1000, seed: Any = None) -> pd.DataFrame:
        """Random effects simulated from their conditional distribution (merTools' REsim).

        Parameters
        ----------
        n_sims : int
            Draws per level.
        seed : int or numpy.random.Generator, optional

        Returns
        -------
        pandas.DataFrame
            See :func:`statsmodels_lmer.tools.diagnostics.resim`.
        """
        return diagnostics.resim(self, n_sims, seed)

    def predict_interval(self, newdata: Any = None, level: float = 0.95, **kwargs: Any) -> Any:
        """Simulation-based prediction intervals (merTools' predictInterval style).

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            Default the fitted rows.
        level : float
            Coverage of the interval.
        **kwargs
            ``n_sims``, ``seed``, ``re_formula``, ``allow_new_levels``,
            ``include_residual``, ``offset``, ``weights``; see
            :func:`statsmodels_lmer.tools.diagnostics.predict_interval`.

        Returns
        -------
        pandas.DataFrame
            ``fit``, ``lower``, ``upper`` per row.
        """
        return diagnostics.predict_interval(self, newdata, level=level, **kwargs)

    # -- panel econometrics ----------------------------------------------
    def panel_rsquared(self, entity: str | None = None) -> pd.Series:
        """linearmodels' R^2 measures (within, between, overall) of the fixed effects.

        ``1 - RSS / TSS`` on the entity-demeaned data, the entity means and
        the data; see :mod:`statsmodels_lmer.tools.panel`.

        Parameters
        ----------
        entity : str, optional
            The entity column; default the model's only grouping factor.
        """
        self.model.require_data("panel R2 values (panel_rsquared())")
        return panel.panel_rsquared(self, entity)

    @property
    def rsquared_within(self) -> float:
        """R^2 of the entity-demeaned data (linearmodels' ``rsquared_within``)."""
        return float(self.panel_rsquared()["within"])

    @property
    def rsquared_between(self) -> float:
        """R^2 of the entity means (linearmodels' ``rsquared_between``)."""
        return float(self.panel_rsquared()["between"])

    @property
    def rsquared_overall(self) -> float:
        """R^2 of the data (linearmodels' ``rsquared_overall``)."""
        return float(self.panel_rsquared()["overall"])

    def within_estimator(self, entity: str | None = None) -> panel.WithinEstimate:
        """The within (fixed effects) estimator of this model's fixed part.

        As ``linearmodels.PanelOLS(..., entity_effects=True)``.

        Parameters
        ----------
        entity : str, optional
            The entity column; default the model's only grouping factor.

        Returns
        -------
        WithinEstimate
            See :func:`statsmodels_lmer.tools.panel.within_estimator`.
        """
        return panel.within_estimator(self, entity)

    def hausman(
        self, method: str = "mundlak", cov_type: str | None = None, entity: str | None = None
    ) -> panel.HausmanResult:
        """Test random against fixed effects (Hausman; Mundlak's robust form by default).

        ``method="mundlak"`` refits with the entity means of the
        time-varying regressors and tests them with a cluster-robust
        covariance (``cov_type``, CR2 with clubSandwich's HTZ F test by
        default; ``"nonrobust"`` for a model-based chi-square).
        ``method="classic"`` contrasts the within estimator with this fit.

        Parameters
        ----------
        method : {"mundlak", "classic"}
        cov_type : {"CR2", "CR1S", "CR1", "CR0", "nonrobust"}, optional
            For ``"mundlak"``: cluster-robust by entity (default CR2) or
            model-based. ``"classic"`` takes none (or ``"nonrobust"``).
        entity : str, optional
            The entity column; default the model's only grouping factor.

        Returns
        -------
        HausmanResult
            See :func:`statsmodels_lmer.tools.panel.hausman`.
        """
        return panel.hausman(self, method=method, cov_type=cov_type, entity=entity)

    # -- presentation ---------------------------------------------------
    def summary(self, alpha: float = 0.05, ddf: str = "satterthwaite") -> Any:
        """A statsmodels Summary laid out like lme4's print of a fit.

        Parameters
        ----------
        alpha : float
            1 - coverage of the fixed effects' intervals.
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            df of the fixed-effects table, as lmerTest's ``summary(m, ddf=)``;
            Kenward-Roger also adjusts the standard errors (REML fits only).

        Returns
        -------
        statsmodels_lmer.summary.LmerSummary
            statsmodels' ``summary2.Summary`` with lme4's sections in order:
            ``as_text``, ``as_html`` and ``as_latex``.
        """
        return lmer_summary(self, alpha=check_alpha(alpha), ddf=ddf)

    def summary2(self, alpha: float = 0.05, ddf: str = "satterthwaite") -> Any:
        """statsmodels' ``summary2`` layout, with numeric DataFrames in ``.tables``.

        ``tables[0]`` model information, ``tables[1]`` the fixed effects
        (Estimate, Std. Error, df, t value, Pr(>|t|), interval; ``ddf`` as in
        :meth:`summary`), ``tables[2]`` the variance components (as ``varcorr``).

        Parameters
        ----------
        alpha : float
            1 - the confidence level of the intervals.
        ddf : {"satterthwaite", "kenward-roger", "residual"}
            Denominator df of the t tests and intervals.
        """
        return lmer_summary2(self, alpha=check_alpha(alpha), ddf=ddf)

    def __repr__(self) -> str:
        return lmer_repr(self)

    def __str__(self) -> str:
        return lmer_print(self)


def _newdata(exog: Any, kwargs: dict[str, Any], where: str, known: list[str]) -> Any:
    """New data given as ``exog`` (statsmodels) or ``newdata=`` (lme4); no other keyword."""
    if exog is not None and "newdata" in kwargs:
        raise TypeError(f"{where} got new data twice, as exog and as newdata=; pass one")
    newdata = kwargs.pop("newdata", exog)
    if kwargs:
        raise unknown_keyword_error(where, list(kwargs), known)
    return newdata


def _coef_key(name: str) -> str:
    """A column name as R writes it for matching: patsy's ``f[T.b]`` and ``f[b]`` alike."""
    return name.replace("[T.", "[")


def _no_override(*values: Any) -> None:
    if any(v is not None for v in values):
        raise TypeError(
            "cov_p and invcov overrides are not supported: the tests use the fit's own "
            "covariance with its df; choose ddf= (satterthwaite, kenward-roger, residual)"
        )


class LmerResultsWrapper(LikelihoodResultsWrapper):
    """pandas-aware wrapper of :class:`LmerResults`."""

    _attrs = {
        "fittedvalues": "rows",
        "fittedvalues_marginal": "rows",
        "resid": "rows",
        "ddf": "columns",
    }
    _wrap_attrs = wrap.union_dicts(LikelihoodResultsWrapper._wrap_attrs, _attrs)
    _methods: dict[str, str] = {}
    _wrap_methods = {
        name: how
        for name, how in wrap.union_dicts(LikelihoodResultsWrapper._wrap_methods, _methods).items()
        if name not in ("conf_int", "cov_params")  # below: statsmodels' wrapper labels
        # every result with all names and fails on ``cols``, ``column`` and ``r_matrix``
    }

    def conf_int(self, alpha: float = 0.05, cols: Any = None) -> pd.DataFrame:
        """:meth:`LmerResults.conf_int` as a DataFrame labelled by coefficient.

        ``cols`` (positions or names) selects rows, labelled by their names.
        """
        names = self._results.model.data.param_names
        table = pd.DataFrame(self._results.conf_int(alpha), index=names)
        if cols is None:
            return table
        return table.iloc[self._results._coefficient_positions(cols)]

    def cov_params(
        self,
        r_matrix: Any = None,
        column: Any = None,
        scale: float | None = None,
        cov_p: Any = None,
        other: Any = None,
    ) -> Any:
        """statsmodels' ``cov_params``, labelled by coefficient where rows are coefficients.

        The whole matrix and a ``column`` selection come as DataFrames with the
        coefficients' names; one ``column`` as a number; ``r_matrix`` (or
        ``other``) products as arrays, whose rows are contrasts.
        """
        results = self._results
        p = len(results.model.exog_names)
        if column is not None:
            positions = results._coefficient_positions(column)
            column = int(positions[0]) if np.ndim(column) == 0 else positions
        if scale is not None:
            scale = check_positive("scale", scale)
        for name, matrix in (("r_matrix", r_matrix), ("other", other)):
            if matrix is not None and np.shape(np.atleast_2d(matrix))[-1] != p:
                raise ValueError(f"{name} must have {p} columns, one per coefficient")
        values = results.cov_params(
            r_matrix=r_matrix, column=column, scale=scale, cov_p=cov_p, other=other
        )
        names = list(results.model.data.param_names)
        if r_matrix is not None or np.ndim(values) != 2:
            return values
        if column is not None:
            names = [names[i] for i in np.atleast_1d(column)]
        return pd.DataFrame(values, index=names, columns=names)

    def __repr__(self) -> str:
        return repr(self._results)

    def __str__(self) -> str:
        return str(self._results)


wrap.populate_wrapper(LmerResultsWrapper, LmerResults)
