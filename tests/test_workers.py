"""Worker processes of the n_jobs tools, forked while other threads hold the package's locks."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from statsmodels_lmer import _parallel
from statsmodels_lmer._parallel import blas_threads

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
