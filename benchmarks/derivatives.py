"""Issue 13's derivative targets in one run: kb07's maximal fits and InstEval's profile intervals.

Usage::

    python benchmarks/derivatives.py            # kb07 4x4 and 8x8 (ML), InstEval profile confint
    python benchmarks/derivatives.py --quick    # kb07 4x4 and a sleepstudy profile (seconds)

Each measurement is one JSON line: wall and CPU seconds, the number of
criterion calls (``feval``; gradients in ``n_gradients``), the deviance and
the system load before the run. Targets (issue 13): kb07 maximal default fit
under 30 s at the best known optimum, ``summary()`` under 5 s; InstEval
``confint(method="profile")`` under 30 s. One process, one run each: on a
shared machine the load decides the wall time, so it is printed with it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import statsmodels_lmer as sml

KB07_FIXED = "rt_trunc ~ 1 + S + P + L + S:P + S:L + P:L + S:P:L"
KB07_SLOPES = {
    "kb07_4x4": "1 + S + P + L",
    "kb07_8x8": "1 + S + P + L + S:P + S:L + P:L + S:P:L",
}
SECOND_LEVEL = {"S": ("spkr", "old"), "P": ("prec", "maintain"), "L": ("load", "yes")}
"""Helmert codes of kb07's two-level factors: the second level +1, the first -1."""


def kb07() -> Any:
    data = sml.datasets.load("kb07")
    codes = {c: np.where(data[f] == level, 1.0, -1.0) for c, (f, level) in SECOND_LEVEL.items()}
    return data.assign(**codes)


def timed(task: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = task()
    times = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    return out, {**times, "load_before": load}


def fit_and_summary(name: str, formula: str, data: Any) -> None:
    model = sml.Lmer.from_formula(formula, data)
    res, fit = timed(lambda: model.fit(reml=False))
    _, summary = timed(lambda: str(res.summary()))
    info = res.optinfo
    report(
        name,
        fit=fit,
        summary=summary,
        deviance=res.deviance,
        feval=info["feval"],
        n_gradients=info.get("n_gradients"),
        converged=bool(res.converged),
    )


def profile_confint(name: str, formula: str, data: Any, **fit: Any) -> None:
    res = sml.Lmer.from_formula(formula, data).fit(**fit)
    ci, times = timed(lambda: res.confint(method="profile", progress=False))
    report(name, confint=times, limits=ci.round(6).to_numpy().tolist())


def report(name: str, **values: Any) -> None:
    print(json.dumps({"case": name, **values}), flush=True)


def main(argv: list[str]) -> None:
    sml.set_progress(False)
    data = kb07()
    slopes = dict(list(KB07_SLOPES.items())[:1]) if "--quick" in argv else KB07_SLOPES
    for name, terms in slopes.items():
        formula = f"{KB07_FIXED} + ({terms} | subj) + ({terms} | item)"
        fit_and_summary(name, formula, data)
    if "--quick" in argv:
        study = sml.datasets.load("sleepstudy")
        profile_confint("sleepstudy", "Reaction ~ Days + (Days | Subject)", study)
        return
    formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
    profile_confint("InstEval", formula, sml.datasets.load("InstEval"), reml=False)


if __name__ == "__main__":
    main(sys.argv[1:])
