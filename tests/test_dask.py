"""Fits from a Dask DataFrame on a LocalCluster against the in-memory fits.

The engine is compared at a common theta (the in-memory optimum), where the
blocks summed over partitions must give the in-memory numbers to rounding:
estimates, objective, Satterthwaite and Kenward-Roger df, anova, ranef,
fitted values, the summary text. The optimizations themselves are compared
to the optimizer's tolerance: the sums of partitions differ from one sum over
all rows in the last bits, and BOBYQA's path depends on those bits.
"""

from __future__ import annotations

import pickle
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import statsmodels_lmer as sml
from statsmodels_lmer.data_checks import ColumnMagnitudes
from statsmodels_lmer.distributed import dask_fit
from statsmodels_lmer.distributed.design import DesignLearner, evaluate_designs, stage_summary
from statsmodels_lmer.distributed.partition import BarPlan
from statsmodels_lmer.engine.blocks import raw_sums
from statsmodels_lmer.exceptions import (
    DataError,
    FormulaError,
    ResponseTypeError,
    UnknownColumnError,
)
from statsmodels_lmer.terms import RandomTerm

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

ENGINE_RTOL = 1e-10  # sums over partitions vs one sum: rounding only
OPTIMUM_OBJECTIVE_ATOL = 1e-6  # two BOBYQA runs on objectives equal to ~1e-14 relative
OPTIMUM_THETA_ATOL = 1e-3  # ... whose optima agree to the optimizer's tolerance


