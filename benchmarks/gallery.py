"""Fit times of the real-data gallery: our default fit against lme4's, same run.

The models and data are those of tests/test_gallery.py (tests/fixtures/gallery.json
and tests/fixtures/data/gallery_*.csv.gz). One Rscript process times lme4's
``lmer`` (the median of ``--repeats`` fits after a warm-up fit); then this
process times ours the same way. Prints a Markdown table.

    python benchmarks/gallery.py                       # every model, REML
    python benchmarks/gallery.py --models rail_oneway star_crossed --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

import statsmodels_lmer as sml

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
options(contrasts = c("contr.treatment", "contr.poly"))
spec <- jsonlite::fromJSON(commandArgs(trailingOnly = TRUE)[1], simplifyDataFrame = FALSE)
for (case in spec$cases) {
  d <- read.csv(case$csv, colClasses = "character")
  for (v in names(d)) {
    lev <- case$factors[[v]]
    d[[v]] <- if (is.null(lev)) as.numeric(d[[v]]) else factor(d[[v]], levels = unlist(lev))
  }
  f <- as.formula(case$formula)
  fit <- function() suppressMessages(suppressWarnings(lmer(f, d, REML = case$reml)))
  m <- fit()  # warm-up
  times <- vapply(seq_len(spec$repeats), function(i) {
    invisible(gc())
    t0 <- Sys.time(); fit()
    as.numeric(difftime(Sys.time(), t0, units = "secs"))
  }, numeric(1))
  cat(jsonlite::toJSON(list(name = case$name, seconds = median(times),
                            objective = if (case$reml) REMLcrit(m) else deviance(m)),
                       auto_unbox = TRUE, digits = NA), "\n", sep = "")
}
"""


def load_gallery() -> dict:
    """The gallery's reference file (models, data sets)."""
    return json.loads((FIXTURES / "gallery.json").read_text())


def load_data(info: dict) -> pd.DataFrame:
    """A gallery data set with its factors as categoricals in R's level order."""
    factors = info["factors"]
    data = pd.read_csv(
        FIXTURES / "data" / info["file"], dtype={c: str for c in factors}, keep_default_na=False
    )
    for column, levels in factors.items():
        data[column] = pd.Categorical(data[column], categories=levels)
    return data


def time_lme4(cases: list[dict], repeats: int) -> dict[str, dict]:
    """lme4's median fit time and objective per model name (empty without Rscript)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "gallery_timing.R"
        script.write_text(R_SCRIPT)
        spec = Path(folder) / "spec.json"
        spec.write_text(json.dumps({"repeats": repeats, "cases": cases}))
        out = subprocess.run(
            [rscript, str(script), str(spec)], capture_output=True, text=True, check=True
        )
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {row["name"]: row for row in rows}


def time_ours(formula: str, data: pd.DataFrame, reml: bool, repeats: int) -> tuple[float, float]:
    """Our median fit time (after a warm-up fit) and objective."""

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sml.lmer(formula, data, REML=reml)

    fit()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        res = fit()
        times.append(time.perf_counter() - began)
    return statistics.median(times), res.objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="model names (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per model")
    parser.add_argument("--ml", action="store_true", help="ML fits instead of REML")
    args = parser.parse_args()
    gallery = load_gallery()
    names = args.models or sorted(gallery["models"])
    reml = not args.ml
    cases = []
    for name in names:
        model = gallery["models"][name]
        info = gallery["datasets"][model["dataset"]]
        cases.append(
            {
                "name": name,
                "formula": model["formula"],
                "reml": reml,
                "csv": str(FIXTURES / "data" / info["file"]),
                "factors": info["factors"],
            }
        )
    lme4 = time_lme4(cases, args.repeats)
    print("| model | n | lme4 (s) | ours (s) | ratio | objective: ours - lme4 |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in cases:
        data = load_data(gallery["datasets"][gallery["models"][case["name"]]["dataset"]])
        ours, objective = time_ours(case["formula"], data, reml, args.repeats)
        r = lme4.get(case["name"])
        r_time = f"{r['seconds']:.3f}" if r else "-"
        ratio = f"{ours / r['seconds']:.2f}" if r else "-"
        gap = f"{objective - r['objective']:.2e}" if r else "-"
        print(f"| {case['name']} | {len(data)} | {r_time} | {ours:.3f} | {ratio} | {gap} |")


if __name__ == "__main__":
    main()
