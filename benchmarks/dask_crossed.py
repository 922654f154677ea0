"""Benchmark: a crossed model fitted from a Dask DataFrame on a LocalCluster.

Usage::

    python benchmarks/dask_crossed.py --rows 1e7 --compare     # also the in-memory fit
    python benchmarks/dask_crossed.py --rows 1e8 --json out.json
    python benchmarks/dask_crossed.py --rows 1e6 --partition-rows 2e5 --compare  # a quick check

The data, ``y ~ x + (1|g1) + (1|g2)`` with 1e4 x 1e3 crossed levels (group
sizes unbalanced: level probabilities from a gamma(2) distribution, every level
present), are generated lazily, one partition at a time (``dask.dataframe.from_map``):
no process ever holds more than a few partitions, whatever ``--rows``.

Measured, on a ``distributed.LocalCluster`` of ``--workers`` single-threaded
worker processes:

* **build**: ``Lmer.from_formula`` on the Dask DataFrame (the passes over the
  partitions, including generating them, and the summing of the blocks);
* **fit**: ``model.fit()`` (the optimizer, on the client, on the summed blocks);
* **peak MiB** of each worker and of the client: growth of the resident set
  (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) during build and
  fit, over the resident set just before;
* **rows/s/core**: rows over build time over workers; also without the time
  of generating the partitions (twice, once per pass: ``generate_pass_s`` is
  one pass that only generates them), the analogue of reading files.

``--compare`` then fits the same rows in memory (``pandas.concat`` of the same
partitions, in this process, after the cluster is closed) and reports its
times, its throughput (rows over the time of the model frame and the
cross-products, on one core: those passes are single-threaded) and the largest
differences of the estimates: at the in-memory theta (the engine) and of the
two optima (the optimizer's tolerance).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x + (1|g1) + (1|g2)"
LEVELS = (10_000, 1_000)
SEED = 2024


@functools.cache
def _design_constants() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    weights = [rng.gamma(2.0, size=levels) for levels in LEVELS]
    effects = [rng.normal(0.0, sd, size=levels) for levels, sd in zip(LEVELS, (1.0, 0.5))]
    return weights[0] / weights[0].sum(), weights[1] / weights[1].sum(), effects[0], effects[1]


def make_partition(index: int, rows: int) -> pd.DataFrame:
    """Rows ``index * rows`` to ``(index + 1) * rows`` of the data (the same for a given index)."""
    p1, p2, b1, b2 = _design_constants()
    rng = np.random.default_rng([SEED, index])
    g1 = rng.choice(LEVELS[0], size=rows, p=p1)
    g2 = rng.choice(LEVELS[1], size=rows, p=p2)
    if index == 0:  # every level present
        first = np.arange(min(rows, LEVELS[0]))
        g1[first] = first
        g2[first] = first % LEVELS[1]
    x = rng.normal(size=rows)
    y = 1.0 + 0.5 * x + b1[g1] + b2[g2] + rng.normal(size=rows)
    index_values = pd.RangeIndex(index * rows, (index + 1) * rows)
    return pd.DataFrame({"y": y, "x": x, "g1": g1, "g2": g2}, index=index_values)


def lazy_frame(n_rows: int, partition_rows: int):
    """The data as a Dask DataFrame whose partitions are generated when computed."""
    import dask.dataframe as dd

    count = n_rows // partition_rows
    if count * partition_rows != n_rows:
        raise SystemExit("--rows must be a multiple of --partition-rows")
    meta = make_partition(0, 0)
    return dd.from_map(make_partition, range(count), rows=partition_rows, meta=meta)


def reset_peak() -> int:
    """Reset the peak resident set (Linux) and return the current one in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def peak_growth(start: int) -> int:
    """Growth of the peak resident set over ``start`` (bytes)."""
    return _status("VmHWM") - start


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_dask(n_rows: int, partition_rows: int, workers: int) -> tuple[dict, object]:
    import distributed

    import statsmodels_lmer as sml

    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ddf = lazy_frame(n_rows, partition_rows)
        client.run(lambda: __import__("statsmodels_lmer"))  # imports before the peaks
        t0 = time.perf_counter()
        ddf.map_partitions(len).compute()
        generate_s = time.perf_counter() - t0
        worker_start = client.run(reset_peak)
        client_start = reset_peak()
        t0 = time.perf_counter()
        model = sml.Lmer.from_formula(FORMULA, ddf)
        t1 = time.perf_counter()
        res = model.fit()
        t2 = time.perf_counter()
        worker_peaks = client.run(peak_growth_of, worker_start)
        client_peak = peak_growth(client_start)
    blocks = model.cross_products
    out = {
        "rows": n_rows,
        "partitions": n_rows // partition_rows,
        "partition_rows": partition_rows,
        "workers": workers,
        "generate_pass_s": generate_s,
        "build_s": t1 - t0,
        "fit_s": t2 - t1,
        "total_s": t2 - t0,
        "evaluations": res.optinfo["feval"],
        "strategy": blocks.strategy,
        "rows_per_s_per_core": n_rows / (t1 - t0) / workers,
        "rows_per_s_per_core_without_generation": n_rows / (t1 - t0 - 2 * generate_s) / workers,
        "load_average_1min_after": os.getloadavg()[0],
        "worker_peak_mib": sorted(round(v / 2**20) for v in worker_peaks.values()),
        "client_peak_mib": round(client_peak / 2**20),
        "theta": res.theta.tolist(),
        "params": np.asarray(res.params).tolist(),
        "sigma": float(res.sigma),
        "objective": float(res.objective),
    }
    return out, res


