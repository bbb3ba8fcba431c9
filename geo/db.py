"""Database access: the engine factory, the embedded PostgreSQL+PostGIS cluster manager, bulk reads
(COPY to a frame) and table maintenance (CLUSTER)."""

from __future__ import annotations

import io
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from geo.catalog import LAYERS
from geo.settings import DatabaseSettings, database_settings

if TYPE_CHECKING:
    import pandas as pd

PG_BIN_CANDIDATES = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15, 14)]
DB_NAME = "hotspots"
DB_USER = "hotspots"

# Server settings for the embedded cluster: sized for a 2-core laptop doing bulk loads.
# Durability stays on (fsync, synchronous_commit): a crash must never lose a committed batch.
EMBEDDED_SERVER_CONF = {
    "shared_buffers": "512MB",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "on",
    # No replicas on a laptop: minimal WAL lets bulk loads into new/emptied tables skip WAL.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "listen_addresses": "'127.0.0.1'",
    "log_min_duration_statement": "5000",
}


# pg_ctl shutdown modes: wait for clients, roll back open sessions, or kill at once (crash-like).
STOP_MODES = ("smart", "fast", "immediate")


class DatabaseNotConfigured(RuntimeError):
    """Raised when neither DATABASE_URL nor a running embedded cluster is available."""


class ClusterError(RuntimeError):
    """Raised when the embedded cluster cannot be created, started or stopped."""


def find_pg_bin() -> Path:
    """Directory holding initdb/pg_ctl of the newest installed PostgreSQL server."""
    override = os.environ.get("HOTSPOTS_PG_BIN")
    candidates = [Path(override)] if override else PG_BIN_CANDIDATES
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ClusterError(
        "no PostgreSQL server binaries found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); install them with `make setup` or `apt-get install postgresql-15-postgis-3`"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL binds its own socket: connections of a stopped server lingering in TIME_WAIT
        # do not make the port busy, so a restart after a crash keeps its port (and clients' URLs).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class ClusterStatus:
    """What `hotspots db status` reports about the embedded cluster."""

    initialised: bool
    running: bool
    url: str | None
    data_dir: Path
    port: int | None
    postgis_version: str | None = None


class EmbeddedCluster:
    """A private PostgreSQL cluster under a directory (default `var/pg`), run as `postgres` when root."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.data_dir = self.root / "data"
        self.run_dir = self.root / "run"
        self.log_file = self.root / "postgres.log"
        self.meta_file = self.root / "cluster.json"

    # -- helpers -------------------------------------------------------------------------
    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run_as_owner(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        # PostgreSQL refuses to run as root, so as root every server command runs as `postgres`.
        cmd = ["runuser", "-u", "postgres", "--", *args] if self._as_root else args
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    def _chown_to_owner(self, path: Path) -> None:
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")]:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def _meta(self) -> dict:
        return json.loads(self.meta_file.read_text())

    def _write_meta(self, meta: dict) -> None:
        self.meta_file.write_text(json.dumps(meta, indent=2))
        self.meta_file.chmod(0o600)

    @property
    def initialised(self) -> bool:
        """True once initdb has run and the credentials file exists."""
        return (self.data_dir / "PG_VERSION").exists() and self.meta_file.exists()

    def url(self) -> str:
        """SQLAlchemy URL of the embedded database (TCP on 127.0.0.1, password auth)."""
        meta = self._meta()
        return (
            f"postgresql+psycopg2://{meta['user']}:{meta['password']}"
            f"@127.0.0.1:{meta['port']}/{meta['dbname']}"
        )

    def running(self) -> bool:
        """True when pg_ctl reports a server on this data directory."""
        if not self.initialised:
            return False
        res = self._run_as_owner([str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "status"])
        return res.returncode == 0

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> None:
        """Create the cluster (initdb) with a generated password, if it does not exist yet."""
        if self.initialised:
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ClusterError(f"{self.data_dir} exists but is not a complete cluster; remove it and retry")
        pg_bin = find_pg_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._chown_to_owner(self.root)
        res = self._run_as_owner(
            [
                str(pg_bin / "initdb"), "-D", str(self.data_dir), "-U", DB_USER,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8",
            ]
        )
        pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            hint = ""
            if "Permission denied" in res.stderr and self._as_root:
                hint = (
                    f"\nThe `postgres` user must be able to reach {self.root}; "
                    "put the checkout (or HOTSPOTS_VAR_DIR) somewhere it can, e.g. under /work or /srv."
                )
            raise ClusterError(f"initdb failed:\n{res.stderr.strip()}{hint}")
        conf = self.data_dir / "postgresql.auto.conf"
        with conf.open("a") as fh:
            for key, value in EMBEDDED_SERVER_CONF.items():
                fh.write(f"{key} = {value}\n")
        self._write_meta({"user": DB_USER, "password": password, "dbname": DB_NAME, "port": _free_port()})

    def start(self) -> None:
        """Start the server (reusing the stored port when it is still free) and create the database."""
        if self.running():
            return
        meta = self._meta()
        if not _port_is_free(meta["port"]):
            meta["port"] = _free_port()
            self._write_meta(meta)
        self.run_dir.mkdir(exist_ok=True)
        self._chown_to_owner(self.run_dir)
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown_to_owner(self.log_file)
        res = self._run_as_owner(
            [
                str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                "-t", "60", "-o", f"-p {meta['port']} -k {self.run_dir}", "start",
            ]
        )
        if res.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise ClusterError(f"pg_ctl start failed:\n{res.stderr.strip()}\n{tail}")
        self._ensure_database()

    def _ensure_database(self) -> None:
        meta = self._meta()
        admin = make_url(self.url()).set(database="postgres")
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": meta["dbname"]}
                ).scalar()
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{meta["dbname"]}"'))
        finally:
            engine.dispose()
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
        except sa.exc.DBAPIError as exc:
            raise ClusterError(
                f"PostGIS is not installed for this PostgreSQL server ({exc.orig}); "
                "run `make setup` or `apt-get install postgresql-15-postgis-3`"
            ) from exc
        finally:
            engine.dispose()

    def up(self) -> str:
        """Initialise if needed, start, and return the database URL."""
        self.init()
        self.start()
        return self.url()

    def down(self) -> None:
        """Stop the server cleanly (fast shutdown: open sessions are rolled back)."""
        self.stop("fast")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with pg_ctl's `smart`, `fast` or `immediate` shutdown.

        `immediate` kills every server process at once, as a crash or power cut would; the next
        start runs crash recovery from the WAL. The stored port is kept, so `start()` brings the
        server back at the same URL.
        """
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode {mode!r}: expected one of {', '.join(STOP_MODES)}")
        if not self.running():
            return
        res = self._run_as_owner([str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])
        if res.returncode != 0:
            raise ClusterError(f"pg_ctl stop -m {mode} failed: {res.stderr.strip()}")

    def destroy(self) -> None:
        """Stop the server and delete the cluster directory."""
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> ClusterStatus:
        """Initialised/running state, URL (password masked) and PostGIS version when reachable."""
        if not self.initialised:
            return ClusterStatus(False, False, None, self.data_dir, None)
        running = self.running()
        meta = self._meta()
        postgis = None
        if running:
            postgis = postgis_version(self.url())
        masked = make_url(self.url()).render_as_string(hide_password=True)
        return ClusterStatus(True, running, masked, self.data_dir, meta["port"], postgis)


def postgis_version(url: str) -> str | None:
    """PostGIS version installed in the database at `url`, or None if the extension is missing."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            ).scalar()
    finally:
        engine.dispose()


def resolve_url(settings: DatabaseSettings | None = None) -> str:
    """DATABASE_URL if set, otherwise the running embedded cluster's URL."""
    settings = settings or database_settings()
    if settings.database_url:
        url = settings.database_url
        # Accept plain postgres:// URLs (docker, Heroku style) and use psycopg2.
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
        return url
    cluster = EmbeddedCluster(settings.embedded_dir)
    if not cluster.initialised:
        raise DatabaseNotConfigured(
            "no database: DATABASE_URL is not set and there is no embedded cluster under "
            f"{settings.embedded_dir}. Run `hotspots db up` (or set DATABASE_URL)."
        )
    if not cluster.running():
        raise DatabaseNotConfigured(
            f"the embedded cluster under {settings.embedded_dir} is stopped. Run `hotspots db up`."
        )
    return cluster.url()


def make_engine(url: str | None = None, *, statement_timeout_ms: int | None = None,
                settings: DatabaseSettings | None = None) -> Engine:
    """An engine on `url` (default: resolve_url(settings)), with an optional statement timeout (default:
    the settings'). `settings` are read from the environment only when something is not given."""
    if url is None or statement_timeout_ms is None:
        settings = settings or database_settings()
    url = url or resolve_url(settings)
    timeout = settings.statement_timeout_ms if statement_timeout_ms is None else statement_timeout_ms
    connect_args = {"application_name": "cmpd-hotspots"}
    if timeout:
        connect_args["options"] = f"-c statement_timeout={int(timeout)}"
    # No hstore columns here: skip psycopg2's hstore OID lookup on every new connection.
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, use_native_hstore=False)


