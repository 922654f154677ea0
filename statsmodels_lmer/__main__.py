"""Command line: ``python -m statsmodels_lmer fit FORMULA --data NAME_OR_CSV``."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from pathlib import Path
from typing import Any

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
    fit.add_argument(
        "--encoding", default="utf-8-sig", help="the CSV file's text encoding (e.g. latin-1)"
    )
    fit.add_argument("--weights", help="column of prior weights")
    fit.add_argument("--offset", help="column holding an offset")
    commands.add_parser("datasets", help="list the bundled data sets")
    return parser


class DataFileError(ValueError):
    """A data file that cannot be read, or a name that is neither a file nor a data set."""


def load_data(
    source: str, sep: str | None = None, decimal: str = ".", encoding: str = "utf-8-sig"
) -> pd.DataFrame:
    """A bundled data set by name, or a CSV file by path.

    ``sep``: the field separator; None detects it from the file's start
    (Python's CSV sniffer, among ``, ; tab |``), so ``;``-separated files read
    too. A UTF-8 byte-order mark (as spreadsheets write) is not part of the first name.

    Raises
    ------
    DataFileError
        For an unreadable file (empty, another encoding, rows of other lengths),
        or a name that is neither a file nor a bundled data set.
    """
    if Path(source).is_file():
        try:
            separator = sep or _sniffed_separator(source, encoding)
            return pd.read_csv(source, sep=separator, decimal=decimal, encoding=encoding)
        except UnicodeDecodeError as err:
            raise DataFileError(
                f"{source!r} is not {encoding} text ({err.reason} at byte {err.start}); "
                "give its encoding, e.g. --encoding latin-1"
            ) from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, LookupError) as err:
            raise DataFileError(f"cannot read {source!r}: {str(err).strip()}") from None
    try:
        return datasets.load(source)
    except KeyError:
        raise DataFileError(
            f"{source!r} is neither a file nor a bundled data set ({', '.join(datasets.names())})"
        ) from None


def _sniffed_separator(path: str, encoding: str = "utf-8-sig") -> str:
    """The field separator of a CSV file, from its first 64 KiB (``,`` when unclear)."""
    with open(path, newline="", encoding=encoding, errors="replace") as handle:
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
    try:
        data = load_data(args.data, args.sep, args.decimal, args.encoding)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            res = lmer(
                args.formula,
                data,
                REML=not args.ml,
                method=args.optimizer,
                weights=args.weights,
                offset=args.offset,
            )
    except (ValueError, KeyError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(res.summary().as_text())
    return 0


def _show_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    """A warning as one line naming its class, not the package's file and line."""
    print(f"warning ({category.__name__}): {message}", file=sys.stderr)


def run() -> int:
    """:func:`main` for the shell: output piped into ``head`` ends quietly."""
    try:
        return main()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit fails no more
        return 1


if __name__ == "__main__":
    sys.exit(run())