def peak_growth_of(start: dict, dask_worker=None) -> int:
    """Worker-side :func:`peak_growth` (``start`` maps worker addresses to their start)."""
    return peak_growth(start[dask_worker.address])


def run_memory(n_rows: int, partition_rows: int, dask_res) -> dict:
    import statsmodels_lmer as sml

    frame = pd.concat([make_partition(i, partition_rows) for i in range(n_rows // partition_rows)])
    start = reset_peak()
    t0 = time.perf_counter()
    model = sml.Lmer.from_formula(FORMULA, frame)
    t1 = time.perf_counter()
    _ = model.cross_products
    t2 = time.perf_counter()
    res = model.fit()
    t3 = time.perf_counter()
    peak = peak_growth(start)
    same = dask_res.model.results_at(res.theta)
    return {
        "memory_frame_s": t1 - t0,
        "memory_cross_products_s": t2 - t1,
        "memory_total_s": t3 - t0,
        "memory_rows_per_s_per_core": n_rows / (t2 - t0),
        "memory_peak_mib": round(peak / 2**20),
        "memory_theta": res.theta.tolist(),
        "memory_params": np.asarray(res.params).tolist(),
        "at_same_theta_params_max_rel": _max_rel(same.params, res.params),
        "at_same_theta_objective_rel": _max_rel(same.objective, res.objective),
        "optima_theta_max_rel": _max_rel(dask_res.theta, res.theta),
        "optima_params_max_rel": _max_rel(dask_res.params, res.params),
        "optima_objective_diff": float(dask_res.objective - res.objective),
    }


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
RESULTS = Path(__file__).resolve().parent / "dask_results.json"
BEGIN, END = "<!-- dask_crossed.py: begin -->", "<!-- dask_crossed.py: end -->"


INTRO = """## Fits from a Dask DataFrame

Written by `python benchmarks/dask_crossed.py --page` from `benchmarks/dask_results.json`; each
row was measured with the command in the last table. `y ~ x + (1|g1) + (1|g2)`, 1e4 x 1e3
crossed levels, partitions of 1e6 rows generated lazily on a `LocalCluster` of 2
single-threaded worker processes on this 2-core machine. **build**: `from_formula` (two
passes, generating the data twice); **gen**: one pass that only generates the partitions (the
analogue of reading files); **rows/s/core**: rows over build time over 2 workers, and without
the two generations; **fit**: the optimizer on the client. Peak MiB: growth of the resident set
(`VmHWM`) of each worker and of the client during build and fit. The machine was shared with
other jobs (load average in the last column): times are upper bounds.

| rows | partitions | build (s) | gen (s) | rows/s/core | without gen | fit (s) | evals \
| worker peak MiB | client peak MiB | load |
|---|---|---|---|---|---|---|---|---|---|---|""".replace(" \\\n", " ")

MEMORY_INTRO = """The same rows in memory (`pandas.concat` of the partitions, then
`from_formula` and `fit` in one process): **frame + blocks** is the time of the model frame
and of the cross-products (single-threaded), **rows/s/core** its throughput. The last four
columns compare the estimates: at the in-memory theta (the engine) and of the two optima
(the optimizer's tolerance).

| rows | frame + blocks (s) | rows/s/core | fit (s) | peak MiB | fixed effects, same theta \
| objective, same theta | theta of the optima | fixed effects of the optima |
|---|---|---|---|---|---|---|---|---|""".replace(" \\\n", " ")


def render_section(results: list[dict]) -> str:
    """The Markdown section of docs/benchmarks.md for some results (sorted by rows)."""
    results = sorted(results, key=lambda r: r["rows"])
    lines = [BEGIN, *INTRO.splitlines()]
    for r in results:
        lines.append(
            f"| {_rows(r)} | {r['partitions']} | {r['build_s']:.1f} | "
            f"{r.get('generate_pass_s', float('nan')):.1f} | {r['rows_per_s_per_core']:,.0f} | "
            f"{r.get('rows_per_s_per_core_without_generation', float('nan')):,.0f} | "
            f"{r['fit_s']:.1f} | {r['evaluations']} | "
            f"{' / '.join(str(v) for v in r['worker_peak_mib'])} | {r['client_peak_mib']} | "
            f"{r.get('load_average_1min_after', float('nan')):.1f} |"
        )
    compared = [r for r in results if "memory_total_s" in r]
    if compared:
        lines += ["", *MEMORY_INTRO.splitlines()]
        for r in compared:
            lines.append(
                f"| {_rows(r)} | "
                f"{r['memory_frame_s'] + r['memory_cross_products_s']:.1f} | "
                f"{r['memory_rows_per_s_per_core']:,.0f} | "
                f"{r['memory_total_s'] - r['memory_frame_s'] - r['memory_cross_products_s']:.1f}"
                f" | {r['memory_peak_mib']} | {r['at_same_theta_params_max_rel']:.1e} | "
                f"{r['at_same_theta_objective_rel']:.1e} | {r['optima_theta_max_rel']:.1e} | "
                f"{r['optima_params_max_rel']:.1e} |"
            )
    lines += ["", *_reading(results, compared)]
    lines += ["", "| rows | command |", "|---|---|"]
    lines += [f"| {_rows(r)} | `{r['command']}` |" for r in results]
    lines.append(END)
    return "\n".join(lines) + "\n"


def _reading(results: list[dict], compared: list[dict]) -> list[str]:
    """Sentences on throughput and memory, from the numbers."""
    largest = results[-1]
    data_gib = largest["rows"] * 4 * 8 / 2**30
    text = [
        f"The client's peak stays between {min(r['client_peak_mib'] for r in results)} and "
        f"{max(r['client_peak_mib'] for r in results)} MiB at every size (the summed blocks "
        "and the engine's working copy); the workers' peaks grow with the number of partitions "
        "(partition sums waiting to be combined) and with the density of the level pairs, not "
        f"with the rows: the {_rows(largest)} rows are {data_gib:.1f} GiB of data, never in "
        "memory at once, and the workers peaked at "
        f"{' and '.join(str(v) for v in largest['worker_peak_mib'])} MiB."
    ]
    for r in compared:
        ratio = r["memory_rows_per_s_per_core"] / r["rows_per_s_per_core_without_generation"]
        passes = r["build_s"] - 2 * r["generate_pass_s"]
        in_memory = r["memory_frame_s"] + r["memory_cross_products_s"]
        text.append(
            f"At {_rows(r)} rows, one core runs the two passes at "
            f"{r['rows_per_s_per_core_without_generation']:,.0f} rows/s without generating the "
            f"data ({r['rows_per_s_per_core']:,.0f} with it), {ratio:.1f}x below the in-memory "
            f"model frame and cross-products ({r['memory_rows_per_s_per_core']:,.0f} rows/s on one "
            "core): the cost of coding each partition against the levels of the whole data, of "
            "the fixed part's summaries, and of shipping and adding the partitions' sums. With "
            f"{r['workers']} workers the passes take {passes:.1f} s without generating the data "
            f"(in memory: {in_memory:.1f} s), and the client's peak is "
            f"{r['client_peak_mib'] / r['memory_peak_mib']:.0%} of the in-memory one."
        )
    text.append(
        "The fit is the in-memory optimization on the same blocks (`crossed-1e7` above: 13.5 s "
        "on an idle machine); its times here reflect the load."
    )
    return textwrap.wrap(" ".join(text), width=95)


def _rows(result: dict) -> str:
    return f"{result['rows']:.0e}".replace("e+0", "e").replace("e+", "e")


def write_page(results: list[dict], page: Path = PAGE) -> None:
    """Put the section into docs/benchmarks.md (replacing an older one, else at the end)."""
    text = page.read_text()
    section = render_section(results)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    page.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e7)
    parser.add_argument("--partition-rows", type=float, default=1e6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="also fit in memory")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--page",
        nargs="*",
        type=Path,
        help="no fit: add these result files to benchmarks/dask_results.json (by rows) and "
        "write the section of docs/benchmarks.md",
    )
    args = parser.parse_args(argv)
    if args.page is not None:
        known = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        by_rows = {r["rows"]: r for r in known}
        by_rows.update({r["rows"]: r for r in (json.loads(f.read_text()) for f in args.page)})
        results = sorted(by_rows.values(), key=lambda r: r["rows"])
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        write_page(results)
        return
    n_rows, partition_rows = int(args.rows), int(args.partition_rows)
    warnings.simplefilter("ignore", ResourceWarning)
    result, res = run_dask(n_rows, partition_rows, args.workers)
    if args.compare:
        result.update(run_memory(n_rows, partition_rows, res))
    result["command"] = " ".join(["python", "benchmarks/dask_crossed.py", *sys.argv[1:]])
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
