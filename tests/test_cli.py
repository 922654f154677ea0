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


def _dyestuff_csv(path, **kwargs) -> str:
    import statsmodels_lmer as sml

    sml.datasets.load("Dyestuff").to_csv(path, index=False, **kwargs)
    return str(path)


def test_csv_separator_decimal_mark_and_byte_order_mark(tmp_path, capsys):
    """A ';' file was read as one column ("'Yield' is not a column (columns: Yield;Batch)");
    spreadsheets also write decimal commas and a UTF-8 byte-order mark."""
    files = {
        "semicolon": (_dyestuff_csv(tmp_path / "a.csv", sep=";"), []),
        "tab": (_dyestuff_csv(tmp_path / "b.tsv", sep="\t"), []),
        "decimal comma": (
            _dyestuff_csv(tmp_path / "c.csv", sep=";", decimal=","),
            ["--decimal", ","],
        ),
        "byte-order mark": (_dyestuff_csv(tmp_path / "d.csv", encoding="utf-8-sig"), []),
        "explicit": (_dyestuff_csv(tmp_path / "e.csv", sep="|"), ["--sep", "|"]),
    }
    for path, options in files.values():
        assert main(["fit", "Yield ~ 1 + (1|Batch)", "--data", path, "--ml", *options]) == 0
        assert "327.3271" in capsys.readouterr().out


def test_non_numeric_response_message_is_short(tmp_path, capsys):
    import statsmodels_lmer as sml

    data = sml.datasets.load("sleepstudy")
    data["Reaction"] = data["Reaction"].astype(str) + "ms"
    path = tmp_path / "text.csv"
    data.to_csv(path, index=False)
    assert main(["fit", "Reaction ~ Days + (1|Subject)", "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not numeric" in err and "(180 columns)" in err and len(err) < 400
