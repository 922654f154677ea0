"""Progress bars and worker processes, the one implementation of each.

``n_jobs`` means what it means in joblib and scikit-learn everywhere in the
package: ``None`` or 1 run in this process, ``k > 1`` uses ``k`` worker
processes, ``-1`` every CPU, ``-2`` all but one, and so on (0 is refused, as
joblib refuses it). Each worker is limited to one BLAS thread, so that ``k``
workers use ``k`` cores rather than ``k`` times the BLAS pool.

Progress bars follow one rule everywhere: ``progress=True`` shows a bar at
once, ``progress=False`` never, and ``progress=None`` (the default of every
long job) follows the package setting (:func:`set_progress`): shown, but only
once the job has run for ``delay`` seconds (2 by default), so that quick jobs
stay silent and slow ones say what they are doing. The environment variable
``STATSMODELS_LMER_PROGRESS=0`` turns the default off.

BLAS threads: numpy and scipy each bring an OpenBLAS thread pool whose
threads spin while they wait. On a machine whose cores are busy with other
work, a multi-threaded factorization of a moderate matrix can then take a
hundred times longer than on one thread. A fit therefore runs on one BLAS
thread unless its dense block has at least :data:`SMALL_BLOCK` rows, where
several threads pay off on a quiet machine; there it times one evaluation each
way and keeps the faster (``ProfiledDeviance.measured_threads``). ``threads=``
sets the number.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from threadpoolctl import OpenBLASController, ThreadpoolController, threadpool_limits

from .arguments import check_bool

__all__ = [
    "MAX_THREADED_BLOCK",
    "PROGRESS_VARIABLE",
    "SMALL_BLOCK",
    "THREADED_BLOCK",
    "EvaluationProgress",
    "Progress",
    "active_threads",
    "blas_threads",
    "check_threads",
    "effective_jobs",
    "map_in_workers",
    "progress_from_environment",
    "progress_settings",
    "set_progress",
    "threads_for_block",
]

PROGRESS_VARIABLE = "STATSMODELS_LMER_PROGRESS"
"""Environment variable: ``0``, ``false``, ``off`` or ``no`` turns the default bars off."""


def progress_from_environment(value: str | None) -> bool:
    """Whether a value of :data:`PROGRESS_VARIABLE` leaves the bars on (unset: on)."""
    return value is None or value.strip().lower() not in ("0", "false", "off", "no")


_BASE_SETTINGS: dict[str, Any] = {
    "enabled": progress_from_environment(os.environ.get(PROGRESS_VARIABLE)),
    "delay": 2.0,
}
_OVERRIDES: list[tuple[object, dict[str, Any]]] = []
"""Settings of :func:`set_progress` calls, oldest first; a ``with`` block removes its own
on exit, so blocks that overlap in several threads do not restore each other's."""
_OVERRIDES_LOCK = threading.Lock()


def _settings() -> dict[str, Any]:
    """The settings in force: the base, then every override in the order made."""
    merged = dict(_BASE_SETTINGS)
    with _OVERRIDES_LOCK:
        for _, values in _OVERRIDES:
            merged.update(values)
    return merged


class _RestoreSettings:
    """Withdraws one :func:`set_progress` call's settings when used as a context manager."""

    def __init__(self, token: object) -> None:
        self.token = token

    def __enter__(self) -> _RestoreSettings:
        return self

    def __exit__(self, *exc: Any) -> None:
        with _OVERRIDES_LOCK:
            _OVERRIDES[:] = [entry for entry in _OVERRIDES if entry[0] is not self.token]