@pytest.fixture(scope="module")
def client():
    with (
        warnings.catch_warnings(),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        warnings.simplefilter("ignore", ResourceWarning)
        yield client


def make_data(n: int = 2400, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, 50, n)
    g2 = rng.choice([f"s{i:02d}" for i in range(15)], n)
    school = rng.integers(0, 25, n)
    frame = pd.DataFrame(
        {
            "g1": g1,
            "g2": g2,
            "school": school,
            "cls": rng.integers(0, 4, n),
            "x": rng.normal(2.0, 1.5, n),
            "f": pd.Categorical(rng.choice(["lo", "mid", "hi"], n), ["lo", "mid", "hi", "unused"]),
            "w": rng.uniform(0.5, 2.0, n),
            "off": rng.normal(0, 0.1, n),
        }
    )
    effects = rng.normal(size=50)[g1] + rng.normal(size=15)[[int(s[1:]) for s in g2]]
    slopes = 0.3 * rng.normal(size=50)[g1] * frame["x"]
    frame["y"] = 1 + 0.5 * frame["x"] + effects + slopes + rng.normal(size=n)
    frame.loc[rng.choice(n, 30, replace=False), "x"] = np.nan
    frame.loc[rng.choice(n, 12, replace=False), "g2"] = None
    return frame


def uneven(frame: pd.DataFrame, sizes: list[int]):
    """A Dask DataFrame with partitions of the given numbers of rows."""
    cuts = np.cumsum([0] + sizes)
    assert cuts[-1] == len(frame)
    divisions = [frame.index[c] for c in cuts[:-1]] + [frame.index[-1]]
    return dd.from_pandas(frame, npartitions=1).repartition(divisions=divisions)


@pytest.fixture(scope="module")
def data():
    frame = make_data()
    return frame, uneven(frame, [97, 1403, 11, 889])


MODELS = {
    "crossed": ("y ~ x + f + (1|g1) + (1|g2)", {}),
    "weights_offset": ("y ~ x * f + (1|g1) + (1|g2)", {"weights": "w", "offset": "off"}),
    "slopes_center": ("y ~ center(x) + (x|g1)", {}),
    "nested_ml": ("y ~ standardize(x) + f + (1|school/cls)", {"REML": False}),
}


@pytest.fixture(scope="module")
def fits(client, data):
    frame, ddf = data
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits warn both ways
        for name, (formula, kwargs) in MODELS.items():
            out[name] = (sml.lmer(formula, frame, **kwargs), sml.lmer(formula, ddf, **kwargs))
    return out


def at_theta(res, theta):
    return res.model.results_at(theta, reml=res.reml)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# -- without Dask: the pieces --------------------------------------------------------------
def test_raw_sums_of_parts_add_up():
    model = sml.Lmer.from_formula("y ~ x + (x|g1) + (1|g2)", make_data().dropna())
    terms = [model.random_terms[i] for i in model.engine_order]
    X, y = np.asarray(model.exog), np.asarray(model.endog)
    whole = raw_sums(terms, X, y)
    cut = 1000
    parts = [
        raw_sums([_rows(t, sl) for t in terms], X[sl], y[sl])
        for sl in (slice(0, cut), slice(cut, None))
    ]
    total = parts[0] + parts[1]
    np.testing.assert_allclose(total.a11, whole.a11, rtol=1e-13)
    np.testing.assert_allclose(total.a_rr.toarray(), whole.a_rr.toarray(), rtol=1e-12)
    np.testing.assert_allclose(total.a_r1.toarray(), whole.a_r1.toarray(), rtol=1e-12)
    assert np.array_equal(total.a_r1.indices, whole.a_r1.indices)  # same stored entries
    assert total.nobs == whole.nobs


def _rows(term, sl):
    return RandomTerm(
        term.label, term.group, term.column_names, term.codes[sl], term.levels, term.Z[sl]
    )


def test_design_learned_from_chunks_is_patsys():
    import patsy

    frame = make_data().dropna()
    frame["b"] = frame["x"] > 2
    formula = "y ~ center(x) + standardize(center(x)) + f*x + C(g2, Sum) + b + np.log(x**2)"
    env = patsy.EvalEnvironment([{"np": np}])
    chunks = [frame.iloc[:10], frame.iloc[10:1500], frame.iloc[1500:]]
    learner = DesignLearner([formula], env, frame.columns)
    assert learner.n_stages == 3  # standardize(center(x)) memorizes in two passes
    while not learner.done:
        plan = pickle.loads(pickle.dumps(learner.plan()))
        summaries = [stage_summary(plan, {c: chunk[c] for c in chunk}) for chunk in chunks]
        learner.absorb(summaries[0] + summaries[1] + summaries[2])
    specs = pickle.loads(pickle.dumps(learner.specs(learner.designs(frame.iloc[:0]))))
    designs = [spec.build() for spec in specs]
    # as the in-memory model frame, the learned design drops f's unused category
    used = frame.assign(f=frame["f"].cat.remove_unused_categories())
    _, X = patsy.dmatrices(formula, used, eval_env=env)
    assert designs[1].column_names == X.design_info.column_names
    assert "f[T.unused]" not in designs[1].column_names
    parts = [evaluate_designs(designs, {c: ch[c] for c in ch}, len(ch))[1] for ch in chunks]
    np.testing.assert_allclose(np.vstack(parts), np.asarray(X), rtol=1e-12, atol=1e-12)


def test_magnitude_summaries_of_parts_add_up():
    rng = np.random.default_rng(5)
    columns = {"a": rng.normal(size=300) * 1e160, "b": rng.normal(size=300), "z": np.zeros(300)}
    weights = rng.uniform(0.5, 2.0, 300)
    whole = ColumnMagnitudes.of(columns, weights)
    parts = [
        ColumnMagnitudes.of({k: v[sl] for k, v in columns.items()}, weights[sl])
        for sl in (slice(0, 7), slice(7, 7), slice(7, None))  # an empty part too
    ]
    total = parts[0] + parts[1] + parts[2]
    for weighted in (True, False):
        np.testing.assert_allclose(
            total.log10_rms(weighted), whole.log10_rms(weighted), rtol=1e-13, equal_nan=True
        )
    assert total.weight_sum == pytest.approx(float(weights.sum()), rel=1e-13)
    with pytest.raises(DataError, match=r"^a has values of magnitude about 1e160"):
        total.check()


def test_transforms_that_need_all_rows_are_refused():
    import patsy

    with pytest.raises(FormulaError, match="bs"):
        DesignLearner(["y ~ bs(x, df=4)"], patsy.EvalEnvironment([{}]), ["x", "y"])


# -- fits on the cluster ---------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_fit_equals_in_memory(fits, name):
    memory, dask = fits[name]
    assert dask.nobs == memory.nobs and dask.model.n_dropped == memory.model.n_dropped
    assert list(dask.params.index) == list(memory.params.index)
    assert abs(dask.objective - memory.objective) < OPTIMUM_OBJECTIVE_ATOL
    np.testing.assert_allclose(dask.theta, memory.theta, atol=OPTIMUM_THETA_ATOL)
    same = at_theta(dask, memory.theta)
    assert rel(same.objective, memory.objective) < ENGINE_RTOL
    assert rel(same.params, memory.params) < ENGINE_RTOL
    assert rel(same.bse, memory.bse) < ENGINE_RTOL
    # Satterthwaite's df come from finite differences of the deviance, which
    # magnify its rounding: agreement to 1e-6 rather than 1e-10
    assert rel(same.ddf, memory.ddf) < 1e-6
    assert rel(same.anova()["F"], memory.anova()["F"]) < ENGINE_RTOL
    for group, table in memory.ranef.items():
        np.testing.assert_allclose(same.ranef[group], table, rtol=1e-9, atol=1e-12)
        assert list(same.ranef[group].index) == list(table.index)


@pytest.mark.parametrize("name", ["crossed", "slopes_center"])
def test_kenward_roger_df(fits, name):
    memory, dask = fits[name]
    same = at_theta(dask, memory.theta)
    kr_dask, kr_memory = same.coef_table("kenward-roger"), memory.coef_table("kenward-roger")
    assert rel(kr_dask["df"], kr_memory["df"]) < 1e-9
    assert rel(kr_dask["std_err"], kr_memory["std_err"]) < ENGINE_RTOL


def test_row_level_results_are_lazy(fits):
    memory, dask = fits["weights_offset"]
    same, ref = at_theta(dask, memory.theta), at_theta(memory, memory.theta)
    fitted = same.fittedvalues
    assert type(fitted).__module__.startswith("dask")
    values = fitted.compute()
    assert list(values.index) == list(ref.model.data.row_labels)
    np.testing.assert_allclose(values.to_numpy(), np.asarray(ref.fittedvalues), rtol=1e-11)
    np.testing.assert_allclose(same.resid.compute(), np.asarray(ref.resid), atol=1e-11)
    pearson = same.residuals(type="pearson", scaled=True, marginal=True).compute()
    expected = ref.residuals(type="pearson", scaled=True, marginal=True)
    np.testing.assert_allclose(pearson.to_numpy(), np.asarray(expected), atol=1e-11)


@pytest.mark.parametrize("name", ["crossed", "nested_ml"])
def test_summary_text_is_the_same(fits, name):
    memory, dask = fits[name]
    same, ref = at_theta(dask, memory.theta), at_theta(memory, memory.theta)
    assert same.summary().as_text() == ref.summary().as_text()


def test_predict_on_a_dask_frame(fits, data):
    frame, _ = data
    memory, dask = fits["crossed"]
    same, ref = at_theta(dask, memory.theta), at_theta(memory, memory.theta)
    new = frame.iloc[:300].copy()
    new.loc[new.index[:5], "g2"] = "new level"
    new.loc[new.index[5:8], "g1"] = None  # a missing grouping value: a new level (lme4)
    expected = ref.predict(new, allow_new_levels=True)
    assert np.all(np.isfinite(expected[5:8]))
    got = same.predict(uneven(new, [120, 180]), allow_new_levels=True)
    assert type(got).__module__.startswith("dask")
    np.testing.assert_allclose(got.compute().to_numpy(), expected, atol=1e-11)  # NaN where missing
    assert np.isnan(same.predict(uneven(new.iloc[5:10], [5])).compute().to_numpy()[:3]).all()
    with pytest.raises(DataError, match="not seen in fitting"):
        same.predict(uneven(new, [120, 180])).compute()
    population = same.predict(uneven(new, [300]), re_formula="0").compute()
    np.testing.assert_allclose(population.to_numpy(), ref.predict(new, re_formula="0"))


def test_predict_matches_levels_by_value_and_adds_the_offset(fits, data):
    frame, _ = data
    memory, dask = fits["weights_offset"]
    same, ref = at_theta(dask, memory.theta), at_theta(memory, memory.theta)
    assert same.ranef["g1"].index.dtype == ref.ranef["g1"].index.dtype == np.int64
    new = frame.iloc[:200].assign(g1=frame["g1"].iloc[:200].astype(str))  # "3" is level 3
    expected = ref.predict(new)
    got = same.predict(uneven(new, [50, 150])).compute()
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-11)
    zero = same.predict(uneven(new.assign(none=0.0), [200]), offset="none").compute()
    np.testing.assert_allclose(zero.to_numpy(), ref.predict(new, offset=np.zeros(200)), atol=1e-11)
    with pytest.raises(TypeError, match="name of a column"):
        same.predict(uneven(new, [200]), offset=np.zeros(200))


