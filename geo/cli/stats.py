"""`hotspots stats`: reports from the loaded data."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session
from geo.cli.table import Column, count, format_option, note, plural, print_table
from geo.pages import COMPSTAT_PNG


# --- statistics ------------------------------------------------------------------------------
@click.group()
def stats() -> None:
    """Reports from the loaded data.

    Without --from/--to a report covers the data's newest complete period (counted back from the
    newest stored row, and said on the first line); a period without rows is refused. Every report
    takes --format table|csv|json.
    """


def _names(by: str) -> dict[str, str]:
    """Division code -> short name when the rows are per division (tables print both)."""
    from geo.catalog import division_labels

    return division_labels(session().engine) if by == "division" else {}


def _with_names(table, names: dict[str, str]):
    """The rows with a `name` column beside `area` (empty when the areas have no names)."""
    return table.assign(name=table["area"].astype(str).map(names).fillna("") if names else "")


def _top_areas(totals, by: str, top: int | None, fmt: str) -> tuple[list, str | None]:
    """The areas to print, largest first when cut, and the line that says how many were left out.

    A table per NPA would run to thousands of lines: it shows the 20 largest unless --top says
    otherwise (0: all); csv and json carry every area unless --top is given.
    """
    limit = top if top is not None else (20 if by == "npa" and fmt == "table" else 0)
    areas = list(totals.sort_values(ascending=False).index) if limit else sorted(totals.index, key=str)
    if not limit or len(areas) <= limit:
        return (sorted(areas, key=str) if limit else areas), None
    return areas[:limit], (f"... {plural(len(areas) - limit, by.upper() if by == 'npa' else by)} with fewer calls "
                           f"left out (--top 0 shows all)")


_top = click.option("--top", type=click.IntRange(min=0),
                    help="Only the N areas with the most calls (0: all) [tables per NPA: 20; csv/json: all].")


@stats.command("calls")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="division", show_default=True)
@click.option("--division", help="Only this division: its code or name, any case (e.g. 01 or Central).")
@_top
@format_option
@opt.save
def stats_calls_cmd(start: str | None, end: str | None, by: str, division: str | None, top: int | None, fmt: str,
                    save: bool) -> None:
    """Calls per area and category with each category's share, and the violent share (model labels)."""
    from geo.metrics import call_counts

    division, _ = opt.call_filters(division=division)
    period = opt.analysis_period(start, end, "month", fmt=fmt, division=division)
    table = call_counts(session().engine, period, by)
    if table.empty:
        opt.refuse_empty("calls", period, where=f" in division {division}" if division else "")
    if save:
        opt.save_table("call_counts", {"period": opt.period_param(period), "by": by, "division": division}, table)
    names = _names(by)
    table = _with_names(table, names)
    areas, left_out = _top_areas(table.groupby("area")["total"].first(), by, top, fmt)
    if fmt != "table":
        rows = table[table["area"].isin(areas)].sort_values(["area", "calls"], ascending=[True, False])
        print_table(rows, [Column(k) for k in ("area", "name", "category", "calls", "share", "total",
                                               "area_labelled_violent", "area_expected_violent", "violent_share")],
                    fmt)
        if left_out:
            note(left_out, fmt)
        return
    columns = [Column("category", width=24, align="<"), Column("calls", width=9, spec=","),
               Column("share", width=7, spec=".1%")]
    for area in areas:
        rows = table[table["area"] == area]
        first = rows.iloc[0]
        name = f" {first['name']}" if first["name"] else ""
        click.echo(f"{by} {area}{name}: {plural(int(first.total), 'call')}, {count(first.area_labelled_violent)} "
                   f"labelled violent ({first.violent_share:.1%}), expected violent {first.area_expected_violent:,.1f}")
        print_table(rows.sort_values("calls", ascending=False), columns, fmt, header=False, indent="   ")
    if left_out:
        click.echo(left_out)


