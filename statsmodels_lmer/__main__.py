"""Command line: ``python -m statsmodels_lmer fit FORMULA --data NAME_OR_CSV``."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import pandas as pd

from . import datasets
from .fitting.optimizers import available_optimizers
from .model import lmer


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m statsmodels_lmer",
        description="Fit lme4-style linear mixed models.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a model and print its summary")
    fit.add_argument("formula", help='lme4 formula, e.g. "Reaction ~ Days + (Days|Subject)"')
    fit.add_argument(
        "--data",
        required=True,
        help=f"bundled data set ({', '.join(datasets.names())}) or a CSV file path",
    )
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--optimizer", choices=available_optimizers(), default=None)
    fit.add_argument(
        "--sep",
        default=None,
        help="the CSV file's field separator (default: detected, e.g. ',' or ';')",
    )
    fit.add_argument("--decimal", default=".", help="the CSV file's decimal mark (',' for 3,14)")
    fit.add_argument("--weights", help="column of prior weights")
    fit.add_argument("--offset", help="column holding an offset")
    commands.add_parser("datasets", help="list the bundled data sets")
    return parser


def load_data(source: str, sep: str | None = None, decimal: str = ".") -> pd.DataFrame:
    """A bundled data set by name, or a CSV file by path.

    ``sep``: the field separator; None detects it from the file's start
    (Python's CSV sniffer, among ``, ; tab |``), so ``;``-separated files read
    too. A UTF-8 byte-order mark (as spreadsheets write) is not part of the first name.
    """
    if Path(source).is_file():
        separator = sep or _sniffed_separator(source)
        return pd.read_csv(source, sep=separator, decimal=decimal, encoding="utf-8-sig")
    try:
        return datasets.load(source)
    except KeyError:
        raise SystemExit(
            f"error: {source!r} is neither a file nor a bundled data set "
            f"({', '.join(datasets.names())})"
        ) from None


def _sniffed_separator(path: str) -> str:
    """The field separator of a CSV file, from its first 64 KiB (``,`` when unclear)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        sample = handle.read(65536)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "datasets":
        for name in datasets.names():
            print(f"{name:12s} {datasets.describe(name)['title']}")
        return 0
    data = load_data(args.data, args.sep, args.decimal)
    try:
        res = lmer(
            args.formula,
            data,
            REML=not args.ml,
            method=args.optimizer,
            weights=args.weights,
            offset=args.offset,
        )
    except (ValueError, KeyError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(res.summary().as_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
