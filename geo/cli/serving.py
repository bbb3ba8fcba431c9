"""`hotspots demo-data`, `demo`, `serve` and `summary`: the demo, the web server and what is stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from geo import db as dbmod
from geo.cli.context import print_reports, session
from geo.ingest.batch import IngestError


# --- demo data -------------------------------------------------------------------------------
@click.command("demo-data")
@click.option("--calls", "n_calls", default=500_000, show_default=True, help="Number of calls for service.")
@click.option("--from", "--start", "start", default=None, help="First day (YYYY-MM-DD); default: the demo year's first day (DEMO_START in geo/synth.py).")
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
        raise click.BadParameter(f"{start!r} is not a date (YYYY-MM-DD)", param_hint="--from") from None
    try:
        reports = generate_and_load(
            n_calls=n_calls, start=first, days=DEMO_DAYS if days is None else days, seed=seed, out=out,
            dirty=not clean, load=not no_load, engine=None if no_load else session().engine,
        )
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    print_reports(reports)


@click.command("demo")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Start the web server at the end.")
def demo_cmd(serve: bool) -> None:
    """Everything `make demo` does: database, reference and demo data, model, hot spots, then the server."""
    from geo.demo import run_demo

    if serve:
        # Before the long load: a port another server holds would only fail at the very end.
        s = session().server
        taken = _port_taken(s.host, s.port)
        if taken:
            raise click.ClickException(
                f"port {s.port} on {s.host} is in use ({taken}); nothing was started or loaded. Stop the other "
                f"server or choose a free port: HOTSPOTS_PORT={s.port + 1} make demo")
    stop_hint = ("The private database keeps running; stop it with `.venv/bin/hotspots db down`."
                 if not session().database.database_url else "")
    try:
        ctx = session()
        run_demo(echo=click.echo, database=ctx.database, data_settings=ctx.data, tz=ctx.locale.timezone)
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


    s = session().server
    host, port, workers = host or s.host, port or s.port, workers or s.workers
    # Resolve the database now, so a stopped cluster is reported here rather than per request.
    try:
        os.environ.setdefault("DATABASE_URL", dbmod.resolve_url(session().database))
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


@click.command("serve")
@click.option("--host", help="Address to listen on [HOTSPOTS_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port [HOTSPOTS_PORT, default 8000].")
@click.option("--workers", type=int, help="gunicorn worker processes [HOTSPOTS_WORKERS, default 2].")
def serve_cmd(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the web app (map, OGC API - Features, tiles, exports, live ingest) under gunicorn."""
    _serve(host, port, workers)


@click.command("summary")
def summary_cmd() -> None:
    """Row counts of every table and the period the calls and incidents cover."""
    from geo.summary import summary_lines

    for line in summary_lines(session().engine):
        click.echo(line)