@stats.command("hours")
@opt.date_from
@opt.date_to
@click.option("--division", help="Only this division: its code or name, any case (e.g. 01 or Central).")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@click.option("--violent-only", is_flag=True, help="Only calls the model labelled violent.")
@click.option("--totals", is_flag=True, help="Print the counts instead of the mean per occurrence.")
@format_option
@opt.save
def stats_hours_cmd(start: str | None, end: str | None, division: str | None, category: str | None, violent_only: bool,
                    totals: bool, fmt: str, save: bool) -> None:
    """Calls by weekday and hour of day (local time): the 7x24 matrix, as calls per occurrence of each weekday-hour.

    csv and json give one row per weekday-hour: calls, occurrences and the mean per occurrence.
    """
    from geo.metrics import hour_weekday

    division, category = opt.call_filters(division=division, category=category)
    # 28 days by default: every weekday-hour occurs four times.
    period = opt.analysis_period(start, end, "28d", fmt=fmt, division=division, category=category,
                                 violent=True if violent_only else None)
    matrix = hour_weekday(session().engine, period)
    if int(matrix.totals.to_numpy().sum()) == 0:
        chosen = [f"division {division}" if division else "", f"category {category}" if category else "",
                  "labelled violent" if violent_only else ""]
        where = ", ".join(c for c in chosen if c)
        opt.refuse_empty("calls with a time of day", period, where=f" ({where})" if where else "")
    if save:
        opt.save_table("hour_weekday", {"period": opt.period_param(period), "division": division, "category": category,
                                        "violent_only": violent_only}, matrix.to_frame())
    if fmt != "table":
        print_table(matrix.to_frame(), [Column(k) for k in ("weekday", "hour", "calls", "occurrences",
                                                            "mean_per_occurrence")], fmt)
        if matrix.left_out_date_only:
            note(f"left out: {plural(matrix.left_out_date_only, 'call')} known only by their date (no time of day)",
                 fmt)
        return
    times = matrix.occurrences[12]
    click.echo(("calls" if totals else "mean calls per occurrence") + f" of each weekday-hour, {matrix.start:%Y-%m-%d}"
               f" to {matrix.end - timedelta(days=1):%Y-%m-%d}; weekdays occur "
               + ", ".join(f"{d} {int(n)}x" for d, n in times.items()))
    grid = matrix.totals if totals else matrix.mean
    cell = Column("", width=6, spec="," if totals else ".2f")
    click.echo("     " + "".join(f"{h:>7}" for h in range(24)))
    for day, row in grid.iterrows():
        click.echo(f"{day:5}" + "".join(" " + cell.cell(int(v) if totals else v) for v in row))
    if matrix.left_out_date_only:
        click.echo(f"left out: {plural(matrix.left_out_date_only, 'call')} known only by their date (no time of day)")


@stats.command("compstat")
@click.option("--as-of", help="Report date, YYYY-MM-DD; the report week is the last Monday-Sunday before it "
                              "(default: the day after the newest stored call or incident, so the week is the newest complete one).")
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="city", show_default=True)
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@click.option("--source", type=click.Choice(["incidents", "homicides", "labelled", "expected", "calls"]),
              help="What is counted (geo/sources.py): recorded violent incidents (the default when the windows hold "
                   "any), homicide victims, model-labelled calls, expected violent calls (the default otherwise), "
                   "or every call for service.")
@click.option("--violent-only", is_flag=True, help="The same as --source labelled (calls the model labelled violent).")
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when the windows hold both).")
@click.option("--compare", type=click.Choice(["year", "previous"]), default="year", show_default=True,
              help="year: each window against the same period a year earlier (CompStat practice); previous: the "
                   "week and 28 days against the ones just before (back to back; mixes in the season).")
@format_option
@opt.save
@click.option("--division", help="With --html/--png: the division (code or name) whose CompStat page to draw "
                                 "(default as-of: the day after the newest call).")
