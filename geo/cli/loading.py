"""`hotspots load`, `rejects` and `sync`: getting rows in, and seeing the ones that were refused."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from geo.cli import options as opt
from geo.cli.context import DATABASE_DOWN, database_failure, run_load, session
from geo.cli.table import Column, format_option, print_table
from geo.ingest.batch import IngestError
from geo.schedule import run_every


# --- loading ---------------------------------------------------------------------------------
@click.group()
def load() -> None:
    """Load data into PostGIS. Every row is loaded or kept in ingest_rejects with its reason;
    each file loads in one transaction, and loading the same file again changes nothing."""


@load.command("reference")
@opt.force
def load_reference_cmd(force: bool) -> None:
    """Divisions, NPAs (with population) and violent offense counts from HOTSPOTS_DATA_DIR."""
    from geo.ingest.reference import DataDir, load_reference

    run_load(load_reference, session().engine, DataDir(session().data.data_dir), force=force)


@load.command("shapes")
@opt.force
def load_shapes_cmd(force: bool) -> None:
    """Division and NPA polygons (with population) from HOTSPOTS_DATA_DIR."""
    from geo.ingest.reference import DataDir, load_shapes

    run_load(load_shapes, session().engine, DataDir(session().data.data_dir), force=force)


@load.command("divisions")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--code-field", default="DIVISION", show_default=True, help="Field with the division code.")
@click.option("--name-field", default="DNAME", show_default=True, help="Field with the division name.")
@opt.force
def load_divisions_cmd(path: Path, code_field: str, name_field: str, force: bool) -> None:
    """Division polygons from a shapefile, GeoJSON or GeoPackage in any CRS (replaces current ones)."""
    from geo.ingest.shapes import load_divisions

    run_load(load_divisions, session().engine, path, code_field=code_field, name_field=name_field, force=force)


@load.command("neighborhoods")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--population", type=click.Path(exists=True, path_type=Path), help="npa_metrics/population.csv")
@click.option("--id-field", default="id", show_default=True, help="Field with the NPA number.")
@opt.force
def load_neighborhoods_cmd(path: Path, population: Path | None, id_field: str, force: bool) -> None:
    """Neighborhood Profile Area polygons, with population (latest year with a value)."""
    from geo.ingest.shapes import load_neighborhoods

    run_load(load_neighborhoods, session().engine, path, population, id_field=id_field, force=force)


@load.command("offenses")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@opt.force
def load_offenses_cmd(path: Path | None, force: bool) -> None:
    """CMPD Violent_Crime_Offenses.csv as published (default: the one in HOTSPOTS_DATA_DIR)."""
    from geo.ingest.counts import OFFENSES, load_monthly_counts
    from geo.ingest.reference import DataDir

    if path is None:
        data = DataDir(session().data.data_dir)
        try:
            data.require(["offenses"])
        except IngestError as exc:
            raise click.ClickException(str(exc)) from exc
        path = data.path("offenses")
    run_load(load_monthly_counts, session().engine, OFFENSES, path, force=force)


@load.command("call-counts")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@opt.force
def load_call_counts_cmd(path: Path, force: bool) -> None:
    """CMPD monthly calls-for-service counts (..., CALL_DESCRIPTION, CALL_COUNT)."""
    from geo.ingest.counts import CALL_COUNTS, load_monthly_counts

    run_load(load_monthly_counts, session().engine, CALL_COUNTS, path, force=force)


@load.command("incidents")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@opt.force
@click.option("--time-from-report-id", is_flag=True,
              help="Where DATE_REPORTED is a calendar date only, take the time of day from the report id's HHMM "
                   "(YYYYMMDD-HHMM-NN). An inference CMPD does not document: every row it fills is flagged "
                   "(date_reported_precision = 'report_id').")
def load_incidents_cmd(path: Path, force: bool, time_from_report_id: bool) -> None:
    """A CMPD Incidents CSV export (published column layout), or the layer's ArcGIS query answer
    (f=json) or GeoJSON saved to a file; assigns division and NPA.

    Dates without a time of day (CMPD's `YYYY/MM/DD 00:00:00+00`, epoch ms at 00:00 UTC) are
    calendar dates in HOTSPOTS_TIMEZONE and are stored as such; the report says what it found.
    """
    from geo.ingest.incidents import load_incidents
    from geo.ingest.points import LoadOptions

    run_load(load_incidents, session().engine, path, force=force, progress=True,
              options=LoadOptions(time_from_report_id=time_from_report_id))


@load.command("homicides")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@opt.force
def load_homicides_cmd(path: Path, force: bool) -> None:
    """CMPD's Homicide layer, one row per victim: the ArcGIS JSON answer as saved, or a CSV of its fields."""
    from geo.ingest.homicides import load_homicides

    run_load(load_homicides, session().engine, path, force=force)


@load.command("calls")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@opt.force
def load_calls_cmd(path: Path, force: bool) -> None:
    """A calls-for-service CSV (layout in docs/data-formats.md), or an ArcGIS query answer (f=json)
    or GeoJSON of the same fields; assigns division and NPA."""
    from geo.ingest.calls import load_calls

    run_load(load_calls, session().engine, path, force=force, progress=True)


@click.command("rejects")
@click.option("--kind", help="incidents, calls, homicides, offense_counts, ... (the kinds stored are listed on a typo)")
@click.option("--reason", help="e.g. bad_date, missing_coordinates, duplicate_id")
@click.option("--file", "file_", help="Only rejects of this source file (its name or path).")
@click.option("--batch", type=int, help="Only rejects of this load (batch id, as the load report prints it).")
@click.option("--limit", default=20, show_default=True)
@format_option
def rejects_cmd(kind: str | None, reason: str | None, file_: str | None, batch: int | None, limit: int,
                fmt: str) -> None:
    """Show rejected rows, newest first, with their file, line, reason and raw text, and counts per reason.

    csv and json give the rejected rows only (source_file, line, reason, detail, raw).
    """
    from geo.summary import RejectQuery, reject_counts, reject_rows, reject_values

    engine = session().engine
    stored = reject_values(engine)
    for option, value, column in (("--kind", kind, "kind"), ("--reason", reason, "reason")):
        if value is not None and value not in stored[column]:
            raise click.BadParameter(f"no rejects of {column} {value!r}; stored: {', '.join(stored[column]) or 'none'}",
                                     param_hint=option)
    query = RejectQuery(kind=kind, reason=reason, source_file=file_, batch=batch)
    rows = reject_rows(engine, query, limit)
    if fmt != "table":
        print_table(rows, [Column(k) for k in ("source_file", "line", "reason", "detail", "raw")], fmt)
        return
    counts = [{"kind": k, "reason": r, "rows": n} for k, r, n in reject_counts(engine, query)]
    if not counts:
        click.echo("no rejected rows" + (" match these options" if query.where()[0] else " are stored"))
        return
    print_table(counts, [Column("kind", width=16, align="<"), Column("reason", width=22, align="<"),
                         Column("rows", width=9, spec=",")], fmt, header=False)
    click.echo("")
    for row in rows:
        click.echo(f"{Path(row['source_file']).name}:{row['line']} {row['reason']}: {row['detail']}\n    {row['raw'][:200]}")


# --- ArcGIS feed ----------------------------------------------------------------------------
@click.command("sync")
@click.option("--layer", type=click.Choice(["all", "incidents", "calls", "homicides"]), default="all", show_default=True,
              help="Which feed; all = every layer with a URL configured.")
@click.option("--url", help="The layer (…/FeatureServer/0) or its /query URL [HOTSPOTS_ARCGIS_<LAYER>_URL]; needs one --layer.")
@click.option("--format", "fmt", type=click.Choice(["json", "geojson"]), default="json", show_default=True,
              help="Ask for Esri JSON or GeoJSON pages.")
@click.option("--date-field", help="Field the sync is incremental on [DATE_REPORTED (incidents, homicides) / DATE_RECEIVED]; "
                                   "an edit-date field catches every edit.")
@click.option("--since", help="First sync only: records dated on or after YYYY-MM-DD [HOTSPOTS_ARCGIS_SINCE, default all].")
@click.option("--full", is_flag=True, help="Ignore the high-water mark and read the whole layer again.")
@click.option("--every", help="Keep running: sync again this often (30s, 5m, 1h); Ctrl-C stops.")
@click.option("--refresh/--no-refresh", default=True, show_default=True,
              help="After new or changed calls, label them and recompute the saved hot spot runs.")
def sync_cmd(layer: str, url: str | None, fmt: str, date_field: str | None, since: str | None, full: bool,
             every: str | None, refresh: bool) -> None:
    """Pull new and changed records from the City's ArcGIS REST feature layers into PostGIS.

    Incremental on the report date with a stored high-water mark (re-reading an overlap window,
    HOTSPOTS_ARCGIS_OVERLAP_HOURS, for late edits); each page commits with its mark, so an
    interrupted sync resumes without gaps or duplicates. Records are cleaned and rejected exactly
    as in `hotspots load` (see `hotspots rejects --kind incidents_arcgis`).
    """
    from geo.ingest.arcgis import FeedClient, FeedError, make_feed, parse_interval, refresh_after_sync, sync_feed

    settings = session().arcgis
    if url and layer == "all":
        raise click.BadParameter("name the layer the URL is for (--layer incidents, calls or homicides)",
                                 param_hint="--url")
    kinds = [layer] if layer != "all" else [k for k in ("incidents", "calls", "homicides") if getattr(settings, f"{k}_url")]
    if not kinds:
        raise click.ClickException("no feed configured: set HOTSPOTS_ARCGIS_INCIDENTS_URL, HOTSPOTS_ARCGIS_CALLS_URL "
                                   "and/or HOTSPOTS_ARCGIS_HOMICIDES_URL, or pass --layer and --url")
    try:
        feeds = [make_feed(k, settings, url=url, fmt=fmt, date_field=date_field, since=since) for k in kinds]
        interval = parse_interval(every) if every else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    from geo.migrate import has_table

    engine = session().engine
    if not has_table(engine, "sync_state"):
        raise click.ClickException("the database has no sync_state table yet: run `hotspots db migrate`")
    client = FeedClient.from_settings(settings, log=lambda line: click.echo(line, err=True))

    def run_once() -> bool:
        results, ok = [], True
        for feed in feeds:
            try:
                result = sync_feed(engine, feed, client, full=full, log=click.echo)
            except (FeedError, IngestError) as exc:
                # A layer or database that is down now may be back at the next run (--every).
                click.echo(f"{feed.kind}: sync failed: {str(exc).splitlines()[0]}", err=True)
                ok = False
                continue
            except DATABASE_DOWN as exc:
                # Pages already stored stay (each commits with its mark); the open one was rolled back.
                click.echo(f"{feed.kind}: sync failed: {database_failure(exc)}; the pages stored so far are kept, "
                           "the page in progress was rolled back", err=True)
                ok = False
                continue
            results.append(result)
            for line in result.summary_lines():
                click.echo(line)
        if refresh and results:
            for line in refresh_after_sync(engine, results, session().locale.timezone).summary_lines():
                click.echo(line)
        return ok

    if interval is None:
        if not run_once():
            sys.exit(1)
        return
    # An open page rolls back when the loop is stopped.
    run_every(interval, run_once, echo=click.echo, what="sync",
              stopped="sync stopped; the next run resumes from the stored high-water mark")
