"""Validation of the engine's cost model: predicted against measured seconds per evaluation.

For each design and each strategy the engine can use (``pairs``, ``classes``,
``dense``, ``sparse``), the seconds of one evaluation of the profiled
criterion are measured (CPU seconds of one core, the best of ``--repeat``
evaluations, BLAS limited to one thread) and set beside the cost model's
prediction (:mod:`statsmodels_lmer.engine.cost`); the strategy the engine
chooses is marked. Run::

    python benchmarks/engine_costs.py            # the designs below, a few minutes
    python benchmarks/engine_costs.py --quick    # small designs only (seconds)
    python benchmarks/engine_costs.py --json out.jsonl

CHOLMOD's speed depends on the BLAS that Debian's libcholmod loads: the
reference BLAS (``/usr/lib/x86_64-linux-gnu/blas``) is about ten times slower
than OpenBLAS; ``LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread``
selects OpenBLAS for one process (see docs/engine.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from synthetic import make_data

import statsmodels_lmer as sml
from statsmodels_lmer.engine.cost import sparse_seconds
from statsmodels_lmer.engine.sparse import reference_blas, sparse_backend

SKIP_SECONDS = 8.0
"""Strategies predicted slower than this per evaluation are not measured."""


def clustered(n: int, levels: tuple[int, int], leak: float, sites: int = 500) -> pd.DataFrame:
    """Two factors whose levels belong to sites; a fraction ``leak`` of rows crosses sites."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, levels[0], n)
    site = a * sites // levels[0]
    per_site = levels[1] // sites
    b = site * per_site + rng.integers(0, per_site, n)
    crossing = rng.random(n) < leak
    b[crossing] = rng.integers(0, levels[1], crossing.sum())
    x = rng.standard_normal(n)
    y = 1 + 0.5 * x + rng.standard_normal(levels[0])[a] + 0.5 * rng.standard_normal(levels[1])[b]
    y = y + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "g1": pd.Categorical(a), "g2": pd.Categorical(b)})


def designs(quick: bool) -> list[tuple[str, str, pd.DataFrame]]:
    """(name, formula, data) of the validation designs."""
    crossed = "y ~ x + (1|g1) + (1|g2)"
    slopes = "y ~ x + (x|g1) + (x|g2)"
    out = [
        ("crossed 2e4 x 1e3", crossed, make_data("crossed", 200_000, (20_000, 1_000), seed=1)),
        ("clustered 1% 2e4 x 2e4", crossed, clustered(200_000, (20_000, 20_000), 0.01)),
        ("slopes 1e4 x 1e3 (n 5e4)", slopes, make_data("crossed-slopes", 50_000, (1_000, 400))),
    ]
    if quick:
        return [
            ("crossed 2e3 x 500", crossed, make_data("crossed", 20_000, (2_000, 500), seed=1)),
            ("clustered 1% 4e3 x 4e3", crossed, clustered(40_000, (4_000, 4_000), 0.01, 100)),
        ]
    out += [
        ("crossed 2e4 x 2e3", crossed, make_data("crossed", 200_000, (20_000, 2_000), seed=1)),
        ("crossed 2e4 x 5e3", crossed, make_data("crossed", 200_000, (20_000, 5_000), seed=1)),
        ("clustered 5% 2e4 x 2e4", crossed, clustered(200_000, (20_000, 20_000), 0.05)),
        ("slopes 5e3 x 2e3 (n 1e5)", slopes, make_data("crossed-slopes", 100_000, (5_000, 2_000))),
        ("InstEval", "y ~ service + (1|s) + (1|d) + (1|dept)", sml.datasets.load("InstEval")),
    ]
    return out


def measure(devfun, theta: np.ndarray, repeat: int) -> float:
    """CPU seconds of one evaluation (the best of ``repeat``)."""
    best = np.inf
    for i in range(repeat):
        start = time.process_time()
        devfun(theta * (1.0 + 1e-3 * i))
        best = min(best, time.process_time() - start)
    return best


def rows_of(name: str, formula: str, data: pd.DataFrame, repeat: int) -> list[dict]:
    model = sml.Lmer.from_formula(formula, data)
    chosen = model.devfun(True).cross.strategy
    theta = model.initial_theta * 0.9 + 0.05
    out = []
    candidates = ["pairs", "classes", "dense"] + (["sparse"] if sparse_backend() else [])
    for strategy in candidates:
        try:
            devfun = model.devfun(True, strategy=strategy)
        except ValueError as err:  # over the memory limit
            out.append({"design": name, "strategy": strategy, "error": str(err)[:60]})
            continue
        cross = devfun.cross
        sizes = cross.sizes
        if strategy == "sparse":
            predicted = sparse_seconds(cross.sparse.counts)
        else:
            predicted = sizes.dense_seconds(strategy)[1]
        row = {
            "design": name,
            "strategy": strategy,
            "chosen": strategy == chosen,
            "m": sizes.size_rest,
            "pairs": sizes.n_pairs,
            "predicted": predicted,
        }
        if strategy == "sparse":
            counts = cross.sparse.counts
            row.update(q=counts.order, nnz_L=counts.factor_entries, flops=counts.flops)
            row["entries"] = counts.entries
            row["backend"] = counts.backend + (" (reference BLAS)" if counts.reference_blas else "")
        if predicted < SKIP_SECONDS:
            row["measured"] = measure(devfun, theta, repeat)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="append the rows to this JSON-lines file")
    args = parser.parse_args(argv)
    print(f"sparse backend: {sparse_backend()}, reference BLAS: {reference_blas()}")
    print("| design | strategy | m | predicted s | measured s | ratio |")
    print("|---|---|---|---|---|---|")
    for name, formula, data in designs(args.quick):
        for row in rows_of(name, formula, data, args.repeat):
            if args.json:
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
            if "error" in row:
                print(f"| {name} | {row['strategy']} | | refused: {row['error']} | | |")
                continue
            measured = row.get("measured")
            shown = f"{measured:.4f}" if measured is not None else "(skipped)"
            ratio = f"{row['predicted'] / measured:.2f}" if measured else ""
            mark = " *" if row["chosen"] else ""
            print(
                f"| {name} | {row['strategy']}{mark} | {row['m']} | {row['predicted']:.4f} | "
                f"{shown} | {ratio} |"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
