"""simulate(newdata=, newparams=): other rows and other parameters, as lme4's simulate.

The moments of the simulated responses are checked against the model's own formulas
(mean ``X beta + offset``, covariance ``Z Sigma Z' + sigma^2 / w`` within the levels) on
4,000 draws, with tolerances of several Monte Carlo standard errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import DataError

NSIM = 4000


@pytest.fixture(scope="module")
def weighted():
    data = sml.datasets.load("sleepstudy")
    rng = np.random.default_rng(7)
    data = data.assign(w=rng.uniform(0.5, 2.0, len(data)), z=rng.normal(0, 5, len(data)))
    return sml.lmer("Reaction ~ Days + (Days | Subject)", data, weights="w", offset="z")


def design(subjects, days=5, seed=0):
    rng = np.random.default_rng(seed)
    n = days * len(subjects)
    return pd.DataFrame(
        {
            "Days": np.tile(np.arange(days, dtype=float), len(subjects)),
            "Subject": np.repeat(subjects, days),
            "w": rng.uniform(0.5, 3.0, n),
            "z": rng.normal(0.0, 10.0, n),
        },
        index=[f"r{i}" for i in range(n)],
    )


def implied_moments(res, rows, theta=None, sigma=None, beta=None):
    """Mean and covariance of the responses of ``rows`` under the model (by hand)."""
    beta = np.asarray(res.params) if beta is None else np.asarray(beta)
    sigma = res.sigma if sigma is None else sigma
    X = np.column_stack([np.ones(len(rows)), rows["Days"].to_numpy()])
    T = res.model.random_terms[0].factor(np.asarray(res.theta if theta is None else theta))
    Sigma = sigma**2 * T @ T.T
    same = rows["Subject"].to_numpy()[:, None] == rows["Subject"].to_numpy()[None, :]
    cov = np.where(same, X @ Sigma @ X.T, 0.0) + np.diag(sigma**2 / rows["w"].to_numpy())
    return X @ beta + rows["z"].to_numpy(), cov


def check_moments(sims, mean, cov):
    values = sims.to_numpy()
    se = np.sqrt(np.diag(cov) / values.shape[1])
    assert np.max(np.abs(values.mean(axis=1) - mean) / se) < 4.5
    empirical = np.cov(values)
    # the sampling SD of a covariance estimate is about sqrt((s_ii s_jj + s_ij^2) / N)
    scale = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / values.shape[1])
    assert np.max(np.abs(empirical - cov) / scale) < 5.0


def test_new_rows_have_the_models_mean_and_covariance(weighted):
    rows = design(["new1", "new2", "308"])
    sims = weighted.simulate(NSIM, seed=11, newdata=rows)
    assert list(sims.index) == list(rows.index) and sims.shape == (len(rows), NSIM)
    check_moments(sims, *implied_moments(weighted, rows))


def test_newparams_replace_the_estimates(weighted):
    rows = design(["a", "b"], seed=1)
    new = {"beta": {"Days": 0.0}, "theta": [0.5, 0.1, 0.2], "sigma": 10.0}
    sims = weighted.simulate(NSIM, seed=12, newdata=rows, newparams=new)
    beta = [weighted.params["Intercept"], 0.0]
    check_moments(sims, *implied_moments(weighted, rows, [0.5, 0.1, 0.2], 10.0, beta))
    exact = weighted.simulate(
        2, seed=1, newdata=rows, newparams={"beta": [100.0, 3.0], "theta": [0, 0, 0], "sigma": 1e-9}
    )
    expected = 100.0 + 3.0 * rows["Days"] + rows["z"]
    np.testing.assert_allclose(exact["sim_2"], expected, atol=1e-6)


def test_newparams_on_the_fitted_rows(weighted):
    sims = weighted.simulate(1, seed=3, newparams={"theta": [0, 0, 0], "sigma": 1e-9})
    np.testing.assert_allclose(sims["sim_1"], weighted.predict(re_formula="0"), atol=1e-6)


def test_conditioned_terms_keep_the_estimates_of_known_levels(weighted):
    rows = design(["308", "309", "new"], seed=2)
    with pytest.raises(DataError, match="allow_new_levels=True to draw new levels anew"):
        weighted.simulate(2, seed=1, newdata=rows, use_u=True)
    sims = weighted.simulate(NSIM, seed=13, newdata=rows, use_u=True, allow_new_levels=True)
    known = rows["Subject"] != "new"
    mean, cov = implied_moments(weighted, rows)
    # known subjects: the prediction with their estimated effects plus residual noise
    predicted = weighted.predict(rows[known])
    residual = weighted.sigma**2 / rows.loc[known, "w"].to_numpy()
    check_moments(sims[known], predicted, np.diag(residual))
    # the new subject: drawn from the model's covariance
    check_moments(sims[~known], mean[~known.to_numpy()], cov[np.ix_(~known, ~known)])


def test_rows_with_missing_values_give_nan(weighted):
    rows = design(["a"], seed=3)
    rows.loc["r1", "Days"] = np.nan
    sims = weighted.simulate(3, seed=1, newdata=rows)
    assert sims.loc["r1"].isna().all() and sims.drop(index="r1").notna().all().all()


def test_the_same_seed_gives_the_same_simulations(weighted):
    rows = design(["a", "308"], seed=4)
    first = weighted.simulate(5, seed=99, newdata=rows)
    pd.testing.assert_frame_equal(first, weighted.simulate(5, seed=99, newdata=rows))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"newparams": {"slope": 1.0}}, ValueError, "unknown keys"),
        ({"newparams": {"beta": [1.0]}}, ValueError, "needs 2 values"),
        ({"newparams": {"beta": {"days": 1.0}}}, KeyError, "not fixed effects"),
        ({"newparams": {"theta": [-1.0, 0.0, 1.0]}}, ValueError, "at least 0"),
        ({"newparams": {"theta": [1.0, 0.0]}}, ValueError, "needs 3 values"),
        ({"newparams": {"sigma": 0.0}}, ValueError, "positive"),
        ({"newparams": {"sigma": 2.0}, "use_u": True}, ValueError, "cannot be combined"),
        ({"newdata": {"Days": [1.0]}}, TypeError, "pandas DataFrame"),
    ],
)
def test_bad_arguments_are_named(weighted, kwargs, error, match):
    with pytest.raises(error, match=match):
        weighted.simulate(1, seed=1, **kwargs)


def test_new_rows_need_weights_when_the_model_took_an_array():
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (1 | Subject)", data, weights=np.ones(len(data)))
    rows = design(["x"])
    with pytest.raises(DataError, match="weights"):
        res.simulate(1, newdata=rows)
    sims = res.simulate(1, seed=1, newdata=rows, weights=np.full(len(rows), 2.0))
    assert sims.notna().all().all()


def test_weights_and_offset_without_newdata_are_refused(weighted):
    """They were ignored without a word (the fitted rows keep the model's)."""
    with pytest.raises(ValueError, match="for the rows of newdata"):
        weighted.simulate(1, offset=np.full(180, 1000.0))


def test_theta_as_a_mapping_by_name(weighted):
    names = weighted.model.theta_names
    rows = design(["a"], seed=5)
    by_name = weighted.simulate(
        3, seed=8, newdata=rows, newparams={"theta": dict(zip(names, [1, 0, 0.5]))}
    )
    by_order = weighted.simulate(3, seed=8, newdata=rows, newparams={"theta": [1, 0, 0.5]})
    pd.testing.assert_frame_equal(by_name, by_order)
    with pytest.raises(KeyError, match="needs exactly the names"):
        weighted.simulate(1, newdata=rows, newparams={"theta": {names[0]: 1.0}})


def test_a_model_built_from_arrays_predicts_its_rows_and_refuses_others():
    data = sml.datasets.load("sleepstudy")
    built = sml.lmer("Reaction ~ Days + (1 | Subject)", data).model
    res = sml.Lmer(np.asarray(built.endog), np.asarray(built.exog), built.random_terms).fit()
    np.testing.assert_allclose(res.predict(), res.fittedvalues, rtol=1e-12)
    np.testing.assert_allclose(res.predict(re_formula="0"), built.exog @ res.params, rtol=1e-12)
    for call in (lambda: res.predict(data.head(3)), lambda: res.simulate(1, newdata=data.head(3))):
        with pytest.raises(DataError, match="built from arrays"):
            call()


def test_refit_keeps_the_optimizer_the_fit_asked_for():
    """The docstring said so; refits of a Nelder-Mead fit ran BOBYQA."""
    data = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", data, method="nelder-mead")
    again = res.refit(data["Reaction"] * 1.01)
    assert again.optinfo["optimizer"] == "nelder-mead"
    default = sml.lmer("Reaction ~ Days + (Days | Subject)", data)
    assert default.refit(data["Reaction"]).optinfo["optimizer"] == default.optinfo["optimizer"]
