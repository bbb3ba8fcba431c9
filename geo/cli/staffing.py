"""`hotspots simulate` and `hotspots whatif`: the staffing plans proven by simulation, and what moving officers changes."""

from __future__ import annotations

from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import session


def staffing_configs(config_path: Path | None, shifts: str | None, targets: str | None):
    """The plan's and the simulation's configuration with the --shifts/--targets overrides, refused with the reason."""
    from geo.allocate import parse_shifts
    from geo.simulate import SimulationConfig
    from geo.staffing import StaffingConfig, parse_targets

    try:
        config = StaffingConfig.load(config_path) if config_path else StaffingConfig.load()
        sim = SimulationConfig.load(config_path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    for text, hint, apply in ((shifts, "--shifts", lambda t: setattr(config, "shifts", parse_shifts(t))),
                              (targets, "--targets", lambda t: setattr(config, "targets", parse_targets(t, config.targets)))):
        if text:
            try:
                apply(text)
                config.check()
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=hint) from exc
    return config, sim


def write_frame(table, out_path: Path) -> None:
    if out_path.suffix.lower() == ".csv":
        table.to_csv(out_path, index=False, float_format="%.4f")
    else:
        out_path.write_text(table.to_json(orient="records", indent=1, double_precision=6))


_staff_config = click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path),
                             help="Weights file (default: geo/allocation.toml; [simulation] holds the assumed times).")
_staff_shifts = click.option("--shifts", help="Override the config's shifts, e.g. day=6-14,evening=14-22,night=22-6.")
_staff_targets = click.option("--targets", help="Override the targets, e.g. p_wait=0.1,p1_wait_min=2,utilisation=0.6.")


@click.command("simulate")
@click.option("--officers", type=int, help="Officers for both plans (default: what the queueing targets need).")
@opt.date_from
@opt.date_to
@_staff_config
@_staff_shifts
@_staff_targets
@click.option("--no-help", is_flag=True, help="No cross-division help (each division answers its own calls).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write both plans' simulated figures per division and shift as .csv or .json.")
def simulate_cmd(officers: int | None, start: str | None, end: str | None, config_path: Path | None,
                 shifts: str | None, targets: str | None, no_help: bool, out_path: Path | None) -> None:
    """Simulate the period's calls against the queueing plan and today's proportional plan with the same officers."""
    import pandas as pd

    from geo.simulate import simulate_plans

    if out_path and out_path.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter(f"{out_path} must end in .csv or .json", param_hint="--out")
    config, sim = staffing_configs(config_path, shifts, targets)
    try:
        result = simulate_plans(session().engine, opt.analysis_period(start, end, "12 months"), config, sim, officers, help_neighbours=not no_help)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers" if "--officers" in str(exc) else "--config") from exc
    t = config.targets
    click.echo(f"{result.sources['calls']} calls simulated; targets per division-shift: share waiting <= {t.p_wait:g}, "
               f"Priority 1 mean wait <= {t.p1_wait_min:g} min, utilisation <= {t.utilisation:.0%}")
    for name in ("service", "travel", "units", "priority", "help", "plan service times"):
        click.echo(f"  {name}: {result.sources[name]}")
    summary = result.summary()
    click.echo(f"\n{'':34}{'queueing':>12}{'proportional':>14}{'difference':>12}")
    for measure, row in summary.iterrows():
        cells = [row["queueing"], row["proportional"], row["difference"]]
        fmt = "{:>12.0%}{:>14.0%}{:>+12.0%}" if measure in ("share_waiting", "utilisation", "max_utilisation") else \
            "{:>12,.0f}{:>14,.0f}{:>+12,.0f}" if float(row["queueing"]).is_integer() and "min" not in measure else \
            "{:>12.2f}{:>14.2f}{:>+12.2f}"
        click.echo(f"{measure:34}" + fmt.format(*cells))
    q, p = summary["queueing"], summary["proportional"]
    click.echo(f"\nThe queueing plan meets every target in {int(q['division_shifts_meeting_targets'])} of "
               f"{int(q['division_shifts'])} division-shifts, the proportional plan in "
               f"{int(p['division_shifts_meeting_targets'])}; Priority 1 response p90 "
               f"{q['p1_response_p90_min']:.1f} vs {p['p1_response_p90_min']:.1f} min; calls finding no unit free "
               f"{int(q['no_unit']):,} vs {int(p['no_unit']):,}.")
    missed = result.simulated["queueing"][~result.simulated["queueing"]["meets_targets"]]
    for r in missed.itertuples():
        click.echo(f"warning: queueing plan misses a target in simulation at {r.division} {r.shift}: share waiting "
                   f"{r.share_waiting:.0%}, P1 mean wait {r.p1_mean_wait_min:.1f} min, utilisation {r.utilisation:.0%}")
    if out_path:
        table = pd.concat([frame.assign(plan=name) for name, frame in result.simulated.items()], ignore_index=True)
        write_frame(table, out_path)
        click.echo(f"wrote {len(table)} rows to {out_path}")


