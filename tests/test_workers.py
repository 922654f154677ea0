"""Worker processes of the n_jobs tools, forked while other threads hold the package's locks."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pandas as pd
import pytest

from statsmodels_lmer import _parallel
from statsmodels_lmer._parallel import blas_threads
from statsmodels_lmer.cached import cached_property

pytestmark = pytest.mark.skipif(
    not hasattr(os, "register_at_fork"), reason="no fork on this platform"
)


def enter_a_blas_block() -> None:
    with blas_threads(1):
        pass


def test_a_forked_worker_does_not_inherit_a_held_blas_lock():
    """Another thread setting the BLAS limit holds the lock at the fork: the worker's
    first fit waited for it for ever, and bootstrap(n_jobs=2) with it (3 of 3 runs of
    the probe's repro hung while a background thread fitted)."""
    held = _parallel.LIMIT_LOCK
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:  # as a thread inside blas_threads' critical section
        with held:
            inside.set()
            leave.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        child = multiprocessing.get_context("fork").Process(target=enter_a_blas_block)
        child.start()
        child.join(30)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
        assert not hung and child.exitcode == 0
    finally:
        leave.set()
        holder.join()
    enter_a_blas_block()  # the parent's lock is free again


@pytest.mark.parametrize(("one", "default", "expected"), [(1.0, 8.0, 1), (8.0, 1.0, None)])
def test_a_fit_on_a_large_block_measures_one_thread_against_blas_default(
    monkeypatch, one, default, expected
):
    """OpenBLAS's threads spin: with another process busy, the 20,000 x 5,000 crossing took
    11.5 s an evaluation on two threads and 1.4 s on one. A fit on a block the default
    rule gives several threads times one evaluation each way and keeps the faster (the
    clock is faked here: one thread 8 times faster, then 8 times slower)."""
    import numpy as np

    import statsmodels_lmer as sml
    from statsmodels_lmer.engine import objective as objective_module

    monkeypatch.setattr(_parallel, "SMALL_BLOCK", 4)  # Penicillin's block of 8 rows is large
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    limits = []
    clock = iter([0.0, one, 10.0, 10.0 + default])
    real_blas_threads = objective_module.blas_threads

    def recording(limit):
        limits.append(limit)
        return real_blas_threads(limit)

    monkeypatch.setattr(objective_module, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(objective_module, "blas_threads", recording)
    model = sml.Lmer.from_formula(
        "diameter ~ 1 + (1 | plate) + (1 | sample)", sml.datasets.load("Penicillin")
    )
    res = model.fit()
    assert limits[:2] == [1, None]  # measured: one thread, then BLAS's default
    assert limits[2] == expected  # the fit's own limit
    assert model.cross_products.measured_threads == expected
    assert np.isfinite(res.llf)


class _Slow:
    def __init__(self, started: threading.Event | None, release: threading.Event | None):
        self.started, self.release = started, release

    @cached_property
    def value(self) -> int:
        if self.started is not None:
            self.started.set()
            self.release.wait(60)
        return 7


def test_a_cached_property_being_computed_does_not_hold_other_instances():
    """Python 3.11's functools.cached_property computes under one lock for all
    instances: a worker forked while another thread built some model's
    cross-products waited for that lock for ever (bootstrap(n_jobs=2) hung)."""
    started, release = threading.Event(), threading.Event()
    slow = _Slow(started, release)
    worker = threading.Thread(target=lambda: slow.value)
    worker.start()
    try:
        assert started.wait(10)
        child = multiprocessing.get_context("fork").Process(target=lambda: _Slow(None, None).value)
        child.start()
        child.join(30)
        assert child.exitcode == 0  # None: the child waited on the parent's lock
    finally:
        release.set()
        worker.join(10)
    assert slow.value == 7 and slow.__dict__["value"] == 7


def _fit_far_model(data) -> None:
    import statsmodels_lmer as sml

    sml.lmer("Reaction ~ Dfar + (Dfar | Subject)", data)  # its checks ignore warnings in blocks


def test_fits_in_threads_leave_the_warning_filters_as_they_were():
    """warnings.catch_warnings swaps process-wide state: two threads' blocks restored
    each other's, and every warning of the process stayed switched off."""
    import warnings

    import statsmodels_lmer as sml

    sleep = sml.datasets.load("sleepstudy")
    data = sleep.assign(Dfar=sleep.Days / 1000 + 10)
    before = list(warnings.filters)
    threads = [threading.Thread(target=lambda: [_fit_far_model(data) for _ in range(4)])]
    threads.append(threading.Thread(target=lambda: [_fit_far_model(data) for _ in range(4)]))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert warnings.filters == before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("still shown", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["still shown"]


def test_a_bootstrap_records_its_own_warnings_not_another_threads():
    import statsmodels_lmer as sml

    sleep = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    rng = np.random.default_rng(1)  # no group variance: a singular fit
    flat = pd.DataFrame({"g": np.repeat(np.arange(6), 10).astype(str), "y": rng.normal(size=60)})
    stop = threading.Event()
    shown = []

    def singular_fits() -> None:  # a singular fit, over and over, in another thread
        import warnings

        while not stop.is_set():
            with warnings.catch_warnings(record=True) as caught:  # this test's own thread
                warnings.simplefilter("always")
                assert sml.lmer("y ~ 1 + (1 | g)", flat).is_singular()
            shown.extend(caught)

    other = threading.Thread(target=singular_fits)
    other.start()
    try:
        boot = res.bootstrap(10, seed=1, progress=False)
    finally:
        stop.set()
        other.join(60)
    assert boot.warnings == {}  # sleepstudy's replicates: none singular
    assert shown and all("singular" in str(w.message) for w in shown)  # shown in their thread
