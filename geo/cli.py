"""The `hotspots` command line: thin click commands over the geo modules."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import click
import psycopg2
import sqlalchemy as sa

from geo import db as dbmod
from geo.ingest.batch import IngestError, LoadReport
from geo.settings import data_settings, database_settings


def _engine():
    try:
        return dbmod.make_engine()
    except dbmod.DatabaseNotConfigured as exc:
        raise click.ClickException(str(exc)) from exc


def _print_reports(reports: list[LoadReport]) -> None:
    for report in reports:
        for line in report.summary_lines():
            click.echo(line)


def _run_load(fn, *args, **kwargs) -> None:
    try:
        reports = fn(*args, **kwargs)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_reports(reports if isinstance(reports, list) else [reports])


# The database went away or never answered (stopped, restarted, network): an outage to report in
# one line, not a bug. Raw psycopg2 errors reach here from COPY, which runs on the driver's cursor.
DATABASE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg2.OperationalError, psycopg2.InterfaceError)


def database_failure(exc: BaseException) -> str:
    """A one-line account of a database failure, naming its first cause (never the password or URL).

    When the server dies mid-COPY the error that surfaces is the failed rollback ("connection
    already closed"); the cause worth reporting is the earlier one ("server closed the connection
    unexpectedly"), found down the chain of causes.
    """
    chain, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    driver = [getattr(e, "orig", None) or e for e in chain]
    driver = [e for e in driver if isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError))]
    root = driver[-1] if driver else exc
    text = next((line.strip() for line in str(root).splitlines() if line.strip()), type(root).__name__)
    if isinstance(root, psycopg2.errors.QueryCanceled):   # a statement timeout, not an outage
        return f"the database cancelled a statement ({text})"
    return f"the database connection failed ({text})"


class _Commands(click.Group):
    """The command group, reporting a lost or unreachable database as one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DATABASE_DOWN as exc:
            raise click.ClickException(
                f"{database_failure(exc)}; the transaction in progress was rolled back, nothing of it was stored. "
                "Run the command again once the database is back.") from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """cmpd-hotspots: load CMPD calls and incidents into PostGIS and analyse where violent crime concentrates.

    The database is DATABASE_URL when set, otherwise a private PostGIS cluster under
    HOTSPOTS_VAR_DIR (default ./var) managed by `hotspots db`. Reference layers are read from
    HOTSPOTS_DATA_DIR (default ./data/shapes).
    """


# --- database --------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Manage the database: the embedded cluster (up/down/status) and schema migrations."""


def _cluster() -> dbmod.EmbeddedCluster:
    return dbmod.EmbeddedCluster(database_settings().embedded_dir)


@db.command("up")
def db_up() -> None:
    """Create (first time) and start the embedded PostGIS cluster under var/pg, then migrate.

    With DATABASE_URL set, only checks that server and migrates it.
    """
    from geo.migrate import migrate

    if database_settings().database_url:
        click.echo("DATABASE_URL is set: using that server, no embedded cluster started.")
    else:
        cluster = _cluster()
        try:
            cluster.up()
        except dbmod.ClusterError as exc:
            raise click.ClickException(str(exc)) from exc
        status = cluster.status()
        click.echo(f"embedded PostGIS {status.postgis_version or '?'} running on port {status.port} ({status.data_dir})")
    engine = _engine()
    done = migrate(engine)
    click.echo(f"migrations applied now: {', '.join(m.name for m in done) or 'none (schema up to date)'}")


@db.command("down")
def db_down() -> None:
    """Stop the embedded cluster cleanly (data is kept for the next `db up`)."""
    cluster = _cluster()
    if not cluster.initialised:
        click.echo("no embedded cluster to stop")
        return
    cluster.down()
    click.echo("embedded cluster stopped")


@db.command("status")
def db_status() -> None:
    """Report where the database is, whether it runs, PostGIS version and pending migrations."""
    from geo.migrate import pending

    settings = database_settings()
    if settings.database_url:
        url = sa.engine.make_url(dbmod.resolve_url()).render_as_string(hide_password=True)
        click.echo(f"database: DATABASE_URL {url}")
    else:
        status = _cluster().status()
        if not status.initialised:
            click.echo(f"embedded cluster: not created ({status.data_dir}); run `hotspots db up`")
            sys.exit(1)
        state = "running" if status.running else "stopped"
        click.echo(f"embedded cluster: {state}, port {status.port}, data {status.data_dir}")
        if not status.running:
            sys.exit(1)
        click.echo(f"url: {status.url}")
    engine = _engine()
    click.echo(f"postgis: {dbmod.postgis_version(engine.url.render_as_string(hide_password=False)) or 'not installed'}")
    todo = pending(engine)
    click.echo(f"pending migrations: {', '.join(m.name for m in todo) or 'none'}")


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations from geo/sql/migrations (recorded in schema_migrations)."""
    from geo.migrate import MigrationError, migrate

    try:
        done = migrate(_engine())
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"applied: {', '.join(m.name for m in done) or 'nothing (schema up to date)'}")


@db.command("backup")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New directory for the backup; with --every, the folder that holds one directory per run.")
@click.option("--every", help="Keep running: a backup this often (12h, 1d) into OUT/hotspots-<UTC time>; Ctrl-C stops.")
@click.option("--keep", default=7, show_default=True, help="With --every: how many of the newest backups to keep.")
def db_backup(out: Path, every: str | None, keep: int) -> None:
    """Back up the database (pg_dump, custom format), its model files and a manifest of per-table row
    counts and checksums, all from one snapshot. The private cluster, or DATABASE_URL when set."""
    from geo.backup import BackupError, backup, backup_name, prune
    from geo.ingest.arcgis import parse_interval

    try:
        url = dbmod.resolve_url()
    except dbmod.DatabaseNotConfigured as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        interval = parse_interval(every) if every else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None

    def run_once(target: Path) -> bool:
        try:
            result = backup(url, target, echo=click.echo)
        except BackupError as exc:
            click.echo(f"backup failed: {exc}", err=True)
            return False
        for line in result.summary_lines():
            click.echo(line)
        return True

    if interval is None:
        if not run_once(out):
            sys.exit(1)
        return

    def scheduled() -> None:
        if run_once(out / backup_name()):
            for gone in prune(out, keep):
                click.echo(f"removed the old backup {gone}")

    _every(interval, scheduled, "backup", "backups stopped")


def _every(interval: float, run_once, what: str, stopped: str) -> None:
    """Run `run_once` every `interval` seconds until Ctrl-C or SIGTERM (docker stop), which end it cleanly."""
    import signal
    import time

    # docker stop sends SIGTERM: stop the same clean way as Ctrl-C (work in progress rolls back).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            started = time.monotonic()
            run_once()
            wait = max(0.0, interval - (time.monotonic() - started))
            click.echo(f"next {what} in {wait:.0f} s (Ctrl-C stops)")
            time.sleep(wait)
    except KeyboardInterrupt:
        click.echo(stopped)


@db.command("restore")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Put the model files here (model_runs then points here) instead of at their recorded paths.")
def db_restore(directory: Path, models_dir: Path | None) -> None:
    """Restore a `db backup` directory into an empty database and verify it against the manifest.

    Every file is checked first (a truncated or changed backup is refused). The target is DATABASE_URL,
    or the private cluster (created and started when needed). Exits 1 naming each table whose row count
    or checksum differs from the manifest.
    """
    from geo.backup import BackupError, restore
    from geo.migrate import pending

    if database_settings().database_url:
        url = dbmod.resolve_url()
    else:
        try:
            url = _cluster().up()
        except dbmod.ClusterError as exc:
            raise click.ClickException(str(exc)) from exc
    try:
        result = restore(directory, url, models_dir=models_dir, echo=click.echo)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {result.tables} tables ({result.rows:,} rows) and {len(result.models)} model file(s) in "
               f"{result.seconds:.1f} s; rows and checksums equal the manifest")
    if result.relocated:
        click.echo(f"model_runs.artifact_path of {result.relocated} model(s) now points into {models_dir}")
    engine = dbmod.make_engine(url)
    todo = pending(engine)
    engine.dispose()
    if todo:
        click.echo(f"the backup's schema is older than this version: run `hotspots db migrate` ({len(todo)} pending)")


@db.command("cluster")
@click.argument("table", type=click.Choice(["calls", "incidents"]), default="calls")
def db_cluster(table: str) -> None:
    """Rewrite a point table in space order (faster map tiles; locks the table while it runs)."""
    import time

    from geo.db import cluster_points

    t0 = time.perf_counter()
    cluster_points(_engine(), table)
    click.echo(f"clustered {table} on its GiST index in {time.perf_counter() - t0:.1f} s")


# --- loading ---------------------------------------------------------------------------------
@main.group()
def load() -> None:
    """Load data into PostGIS. Every row is loaded or kept in ingest_rejects with its reason;
    each file loads in one transaction, and loading the same file again changes nothing."""


_force = click.option("--force", is_flag=True, help="Re-read a file even if this exact file was loaded before.")


@load.command("reference")
@_force
def load_reference_cmd(force: bool) -> None:
    """Divisions, NPAs (with population) and violent offense counts from HOTSPOTS_DATA_DIR."""
    from geo.ingest.reference import DataDir, load_reference

    _run_load(load_reference, _engine(), DataDir(data_settings().data_dir), force=force)


@load.command("shapes")
@_force
def load_shapes_cmd(force: bool) -> None:
    """Division and NPA polygons (with population) from HOTSPOTS_DATA_DIR."""
    from geo.ingest.reference import DataDir, load_shapes

    _run_load(load_shapes, _engine(), DataDir(data_settings().data_dir), force=force)


@load.command("divisions")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--code-field", default="DIVISION", show_default=True, help="Field with the division code.")
@click.option("--name-field", default="DNAME", show_default=True, help="Field with the division name.")
@_force
def load_divisions_cmd(path: Path, code_field: str, name_field: str, force: bool) -> None:
    """Division polygons from a shapefile, GeoJSON or GeoPackage in any CRS (replaces current ones)."""
    from geo.ingest.shapes import load_divisions

    _run_load(load_divisions, _engine(), path, code_field=code_field, name_field=name_field, force=force)


@load.command("neighborhoods")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--population", type=click.Path(exists=True, path_type=Path), help="npa_metrics/population.csv")
@click.option("--id-field", default="id", show_default=True, help="Field with the NPA number.")
@_force
def load_neighborhoods_cmd(path: Path, population: Path | None, id_field: str, force: bool) -> None:
    """Neighborhood Profile Area polygons, with population (latest year with a value)."""
    from geo.ingest.shapes import load_neighborhoods

    _run_load(load_neighborhoods, _engine(), path, population, id_field=id_field, force=force)


@load.command("offenses")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@_force
def load_offenses_cmd(path: Path | None, force: bool) -> None:
    """CMPD Violent_Crime_Offenses.csv as published (default: the one in HOTSPOTS_DATA_DIR)."""
    from geo.ingest.counts import OFFENSES, load_monthly_counts
    from geo.ingest.reference import DataDir

    if path is None:
        data = DataDir(data_settings().data_dir)
        try:
            data.require(["offenses"])
        except IngestError as exc:
            raise click.ClickException(str(exc)) from exc
        path = data.path("offenses")
    _run_load(load_monthly_counts, _engine(), OFFENSES, path, force=force)


@load.command("call-counts")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_force
def load_call_counts_cmd(path: Path, force: bool) -> None:
    """CMPD monthly calls-for-service counts (..., CALL_DESCRIPTION, CALL_COUNT)."""
    from geo.ingest.counts import CALL_COUNTS, load_monthly_counts

    _run_load(load_monthly_counts, _engine(), CALL_COUNTS, path, force=force)


@load.command("incidents")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_force
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

    _run_load(load_incidents, _engine(), path, force=force, progress=True,
              options=LoadOptions(time_from_report_id=time_from_report_id))


@load.command("homicides")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_force
def load_homicides_cmd(path: Path, force: bool) -> None:
    """CMPD's Homicide layer, one row per victim: the ArcGIS JSON answer as saved, or a CSV of its fields."""
    from geo.ingest.homicides import load_homicides

    _run_load(load_homicides, _engine(), path, force=force)


@load.command("calls")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_force
def load_calls_cmd(path: Path, force: bool) -> None:
    """A calls-for-service CSV (layout in docs/data-formats.md), or an ArcGIS query answer (f=json)
    or GeoJSON of the same fields; assigns division and NPA."""
    from geo.ingest.calls import load_calls

    _run_load(load_calls, _engine(), path, force=force, progress=True)


@main.command("rejects")
@click.option("--kind", help="incidents, calls, homicides, offense_counts, ... (the kinds stored are listed on a typo)")
@click.option("--reason", help="e.g. bad_date, missing_coordinates, duplicate_id")
@click.option("--file", "file_", help="Only rejects of this source file (its name or path).")
@click.option("--batch", type=int, help="Only rejects of this load (batch id, as the load report prints it).")
@click.option("--limit", default=20, show_default=True)
def rejects_cmd(kind: str | None, reason: str | None, file_: str | None, batch: int | None, limit: int) -> None:
    """Show rejected rows, newest first, with their file, line, reason and raw text, and counts per reason."""
    engine = _engine()
    where, params = [], {"lim": limit}
    with engine.connect() as conn:
        stored = {c: sorted(v for (v,) in conn.execute(sa.text(f"SELECT DISTINCT {c} FROM ingest_rejects")))
                  for c in ("kind", "reason")}
    for option, value, column in (("--kind", kind, "kind"), ("--reason", reason, "reason")):
        if value is not None and value not in stored[column]:
            raise click.BadParameter(f"no rejects of {column} {value!r}; stored: {', '.join(stored[column]) or 'none'}",
                                     param_hint=option)
    if kind:
        where.append("kind = :kind")
        params["kind"] = kind
    if reason:
        where.append("reason = :reason")
        params["reason"] = reason
    if file_:
        # The path as given when loading, or just its name.
        where.append("(source_file = :file OR source_file LIKE '%/' || :file)")
        params["file"] = file_
    if batch is not None:
        where.append("batch_id = :batch")
        params["batch"] = batch
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    with engine.connect() as conn:
        for k, r, n in conn.execute(sa.text(f"SELECT kind, reason, count(*) FROM ingest_rejects {clause} GROUP BY 1, 2 ORDER BY 1, 2"), params):
            click.echo(f"{k:16} {r:22} {n:>9,}")
        click.echo("")
        rows = conn.execute(
            sa.text(f"SELECT source_file, line, reason, detail, raw FROM ingest_rejects {clause}"
                    " ORDER BY reject_id DESC LIMIT :lim"),
            params,
        )
        for f, line, r, detail, raw in rows:
            click.echo(f"{Path(f).name}:{line} {r}: {detail}\n    {raw[:200]}")


# --- ArcGIS feed ----------------------------------------------------------------------------
@main.command("sync")
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
    from geo.settings import arcgis_settings, locale_settings

    settings = arcgis_settings()
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
    engine = _engine()
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT to_regclass('public.sync_state')")).scalar():
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
            for line in refresh_after_sync(engine, results, locale_settings().timezone).summary_lines():
                click.echo(line)
        return ok

    if interval is None:
        if not run_once():
            sys.exit(1)
        return
    # An open page rolls back when the loop is stopped.
    _every(interval, run_once, "sync", "sync stopped; the next run resumes from the stored high-water mark")


# --- demo data -------------------------------------------------------------------------------
@main.command("demo-data")
@click.option("--calls", "n_calls", default=500_000, show_default=True, help="Number of calls for service.")
@click.option("--start", default=None, help="First day (YYYY-MM-DD); default: the demo year's first day (DEMO_START in geo/synth.py).")
@click.option("--days", type=int, default=None, help="Length of the period in days; default: the demo year's length (DEMO_DAYS).")
@click.option("--seed", default=2264, show_default=True, help="Random seed; the same seed gives the same files.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default HOTSPOTS_VAR_DIR/demo).")
@click.option("--clean", is_flag=True, help="No dirty rows (by default a few percent are dirty like real exports).")
@click.option("--no-load", is_flag=True, help="Only write the CSVs.")
def demo_data_cmd(n_calls: int, start: str | None, days: int | None, seed: int, out: Path | None, clean: bool,
                  no_load: bool) -> None:
    """Generate SYNTHETIC CMPD-schema calls and incidents calibrated on the real counts, and load them."""
    from geo.demo import generate_and_load
    from geo.synth import DEMO_DAYS, DEMO_START

    try:
        first = date.fromisoformat(start) if start else DEMO_START
    except ValueError:
        raise click.BadParameter(f"{start!r} is not a date (YYYY-MM-DD)", param_hint="--start") from None
    try:
        reports = generate_and_load(
            n_calls=n_calls, start=first, days=DEMO_DAYS if days is None else days, seed=seed, out=out,
            dirty=not clean, load=not no_load, engine=None if no_load else _engine(),
        )
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_reports(reports)


@main.command("demo")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Start the web server at the end.")
def demo_cmd(serve: bool) -> None:
    """Everything `make demo` does: database, reference and demo data, model, hot spots, then the server."""
    from geo.demo import run_demo
    from geo.settings import server_settings

    if serve:
        # Before the long load: a port another server holds would only fail at the very end.
        s = server_settings()
        taken = _port_taken(s.host, s.port)
        if taken:
            raise click.ClickException(
                f"port {s.port} on {s.host} is in use ({taken}); nothing was started or loaded. Stop the other "
                f"server or choose a free port: HOTSPOTS_PORT={s.port + 1} make demo")
    stop_hint = ("The private database keeps running; stop it with `.venv/bin/hotspots db down`."
                 if not database_settings().database_url else "")
    try:
        run_demo(echo=click.echo)
    except (IngestError, dbmod.ClusterError, dbmod.DatabaseNotConfigured) as exc:
        raise click.ClickException(f"{exc}\n{stop_hint}".strip()) from exc
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; what was loaded so far is kept. {stop_hint}".strip()) from None
    if serve:
        if stop_hint:
            click.echo(stop_hint.replace("keeps running", "keeps running after Ctrl-C"))
        _serve(None, None, None)


def _port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound (e.g. 'address already in use'), or None when it is free."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gunicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror.lower() if exc.strerror else str(exc)
    return None


def _serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Replace this process with gunicorn serving web:create_app() (geo itself never imports Flask)."""
    import os
    import shutil
    import sys

    from geo.settings import server_settings

    s = server_settings()
    host, port, workers = host or s.host, port or s.port, workers or s.workers
    # Resolve the database now, so a stopped cluster is reported here rather than per request.
    try:
        os.environ.setdefault("DATABASE_URL", dbmod.resolve_url())
    except dbmod.DatabaseNotConfigured as exc:
        raise click.ClickException(str(exc)) from exc
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not gunicorn:
        raise click.ClickException("gunicorn is not installed in this environment (pip install -e .)")
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    click.echo(f"Serving the map at http://{shown}:{port}/  (OGC API: /ogc, tiles: /tiles, API docs: /api; Ctrl-C stops)")
    sys.stdout.flush()
    os.execv(gunicorn, [gunicorn, "--bind", f"{host}:{port}", "--workers", str(workers), "--worker-class", "gthread",
                        "--threads", str(s.threads), "--timeout", "120", "--access-logfile", "-",
                        # gunicorn's default control socket is one per user (~/.gunicorn/gunicorn.ctl): every
                        # server started as root would share it, and one's shutdown would delete another's.
                        "--no-control-socket",
                        "web:create_app()"])


@main.command("serve")
@click.option("--host", help="Address to listen on [HOTSPOTS_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [HOTSPOTS_PORT, default 8000].")
@click.option("--workers", type=int, help="gunicorn worker processes [HOTSPOTS_WORKERS, default 2].")
def serve_cmd(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the web app (map, OGC API - Features, tiles, exports, live ingest) under gunicorn."""
    _serve(host, port, workers)


@main.command("summary")
def summary_cmd() -> None:
    """Row counts of every table and the period the calls and incidents cover."""
    from geo.summary import summary_lines

    for line in summary_lines(_engine()):
        click.echo(line)


# --- classifier ------------------------------------------------------------------------------
@main.command("train")
@click.option("--test-months", default=3, show_default=True, help="Latest months held out for testing.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threshold", "threshold_rule", type=click.Choice(["f1", "count"]), default="f1", show_default=True,
              help="The label threshold: max F1 on the calibration months, or count-matching (labels as many calls "
                   "as the probabilities expect). Maps of calls default to expected violent (sum of p) either way.")
@click.option("--place-features", is_flag=True,
              help="Add NPA, division and the NPA's cross-fitted violent rate to the features (the map then lags "
                   "violence that moves; docs/methods.md).")
def train_cmd(test_months: int, seed: int, threshold_rule: str, place_features: bool) -> None:
    """Train the violent-call classifier on earlier months, test on later ones, store it.

    Ground truth: the call's incident carries an FBI violent NIBRS code. Features: call type,
    priority, hour and weekday (with --place-features also NPA, division and the NPA's violent
    rate, cross-fitted on the training months).
    Stores the model (joblib, checksummed) and a model_runs row that becomes the current model.
    """
    from geo.classify import ModelError, train

    try:
        result = train(_engine(), test_months=test_months, seed=seed, threshold_rule=threshold_rule,
                       place_features=place_features, echo=click.echo, progress=True)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model {result.version} stored at {result.path} (sha256 {result.sha256[:12]}...)")
    _print_metrics(result.metrics)


def _print_metrics(metrics: dict) -> None:
    from geo.classify import threshold_lines

    click.echo(f"\n{'':26}{'ROC-AUC':>8}{'PR-AUC':>8}{'R@90%P':>8}{'Brier':>9}{'thresh':>8}{'prec':>7}{'recall':>7}")
    for name in ("model", "gradient_boosting", "call_type_baseline"):
        m = metrics.get(name)
        if m:
            click.echo(f"{name:26}{m['roc_auc']:>8.3f}{m['pr_auc']:>8.3f}{m['recall_at_90_precision']:>8.3f}"
                       f"{m['brier']:>9.4f}{m['threshold']:>8.3f}{m['precision']:>7.3f}{m['recall']:>7.3f}")
    control = metrics.get("shuffled_label_control", {})
    if control:
        click.echo(f"{'shuffled-label control':26}{control['roc_auc']:>8.3f}   (must be near 0.5)")
    m = metrics.get("model")
    if m:
        from geo.pages import recall_at_precision_words

        click.echo(f"R@90%P: {recall_at_precision_words(m)}")
        c = m["confusion"]
        click.echo(f"\nheld-out calls: {m['n']:,}, violent: {m['positives']:,} ({m['base_rate']:.2%})")
        click.echo(f"at threshold {m['threshold']:.3f}: {c['tp']:,} violent calls flagged, {c['fp']:,} false alarms, "
                   f"{c['fn']:,} violent calls missed, {c['tn']:,} correctly not flagged")
        expected, observed = m["expected_vs_observed"]
        click.echo(f"calibration: sum of probabilities {expected:,.0f} vs {observed:,} violent calls observed")
        for b in m["calibration"]:
            click.echo(f"  p in {b['bin']}: {b['n']:>8,} calls, mean p {b['mean_predicted']:.3f}, observed {b['observed']:.3f}")
    for line in threshold_lines(metrics):
        click.echo(line)


@main.group()
def model() -> None:
    """Inspect trained classifiers."""


@model.command("report")
@click.option("--version", help="A model version (default: the current model).")
@click.option("--top", default=12, show_default=True, help="How many effects to list.")
def model_report_cmd(version: str | None, top: int) -> None:
    """Metrics of a stored model and its strongest effects in plain words."""
    from geo.classify import ModelError, load_model, probability_effects

    try:
        stored = load_model(_engine(), version)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model {stored.version}: {stored.params.get('train_rows', 0):,} training calls, "
               f"threshold {stored.threshold:.3f}, trained in {stored.params.get('train_seconds', '?')} s")
    _print_metrics(stored.metrics)
    base_rate = stored.metrics["model"]["base_rate"]
    click.echo(f"\nStrongest effects: each alone, on a call otherwise average ({base_rate:.1%} violent), moves the "
               "model's probability")
    for e in probability_effects(stored, top).itertuples():
        click.echo(f"  {e.text}: {'raises' if e.to_p > e.from_p else 'lowers'} it from {e.from_p:.1%} to {e.to_p:.1%}")
    from geo.accuracy import latest_accuracy, report_lines

    click.echo("\n" + "\n".join(report_lines(latest_accuracy(_engine()))))
    from geo.taxonomy import violent_numbers_lines

    click.echo("\n" + "\n".join(violent_numbers_lines()))


