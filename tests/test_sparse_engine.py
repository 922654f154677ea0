"""The sparse factorization, the in-place dense paths, the cost model's memory check.

The sparse path (a sparse Cholesky of the whole random part) must give the
dense engine's criterion and estimates to 1e-10 on every design; the counts of
its symbolic analysis must be those of the factor; a model that does not fit
in memory is refused before anything of that size is allocated.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import crossed_frame

import statsmodels_lmer as sml
from statsmodels_lmer import model as model_module
from statsmodels_lmer.engine import blocks
from statsmodels_lmer.engine import cost as cost_module
from statsmodels_lmer.engine import sparse as sparse_module
from statsmodels_lmer.engine.cost import MEMORY_VARIABLE
from statsmodels_lmer.engine.sparse import (
    BACKEND_VARIABLE,
    SparseSystem,
    column_counts,
    sparse_backend,
    supernode_sizes,
    symbolic_factor,
)
from statsmodels_lmer.engine.tiny import TINY_ORDER, tiny_system
from statsmodels_lmer.exceptions import DataError

BACKENDS = [
    name
    for name in ("cholmod", "qdldl")
    if pytest.importorskip("importlib").util.find_spec("sksparse" if name == "cholmod" else name)
]
needs_backend = pytest.mark.skipif(not BACKENDS, reason="no sparse Cholesky installed")


@pytest.fixture(params=BACKENDS or [None])
def backend(request, monkeypatch):
    if request.param is None:
        pytest.skip("no sparse Cholesky installed")
    monkeypatch.setenv(BACKEND_VARIABLE, request.param)
    assert sparse_backend() == request.param
    return request.param


def crossed_data(seed: int = 1, n: int = 500) -> pd.DataFrame:
    return crossed_frame(seed, n, levels=(60, 25, 4), slope=0.03)


def clustered_data(
    seed: int = 2, n: int = 3000, sites: int = 30, a_levels: int = 600
) -> pd.DataFrame:
    """A structured crossing: both factors' levels belong to sites, 2 % of rows cross them."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, a_levels, n)
    site = a * sites // a_levels
    b = site * 10 + rng.integers(0, 10, n)  # 10 levels of b per site
    leak = rng.random(n) < 0.02
    b[leak] = rng.integers(0, sites * 10, leak.sum())
    x = rng.normal(size=n)
    y = x + rng.normal(size=a_levels)[a] + 0.5 * rng.normal(size=sites * 10)[b]
    y += rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "x": x, "y": y})


DESIGNS = [
    ("y ~ x + (1 | a) + (1 | b)", "crossed", False),
    ("y ~ x + (1 | a) + (1 | b) + (1 | c)", "crossed", True),
    ("y ~ x + (x | a) + (1 | b)", "crossed", True),
    ("y ~ x + (x | a) + (x | b)", "crossed", False),
    ("y ~ x + (1 | a) + (x + z | b)", "crossed", True),
    ("y ~ x * z + (x || a) + (0 + z | b) + (1 | b:c)", "crossed", True),
    ("y ~ x + (1 | b/c)", "crossed", False),
    ("y ~ x + (1 | a) + (1 | b)", "clustered", False),
    ("y ~ x + (x | a) + (1 | b)", "clustered", False),
]


@cache
def design_model(formula: str, data: str, weighted: bool) -> sml.Lmer:
    frame = crossed_data() if data == "crossed" else clustered_data()
    return sml.Lmer.from_formula(formula, frame, weights="w" if weighted else None)


