"""The one table printer of the command line: aligned text for people, CSV or JSON for programs.

Every command that prints rows takes `--format table|csv|json` (the `format_option`). In csv and
json the rows are the whole output on stdout, with raw values; the lines that explain a table
(period, source, notes) go to stderr through `note`, so a pipe receives only data.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable

import click

FORMATS = ("table", "csv", "json")

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="table: aligned text; csv or json: the rows only on stdout (notes go to stderr).")


@dataclass(frozen=True)
class Column:
    """One printed column: the row key, its header, its width and how a table cell shows the value."""

    key: str
    title: str | None = None
    width: int = 10
    spec: str = ""            # a format spec for table cells, e.g. ",", ".1%", ",.0f"
    align: str = ">"
    show: Callable[[Any], str] | None = None   # a table cell's text, when a spec is not enough

    def cell(self, value: Any) -> str:
        """The value as the table shows it, padded to the column's width."""
        if self.show is not None:
            text = self.show(value)
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            text = "n/a"
        else:
            text = format(value, self.spec) if self.spec else str(value)
        return f"{text:{self.align}{self.width}}"

    def header(self) -> str:
        """The column's title, aligned like its cells."""
        return f"{(self.title if self.title is not None else self.key):{self.align}{self.width}}"


def plural(n: float, word: str, words: str | None = None) -> str:
    """'1 NPA', '2 NPAs', '1,234 calls': a count with its noun in the right number."""
    return f"{n:,.0f} {word if n == 1 else (words or word + 's')}"


def count(value: float) -> str:
    """A count without decimals ('4,903', not '4,903.0'); a sum of probabilities keeps one ('4.5')."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def note(text: str, fmt: str) -> None:
    """A line that explains the output: stdout in a table, stderr when stdout carries csv or json."""
    click.echo(text, err=fmt != "table")


def _plain(value: Any) -> Any:
    """A value JSON and CSV can carry: numpy scalars as Python numbers, NaN as null, dates as ISO text."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def records(rows) -> list[dict]:
    """Rows of a DataFrame (or an iterable of mappings) as a list of dicts."""
    if hasattr(rows, "to_dict"):
        return rows.to_dict("records")
    return [dict(r) for r in rows]


def print_table(rows, columns: Iterable[Column], fmt: str, *, header: bool = True, indent: str = "") -> None:
    """Print rows (a DataFrame or mappings) in the chosen format, only the given columns, in their order."""
    columns = list(columns)
    data = records(rows)
    if fmt == "json":
        click.echo(json.dumps([{c.key: _plain(r.get(c.key)) for c in columns} for r in data], indent=1))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for r in data:
            value = [_plain(r.get(c.key)) for c in columns]
            writer.writerow(["" if v is None else v for v in value])
        click.echo(out.getvalue(), nl=False)
    elif fmt == "table":
        if header:
            click.echo(indent + " ".join(c.header() for c in columns).rstrip())
        for r in data:
            click.echo(indent + " ".join(c.cell(r.get(c.key)) for c in columns).rstrip())
    else:
        raise click.BadParameter(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", param_hint="--format")