def set_progress(enabled: bool = True, delay: float | None = None) -> _RestoreSettings:
    """Switch the default progress bars of long jobs on or off.

    Applies to every call made with ``progress=None`` (the default):
    ``profile``, ``confint(method="profile" | "boot")``, ``bootstrap``,
    ``allfit``, ``influence(method="full")``, the exact (R)LRT simulation and
    the Satterthwaite and Kenward-Roger computations behind ``ddf``,
    ``summary()`` and the tests. An explicit ``progress=True/False`` wins.

    Parameters
    ----------
    enabled : bool
        Show bars for jobs that run longer than ``delay`` seconds.
    delay : float, optional
        Seconds a job runs before its bar appears (default 2; 0 shows every bar).

    Returns
    -------
    context manager
        Withdraws this call's settings on exit, so that
        ``with sml.set_progress(False): ...`` silences one block only (blocks
        that overlap in several threads do not undo each other's).

    Raises
    ------
    TypeError
        When ``enabled`` is not a bool.
    ValueError
        When ``delay`` is negative.
    """
    enabled = check_bool("enabled", enabled)
    if delay is not None and not float(delay) >= 0:
        raise ValueError(f"delay must be a non-negative number of seconds, got {delay!r}")
    values: dict[str, Any] = {"enabled": enabled}
    if delay is not None:
        values["delay"] = float(delay)
    token = object()
    with _OVERRIDES_LOCK:
        _OVERRIDES.append((token, values))
    return _RestoreSettings(token)


def progress_settings() -> dict[str, Any]:
    """The current default: ``{"enabled": bool, "delay": seconds}``."""
    return _settings()


SMALL_BLOCK = 4000
"""Dense blocks of fewer rows are factored on one BLAS thread by default."""

THREADED_BLOCK = 64
"""Below this many rows BLAS works on one thread anyway: evaluations skip the limit's cost."""

_CONTROLLER: list[ThreadpoolController] = []
LIMIT_LOCK = threading.Lock()
"""Guards the shared BLAS limit of :func:`blas_threads` (made anew in a forked child)."""
_ACTIVE: dict[str, Any] = {"depth": 0, "limiter": None, "limit": None}


