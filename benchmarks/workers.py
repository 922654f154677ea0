"""What runs inside a benchmark worker process: fit timing, evaluation timing, memory.

``run.py`` starts one fresh process per measurement::

    python benchmarks/workers.py ours NAME REPEATS          # our fit of a case
    python benchmarks/workers.py mixedlm NAME REPEATS LIMIT  # statsmodels MixedLM
    python benchmarks/workers.py devfun N                    # one evaluation at n rows
    python benchmarks/workers.py inference TASK NAME         # summary() or profile confint
    python benchmarks/workers.py evaluate NAME               # setup and two evaluations

and reads the result, a JSON object, from the last line of its output.

The timing rule (shared with ``lme4_timing.R``): one warm-up fit of the model,
then the median of ``repeats`` timed fits (3 when the warm-up took 1 s or
more, about :data:`FAST_BUDGET` seconds of fits when it took under
:data:`FAST`); a first fit of :data:`SLOW` seconds or more is the only one.
"""

from __future__ import annotations

import gc
import json
import resource
import signal
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import statsmodels.formula.api as smf
from cases import BY_NAME, DEVFUN_FORMULA, DEVFUN_LEVELS, DEVFUN_THETA, SEED, Case
from synthetic import make_data

import statsmodels_lmer as sml
from statsmodels_lmer.engine.objective import ProfiledDeviance

SLOW = 10.0  # a first fit this slow is the only timed fit
FAST = 0.05  # fits faster than this are repeated for about FAST_BUDGET seconds
FAST_BUDGET = 0.5
MAX_FAST_RUNS = 50
MIXEDLM_LIMIT = 120.0  # seconds per MixedLM fit


def plan(first: float, repeats: int) -> int:
    """Timed fits after a first (warm-up) fit that took ``first`` seconds."""
    if first >= SLOW:
        return 0
    if first < FAST:  # at least FAST_BUDGET seconds of fits, up to MAX_FAST_RUNS
        return max(repeats, min(MAX_FAST_RUNS, int(FAST_BUDGET / max(first, 1e-4))))
    return repeats if first < 1.0 else min(3, repeats)