def test_pickled_fit_keeps_its_rows_on_the_cluster(fits):
    _, dask = fits["crossed"]
    loaded = pickle.loads(pickle.dumps(dask))
    np.testing.assert_array_equal(loaded.params, dask.params)
    assert loaded.objective == dask.objective
    np.testing.assert_allclose(loaded.fittedvalues.compute(), dask.fittedvalues.compute())
    with pytest.raises(TypeError, match="stay on the cluster"):
        loaded.simulate()


def test_refits_read_the_cluster(fits):
    memory, dask = fits["crossed"]
    table_dask, table_memory = dask.ranova(), memory.ranova()
    np.testing.assert_allclose(table_dask["LRT"], table_memory["LRT"], rtol=1e-5, atol=1e-5)
    reduced = dask.update("y ~ x + (1|g1) + (1|g2)")
    compared = sml.anova(reduced, dask)
    assert compared["df"].iloc[-1] == 2


def test_unknown_categories_are_read_as_values(client, data):
    frame, ddf = data
    as_values = frame.assign(g2=frame["g2"].astype("category"))
    unknown = ddf.assign(g2=ddf["g2"].astype("category").cat.as_unknown())
    assert not unknown["g2"].cat.known
    memory = sml.lmer("y ~ x + (1|g1) + (1|g2)", as_values)
    dask = sml.lmer("y ~ x + (1|g1) + (1|g2)", unknown)
    assert list(dask.ranef["g2"].index) == list(memory.ranef["g2"].index)
    assert abs(dask.objective - memory.objective) < OPTIMUM_OBJECTIVE_ATOL