def thetas(model: sml.Lmer, count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(count):
        theta = model.theta_start + rng.uniform(-0.5, 0.8, model.theta_start.size)
        out.append(np.maximum(theta, model.theta_lower))
    return out


@pytest.mark.parametrize(("formula", "data", "weighted"), DESIGNS)
@pytest.mark.parametrize("reml", [True, False])
def test_sparse_criterion_equals_dense(backend, formula, data, weighted, reml):
    model = design_model(formula, data, weighted)
    dense = model.devfun(reml, strategy="pairs")
    sparse = model.devfun(reml, strategy="sparse")
    assert sparse.cross.strategy == "sparse"
    assert sparse.cross.sparse.backend_name == backend
    for theta in thetas(model):
        assert sparse(theta) == pytest.approx(dense(theta), rel=1e-10)
        a, b = sparse.components(theta), dense.components(theta)
        assert a.log_det_l2 == pytest.approx(b.log_det_l2, rel=1e-10, abs=1e-10)
        assert a.log_det_rx2 == pytest.approx(b.log_det_rx2, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(a.vcov_unscaled, b.vcov_unscaled, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(("formula", "data", "weighted"), DESIGNS[2:4] + DESIGNS[7:8])
def test_sparse_solution_equals_dense(backend, formula, data, weighted):
    model = design_model(formula, data, weighted)
    theta = thetas(model, 1)[0]
    dense = model.devfun(True, strategy="pairs").solve(theta)
    sparse = model.devfun(True, strategy="sparse").solve(theta)
    np.testing.assert_allclose(sparse.beta, dense.beta, rtol=1e-10)
    assert sparse.sigma == pytest.approx(dense.sigma, rel=1e-10)
    for mine, theirs in zip(sparse.b, dense.b):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-11)
    for mine, theirs in zip(sparse.conditional_variances, dense.conditional_variances):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-14)


@pytest.mark.skipif("cholmod" not in BACKENDS, reason="needs CHOLMOD")
@pytest.mark.parametrize("mode", ["supernodal", "simplicial"])
@pytest.mark.parametrize(("formula", "data", "weighted"), DESIGNS[2:4] + DESIGNS[7:8])
def test_both_cholmod_factorizations_give_the_dense_criterion_and_solution(
    monkeypatch, mode, formula, data, weighted
):
    """CHOLMOD's simplicial ``L D L'`` (unit ``L``: the half solves scale by ``D^-1``)
    and its supernodal ``L L'``, whichever the cost model would pick."""
    monkeypatch.setenv(BACKEND_VARIABLE, "cholmod")
    monkeypatch.setattr(cost_module.SparseCounts, "cholmod_mode", property(lambda self: mode))
    model = sml.Lmer.from_formula(
        formula,
        crossed_data() if data == "crossed" else clustered_data(),
        weights="w" if weighted else None,
    )
    sparse = model.devfun(True, strategy="sparse")
    dense = model.devfun(True, strategy="pairs")
    theta = thetas(model, 1)[0]
    assert sparse(theta) == pytest.approx(dense(theta), rel=1e-10)
    assert sparse.cross.sparse._backend.mode == mode  # made on first use
    mine, theirs = sparse.solve(theta), dense.solve(theta)
    np.testing.assert_allclose(mine.beta, theirs.beta, rtol=1e-10)
    for a, b in zip(mine.conditional_variances, theirs.conditional_variances):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.skipif("cholmod" not in BACKENDS, reason="needs CHOLMOD")
@pytest.mark.parametrize(("formula", "data", "weighted"), DESIGNS)
def test_cholmod_orders_alike_in_both_modes(monkeypatch, formula, data, weighted):
    """The counts that choose the mode come from the simplicial analysis; they are
    those of the supernodal factor only if both analyses order the matrix alike."""
    monkeypatch.setenv(BACKEND_VARIABLE, "cholmod")
    system = design_model(formula, data, weighted).devfun(True, strategy="sparse")
    assert system.cross.sparse.backend_name == "cholmod"
    matrix = system.cross.sparse._initial_matrix()
    from sksparse.cholmod import analyze

    supernodal, simplicial = (analyze(matrix, mode=m).P() for m in ("supernodal", "simplicial"))
    np.testing.assert_array_equal(supernodal, simplicial)


def test_cholmod_factorization_is_chosen_by_its_thin_supernodes():
    """One-column supernodes feeding a dense tail make the supernodal factorization slow.

    The 10,000 x 1,000 uniform crossing at 1e6 rows: 10,004 one-column supernodes
    with 7.2e7 update entries; measured 410 ms supernodal, 215 ms simplicial
    (predicted 370 and 160). At 1e5 rows (8.8e6 entries): 40 ms against 85.
    """
    base = dict(order=11000, entries=910963, factor_entries=1.44e6, flops=4.75e8, n_rhs=3)
    base.update(backend="cholmod", supernodes=10008)
    assert cost_module.SparseCounts(**base, thin_updates=7.2e7).cholmod_mode == "simplicial"
    base.update(entries=109947, factor_entries=5.54e5, flops=2.69e8, supernodes=10092)
    assert cost_module.SparseCounts(**base, thin_updates=8.75e6).cholmod_mode == "supernodal"
    reference = cost_module.SparseCounts(**base, thin_updates=8.75e6, reference_blas=True)
    assert reference.cholmod_mode == "simplicial"  # netlib BLAS: ten times slower per flop


def test_fit_on_the_sparse_path_equals_the_dense_fit(backend):
    model = design_model("y ~ x + (1 | a) + (1 | b)", "clustered", False)
    dense = model.fit(reml=False)
    sparse_model = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", clustered_data())
    sparse_model.cross_products = sparse_model.devfun(False, strategy="sparse").cross
    sparse = sparse_model.fit(reml=False)
    assert sparse.model.cross_products.strategy == "sparse"
    assert sparse.llf == pytest.approx(dense.llf, rel=1e-9)
    np.testing.assert_allclose(sparse.params, dense.params, rtol=1e-5)
    table, reference = sparse.ranef_table(), dense.ranef_table()
    np.testing.assert_allclose(table["condsd"], reference["condsd"], rtol=1e-5)


def test_sparse_path_from_threads_and_after_pickling(backend):
    model = design_model("y ~ x + (x | a) + (1 | b)", "crossed", True)
    devfun = model.devfun(False, strategy="sparse")
    points = thetas(model, 6)
    serial = [devfun(theta) for theta in points]
    results = [None] * (3 * len(points))

    def work(start):
        for i in range(start, len(results), 4):
            results[i] = devfun(points[i % len(points)])

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    np.testing.assert_allclose(results, serial * 3, rtol=1e-13, atol=0)
    loaded = pickle.loads(pickle.dumps(devfun))
    assert loaded(points[0]) == pytest.approx(serial[0], rel=1e-13)


def test_structured_crossing_is_factored_sparse_when_a_backend_is_installed(backend):
    """On a clustered design the sparse factor has far fewer entries than the dense block."""
    model = design_model("y ~ x + (1 | a) + (1 | b)", "clustered", False)
    system = model.devfun(True, strategy="sparse").cross.sparse
    q = system.order
    assert system.counts.factor_entries < 0.1 * q * (q + 1) / 2


# -- symbolic analysis ---------------------------------------------------------------
def random_lower_pattern(n: int, density: float, seed: int) -> sp.csc_matrix:
    rng = np.random.default_rng(seed)
    upper = sp.random(n, n, density=density, random_state=rng, format="csc")
    pattern = (upper + upper.T + sp.eye(n)).tocsc()
    pattern.data[:] = 1.0
    return sp.tril(pattern).tocsc()


@pytest.mark.parametrize(("n", "density", "seed"), [(40, 0.05, 1), (120, 0.02, 2), (80, 0.1, 3)])
def test_column_counts_are_those_of_the_cholesky_factor(n, density, seed):
    lower = random_lower_pattern(n, density, seed)
    full = (lower + lower.T).toarray()
    full = np.abs(full) * np.random.default_rng(seed).uniform(0.1, 1.0, full.shape)
    full = (full + full.T) / 2 + n * np.eye(n)  # diagonally dominant: positive definite
    factor = np.linalg.cholesky(full)
    expected = np.count_nonzero(np.abs(factor) > 1e-300, axis=0)
    np.testing.assert_array_equal(column_counts(lower), expected)


@pytest.mark.parametrize(("n", "density", "seed"), [(40, 0.05, 1), (120, 0.02, 2), (80, 0.1, 3)])
def test_supernodes_are_the_columns_that_repeat_the_pattern_below(n, density, seed):
    """Independent count from a dense factor: ``j + 1`` joins ``j`` when column ``j``'s
    rows below ``j`` are exactly column ``j + 1``'s rows from ``j + 1`` on."""
    lower = random_lower_pattern(n, density, seed)
    full = (lower + lower.T).toarray()
    full = np.abs(full) * np.random.default_rng(seed).uniform(0.1, 1.0, full.shape)
    full = (full + full.T) / 2 + n * np.eye(n)
    rows = np.abs(np.linalg.cholesky(full)) > 1e-300
    starts = [0] + [
        j + 1 for j in range(n - 1) if not np.array_equal(rows[j + 1 :, j], rows[j + 1 :, j + 1])
    ]
    widths = np.diff(starts + [n])
    below = np.array([rows[j + 1 :, j].sum() for j, w in zip(starts, widths) if w == 1], float)
    parent, counts = symbolic_factor(lower)
    assert supernode_sizes(parent, counts) == (len(starts), float(np.sum(below * (below + 1) / 2)))
    assert len(starts) < n  # some columns do join


def test_sparse_system_counts_match_the_factor(backend):
    """The counts used by the cost model: CHOLMOD's ordering exactly, qdldl's bounded."""
    model = design_model("y ~ x + (1 | a) + (1 | b)", "crossed", False)
    system: SparseSystem = model.devfun(True, strategy="sparse").cross.sparse
    q = system.order
    assert q <= system.counts.factor_entries <= q * (q + 1) / 2
    assert system.counts.exact == (backend == "cholmod")


# -- memory ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::statsmodels_lmer.exceptions.SingularFitWarning")
def test_model_over_the_memory_limit_is_refused_with_the_figure(monkeypatch):
    monkeypatch.setenv(MEMORY_VARIABLE, "4KiB")
    monkeypatch.setenv(BACKEND_VARIABLE, "off")
    model = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", crossed_data())
    with pytest.raises(DataError, match=r"needs about [0-9]+ KiB .*more than the 4 KiB") as err:
        model.fit()
    assert MEMORY_VARIABLE in str(err.value)
    # the sparse path is installed but switched off: the remedy says so
    assert f"unset {BACKEND_VARIABLE}" in str(err.value) and "Install" not in str(err.value)
    monkeypatch.delenv(BACKEND_VARIABLE)
    monkeypatch.setattr(blocks, "sparse_backend", lambda: None)  # none installed
    with pytest.raises(DataError, match="more than the 4 KiB") as err:
        model.fit()
    assert "cholmod" in str(err.value)  # the remedy names the sparse extra
    monkeypatch.setenv(MEMORY_VARIABLE, "off")
    assert model.fit().converged


def test_dense_block_too_large_is_refused_before_the_sums_are_built(monkeypatch):
    """Two crossed factors whose dense block needs GiB, on small data: refused at once."""
    monkeypatch.setenv(MEMORY_VARIABLE, "1GiB")
    monkeypatch.setenv(BACKEND_VARIABLE, "off")
    rng = np.random.default_rng(3)
    n = 40_000
    frame = pd.DataFrame({"a": rng.permutation(n) % 30_000, "b": rng.permutation(n) % 20_000})
    frame["y"] = rng.normal(size=n)
    model = sml.Lmer.from_formula("y ~ 1 + (1 | a) + (1 | b)", frame)

    def not_built(*args, **kwargs):
        raise AssertionError("the sums were built")

    monkeypatch.setattr(blocks, "raw_sums", not_built)
    with pytest.raises(DataError, match=r"needs about 3\.0 GiB .*20002 x 20002"):
        model.devfun()


@needs_backend
def test_sparse_path_is_chosen_when_the_dense_block_does_not_fit(monkeypatch):
    data = clustered_data(n=12000, sites=300, a_levels=4000)
    model = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", data)
    m = model.devfun(True, strategy="pairs").cross.size_rest
    assert 8 * m * m > 60 * 2**20
    monkeypatch.setenv(MEMORY_VARIABLE, "60MiB")
    fresh = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", data)
    assert fresh.devfun(True).cross.strategy == "sparse"


# -- refits: only the response's cross-products are formed again ---------------------
REFIT_DESIGNS = [
    ("y ~ x + (1 | a) + (1 | b)", "crossed"),  # scalar first term: pairs by class
    ("y ~ x + (x | a) + (1 | b)", "crossed"),  # vector first term: pairs by factor
    ("y ~ x + (1 | b/c)", "crossed"),  # nested layout
]


@pytest.mark.parametrize(("formula", "data"), REFIT_DESIGNS)
@pytest.mark.parametrize("strategy", ["pairs", "classes", "dense", "sparse"])
def test_model_with_a_new_response_equals_a_fresh_model(formula, data, strategy):
    if strategy == "sparse" and not BACKENDS:
        pytest.skip("no sparse Cholesky installed")
    frame = crossed_data()
    model = sml.Lmer.from_formula(formula, frame, weights="w")
    model.cross_products = model.devfun(True, strategy=strategy).cross
    new_y = np.random.default_rng(11).normal(size=len(frame)) + frame["x"].to_numpy()
    refitted = model.with_response(new_y)
    assert "cross_products" in refitted.__dict__  # reused, not built again
    assert refitted.cross_products.strategy == model.cross_products.strategy
    fresh = sml.Lmer.from_formula(formula, frame.assign(y=new_y), weights="w")
    fresh_devfun = fresh.devfun(True, strategy=strategy)
    np.testing.assert_allclose(
        refitted.cross_products.a_rr.toarray(), fresh_devfun.cross.a_rr.toarray(), rtol=1e-13
    )
    for theta in thetas(model):
        assert refitted.devfun(True)(theta) == pytest.approx(fresh_devfun(theta), rel=1e-12)
    np.testing.assert_allclose(
        refitted.devfun(True).solve(theta).beta, fresh_devfun.solve(theta).beta, rtol=1e-10
    )
    same = model.with_response(frame["y"].to_numpy())  # the fitted response: nothing changes
    assert same.devfun(True)(theta) == model.devfun(True)(theta)


def test_refit_of_a_simulated_response_matches_a_fresh_fit():
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    y = res.simulate(1, seed=4).iloc[:, 0].to_numpy()
    refit = res.refit(y)
    fresh = sml.lmer(
        "Reaction ~ Days + (Days | Subject)",
        sml.datasets.load("sleepstudy").assign(Reaction=y),
        start_theta=res.theta,
    )
    assert refit.llf == pytest.approx(fresh.llf, rel=1e-12)
    np.testing.assert_allclose(refit.params, fresh.params, rtol=1e-10)


def test_refit_of_a_weighted_crossed_model_with_offset_matches_a_fresh_fit():
    frame = crossed_data(n=400)
    frame["off"] = np.random.default_rng(5).normal(size=len(frame))
    before = frame.copy()
    formula = "y ~ x + (1 | a) + (1 | b)"
    res = sml.lmer(formula, frame, weights="w", offset="off")
    y = res.simulate(1, seed=8).iloc[:, 0].to_numpy()
    refit = res.refit(y)
    fresh = sml.lmer(
        formula,
        frame.assign(y=y),
        weights="w",
        offset="off",
        start_theta=res.theta,
        initial_step=0.25,  # a refit's first step
    )
    pd.testing.assert_frame_equal(frame, before)  # the caller's data untouched
    assert refit.llf == pytest.approx(fresh.llf, rel=1e-12)
    np.testing.assert_allclose(refit.params, fresh.params, rtol=1e-10)
    np.testing.assert_allclose(refit.theta, fresh.theta, rtol=1e-10, atol=1e-12)
    loaded = pickle.loads(pickle.dumps(refit))
    assert loaded.llf == refit.llf
    np.testing.assert_allclose(loaded.predict(frame.iloc[:5]), refit.predict(frame.iloc[:5]))


def test_a_new_response_leaves_the_model_unchanged():
    model = design_model("y ~ x + (x | a) + (1 | b)", "crossed", True)
    theta = thetas(model, 1)[0]
    value = model.devfun(True)(theta)
    a_rr = model.cross_products.a_rr.toarray()
    model.with_response(np.arange(model.nobs, dtype=float))
    np.testing.assert_array_equal(model.cross_products.a_rr.toarray(), a_rr)
    assert model.devfun(True)(theta) == value


def test_bootstrap_refits_reuse_the_cross_products(monkeypatch):
    """After the fit no refit of the bootstrap builds cross-products, also after pickling."""
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sml.datasets.load("sleepstudy"))
    loaded = pickle.loads(pickle.dumps(res))
    calls = []
    original = model_module.build_cross_products

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model_module, "build_cross_products", counted)
    boot = res.bootstrap(3, seed=2, progress=False)
    again = loaded.bootstrap(3, seed=2, progress=False)  # as in a worker process
    assert boot.failures == 0 and calls == []
    pd.testing.assert_frame_equal(again.frame, boot.frame, rtol=1e-10)
    model = pickle.loads(pickle.dumps(res.model))  # a model pickles without them
    y = np.asarray(res.model.endog) * 1.1
    model.with_response(y)
    model.with_response(y + 1.0)
    assert len(calls) == 1  # built once, on the loaded model


