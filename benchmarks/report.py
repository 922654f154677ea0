"""The benchmark report: tables, targets, plot and the page docs/benchmarks.md.

The page text is ``benchmarks_page.md.in``; this module fills it in. Run alone,
it writes the page and the plot again from a results file::

    python benchmarks/report.py                   # from benchmarks/results.json
    python benchmarks/report.py other.json
"""

from __future__ import annotations

import argparse
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from cases import (
    BY_NAME,
    DEVFUN_FORMULA,
    DEVFUN_LEVELS,
    DEVFUN_THETA,
    LME4_MAX_ROWS,
    SCALING_NAMES,
    Case,
)
from lme4_timing import LME4_LIMIT
from workers import FAST, FAST_BUDGET, MAX_FAST_RUNS, MIXEDLM_LIMIT, SLOW

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = HERE / "benchmarks_page.md.in"
RESULTS = HERE / "results.json"
PAGE = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmark_fit_time.png"


@dataclass
class Row:
    """One model's results: ours, lme4's and MixedLM's (None: not run)."""

    case: Case
    ours: dict = field(default_factory=dict)
    lme4: dict | None = None  # {"skipped": True, "reason": ...} when not run on purpose
    mixedlm: dict | None = None

    @property
    def n(self) -> int | None:
        return self.ours.get("n", self.case.n)

    def _speed_ratio(self, other: dict | None) -> float | None:
        if other and "seconds" in other and "seconds" in self.ours:
            return other["seconds"] / self.ours["seconds"]
        return None

    @property
    def x_lme4(self) -> float | None:
        """lme4's time over ours."""
        return self._speed_ratio(self.lme4)

    @property
    def x_mixedlm(self) -> float | None:
        """MixedLM's time over ours."""
        return self._speed_ratio(self.mixedlm)

    @property
    def objective_diff(self) -> float | None:
        if self.lme4 and "objective" in self.lme4 and "objective" in self.ours:
            return self.ours["objective"] - self.lme4["objective"]
        return None


# ---------------------------------------------------------------------------
# cells and tables


def other_cell(item: dict | None) -> str:
    """lme4's or MixedLM's time, or what happened instead."""
    if item is None:
        return "-"
    if item.get("skipped"):
        return "skipped"
    if "timeout" in item:
        return f"> {item['timeout']:.0f} s"
    if "error" in item:
        return "failed"
    return seconds_cell(item["seconds"])


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def seconds_cell(value: float) -> str:
    if value < 0.1:
        return f"{value:.4f}"
    if value < 10:
        return f"{value:.3f}"
    return f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _n(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000 and str(value).rstrip("0") == "1":
        return f"1e{len(str(value)) - 1}"
    return str(value)


def _mib(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


RESULTS_HEADER = [
    "model",
    "n",
    "ours (s)",
    "runs",
    "evals",
    "derivs",
    "ms/eval",
    "peak MiB",
    "lme4 (s)",
    "lme4 evals",
    "x lme4",
    "MixedLM (s)",
    "x MixedLM",
    "objective diff",
]


def _results_row(row: Row) -> list[str]:
    ours = row.ours
    if "error" in ours:
        return [row.case.name, _n(row.n), "failed"] + ["-"] * 5 + [other_cell(row.lme4)] + ["-"] * 5
    lme4 = row.lme4 or {}
    diff = row.objective_diff
    return [
        row.case.name,
        _n(row.n),
        seconds_cell(ours["seconds"]),
        str(ours["runs"]) + ("" if ours.get("warm_up", True) else "*"),
        str(ours["feval"]),
        _yes(ours.get("derivs")) + "/" + _yes(lme4.get("derivs")),
        f"{ours['eval_ms']:.3g}",
        _mib(ours["peak_mib"]),
        other_cell(row.lme4),
        str(lme4.get("feval", "-")),
        _ratio(row.x_lme4),
        other_cell(row.mixedlm),
        _ratio(row.x_mixedlm),
        "-" if diff is None else f"{diff:.1e}",
    ]


def table_rows(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """The results table: header and rows of cells."""
    return RESULTS_HEADER, [_results_row(row) for row in rows]


def print_table(header: list[str], body: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))
    )
    print(line)
    print("-" * len(line))
    for r in body:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in body]
    return "\n".join(lines)


