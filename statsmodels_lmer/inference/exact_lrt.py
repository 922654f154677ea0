"""Exact (restricted) likelihood-ratio tests for one variance component (RLRsim).

H0: ``sigma_b^2 = 0`` against ``sigma_b^2 > 0`` for one random effect
``b ~ N(0, sigma_b^2 I)``. The statistic's null distribution is not the usual
``0.5 chi2_0 + 0.5 chi2_1`` mixture in finite samples; Crainiceanu and Ruppert
(2004, JRSS-B 66, 165-185) give its spectral form, simulated here as RLRsim
3.1-8's ``exactRLRT`` / ``exactLRT`` do (see ``tests/fixtures/rlrsim_method.md``).

With ``P0 = I - X (X'X)^-1 X'``, ``mu_s`` the eigenvalues of ``Z' P0 Z`` and
``xi_s`` those of ``Z'Z`` (``k`` of them, zeros kept), draw per simulation
``w_s^2 ~ chi2_1``, ``W ~ chi2_(n-p-k)`` and define, for ``lambda >= 0``,

    N(lambda) = sum_s lambda mu_s / (1 + lambda mu_s) w_s^2
    D(lambda) = sum_s w_s^2 / (1 + lambda mu_s) + W
    REML: f(lambda) = (n - p) log(1 + N/D) - sum_s log(1 + lambda mu_s)
    ML:   f(lambda) = n log(1 + N/D) - sum_s log(1 + lambda xi_s)

The statistic is ``f`` at its first local maximum on RLRsim's grid (``0``,
then ``exp`` of 199 equally spaced values from -10 to 8, in units of the
normalized eigenvalues), walking up from ``lambda = 0``; the ML statistic adds
``n log(1 + V / (sum w^2 + W))``, ``V ~ chi2_q``, for ``q`` fixed effects
tested along with the variance. Prior weights enter as ``W^1/2 X`` and
``W^1/2 Z``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from statsmodels.tools.sm_exceptions import HypothesisTestWarning

from .._parallel import Progress
from ..arguments import check_bool, check_count, random_generator
from ..exceptions import warn
from ..fitting.options import CLOSE_START_STEP

__all__ = [
    "ExactLRTResult",
    "LambdaGrid",
    "exact_lrt",
    "exact_rlrt",
    "null_eigenvalues",
    "simulate_null",
]

_CHUNK = 5000  # simulations per block of the vectorized grid search


@dataclass(frozen=True)
class LambdaGrid:
    """RLRsim's grid over ``lambda = sigma_b^2 / sigma^2`` (normalized units).

    Attributes
    ----------
    log_lo, log_hi : float
        Range of ``log(lambda)`` (RLRsim's ``log.grid.lo``, ``log.grid.hi``).
    length : int
        Number of grid points, ``lambda = 0`` included (``gridlength``).
    """

    log_lo: float = -10.0
    log_hi: float = 8.0
    length: int = 200

    def values(self) -> np.ndarray:
        """``c(0, exp(seq(log_lo, log_hi, length = length - 1)))``."""
        if self.length < 2:
            raise ValueError(f"the grid needs at least 2 points, got {self.length}")
        return np.concatenate(
            [[0.0], np.exp(np.linspace(self.log_lo, self.log_hi, self.length - 1))]
        )


def null_eigenvalues(
    X: np.ndarray, Z: Any, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of ``Z' P0 Z`` and of ``Z'Z`` (decreasing, zeros kept), unnormalized.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Fixed-effects model matrix (full column rank).
    Z : ndarray or sparse matrix, shape (n, K)
        Model matrix of the tested random effect.
    weights : ndarray, optional
        Prior weights: the eigenvalues are those of ``W^1/2 X`` and ``W^1/2 Z``.

    Returns
    -------
    mu, xi : ndarray, shape (min(n, K),)
    """
    X = np.asarray(X, dtype=float)
    Z = sp.csr_matrix(Z, dtype=float)
    if weights is not None:
        root = np.sqrt(np.asarray(weights, dtype=float))
        X = X * root[:, None]
        Z = sp.csr_matrix(Z.multiply(root[:, None]))
    ztz = np.asarray((Z.T @ Z).todense())
    zt_q = np.asarray(Z.T @ np.linalg.qr(X)[0])  # Z'Q, Q an orthonormal basis of X
    ztp0z = ztz - zt_q @ zt_q.T
    count = min(X.shape[0], Z.shape[1])
    mu = np.clip(np.linalg.eigvalsh(0.5 * (ztp0z + ztp0z.T))[::-1][:count], 0.0, None)
    xi = np.clip(np.linalg.eigvalsh(ztz)[::-1][:count], 0.0, None)
    return mu, xi


def _first_local_maximum(values: np.ndarray) -> np.ndarray:
    """Per row: the value where a walk from the first column first goes down (or the last)."""
    down = values[:, 1:] < values[:, :-1]
    stop = np.where(down.any(axis=1), down.argmax(axis=1), values.shape[1] - 1)
    return values[np.arange(values.shape[0]), stop]


def simulate_null(
    mu: np.ndarray,
    n: int,
    p: int,
    nsim: int,
    rng: np.random.Generator,
    xi: np.ndarray | None = None,
    q: int = 0,
    grid: LambdaGrid | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Draws from the null distribution of the RLRT (``xi=None``) or of the LRT.

    Parameters
    ----------
    mu : ndarray
        Normalized eigenvalues of ``Z' P0 Z``.
    n, p : int
        Observations and fixed effects.
    nsim : int
        Number of draws.
    rng : numpy.random.Generator
    xi : ndarray, optional
        Normalized eigenvalues of ``Z'Z``: the ML (LRT) distribution.
    q : int
        Fixed effects tested along with the variance (LRT only).
    grid : LambdaGrid, optional
        RLRsim's default grid.
    progress : bool or None
        Progress bar (None: the package setting, shown for long runs).

    Returns
    -------
    ndarray, shape (nsim,)
    """
    mu = np.asarray(mu, dtype=float)
    k = mu.size
    lam = (grid or LambdaGrid()).values()
    scaled_mu = np.outer(mu, lam)  # (k, G)
    numerator = scaled_mu / (1.0 + scaled_mu)
    denominator = 1.0 / (1.0 + scaled_mu)
    reml = xi is None
    penalty_eigs = mu if reml else np.asarray(xi, dtype=float)
    penalty = np.log1p(np.outer(penalty_eigs, lam)).sum(axis=0)  # (G,)
    n0 = n - p if reml else n
    rest_df = max(n - p - k, 0)
    out = np.empty(nsim)
    label = "exact RLRT" if reml else "exact LRT"
    with Progress(nsim, f"{label}: simulating the null distribution", "draw", progress) as bar:
        for start in range(0, nsim, _CHUNK):
            size = min(_CHUNK, nsim - start)
            rest = rng.chisquare(rest_df, size) if rest_df > 0 else np.zeros(size)
            w2 = rng.chisquare(1.0, (size, k))
            ratio = (w2 @ numerator) / (w2 @ denominator + rest[:, None])
            values = n0 * np.log1p(ratio) - penalty[None, :]
            stat = _first_local_maximum(values)
            if not reml and q > 0:
                extra = rng.chisquare(q, size)
                stat = stat + n * np.log1p(extra / (w2.sum(axis=1) + rest))
            out[start : start + size] = stat
            bar.update(size)
    return out


@dataclass(eq=False)
class ExactLRTResult:
    """An exact (restricted) likelihood-ratio test of one variance component.

    Attributes
    ----------
    statistic : float
        The observed (R)LRT statistic, floored at 0.
    pvalue : float
        Share of simulated statistics above the observed one (strictly, as
        RLRsim); 1 when the observed statistic is 0.
    sample : ndarray
        The simulated null distribution.
    method : {"RLRT", "LRT"}
        Restricted (REML) or ordinary (ML) likelihood ratio.
    n, p, q : int
        Observations, fixed effects, fixed effects tested along (LRT).
    mu, xi : ndarray
        The normalized eigenvalues used (``xi`` empty for the RLRT).
    seed : int or None
    """

    statistic: float
    pvalue: float
    sample: np.ndarray
    method: str
    n: int
    p: int
    q: int = 0
    mu: np.ndarray = field(default_factory=lambda: np.empty(0))
    xi: np.ndarray = field(default_factory=lambda: np.empty(0))
    seed: Any = None

    @property
    def nsim(self) -> int:
        """Number of simulated values."""
        return int(self.sample.size)

    @property
    def prop_zero(self) -> float:
        """Share of the null distribution at exactly 0."""
        return float(np.mean(self.sample == 0))

    def quantile(self, probs: Any) -> np.ndarray:
        """Quantiles of the simulated null distribution (R's type 7).

        Raises
        ------
        TypeError
            When ``probs`` is not a number or numbers.
        ValueError
            When a probability is outside [0, 1] or NaN.
        """
        if probs is None or isinstance(probs, str | bytes | bool | np.bool_):
            raise TypeError(f"probs must be a probability or probabilities, got {probs!r}")
        try:
            values = np.asarray(probs, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(
                f"probs must be a probability or probabilities, got {probs!r}"
            ) from None
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"probs must lie between 0 and 1, got {probs!r}")
        return np.quantile(self.sample, values)

    def __repr__(self) -> str:
        return (
            f"\tsimulated finite sample distribution of {self.method}.\n"
            f"\t(p-value based on {self.nsim} simulated values)\n\n"
            f"{self.method} = {self.statistic:.4g}, p-value = {self.pvalue:.4g}"
        )


def _check_fit(fit: Any, name: str) -> None:
    """``fit`` must be a fitted mixed model of this package (TypeError naming ``name``)."""
    if not hasattr(fit, "theta") or not hasattr(getattr(fit, "model", None), "random_terms"):
        raise TypeError(f"{name} must be a fitted lmer model (LmerResults), got {fit!r}")


def _check_options(grid: Any, progress: Any) -> None:
    if grid is not None and not isinstance(grid, LambdaGrid):
        raise TypeError(f"grid must be a LambdaGrid or None, got {grid!r}")
    if progress is not None:
        check_bool("progress", progress)


def _check_linear_null(m0: Any) -> None:
    """``m0`` of :func:`exact_lrt`: a linear model's fit, without random effects."""
    if hasattr(getattr(m0, "model", None), "random_terms") or hasattr(m0, "cov_re"):
        raise TypeError(
            "m0 must be the fit of a linear model without random effects (e.g. "
            "statsmodels' smf.ols(...).fit()), got a mixed model's fit; to test one "
            "variance component of a larger model use exact_rlrt(m_alt=..., m0=...)"
        )
    if not all(hasattr(m0, name) for name in ("llf", "params", "nobs")):
        raise TypeError(
            "m0 must be the fit of a linear model without random effects (e.g. "
            f"statsmodels' smf.ols(...).fit()), got {m0!r}"
        )


def _single_component(res: Any, role: str) -> Any:
    """The one random term of a model with one variance parameter, or a ValueError."""
    terms = res.model.random_terms
    if len(terms) != 1 or terms[0].n_cols != 1:
        labels = ", ".join(f"({t.lhs} | {t.group})" for t in terms)
        raise ValueError(
            f"{role} must have exactly one random effect with one variance parameter, "
            f"got {labels}; for one component of a larger model fit the model with only "
            "the tested effect (e.g. (0 + x | g)) and pass the full and reduced models"
        )
    return terms[0]


def _refit(res: Any, reml: bool) -> Any:
    if bool(res.reml) == reml:
        return res
    theta = np.asarray(res.theta)
    return res.model.fit(reml=reml, start_theta=theta, initial_step=CLOSE_START_STEP)


def _run(
    res: Any,
    statistic: float,
    reml: bool,
    q: int,
    nsim: int,
    seed: Any,
    grid: LambdaGrid | None,
    progress: bool | None,
) -> ExactLRTResult:
    model = res.model
    term = _single_component(res, "the model")
    mu, xi = null_eigenvalues(model.exog, term.z_matrix(), model.weights)
    if not mu.max() > 0:
        raise ValueError(
            f"the random effect ({term.lhs} | {term.group}) lies in the span of the fixed "
            "effects: its variance cannot be tested"
        )
    n, p = int(model.nobs), int(model.exog.shape[1])
    if reml:
        mu, xi = mu / mu.max(), np.empty(0)
    else:
        mu = mu / max(mu.max(), xi.max())
        xi = xi / max(mu.max(), xi.max())
    rng = random_generator(seed)
    sample = simulate_null(
        mu, n, p, nsim, rng, None if reml else xi, q, grid=grid, progress=progress
    )
    statistic = max(0.0, float(statistic))
    pvalue = float(np.mean(statistic < sample)) if statistic > 0 else 1.0
    if np.quantile(sample, 0.9) == 0:
        warn(
            f"null distribution has mass {np.mean(sample == 0):.3g} at zero",
            HypothesisTestWarning,
        )
    method = "RLRT" if reml else "LRT"
    return ExactLRTResult(statistic, pvalue, sample, method, n, p, q, mu, xi, seed)


def _same_fixed_effects(m_alt: Any, m0: Any) -> None:
    a, b = m_alt.model, m0.model
    same = (
        a.nobs == b.nobs
        and list(a.exog_names) == list(b.exog_names)
        and np.allclose(np.asarray(a.exog), np.asarray(b.exog))
    )
    if not same:
        raise ValueError("m_alt and m0 must have the same data and the same fixed effects")
    extra = len(np.asarray(m_alt.theta)) - len(np.asarray(m0.theta))
    if extra != 1:
        raise ValueError(
            "m_alt must have exactly one variance parameter more than m0 "
            f"(got {extra}); a covariance set to 0 under H0 is not covered by the exact test"
        )


def exact_rlrt(
    res: Any,
    m_alt: Any = None,
    m0: Any = None,
    nsim: int = 10_000,
    seed: Any = None,
    grid: LambdaGrid | None = None,
    progress: bool | None = None,
) -> ExactLRTResult:
    """Exact restricted likelihood-ratio test of one variance component (RLRsim's ``exactRLRT``).

    Parameters
    ----------
    res : LmerResults
        A model with only the tested random effect, one variance parameter
        (``(1 | g)`` or ``(0 + x | g)``); its ``X`` and ``Z`` give the null
        distribution. An ML fit is refitted by REML.
    m_alt, m0 : LmerResults, optional
        To test the effect inside a model with other random effects: the full
        model and the model without the tested effect (same fixed effects,
        one variance parameter fewer). The statistic is then
        ``2 (llf_REML(m_alt) - llf_REML(m0))``; the null distribution stays that
        of ``res`` (Greven et al. 2008's approximation, as RLRsim). Without
        them the null model is the linear model with the same fixed effects.
    nsim : int
        Number of simulated values.
    seed : int or numpy.random.Generator, optional
    grid : LambdaGrid, optional
        The grid over the variance ratio (RLRsim's defaults).
    progress : bool or None
        Progress bar for the simulation (None: the package setting).

    Returns
    -------
    ExactLRTResult

    Raises
    ------
    TypeError
        When ``res``, ``m_alt`` or ``m0`` is not a fitted lmer model, or ``grid``
        not a :class:`LambdaGrid`.
    ValueError
        When ``res`` has more than one variance parameter, only one of
        ``m_alt`` and ``m0`` is given, or they do not differ by one variance
        parameter with the same fixed effects.
    """
    nsim = check_count("nsim", nsim)
    _check_fit(res, "res")
    for fit, name in ((m_alt, "m_alt"), (m0, "m0")):
        if fit is not None:
            _check_fit(fit, name)
    _check_options(grid, progress)
    random_generator(seed)  # checked before the refits
    if (m_alt is None) != (m0 is None):
        raise ValueError("give both m_alt (the full model) and m0 (without the tested effect)")
    _single_component(res, "the model")
    fit = _refit(res, reml=True)
    if m_alt is None:
        statistic = fit.model.devfun(reml=True)(np.zeros(1)) - fit.reml_criterion
    else:
        _same_fixed_effects(m_alt, m0)
        alt, null = _refit(m_alt, reml=True), _refit(m0, reml=True)
        statistic = null.reml_criterion - alt.reml_criterion
    return _run(fit, statistic, True, 0, nsim, seed, grid, progress)


def exact_lrt(
    res: Any,
    m0: Any = None,
    nsim: int = 10_000,
    seed: Any = None,
    grid: LambdaGrid | None = None,
    progress: bool | None = None,
) -> ExactLRTResult:
    """Exact likelihood-ratio test of one variance component (RLRsim's ``exactLRT``).

    Parameters
    ----------
    res : LmerResults
        A model with one random effect with one variance parameter; a REML
        fit is refitted by ML (RLRsim instead evaluates the ML likelihood at
        the REML estimates).
    m0 : statsmodels results of a linear model, optional
        The null model (e.g. ``smf.ols(...).fit()``) on the same rows, with
        the same or fewer fixed effects (``q`` = the number dropped, tested
        along with the variance). Default: the linear model with the same
        fixed effects (``q = 0``).
    nsim, seed, grid, progress
        As :func:`exact_rlrt`.

    Returns
    -------
    ExactLRTResult

    Raises
    ------
    TypeError
        When ``m0`` is not the fit of a linear model without random effects
        (a fit of ``lmer`` or MixedLM included), or another argument has the
        wrong type.
    """
    nsim = check_count("nsim", nsim)
    _check_fit(res, "res")
    if m0 is not None:
        _check_linear_null(m0)
    _check_options(grid, progress)
    random_generator(seed)  # checked before the refit
    _single_component(res, "the model")
    fit = _refit(res, reml=False)
    p = int(fit.model.exog.shape[1])
    if m0 is None:
        statistic, q = fit.model.devfun(reml=False)(np.zeros(1)) - fit.deviance, 0
    else:
        if int(m0.nobs) != int(fit.model.nobs):
            raise ValueError(f"m0 has {int(m0.nobs)} observations, the model {int(fit.model.nobs)}")
        q = p - len(np.asarray(m0.params))
        if q < 0:
            raise ValueError("m0 must not have more fixed effects than the model")
        statistic = 2.0 * (float(fit.llf) - float(m0.llf))
    return _run(fit, statistic, False, q, nsim, seed, grid, progress)