@click.command("whatif")
@click.option("--move", "move_text", default="",
              help="Officers to move, OFFICERS:DIVISION/SHIFT->DIVISION/SHIFT (several separated by ';'), "
                   "e.g. '4:01/night->05/night'; they move as whole unit-posts.")
@click.option("--officers", type=int, help="Officers placed by marginal allocation (default: what the targets need).")
@opt.date_from
@opt.date_to
@_staff_config
@click.option("--targets", help="Changed targets for the after plan, e.g. p1_wait_min=2,p_wait=0.1.")
@click.option("--no-simulate", is_flag=True, help="Only the queueing formulas (no simulation of the calls).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (the body of /api/staffing/whatif).")
def whatif_cmd(move_text: str, officers: int | None, start: str | None, end: str | None, config_path: Path | None,
               targets: str | None, no_simulate: bool, as_json: bool) -> None:
    """Move officers between divisions or shifts, or change a target: expected delay and simulated response
    before and after."""
    import json

    from geo.whatif import parse_moves, whatif_from_db

    config, sim = staffing_configs(config_path, None, None)
    try:
        moves = parse_moves(move_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--move") from exc
    try:
        result = whatif_from_db(session().engine, opt.analysis_period(start, end, "28d"), config, officers, moves, targets, not no_simulate, sim)
    except ValueError as exc:
        text = str(exc)
        hint = "--officers" if "--officers" in text else "--move" if text.startswith("move") else "--targets"
        raise click.BadParameter(text, param_hint=hint) from exc
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    for note in result.notes:
        click.echo(note)
    s = result.summary
    click.echo(f"\n{'':34}{'before':>10}{'after':>10}")
    rows = [("officers", "officers"), ("unit-posts", "units"), ("P(wait), call-weighted", "p_wait"),
            ("mean wait, min (queueing)", "mean_wait_min"), ("P1 mean wait, min (queueing)", "p1_mean_wait_min")]
    if "sim_p1_response_median_min_before" in s:
        rows += [("P1 response median, min (sim)", "sim_p1_response_median_min"),
                 ("P1 response p90, min (sim)", "sim_p1_response_p90_min"),
                 ("P1 mean wait, min (sim)", "sim_p1_mean_wait_min"), ("share waiting (sim)", "sim_share_waiting"),
                 ("no unit free (sim)", "sim_no_unit"), ("utilisation (sim)", "sim_utilisation")]
    for label, key in rows:
        before, after = s[f"{key}_before"], s[f"{key}_after"]
        click.echo(f"{label:34}{before:>10.3f}{after:>10.3f}" if isinstance(before, float) else
                   f"{label:34}{before:>10}{after:>10}")
    changed = result.table[(result.table["units_before"] != result.table["units_after"])]
    if len(changed):
        click.echo(f"\n{'division':9}{'shift':9}{'units':>11}{'wait min':>16}{'P1 wait min':>16}{'util':>12}")
    for r in changed.itertuples():
        click.echo(f"{r.division:9}{r.shift:9}{r.units_before:>5} ->{r.units_after:>3}"
                   f"{r.mean_wait_min_before:>8.2f} ->{r.mean_wait_min_after:>6.2f}"
                   f"{r.p1_mean_wait_min_before:>8.2f} ->{r.p1_mean_wait_min_after:>6.2f}"
                   f"{r.utilisation_before:>5.0%} ->{r.utilisation_after:>5.0%}  {r.warnings_after}")