# -- without a sparse Cholesky ------------------------------------------------------
WITHOUT_SPARSE = """
import sys
for name in ("sksparse", "sksparse.cholmod", "qdldl"):
    sys.modules[name] = None  # import raises ImportError: as if not installed
import numpy as np, pandas as pd
import statsmodels_lmer as sml
from statsmodels_lmer.engine.sparse import sparse_backend
assert sparse_backend() is None
rng = np.random.default_rng(1)
frame = pd.DataFrame({"a": rng.integers(0, 300, 2000), "b": rng.integers(0, 200, 2000)})
frame["y"] = rng.normal(size=2000) + 0.3 * rng.normal(size=300)[frame["a"]]
model = sml.Lmer.from_formula("y ~ 1 + (1 | a) + (1 | b)", frame)
devfun = model.devfun(True)
theta = np.array([0.4, 0.7])
dense = model.devfun(True, strategy="dense")(theta)
print(devfun.cross.strategy, abs(devfun(theta) - dense) / dense)
try:
    model.devfun(True, strategy="sparse")
except ImportError as exc:
    print("ImportError:", exc)
"""


def test_without_a_sparse_library_the_dense_path_is_used():
    env = {k: v for k, v in os.environ.items() if k != BACKEND_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SPARSE], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    strategy, difference = first.split()
    assert strategy in ("pairs", "classes", "dense")
    assert float(difference) < 1e-12
    assert "statsmodels_lmer[cholmod]" in second and "qdldl" in second


