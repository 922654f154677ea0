"""Stateful transforms learn on every row where their input is present, as in R.

R's model frame evaluates ``scale(x)`` or ``ns(x, df = 3)`` on all rows of the
data, before rows with a missing value in another column are dropped and
before ``subset``; lme4's coefficients, predictions and lmerTest's type III
table follow from those statistics (tests/fixtures/transform_rows.json from
tests/fixtures/make_transform_rows_fixtures.R). The in-memory and Dask paths
learn the same statistics.
"""

from __future__ import annotations

import json
import pickle
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import statsmodels_lmer as sml
from statsmodels_lmer.exceptions import FormulaError
from statsmodels_lmer.transforms import BSpline, OrthogonalPolynomial

RTOL = 1e-7  # objectives and estimates at separate optima (BOBYQA/L-BFGS-B and lme4)


@cache
def reference() -> dict:
    return json.loads((FIXTURES / "transform_rows.json").read_text())


@cache
def data() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "data" / "transform_rows.csv")


def new_rows() -> pd.DataFrame:
    return data().iloc[[0, 1, 10, 39, 76, 149]]


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def r_name(name: str) -> str:
    """Our name of an lme4 coefficient of these formulas."""
    name = name.replace("(Intercept)", "Intercept").replace("scale(x, scale = FALSE)", "center(x)")
    name = name.replace("ns(x, df = 3)", "ns(x, df=3)")
    for level in "abc":
        name = name.replace(f"f{level}", f"f[T.{level}]")
    if name.startswith("ns(x, df=3)"):
        name = f"ns(x, df=3)[{int(name[-1]) - 1}]"
    return name


CASES = {
    "fixed": ("y ~ scale(x) + z + (1 | g)", {}),
    "subset": ("y ~ scale(x) + (1 | g)", {"subset": "x > 4"}),
    "spline": ("y ~ ns(x, df=3) + z + (1 | g)", {}),
    "random": ("y ~ z + (scale(x) | g)", {}),
    "type3": ("y ~ center(x) * f + z + (1 | g)", {}),
}


