"""Options and argument parsing shared by several command groups."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import click

from geo.cli.context import session

force = click.option("--force", is_flag=True, help="Re-read a file even if this exact file was loaded before.")
save = click.option("--save", is_flag=True, help="Also store the result as an analysis run (for the map and exports).")
date_from = click.option("--from", "start", help="First day, YYYY-MM-DD (default: counted back from the newest stored data).")
date_to = click.option("--to", "end", help="Last day, YYYY-MM-DD, included (default: the end of the data's newest complete period).")

compute_engine = click.option(
    "--engine", "compute", type=click.Choice(["local", "dask"]), default="local", show_default=True,
    help="Where the heavy work runs: this process, or Dask workers reading partitions of the calls themselves.")
scheduler = click.option(
    "--scheduler", metavar="ADDRESS",
    help="Dask scheduler address (e.g. tcp://10.0.0.5:8786); implies --engine dask. Without it, --engine dask "
         "starts a local cluster of --workers processes.")
dask_workers = click.option("--workers", "dask_workers", default=2, show_default=True,
                            help="--engine dask without --scheduler: local worker processes.")


html_page = click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
                         help="Write the report as a standalone HTML page with charts (opens offline).")


def png_page(size: tuple[int, int]):
    """The --png FILE option of a command that draws a page of `size` (width, height) pixels."""
    return click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path),
                        help=f"Write a {size[0]}x{size[1]} PNG of that page (headless Chromium).")


def write_page(html: str, html_path: Path | None, png_path: Path | None, size: tuple[int, int]) -> None:
    """Write a page (geo/pages.py) as --html and/or a screenshot as --png, saying what was written."""
    from geo.pages import write_png

    if html_path:
        html_path.write_text(html, encoding="utf-8")
        click.echo(f"wrote {html_path} (open it in a browser; it needs no network)")
    if png_path:
        try:
            write_png(html, png_path, size)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"wrote {png_path} ({size[0]}x{size[1]} PNG)")


def parse_period(start: str | None, end: str | None, **conditions):
    """--from/--to (both given) as a Filter over those local days, in the configured zone, with any other conditions."""
    from geo.filters import Filter

    first, last = _dates(start, end)
    if first is None or last is None:
        raise click.BadParameter("give both dates, YYYY-MM-DD", param_hint="--from/--to")
    if last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
    return Filter.local_days(first, last + timedelta(days=1), tz=session().locale.timezone, **conditions)


def parse_years(text: str | None) -> tuple[int, int] | None:
    """'2019-2021' or '2020' as (first, last) years; None when not given."""
    if not text:
        return None
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        raise click.BadParameter("use YYYY or YYYY-YYYY", param_hint="--years") from None
    if len(parts) > 2 or parts[0] > parts[-1]:
        raise click.BadParameter(f"{text!r}: use YYYY or YYYY-YYYY with the first year first", param_hint="--years")
    return parts[0], parts[-1]


def save_table(kind: str, params: dict, table) -> None:
    """Store a statistics table as an analysis run (geo.runs) and say its id."""
    from geo.runs import RunSpec, current_model_version
    from geo.runs import save_table as store

    engine = session().engine
    run_id = store(engine, RunSpec(kind, params, current_model_version(engine)), table)
    click.echo(f"saved as analysis run {run_id}")


def period_param(flt) -> list:
    """A run's `period` parameter: [first local day, the day after the last]."""
    return [flt.start_date, flt.end_date]


def _dates(start: str | None, end: str | None) -> tuple[date | None, date | None]:
    try:
        return (date.fromisoformat(start) if start else None, date.fromisoformat(end) if end else None)
    except ValueError:
        raise click.BadParameter("dates are YYYY-MM-DD", param_hint="--from/--to") from None


def analysis_period(start: str | None, end: str | None, kind: str, *, tables: tuple[str, ...] = ("calls",),
                    fmt: str = "table", **conditions):
    """--from/--to as a Filter (geo.filters.Filter.local_days in the configured zone, with `conditions`);
    a missing date comes from the data's newest complete window of `kind` (geo/periods.py), said on one
    line, never a calendar window that may hold nothing."""
    from geo.cli.table import note
    from geo.filters import Filter
    from geo.periods import data_span, newest_complete

    ctx = session()
    first, last = _dates(start, end)
    if first is None or last is None:
        span = data_span(ctx.engine, ctx.locale.timezone, tables)
        chosen = newest_complete(span, kind)
        if chosen is None:
            raise click.ClickException(f"{span.describe()}: load some first (`hotspots load`, or `hotspots demo` "
                                       "for generated data), or give --from and --to")
        if first is None and last is None:
            note(chosen.describe(), fmt)
            return chosen.as_filter(ctx.locale.timezone, **conditions)
        if last is None:
            last = max(first, chosen.last)
            note(f"period: {first} to {last} (to the end of the newest complete window of the stored data)", fmt)
        else:
            first = last - (chosen.last - chosen.first)
            note(f"period: {first} to {last} (as long as the default window, ending on --to)", fmt)
    if last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
    return Filter.local_days(first, last + timedelta(days=1), tz=ctx.locale.timezone, **conditions)


def refuse_empty(what: str, flt, *, table: str = "calls", tables: tuple[str, ...] | None = None,
                 where: str = "") -> None:
    """Stop with exit status 1: nothing to count in the period; names the period, the filter and what is stored."""
    from geo.periods import data_span

    ctx = session()
    span = data_span(ctx.engine, ctx.locale.timezone, tables or (table,))
    raise click.ClickException(
        f"no {what} from {flt.start_date} to {flt.end_date - timedelta(days=1)}{where}; {span.describe()}. "
        "Nothing was computed from zero rows: choose another period (--from/--to) or filter.")


def call_filters(division: str | None = None, category: str | None = None) -> tuple[str | None, str | None]:
    """--division (code or name, any case) and --category checked as the web checks them; (code, category).

    A value that is not known stops with exit status 2, listing the valid ones.
    """
    from geo.catalog import division_names
    from geo.filters import ParameterError, parse_filter

    given = {k: v for k, v in (("division", division), ("category", category)) if v is not None}
    if not given:
        return None, None
    names = division_names(session().engine) if division is not None else None
    try:
        flt = parse_filter(given, table="calls", divisions=names, tz=session().locale.timezone)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.parameter}") from None
    return flt.division, flt.category


def months_before(day: date, months: int) -> date:
    """The first of the month `months` calendar months before `day`'s month (day is a month's first)."""
    for _ in range(months):
        day = (day.replace(day=1) - timedelta(days=1)).replace(day=1)
    return day