@opt.html_page
@opt.png_page(COMPSTAT_PNG)
def stats_compstat_cmd(as_of: str | None, by: str, category: str | None, source: str | None, violent_only: bool,
                       origin: str | None, compare: str, fmt: str, save: bool, division: str | None,
                       html_path: Path | None, png_path: Path | None) -> None:
    """CompStat: the report week, 28 days and year to date against a year earlier, overdispersion-aware, FDR across areas.

    With --html/--png: one division's CompStat page (charts, every category) written to a file instead.
    """
    from geo.filters import Filter
    from geo.metrics import compstat
    from geo.periods import data_span
    from geo.sources import default_source

    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--as-of") from None
    if html_path or png_path:
        return _compstat_page(day, by, category, source, violent_only, origin, compare, fmt, save, division,
                              html_path, png_path)
    if division is not None:
        raise click.BadParameter("only with --html or --png", param_hint="--division")
    _, category = opt.call_filters(category=category)
    tz = session().locale.timezone
    if violent_only and source not in (None, "labelled"):
        raise click.BadParameter(f"--violent-only means --source labelled, not {source}", param_hint="--violent-only")
    engine = session().engine
    if day is None:
        span = data_span(engine, tz, ("calls", "incidents"))
        if span.last is None:
            raise click.ClickException(f"{span.describe()}: load some first, or give --as-of")
        day = span.last + timedelta(days=1)
        as_of_line = f"as of {day} (the day after the newest stored call or incident; --as-of chooses another)"
    else:
        as_of_line = None
    if violent_only:
        source = "labelled"
    elif source is None:
        source = default_source(engine, _windows_span(day, compare, tz), origin)
    flt = Filter(category=category, origin=origin, tz=tz)
    try:
        table = compstat(engine, day, by=by, flt=flt, compare=compare, source=None if source == "calls" else source)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    note(f"source: {table.attrs['source']}", fmt)
    if as_of_line:
        note(as_of_line, fmt)
    if table.empty or not int(table["current"].sum() + table["prior"].sum()):
        opt.refuse_empty(f"rows of {table.attrs['source'].split(':')[0]}", _windows_span(day, compare, tz),
                         tables=("calls", "incidents"), where=f" (report windows as of {day})")
    if save:
        opt.save_table("compstat", {"as_of": day, "by": by, "category": category, "source": source, "origin": origin,
                                    "source_words": table.attrs["source"], "compare": compare}, table)
    names = _names(by)
    table = _with_names(table, names)
    if fmt != "table":
        print_table(table, [Column(k) for k in ("window", "area", "name", "current_period", "prior_period", "current",
                                                "prior", "pct_change", "dispersion", "p_value", "q_value",
                                                "significant", "data_covers_both", "note")], fmt)
        return
    for window, rows in table.groupby("window", sort=False):
        first = rows.iloc[0]
        click.echo(f"{window}: {first.current_period.replace('..', ' to ')} against "
                   f"{first.prior_period.replace('..', ' to ')}")
    # A change is shown only where the data cover both windows of the pair.
    shown = table.assign(
        change=[f"{r.pct_change:+.1f}%" if r.data_covers_both and r.pct_change == r.pct_change else "n/a"
                for r in table.itertuples()],
        words=[r.note or ("significant" if r.significant else "within noise") for r in table.itertuples()])
    click.echo("")
    print_table(shown, [Column("window", width=13, align="<"), Column("area", width=8, align="<"),
                        Column("current", width=9, spec=","), Column("prior", width=9, spec=","),
                        Column("change", width=8), Column("dispersion", "phi", width=6, spec=".3f"),
                        Column("p_value", "p", width=7, spec=".3f"), Column("q_value", "q", width=7, spec=".3f"),
                        Column("words", " note", width=0, align="<", show=lambda v: f" {v}"),
                        Column("name", "", width=0, align="<", show=lambda v: f"({v})" if v else "")], fmt)
    click.echo("\nphi: the area's dispersion (variance / Poisson variance) from its own earlier pairs of that window;"
               " q: Benjamini-Hochberg across the areas of a window; significant: q < 0.05 (docs/methods.md).")


def _windows_span(day: date, compare: str, tz: str):
    """The local days from the first to the last of the report's windows (current and comparison) as one Filter."""
    from geo.metrics import compstat_windows

    windows = [p for pair in compstat_windows(day, compare, tz=tz).values() for p in pair]
    return windows[0].with_days(min(p.start_date for p in windows), max(p.end_date for p in windows))


def _compstat_page(day: date | None, by: str, category: str | None, source: str | None, violent_only: bool,
                   origin: str | None, compare: str, fmt: str, save: bool, division: str | None,
                   html_path: Path | None, png_path: Path | None) -> None:
    """--html/--png: write one division's CompStat page (geo/pages.py) instead of printing the report."""
    from geo.filters import ParameterError
    from geo.pages import compstat_page

    if division is None:
        raise click.BadParameter("--html/--png draw one division's page: name it, e.g. --division Central",
                                 param_hint="--division")
    for name, value in (("--by", by != "city"), ("--category", category), ("--save", save),
                        ("--format", fmt != "table")):
        if value:
            raise click.BadParameter("not with --html/--png (the page is per division, of every category)",
                                     param_hint=name)
    if violent_only and source not in (None, "labelled"):
        raise click.BadParameter(f"--violent-only means --source labelled, not {source}", param_hint="--violent-only")
    try:
        html = compstat_page(session().engine, division, as_of=day, source="labelled" if violent_only else source,
                             origin=origin, compare=compare)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.parameter}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    opt.write_page(html, html_path, png_path, COMPSTAT_PNG)


