"""Benchmark: fit time, evaluations and memory against lme4 (Rscript) and statsmodels MixedLM.

Usage::

    python benchmarks/run.py                 # every model (the many-level ones take minutes)
    python benchmarks/run.py --quick         # small subset (about 1.5 minutes)
    python benchmarks/run.py --write         # also write docs/benchmarks.md, the plot, results.json
    python benchmarks/run.py --models InstEval crossed-1e6 --repeats 3 --no-r
    python benchmarks/run.py --list          # the models
    python benchmarks/run.py --no-progress   # no progress bars (the line per model stays)

The pieces: ``cases.py`` (the models), ``workers.py`` (what runs in each fresh
Python process: our fits, MixedLM's, one evaluation against n),
``lme4_timing.py`` and ``lme4_timing.R`` (lme4, in one R process),
``machine.py`` (machine and import time), ``report.py`` with
``benchmarks_page.md.in`` (tables, targets, plot and the page). How each figure
is measured is on the page, docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from cases import (
    CASES,
    DEVFUN_NS,
    INFERENCE_TASKS,
    QUICK_DEVFUN_NS,
    QUICK_INFERENCE_TASKS,
    Case,
    select,
)
from lme4_timing import time_lme4
from machine import import_time, machine, package_digest
from report import RESULTS, Row, other_cell, print_summary, seconds_cell, write_outputs
from tqdm import tqdm
from workers import MIXEDLM_LIMIT

WORKERS = Path(__file__).resolve().parent / "workers.py"
WORKER_LIMIT = 590.0  # seconds per worker process


def run_worker(args: list[str], timeout: float) -> dict:
    """Run ``workers.py`` in a fresh process; its result is the last stdout line."""
    command = [sys.executable, str(WORKERS), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return {"error": tail[0]}
    return json.loads(lines[-1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="model names (default: all, or --quick)")
    parser.add_argument("--repeats", type=int, default=5, help="timed fits of fast models")
    parser.add_argument("--no-r", action="store_true", help="skip lme4 even if Rscript exists")
    parser.add_argument("--no-mixedlm", action="store_true", help="skip statsmodels MixedLM")
    parser.add_argument("--no-devfun", action="store_true", help="skip the evaluation-time series")
    parser.add_argument(
        "--no-inference", action="store_true", help="skip timing summary() and profile confint"
    )
    parser.add_argument("--quick", action="store_true", help="small subset (about 1.5 minutes)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="write docs/benchmarks.md, docs/benchmark_fit_time.png, benchmarks/results.json",
    )
    parser.add_argument("--json", type=Path, help="also save the raw results to this file")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()
    try:
        args.cases = select(args.models, args.quick)
    except KeyError as error:
        parser.error(error.args[0])
    return args


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """A bar over the models on stderr; its ``write`` keeps the per-model lines above it."""
    return tqdm(total=total, desc=desc, unit="model", disable=not enabled, file=sys.stderr)


def list_cases() -> None:
    for case in CASES:
        flags = ["quick"] if case.quick else []
        if case.by_name:
            flags.append(f"only by name: {case.by_name}")
        if case.lme4_skip_reason:
            flags.append("no lme4")
        print(f"{case.name:25s} {case.formula}" + (f"  ({', '.join(flags)})" if flags else ""))


def run_lme4(rows: list[Row], repeats: int, progress: bool = True) -> dict:
    """lme4's results into the rows (skipped ones marked); information on R."""
    runs = [row.case for row in rows if not row.case.lme4_skip_reason]
    with progress_bar(len(runs), "lme4 (one Rscript process)", progress) as bar:

        def report(item: dict) -> None:
            bar.write(f"  lme4 {item['name']}: {other_cell(item)}")
            bar.update()

        results, r_info = time_lme4(runs, repeats, report)
    for row in rows:
        reason = row.case.lme4_skip_reason
        row.lme4 = {"skipped": True, "reason": reason} if reason else results.get(row.case.name)
    return r_info


def run_ours_and_mixedlm(row: Row, repeats: int, mixedlm: bool, bar: tqdm) -> None:
    """Our fit, and MixedLM's where it can fit the model, each in a fresh process."""
    case: Case = row.case
    bar.set_postfix_str(f"fitting {case.name}")
    row.ours = run_worker(["ours", case.name, str(repeats)], WORKER_LIMIT)
    shown = seconds_cell(row.ours["seconds"]) if "seconds" in row.ours else row.ours.get("error")
    bar.write(f"  ours {case.name}: {shown}")
    if case.mixedlm is not None and mixedlm:
        bar.set_postfix_str(f"MixedLM on {case.name}")
        row.mixedlm = run_worker(
            ["mixedlm", case.name, str(repeats), str(MIXEDLM_LIMIT)], MIXEDLM_LIMIT + 120
        )
        bar.write(f"  MixedLM {case.name}: {other_cell(row.mixedlm)}")
    bar.update()