# -- tiny models: the whole system in one dense factorization -------------------------
TINY_DESIGNS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("Pastes", "strength ~ 1 + (1 | batch/cask)", None),
    ("Dyestuff", "Yield ~ 1 + (1 | Batch)", None),
    ("crossed", "y ~ x + (x | b) + (1 | c)", "w"),
    ("crossed", "y ~ x * z + (x || b) + (0 + z | c)", "w"),
    ("Dyestuff", "Yield ~ 0 + (1 | Batch)", None),  # no fixed effects
]


def tiny_model(name: str, formula: str, weights: str | None) -> sml.Lmer:
    frame = crossed_data(n=200) if name == "crossed" else sml.datasets.load(name)
    return sml.Lmer.from_formula(formula, frame, weights=weights)


@pytest.mark.parametrize(("name", "formula", "weights"), TINY_DESIGNS)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("route", ["products", "lambda"])
def test_tiny_system_gives_the_blocked_criterion(name, formula, weights, reml, route):
    model = tiny_model(name, formula, weights)
    devfun = model.devfun(reml)
    tiny = tiny_system(devfun.cross, devfun.terms, devfun.theta_slices)
    assert tiny is not None and tiny.order <= TINY_ORDER
    assert tiny.products is not None  # the tabulated quadratic form by default
    if route == "lambda":  # Lambda built at each evaluation (large theta counts)
        tiny.products = None
        devfun._tiny = tiny
    points = thetas(model) + [np.zeros_like(model.theta_start), -model.theta_start]
    for theta in points:
        blocked = devfun.components(theta)
        ld_l2, ld_rx2, pwrss = tiny.pieces(theta)
        assert ld_l2 == pytest.approx(blocked.log_det_l2, rel=1e-10, abs=1e-10)
        assert ld_rx2 == pytest.approx(blocked.log_det_rx2, rel=1e-10, abs=1e-10)
        assert pwrss == pytest.approx(blocked.pwrss, rel=1e-10)
        expected = devfun.criterion(blocked.log_det_l2, blocked.log_det_rx2, blocked.pwrss, reml)
        assert devfun(theta) == pytest.approx(expected, rel=1e-12)


