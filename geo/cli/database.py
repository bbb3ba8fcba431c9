"""`hotspots db`: the private PostGIS cluster, migrations, backups and restores."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from geo import db as dbmod
from geo.cli.context import session
from geo.schedule import run_every


# --- database -----------------------------------------------------------------------------
@click.group()
def db() -> None:
    """Manage the database: the embedded cluster (up/down/status) and schema migrations."""


@db.command("up")
def db_up() -> None:
    """Create (first time) and start the embedded PostGIS cluster under var/pg, then migrate.

    With DATABASE_URL set, only checks that server and migrates it.
    """
    from geo.migrate import migrate

    if session().database.database_url:
        click.echo("DATABASE_URL is set: using that server, no embedded cluster started.")
    else:
        cluster = session().cluster()
        try:
            cluster.up()
        except dbmod.ClusterError as exc:
            raise click.ClickException(str(exc)) from exc
        status = cluster.status()
        click.echo(f"embedded PostGIS {status.postgis_version or '?'} running on port {status.port} ({status.data_dir})")
    engine = session().engine
    done = migrate(engine)
    click.echo(f"migrations applied now: {', '.join(m.name for m in done) or 'none (schema up to date)'}")


@db.command("down")
def db_down() -> None:
    """Stop the embedded cluster cleanly (data is kept for the next `db up`)."""
    cluster = session().cluster()
    if not cluster.initialised:
        click.echo("no embedded cluster to stop")
        return
    cluster.down()
    click.echo("embedded cluster stopped")


@db.command("status")
def db_status() -> None:
    """Report where the database is, whether it runs, PostGIS version and pending migrations."""
    from geo.migrate import pending

    settings = session().database
    if settings.database_url:
        url = make_url(session().database_url()).render_as_string(hide_password=True)
        click.echo(f"database: DATABASE_URL {url}")
    else:
        status = session().cluster().status()
        if not status.initialised:
            click.echo(f"embedded cluster: not created ({status.data_dir}); run `hotspots db up`")
            sys.exit(1)
        state = "running" if status.running else "stopped"
        click.echo(f"embedded cluster: {state}, port {status.port}, data {status.data_dir}")
        if not status.running:
            sys.exit(1)
        click.echo(f"url: {status.url}")
    engine = session().engine
    click.echo(f"postgis: {dbmod.postgis_version(engine.url.render_as_string(hide_password=False)) or 'not installed'}")
    todo = pending(engine)
    click.echo(f"pending migrations: {', '.join(m.name for m in todo) or 'none'}")


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations from geo/sql/migrations (recorded in schema_migrations)."""
    from geo.migrate import MigrationError, migrate

    try:
        done = migrate(session().engine)
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

    url = session().database_url()
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

    run_every(interval, scheduled, echo=click.echo, what="backup", stopped="backups stopped")

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

    if session().database.database_url:
        url = session().database_url()
    else:
        try:
            url = session().cluster().up()
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
    cluster_points(session().engine, table)
    click.echo(f"clustered {table} on its GiST index in {time.perf_counter() - t0:.1f} s")