def devfun_table(series: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One evaluation against n."""
    header = ["n", "levels", "distinct (g1, g2)", "setup (s)", "ms/eval"]
    body = []
    for item in series:
        if "error" in item:
            body.append([_n(item.get("n")), "-", "-", "failed", "-"])
            continue
        body.append(
            [
                _n(item["n"]),
                " x ".join(str(v) for v in item["levels"]),
                str(item["pairs"]),
                seconds_cell(item["setup_seconds"]),
                f"{item['eval_ms']:.3g}",
            ]
        )
    return header, body


def breakdown_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Where the fit time goes, for models that take 0.1 s or more."""
    header = [
        "model",
        "fit (s)",
        "from_formula (s)",
        "cross-products (s)",
        "evaluations (s)",
        "ms/eval in fit",
        "rest (s)",
        "page faults",
    ]
    body = []
    for row in rows:
        ours = row.ours
        if "seconds" not in ours or ours["seconds"] < 0.1:
            continue
        evals = ours.get("fit_eval_seconds")
        calls = ours.get("fit_eval_calls")
        cross = ours.get("cross_seconds")
        rest = None
        if evals is not None:
            rest = ours["seconds"] - ours["setup_seconds"] - evals - (cross or 0.0)
        body.append(
            [
                row.case.name,
                seconds_cell(ours["seconds"]),
                seconds_cell(ours["setup_seconds"]),
                "-" if cross is None else seconds_cell(cross),
                "-" if evals is None else seconds_cell(evals),
                "-" if not calls else f"{1e3 * evals / calls:.3g}",
                "-" if rest is None else f"{rest:.3f}",
                f"{ours['page_faults']:.0f}",
            ]
        )
    return header, body


def notes(rows: list[Row]) -> list[str]:
    """Failures, warnings and why lme4 was not run, one markdown item each."""
    out = []
    for row in rows:
        name = row.case.name
        if "error" in row.ours:
            out.append(f"- {name}: our fit failed: `{row.ours['error']}`")
        if row.ours.get("warnings"):
            out.append(f"- {name}, ours warned: " + "; ".join(row.ours["warnings"]))
        if row.lme4 and row.lme4.get("warnings"):
            out.append(f"- {name}, lme4 warned: " + "; ".join(row.lme4["warnings"]))
        if row.lme4 and "error" in row.lme4:
            out.append(f"- {name}, lme4 failed: {row.lme4['error']}")
        if row.lme4 and row.lme4.get("reason"):
            out.append(f"- {name}: lme4 not run: {row.lme4['reason']}")
        if row.mixedlm and "error" in row.mixedlm:
            out.append(f"- {name}, MixedLM failed: `{row.mixedlm['error']}`")
    return out


# ---------------------------------------------------------------------------
# targets and plot


Target = tuple[str, str, str]
"""(target, status, measured); status is "met", "not met", "not run" or "failed"."""

LME4_TARGET = ">= 3x faster than lme4 on every model"
MIXEDLM_TARGET = ">= 10x faster than MixedLM (models it fits, >= 1000 rows)"


def _check(label: str, value: float | None, limit: float, fmt) -> Target:
    if value is None:
        return (label, "not run", "-")
    return (label, "met" if value <= limit else "not met", fmt(value))


def _lme4_target(rows: list[Row]) -> Target:
    ran = [r for r in rows if r.x_lme4 is not None]
    if not ran:
        return (LME4_TARGET, "not run", "-")
    slow = [r for r in ran if r.x_lme4 < 3]
    worst = min(ran, key=lambda r: r.x_lme4)
    measured = f"worst {worst.case.name} {worst.x_lme4:.2f}x"
    if slow:
        measured += "; below 3x: " + ", ".join(f"{r.case.name} {r.x_lme4:.2f}x" for r in slow)
    return (LME4_TARGET, "not met" if slow else "met", measured)


def _mixedlm_target(rows: list[Row]) -> Target:
    fitted = [r for r in rows if r.mixedlm is not None and (r.n or 0) >= 1000]
    if not fitted:
        return (MIXEDLM_TARGET, "not run", "-")
    problems, parts = [], []
    for r in fitted:
        if r.x_mixedlm is not None:
            parts.append(f"{r.case.name} {r.x_mixedlm:.1f}x")
            if r.x_mixedlm < 10:
                problems.append(r)
        elif "timeout" in r.mixedlm:
            parts.append(f"{r.case.name}: MixedLM > {r.mixedlm['timeout']:.0f} s")
    return (MIXEDLM_TARGET, "not met" if problems else "met", "; ".join(parts))


def _big_targets(big: Row | None) -> list[Target]:
    time_label, memory_label = "crossed 1e7 <= 60 s", "crossed 1e7 <= 8 GiB peak"
    if big is None or "seconds" not in big.ours:
        status = "not run" if big is None else "failed"
        return [(time_label, status, "-"), (memory_label, status, "-")]
    gib = big.ours["peak_mib"] / 1024
    total = big.ours["process_peak_mib"] / 1024
    return [
        _check(time_label, big.ours["seconds"], 60, lambda v: f"{v:.1f} s"),
        (
            memory_label,
            "met" if gib <= 8 else "not met",
            f"{gib:.2f} GiB (whole process {total:.2f} GiB)",
        ),
    ]


def targets(rows: list[Row]) -> list[Target]:
    """(target, status, measured) for each target of issue 6."""
    by_name = {r.case.name: r for r in rows}

    def seconds(name: str) -> float | None:
        row = by_name.get(name)
        return row.ours.get("seconds") if row else None

    def in_seconds(v: float) -> str:
        return f"{v:.2f} s"

    out = [
        _check("InstEval 3 intercepts (ML) <= 1.5 s", seconds("InstEval"), 1.5, in_seconds),
        _check("InstEval service*dept (ML) <= 1.5 s", seconds("InstEval-dept"), 1.5, in_seconds),
    ]
    for name in ("sleepstudy", "Dyestuff", "Penicillin", "Pastes"):
        out.append(_check(f"{name} <= 10 ms", seconds(name), 0.010, lambda v: f"{1e3 * v:.1f} ms"))
    out += [_lme4_target(rows), _mixedlm_target(rows), *_big_targets(by_name.get("crossed-1e7"))]
    return out


KB07_8X8_LME4 = 28578.3349168692  # lme4 1.1-31 default fit (nloptwrap), 3809 s on this machine


def _ours(row: Row | None, key: str) -> float | None:
    return None if row is None else row.ours.get(key)


def _time_and_memory(row: Row | None, label: str, seconds: float, gib: float) -> list[Target]:
    """Fit time and peak-memory targets for one model."""
    peak = _ours(row, "peak_mib")
    return [
        _check(
            f"{label} <= {seconds:.0f} s", _ours(row, "seconds"), seconds, lambda v: f"{v:.1f} s"
        ),
        _check(
            f"{label} <= {gib:g} GiB",
            None if peak is None else peak / 1024,
            gib,
            lambda v: f"{v:.2f} GiB",
        ),
    ]


def _kb07_optimum(row: Row | None) -> Target:
    label = "kb07 8x8 default fit reaches lme4's optimum or lower"
    value = _ours(row, "objective")
    if value is None:
        return (label, "not run", "-")
    gap = value - KB07_8X8_LME4
    return (label, "met" if gap <= 1e-6 else "not met", f"deviance {value:.4f} ({gap:+.4f})")


FIT_EVALUATIONS = 40
"""Evaluations a fit of two variance parameters needs at the least (BOBYQA and its
verification took 53 on the 20k x 5k model)."""


def _from_evaluations(item: dict | None, label: str, seconds: float, gib: float) -> list[Target]:
    """Targets of a model too slow to fit in the run, from its setup and evaluations."""
    if item is None or "eval_seconds" not in item:
        return _time_and_memory(None, label, seconds, gib)
    per_eval = min(item["eval_seconds"])
    least = item["setup_seconds"] + FIT_EVALUATIONS * per_eval
    peak = item["peak_mib"] / 1024
    return [
        (
            f"{label} <= {seconds:.0f} s",
            "met" if least <= seconds else "not met",
            f"one evaluation {per_eval:.1f} s ({item['strategy']}, order {item['order']}): "
            f"a fit of {FIT_EVALUATIONS} evaluations >= {least:.0f} s",
        ),
        (f"{label} <= {gib:g} GiB", "met" if peak <= gib else "not met", f"{peak:.2f} GiB"),
    ]


def targets_scale(
    rows: list[Row], inference: list[dict], imports: dict, evaluations: list[dict] | None = None
) -> list[Target]:
    """(target, status, measured) for each target of issue 13."""
    by_name = {r.case.name: r for r in rows}
    done = {(item["task"], item["name"]): item.get("seconds") for item in inference}
    evaluated = {item["name"]: item for item in evaluations or []}

    def secs(v: float) -> str:
        return f"{v:.1f} s"

    kb07 = by_name.get("kb07-8x8")
    big = by_name.get("crossed-2e5-20k-20k")
    big_label = "crossed 2e5, 20k x 20k"
    return [
        *(
            _time_and_memory(big, big_label, 120, 8)
            if big is not None
            else _from_evaluations(evaluated.get("crossed-2e5-20k-20k"), big_label, 120, 8)
        ),
        _check(
            "crossed 2e5, 20k x 5k <= 20 s",
            _ours(by_name.get("crossed-2e5-20k-5k"), "seconds"),
            20,
            secs,
        ),
        *_time_and_memory(by_name.get("crossed-slopes-1e5-5k-2k"), "(x|A) + (x|B) 1e5", 30, 1),
        _check("kb07 8x8 (72 theta) default fit <= 30 s", _ours(kb07, "seconds"), 30, secs),
        _kb07_optimum(kb07),
        _check("kb07 8x8 summary() <= 5 s", done.get(("summary", "kb07-8x8")), 5, secs),
        _check("InstEval profile confint <= 30 s", done.get(("profile", "InstEval")), 30, secs),
        _lme4_target(rows),
        _import_target(imports),
    ]


def _import_target(imports: dict) -> Target:
    label, status, measured = _check(
        "import <= 0.7 s", imports.get("seconds"), 0.7, lambda v: f"{v:.2f} s"
    )
    if "ready_seconds" in imports:
        measured += (
            f" (with sml.Lmer loaded: {imports['ready_seconds']:.2f} s, of which"
            f" statsmodels.base.model alone {imports['statsmodels_seconds']:.2f} s)"
        )
    return (label, status, measured)


def _plot_fit_time(axes, crossed: list[Row]) -> None:
    for label, times, style in [
        ("ours", lambda r: r.ours, "o-"),
        ("lme4", lambda r: r.lme4, "s--"),
        ("MixedLM", lambda r: r.mixedlm, "^:"),
    ]:
        timed = [r for r in crossed if times(r) and "seconds" in times(r)]
        if timed:
            axes.plot(
                [r.n for r in timed], [times(r)["seconds"] for r in timed], style, label=label
            )
    axes.axhline(60, color="grey", lw=0.8, ls=":")
    axes.annotate(
        "60 s target at 1e7", (crossed[0].n if crossed else 1e4, 60), va="bottom", fontsize=8
    )
    axes.set(xscale="log", yscale="log", xlabel="rows n", ylabel="fit time (s)")
    axes.set_title(
        "y ~ x + (1|g1) + (1|g2), REML\n(MixedLM cannot fit crossed factors)", fontsize=10
    )
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)