_compute_engine = click.option(
    "--engine", "compute", type=click.Choice(["local", "dask"]), default="local", show_default=True,
    help="Where the heavy work runs: this process, or Dask workers reading partitions of the calls themselves.")
_scheduler = click.option(
    "--scheduler", metavar="ADDRESS",
    help="Dask scheduler address (e.g. tcp://10.0.0.5:8786); implies --engine dask. Without it, --engine dask "
         "starts a local cluster of --workers processes.")
_dask_workers = click.option("--workers", "dask_workers", default=2, show_default=True,
                             help="--engine dask without --scheduler: local worker processes.")


def _dask(compute: str, scheduler: str | None, workers: int):
    """A Dask client context when asked for one (--engine dask or --scheduler), else None."""
    if compute != "dask" and not scheduler:
        return None
    from geo.scale import dask_client

    return dask_client(scheduler, workers=workers)


@main.command("label")
@click.option("--relabel", is_flag=True, help="Also rescore calls labelled by another model version.")
@click.option("--chunk", default=250_000, show_default=True, help="Calls per transaction.")
@_compute_engine
@_scheduler
@_dask_workers
def label_cmd(relabel: bool, chunk: int, compute: str, scheduler: str | None, dask_workers: int) -> None:
    """Score calls with the current model: probability, label and model version (unlabelled calls only)."""
    from geo.classify import ModelError, label_calls

    dask = _dask(compute, scheduler, dask_workers)
    try:
        if dask is None:
            result = label_calls(_engine(), relabel=relabel, chunk_rows=chunk, progress=True)
        else:
            from geo import scale

            with dask as client:
                engine = _engine()
                # --chunk keeps its meaning: about that many calls per partition (one transaction each).
                extent = scale.calls_extent(engine)
                parts = None if extent is None else max(1, -(-extent[2] // max(chunk, 1)))
                result = scale.label_calls(engine, client, relabel=relabel, partitions=parts)
                click.echo(f"Dask: {result.partitions} partitions on {len(client.scheduler_info()['workers'])} workers")
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    rate = f", {result.labelled / result.seconds:,.0f} calls/s" if result.seconds and result.labelled else ""
    click.echo(f"labelled {result.labelled:,} calls with {result.version} ({result.violent:,} labelled violent{rate})")
    if not result.labelled:
        click.echo("nothing to do: every call already has a label (use --relabel after training a new model)")


@main.command("taxonomy")
@click.option("--apply", "apply_", is_flag=True, help="Recompute the stored categories of all calls and incidents.")
@click.option("--kind", type=click.Choice(["all", "call_type", "nibrs"]), default="all", show_default=True)
def taxonomy_cmd(apply_: bool, kind: str) -> None:
    """Print how CAD call types and NIBRS codes map to categories (geo/taxonomy.csv).

    Categories are stored with each call and incident when loaded; after editing the table,
    --apply recomputes them. Codes the table does not know are 'unknown' and are counted.
    """
    from geo.taxonomy import apply_taxonomy, load_taxonomy

    taxonomy = load_taxonomy()
    for category, description in taxonomy.categories.items():
        click.echo(f"{category}: {description}")
        if kind in ("all", "call_type"):
            types = sorted(t for t, c in taxonomy.call_types.items() if c == category)
            if types:
                click.echo("  call types:  " + ", ".join(types))
        if kind in ("all", "nibrs"):
            codes = sorted(code for code, (c, _) in taxonomy.nibrs.items() if c == category)
            codes += [f"{p}xx (other CMPD local codes)" for p, c, _ in taxonomy.prefixes if c == category]
            if codes:
                click.echo("  NIBRS codes: " + ", ".join(codes))
    non_crime = sorted(code for code, (_, crime) in taxonomy.nibrs.items() if not crime)
    click.echo("\nNot counted as crimes: " + ", ".join(non_crime) + ", and CMPD's other 800-series report codes")
    if apply_:
        changed = apply_taxonomy(_engine(), taxonomy)
        click.echo(f"\nrecategorised: {changed['calls']:,} calls, {changed['incidents']:,} incidents")


# --- statistics ------------------------------------------------------------------------------
@main.group()
def stats() -> None:
    """Reports from the loaded data."""


def _period(start: str | None, end: str | None, **conditions):
    """The local days --from..--to (inclusive) as the one selection type, in the configured zone."""
    from geo.filters import Filter
    from geo.settings import locale_settings

    try:
        first = date.fromisoformat(start) if start else date(date.today().year, 1, 1)
        last = date.fromisoformat(end) if end else date.today()
    except ValueError:
        raise click.BadParameter("dates are YYYY-MM-DD", param_hint="--from/--to") from None
    if last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
    return Filter.local_days(first, last + timedelta(days=1), tz=locale_settings().timezone, **conditions)


_save = click.option("--save", is_flag=True, help="Also store the result as an analysis run (for the map and exports).")


def _save_table(kind: str, params: dict, table) -> None:
    from geo.runs import RunSpec, save_table

    engine = _engine()
    run_id = save_table(engine, RunSpec(kind, params, _current_model(engine)), table)
    click.echo(f"saved as analysis run {run_id}")


_from = click.option("--from", "start", help="First day, YYYY-MM-DD (default: 1 January this year).")
_to = click.option("--to", "end", help="Last day, YYYY-MM-DD, included (default: today).")


@stats.command("calls")
@_from
@_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="division", show_default=True)
@click.option("--division", help="Only this division code.")
@_save
def stats_calls_cmd(start: str | None, end: str | None, by: str, division: str | None, save: bool) -> None:
    """Calls per area and category with each category's share, and the violent share (model labels)."""
    from geo.metrics import call_counts

    period = _period(start, end, division=division)
    table = call_counts(_engine(), period, by)
    if save:
        _save_table("call_counts", {"period": [period.start_date, period.end_date], "by": by, "division": division}, table)
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
@_from
@_to
@click.option("--division", help="Only this division code.")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@click.option("--violent-only", is_flag=True, help="Only calls the model labelled violent.")
@click.option("--totals", is_flag=True, help="Print the counts instead of the mean per occurrence.")
@_save
def stats_hours_cmd(start: str | None, end: str | None, division: str | None, category: str | None, violent_only: bool,
                    totals: bool, save: bool) -> None:
    """Calls by weekday and hour of day (local time): the 7x24 matrix, as calls per occurrence of each weekday-hour."""
    from geo.metrics import hour_weekday

    period = _period(start, end, division=division, category=category, violent=True if violent_only else None)
    matrix = hour_weekday(_engine(), period)
    if save:
        _save_table("hour_weekday", {"period": [period.start_date, period.end_date], "division": division, "category": category,
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
@_save
def stats_compstat_cmd(as_of: str | None, by: str, category: str | None, source: str | None, violent_only: bool,
                       origin: str | None, compare: str, save: bool) -> None:
    """CompStat: the report week, 28 days and year to date against a year earlier, overdispersion-aware, FDR across areas."""
    from geo.filters import Filter
    from geo.metrics import compstat, compstat_windows
    from geo.sources import default_source

    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--as-of") from None
    if violent_only and source not in (None, "labelled"):
        raise click.BadParameter(f"--violent-only means --source labelled, not {source}", param_hint="--violent-only")
    engine = _engine()
    if violent_only:
        source = "labelled"
    elif source is None:
        windows = [p for pair in compstat_windows(day, compare).values() for p in pair]
        source = default_source(engine, windows[0].with_days(min(p.start_date for p in windows),
                                                             max(p.end_date for p in windows)), origin)
    flt = Filter(category=category, origin=origin)
    try:
        table = compstat(engine, day, by=by, flt=flt, compare=compare, source=None if source == "calls" else source)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"source: {table.attrs['source']}")
    if save:
        _save_table("compstat", {"as_of": day, "by": by, "category": category, "source": source, "origin": origin,
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


@main.command("allocate")
@click.option("--officers", type=int,
              help="Officers to place (default: report the officers the targets need). With the plan, units go one "
                   "at a time where the worst expected wait drops most.")
@_from
@_to
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
@_save
def allocate_cmd(officers: int | None, start: str | None, end: str | None, config_path: Path | None,
                 shifts: str | None, targets: str | None, method: str, out_path: Path | None, source: str,
                 save: bool) -> None:
    """Officers per division and shift: units the queueing targets need (or N placed by marginal allocation),
    with the skills, vehicles and gear the call mix needs."""
    if method == "proportional":
        if officers is None:
            raise click.BadParameter("the proportional method needs --officers", param_hint="--officers")
        if targets or out_path:
            raise click.BadParameter("--targets and --out belong to --method plan", param_hint="--method")
        return _allocate_proportional(officers, start, end, config_path, shifts, source, save)
    from geo.staffing import build_plan

    if out_path and out_path.suffix.lower() not in (".csv", ".json"):
        raise click.BadParameter(f"{out_path} must end in .csv or .json", param_hint="--out")
    config, _ = _staffing_configs(config_path, shifts, targets)
    try:
        table = build_plan(_engine(), _period(start, end), config, officers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers" if "--officers" in str(exc) else "--config") from exc
    if out_path:
        if out_path.suffix.lower() == ".csv":
            table.to_csv(out_path, index=False, float_format="%.4f")
        else:
            out_path.write_text(table.to_json(orient="records", indent=1, double_precision=6))
    if save:
        _save_table("allocation_plan", {"officers": officers, "from": start, "to": end, "targets": vars(config.targets),
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
        table, reasons = allocate(_engine(), officers, _period(start, end), config, source)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--officers") from exc
    words = table.attrs["source"]
    if save:
        table = table.assign(reasoning=table["division_id"].map(reasons))
        _save_table("allocation", {"officers": officers, "from": start, "to": end, "source": source,
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


@main.command("emerging")
@click.option("--from", "start", help="First day, YYYY-MM-DD (default: 1 January of last year).")
@_to
@click.option("--source", type=click.Choice(["incidents", "homicides", "labelled", "expected", "calls"]),
              help="What is counted (geo/sources.py): recorded violent incidents (FBI violent NIBRS codes; the default "
                   "when the period holds any), homicide victims, model-labelled calls, expected violent calls (the "
                   "default otherwise), or calls as --measure says.")
@click.option("--measure", type=click.Choice(["labelled", "expected"]), default="expected", show_default=True,
              help="--source calls: count the calls labelled violent, or sum the model's probabilities.")
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when the period holds both).")
@click.option("--step", "unit", type=click.Choice(["month", "week"]), default="month", show_default=True,
              help="Time step: calendar months or Monday-Sunday weeks.")
@click.option("--time-neighbours", "neighbourhood_steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Earlier steps in each bin's space-time neighbourhood (ArcGIS's Neighborhood Time Step).")
@click.option("--confidence", type=click.Choice(["90", "95", "99"]), default="90", show_default=True,
              help="Confidence (%) at which a bin is a hot or cold spot and a trend counts.")
@click.option("--grid-ft", type=float, help="Square cells of this many feet (EPSG:2264) instead of NPAs.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the areas with their patterns (.geojson, .gpkg).")
def emerging_cmd(start: str | None, end: str | None, source: str | None, measure: str, origin: str | None, unit: str,
                 neighbourhood_steps: int, confidence: str, grid_ft: float | None, out: Path | None) -> None:
    """Emerging hot spots as ArcGIS defines them: a space-time cube, Gi* per bin, FDR, Mann-Kendall, 17 patterns.

    Only complete time steps are analysed (a partial first or last one is left out and named);
    at least 10 are needed.
    """
    from geo.emerging import NO_PATTERN, default_source, grid_emerging, npa_emerging

    engine = _engine()
    first = start or date(date.today().year - 1, 1, 1).isoformat()
    counted = (default_source(engine, _period(first, end), origin) if source is None
               else measure if source == "calls" else source)
    settings = {"source": counted, "unit": unit, "neighbourhood_steps": neighbourhood_steps,
                "confidence": int(confidence) / 100, "origin": origin}
    try:
        if grid_ft:
            run = grid_emerging(engine, _period(first, end), cell_ft=grid_ft, **settings)
        else:
            run = npa_emerging(engine, _period(first, end), **settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    cube, unit_name = run.cube, "cells" if grid_ft else "NPAs"
    click.echo(f"source: {cube.source}")
    click.echo(f"time steps: {len(cube.steps)} complete {unit}s, {cube.steps[0].label} to {cube.steps[-1].label} "
               f"(the data spans {cube.data_span[0]} to {cube.data_span[1]})")
    click.echo(f"left out: {cube.describe_left_out()}")
    click.echo(f"neighbours: {'queen-contiguous cells' if grid_ft else 'queen-contiguous NPAs'} and the location "
               f"itself, in the same {unit} and the {neighbourhood_steps} {unit}{'s' if neighbourhood_steps > 1 else ''} "
               f"before; Gi* over {cube.counts.size:,} bins, "
               f"Benjamini-Hochberg FDR, significant at {confidence}% confidence; Mann-Kendall on each location's "
               "Gi* z-scores\n")
    if out:
        run.areas.to_file(out)
    for name, n in run.pattern_counts().items():
        ids = [] if grid_ft or name == NO_PATTERN else run.areas.loc[run.areas["pattern"] == name, "npa_id"].astype(int)
        listed = (": " + ", ".join(map(str, list(ids)[:12])) + (" ..." if len(ids) > 12 else "")) if len(ids) else ""
        click.echo(f"{name:23} {n:>6} {unit_name}{listed}")
    if out:
        click.echo(f"\nwrote {out}")


@main.command("accuracy")
@click.option("--train-from", required=True, help="First day of period T, YYYY-MM-DD (hot spots found on it).")
@click.option("--train-to", required=True, help="Last day of period T, YYYY-MM-DD.")
@click.option("--test-from", required=True, help="First day of period T+1, YYYY-MM-DD (scored on its recorded violence).")
@click.option("--test-to", required=True, help="Last day of period T+1, YYYY-MM-DD.")
@click.option("--source", "sources", multiple=True, type=click.Choice(["incidents", "homicides", "labelled", "expected"]),
              help="Sources to score (repeatable; default all with rows in T).")
@click.option("--grid-ft", type=float, help="Also score square cells of this many feet (EPSG:2264).")
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when a period holds both).")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Store the table as an analysis run (kind 'accuracy'; the model report and the map show it).")
def accuracy_cmd(train_from: str, train_to: str, test_from: str, test_to: str, sources: tuple[str, ...],
                 grid_ft: float | None, origin: str | None, save: bool) -> None:
    """Hot spots found on period T scored on recorded violent incidents in T+1: hit rate, PAI, RRI per source."""
    from geo.accuracy import accuracy, accuracy_params, format_table, save_accuracy

    engine = _engine()
    train, test = _period(train_from, train_to), _period(test_from, test_to)
    try:
        table = accuracy(engine, train, test, sources=sources or None, grid_ft=grid_ft, origin=origin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    params = accuracy_params(train, test, table, grid_ft, origin)
    click.echo(f"hot spots (Gi*, 99% and 95% hot, FDR) on {train.start_date}..{train.end_date - timedelta(days=1)}, "
               f"scored on recorded violent incidents of {test.start_date}..{test.end_date - timedelta(days=1)}")
    for name, words in params["sources"].items():
        click.echo(f"  {words}" + ("  [no rows in T: left out]" if name in params["skipped"] else ""))
    click.echo("hit rate: share of T+1's violent incidents in the hot areas; PAI = hit rate / area share "
               "(Chainey et al. 2008); RRI = (in hot T+1 / in hot T) / (all T+1 / all T) (Levine 2008)\n")
    for line in format_table(params["rows"]):
        click.echo(line)
    if save:
        click.echo(f"\nsaved as analysis run {save_accuracy(engine, params, _current_model(engine))}")


@main.command("stability")
@_from
@_to
def stability_cmd(start: str | None, end: str | None) -> None:
    """NPAs that stay violent-call hot spots across classifier probability thresholds 0.1-0.6."""
    from geo.hotspots import threshold_stability

    result = threshold_stability(_engine(), _period(start, end))
    stable = result[result["stability"] == 1.0]
    some = result[(result["stability"] > 0) & (result["stability"] < 1.0)]
    click.echo(f"hot at every threshold ({len(stable)} NPAs): " + ", ".join(str(int(n)) for n in stable["npa_id"]))
    click.echo(f"hot at some thresholds only ({len(some)} NPAs):")
    for r in some.sort_values("stability", ascending=False).itertuples():
        click.echo(f"  NPA {int(r.npa_id)}: hot at p >= {r.hot_at}")


def _current_model(engine) -> str | None:
    from geo.runs import current_model_version

    return current_model_version(engine)


def _years(text: str | None) -> tuple[int, int] | None:
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


@main.command("hotspots")
@click.option("--source", type=click.Choice(["incidents", "homicides", "labelled", "expected", "offenses"]),
              help="What is counted (geo/sources.py): recorded violent incidents (the default when the period holds "
                   "any), homicide victims, model-labelled calls, expected violent calls (the default otherwise), "
                   "or CMPD's published violent offense counts per NPA.")
@_from
@_to
@click.option("--origin", type=click.Choice(["real", "synthetic"]),
              help="Only real or only synthetic rows (required when the period holds both).")
@click.option("--grid-ft", help="Point sources: square grid cells instead of NPAs: 'auto' (the size chosen from the "
                               "points' locations, as ArcGIS Optimized Hot Spot Analysis does; see docs/methods.md) "
                               "or a side in feet (EPSG:2264).")
@click.option("--per-1000", "per_1000", is_flag=True,
              help="NPAs: Gi* on the value per 1,000 residents (ArcGIS's 'divide by' population); NPAs without "
                   "residents are left out and counted.")
@click.option("--years", help="offenses, homicides: year range, e.g. 2019-2021 [offenses: 2019-2021; "
                              "homicides: every year loaded].")
@click.option("--category", multiple=True, help="offenses: detail categories (default: the Violent Crime roll-up).")
@click.option("--permutations", default=999, show_default=True)
@click.option("--save", is_flag=True, help="Store the result as an analysis run (for the map and exports).")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the NPAs with their classes (.geojson, .gpkg).")
@_compute_engine
@_scheduler
@_dask_workers
def hotspots_cmd(source: str | None, start: str | None, end: str | None, origin: str | None, grid_ft: str | None,
                 per_1000: bool, years: str | None, category: tuple[str, ...], permutations: int, save: bool,
                 out: Path | None, compute: str, scheduler: str | None, dask_workers: int) -> None:
    """Getis-Ord Gi* hot and cold spots of violent crime over the 462 NPAs or grid cells (FDR-corrected)."""
    from geo.hotspots import grid_hotspots, homicide_hotspots, npa_hotspots, offense_hotspots
    from geo.runs import RunKind, RunSpec, save_cell_results, save_npa_results
    from geo.sources import resolve

    engine = _engine()
    model_version = None
    dask = _dask(compute, scheduler, dask_workers)
    if grid_ft and source == "offenses":
        raise click.BadParameter("offense counts are published per NPA; grid cells need points", param_hint="--grid-ft")
    if grid_ft and per_1000:
        raise click.BadParameter("rates need a population per area; grid cells have none (use NPAs)",
                                 param_hint="--per-1000")
    if grid_ft is not None:
        grid_ft = grid_ft.strip().lower()
        if grid_ft != "auto":
            try:
                if not float(grid_ft) > 0:
                    raise ValueError
            except ValueError:
                raise click.BadParameter(f"{grid_ft!r}: give 'auto' or a positive number of feet",
                                         param_hint="--grid-ft") from None
    rate = {"value_unit": "per_1000_residents"} if per_1000 else {}
    by_years = source == "offenses" or (source == "homicides" and not grid_ft)
    if not by_years:
        period = _period(start, end)
        try:
            src = resolve(engine, source, period, origin)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        source = src.name
        click.echo(f"source: {src.describe(origin)}")
    if dask is not None and source not in ("labelled", "expected"):
        raise click.BadParameter("Dask runs the calls analysis (--source labelled or expected); offense counts, "
                                 "incidents and homicides are counted on this machine", param_hint="--engine")
    counted = "violent" if by_years else source
    if dask is not None:
        from geo import scale

        with dask as client:
            try:
                if grid_ft:
                    result = scale.grid_hotspots(engine, client, period, cell_ft=grid_ft, measure=source,
                                                 permutations=permutations)
                else:
                    result = scale.npa_hotspots(engine, client, period, measure=source, permutations=permutations,
                                                per_1000=per_1000)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--grid-ft" if grid_ft else "--source") from exc
    elif grid_ft:
        try:
            result = grid_hotspots(engine, period, cell_ft=grid_ft, source=source, origin=origin,
                                   permutations=permutations)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--grid-ft") from exc
    elif not by_years:
        result = npa_hotspots(engine, period, source=source, origin=origin, permutations=permutations,
                              per_1000=per_1000)
    elif source == "homicides":
        try:
            result, info = homicide_hotspots(engine, _years(years), permutations=permutations, per_1000=per_1000)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        params = {**info, "source": "homicides", "permutations": permutations, **rate}
        counted = "homicide victims"
        click.echo(f"source: homicides (CMPD Homicide layer), {info['years'][0]}-{info['years'][1]}: "
                   f"{info['victims']:,} victims, {info['victims_without_npa']:,} without a location left out")
    else:
        span = _years(years) or (2019, 2021)
        try:
            result = offense_hotspots(engine, span, list(category) or None, permutations=permutations,
                                      per_1000=per_1000)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        params = {"years": list(span), "categories": list(category) or ["Violent Crime"], "source": "offenses",
                  "permutations": permutations, **rate}
        click.echo("source: offenses: CMPD's published violent offense counts per NPA")
    if not by_years:
        params = {"period": [str(period.start_date), str(period.end_date)], "source": source, "origin": origin,
                  "source_words": src.describe(origin), "permutations": permutations,
                  **({"measure": source} if source in ("labelled", "expected") else {}),
                  **(result.attrs["cell_size"].as_params() if grid_ft else rate)}
        if source in ("labelled", "expected"):
            model_version = _current_model(engine)
    if grid_ft:
        choice = result.attrs["cell_size"]
        click.echo(f"grid cells: {choice.cell_ft:,.0f} ft ({choice.rule}: {choice.reason})")
    if per_1000:
        left = result.attrs["left_out"]
        click.echo(f"value: {counted} per 1,000 residents; {left['npas_without_residents']} NPAs without residents "
                   f"left out ({left['events_in_them']:,.1f} {counted} in them)")
    total_of = "event_count" if "event_count" in result else "value"
    for name, n in result["hotspot_class"].value_counts().items():
        total = result.loc[result["hotspot_class"] == name, total_of].sum()
        click.echo(f"{name:28} {n:>5} {'cells' if grid_ft else 'NPAs'}, {total:>10,.1f} {counted}")
    hot = result[result["hotspot_class"].str.startswith("Hot")].sort_values("gi_z", ascending=False)
    if len(hot) and not grid_ft:
        shown = "{:,.2f}/1,000" if per_1000 else "{:,.0f}"
        click.echo("\nhottest NPAs: " + ", ".join(f"{int(r.npa_id)} (z {r.gi_z:.1f}, {shown.format(r.value)})"
                                                 for r in hot.head(10).itertuples()))
    if save and grid_ft:
        run_id = save_cell_results(engine, RunSpec(RunKind.CALLS_GRID_HOTSPOTS, params, model_version), result,
                                   result.attrs["cell_size"].cell_ft)
        click.echo(f"saved as analysis run {run_id}")
    elif save:
        kind = source if by_years else "calls"  # point sources share the map's kind; params name the source
        run_id = save_npa_results(engine, RunSpec(RunKind.npa_hotspots(kind), params, model_version), result)
        click.echo(f"saved as analysis run {run_id}")
    if out:
        result.to_file(out)
        click.echo(f"wrote {out}")


@stats.command("monthly")
@_from
@_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="city", show_default=True)
@click.option("--category", help="Only this category.")
@_save
def stats_monthly_cmd(start: str | None, end: str | None, by: str, category: str | None, save: bool) -> None:
    """Monthly trend: calls, labelled-violent and expected-violent calls per month and area."""
    from geo.metrics import monthly_trend

    period = _period(start, end, category=category)
    table = monthly_trend(_engine(), period, by)
    if save:
        _save_table("monthly_trend", {"period": [period.start_date, period.end_date], "by": by, "category": category}, table)
    click.echo(f"{by:10}{'month':>9}{'calls':>10}{'violent':>9}{'expected':>10}")
    for r in table.itertuples():
        click.echo(f"{str(r.area):10}{r.month:>9}{r.calls:>10,}{r.labelled_violent:>9,}{r.expected_violent:>10,.1f}")


@stats.command("indicators")
@_from
@_to
@click.option("--permutations", default=999, show_default=True, help="Permutations of whole NPA series.")
@click.option("--seed", default=0, show_default=True, help="Seed of the permutations (same seed, same p-values).")
@_save
def stats_indicators_cmd(start: str | None, end: str | None, permutations: int, seed: int, save: bool) -> None:
    """Call categories that go with more violent incidents the next month, within NPAs (association, not cause)."""
    from geo.metrics import leading_indicators

    period = _period(start, end)
    table = leading_indicators(_engine(), period, permutations=permutations, seed=seed)
    info = table.attrs
    if save:
        _save_table("leading_indicators", {"period": [period.start_date, period.end_date], "permutations": permutations,
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
@_from
@_to
@click.option("--by", type=click.Choice(["division", "npa"]), default="npa", show_default=True)
@_save
def stats_outreach_cmd(start: str | None, end: str | None, by: str, save: bool) -> None:
    """Areas where mental health, welfare, domestic or disorder calls dominate: candidates for non-police responses."""
    from geo.metrics import outreach_flags

    period = _period(start, end)
    table = outreach_flags(_engine(), period, by)
    if save:
        _save_table("outreach_flags", {"period": [period.start_date, period.end_date], "by": by}, table)
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
        totals = offense_totals(_engine(), area, span)
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


# --- API tokens ------------------------------------------------------------------------------
@main.group()
def token() -> None:
    """Access tokens for the web API (POST /api/calls, and reads with HOTSPOTS_REQUIRE_READ_TOKEN)."""


@token.command("new")
@click.option("--name", required=True, help="Who holds the token, e.g. cad-feed (letters, digits, _ . -).")
@click.option("--days", type=click.IntRange(min=1), help="Expire after this many days (default: never).")
def token_new_cmd(name: str, days: int | None) -> None:
    """Print a new random token once, and the entry to add to HOTSPOTS_API_TOKENS (only its hash)."""
    from geo.auth import TokenConfigError, make_entry, new_token

    secret = new_token()
    try:
        entry = make_entry(name, secret, days)
    except TokenConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    click.echo(f"token (shown once; give it to {name}, it is not stored anywhere):")
    click.echo(f"  {secret}")
    click.echo("entry for HOTSPOTS_API_TOKENS (comma-separate several):")
    click.echo(f"  {entry.entry()}")
    if entry.expires is not None:
        click.echo(f"expires {entry.expires.isoformat()}")


@token.command("list")
def token_list_cmd() -> None:
    """The token entries configured in HOTSPOTS_API_TOKENS: names and expiry (never hashes)."""
    from datetime import datetime, timezone

    from geo.auth import TokenConfigError, parse_tokens
    from geo.settings import server_settings

    try:
        entries = parse_tokens(server_settings().api_tokens)
    except TokenConfigError as exc:
        raise click.ClickException(f"HOTSPOTS_API_TOKENS: {exc}") from None
    if not entries:
        click.echo("no tokens configured (HOTSPOTS_API_TOKENS is empty): POST /api/calls refuses every request")
    now = datetime.now(timezone.utc)
    for e in entries:
        state = "never expires" if e.expires is None else (
            f"expired {e.expires.isoformat()}" if e.expires <= now else f"expires {e.expires.isoformat()}")
        click.echo(f"{e.name}: {state}")


# --- exports ---------------------------------------------------------------------------------
@main.command("export")
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
    from geo.settings import locale_settings

    ext = (fmt or out.suffix.lstrip(".")).lower()
    # Long exports show progress on a terminal (never in a captured or piped log).
    progress = (lambda n: click.echo(f"  {n:,} rows", err=True)) if sys.stderr.isatty() else None
    try:
        table = catalog_layer(layer).filter_table or "calls"
        if ext != "shp":   # shp: the zipped shapefile's files, written unzipped beside --out
            export_format(ext)
        engine = _engine()
        flt = parse_filter({k: v for k, v in filters.items() if v is not None}, table=table,
                           divisions=division_names(engine),
                           as_of=lambda: latest_call_date(engine, locale_settings().timezone))
        job = write_export(engine, layer, ext, flt, out, run, progress=progress)
    except ParameterError as exc:
        option = {"layer": "LAYER", "format": "--format (or --out's extension)", "start": "--from", "end": "--to"}.get(
            exc.parameter, "--" + exc.parameter.replace("_", "-"))
        raise click.BadParameter(exc.message, param_hint=option) from None
    except NoSavedRun as exc:
        raise click.ClickException(str(exc)) from None
    run_note = f" (analysis run {job.run})" if job.run is not None else ""
    click.echo(f"wrote {job.rows:,} {layer} rows{run_note} to {out}")


@main.command("report")
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

    engine = _engine()
    try:
        report = write_report(engine, division_filter(engine, division, start, end, preset), out)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.parameter}") from exc
    hot = int(report.npas["hotspot_class"].str.startswith("Hot").sum())
    click.echo(f"{out}: {report.name}, {report.period[0]} to {report.period[1]}, {len(report.npas)} NPAs "
               f"({hot} hot spots), {report.totals['violent']:,} violent of {report.totals['calls']:,} calls")


# --- saved analysis runs (issue 14): `hotspots runs list`, `hotspots runs export RUN --out FILE` ----
@main.group("runs")
def runs_group() -> None:
    """Saved analysis runs (hot spots, tables, accuracy): list them, write one to a file."""


@runs_group.command("list")
@click.option("--kind", help="Only runs of this kind, e.g. calls_npa_hotspots or compstat.")
def runs_list_cmd(kind: str | None) -> None:
    """Every saved analysis run, newest first: id, kind, source, period, when it was created and its rows."""
    from datetime import timezone

    from geo.filters import ParameterError
    from geo.runs import list_runs

    try:
        with _engine().connect() as conn:
            saved = list_runs(conn, kind)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint="--kind") from None
    if not saved:
        click.echo("no analysis runs saved yet (add --save to `hotspots hotspots`, `stats`, `compstat`, ...)")
        return
    click.echo(f"{'run':>6}  {'kind':24}{'source':10}{'period':26}{'created (UTC)':18}{'rows':>8}")
    for r in saved:
        created = r.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{r.run_id:>6}  {str(r.kind):24}{r.source or '-':10}{r.period or '-':26}{created:18}{r.rows:>8,}")


@runs_group.command("export")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write; its extension picks the format (hot spots: zip, gpkg, geojson, csv, shp; tables: "
                   "csv, json).")
@click.option("--format", "fmt", help="Format when --out has no telling extension.")
def runs_export_cmd(run_id: int, out: Path, fmt: str | None) -> None:
    """Write saved analysis run RUN to a file: hot spots as their map layer, tables as rows."""
    from geo.filters import ParameterError
    from geo.export import write_run
    from geo.runs import NoSavedRun

    ext = (fmt or out.suffix.lstrip(".")).lower()
    try:
        written = write_run(_engine(), run_id, ext, out)
    except ParameterError as exc:
        hint = "--format (or --out's extension)" if exc.parameter == "format" else "RUN"
        raise click.BadParameter(exc.message, param_hint=hint) from None
    except NoSavedRun as exc:
        raise click.BadParameter(str(exc), param_hint="RUN") from None
    shape = f"as {written.layer}" if written.layer else "as a table"
    click.echo(f"wrote {written.rows:,} rows of analysis run {run_id} ({written.run.kind}) {shape} to {out}")


# --- pages: --html / --png on `model report` and `stats compstat` (geo/pages.py) -------------------
# One self-contained block: it adds the two options to the existing commands without editing them.
def _write_page(html: str, html_path: Path | None, png_path: Path | None, size: tuple[int, int]) -> None:
    from geo.pages import write_png

    if html_path:
        html_path.write_text(html, encoding="utf-8")
        click.echo(f"wrote {html_path} (open it in a browser; it needs no network)")
    if png_path:
        try:
            write_png(html, png_path, size)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"wrote {png_path} ({size[0]}x{size[1]} PNG)")


def _with_page_options(command: click.Command, render, size: tuple[int, int], extra: list[click.Option] = ()) -> None:
    """Give `command` --html FILE and --png FILE: with either, it writes `render(**options)`'s page instead of printing."""
    command.params.extend([
        *extra,
        click.Option(["--html", "html_path"], type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the report as a standalone HTML page with charts (opens offline)."),
        click.Option(["--png", "png_path"], type=click.Path(dir_okay=False, path_type=Path),
                     help=f"Write a {size[0]}x{size[1]} PNG of that page (headless Chromium)."),
    ])
    printed = command.callback
    names = [o.name for o in extra]

    def callback(html_path: Path | None, png_path: Path | None, **options):
        if html_path is None and png_path is None:
            for name in names:
                if options.get(name) is not None:
                    raise click.BadParameter("only with --html or --png", param_hint=f"--{name.replace('_', '-')}")
                options.pop(name, None)
            return printed(**options)
        _write_page(render(**options), html_path, png_path, size)

    command.callback = callback


def _model_page(version: str | None, top: int) -> str:
    from geo.classify import ModelError
    from geo.pages import model_page

    try:
        return model_page(_engine(), version, top)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc


def _compstat_page(as_of: str | None, by: str, category: str | None, source: str | None, violent_only: bool,
                   origin: str | None, compare: str, save: bool, division: str | None) -> str:
    from geo.filters import ParameterError
    from geo.pages import compstat_page

    if division is None:
        raise click.BadParameter("--html/--png draw one division's page: name it, e.g. --division Central",
                                 param_hint="--division")
    for name, value in (("--by", by != "city"), ("--category", category), ("--save", save)):
        if value:
            raise click.BadParameter("not with --html/--png (the page is per division, of every category)",
                                     param_hint=name)
    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--as-of") from None
    try:
        return compstat_page(_engine(), division, as_of=day, source="labelled" if violent_only else source,
                             origin=origin, compare=compare)
    except ParameterError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.parameter}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _register_pages() -> None:
    from geo.pages import COMPSTAT_PNG, MODEL_PNG

    _with_page_options(model_report_cmd, _model_page, MODEL_PNG)
    _with_page_options(stats_compstat_cmd, _compstat_page, COMPSTAT_PNG, [click.Option(
        ["--division"], help="With --html/--png: the division (code or name) whose CompStat page to draw "
                             "(default as-of: the day after the newest call).")])


_register_pages()


# --- staffing simulation and what-if (wt-staff: one block, to move into the cli package) -----------------
def _staffing_configs(config_path: Path | None, shifts: str | None, targets: str | None):
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


def _write_frame(table, out_path: Path) -> None:
    if out_path.suffix.lower() == ".csv":
        table.to_csv(out_path, index=False, float_format="%.4f")
    else:
        out_path.write_text(table.to_json(orient="records", indent=1, double_precision=6))


_staff_config = click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path),
                             help="Weights file (default: geo/allocation.toml; [simulation] holds the assumed times).")
_staff_shifts = click.option("--shifts", help="Override the config's shifts, e.g. day=6-14,evening=14-22,night=22-6.")
_staff_targets = click.option("--targets", help="Override the targets, e.g. p_wait=0.1,p1_wait_min=2,utilisation=0.6.")


@main.command("simulate")
@click.option("--officers", type=int, help="Officers for both plans (default: what the queueing targets need).")
@_from
@_to
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
    config, sim = _staffing_configs(config_path, shifts, targets)
    try:
        result = simulate_plans(_engine(), _period(start, end), config, sim, officers, help_neighbours=not no_help)
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
        _write_frame(table, out_path)
        click.echo(f"wrote {len(table)} rows to {out_path}")


@main.command("whatif")
@click.option("--move", "move_text", default="",
              help="Officers to move, OFFICERS:DIVISION/SHIFT->DIVISION/SHIFT (several separated by ';'), "
                   "e.g. '4:01/night->05/night'; they move as whole unit-posts.")
@click.option("--officers", type=int, help="Officers placed by marginal allocation (default: what the targets need).")
@_from
@_to
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

    config, sim = _staffing_configs(config_path, None, None)
    try:
        moves = parse_moves(move_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--move") from exc
    try:
        result = whatif_from_db(_engine(), _period(start, end), config, officers, moves, targets, not no_simulate, sim)
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



# --- police metrics (geo/police.py; docs/methods.md "Police metrics") ----------------------------------
# One self-contained block: `hotspots stats response`, `stats workload`, `stats clearance`.
_police_format = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                              show_default=True, help="How to print the rows (csv: an export to redirect or --out).")
_police_out = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                           help="Write the rows as CSV to this file instead of printing them.")


def _police_filter(start: str | None, end: str | None, division: str | None, category: str | None, violent_only: bool):
    return _period(start, end, division=division, category=category, violent=True if violent_only else None)


def _police_rows(table, fmt: str, out: Path | None, notes: list[str]) -> None:
    """Print a metrics frame as a table, CSV or JSON (or write CSV to --out), the notes after a table."""
    if out is not None:
        table.to_csv(out, index=False)
        click.echo(f"wrote {len(table):,} rows to {out}")
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=1))
    else:
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}") if len(table) else "no calls")
    if fmt == "table" or out is not None:
        for note in notes:
            click.echo(note)


