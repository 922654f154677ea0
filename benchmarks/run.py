"""Benchmark: in-process fit times against lme4 (Rscript) and statsmodels MixedLM.

Usage::

    python benchmarks/run.py                 # all models, 5 repeats
    python benchmarks/run.py --models InstEval --repeats 3 --no-r

Each fit is timed from formula to results (model frame, cross-products,
optimization), median of ``--repeats`` after one warm-up. lme4 is timed in one
R process (``system.time`` of ``lmer``, median of repeats) when ``Rscript``
and lme4 are installed; MixedLM where it can fit the model (one grouping
factor, or variance components within one group).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import statsmodels.formula.api as smf

import statsmodels_lmer as sml


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str
    formula: str
    reml: bool
    mixedlm: dict | None = None  # keywords for MixedLM.from_formula, if it can fit it


CASES = [
    Case(
        "Dyestuff",
        "Dyestuff",
        "Yield ~ 1 + (1|Batch)",
        True,
        {"formula": "Yield ~ 1", "groups": "Batch"},
    ),
    Case("Penicillin", "Penicillin", "diameter ~ 1 + (1|plate) + (1|sample)", True),
    Case(
        "Pastes",
        "Pastes",
        "strength ~ 1 + (1|batch/cask)",
        True,
        {"formula": "strength ~ 1", "groups": "batch", "vc_formula": {"cask": "0 + C(cask)"}},
    ),
    Case(
        "sleepstudy",
        "sleepstudy",
        "Reaction ~ Days + (Days|Subject)",
        True,
        {"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"},
    ),
    Case("cake", "cake", "angle ~ recipe * temperature + (1|recipe:replicate)", True),
    Case("InstEval", "InstEval", "y ~ service + (1|s) + (1|d) + (1|dept)", False),
]


def time_ours(case: Case, repeats: int) -> tuple[float, int, float]:
    data = sml.datasets.load(case.dataset)
    sml.lmer(case.formula, data, REML=case.reml)  # warm-up
    times, res = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        res = sml.lmer(case.formula, data, REML=case.reml)
        times.append(time.perf_counter() - began)
    return statistics.median(times), res.optinfo["feval"], res.objective


def time_mixedlm(case: Case, repeats: int) -> float | None:
    if case.mixedlm is None:
        return None
    data = sml.datasets.load(case.dataset)
    kwargs = dict(case.mixedlm)
    formula = kwargs.pop("formula")
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            began = time.perf_counter()
            smf.mixedlm(formula, data, **kwargs).fit(reml=case.reml)
            times.append(time.perf_counter() - began)
    return statistics.median(times)


R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
options(contrasts = c("contr.treatment", "contr.treatment"))  # as Python users get
args <- commandArgs(trailingOnly = TRUE)
cases <- jsonlite::fromJSON(args[1])
out <- list()
for (i in seq_len(nrow(cases))) {
  data(list = cases$dataset[i], package = "lme4")
  d <- get(cases$dataset[i])
  f <- as.formula(cases$formula[i])
  m <- lmer(f, d, REML = cases$reml[i])  # warm-up
  tt <- replicate(cases$repeats[i], system.time(lmer(f, d, REML = cases$reml[i]))[["elapsed"]])
  out[[cases$name[i]]] <- list(seconds = median(tt), feval = m@optinfo$feval,
                               objective = if (cases$reml[i]) REMLcrit(m) else deviance(m))
}
cat(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def time_lme4(cases: list[Case], repeats: int) -> dict:
    if shutil.which("Rscript") is None:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "cases.json"
        spec.write_text(
            json.dumps(
                [
                    {
                        "name": c.name,
                        "dataset": c.dataset,
                        "formula": c.formula,
                        "reml": c.reml,
                        "repeats": repeats if c.name != "InstEval" else 1,
                    }
                    for c in cases
                ]
            )
        )
        script = Path(folder) / "bench.R"
        script.write_text(R_SCRIPT)
        done = subprocess.run(["Rscript", str(script), str(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        print("lme4 timing failed:", done.stderr.strip().splitlines()[-1:])
        return {}
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[c.name for c in CASES])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-r", action="store_true", help="skip lme4 even if Rscript exists")
    args = parser.parse_args()
    cases = [c for c in CASES if c.name in args.models]
    lme4 = {} if args.no_r else time_lme4(cases, args.repeats)
    print(
        f"# {platform.platform()}, Python {platform.python_version()}, "
        f"statsmodels_lmer {sml.__version__}, optimizer default: "
        f"{sml.available_optimizers()[0]}"
    )
    header = (
        f"{'model':12s} {'ours (s)':>10s} {'evals':>6s} {'lme4 (s)':>10s} {'lme4 evals':>10s} "
        f"{'x lme4':>7s} {'MixedLM (s)':>12s} {'objective diff':>15s}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        seconds, feval, objective = time_ours(case, args.repeats)
        mixed = time_mixedlm(case, args.repeats)
        ref = lme4.get(case.name, {})
        r_sec = ref.get("seconds")
        cells = [
            f"{case.name:12s}",
            f"{seconds:10.4f}",
            f"{feval:6d}",
            _cell(r_sec, 10, ".3f"),
            f"{ref.get('feval', '-')!s:>10s}",
            _cell(r_sec / seconds if r_sec else None, 7, ".1f"),
            _cell(mixed, 12, ".4f"),
            _cell(objective - ref["objective"] if ref else None, 15, ".2e"),
        ]
        print(" ".join(cells))


def _cell(value: float | None, width: int, spec: str) -> str:
    return f"{value:{width}{spec}}" if value is not None else "-".rjust(width)


if __name__ == "__main__":
    main()
