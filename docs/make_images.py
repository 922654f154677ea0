"""Draw the figures of docs/graphics.md into docs/images/.

Usage (from the repository root, with the ``plot`` extra installed)::

    python docs/make_images.py

Every figure comes from the functions of :mod:`statsmodels_lmer.graphics` on
bundled data, with fixed seeds, so that a rerun draws the same pictures.
It takes about half a minute.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import statsmodels_lmer as sml
from statsmodels_lmer import graphics

IMAGES = Path(__file__).resolve().parent / "images"
DPI = 80


def save(fig, name: str) -> None:
    path = IMAGES / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    matplotlib.pyplot.close(fig)
    print(f"wrote {path.relative_to(IMAGES.parent.parent)}")


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    sleep = sml.datasets.load("sleepstudy")
    res = sml.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    save(graphics.plot_ranef(res), "ranef")
    save(graphics.plot_resim(res.resim(n_sims=1000, seed=1)), "resim")
    save(graphics.plot_diagnostics(res), "diagnostics")
    save(graphics.plot_ranef_qq(res), "ranef_qq")
    save(graphics.plot_group_fits(res, x="Days", n_groups=8), "group_fits")
    save(res.profile(progress=False).plot(), "profile")
    save(res.bootstrap(500, seed=1, progress=False).plot(), "bootstrap")
    save(res.allfit(progress=False).plot(), "allfit")
    hsb = sml.datasets.load("hsb")
    schools = sml.lmer("MathAch ~ SES + (SES | School)", hsb)
    infl = schools.influence(progress=False)
    save(infl.plot(which=["cooks_distance", "covratio", "leverage"]), "influence")
    penicillin = sml.datasets.load("Penicillin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crossed = sml.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin)
    save(graphics.plot_ranef(crossed), "ranef_crossed")


if __name__ == "__main__":
    main()
