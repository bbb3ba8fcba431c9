"""`hotspots runs list|export`: the saved analysis runs (geo/runs.py)."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

import click

from geo.cli.context import session
from geo.cli.table import Column, format_option, note, print_table

# What `runs list` prints per run; csv and json carry the same keys with raw values.
_LIST_COLUMNS = [
    Column("run_id", "run", width=6),
    Column("kind", width=23, align="<"),
    Column("source", width=9, align="<", show=lambda v: v or "-"),
    Column("period", width=25, align="<", show=lambda v: v or "-"),
    Column("created_at", "created (UTC)", width=17, align="<", show=lambda v: f"{v:%Y-%m-%d %H:%M}"),
    Column("rows", width=8, spec=","),
]


@click.group("runs")
def runs_group() -> None:
    """Saved analysis runs (hot spots, tables, accuracy): list them, write one to a file."""


@runs_group.command("list")
@click.option("--kind", help="Only runs of this kind, e.g. calls_npa_hotspots or compstat.")
@format_option
def runs_list_cmd(kind: str | None, fmt: str) -> None:
    """Every saved analysis run, newest first: id, kind, source, period, when it was created and its rows."""
    from geo.filters import ParameterError
    from geo.runs import list_runs

    try:
        with session().engine.connect() as conn:
            saved = list_runs(conn, kind)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint="--kind") from None
    if not saved:
        note("no analysis runs saved yet (add --save to `hotspots hotspots`, `stats`, `compstat`, ...)", fmt)
        if fmt == "table":
            return
    rows = [{"run_id": r.run_id, "kind": str(r.kind), "source": r.source, "period": r.period,
             "created_at": r.created_at.astimezone(timezone.utc), "rows": r.rows} for r in saved]
    print_table(rows, _LIST_COLUMNS, fmt)


@runs_group.command("export")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write; its extension picks the format (hot spots: zip, gpkg, geojson, csv, shp; tables: "
                   "csv, json).")
@click.option("--format", "fmt", help="Format when --out has no telling extension.")
def runs_export_cmd(run_id: int, out: Path, fmt: str | None) -> None:
    """Write saved analysis run RUN to a file: hot spots as their map layer, tables as rows."""
    from geo.export import write_run
    from geo.filters import ParameterError
    from geo.runs import NoSavedRun

    ext = (fmt or out.suffix.lstrip(".")).lower()
    try:
        written = write_run(session().engine, run_id, ext, out)
    except ParameterError as exc:
        hint = "--format (or --out's extension)" if exc.parameter == "format" else "RUN"
        raise click.BadParameter(exc.message, param_hint=hint) from None
    except NoSavedRun as exc:
        raise click.BadParameter(str(exc), param_hint="RUN") from None
    shape = f"as {written.layer}" if written.layer else "as a table"
    click.echo(f"wrote {written.rows:,} rows of analysis run {run_id} ({written.run.kind}) {shape} to {out}")