def test_larger_models_stay_on_the_blocked_path():
    model = design_model("y ~ x + (1 | a) + (1 | b)", "crossed", False)  # 60 + 25 + 3 rows
    devfun = model.devfun(True)
    assert tiny_system(devfun.cross, devfun.terms, devfun.theta_slices) is None
    one_term = sml.Lmer.from_formula("y ~ x + (1 | a)", crossed_data())  # 62: blocked is cheaper
    devfun = one_term.devfun(True)
    assert tiny_system(devfun.cross, devfun.terms, devfun.theta_slices) is None


# -- choosing the sparse path by the Schur complement's density -------------------
def schur_pattern_share(cross) -> float:
    """The nonzero share of the Schur complement's random lower triangle, formed."""
    r = cross.n_random_rest
    pattern = sp.csr_matrix(cross.a_r1[:r])
    pattern.data[:] = 1.0
    own = sp.csr_matrix(cross.a_rr[:r, :r])
    own.data[:] = 1.0
    schur = (pattern @ pattern.T + own).tocoo()
    return np.count_nonzero(schur.row >= schur.col) / (r * (r + 1) / 2)


@pytest.mark.parametrize(
    ("data", "thin"),
    [(crossed_data(), False), (clustered_data(n=12000, sites=300, a_levels=4000), True)],
)
def test_schur_density_bounds_the_formed_pattern(data, thin):
    cross = (
        sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", data)
        .devfun(True, strategy="pairs")
        .cross
    )
    share = schur_pattern_share(cross)
    density = blocks.schur_density(cross)
    assert share <= density  # a bound: pairs met through several levels count again
    assert (density <= 0.25) == thin
    if thin:  # and not a loose one where it decides
        assert density <= 3 * share


