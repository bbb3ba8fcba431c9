"""Options and argument parsing shared by several command groups."""

from __future__ import annotations

from datetime import date, timedelta

import click

from geo.cli.context import session

force = click.option("--force", is_flag=True, help="Re-read a file even if this exact file was loaded before.")
save = click.option("--save", is_flag=True, help="Also store the result as an analysis run (for the map and exports).")
date_from = click.option("--from", "start", help="First day, YYYY-MM-DD (default: 1 January this year).")
date_to = click.option("--to", "end", help="Last day, YYYY-MM-DD, included (default: today).")

compute_engine = click.option(
    "--engine", "compute", type=click.Choice(["local", "dask"]), default="local", show_default=True,
    help="Where the heavy work runs: this process, or Dask workers reading partitions of the calls themselves.")
scheduler = click.option(
    "--scheduler", metavar="ADDRESS",
    help="Dask scheduler address (e.g. tcp://10.0.0.5:8786); implies --engine dask. Without it, --engine dask "
         "starts a local cluster of --workers processes.")
dask_workers = click.option("--workers", "dask_workers", default=2, show_default=True,
                            help="--engine dask without --scheduler: local worker processes.")


def parse_period(start: str | None, end: str | None):
    """--from/--to as a metrics.Period (end exclusive); defaults 1 January this year to today."""
    from geo.metrics import Period

    try:
        first = date.fromisoformat(start) if start else date(date.today().year, 1, 1)
        last = date.fromisoformat(end) if end else date.today()
    except ValueError:
        raise click.BadParameter("dates are YYYY-MM-DD", param_hint="--from/--to") from None
    if last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
    return Period(first, last + timedelta(days=1))


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
    """Store a statistics table as an analysis run and say its id."""
    from geo.classify import current_model_version
    from geo.metrics import save_table as store

    engine = session().engine
    run_id = store(engine, kind, params, table, current_model_version(engine))
    click.echo(f"saved as analysis run {run_id}")