@stats.command("monthly")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="city", show_default=True)
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@format_option
@opt.save
def stats_monthly_cmd(start: str | None, end: str | None, by: str, category: str | None, fmt: str, save: bool) -> None:
    """Monthly trend: calls, labelled-violent and expected-violent calls per month and area."""
    from geo.metrics import monthly_trend

    _, category = opt.call_filters(category=category)
    period = opt.analysis_period(start, end, "12 months", fmt=fmt, category=category)
    table = monthly_trend(session().engine, period, by)
    if table.empty:
        opt.refuse_empty("calls", period, where=f" of category {category}" if category else "")
    if save:
        opt.save_table("monthly_trend", {"period": opt.period_param(period), "by": by, "category": category}, table)
    names = _names(by)
    table = _with_names(table, names)
    columns = [Column("area", by, width=9, align="<"), *([Column("name", width=16, align="<")] if names else []),
               Column("month", width=8), Column("calls", width=9, spec=","),
               Column("labelled_violent", "violent", width=8, spec=","),
               Column("expected_violent", "expected", width=9, spec=",.1f")]
    print_table(table, columns, fmt)


@stats.command("indicators")
@opt.date_from
@opt.date_to
@click.option("--permutations", default=999, show_default=True, help="Permutations of whole NPA series.")
@click.option("--seed", default=0, show_default=True, help="Seed of the permutations (same seed, same p-values).")
@format_option
@opt.save
def stats_indicators_cmd(start: str | None, end: str | None, permutations: int, seed: int, fmt: str,
                         save: bool) -> None:
    """Call categories that go with more violent incidents the next month, within NPAs (association, not cause)."""
    from geo.metrics import leading_indicators

    period = opt.analysis_period(start, end, "12 months", tables=("calls", "incidents"), fmt=fmt)
    table = leading_indicators(session().engine, period, permutations=permutations, seed=seed)
    info = table.attrs
    if save:
        opt.save_table("leading_indicators", {"period": opt.period_param(period), "permutations": permutations,
                                           "seed": seed}, table)
    months = info["months"]
    note(f"complete months: {months[0]} to {months[-1]} ({len(months)})" if months else "no complete months", fmt)
    for left in info["left_out_months"]:
        note(f"left out {left}", fmt)
    dated = info["violent_dated"]
    note(f"violent incidents dated by occurrence: {dated['occurrence']:,}; by report date (no occurrence date):"
         f" {dated['report']:,}", fmt)
    if table.empty:
        raise click.ClickException("not enough data from {} to {}: at least 4 complete months, 3 NPAs and 200 calls of "
                                   "a category".format(period.start_date, period.end_date - timedelta(days=1)))
    if fmt != "table":
        print_table(table.reset_index() if "category" not in table.columns else table,
                    [Column(k) for k in ("category", "beta", "partial_r", "t", "p_value", "q_value", "calls",
                                         "significant")], fmt)
        return
    click.echo("")
    shown = table.reset_index() if "category" not in table.columns else table
    print_table(shown.assign(flag=["<- associated" if s else "" for s in shown["significant"]]),
                [Column("category", width=25, align="<"), Column("beta", width=7, spec=".3f"),
                 Column("partial_r", "partial r", width=10, spec=".3f"), Column("t", width=7, spec=".2f"),
                 Column("p_value", "p", width=8, spec=".4f"), Column("q_value", "q (FDR)", width=8, spec=".4f"),
                 Column("calls", width=9, spec=","), Column("flag", "", width=0, align="<")], fmt)
    click.echo("\nPer category: next month's violent incidents on this month's calls, each relative to the NPA's own"
               " monthly mean, with NPA and month fixed effects and last month's violence as a control; p from"
               f" {permutations} permutations of whole NPA series. An association says where to look; it does not"
               " show that the calls cause anything, nor that fewer of them would mean less violence.")