def _police_by(by: str) -> list[str]:
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


@stats.command("response")
@_from
@_to
@click.option("--by", default="priority", show_default=True,
              help="Comma-separated groups: city, division, npa, priority, hour, weekday, day, month, category.")
@click.option("--interval", type=click.Choice(["all", "response", "dispatch", "travel", "on_scene"]), default="all",
              show_default=True, help="all: response (received to on scene) and its parts, dispatch delay and travel.")
@click.option("--division", help="Only this division code.")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@click.option("--violent-only", is_flag=True, help="Only calls the model labelled violent.")
@_police_format
@_police_out
@click.option("--save", is_flag=True, help="Also store the rows as an analysis run: with division in --by, the OGC "
              "collection response_times draws them on the division polygons.")
def stats_response_cmd(start: str | None, end: str | None, by: str, interval: str, division: str | None,
                       category: str | None, violent_only: bool, fmt: str, out: Path | None, save: bool) -> None:
    """Response time (received to on scene), dispatch delay and travel: median, 90th percentile, mean and n, in minutes."""
    from geo.police import interval_stats, response_times

    groups = _police_by(by)
    flt = _police_filter(start, end, division, category, violent_only)
    engine = _engine()
    table = (response_times(engine, flt, groups) if interval == "all"
             else interval_stats(engine, flt, interval, groups).assign(interval=interval))
    if interval != "all":
        table = table[["interval", *[c for c in table.columns if c != "interval"]]]
    first = table[table["interval"] == table["interval"].iloc[0]] if len(table) else table
    notes = [_left_out_note(first)] if len(first) else []
    _police_rows(table, fmt, out, notes)
    if save:
        _save_table("response_times", {"period": [flt.start_date, flt.end_date], "by": ",".join(groups),
                                       "interval": interval, "division": division, "category": category,
                                       "violent_only": violent_only}, table)


