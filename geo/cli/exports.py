"""`hotspots export` and `report`: files and pages to hand on."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from geo.cli.context import session


# --- exports ---------------------------------------------------------------------------------
@click.command("export")
@click.argument("layer")
@click.option("--format", "fmt", help="shp (the shapefile's files beside --out), zip (shapefile, zipped), gpkg, "
                                      "geojson or csv [default: from --out's extension].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option("--from", "--start", "start", help="First local date (YYYY-MM-DD) or RFC 3339 instant.")
@click.option("--to", "--end", "end", help="Last local date (inclusive) or instant.")
@click.option("--preset", help="7d, 28d, 365d or ytd, ending at the latest data (or --end).")
@click.option("--division", help="Division code or name.")
@click.option("--category", help="Taxonomy category (see `hotspots taxonomy`).")
@click.option("--violent", help="true or false: the model's label (calls) or the violent category (incidents).")
@click.option("--min-p", "min_p", help="Lowest model probability (calls).")
@click.option("--bbox", help="minlon,minlat,maxlon,maxlat in WGS84.")
@click.option("--origin", help="real or synthetic: only real CMPD records, or only generated ones.")
@click.option("--run", type=int, help="Analysis run of a hot spot layer [default: the latest].")
def export_cmd(layer: str, fmt: str | None, out: Path, run: int | None, **filters: str | None) -> None:
    """Write LAYER (calls, incidents, homicides, divisions, neighborhoods, hotspot_cells, hotspot_npas) to a file.

    The same rows, fields and formats as the server's /export/LAYER.EXT (docs/exports.md).
    """
    from geo.catalog import division_names, latest_call_date
    from geo.catalog import layer as catalog_layer
    from geo.export import export_format, write_export
    from geo.filters import ParameterError, parse_filter
    from geo.runs import NoSavedRun

    ext = (fmt or out.suffix.lstrip(".")).lower()
    # Long exports show progress on a terminal (never in a captured or piped log).
    progress = (lambda n: click.echo(f"  {n:,} rows", err=True)) if sys.stderr.isatty() else None
    try:
        table = catalog_layer(layer).filter_table or "calls"
        if ext != "shp":   # shp: the zipped shapefile's files, written unzipped beside --out
            export_format(ext)
        engine = session().engine
        flt = parse_filter({k: v for k, v in filters.items() if v is not None}, table=table,
                           divisions=division_names(engine), tz=session().locale.timezone,
                           as_of=lambda: latest_call_date(engine, session().locale.timezone))
        job = write_export(engine, layer, ext, flt, out, run, progress=progress)
    except ParameterError as exc:
        option = {"layer": "LAYER", "format": "--format (or --out's extension)", "start": "--from", "end": "--to"}.get(
            exc.parameter, "--" + exc.parameter.replace("_", "-"))
        raise click.BadParameter(exc.message, param_hint=option) from None
    except NoSavedRun as exc:
        raise click.ClickException(str(exc)) from None
    run_note = f" (analysis run {job.run})" if job.run is not None else ""
    click.echo(f"wrote {job.rows:,} {layer} rows{run_note} to {out}")


@click.command("report")
@click.option("--division", required=True, help="Division code or name, e.g. 01 or Central.")
@click.option("--from", "--start", "start", help="First day, YYYY-MM-DD.")
@click.option("--to", "--end", "end", help="Last day, YYYY-MM-DD, included.")
@click.option("--preset", type=click.Choice(["7d", "28d", "ytd", "365d"]),
              help="A window ending on the newest data (or on --end).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="HTML file to write.")
def report_cmd(division: str, start: str | None, end: str | None, preset: str | None, out: Path) -> None:
    """A standalone HTML map of one division (NPAs by violent calls, hot spots, summary table) for e-mail."""
    from geo.filters import ParameterError
    from geo.report import division_filter, write_report

    engine = session().engine
    try:
        report = write_report(engine, division_filter(engine, division, start, end, preset, tz=session().locale.timezone), out)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.parameter}") from exc
    hot = int(report.npas["hotspot_class"].str.startswith("Hot").sum())
    click.echo(f"{out}: {report.name}, {report.period[0]} to {report.period[1]}, {len(report.npas)} NPAs "
               f"({hot} hot spots), {report.totals['violent']:,} violent of {report.totals['calls']:,} calls")
