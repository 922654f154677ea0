"""lme4 timings: the cases and data handed to ``lme4_timing.R``, its answers read back.

One ``Rscript`` process times every case, after a warm-up fit of Dyestuff, with
the timing rule of :mod:`workers`. Synthetic data (and data sets not in an R
package) go to R as CSV files, with the grouping columns made factors in the
same level order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from cases import Case
from workers import FAST, FAST_BUDGET, MAX_FAST_RUNS, SLOW

SCRIPT = Path(__file__).resolve().parent / "lme4_timing.R"
LME4_LIMIT = 300.0  # seconds per lme4 fit


def factor_levels(data: pd.DataFrame) -> dict[str, list[str] | None]:
    """Columns R must make factors: their levels in order, or None for R's sorted order.

    Categorical columns with integer categories (synthetic data) sort the same
    way in R; other categorical columns give their levels, so the treatment
    contrasts have the same reference level.
    """
    out: dict[str, list[str] | None] = {}
    for column in data.columns:
        dtype = data[column].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            categories = dtype.categories
            numeric = pd.api.types.is_integer_dtype(categories.dtype)
            out[column] = None if numeric else [str(c) for c in categories]
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            out[column] = None
    return out


def _case_spec(case: Case, folder: Path) -> dict:
    spec = {"name": case.name, "formula": case.formula, "reml": case.reml}
    if case.r_reads_csv:
        data = case.load()
        csv = folder / f"{case.name}.csv"
        data.to_csv(csv, index=False)
        spec.update(csv=str(csv), factors=factor_levels(data))
    else:
        spec.update(dataset=case.dataset, package=case.r_package)
    return spec


def time_lme4(
    cases: list[Case], repeats: int, report: Callable[[dict], None] = lambda item: None
) -> tuple[dict, dict]:
    """lme4 results by model name, and information on R (both empty without Rscript).

    ``report`` is called with each result as it arrives.
    """
    if shutil.which("Rscript") is None:
        return {}, {}
    results: dict = {}
    info: dict = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        spec = {
            "time_limit": LME4_LIMIT,
            "repeats": repeats,
            "slow": SLOW,
            "fast": FAST,
            "fast_budget": FAST_BUDGET,
            "max_fast_runs": MAX_FAST_RUNS,
            "cases": [_case_spec(case, folder) for case in cases],
        }
        spec_file = folder / "spec.json"
        spec_file.write_text(json.dumps(spec))
        command = ["Rscript", str(SCRIPT), str(spec_file)]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                item = json.loads(line)
                if "info" in item:
                    info = item["info"]
                    continue
                if isinstance(item.get("warnings"), str):
                    item["warnings"] = [item["warnings"]]
                results[item["name"]] = item
                report(item)
            stderr = proc.stderr.read()
        if proc.returncode != 0:
            print("lme4 timing failed:", stderr.strip().splitlines()[-1:])
    return results, info
