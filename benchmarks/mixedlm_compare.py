"""Benchmark: the models of statsmodels' own MixedLM tests, fitted by MixedLM and by us.

Usage::

    python benchmarks/mixedlm_compare.py                # every case, REML (about a minute)
    python benchmarks/mixedlm_compare.py --quick        # four small cases
    python benchmarks/mixedlm_compare.py --criteria REML ML --repeats 5
    python benchmarks/mixedlm_compare.py --write        # also write docs/benchmark_mixedlm.md

The cases are those of ``tests/fixtures/mixedlm_cases.json`` (statsmodels'
``test_lme.py`` data lme00..lme11, dietox, Pastes, Penicillin, Sitka). Each
model is built the MixedLM way on both sides: ``MixedLM.from_formula`` (or the
array constructor) and ``sml.mixedlm`` with the same ``groups``,
``re_formula`` and ``vc_formula``; models with independent random effects
(MixedLM's ``free=`` pattern) use lme4's ``||``-style terms on our side. The
time is from building the model to the fitted results: one warm-up fit, then
the median of ``--repeats`` fits. MixedLM uses its default optimizer chain.
The table also gives how far each log-likelihood is below lme4's optimum
(``mixedlm_cases.json``; 0 means at it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

import statsmodels_lmer as sml

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
QUICK = ("lme02_drf", "dietox_pig_intercept", "pastes_batch_cask", "sitka_intercept")


def load_data(ref: dict) -> pd.DataFrame:
    """A case's data: a fixture CSV or a bundled data set."""
    if ref.get("file"):
        return pd.read_csv(FIXTURES / ref["file"])
    return sml.datasets.load(ref["package_dataset"])


def formula_model(build, spec: dict, data: pd.DataFrame):
    """A model from MixedLM's formula arguments, by ``MixedLM.from_formula`` or ``sml.mixedlm``."""
    return build(
        spec["formula"],
        data,
        groups=spec["groups"],
        re_formula=spec.get("re_formula"),
        vc_formula=spec.get("vc_formula"),
    )


def fit_mixedlm(case: dict, data: pd.DataFrame, reml: bool):
    """MixedLM's fit of the case (default optimizer chain)."""
    spec = case["mixedlm"]
    if spec["interface"] == "arrays":
        model = MixedLM(
            data[spec["endog"]].to_numpy(),
            data[spec["exog"]].to_numpy(),
            data[spec["groups"]].to_numpy(),
            data[spec["exog_re"]].to_numpy(),
        )
    else:
        model = formula_model(MixedLM.from_formula, spec, data)
    kwargs = {"reml": reml}
    if spec["free_cov_re"] == "diagonal":
        kwargs["free"] = MixedLMParams.from_components(
            fe_params=np.ones(model.k_fe), cov_re=np.eye(model.k_re), vcomp=np.ones(model.k_vc)
        )
    return model.fit(**kwargs)


def fit_ours(case: dict, data: pd.DataFrame, reml: bool):
    """Our fit of the case, through MixedLM's arguments where they describe it."""
    spec = case["mixedlm"]
    if spec["free_cov_re"] == "diagonal":
        model = sml.Lmer.from_formula(case["lme4_formula"], data)
    elif spec["interface"] == "arrays":
        fixed = "endog ~ " + " + ".join(["0", *spec["exog"]])
        re_formula = " + ".join(["0", *spec["exog_re"]])
        model = sml.mixedlm(fixed, data, groups=spec["groups"], re_formula=re_formula)
    else:
        model = formula_model(sml.mixedlm, spec, data)
    return model.fit(reml=reml)


def timed(func, args: tuple, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    result = func(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = func(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(names: list[str], criteria: list[str], repeats: int) -> list[dict]:
    cases = {
        c["name"]: c for c in json.loads((FIXTURES / "mixedlm_cases.json").read_text())["cases"]
    }
    rows = []
    for name in names:
        case = cases[name]
        data = load_data(case["data"])
        if case["mixedlm"].get("groups") == "one":
            data = data.assign(one=1)
        for crit in criteria:
            if crit not in case["fits"]:
                continue
            reml = crit == "REML"
            best = case["fits"][crit]["llf"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours_s, ours = timed(fit_ours, (case, data, reml), repeats)
                theirs_s, theirs = timed(fit_mixedlm, (case, data, reml), max(1, repeats // 3))
            rows.append(
                {
                    "case": name,
                    "criterion": crit,
                    "nobs": len(data),
                    "ours_s": ours_s,
                    "mixedlm_s": theirs_s,
                    "speedup": theirs_s / ours_s,
                    "ours_below_lme4": best - float(ours.llf),
                    "mixedlm_below_lme4": best - float(theirs.llf),
                    "mixedlm_converged": bool(theirs.converged),
                }
            )
            print(
                f"{name:28s} {crit:4s} ours {ours_s:8.4f}s  MixedLM {theirs_s:8.4f}s  "
                f"x{theirs_s / ours_s:6.1f}  llf below lme4: ours {rows[-1]['ours_below_lme4']:.1e}"
                f"  MixedLM {rows[-1]['mixedlm_below_lme4']:.1e}",
                flush=True,
            )
    return rows


def markdown(rows: list[dict], repeats: int) -> str:
    lines = [
        "# Benchmark: statsmodels' MixedLM test models, MixedLM against statsmodels_lmer",
        "",
        "Written by `python benchmarks/mixedlm_compare.py --write` "
        f"({platform.machine()}, Python {platform.python_version()}, "
        f"statsmodels {statsmodels.__version__}; median of {repeats} fits after a warm-up,"
        " MixedLM's of fewer). Timings on a shared 2-core machine are indicative.",
        "'below lme4' is how far the log-likelihood is under lme4's optimum"
        " (`tests/fixtures/mixedlm_cases.json`); negative values are rounding.",
        "",
        "| case | fit | rows | ours (s) | MixedLM (s) | MixedLM / ours | ours below lme4 "
        "| MixedLM below lme4 | MixedLM converged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['criterion']} | {r['nobs']} | {r['ours_s']:.4f} | "
            f"{r['mixedlm_s']:.4f} | {r['speedup']:.1f} | {r['ours_below_lme4']:.1e} | "
            f"{r['mixedlm_below_lme4']:.1e} | {'yes' if r['mixedlm_converged'] else 'no'} |"
        )
    ratios = [r["speedup"] for r in rows]
    lines += [
        "",
        f"Median MixedLM / ours time ratio: {statistics.median(ratios):.1f} "
        f"(range {min(ratios):.1f} to {max(ratios):.1f}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="four small cases")
    parser.add_argument("--cases", nargs="*", help="case names (default all)")
    parser.add_argument("--criteria", nargs="*", default=["REML"], choices=["REML", "ML"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write docs/benchmark_mixedlm.md")
    args = parser.parse_args(argv)
    cases = [c["name"] for c in json.loads((FIXTURES / "mixedlm_cases.json").read_text())["cases"]]
    names = list(QUICK) if args.quick else (args.cases or cases)
    rows = run(names, args.criteria, args.repeats)
    if args.write:
        path = ROOT / "docs" / "benchmark_mixedlm.md"
        path.write_text(markdown(rows, args.repeats))
        print("wrote", path)


if __name__ == "__main__":
    main()