def test_thin_schur_complement_takes_the_sparse_path(backend):
    # mlmRev's star (teachers within schools crossed with students) took 35 ms
    # a dense evaluation and 6 ms a sparse one, but the sparse path was weighed
    # only above 50 ms: levels that meet within sites now take it
    data = clustered_data(n=12000, sites=300, a_levels=4000)
    model = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", data)
    dense = model.devfun(True, strategy="pairs")
    assert dense.cross.size_rest >= 1000
    chosen = model.devfun(True)
    assert chosen.cross.strategy == "sparse"
    theta = np.array([0.8, 0.6])
    assert chosen(theta) == pytest.approx(dense(theta), rel=1e-10)


# -- partially crossed terms: a sparse elimination that ends in a dense tail ---------
def partially_crossed_data(seed: int = 26, n: int = 12000) -> pd.DataFrame:
    """g (1,400 levels) mostly inside h (260 levels, 20 % of rows cross), g:h, 8 sites."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 1400, n)
    h = g % 260
    leak = rng.random(n) < 0.2
    h[leak] = rng.integers(0, 260, leak.sum())
    x, z = rng.normal(size=n), rng.normal(2.0, 1.0, n)
    f = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = x + rng.normal(size=1400)[g] + rng.normal(size=260)[h] + z * rng.normal(size=260)[h] * 0.3
    y += rng.normal(size=n)
    return pd.DataFrame(
        {"g": g, "h": h, "site": rng.integers(0, 8, n), "x": x, "z": z, "f": f, "y": y}
    )


PARTIAL_FORMULA = "y ~ x + z + (z | h) + (0 + f | g) + (1 | site) + (1 | g:h)"


@cache
def partially_crossed_lower() -> sp.csc_matrix:
    model = sml.Lmer.from_formula(PARTIAL_FORMULA, partially_crossed_data())
    return model.devfun(True, strategy="sparse").cross.sparse.pattern.pattern()


@pytest.mark.parametrize("case", ["partial", "random"])
def test_dense_tail_of_the_minimum_degree_count_bounds_the_node_by_node_count(case, monkeypatch):
    """Counted at once as dense, the tail's fill is an upper bound of the node-by-node
    count's, and a close one; the node-by-node count spends 10 times more work."""
    partial = case == "partial"
    lower = partially_crossed_lower() if partial else random_lower_pattern(300, 0.02, 5)
    with_tail = sparse_module.minimum_degree_counts(lower, 1e12)
    monkeypatch.setattr(sparse_module, "DENSE_TAIL_SHARE", 2.0)  # never a tail
    by_node = sparse_module.minimum_degree_counts(lower, 1e12)
    assert with_tail.size == by_node.size == lower.shape[0]
    flops, flops_by_node = np.sum(with_tail**2), np.sum(by_node**2)
    assert flops_by_node <= flops <= 1.5 * flops_by_node
    assert with_tail.sum() >= by_node.sum()
    if partial:  # the tail is where the node-by-node count spends its work
        assert sparse_module.minimum_degree_counts(lower) is None
        monkeypatch.setattr(sparse_module, "DENSE_TAIL_SHARE", 0.5)
        assert sparse_module.minimum_degree_counts(lower) is not None


