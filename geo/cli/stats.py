"""`hotspots stats`: reports from the loaded data."""

from __future__ import annotations

from datetime import date, timedelta

import click

from geo.cli import options as opt
from geo.cli.context import session


# --- statistics ------------------------------------------------------------------------------
@click.group()
def stats() -> None:
    """Reports from the loaded data."""


@stats.command("calls")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="division", show_default=True)
@click.option("--division", help="Only this division code.")
@opt.save
def stats_calls_cmd(start: str | None, end: str | None, by: str, division: str | None, save: bool) -> None:
    """Calls per area and category with each category's share, and the violent share (model labels)."""
    from geo.metrics import call_counts

    period = opt.parse_period(start, end)
    table = call_counts(session().engine, period, by, division=division)
    if save:
        opt.save_table("call_counts", {"period": [period.start, period.end], "by": by, "division": division}, table)
    if table.empty:
        click.echo("no calls in that period")
        return
    for area, rows in table.groupby("area", sort=True):
        first = rows.iloc[0]
        click.echo(f"{by} {area}: {int(first.total):,} calls, {int(first.area_labelled_violent):,} labelled violent "
                   f"({first.violent_share:.1%}), expected violent {first.area_expected_violent:,.1f}")
        for r in rows.sort_values("calls", ascending=False).itertuples():
            click.echo(f"    {r.category:24} {r.calls:>9,} {r.share:>7.1%}")


@stats.command("hours")
@opt.date_from
@opt.date_to
@click.option("--division", help="Only this division code.")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@click.option("--violent-only", is_flag=True, help="Only calls the model labelled violent.")
@click.option("--totals", is_flag=True, help="Print the counts instead of the mean per occurrence.")
@opt.save
def stats_hours_cmd(start: str | None, end: str | None, division: str | None, category: str | None, violent_only: bool,
                    totals: bool, save: bool) -> None:
    """Calls by weekday and hour of day (local time): the 7x24 matrix, as calls per occurrence of each weekday-hour."""
    from geo.metrics import hour_weekday

    period = opt.parse_period(start, end)
    matrix = hour_weekday(session().engine, period, division=division, category=category, violent_only=violent_only)
    if save:
        opt.save_table("hour_weekday", {"period": [period.start, period.end], "division": division, "category": category,
                                     "violent_only": violent_only}, matrix.to_frame())
    times = matrix.occurrences[12]
    click.echo(("calls" if totals else "mean calls per occurrence") + f" of each weekday-hour, {matrix.start:%Y-%m-%d}"
               f" to {matrix.end - timedelta(days=1):%Y-%m-%d}; weekdays occur "
               + ", ".join(f"{d} {int(n)}x" for d, n in times.items()))
    table = matrix.totals if totals else matrix.mean
    click.echo("     " + "".join(f"{h:>7}" for h in range(24)))
    for day, row in table.iterrows():
        click.echo(f"{day:5}" + "".join(f"{int(v):>7,}" if totals else ("    n/a" if v != v else f"{v:>7.2f}") for v in row))
    if matrix.left_out_date_only:
        click.echo(f"left out: {matrix.left_out_date_only:,} calls known only by their date (no time of day)")


@stats.command("compstat")
@click.option("--as-of", help="Report date, YYYY-MM-DD; the report week is the last Monday-Sunday before it "
                              "(default: today).")
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="city", show_default=True)
@click.option("--category", help="Only this category.")
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
@opt.save
def stats_compstat_cmd(as_of: str | None, by: str, category: str | None, source: str | None, violent_only: bool,
                       origin: str | None, compare: str, save: bool) -> None:
    """CompStat: the report week, 28 days and year to date against a year earlier, overdispersion-aware, FDR across areas."""
    from geo.filters import Filter
    from geo.metrics import Period, compstat, compstat_windows
    from geo.sources import default_source

    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--as-of") from None
    if violent_only and source not in (None, "labelled"):
        raise click.BadParameter(f"--violent-only means --source labelled, not {source}", param_hint="--violent-only")
    engine = session().engine
    if violent_only:
        source = "labelled"
    elif source is None:
        windows = [p for pair in compstat_windows(day, compare).values() for p in pair]
        source = default_source(engine, Period(min(p.start for p in windows), max(p.end for p in windows)), origin)
    flt = Filter(category=category, origin=origin)
    try:
        table = compstat(engine, day, by=by, flt=flt, compare=compare, source=None if source == "calls" else source)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"source: {table.attrs['source']}")
    if save:
        opt.save_table("compstat", {"as_of": day, "by": by, "category": category, "source": source, "origin": origin,
                                 "source_words": table.attrs["source"], "compare": compare}, table)
    if table.empty:
        click.echo("no calls in those windows")
        return
    for window, rows in table.groupby("window", sort=False):
        first = rows.iloc[0]
        click.echo(f"{window}: {first.current_period.replace('..', ' to ')} against "
                   f"{first.prior_period.replace('..', ' to ')}")
    click.echo(f"\n{'window':13} {'area':8} {'current':>9} {'prior':>9} {'change':>8} {'phi':>6} {'p':>7} {'q':>7}  note")
    for r in table.itertuples():
        if not r.data_covers_both:
            change = "  n/a"
        else:
            change = f"{r.pct_change:+.1f}%" if r.pct_change == r.pct_change else "  n/a"
        note = r.note or ("significant" if r.significant else "within noise")
        p_text, q_text, phi = (f"{v:.3f}" if v == v else "n/a" for v in (r.p_value, r.q_value, r.dispersion))
        click.echo(f"{r.window:13} {str(r.area):8} {r.current:>9,} {r.prior:>9,} {change:>8} {phi:>6} {p_text:>7} "
                   f"{q_text:>7}  {note}")
    click.echo("\nphi: the area's dispersion (variance / Poisson variance) from its own earlier pairs of that window;"
               " q: Benjamini-Hochberg across the areas of a window; significant: q < 0.05 (docs/methods.md).")


