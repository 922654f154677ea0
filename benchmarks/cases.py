"""The benchmark models: one :class:`Case` per row of the results table.

To add a model, append a :class:`Case` to the matching section of
:data:`CASES`: a bundled data set (``statsmodels_lmer.datasets.load(name)``)
or a synthetic design of ``benchmarks/synthetic.py``. ``quick=True`` puts it in
the ``--quick`` subset; ``mixedlm`` gives the keywords of
``statsmodels.formula.api.mixedlm`` when MixedLM can fit the model;
``lme4_skip`` says why lme4 is not run on it (too slow or too big).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from synthetic import make_data

import statsmodels_lmer as sml

SEED = 1
"""Seed of every synthetic data set."""

LME4_MAX_ROWS = 1_000_000
"""lme4 is not run on data sets with more rows."""


@dataclass(frozen=True)
class Case:
    """One benchmark model: formula, data and what runs on it.

    Attributes
    ----------
    name : str
        Row name in the tables and on the command line (``--models``).
    formula : str
        lme4 formula, the same for us and for lme4.
    reml : bool
        REML (True) or ML.
    dataset : str, optional
        Bundled data set, loaded by name; or else
    design, n, levels : str, int, tuple of int, optional
        Synthetic data: ``make_data(design, n, levels, seed=SEED)``
        (``levels`` None: the design's default levels).
    r_package : str or None
        R package holding ``dataset`` (lme4 then loads it with ``data()``);
        None: lme4 reads our copy of the data from a CSV file, as for
        synthetic data.
    mixedlm : dict, optional
        Keywords of ``statsmodels.formula.api.mixedlm`` (``formula``,
        ``groups``, ...) when MixedLM can fit the model. A list ``groups``
        is joined into one grouping column.
    lme4_skip : str
        Why lme4 is not run on this model ("" runs it; see also
        :data:`LME4_MAX_ROWS`).
    prepare : str, optional
        A name in :data:`PREPARE`: derived columns added to the data set
        (lme4 then reads our CSV: give ``r_package=None``).
    once : bool
        Time a single fit, without a warm-up fit of the same model.
    by_name : str
        Why the model runs only when named in ``--models`` ("" runs it by default).
    quick : bool
        In the ``--quick`` subset.
    """

    name: str
    formula: str
    reml: bool = True
    dataset: str | None = None
    design: str | None = None
    n: int | None = None
    levels: tuple[int, ...] | None = None
    r_package: str | None = "lme4"
    mixedlm: dict | None = None
    lme4_skip: str = ""
    prepare: str | None = None
    once: bool = False
    by_name: str = ""
    quick: bool = False

    @property
    def synthetic(self) -> bool:
        """Whether the data are simulated (``design``) rather than a data set."""
        return self.design is not None

    @property
    def r_reads_csv(self) -> bool:
        """Whether lme4 gets the data through a CSV file of our data frame."""
        return self.synthetic or self.r_package is None

    @property
    def lme4_skip_reason(self) -> str:
        """Why lme4 is not run on this model, or ""."""
        if self.lme4_skip:
            return self.lme4_skip
        if self.n is not None and self.n > LME4_MAX_ROWS:
            return f"over {_rows_label(LME4_MAX_ROWS)} rows"
        return ""

    def load(self) -> pd.DataFrame:
        """The data: the bundled data set or the synthetic design."""
        if self.synthetic:
            return make_data(self.design, self.n, self.levels, seed=SEED)
        data = sml.datasets.load(self.dataset)
        return PREPARE[self.prepare](data) if self.prepare else data


def kb07_helmert(data: pd.DataFrame) -> pd.DataFrame:
    """kb07 with +/-1 codes S, P, L for spkr, prec, load (R's contr.helmert; MixedModels.jl)."""
    return data.assign(
        S=(data["spkr"] == "old") * 2.0 - 1.0,
        P=(data["prec"] == "maintain") * 2.0 - 1.0,
        L=(data["load"] == "yes") * 2.0 - 1.0,
    )


PREPARE = {"kb07_helmert": kb07_helmert}
"""Derived columns of bundled data sets, by the name a :class:`Case` gives in ``prepare``."""


def _rows_label(n: int) -> str:
    """1e4, 2e5, 1e7: the numbers of rows in case names."""
    return f"{n:.0e}".replace("e+0", "e")


def _levels_label(levels: int) -> str:
    """20k, 5k: the numbers of levels in case names."""
    return f"{levels // 1_000}k" if levels % 1_000 == 0 else str(levels)


def _crossed(n: int, quick: bool, once: bool = False) -> Case:
    """The fit-time-against-n series: 1e4 x 1e3 levels (n/10 x n/100 below 1e5 rows)."""
    return Case(
        f"crossed-{_rows_label(n)}",
        "y ~ x + (1|g1) + (1|g2)",
        design="crossed",
        n=n,
        quick=quick,
        once=once,
    )


def _crossed_levels(design: str, formula: str, n: int, levels: tuple[int, int], **kw) -> Case:
    """Crossed factors with many levels (issue 13): named design-n-L1-L2."""
    name = "-".join([design, _rows_label(n), *(_levels_label(v) for v in levels)])
    return Case(name, formula, design=design, n=n, levels=levels, **kw)


def _kb07(name: str, slopes: str, **kw) -> Case:
    """kb07 (ML): fixed effects ``S*P*L``, random terms ``(slopes | subj) + (slopes | item)``."""
    formula = f"rt_trunc ~ 1 + S*P*L + ({slopes} | subj) + ({slopes} | item)"
    return Case(
        name, formula, reml=False, dataset="kb07", prepare="kb07_helmert", r_package=None, **kw
    )


def _mixedlm_nested(formula: str, outer: str, inner: str) -> dict:
    """MixedLM keywords for ``(1|outer/inner)``: variance components of ``inner`` in ``outer``."""
    return {"formula": formula, "groups": outer, "vc_formula": {inner: f"0 + C({inner})"}}


def _mixedlm_slope(formula: str, group: str, slope: str) -> dict:
    """MixedLM keywords for ``(slope|group)``: correlated intercept and slope."""
    return {"formula": formula, "groups": group, "re_formula": f"~{slope}"}


# --- bundled data sets
DATASET_CASES = [
    Case(
        "Dyestuff",
        "Yield ~ 1 + (1|Batch)",
        dataset="Dyestuff",
        mixedlm={"formula": "Yield ~ 1", "groups": "Batch"},
        quick=True,
    ),
    Case("Penicillin", "diameter ~ 1 + (1|plate) + (1|sample)", dataset="Penicillin", quick=True),
    Case(
        "Pastes",
        "strength ~ 1 + (1|batch/cask)",
        dataset="Pastes",
        mixedlm=_mixedlm_nested("strength ~ 1", "batch", "cask"),
        quick=True,
    ),
    Case(
        "sleepstudy",
        "Reaction ~ Days + (Days|Subject)",
        dataset="sleepstudy",
        mixedlm=_mixedlm_slope("Reaction ~ Days", "Subject", "Days"),
        quick=True,
    ),
    Case(
        "cake",
        "angle ~ recipe * temperature + (1|recipe:replicate)",
        dataset="cake",
        mixedlm={"formula": "angle ~ recipe * temperature", "groups": ["recipe", "replicate"]},
        quick=True,
    ),
    Case("InstEval", "y ~ service + (1|s) + (1|d) + (1|dept)", reml=False, dataset="InstEval"),
    Case("InstEval-dept", "y ~ service*dept + (1|s) + (1|d)", reml=False, dataset="InstEval"),
    # kb07 (MixedModels.jl's copy, Helmert codes): subject x item with random slopes
    _kb07("kb07-4x4", "1 + S + P + L"),
    _kb07(
        "kb07-8x8",
        "1 + S*P*L",  # 8 x 8 covariance on each factor: 72 theta
        lme4_skip="lme4 1.1-31 took 3809 s (541 evaluations) for this fit on this machine",
    ),
]

# --- synthetic: crossed factors from 1e4 to 1e7 rows (the plotted series)
SCALING_CASES = [
    _crossed(10_000, quick=True),
    _crossed(100_000, quick=True),
    _crossed(1_000_000, quick=False),
    _crossed(10_000_000, quick=False, once=True),
]

# --- synthetic: other designs
DESIGN_CASES = [
    Case(
        "nested-1e5",
        "y ~ x + (1|school/classroom)",
        design="nested",
        n=100_000,
        mixedlm=_mixedlm_nested("y ~ x", "school", "classroom"),
        quick=True,
    ),
    Case(
        "slope-1e5",
        "y ~ x + (x|g)",
        design="slope",
        n=100_000,
        mixedlm=_mixedlm_slope("y ~ x", "g", "x"),
        quick=True,
    ),
]

# --- synthetic: many levels in both crossed factors (issue 13); minutes each, not --quick
MANY_LEVELS_CASES = [
    _crossed_levels("crossed", "y ~ x + (1|g1) + (1|g2)", 200_000, (20_000, 5_000)),
    _crossed_levels(
        "crossed",
        "y ~ x + (1|g1) + (1|g2)",
        200_000,
        (20_000, 20_000),
        lme4_skip="too big: the Cholesky factor of 20k x 20k crossed levels is nearly dense",
        by_name="about 20 minutes: one evaluation factors a dense 20003 x 20003 block",
    ),
    _crossed_levels("crossed-slopes", "y ~ x + (x|g1) + (x|g2)", 100_000, (5_000, 2_000)),
    # many schools: the nested layout's solution without an m x m array (6.3 GB before)
    _crossed_levels("nested", "y ~ x + (1|school/classroom)", 200_000, (20_000, 100_000)),
    _crossed_levels(
        "partial", "y ~ x + (1|h) + (0 + f|g) + (1|site) + (1|g:h)", 20_000, (1_400, 260)
    ),
]

CASES = DATASET_CASES + SCALING_CASES + DESIGN_CASES + MANY_LEVELS_CASES
BY_NAME = {case.name: case for case in CASES}
SCALING_NAMES = tuple(case.name for case in SCALING_CASES)

# --- inference after a fit (issue 13): (task, model) for ``workers.py inference``
INFERENCE_TASKS = (("summary", "kb07-8x8"), ("profile", "InstEval"))
QUICK_INFERENCE_TASKS = (("summary", "kb07-4x4"),)

# --- one objective evaluation against n, same levels at every n
DEVFUN_FORMULA = "y ~ x + (1|g1) + (1|g2)"
DEVFUN_LEVELS = (1_000, 100)
DEVFUN_THETA = (1.0, 0.5)  # true relative standard deviations of the synthetic data
DEVFUN_NS = (10_000, 100_000, 1_000_000, 10_000_000)
QUICK_DEVFUN_NS = (10_000, 100_000, 1_000_000)


def select(names: list[str] | None, quick: bool) -> list[Case]:
    """The cases named (in the order of :data:`CASES`), else all or the quick ones.

    Cases with ``by_name`` run only when named.

    Raises
    ------
    KeyError
        Naming the unknown models.
    """
    if names:
        unknown = [name for name in names if name not in BY_NAME]
        if unknown:
            raise KeyError(f"unknown models {unknown}; see --list")
        return [case for case in CASES if case.name in names]
    return [case for case in CASES if (case.quick or not quick) and not case.by_name]