def test_aliased_and_dropped_columns(client, data):
    frame, ddf = data
    frame = frame.assign(x2=2 * frame["x"])
    ddf = ddf.assign(x2=2 * ddf["x"])
    with pytest.warns(UserWarning, match="rank deficient"):
        memory = sml.Lmer.from_formula("y ~ x + x2 + f + (1|g1)", frame, drop_cols=["f[T.mid]"])
    with pytest.warns(UserWarning, match="rank deficient"):
        dask = sml.Lmer.from_formula("y ~ x + x2 + f + (1|g1)", ddf, drop_cols=["f[T.mid]"])
    assert dask.exog_names == memory.exog_names
    # f's unused category is not coded at all (as R's model frame drops unused levels)
    assert dask.dropped_columns == memory.dropped_columns == ["x2"]
    assert "f[T.unused]" not in dask.exog_names + memory.exog_names
    assert dask.k_constant == memory.k_constant == 1
    theta = memory.fit().theta
    assert rel(dask.results_at(theta).params, memory.results_at(theta).params) < ENGINE_RTOL


def test_scale_warning(client, data):
    _, ddf = data
    with pytest.warns(UserWarning, match="very different scales"):
        sml.Lmer.from_formula("y ~ I(1e5 * x) + (1|g1)", ddf)