def run_workers(
    desc: str, jobs: list[tuple[list[str], dict]], shown: str, progress: bool = True
) -> list[dict]:
    """Run each job (worker arguments, fields to add) in a fresh process, under one bar.

    ``shown`` is the result's field printed in the line for each job.
    """
    found = []
    with progress_bar(len(jobs), desc, progress) as bar:
        for args, fields in jobs:
            label = " ".join(args)
            bar.set_postfix_str(label)
            item = run_worker(args, WORKER_LIMIT)
            item.update(fields)
            found.append(item)
            bar.write(f"  {label}: {item.get(shown, item.get('error'))}")
            bar.update()
    return found


def run_devfun(ns: tuple[int, ...], progress: bool = True) -> list[dict]:
    """One evaluation against n, each n in a fresh process (ms per evaluation shown)."""
    jobs = [(["devfun", str(n)], {"n": n}) for n in ns]
    return run_workers("one evaluation against n", jobs, "eval_ms", progress)


def run_inference(tasks: tuple[tuple[str, str], ...], progress: bool = True) -> list[dict]:
    """Seconds of ``summary()`` / profile ``confint`` after a fit, each in a fresh process."""
    jobs = [(["inference", task, name], {"task": task, "name": name}) for task, name in tasks]
    return run_workers("inference after a fit", jobs, "seconds", progress)


def run_evaluations(cases: list[Case], progress: bool = True) -> list[dict]:
    """Setup, two evaluations and memory of the models that run only by name."""
    jobs = [(["evaluate", case.name], {"name": case.name}) for case in cases]
    return run_workers("evaluations of models too slow to fit", jobs, "eval_seconds", progress)


def main() -> None:
    args = parse_args()
    if args.list:
        list_cases()
        return
    started = time.perf_counter()
    digest = package_digest()
    info = machine()
    print(
        f"# {info['cpu']}, {info['cores']} cores, {info['memory_gib']:.0f} GiB; "
        f"Python {info['python']}; statsmodels_lmer {info['versions']['statsmodels_lmer']}; "
        f"optimizer {info['optimizer']}",
        flush=True,
    )
    imports = import_time()
    print(f"import statsmodels_lmer: {imports['seconds']:.2f} s", flush=True)

    rows = [Row(case) for case in args.cases]
    progress = not args.no_progress
    r_info = {} if args.no_r else run_lme4(rows, args.repeats, progress)
    with progress_bar(len(rows), "statsmodels_lmer (a process per model)", progress) as bar:
        for row in rows:
            run_ours_and_mixedlm(row, args.repeats, not args.no_mixedlm, bar)
    ns = QUICK_DEVFUN_NS if args.quick else DEVFUN_NS
    series = [] if args.no_devfun else run_devfun(ns, progress)
    tasks = QUICK_INFERENCE_TASKS if args.quick else INFERENCE_TASKS
    if args.models:  # only the tasks on the models asked for
        tasks = tuple((task, name) for task, name in tasks if name in args.models)
    inference = [] if args.no_inference else run_inference(tasks, progress)
    named = {row.case.name for row in rows}
    apart = [c for c in CASES if c.by_name and c.name not in named]
    evaluations = [] if args.quick or args.models else run_evaluations(apart, progress)
    print_summary(rows, series, imports, inference, evaluations)

    elapsed = time.perf_counter() - started
    if package_digest() != digest:
        info["git"] += " (the package sources CHANGED during the run)"
        print("warning: statsmodels_lmer/ changed during the run; rerun for consistent figures")
    raw = {
        "run": {
            "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
            "date": date.today().isoformat(),
            "elapsed_seconds": elapsed,
        },
        "machine": info,
        "r": r_info,
        "imports": imports,
        "rows": [
            {"name": r.case.name, "ours": r.ours, "lme4": r.lme4, "mixedlm": r.mixedlm}
            for r in rows
        ],
        "devfun": series,
        "inference": inference,
        "evaluations": evaluations,
    }
    for path in [args.json, RESULTS if args.write else None]:
        if path is not None:
            path.write_text(json.dumps(raw, indent=1))
    if args.write:
        write_outputs(raw)
    print(f"total {elapsed:.0f} s")


if __name__ == "__main__":
    main()