def _plot_evaluation(axes, crossed: list[Row], series: list[dict]) -> None:
    import matplotlib.ticker

    axes.plot(
        [r.n for r in crossed],
        [r.ours["eval_ms"] for r in crossed],
        "o-",
        label="fitted models of the table (1e4 x 1e3 levels; 1e3 x 1e2 at n = 1e4)",
    )
    good = [s for s in series if "eval_ms" in s]
    if good:
        levels = " x ".join(str(v) for v in DEVFUN_LEVELS)
        axes.plot(
            [s["n"] for s in good], [s["eval_ms"] for s in good], "d-", label=f"{levels} levels"
        )
    axes.set(xscale="log", yscale="log", xlabel="rows n", ylabel="ms per objective evaluation")
    axes.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_title("one evaluation of devfun(theta), ours", fontsize=10)
    axes.legend(fontsize=8, loc="upper left")
    axes.grid(True, which="both", alpha=0.3)


def plot(rows: list[Row], series: list[dict], path: Path) -> None:
    """Fit time and evaluation time against n for the crossed series (matplotlib needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crossed = [r for r in rows if r.case.name in SCALING_NAMES and "seconds" in r.ours]
    crossed.sort(key=lambda r: r.n)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _plot_fit_time(left, crossed)
    _plot_evaluation(right, crossed, series)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# the page


SECTION_MARKER = re.compile(r"^<!-- section (.+?) -->\n", re.MULTILINE)
ALONE = re.compile(r"\$\{(\w+)\}")


def template_sections(path: Path = TEMPLATE) -> dict[str, str]:
    """The template's sections by name (the text before the first marker is a comment)."""
    parts = SECTION_MARKER.split(path.read_text())
    return {name: body.strip("\n") for name, body in zip(parts[1::2], parts[2::2])}