@cache
def fitted(name: str):
    formula, kwargs = CASES[name]
    kwargs = dict(kwargs)
    if "subset" in kwargs:
        kwargs["subset"] = data().eval(kwargs["subset"]).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits in some cases, as lme4's
        return sml.lmer(formula, data(), **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_fit_as_lme4(name):
    case, res = reference()[name], fitted(name)
    expected = pd.Series(case["fixef"], index=[r_name(n) for n in case["fixef_names"]])
    assert res.nobs == case["nobs"]
    assert res.objective <= case["objective"] * (1 + RTOL)
    assert rel(res.objective, case["objective"]) < RTOL
    assert rel(res.fe_params[expected.index], expected) < 1e-5  # the optimizers' tolerance
    at_lme4 = res.model.results_at(case["theta"])
    assert rel(at_lme4.fe_params[expected.index], expected) < 1e-9
    assert rel(at_lme4.objective, case["objective"]) < 1e-10


@pytest.mark.parametrize("name", ["fixed", "spline", "random"])
def test_predictions_as_lme4(name):
    case, res = reference()[name], fitted(name)
    at_lme4 = res.model.results_at(case["theta"])
    got = at_lme4.predict(new_rows())
    expected = np.array([np.nan if v is None else v for v in case["predict"]], dtype=float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    keep = ~np.isnan(expected)
    assert rel(np.asarray(got)[keep], expected[keep]) < 1e-9
    if "predict_population" in case:
        population = at_lme4.predict(new_rows(), re_formula=np.nan)
        expected = np.array(case["predict_population"], dtype=float)
        assert rel(np.asarray(population)[keep], expected[keep]) < 1e-9


def test_type3_table_as_lmertest():
    case, res = reference()["type3"], fitted("type3")
    table = res.model.results_at(case["theta"]).anova(type=3)
    names = {"center(x)": "scale(x, scale = FALSE)", "center(x):f": "scale(x, scale = FALSE):f"}
    order = [case["terms"].index(names.get(term, term)) for term in table.index]
    assert rel(table["F"], np.array(case["F"])[order]) < 1e-8
    assert (
        rel(table["DenDF"], np.array(case["DenDF"])[order]) < 1e-4
    )  # lmerTest's numerical Hessian


def test_statistics_survive_pickling_and_refits():
    res = fitted("fixed")
    loaded = pickle.loads(pickle.dumps(res))
    np.testing.assert_allclose(loaded.predict(new_rows()), res.predict(new_rows()), rtol=1e-12)
    updated = res.update(". ~ . - z")  # the fitted rows, with the model's statistics of x
    x = data()["x"]
    spec = updated.model.data.model_spec
    (state,) = [i.state for f, i in spec.factor_infos.items() if f.code == "scale(x)"]
    (transform,) = state["transforms"].values()
    assert transform.count == x.notna().sum()
    assert transform.mean[0] == pytest.approx(x.mean(), rel=1e-14)


def test_complete_data_unchanged():
    # no row left out: the design is patsy's own (nothing learned again)
    complete = data().dropna().reset_index(drop=True)
    res = sml.lmer("y ~ scale(x) + (1 | g)", complete)
    assert res.model.data.transform_data is None
    x = complete["x"]
    scaled = res.model.exog[:, 1] if isinstance(res.model.exog, np.ndarray) else None
    assert scaled is not None
    np.testing.assert_allclose(scaled, (x - x.mean()) / x.std(), rtol=1e-12)


def test_dask_learns_the_same_statistics():
    dd = pytest.importorskip("dask.dataframe")
    dask = pytest.importorskip("dask")
    formula, _ = CASES["random"]
    with dask.config.set(scheduler="synchronous"):
        partitioned = sml.Lmer.from_formula(formula, dd.from_pandas(data(), npartitions=4))
        theta = reference()["random"]["theta"]
        memory = fitted("random").model.results_at(theta)
        assert rel(partitioned.results_at(theta).objective, memory.objective) < 1e-12


BASES = {
    "df4": {"df": 4},
    "knots_degree2": {"knots": [3.0, 7.0], "degree": 2},
    "df5_intercept": {"df": 5, "intercept": True},
}


@pytest.mark.parametrize("name", list(BASES))
def test_bs_basis_is_rs_also_beyond_the_boundary_knots(name):
    # patsy's bs refused points outside the boundary knots; R continues each
    # column as its Taylor polynomial about a point inside
    case = reference()["bs_basis"]
    grid, at = np.linspace(0, 10, 50), np.array(case["at"])
    transform = BSpline()
    transform.memorize_chunk(grid)
    transform.memorize_finish()
    transform.transform(grid, **BASES[name])
    got = transform.transform(at, **BASES[name])
    expected = np.array(case[name]["values"]).reshape(len(at), case[name]["columns"])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.isnan(transform.transform(np.array([np.nan, 1.0]), **BASES[name])[0]).all()


def test_bs_model_predicts_beyond_the_data_as_lme4():
    case = reference()["bs_model"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ bs(x, df=4) + z + (1 | g)", data())
    assert rel(res.objective, case["objective"]) < RTOL
    far = pd.DataFrame({"x": [-3, 0.5, 12, 15], "z": 0.0, "g": ["g01", "g02", "g03", "g04"]})
    got = res.model.results_at(case["theta"]).predict(far)
    assert rel(got, case["predict"]) < 1e-9


def test_poly_is_rs_orthogonal_polynomials():
    case = reference()["poly_basis"]
    grid, at = np.linspace(0, 10, 50), np.array(case["at"])
    transform = OrthogonalPolynomial()
    transform.memorize_chunk(grid)
    np.testing.assert_allclose(
        transform.transform(grid, 3), np.reshape(case["fitted"], (50, 3)), atol=1e-13
    )
    np.testing.assert_allclose(
        transform.transform(at, 3), np.reshape(case["new"], (-1, 3)), rtol=1e-11
    )
    raw = OrthogonalPolynomial().transform(at, degree=2, raw=True)
    np.testing.assert_array_equal(raw, np.column_stack([at, at**2]))


def test_poly_growth_model_as_lme4():
    case = reference()["poly_model"]
    rows = data()[data()["x"].notna()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sml.lmer("y ~ poly(x, 2) + z + (poly(x, 1) | g)", rows)
    assert res.nobs == case["nobs"]
    assert res.objective <= case["objective"] * (1 + RTOL)
    at_lme4 = res.model.results_at(case["theta"])
    assert rel(at_lme4.fe_params, case["fixef"]) < 1e-9
    far = pd.DataFrame({"x": [-3, 0.5, 12, 15], "z": 0.0, "g": ["g01", "g02", "g03", "g04"]})
    assert rel(at_lme4.predict(far), case["predict"]) < 1e-9


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ poly(x, z, 2) + (1 | g)", "one variable"),
        ("y ~ poly(x, 0) + (1 | g)", "at least 1"),
        ("y ~ poly(g2, 3) + (1 | g)", "distinct values"),
    ],
)
def test_poly_refuses_what_it_cannot_do(formula, match):
    rows = data().assign(g2=np.repeat([1.0, 2.0], 80))
    with pytest.raises(FormulaError, match=match):
        sml.lmer(formula, rows)