def cluster_points(engine: Engine, table: str = "calls") -> None:
    """Rewrite a point table in space order (CLUSTER on its GiST index) and re-analyse it.

    Neighbouring points then share disk pages, so a tile reads a few pages instead of one per point
    (NOTES.md: z12/z14 tiles about 30% faster). Takes an exclusive lock for the rewrite: run it in
    a quiet period, e.g. after a bulk load (`hotspots db cluster`). New rows are appended unsorted,
    so re-run it after large loads.
    """
    lyr = LAYERS[table]
    if lyr.filter_table is None:
        raise ValueError(f"{table!r} is not a point layer; one of calls, incidents")
    name = lyr.source.table
    index = f"{name}_geom_idx"        # named by geo/sql/migrations/001_core.sql
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CLUSTER {name} USING {index}")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"ANALYZE {name}")


def read_query_frame(conn: Connection, sql: str, params: dict, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Run a SELECT (psycopg2 `%(name)s` binds) through COPY ... TO STDOUT and parse it with Arrow (much faster
    than row fetches).

    The one place that takes the driver's own bind style: COPY goes through psycopg2's cursor, so callers
    compile their SQLAlchemy statement with `geo.filters.compile_driver` first.
    """
    # Imported here: the cluster commands import this module and need none of them.
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    raw = conn.connection.driver_connection
    cursor = raw.cursor()
    try:
        statement = cursor.mogrify(sql, params).decode()
        buf = io.BytesIO()
        cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
    finally:
        cursor.close()
    buf.seek(0)
    if buf.getbuffer().nbytes == 0:
        return pd.DataFrame()
    # Codes such as division '01' must stay text, not become the number 1.
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in text_columns})
    return pacsv.read_csv(buf, convert_options=convert).to_pandas()