@stats.command("workload")
@_from
@_to
@click.option("--by", default="category", show_default=True,
              help="Comma-separated groups for time on scene and unit-hours: city, division, priority, hour, category, ...")
@click.option("--officers", type=int, help="Officers to place by the queueing plan (default: the officers the plan needs).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Staffing configuration (default geo/allocation.toml).")
@click.option("--division", help="Only this division code.")
@click.option("--category", help="Only this category (see `hotspots taxonomy`).")
@_police_format
@_police_out
def stats_workload_cmd(start: str | None, end: str | None, by: str, officers: int | None, config_path: Path | None,
                       division: str | None, category: str | None, fmt: str, out: Path | None) -> None:
    """Time on scene and unit-hours by group; then, per division, calls and unit-hours per officer and the
    obligated share of on-duty time (CPSM's rule of 60), officers and on-duty hours from the queueing plan."""
    from geo.police import plan_roster, unit_hours, workload_per_officer
    from geo.staffing import StaffingConfig, build_plan

    groups = _police_by(by)
    try:
        config = StaffingConfig.load(config_path) if config_path else StaffingConfig.load()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    flt = _police_filter(start, end, division, category, False)
    engine = _engine()
    kw = {"units_default": config.units_default, "units_violent": config.units_violent}
    work = unit_hours(engine, flt, groups, **kw)
    _police_rows(work, fmt, out, [_left_out_note(work)] if len(work) else [])
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
    _police_rows(per, "table", None, ["obligated_share above 0.60 breaks CPSM's rule of 60 (proactive time below 40%)"])


@stats.command("clearance")
@_from
@_to
@click.option("--by", type=click.Choice(["city", "division", "npa"]), default="division", show_default=True)
@_police_format
@_police_out
def stats_clearance_cmd(start: str | None, end: str | None, by: str, fmt: str, out: Path | None) -> None:
    """Clearance rate as the FBI defines it (cleared by arrest or exceptionally, over crimes reported) per area."""
    from geo.police import clearance

    _police_rows(clearance(_engine(), _period(start, end), by), fmt, out,
                 ["cleared = by arrest (any agency) or exceptionally; Unfounded reports are not crimes (docs/methods.md)"])


if __name__ == "__main__":
    main()