# ---------------------------------------------------------------------------
# clocks


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Growth of the resident set over a block: VmHWM after a reset, else ru_maxrss."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.method = "VmHWM"
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "ru_maxrss"
        self.base_kib = _status_kib("VmRSS") if self.method == "VmHWM" else None
        if self.base_kib is None:
            self.method = "ru_maxrss"
            self.base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method == "VmHWM":
            peak = _status_kib("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_kib = peak
        self.growth_mib = max(peak - self.base_kib, 0) / 1024


class EvalClock:
    """Time spent in objective evaluations, by wrapping ``ProfiledDeviance.__call__``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        original = ProfiledDeviance.__call__
        clock = self

        def timed(self: ProfiledDeviance, theta: np.ndarray) -> float:
            began = time.perf_counter()
            try:
                return original(self, theta)
            finally:
                clock.seconds += time.perf_counter() - began
                clock.calls += 1

        ProfiledDeviance.__call__ = timed

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_calls(func: Callable[[Any], Any], arg: Any, budget: float = 2.0) -> float:
    """Median milliseconds of ``func(arg)`` over about ``budget`` seconds (3 to 200 calls)."""
    began = time.perf_counter()
    func(arg)
    first = time.perf_counter() - began
    calls = int(min(200, max(3, budget / max(first, 1e-6))))
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        func(arg)
        times.append(time.perf_counter() - began)
    return 1e3 * statistics.median(times)


# ---------------------------------------------------------------------------
# ours


def _warm_up_ours() -> None:
    sml.lmer("Yield ~ 1 + (1|Batch)", sml.datasets.load("Dyestuff"))


def _timed_fit(case: Case, data: Any, clock: EvalClock) -> tuple[dict, Any, Any]:
    """One fit from formula to results: its figures, the model and the results."""
    clock.reset()
    faults = _minor_faults()
    began = time.perf_counter()
    model = sml.Lmer.from_formula(case.formula, data)
    built = time.perf_counter()
    res = model.fit(reml=case.reml)
    done = time.perf_counter()
    figures = {
        "seconds": done - began,
        "setup_seconds": built - began,
        "fit_eval_seconds": clock.seconds,
        "fit_eval_calls": clock.calls,
        "page_faults": _minor_faults() - faults,
    }
    return figures, model, res


def worker_ours(case: Case, repeats: int) -> dict:
    """Fit time, evaluations, memory and the cost of one evaluation of our fit."""
    data = case.load()
    _warm_up_ours()
    clock = EvalClock()
    with PeakMemory() as memory:
        first, model, res = _timed_fit(case, data, clock)
    runs = [first]
    extra = 0 if case.once else plan(first["seconds"], repeats)
    if extra:
        del model, res
        runs = []
        for _ in range(extra):
            figures, model, res = _timed_fit(case, data, clock)
            runs.append(figures)
    # one objective evaluation at the optimum, cross-products already built
    devfun = model.devfun(case.reml)
    optinfo = res.optinfo
    out = {
        "name": case.name,
        "n": int(model.nobs),
        "runs": len(runs),
        "warm_up": not case.once and extra > 0,
        "feval": int(optinfo["feval"]),
        "verify_rounds": optinfo.get("verify_rounds"),
        "verified": optinfo.get("verified"),
        "objective": float(res.objective),
        "eval_ms": time_calls(devfun, res.theta),
        "peak_mib": memory.growth_mib,
        "process_peak_mib": memory.peak_kib / 1024,
        "memory_method": memory.method,
        "warnings": [str(w) for w in optinfo.get("warnings", [])][:3],
        "derivs": optinfo.get("derivs") is not None,
    }
    for key in runs[0]:
        out[key] = statistics.median(r[key] for r in runs)
    # cross-products alone, on a new model (skipped for slow models: time and memory)
    out["cross_seconds"] = None
    if first["seconds"] < SLOW:
        del model, res, devfun
        model = sml.Lmer.from_formula(case.formula, data)
        began = time.perf_counter()
        model.devfun(case.reml)
        out["cross_seconds"] = time.perf_counter() - began
    return out


def worker_devfun(n: int) -> dict:
    """Setup and evaluation time of the objective at ``n`` rows, same levels at every n."""
    data = make_data("crossed", n, DEVFUN_LEVELS, seed=SEED)
    codes = data["g1"].cat.codes.to_numpy(np.int64) * DEVFUN_LEVELS[1] + data["g2"].cat.codes
    began = time.perf_counter()
    model = sml.Lmer.from_formula(DEVFUN_FORMULA, data)
    devfun = model.devfun(True)
    theta = np.array(DEVFUN_THETA)
    value = devfun(theta)  # builds the cross-products
    setup = time.perf_counter() - began
    return {
        "n": n,
        "levels": list(DEVFUN_LEVELS),
        "pairs": int(np.unique(codes).size),
        "setup_seconds": setup,
        "eval_ms": time_calls(devfun, theta),
        "objective": float(value),
    }


def worker_evaluate(case: Case) -> dict:
    """Setup, two evaluations and peak memory of a model too slow to fit in the run."""
    data = case.load()
    _warm_up_ours()
    with PeakMemory() as memory:
        began = time.perf_counter()
        model = sml.Lmer.from_formula(case.formula, data)
        devfun = model.devfun(case.reml)
        setup = time.perf_counter() - began
        theta = np.asarray(model.theta_start, dtype=float)
        seconds = []
        with devfun.blas_threads():
            for point in (theta, 0.9 * theta):
                began = time.perf_counter()
                devfun(point)
                seconds.append(time.perf_counter() - began)
    return {
        "name": case.name,
        "setup_seconds": setup,
        "eval_seconds": seconds,
        "strategy": devfun.cross.strategy,
        "order": int(devfun.cross.size_rest),
        "peak_mib": memory.growth_mib,
        "process_peak_mib": memory.peak_kib / 1024,
    }


def worker_inference(task: str, case: Case) -> dict:
    """Seconds of ``summary()`` (Satterthwaite df) or ``confint(method="profile")`` after a fit."""
    _warm_up_ours()
    res = sml.Lmer.from_formula(case.formula, case.load()).fit(reml=case.reml)
    clock = EvalClock()
    began = time.perf_counter()
    if task == "summary":
        res.summary()
    elif task == "profile":
        res.confint(method="profile")
    else:
        raise SystemExit(f"unknown inference task {task!r}: summary or profile")
    return {
        "task": task,
        "name": case.name,
        "seconds": time.perf_counter() - began,
        "evaluations": clock.calls,
        "fit_objective": float(res.objective),
    }


# ---------------------------------------------------------------------------
# statsmodels MixedLM


def _on_alarm(signum: int, frame: object) -> None:
    raise TimeoutError


def worker_mixedlm(case: Case, repeats: int, limit: float) -> dict:
    """Fit time of statsmodels MixedLM, each fit stopped after ``limit`` seconds."""
    warnings.simplefilter("ignore")
    smf.mixedlm("Yield ~ 1", sml.datasets.load("Dyestuff"), groups="Batch").fit()  # warm-up
    data = case.load()
    kwargs = dict(case.mixedlm)
    formula = kwargs.pop("formula")
    if isinstance(kwargs["groups"], list):
        columns = kwargs["groups"]
        kwargs["groups"] = data[columns].astype(str).agg(":".join, axis=1)
    signal.signal(signal.SIGALRM, _on_alarm)

    def fit() -> float:
        began = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            smf.mixedlm(formula, data, **kwargs).fit(reml=case.reml)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return time.perf_counter() - began

    try:
        first = fit()
        times = [fit() for _ in range(plan(first, repeats))] or [first]
    except TimeoutError:
        return {"name": case.name, "timeout": limit}
    return {"name": case.name, "seconds": statistics.median(times), "runs": len(times)}


WORKERS: dict[str, Callable[[list[str]], dict]] = {
    "ours": lambda args: worker_ours(BY_NAME[args[0]], int(args[1])),
    "mixedlm": lambda args: worker_mixedlm(BY_NAME[args[0]], int(args[1]), float(args[2])),
    "devfun": lambda args: worker_devfun(int(args[0])),
    "inference": lambda args: worker_inference(args[0], BY_NAME[args[1]]),
    "evaluate": lambda args: worker_evaluate(BY_NAME[args[0]]),
}


def main(argv: list[str]) -> None:
    """Run one worker and print its result as the last line, in JSON."""
    if not argv or argv[0] not in WORKERS:
        raise SystemExit(f"usage: workers.py {{{','.join(WORKERS)}}} ARGS...")
    print(json.dumps(WORKERS[argv[0]](argv[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])