@stats.command("monthly")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="city", show_default=True)
@click.option("--category", help="Only this category.")
@opt.save
def stats_monthly_cmd(start: str | None, end: str | None, by: str, category: str | None, save: bool) -> None:
    """Monthly trend: calls, labelled-violent and expected-violent calls per month and area."""
    from geo.metrics import monthly_trend

    period = opt.parse_period(start, end)
    table = monthly_trend(session().engine, period, by, category=category)
    if save:
        opt.save_table("monthly_trend", {"period": [period.start, period.end], "by": by, "category": category}, table)
    click.echo(f"{by:10}{'month':>9}{'calls':>10}{'violent':>9}{'expected':>10}")
    for r in table.itertuples():
        click.echo(f"{str(r.area):10}{r.month:>9}{r.calls:>10,}{r.labelled_violent:>9,}{r.expected_violent:>10,.1f}")


@stats.command("indicators")
@opt.date_from
@opt.date_to
@click.option("--permutations", default=999, show_default=True, help="Permutations of whole NPA series.")
@click.option("--seed", default=0, show_default=True, help="Seed of the permutations (same seed, same p-values).")
@opt.save
def stats_indicators_cmd(start: str | None, end: str | None, permutations: int, seed: int, save: bool) -> None:
    """Call categories that go with more violent incidents the next month, within NPAs (association, not cause)."""
    from geo.metrics import leading_indicators

    period = opt.parse_period(start, end)
    table = leading_indicators(session().engine, period, permutations=permutations, seed=seed)
    info = table.attrs
    if save:
        opt.save_table("leading_indicators", {"period": [period.start, period.end], "permutations": permutations,
                                           "seed": seed}, table)
    months = info["months"]
    click.echo(f"complete months: {months[0]} to {months[-1]} ({len(months)})" if months else "no complete months")
    for note in info["left_out_months"]:
        click.echo(f"left out {note}")
    dated = info["violent_dated"]
    click.echo(f"violent incidents dated by occurrence: {dated['occurrence']:,}; by report date (no occurrence date):"
               f" {dated['report']:,}")
    if table.empty:
        click.echo("not enough data: at least 4 complete months, 3 NPAs and 200 calls of a category")
        return
    click.echo(f"\n{'category':26}{'beta':>8}{'partial r':>11}{'t':>8}{'p':>9}{'q (FDR)':>9}{'calls':>10}")
    for r in table.itertuples():
        flag = "  <- associated" if r.significant else ""
        click.echo(f"{r.category:26}{r.beta:>8.3f}{r.partial_r:>11.3f}{r.t:>8.2f}{r.p_value:>9.4f}{r.q_value:>9.4f}"
                   f"{r.calls:>10,}{flag}")
    click.echo("\nPer category: next month's violent incidents on this month's calls, each relative to the NPA's own"
               " monthly mean, with NPA and month fixed effects and last month's violence as a control; p from"
               f" {permutations} permutations of whole NPA series. An association says where to look; it does not"
               " show that the calls cause anything, nor that fewer of them would mean less violence.")


@stats.command("outreach")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["division", "npa"]), default="npa", show_default=True)
@opt.save
def stats_outreach_cmd(start: str | None, end: str | None, by: str, save: bool) -> None:
    """Areas where mental health, welfare, domestic or disorder calls dominate: candidates for non-police responses."""
    from geo.metrics import outreach_flags

    period = opt.parse_period(start, end)
    table = outreach_flags(session().engine, period, by)
    if save:
        opt.save_table("outreach_flags", {"period": [period.start, period.end], "by": by}, table)
    if table.empty:
        click.echo("no area stands out")
        return
    click.echo(f"{by:10}{'category':24}{'calls':>8}{'of all':>9}{'share':>8}{'city':>8}{'x city':>8}")
    for r in table.itertuples():
        click.echo(f"{str(r.area):10}{r.category:24}{r.calls:>8,}{r.total:>9,}{r.share:>8.1%}{r.city_share:>8.1%}{r.ratio_to_city:>8.2f}")


@stats.command("offenses")
@click.option("--area", default="CMPD", show_default=True, help="CMPD, an NPA number, or a CMPD hotspot area name.")
@click.option("--years", help="Year range, e.g. 2019-2021 or 2020.")
def stats_offenses_cmd(area: str, years: str | None) -> None:
    """Violent offenses by year and category from CMPD's published counts.

    Yearly totals are CMPD's own 'Violent Crime' roll-up rows; the category table shows every
    detail row, and 'Non-Fatal Gunshot Injury' is a subset of the aggravated assaults, so the
    categories do not add up to the total (the check column sums the disjoint ones).
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
