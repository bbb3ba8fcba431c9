"""`hotspots stats response | workload | clearance`: the standard police metrics of geo/police.py."""

from __future__ import annotations

from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session
from geo.cli.table import Column, format_option, note, print_table

out_option = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                          help="Write the rows as CSV to this file instead of printing them.")


def _filter(start: str | None, end: str | None, division: str | None, category: str | None, violent_only: bool,
            fmt: str):
    """--from/--to (default: the newest complete month of calls) with the checked --division/--category."""
    division, category = opt.call_filters(division, category)
    return opt.analysis_period(start, end, "month", fmt=fmt, division=division, category=category,
                               violent=True if violent_only else None)


def _columns(table) -> list[Column]:
    """Every column of a metrics frame: minutes with two decimals, counts with thousands separators."""
    def column(name: str) -> Column:
        kind = table[name].dtype.kind
        spec = ",.2f" if kind == "f" else "," if kind in "iu" else ""
        return Column(name, width=max(len(name), 8), spec=spec, align="<" if kind == "O" else ">")
    return [column(c) for c in table.columns]


def _rows(table, fmt: str, out: Path | None, notes: list[str]) -> None:
    """A metrics frame through the one printer (or as CSV to --out), the explaining notes after it."""
    if out is not None:
        table.to_csv(out, index=False)
        click.echo(f"wrote {len(table):,} rows to {out}")
    elif len(table):
        print_table(table, _columns(table), fmt)
    else:
        note("no calls", fmt)
    if fmt == "table" or out is not None:   # csv and json on stdout stay bare rows
        for line in notes:
            click.echo(line)


def _groups(by: str) -> list[str]:
    from geo.police import RESPONSE_GROUPS

    groups = [g.strip() for g in by.split(",") if g.strip()]
    bad = [g for g in groups if g not in RESPONSE_GROUPS]
    if bad:
        raise click.BadParameter(f"cannot group by {bad[0]!r}; one of {', '.join(RESPONSE_GROUPS)}", param_hint="--by")
    return groups


def _left_out_note(table) -> str:
    parts = {r: int(table[f"left_out_{r}"].sum()) for r in ("missing", "imprecise", "out_of_order")}
    total = sum(parts.values())
    return (f"left out: {total:,} calls ({parts['missing']:,} without the times, {parts['imprecise']:,} with a time "
            f"known only by its date, {parts['out_of_order']:,} with CAD times out of order)")


@click.command("response")
@opt.date_from
@opt.date_to
@click.option("--by", default="priority", show_default=True,
              help="Comma-separated groups: city, division, npa, priority, hour, weekday, day, month, category.")
@click.option("--interval", type=click.Choice(["all", "response", "dispatch", "travel", "on_scene"]), default="all",
              show_default=True, help="all: response (received to on scene) and its parts, dispatch delay and travel.")
@click.option("--division", help="Only this division (code or name).")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@click.option("--violent-only", is_flag=True, help="Only calls the model labelled violent.")
@format_option
@out_option
@click.option("--save", is_flag=True, help="Also store the rows as an analysis run: with division in --by, the OGC "
              "collection response_times draws them on the division polygons.")
def stats_response_cmd(start: str | None, end: str | None, by: str, interval: str, division: str | None,
                       category: str | None, violent_only: bool, fmt: str, out: Path | None, save: bool) -> None:
    """Response time (received to on scene), dispatch delay and travel: median, 90th percentile, mean and n, in minutes."""
    from geo.police import interval_stats, response_times

    groups = _groups(by)
    flt = _filter(start, end, division, category, violent_only, fmt)
    engine = session().engine
    table = (response_times(engine, flt, groups) if interval == "all"
             else interval_stats(engine, flt, interval, groups).assign(interval=interval))
    if interval != "all":
        table = table[["interval", *[c for c in table.columns if c != "interval"]]]
    first = table[table["interval"] == table["interval"].iloc[0]] if len(table) else table
    _rows(table, fmt, out, [_left_out_note(first)] if len(first) else [])
    if save:
        opt.save_table("response_times", {"period": opt.period_param(flt), "by": ",".join(groups),
                                          "interval": interval, "division": flt.division, "category": flt.category,
                                          "violent_only": violent_only}, table)


@click.command("workload")
@opt.date_from
@opt.date_to
@click.option("--by", default="category", show_default=True,
              help="Comma-separated groups for time on scene and unit-hours: city, division, priority, hour, category, ...")
@click.option("--officers", type=int, help="Officers to place by the queueing plan (default: the officers the plan needs).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Staffing configuration (default geo/allocation.toml).")
@click.option("--division", help="Only this division (code or name).")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@format_option
@out_option
def stats_workload_cmd(start: str | None, end: str | None, by: str, officers: int | None, config_path: Path | None,
                       division: str | None, category: str | None, fmt: str, out: Path | None) -> None:
    """Time on scene and unit-hours by group; then, per division, calls and unit-hours per officer and the
    obligated share of on-duty time (CPSM's rule of 60), officers and on-duty hours from the queueing plan."""
    from geo.cli.staffing import staffing_configs
    from geo.police import plan_roster, unit_hours, workload_per_officer
    from geo.staffing import build_plan

    groups = _groups(by)
    config, _ = staffing_configs(config_path, None, None)
    flt = _filter(start, end, division, category, False, fmt)
    engine = session().engine
    kw = {"units_default": config.units_default, "units_violent": config.units_violent}
    work = unit_hours(engine, flt, groups, **kw)
    _rows(work, fmt, out, [_left_out_note(work)] if len(work) else [])
    if out is not None or fmt != "table":
        return
    try:
        plan = build_plan(engine, flt, config, officers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers") from exc
    source = (f"the queueing plan placing --officers {officers}" if officers is not None
              else "the officers the queueing plan needs (targets in the staffing configuration)")
    per = workload_per_officer(engine, flt, plan_roster(plan, config, flt.days, source), **kw)
    click.echo(f"\nper division; officers and on-duty unit-hours from {source}:")
    _rows(per, "table", None, ["obligated_share above 0.60 breaks CPSM's rule of 60 (proactive time below 40%)"])


@click.command("clearance")
@opt.date_from
@opt.date_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="division", show_default=True)
@format_option
@out_option
def stats_clearance_cmd(start: str | None, end: str | None, by: str, fmt: str, out: Path | None) -> None:
    """Clearance rate as the FBI defines it (cleared by arrest or exceptionally, over crimes reported) per area."""
    from geo.police import clearance

    flt = opt.analysis_period(start, end, "12 months", tables=("incidents",), fmt=fmt)
    _rows(clearance(session().engine, flt, by), fmt, out,
          ["cleared = by arrest (any agency) or exceptionally; Unfounded reports are not crimes (docs/methods.md)"])


# Subcommands of `hotspots stats` (registered in geo/cli/__init__.py).
STATS_COMMANDS: list[click.Command] = [stats_response_cmd, stats_workload_cmd, stats_clearance_cmd]