@stats.command("outreach")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["division", "npa"]), default="npa", show_default=True)
@_top
@format_option
@opt.save
def stats_outreach_cmd(start: str | None, end: str | None, by: str, top: int | None, fmt: str, save: bool) -> None:
    """Areas where mental health, welfare, domestic or disorder calls dominate: candidates for non-police responses."""
    from geo.metrics import outreach_flags

    # A year of calls: shares of a category per area are stable enough to compare with the city's.
    period = opt.analysis_period(start, end, "12 months", fmt=fmt)
    engine = session().engine
    table = outreach_flags(engine, period, by)
    if save:
        opt.save_table("outreach_flags", {"period": opt.period_param(period), "by": by}, table)
    if table.empty:
        from geo.periods import count_rows

        if not count_rows(engine, period):
            opt.refuse_empty("calls", period)
        note("no area stands out", fmt)
        return
    names = _names(by)
    table = _with_names(table, names)
    limit = top if top is not None else (20 if by == "npa" and fmt == "table" else 0)
    shown = table.head(limit) if limit else table
    columns = [Column("area", by, width=9, align="<"), *([Column("name", width=16, align="<")] if names else []),
               Column("category", width=23, align="<"), Column("calls", width=7, spec=","),
               Column("total", "of all", width=8, spec=","), Column("share", width=7, spec=".1%"),
               Column("city_share", "city", width=7, spec=".1%"), Column("ratio_to_city", "x city", width=7, spec=".2f")]
    print_table(shown, columns, fmt)
    if len(shown) < len(table):
        note(f"... {plural(len(table) - len(shown), 'flag')} further down the list left out (--top 0 shows all)", fmt)


@stats.command("offenses")
@click.option("--area", default="CMPD", show_default=True, help="CMPD, an NPA number, or a CMPD hotspot area name.")
@click.option("--years", help="Year range, e.g. 2019-2021 or 2020.")
@format_option
def stats_offenses_cmd(area: str, years: str | None, fmt: str) -> None:
    """Violent offenses by year and category from CMPD's published counts.

    Yearly totals are CMPD's own 'Violent Crime' roll-up rows; the category table shows every
    detail row, and 'Non-Fatal Gunshot Injury' is a subset of the aggravated assaults, so the
    categories do not add up to the total (the check column sums the disjoint ones).
    csv and json give one row per year and category: year, category, offenses.
    """
    from geo.metrics import OVERLAPPING, offense_totals

    span = None
    if years:
        try:
            parts = [int(p) for p in years.split("-")]
            span = (parts[0], parts[-1])
        except ValueError:
            raise click.BadParameter("use YYYY or YYYY-YYYY", param_hint="--years") from None
    try:
        totals = offense_totals(session().engine, area, span)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt != "table":
        long = totals.by_category.rename_axis(index="category", columns="year").stack().rename("offenses")
        print_table(long.reset_index()[["year", "category", "offenses"]], [Column("year"), Column("category"),
                                                                          Column("offenses")], fmt)
        return
    click.echo(f"Violent offenses, {totals.row_type}: {totals.geography}  (source: CMPD Violent Crime Offenses)\n")
    click.echo(f"{'year':>6} {'months':>6} {'violent crime':>14} {'check: disjoint details':>24}")
    for row in totals.by_year.itertuples():
        flag = "" if row.violent_crime == row.detail_sum else "  <- differs from roll-up"
        click.echo(f"{row.year:>6} {row.months:>6} {row.violent_crime:>14,} {row.detail_sum:>24,}{flag}")
    click.echo(f"{'all':>6} {'':>6} {totals.by_year.violent_crime.sum():>14,} {totals.by_year.detail_sum.sum():>24,}\n")
    table = totals.by_category
    width = max(len(c) for c in table.index) + 2
    click.echo(" " * width + "".join(f"{c:>8}" for c in table.columns))
    for category, values in table.iterrows():
        mark = " *" if category in OVERLAPPING else ""
        click.echo(f"{category + mark:<{width}}" + "".join(f"{int(v):>8,}" for v in values))
    for name, why in OVERLAPPING.items():
        click.echo(f"\n* {name} is {why}; it is not added into the total.")