def test_partially_crossed_terms_take_the_sparse_path(backend):
    """Five terms on g (1,400 levels) mostly within h: a dense evaluation factors the
    Schur complement of order 4,700, the sparse factor has 3 % of its entries."""
    model = sml.Lmer.from_formula(PARTIAL_FORMULA, partially_crossed_data())
    chosen = model.devfun(True)
    assert chosen.cross.strategy == "sparse"
    counts = chosen.cross.sparse.counts
    assert counts.factor_entries < 0.05 * counts.order * (counts.order + 1) / 2
    dense = model.devfun(True, strategy="dense")
    assert dense.cross.n_random_rest > 4000  # the order of the dense path's block
    theta = thetas(model, 1)[0]
    assert chosen(theta) == pytest.approx(dense(theta), rel=1e-10)


def test_memory_limit_follows_the_cgroup_and_ulimit(monkeypatch, tmp_path):
    """Only MemAvailable was read: under a container's limit or ulimit -v a model too
    large for it died with CHOLMOD's or numpy's out-of-memory error instead."""
    from statsmodels_lmer.engine import cost

    monkeypatch.delenv(MEMORY_VARIABLE, raising=False)
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    stat = tmp_path / "memory.stat"
    limit.write_text(f"{3 * 2**20}\n")
    usage.write_text(f"{2 * 2**20}\n")
    stat.write_text(f"anon 123\ninactive_file {2**20}\nactive_file 7\n")
    files = [(str(limit), str(usage), str(stat), "inactive_file")]
    monkeypatch.setattr(cost, "CGROUP_FILES", files)
    assert cost.available_memory() == 2 * 2**20  # the inactive page cache is reclaimable
    limit.write_text("max\n")
    assert cost.available_memory() > 2 * 2**20  # no cgroup limit: MemAvailable
    script = (
        "import resource; from statsmodels_lmer.engine.cost import available_memory;"
        "resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30));"
        "print(available_memory())"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert 0 < float(done.stdout) < 6 * 2**30


def test_running_out_of_memory_in_a_fit_says_what_to_do(monkeypatch):
    """Under a limit the estimate could not see, numpy's MemoryError or CHOLMOD's
    CholmodOutOfMemoryError reached the user raw, without the size or a remedy."""
    from statsmodels_lmer import model as model_module
    from statsmodels_lmer.exceptions import OutOfMemoryError

    class CholmodOutOfMemoryError(Exception):  # scikit-sparse's, by name
        pass

    model = sml.Lmer.from_formula("y ~ x + (1 | a) + (1 | b)", crossed_data())
    for error in (MemoryError("Unable to allocate 2.94 GiB"), CholmodOutOfMemoryError("out")):

        def failing(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(model_module, "fit_theta", failing)
        with pytest.raises(OutOfMemoryError, match=f"ran out of memory.*{MEMORY_VARIABLE}") as err:
            model.fit()
        assert isinstance(err.value, MemoryError) and isinstance(err.value, ValueError)
        assert err.value.__cause__ is error
