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
