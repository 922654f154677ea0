"""The command line ``python -m statsmodels_lmer``."""

from __future__ import annotations

import os
import shlex
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


def test_unreadable_files_and_r_backticks_exit_2_with_one_line(tmp_path, capsys):
    """These printed Python tracebacks (pandas' or patsy's) and exited 1."""
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("Yield,B\u00e4tch\n1545,A\n1440,A\n1440,B\n1520,B\n".encode("latin-1"))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("Yield,Batch\n1545,A\n1440,A,3,4\n")
    cases = [
        (str(empty), "Yield ~ 1 + (1|Batch)", "cannot read"),
        (str(latin), "Yield ~ 1 + (1|Batch)", "give its encoding, e.g. --encoding latin-1"),
        (str(ragged), "Yield ~ 1 + (1|Batch)", "Expected 2 fields in line 3, saw 4"),
        ("nonexistent.csv", "Yield ~ 1 + (1|Batch)", "neither a file nor a bundled data set"),
        ("Dyestuff", "`Yield` ~ 1 + (1|Batch)", 'R\'s backticks; write Q("Yield") instead'),
    ]
    for data, formula, message in cases:
        assert main(["fit", formula, "--data", data]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    args = ["fit", "Yield ~ 1 + (1|Bätch)", "--data", str(latin), "--encoding", "latin-1"]
    assert main(args) == 0
    assert "Bätch" in capsys.readouterr().out


def test_warnings_are_one_line_and_a_closed_pipe_ends_quietly():
    singular = "Reaction ~ Days + (1 | Subject) + (1 | Days)"
    done = subprocess.run(
        [sys.executable, "-m", "statsmodels_lmer", "fit", singular, "--data", "sleepstudy"],
        capture_output=True,
        text=True,
        env={**os.environ, "STATSMODELS_LMER_PROGRESS": "0"},
    )
    assert done.returncode == 0
    assert done.stderr.startswith("warning (SingularFitWarning): boundary (singular) fit")
    assert "__main__.py" not in done.stderr
    command = (
        f"{shlex.quote(sys.executable)} -m statsmodels_lmer fit "
        "'Reaction ~ Days + (Days|Subject)' --data sleepstudy | head -1"
    )
    piped = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert piped.stdout.startswith("Linear mixed model fit by REML")
    assert "Traceback" not in piped.stderr and "BrokenPipeError" not in piped.stderr