def fill(section: str, values: dict[str, str]) -> str:
    """Substitute ``${name}``; a line holding only an empty value is dropped."""
    kept = [
        line
        for line in section.split("\n")
        if not ((match := ALONE.fullmatch(line)) and values[match.group(1)] == "")
    ]
    text = string.Template("\n".join(kept)).substitute(values)
    return re.sub(r"\n{3,}", "\n\n", text)


def _machine_values(info: dict, r_info: dict) -> dict[str, str]:
    threads = info["threads"]
    if r_info:
        r_line = (
            f"- {r_info['R']}, lme4 {r_info['lme4']}, Matrix {r_info['Matrix']}; "
            f"R BLAS: `{r_info['BLAS'] or 'internal'}`, LAPACK: `{r_info['LAPACK']}`"
        )
    else:
        r_line = "- lme4: not run"
    return {
        "cpu": info["cpu"],
        "cores": str(info["cores"]),
        "memory_gib": f"{info['memory_gib']:.1f}",
        "os": info["os"],
        "python": info["python"],
        "blas": info["blas"],
        "packages": ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "optimizer": info["optimizer"],
        "git": info["git"],
        "threads_line": (
            "- Thread settings: " + ", ".join(f"{k}={v}" for k, v in threads.items())
            if threads
            else ""
        ),
        "r_line": r_line,
    }