def _reset_after_fork() -> None:
    """A forked child holds only the forking thread: the locks and the shared BLAS
    limit that other threads of the parent held are released in it (a worker forked
    while another thread fitted waited on :data:`LIMIT_LOCK` for ever)."""
    global LIMIT_LOCK, _OVERRIDES_LOCK
    LIMIT_LOCK = threading.Lock()
    _OVERRIDES_LOCK = threading.Lock()
    _ACTIVE.update(depth=0, limiter=None, limit=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def check_threads(threads: Any) -> int | None:
    """``threads=``: None (automatic) or a whole number of BLAS threads, at least 1.

    Raises
    ------
    TypeError, ValueError
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be a whole number or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return threads


MAX_THREADED_BLOCK = 15000
"""Dense blocks of more rows are factored on one BLAS thread, whatever ``threads`` says.

OpenBLAS 0.3.30 and 0.3.31 (scipy's and numpy's wheels) crash with a
segmentation fault in a multi-threaded Cholesky factorization (``dpotrf``) of
order 16000 and above, on two threads of the benchmark machine (15500 and
below run; one thread runs at 20003). See docs/engine.md.
"""


def threads_for_block(block_rows: int, threads: int | None) -> int | None:
    """The BLAS thread limit for work on a dense block of ``block_rows`` rows.

    ``threads`` when given; otherwise 1 below :data:`SMALL_BLOCK` rows and
    None (BLAS's own default) from there on. Always 1 above
    :data:`MAX_THREADED_BLOCK` rows.
    """
    if block_rows > MAX_THREADED_BLOCK:
        return 1
    if threads is not None:
        return threads
    return 1 if block_rows < SMALL_BLOCK else None


def _controller() -> ThreadpoolController:
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


@contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Run the block with at most ``limit`` BLAS threads (None: leave them as they are).

    numpy's and scipy's pools are both limited, and restored when the last
    such block ends. BLAS's setting is process-wide, so blocks that overlap
    (nested, or in several threads at once) share the first one's limit, and
    the caller's setting is restored only once all have ended.
    """
    if limit is None:
        yield
        return
    with LIMIT_LOCK:
        if _ACTIVE["depth"] == 0:
            _release_control()
            _ACTIVE["limiter"] = _controller().limit(limits=limit, user_api="blas")
            _ACTIVE["limit"] = limit
        _ACTIVE["depth"] += 1
    try:
        yield
    finally:
        with LIMIT_LOCK:
            _ACTIVE["depth"] -= 1
            if _ACTIVE["depth"] == 0:
                _release_control()  # the last block to end may run in another thread
                _ACTIVE["limiter"].restore_original_limits()
                _ACTIVE["limiter"] = _ACTIVE["limit"] = None
                _release_control()


def active_threads() -> int:
    """Threads the work in progress may use: the active :func:`blas_threads` limit,
    else the number of CPUs (BLAS's own default)."""
    cpus = os.cpu_count() or 1
    limit = _ACTIVE.get("limit") if _ACTIVE["depth"] else None
    return max(1, min(cpus, int(limit))) if limit else cpus


def _release_control() -> None:
    """Let this thread set OpenBLAS's process-wide pool size.

    threadpoolctl 3.6 and later let only the thread that set the size first
    change it (others are silently ignored); the blocks here share one limit
    across threads, so control is handed to whichever thread sets or restores.
    """
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def effective_jobs(n_jobs: int | None, n_tasks: int | None = None) -> int:
    """Worker count for ``n_jobs`` (joblib's meaning), at most ``n_tasks``.

    As joblib's ``effective_n_jobs``: None is 1, ``-k`` is ``cpus + 1 - k``
    (at least 1, so that ``-8`` on a 4-CPU machine runs in this process, as
    joblib does); 0 runs in this process too (as documented before joblib's
    meaning was adopted; joblib refuses it).

    Raises
    ------
    TypeError
        When ``n_jobs`` is not a whole number.
    """
    if n_jobs is None:
        jobs = 1
    elif isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
        raise TypeError(f"n_jobs must be a whole number or None, got {n_jobs!r}")
    elif n_jobs == 0:
        jobs = 1
    elif n_jobs < 0:
        jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    else:
        jobs = n_jobs
    return max(1, min(jobs, n_tasks)) if n_tasks is not None else jobs


_IN_JOB: ContextVar[bool] = ContextVar("statsmodels_lmer_in_job", default=False)
"""True inside a ``with Progress(...)`` block: the fits it runs draw no bars of their own."""


class Progress:
    """A progress bar (tqdm when installed, else a line per step on stderr), or nothing.

    Used as a context manager, it also marks its block as one job: the fits
    run inside (bootstrap refits, allfit's optimizers) draw no bars of their
    own by default (:class:`EvaluationProgress`).

    Parameters
    ----------
    total : int or None
        Number of steps (None: not known).
    desc : str
        What is being done (shown before the bar).
    unit : str
        Name of one step.
    enabled : bool or None
        True: shown at once; False: every method is a no-op; None: the
        package setting (:func:`set_progress`), shown once the job has run
        for its ``delay``.
    elapsed : float
        Seconds the work has already run (a bar drawn late): its rate and
        clock count from then.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        enabled: bool | None = None,
        elapsed: float = 0.0,
    ) -> None:
        if enabled is None:
            settings = _settings()
            self.enabled, self.delay = bool(settings["enabled"]), float(settings["delay"])
        else:
            self.enabled, self.delay = check_bool("progress", enabled), 0.0
        self.desc = desc
        self.done = 0
        self.total = total
        self._started = time.monotonic()
        self._noted = self._started
        self._bar = None
        self._job: Token[bool] | None = None
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm missing: one line per step
                self._bar = None
            else:
                self._bar = tqdm(
                    total=total, desc=desc, unit=unit, file=sys.stderr, delay=self.delay
                )
                self._bar.start_t -= elapsed  # tqdm's clock (time.time) and its
                self._bar.last_print_t -= elapsed  # rate's, from when the work began

    def update(self, steps: int = 1, note: str | None = None) -> None:
        """Advance by ``steps``; ``note`` is shown next to the bar (or printed)."""
        if not self.enabled:
            return
        self.done += steps
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(steps)
        elif time.monotonic() - self._started >= self.delay:
            text = f"{self.desc} {self.done}" + ("" if self.total is None else f"/{self.total}")
            print(text + (f" {note}" if note else ""), file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """Say what is being done now without advancing (tqdm bar only).

        The bar is redrawn at most ten times a second, and not before its delay.
        """
        if self._bar is None:
            return
        now = time.monotonic()
        redraw = now - self._started >= self.delay and now - self._noted >= 0.1
        if redraw:
            self._noted = now
        self._bar.set_postfix_str(text, refresh=redraw)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        self._job = _IN_JOB.set(True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._job is not None:
            _IN_JOB.reset(self._job)
            self._job = None
        self.close()


class EvaluationProgress:
    """A fit's progress: evaluations counted, the lowest value shown, the bar drawn late.

    Called with each objective value. Nothing is drawn until the fit has run
    for the package's delay (:func:`set_progress`, 2 s), so quick fits cost a
    clock reading per evaluation and stay silent; then a bar of unknown
    length counts the evaluations and shows the lowest value so far and the
    stage. ``enabled=None`` follows the package setting, except inside a
    job's bar (:class:`Progress` as a context manager), whose fits are quiet.

    Parameters
    ----------
    desc : str
        What is being done (shown before the bar).
    enabled : bool or None
        True: drawn from the first evaluation; False: nothing; None: see above.
    unit : str
        What is counted, as tqdm shows it after the count (hence the space).
    """

    REDRAW = 0.2
    """Seconds between two updates of a drawn bar."""

    def __init__(self, desc: str, enabled: bool | None = None, unit: str = " evaluations") -> None:
        if enabled is None:
            settings = _settings()
            self.enabled = bool(settings["enabled"]) and not _IN_JOB.get()
            self.delay = float(settings["delay"])
        else:
            self.enabled, self.delay = check_bool("progress", enabled), 0.0
        self.desc, self.unit = desc, unit
        self.count = 0
        self.lowest = math.inf
        self.stage = ""
        self._started = time.monotonic()
        self._drawn = -math.inf
        self._bar: Progress | None = None

    def __call__(self, value: float) -> None:
        """Count one evaluation of the objective, whose value is ``value``."""
        self.count += 1
        if value < self.lowest:
            self.lowest = value
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn < self.REDRAW or now - self._started < self.delay:
            return
        self._drawn = now
        self._draw()

    def set_stage(self, stage: str) -> None:
        """Say what the fit does now (shown from the next evaluation on)."""
        self.stage = stage

    def _draw(self) -> None:
        if self._bar is None:
            elapsed = time.monotonic() - self._started
            self._bar = Progress(None, self.desc, self.unit, enabled=True, elapsed=elapsed)
        parts = [self.stage] if self.stage else []
        if math.isfinite(self.lowest):
            parts.append(f"lowest {self.lowest:.10g}")
        self._bar.update(self.count - self._bar.done, note=", ".join(parts))

    def close(self) -> None:
        """Bring a drawn bar up to date and finish it."""
        if self._bar is not None:
            self._draw()
            self._bar.close()
            self._bar = None

    def __enter__(self) -> EvaluationProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _limit_blas_threads(initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    threadpool_limits(1)
    set_progress(False)  # a worker's fits draw no bars; the parent's job has one
    if initializer is not None:
        initializer(*initargs)


def map_in_workers(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    n_jobs: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    ahead: int = 2,
) -> Iterator[tuple[int, Any]]:
    """``function(item)`` in ``n_jobs`` worker processes, yielding ``(index, result)`` as done.

    Items are drawn lazily, at most ``ahead`` per worker before their results
    come back (so that items produced on demand, such as simulated responses,
    are not all in memory at once). ``function`` and the items must pickle.
    Each worker runs with one BLAS thread.
    """
    iterator = enumerate(items)
    with ProcessPoolExecutor(
        n_jobs, initializer=_limit_blas_threads, initargs=(initializer, initargs)
    ) as pool:
        pending: dict[Any, int] = {}
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < ahead * n_jobs:
                try:
                    index, item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(function, item)] = index
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield pending.pop(future), future.result()
