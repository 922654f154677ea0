"""The command line ``python -m statsmodels_lmer``."""

from __future__ import annotations

import subprocess
import sys

from statsmodels_lmer.__main__ import main


def test_fit_bundled_data_set(capsys):
    assert main(["fit", "Reaction ~ Days + (Days|Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out


def test_fit_ml_from_csv(tmp_path, capsys):
    import statsmodels_lmer as sml

    path = tmp_path / "dyes.csv"
    sml.datasets.load("Dyestuff").to_csv(path, index=False)
    assert main(["fit", "Yield ~ 1 + (1|Batch)", "--data", str(path), "--ml"]) == 0
    out = capsys.readouterr().out
    assert "maximum likelihood" in out and "327.3271" in out


def test_bad_formula_exits_with_message(capsys):
    assert main(["fit", "Reaction ~ Days", "--data", "sleepstudy"]) == 2
    assert "no random-effects term" in capsys.readouterr().err


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "statsmodels_lmer", "datasets"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sleepstudy" in done.stdout