def test_formula_modes_as_in_memory(client, data):
    """Odd column names quoted, restricted formulas and MixedLM's keywords, as in memory."""
    frame, ddf = data
    odd = {"x": "x.1", "g1": "class"}
    cases = [
        ("y ~ x.1 + (1|class)", frame.rename(columns=odd), ddf.rename(columns=odd), {}),
        ("y ~ np.log(w) + x + (1|g1)", frame, ddf, {"restricted": True}),
        ("y ~ x", frame, ddf, {"groups": "g1", "re_formula": "~x"}),
        ("y ~ x", frame, ddf, {"groups": "g1", "vc_formula": {"g2": "0 + C(g2)"}}),
    ]
    for formula, memory_data, dask_data, kwargs in cases:
        memory = sml.Lmer.from_formula(formula, memory_data, **kwargs)
        dask = sml.Lmer.from_formula(formula, dask_data, **kwargs)
        assert dask.exog_names == memory.exog_names
        assert [t.label for t in dask.random_terms] == [t.label for t in memory.random_terms]
        theta = memory.fit().theta
        assert rel(dask.results_at(theta).objective, memory.results_at(theta).objective) < 1e-10
        assert dask.restricted == memory.restricted
    assert dask.mixedlm_spec == memory.mixedlm_spec


def test_methods_that_need_the_rows_are_refused(fits):
    _, dask = fits["crossed"]
    with pytest.raises(TypeError, match="stay on the cluster"):
        dask.get_prediction()
    with pytest.raises(TypeError, match="stay on the cluster"):
        dask.get_robustcov_results("cluster", groups="g1")


def test_progress_bar(client, data, capsys):
    _, ddf = data
    sml.Lmer.from_formula("y ~ x + (1|g1)", ddf, progress=True)
    assert "100%" in capsys.readouterr().out


def test_exact_quantiles(client):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_cauchy(5000), np.full(3000, 0.25), [1e9]])
    rng.shuffle(values)
    series = dd.from_pandas(pd.Series(values), npartitions=5)
    probs = [0.0, 0.1, 0.25, 0.5, 0.75, 0.999, 1.0]
    got = dask_fit.exact_quantiles(series, probs)
    np.testing.assert_array_equal(got, np.quantile(values, probs))


def test_exact_quantiles_narrow_in_passes(client, monkeypatch):
    monkeypatch.setattr(dask_fit, "COLLECT_LIMIT", 50)
    monkeypatch.setattr(dask_fit, "QUANTILE_BINS", 8)
    values = np.random.default_rng(4).normal(size=4001)
    series = dd.from_pandas(pd.Series(values), npartitions=3)
    got = dask_fit.exact_quantiles(series, [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(got, np.quantile(values, [0.25, 0.5, 0.75]))


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("formula", "kwargs", "error", "match"),
    [
        ("y ~ x + (1|g1)", {"missing": "raise"}, DataError, "missing values"),
        ("y ~ x + (1|nope)", {}, UnknownColumnError, "nope"),
        ("y ~ x + (1|g1)", {"weights": "nope"}, UnknownColumnError, "nope"),
        ("y ~ x + (1|g1)", {"weights": "g2"}, ResponseTypeError, "weights must be numeric"),
        ("y ~ x + (1|g1)", {"weights": "zero"}, DataError, "weights are zero"),
        ("y ~ x + (1|g1)", {"offset": "infinite"}, DataError, "offset has infinite"),
        ("bad ~ x + (1|g1)", {}, DataError, "response 'bad' has non-finite"),
        ("y ~ x + (1|one)", {}, DataError, "only one level"),
        ("y ~ x + (1|g1)", {"weights": np.ones(3)}, TypeError, "name of a column"),
        ("y ~ x + (1|g1)", {"subset": [1, 2]}, TypeError, "filter it first"),
        ("y ~ bs(x, df=3) + (1|g1)", {}, FormulaError, "cannot be learned"),
        ("y ~ x", {"groups": np.ones(3)}, TypeError, "groups= must be the name of a column"),
    ],
)
def test_bad_input(client, data, formula, kwargs, error, match):
    _, ddf = data
    ddf = ddf.assign(zero=0.0, infinite=np.inf, one=1, bad=ddf["y"] / 0.0)
    with pytest.raises(error, match=match):
        sml.Lmer.from_formula(formula, ddf, **kwargs)


@pytest.mark.parametrize(
    ("formula", "kwargs", "match"),
    [
        ("y ~ huge + (1|g1)", {}, "magnitude about 1e200"),
        ("y ~ x + (1|g1)", {"weights": "heavy"}, r"the weights \(about 1e300\)"),
        ("two ~ x + (1|g1)", {}, "is constant"),
        ("line ~ x + (1|g1)", {}, "reproduce response 'line' exactly"),
        # exact, with coefficients of 3000 cancelling (fitted, with sigma 1e-13, before)
        ("cancel ~ x + x2 + u + (1|g1)", {}, "reproduce response 'cancel' exactly"),
        ("y ~ x + (1|g1) + (0 + nil|g1)", {}, "column 'nil' is zero on every row"),
        ("y ~ day + (1|g1)", {}, "dates or times"),
        ("y ~ x + (1|g1)", {"drop_cols": "nope"}, "drop_cols names"),
        ("y ~ I(__import__('os').getcwd()) + (1|g1)", {"restricted": True}, "whitelist"),
    ],
)
def test_checks_of_main_give_the_in_memory_error(client, data, formula, kwargs, match):
    frame, ddf = data
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame["g1"], unit="D")

    def columns(d):
        d = d.assign(huge=d["x"] * 1e200, heavy=d["w"] * 1e300, two=2.0, line=1 + 2 * d["x"])
        d = d.assign(u=d["x"] ** 2, x2=d["x"] + d["w"] / 3000.0, nil=0.0)
        return d.assign(cancel=3000.0 * d["x"] - 3000.0 * d["x2"] + d["u"])

    with pytest.raises((ValueError, KeyError), match=match) as in_memory:
        sml.Lmer.from_formula(formula, columns(frame).assign(day=day), **kwargs)
    with pytest.raises(type(in_memory.value)) as on_cluster:
        sml.Lmer.from_formula(formula, columns(ddf).assign(day=dd.from_pandas(day, 4)), **kwargs)
    assert str(on_cluster.value) == str(in_memory.value)


