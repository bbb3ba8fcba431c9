"""`hotspots allocate`: officers per division and shift."""

from __future__ import annotations

from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session


def _period_with_calls(start: str | None, end: str | None):
    """--from/--to, by default the newest 28 days of the stored calls (four of each weekday-hour);
    a period without calls stops here: a plan from zero calls would look as confident as any other."""
    from datetime import timedelta

    from geo.periods import count_rows

    period = opt.analysis_period(start, end, "28d")
    ctx = session()
    if not count_rows(ctx.engine, "calls", period.start, period.end - timedelta(days=1), ctx.locale.timezone):
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
@opt.save
def allocate_cmd(officers: int | None, start: str | None, end: str | None, config_path: Path | None,
                 shifts: str | None, targets: str | None, method: str, out_path: Path | None, source: str,
                 save: bool) -> None:
    """Officers per division and shift: units the queueing targets need (or N placed by marginal allocation),
    with the skills, vehicles and gear the call mix needs."""
    from geo.allocate import parse_shifts

    if method == "proportional":
        if officers is None:
            raise click.BadParameter("the proportional method needs --officers", param_hint="--officers")
        if targets or out_path:
            raise click.BadParameter("--targets and --out belong to --method plan", param_hint="--method")
        return _allocate_proportional(officers, start, end, config_path, shifts, source, save)
    from geo.staffing import StaffingConfig, build_plan, parse_targets

    if out_path and out_path.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter(f"{out_path} must end in .csv or .json", param_hint="--out")
    try:
        config = StaffingConfig.load(config_path) if config_path else StaffingConfig.load()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    for text, hint, apply in ((shifts, "--shifts", lambda t: setattr(config, "shifts", parse_shifts(t))),
                              (targets, "--targets", lambda t: setattr(config, "targets", parse_targets(t, config.targets)))):
        if text:
            try:
                apply(text)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=hint) from exc
    try:
        table = build_plan(session().engine, _period_with_calls(start, end), config, officers)
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
    t = config.targets
    click.echo(f"targets: P(wait) <= {t.p_wait:g}, Priority 1 mean wait <= {t.p1_wait_min:g} min, utilisation <= "
               f"{t.utilisation:.0%}; relief factor {config.relief.factor:.3f}; service times: "
               + ", ".join(sorted(set(table["service_times"]))) + " service times")
    click.echo(f"{'division':9}{'shift':9}{'calls/h':>8}{'svc min':>8}{'units':>6}{'needed':>7}{'P(wait)':>8}"
               f"{'wait':>7}{'P1 wait':>8}{'util':>6}{'officers':>9}  warnings")
    for r in table.itertuples():
        click.echo(f"{r.division:9}{r.shift:9}{r.calls_per_hour:>8.2f}{r.mean_service_min:>8.1f}{r.units:>6}"
                   f"{r.units_needed:>7}{r.p_wait:>8.3f}{r.mean_wait_min:>7.2f}{r.p1_mean_wait_min:>8.2f}"
                   f"{r.utilisation:>6.0%}{r.officers:>9}  {r.warnings}")
    placed = int(table["officers"].sum())
    click.echo(f"total officers: {placed}" + (f" of {officers} given" if officers is not None else
                                              f" needed ({int(table['units'].sum())} unit-posts)"))
    if table.attrs.get("left_out_date_only"):
        click.echo(f"{table.attrs['left_out_date_only']:,} calls known only by their date (no hour) were left out.")
    if officers is not None and placed < officers:
        click.echo(f"{officers - placed} officer(s) not placed: the next unit would need more than are left.")
    click.echo("")
    for r in table.itertuples():
        click.echo(f"{r.division} {r.shift}: {r.needs_reasoning}")
    if out_path:
        click.echo(f"wrote {len(table)} rows to {out_path}")


def _allocate_proportional(officers: int, start: str | None, end: str | None, config_path: Path | None,
                           shifts: str | None, source: str, save: bool) -> None:
    """The earlier split of N officers by workload with minimums (--method proportional)."""
    from geo.allocate import AllocationConfig, allocate, parse_shifts

    config = AllocationConfig.load(config_path) if config_path else AllocationConfig.load()
    if shifts:
        try:
            config.shifts = parse_shifts(shifts)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--shifts") from exc
    try:
        table, reasons = allocate(session().engine, officers, _period_with_calls(start, end), config, source)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers") from exc
    words = table.attrs["source"]
    if save:
        table = table.assign(reasoning=table["division_id"].map(reasons))
        opt.save_table("allocation", {"officers": officers, "from": start, "to": end, "source": source,
                                   "source_words": words, "config": str(config_path or "geo/allocation.toml")}, table)
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