def _rule_values() -> dict[str, str]:
    return {
        "fast_ms": f"{1e3 * FAST:.0f}",
        "fast_budget": str(FAST_BUDGET),
        "max_fast_runs": str(MAX_FAST_RUNS),
        "slow": f"{SLOW:.0f}",
        "lme4_max_rows": _n(LME4_MAX_ROWS),
        "lme4_limit": f"{LME4_LIMIT:.0f}",
        "mixedlm_limit": f"{MIXEDLM_LIMIT:.0f}",
    }


def _optional_sections(
    sections: dict[str, str],
    rows: list[Row],
    series: list[dict],
    scale: list[Target] | None = None,
) -> dict:
    """Notes, breakdown, evaluation series and limits: filled, or "" when they do not apply."""
    found = notes(rows)
    header, body = breakdown_table(rows)
    values = {
        "notes": "Notes:\n\n" + "\n".join(found) if found else "",
        "breakdown": fill(sections["breakdown"], {"table": markdown_table(header, body)})
        if body
        else "",
        "devfun": "",
        "limits": "",
    }
    if series:
        values["devfun"] = fill(
            sections["devfun"],
            {
                "table": markdown_table(*devfun_table(series)),
                "formula": DEVFUN_FORMULA,
                "levels": " x ".join(str(v) for v in DEVFUN_LEVELS),
                "theta": str(list(DEVFUN_THETA)),
            },
        )
    unmet = [
        label
        for label, status, _ in [*targets(rows), *(scale or [])]
        if status in ("not met", "not run") and f"limit: {label}" in sections
    ]
    # a target of two issues is explained once
    limits = [sections[f"limit: {label}"] for label in dict.fromkeys(unmet)]
    if limits:
        values["limits"] = fill(sections["limits"], {"limits": "\n".join(limits)})
    return values


