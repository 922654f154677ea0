"""The machine, the package and the import time, as the benchmark page reports them."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
import statsmodels

import statsmodels_lmer as sml

ROOT = Path(__file__).resolve().parent.parent


def _median_seconds(statement: str, repeats: int) -> float:
    """Median seconds of ``statement`` (imports) in fresh interpreters."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        times.append(float(done.stdout))
    return statistics.median(times)


def import_time(repeats: int = 5) -> dict:
    """Seconds of ``import statsmodels_lmer`` and of it ready to fit (medians), heaviest imports.

    ``seconds``: the import alone (the public names load on first use);
    ``ready_seconds``: the import and ``statsmodels_lmer.Lmer``;
    ``statsmodels_seconds``: ``import statsmodels.base.model`` alone, the floor.
    """
    ready = "import statsmodels_lmer; statsmodels_lmer.Lmer"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ready], capture_output=True, text=True
    )
    # self time of every imported module, summed by top-level package
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            top = match.group(2).split(".")[0]
            totals[top] = totals.get(top, 0.0) + int(match.group(1)) / 1e6
    own = totals.pop("statsmodels_lmer", 0.0)
    heaviest = sorted(totals.items(), key=lambda kv: -kv[1])[:6]
    return {
        "seconds": _median_seconds("import statsmodels_lmer", repeats),
        "ready_seconds": _median_seconds(ready, repeats),
        "statsmodels_seconds": _median_seconds("import statsmodels.base.model", repeats),
        "own_seconds": own,
        "heaviest": heaviest,
    }


def package_digest() -> str:
    """Hash of the package sources, to tell whether they changed during a run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "statsmodels_lmer").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _proc_field(path: str, key: str) -> str | None:
    """The value after ``key:`` in a /proc file, or None."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _blas() -> str:
    """numpy's BLAS build and SIMD extensions."""
    try:
        config = np.show_config(mode="dicts")
        dep = config["Build Dependencies"]["blas"]
    except Exception:
        return "unknown"
    blas = f"{dep['name']} {dep['version']}"
    openblas = dep.get("openblas configuration")
    if openblas:
        blas += f" ({openblas.strip()})"
    simd = config.get("SIMD Extensions", {}).get("found")
    if simd:
        blas += f"; numpy SIMD: {', '.join(simd)}"
    return blas


def _versions() -> dict[str, str]:
    versions = {
        "statsmodels_lmer": sml.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "statsmodels": statsmodels.__version__,
    }
    for name in ("patsy", "nlopt"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            versions[name] = "not installed"
    return versions


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit() -> str:
    """The commit of the package, noting uncommitted changes in statsmodels_lmer/."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "statsmodels_lmer")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes in statsmodels_lmer/" if dirty else "")


def machine() -> dict:
    """CPU, memory, OS, Python, BLAS, package versions, thread settings, commit, optimizer."""
    memory = _proc_field("/proc/meminfo", "MemTotal")
    threads = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ
    }
    return {
        "git": _commit(),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": None if memory is None else int(memory.split()[0]) / 1024**2,
        "os": platform.platform(),
        "python": platform.python_version(),
        "blas": _blas(),
        "versions": _versions(),
        "threads": threads,
        "optimizer": sml.available_optimizers()[0],
    }
