"""What every command shares: the settings, read once per invocation, and the one engine built from them."""

from __future__ import annotations

from functools import cached_property

import click
import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import db as dbmod
from geo.ingest.batch import IngestError, LoadReport
from geo.settings import (ArcGISSettings, DatabaseSettings, DataSettings, LocaleSettings, ServerSettings,
                          arcgis_settings, data_settings, database_settings, locale_settings, server_settings)


class CliContext:
    """The settings of one `hotspots` invocation, each group read from the environment once on first use,
    and the engine built from them (disposed when the command ends)."""

    def __init__(self) -> None:
        self._engine: Engine | None = None

    # Read lazily: `hotspots --help` or a command that never touches the database must not fail on a
    # setting it does not use.
    @cached_property
    def database(self) -> DatabaseSettings:
        """Where the database is (DATABASE_URL or the private cluster)."""
        return database_settings()

    @cached_property
    def data(self) -> DataSettings:
        """Where the reference data and the demo files are."""
        return data_settings()

    @cached_property
    def locale(self) -> LocaleSettings:
        """The time zone local dates are counted in."""
        return locale_settings()

    @cached_property
    def server(self) -> ServerSettings:
        """The web server's address, workers and tokens."""
        return server_settings()

    @cached_property
    def arcgis(self) -> ArcGISSettings:
        """The ArcGIS feeds `sync` reads."""
        return arcgis_settings()

    def cluster(self) -> dbmod.EmbeddedCluster:
        """The private PostGIS cluster under HOTSPOTS_VAR_DIR."""
        return dbmod.EmbeddedCluster(self.database.embedded_dir)

    def database_url(self) -> str:
        """DATABASE_URL or the running private cluster's URL; a click error saying what to do otherwise."""
        try:
            return dbmod.resolve_url(self.database)
        except dbmod.DatabaseNotConfigured as exc:
            raise click.ClickException(str(exc)) from exc

    @property
    def engine(self) -> Engine:
        """The one engine of this invocation, made on first use."""
        if self._engine is None:
            self._engine = dbmod.make_engine(self.database_url(),
                                             statement_timeout_ms=self.database.statement_timeout_ms)
        return self._engine

    def close(self) -> None:
        """Give back the engine's connections (tests run many commands in one process)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def session() -> CliContext:
    """The context of the running command (made by `main`; a fresh one outside a `hotspots` run)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(CliContext) if ctx is not None else None
    return found if found is not None else CliContext()


def print_reports(reports: list[LoadReport]) -> None:
    """Print each load report's summary lines."""
    for report in reports:
        for line in report.summary_lines():
            click.echo(line)


def run_load(fn, *args, **kwargs) -> None:
    """Run a loader and print its report(s); an IngestError becomes a one-line error."""
    try:
        reports = fn(*args, **kwargs)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    print_reports(reports if isinstance(reports, list) else [reports])


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