def test_docs_example(capsys):
    text = (Path(__file__).parents[1] / "docs" / "dask.md").read_text()
    code = text.split("```{code-cell} ipython3\n", 1)[1].split("```", 1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.filterwarnings("ignore", "Port 8787 is already in use", UserWarning)
        exec(compile(code, "docs/dask.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Scaled residuals:" in out and "Number of obs: 180" in out


def test_level_codes_from_threads_sharing_a_plan():
    # A worker's threads share one plan. pandas < 3 fills an index's hash table
    # lazily and not thread-safely (pandas issue 21150): threads coding at once
    # saw the levels as duplicated (InvalidIndexError) in about 1 trial in 3.
    rng = np.random.default_rng(3)
    rows = pd.DataFrame({"g": rng.integers(0, 5000, 2000)})
    expected = rows["g"].to_numpy()
    for _ in range(40):
        combos = pd.DataFrame({"g": np.arange(5000)})
        term = RandomTerm(
            "g",
            "g",
            ("(Intercept)",),
            np.empty(0, np.int64),
            pd.Index(np.arange(5000)),
            np.empty((0, 1)),
            "1",
            ("g",),
        )
        plan = BarPlan(term, 2, combos)
        start = threading.Barrier(4)
        results: list[object] = []

        def code_rows(plan=plan, start=start, results=results) -> None:
            start.wait()
            try:
                results.append(plan.codes(rows))
            except Exception as error:
                results.append(error)

        threads = [threading.Thread(target=code_rows) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            assert isinstance(result, np.ndarray), result
            np.testing.assert_array_equal(result, expected)


def test_new_level_of_a_fixed_factor_is_the_in_memory_error():
    """On Dask patsy's own PatsyError surfaced at compute()."""
    data = sml.datasets.load("cake")[["angle", "recipe", "replicate"]]
    res = sml.lmer("angle ~ recipe + (1 | replicate)", dd.from_pandas(data, npartitions=2))
    new = data.head(3).assign(recipe=["A", "B", "Z"])
    memory = sml.lmer("angle ~ recipe + (1 | replicate)", data)
    with pytest.raises(DataError, match="cannot build the fixed effects for newdata") as own:
        memory.predict(new)
    with pytest.raises(DataError) as lazy:
        res.predict(dd.from_pandas(new, npartitions=1)).compute()
    assert str(lazy.value) == str(own.value)


def test_a_slope_fit_on_dask_emits_no_numpy_warning(client):
    """The centred-model check of far columns looked at the Dask model's empty term columns
    first (three 'Mean of empty slice' RuntimeWarnings per fit; an error under -W error)."""
    frame = sml.datasets.load("sleepstudy")
    ddf = dd.from_pandas(frame, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = sml.lmer("Reaction ~ Days + (Days | Subject)", ddf)
    assert res.optinfo["centred"] is None
    memory = sml.lmer("Reaction ~ Days + (Days | Subject)", frame)
    assert res.llf == pytest.approx(memory.llf, rel=1e-9)


def test_a_random_slope_far_from_zero_warns_on_dask_as_in_memory(client):
    """The warning read the rows in memory, so a Dask model got none (its fit stopped 42.8
    REML units short as the pandas one does); it now comes from the partitions' moments."""
    frame = sml.datasets.load("sleepstudy")
    frame = frame.assign(Days=frame["Days"] / 1000 + 1000)
    ddf = dd.from_pandas(frame, npartitions=3)
    messages = {}
    for name, data in (("memory", frame), ("dask", ddf)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sml.lmer("Reaction ~ Days + (Days | Subject)", data)
        messages[name] = [
            str(w.message) for w in caught if str(w.message).startswith("random-effects column")
        ]
    assert messages["dask"] == messages["memory"] != []
    centred = frame.assign(Days=frame["Days"] - frame["Days"].mean())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sml.lmer("Reaction ~ Days + (Days | Subject)", dd.from_pandas(centred, npartitions=3))
    assert not [w for w in caught if "far from zero" in str(w.message)]


def _fit_quietly(formula, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sml.lmer(formula, data, **kwargs)


@pytest.mark.parametrize("shift", [1e5, 1e7])
def test_a_response_far_from_zero_fits_on_dask_as_in_memory(client, shift):
    """The in-memory engine forms its sums of y minus its least-squares fit when y is far
    from zero; Dask summed y itself: sleepstudy's Reaction / 100 + 1e7 gave a REML
    criterion of 51.56 instead of 104.19 and sigma 0.215 instead of 0.256 (converged False);
    with + 1e5 the criterion was 0.011 high. One more pass forms the same sums."""
    frame = sml.datasets.load("sleepstudy")
    frame = frame.assign(y=frame["Reaction"] / 100 + shift, w=1 + (frame["Days"] % 3) / 2)
    formula = "y ~ Days + (Days | Subject)"
    memory = _fit_quietly(formula, frame, weights="w")
    dask_res = _fit_quietly(formula, dd.from_pandas(frame, npartitions=3), weights="w")
    plain = _fit_quietly(formula, frame.assign(y=frame["Reaction"] / 100), weights="w")
    assert dask_res.converged and memory.converged
    assert dask_res.llf == pytest.approx(plain.llf, rel=1e-9)
    assert dask_res.sigma == pytest.approx(memory.sigma, rel=1e-5)  # the optimizer's tolerance
    np.testing.assert_allclose(dask_res.theta, memory.theta, rtol=1e-5)
    np.testing.assert_allclose(dask_res.params, memory.params, rtol=1e-9)
    np.testing.assert_allclose(dask_res.bse, memory.bse, rtol=1e-5)
    assert dask_res.model.partitions.shifts.beta_shift is not None


def test_a_fixed_column_far_from_zero_is_centred_on_dask_as_in_memory(client):
    """x = 1e6 + N(0, 1) next to the intercept: the in-memory engine centres it before the
    sums; Dask did not, and its REML criterion came out 5e-3 above the optimum with theta
    off by 1e-3 (converged False)."""
    rng = np.random.default_rng(3)
    n, groups = 200, rng.integers(0, 20, 200)
    x = 1e6 + rng.normal(size=n)
    y = 2 + 0.5 * (x - 1e6) + rng.normal(size=20)[groups] + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "g": groups.astype(str)})
    memory = _fit_quietly("y ~ x + (1 | g)", frame)
    dask_res = _fit_quietly("y ~ x + (1 | g)", dd.from_pandas(frame, npartitions=2))
    assert dask_res.converged and memory.converged
    assert dask_res.llf == pytest.approx(memory.llf, rel=1e-10)
    np.testing.assert_allclose(dask_res.theta, memory.theta, rtol=1e-6)
    np.testing.assert_allclose(dask_res.params, memory.params, rtol=1e-8)
    np.testing.assert_allclose(dask_res.bse, memory.bse, rtol=1e-6)
    assert dask_res.ddf.values == pytest.approx(memory.ddf.values, rel=1e-5)
    assert list(dask_res.model.partitions.shifts.centering.columns) == [1]


def test_the_centred_model_check_runs_on_dask(client):
    """A Dask fit with a random-effects column far from zero stopped 42.8 REML units short
    with no measure of how far: the centred-model check needs the rows, so it was skipped.
    The centred sums now come from one more pass; the gap and the message are the
    in-memory ones."""
    frame = sml.datasets.load("sleepstudy")
    frame = frame.assign(x=frame["Days"] / 1000 + 1000)
    formula = "Reaction ~ x + (x | Subject)"
    memory = _fit_quietly(formula, frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dask_res = sml.lmer(formula, dd.from_pandas(frame, npartitions=3))
    ours, theirs = dask_res.optinfo["centred"], memory.optinfo["centred"]
    assert ours["columns"] == theirs["columns"] == ["'x' of (x | Subject)"]
    assert ours["objective"] == pytest.approx(1729.8127614, abs=1e-6)
    assert ours["first_objective"] == pytest.approx(theirs["first_objective"], abs=0.1)
    assert ours["first_objective"] - ours["objective"] > 40  # 42.8 short at first
    assert ours["restarted"] and ours["gap"] < 1.0  # fitted again from the centred optimum
    assert ours["short"] and not dask_res.converged
    assert any("centred reaches a REML criterion" in str(w.message) for w in caught)


def test_a_small_slope_column_is_rescaled_on_dask_as_in_memory(client):
    """Days / 1000 with y * 1e4: the optimizer works in the column's units in memory, but a
    Dask model had no column scales (no rows in memory) and 3 partitions stopped 9.67 REML
    units short. The scales now come from the partitions' moments."""
    frame = sml.datasets.load("sleepstudy")
    frame = frame.assign(y=frame["Reaction"] * 1e4, d=frame["Days"] / 1000)
    formula = "y ~ d + (d | Subject)"
    memory = _fit_quietly(formula, frame)
    dask_res = _fit_quietly(formula, dd.from_pandas(frame, npartitions=3))
    assert dask_res.reml_criterion == pytest.approx(memory.reml_criterion, abs=1e-6)
    np.testing.assert_allclose(dask_res.opt_summary.scale, memory.opt_summary.scale, rtol=1e-12)


def _far_covariate_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n, groups = 400, rng.integers(0, 20, 400)
    x = 1e6 + rng.normal(size=n)
    f = rng.choice(list("abc"), n)
    y = 1e5 + 0.5 * (x - 1e6) + rng.normal(size=20)[groups] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": groups.astype(str)})


@pytest.mark.parametrize("formula", ["y ~ x * f + (1 | g)", "y ~ x * C(f, Sum) + (1 | g)"])
def test_anova_of_a_covariate_far_from_zero_on_dask_is_the_in_memory_one(client, formula):
    """Dask's type III contrasts were least-squares fits on X'X summed over partitions;
    with x = 1e6 + N(0, 1) its squares lose the digits: x's sum of squares came out 180.4
    instead of 104.36 and x:f's 2.77 instead of 0.0043 (the type I and II value of the
    last term). The fits now come from the R factor of the rows."""
    frame = _far_covariate_frame()
    memory = _fit_quietly(formula, frame)
    dask_res = _fit_quietly(formula, dd.from_pandas(frame, npartitions=3))
    for kind in (1, 2, 3):
        ours, theirs = dask_res.anova(type=kind), memory.anova(type=kind)
        np.testing.assert_allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=1e-6)
    third = dask_res.anova(type=3)
    assert third.loc["x", "SumSq"] == pytest.approx(104.359562, rel=1e-7)
    assert third.loc["x:f" if "Sum" not in formula else "x:C(f, Sum)", "SumSq"] == pytest.approx(
        dask_res.anova(type=1).iloc[-1]["SumSq"], rel=1e-6
    )