def render_page(raw: dict, rows: list[Row], sections: dict[str, str] | None = None) -> str:
    """docs/benchmarks.md from the results (as in results.json) and the template."""
    sections = template_sections() if sections is None else sections
    run, imports = raw.get("run", {}), raw["imports"]
    elapsed = run.get("elapsed_seconds")
    header = ["target", "status", "measured"]
    target_rows = markdown_table(header, [list(t) for t in targets(rows)]).splitlines()
    scale = targets_scale(rows, raw.get("inference", []), imports, raw.get("evaluations"))
    scale_rows = markdown_table(header, [list(t) for t in scale]).splitlines()
    values = {
        "date": run.get("date", "(date not recorded)"),
        "minutes": "?" if elapsed is None else f"{elapsed / 60:.1f}",
        "command": run.get("command", "python benchmarks/run.py --write"),
        **_machine_values(raw["machine"], raw["r"]),
        **_rule_values(),
        "results_table": markdown_table(*table_rows(rows)),
        **_optional_sections(sections, rows, raw["devfun"], scale),
        "import_seconds": f"{imports['seconds']:.2f}",
        "import_own_seconds": f"{imports['own_seconds']:.2f}",
        "import_heaviest": ", ".join(f"{name} {sec:.2f} s" for name, sec in imports["heaviest"]),
        "targets_table": "\n".join(target_rows),
        "scale_targets_table": "\n".join(scale_rows),
        "inference_table": markdown_table(*inference_table(raw.get("inference", []))),
        "import_ready_seconds": _seconds_or_dash(imports.get("ready_seconds")),
        "import_statsmodels_seconds": _seconds_or_dash(imports.get("statsmodels_seconds")),
    }
    return fill(sections["page"], values).rstrip("\n") + "\n"


def _seconds_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def inference_table(inference: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Seconds of summary() / profile confint after a fit."""
    header = ["task", "model", "seconds", "objective evaluations"]
    body = [
        [
            item["task"],
            item["name"],
            seconds_cell(item["seconds"]) if "seconds" in item else item.get("error", "-"),
            str(item.get("evaluations", "-")),
        ]
        for item in inference
    ]
    return header, body


def rows_from(raw: dict) -> list[Row]:
    """The rows of a results file (models no longer in cases.py get a bare Case)."""
    return [
        Row(
            BY_NAME.get(item["name"], Case(item["name"], "")),
            item["ours"],
            item["lme4"],
            item["mixedlm"],
        )
        for item in raw["rows"]
    ]


KEPT_BLOCK = re.compile(r"\n<!-- (\S+): begin -->.*?<!-- \1: end -->\n", re.S)
"""Blocks of the page written by other scripts (e.g. ``dask_crossed.py --page``), kept."""


def kept_blocks(page_text: str) -> str:
    """The blocks other scripts wrote into the page, to append to the new page."""
    return "".join(match.group(0) for match in KEPT_BLOCK.finditer(page_text))


def write_outputs(raw: dict, page: Path = PAGE, plot_path: Path = PLOT) -> None:
    """Write the page and the plot from the results."""
    rows = rows_from(raw)
    plot(rows, raw["devfun"], plot_path)
    kept = kept_blocks(page.read_text()) if page.exists() else ""
    page.write_text(render_page(raw, rows) + kept)
    print(f"wrote {page} and {plot_path}")


# ---------------------------------------------------------------------------
# console


def print_summary(
    rows: list[Row],
    series: list[dict],
    imports: dict,
    inference: list[dict] | None = None,
    evaluations: list[dict] | None = None,
) -> None:
    """The tables and targets, as text."""
    print()
    print_table(*table_rows(rows))
    if any("runs" in r.ours and not r.ours.get("warm_up", True) for r in rows):
        print("* single fit, no warm-up fit of the same model")
    b_header, b_body = breakdown_table(rows)
    if b_body:
        print("\nWhere the time goes")
        print_table(b_header, b_body)
    if series:
        print("\nOne evaluation against n (same levels)")
        print_table(*devfun_table(series))
    print(f"\nimport statsmodels_lmer: {imports['seconds']:.2f} s")
    if inference:
        print("\nInference after a fit")
        print_table(*inference_table(inference))
    print("\nTargets (issue 6)")
    for t, s, m in targets(rows):
        print(f"  {s:8s} {t}: {m}")
    print("\nTargets (issue 13)")
    for t, s, m in targets_scale(rows, inference or [], imports, evaluations):
        print(f"  {s:8s} {t}: {m}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write docs/benchmarks.md from a results file.")
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS)
    args = parser.parse_args()
    write_outputs(json.loads(args.results.read_text()))


if __name__ == "__main__":
    main()
