"""`hotspots allocate`: officers per division and shift."""

from __future__ import annotations

from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session
from geo.cli.table import Column, format_option, note, plural, print_table


def _period_with_calls(start: str | None, end: str | None, fmt: str = "table"):
    """--from/--to, by default the newest 28 days of the stored calls (four of each weekday-hour);
    a period without calls stops here: a plan from zero calls would look as confident as any other."""
    from geo.periods import count_rows

    period = opt.analysis_period(start, end, "28d", fmt=fmt)
    if not count_rows(session().engine, period):
        opt.refuse_empty("calls", period)
    return period


@click.command("allocate")
@click.option("--officers", type=int,
              help="Officers to place (default: report the officers the targets need). With the plan, units go one "
                   "at a time where the worst expected wait drops most.")
@opt.date_from
@opt.date_to
@click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path),
              help="Weights file (default: geo/allocation.toml, which documents every weight).")
@click.option("--shifts", help="Override the config's shifts, e.g. day=6-14,evening=14-22,night=22-6 (local hours).")
@click.option("--targets", help="Override the plan's targets, e.g. p_wait=0.1,p1_wait_min=2,utilisation=0.6.")
@click.option("--method", type=click.Choice(["plan", "proportional"]), default="plan", show_default=True,
              help="plan: queueing (Erlang C, P1 priority wait, rule of 60) and relief factor; proportional: the "
                   "earlier split of --officers by workload with minimums.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the plan, one row per division and shift, as .csv or .json.")
@click.option("--source", type=click.Choice(["expected", "labelled"]), default="expected", show_default=True,
              help="--method proportional: the violent (two-officer) part of the calls: expected violent calls (sum "
                   "of probabilities) or calls the model labelled violent; calls about one incident counted once.")
@format_option
@opt.save
def allocate_cmd(officers: int | None, start: str | None, end: str | None, config_path: Path | None,
                 shifts: str | None, targets: str | None, method: str, out_path: Path | None, source: str,
                 fmt: str, save: bool) -> None:
    """Officers per division and shift: units the queueing targets need (or N placed by marginal allocation),
    with the skills, vehicles and gear the call mix needs."""
    if method == "proportional":
        if officers is None:
            raise click.BadParameter("the proportional method needs --officers", param_hint="--officers")
        if targets or out_path:
            raise click.BadParameter("--targets and --out belong to --method plan", param_hint="--method")
        return _allocate_proportional(officers, start, end, config_path, shifts, source, save, fmt)
    from geo.cli.staffing import staffing_configs
    from geo.staffing import build_plan

    if out_path and out_path.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter(f"{out_path} must end in .csv or .json", param_hint="--out")
    config, _ = staffing_configs(config_path, shifts, targets)
    try:
        table = build_plan(session().engine, _period_with_calls(start, end, fmt), config, officers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers" if "--officers" in str(exc) else "--config") from exc
    if out_path:
        if out_path.suffix.lower() == ".csv":
            table.to_csv(out_path, index=False, float_format="%.4f")
        else:
            out_path.write_text(table.to_json(orient="records", indent=1, double_precision=6))
    if save:
        opt.save_table("allocation_plan", {"officers": officers, "from": start, "to": end, "targets": vars(config.targets),
                                        "config": str(config_path or "geo/allocation.toml")}, table)
    from geo.catalog import division_labels

    table = table.assign(name=table["division"].astype(str).map(division_labels(session().engine)).fillna(""))
    t = config.targets
    note(f"targets: P(wait) <= {t.p_wait:g}, Priority 1 mean wait <= {t.p1_wait_min:g} min, utilisation <= "
               f"{t.utilisation:.0%}; relief factor {config.relief.factor:.3f}; service times: "
               + ", ".join(sorted(set(table["service_times"]))) + " service times", fmt)
    print_table(table, [Column("division", width=8, align="<"), Column("name", width=14, align="<"),
                        Column("shift", width=8, align="<"), Column("calls_per_hour", "calls/h", width=7, spec=".2f"),
                        Column("mean_service_min", "svc min", width=7, spec=".1f"), Column("units", width=5),
                        Column("units_needed", "needed", width=6), Column("p_wait", "P(wait)", width=7, spec=".3f"),
                        Column("mean_wait_min", "wait", width=6, spec=".2f"),
                        Column("p1_mean_wait_min", "P1 wait", width=7, spec=".2f"),
                        Column("utilisation", "util", width=5, spec=".0%"), Column("officers", width=8),
                        Column("warnings", width=0, align="<")], fmt)
    placed = int(table["officers"].sum())
    note(f"total officers: {placed}" + (f" of {officers} given" if officers is not None else
                                        f" needed ({int(table['units'].sum())} unit-posts)"), fmt)
    if table.attrs.get("left_out_date_only"):
        note(f"{plural(table.attrs['left_out_date_only'], 'call')} known only by their date (no hour) were left out.",
             fmt)
    if officers is not None and placed < officers:
        note(f"{officers - placed} officer(s) not placed: the next unit would need more than are left.", fmt)
    if fmt == "table":
        click.echo("")
        for r in table.itertuples():
            click.echo(f"{r.division} {r.shift}: {r.needs_reasoning}")
    if out_path:
        note(f"wrote {len(table)} rows to {out_path}", fmt)


def _allocate_proportional(officers: int, start: str | None, end: str | None, config_path: Path | None,
                           shifts: str | None, source: str, save: bool, fmt: str) -> None:
    """The earlier split of N officers by workload with minimums (--method proportional)."""
    from geo.allocate import AllocationConfig, allocate, parse_shifts

    config = AllocationConfig.load(config_path) if config_path else AllocationConfig.load()
    if shifts:
        try:
            config.shifts = parse_shifts(shifts)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--shifts") from exc
    try:
        table, reasons = allocate(session().engine, officers, _period_with_calls(start, end, fmt), config, source)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers") from exc
    words = table.attrs["source"]
    if save:
        table = table.assign(reasoning=table["division_id"].map(reasons))
        opt.save_table("allocation", {"officers": officers, "from": start, "to": end, "source": source,
                                   "source_words": words, "config": str(config_path or "geo/allocation.toml")}, table)
    if fmt != "table":
        print_table(table.assign(reasoning=table["division_id"].map(reasons)),
                    [Column(k) for k in ("division_id", "short_name", "shift", "officers", "reasoning")], fmt)
        note(f"source of the violent (two-officer) calls: {words}", fmt)
        return
    pivot = table.pivot_table(index=["division_id", "short_name"], columns="shift", values="officers", aggfunc="sum")
    pivot = pivot[list(config.shifts)]
    pivot["total"] = pivot.sum(axis=1)
    click.echo(f"{'division':24}" + "".join(f"{s:>9}" for s in pivot.columns))
    for (code, name), row in pivot.iterrows():
        click.echo(f"{code} {name:21}" + "".join(f"{int(v):>9}" for v in row))
    click.echo(f"{'total':24}" + "".join(f"{int(v):>9}" for v in pivot.sum()))
    click.echo("")
    for code, text in sorted(reasons.items()):
        click.echo(f"{code}: {text}")
    click.echo(f"\nsource of the violent (two-officer) calls: {words}")
