"""Private PostgreSQL+PostGIS clusters and databases that tests start, own and destroy, and a
by-value snapshot of a database to compare before and after."""

from __future__ import annotations

import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.db import EmbeddedCluster, make_engine


@contextmanager
def private_cluster(prefix: str) -> Iterator[EmbeddedCluster]:
    """A cluster in a new temporary directory, started, and deleted on exit."""
    # mkdtemp is 0700; the postgres user (used when running as root) must be able to enter it.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(root.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
    cluster = EmbeddedCluster(root / "pg")
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.destroy()
        if root.exists() and not any(root.iterdir()):
            root.rmdir()


@contextmanager
def cloned_database(server_url: sa.URL, template: str, prefix: str = "t_") -> Iterator[tuple[str, Engine]]:
    """A new database cloned from `template` on the cluster at `server_url`: (name, engine); dropped on exit."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template}")
    engine = make_engine(server_url.set(database=name).render_as_string(hide_password=False))
    try:
        yield name, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def snapshot(engine: Engine) -> dict[str, tuple[int, str]]:
    """Per table of the public schema: (rows, md5 over the rows' text in sorted order); plus the
    indexes and constraints of those tables as one (count, md5) each. Equal snapshots: the same
    data, indexes and constraints, value for value."""
    with engine.connect() as conn:
        tables = [t for (t,) in conn.execute(sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'spatial_ref_sys' ORDER BY 1"))]
        out = {}
        for table in tables:
            count, digest = conn.exec_driver_sql(
                f"SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), ''))"
                f' FROM "{table}" r').one()
            out[table] = (int(count), digest)
        out["(indexes)"] = tuple(conn.execute(sa.text(
            "SELECT count(*), md5(string_agg(indexdef, E'\\n' ORDER BY indexdef)) FROM pg_indexes"
            " WHERE schemaname = 'public' AND tablename <> 'spatial_ref_sys'")).one())
        out["(constraints)"] = tuple(conn.execute(sa.text(
            "SELECT count(*), md5(string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), E'\\n'"
            " ORDER BY conrelid::regclass::text, pg_get_constraintdef(oid)))"
            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace")).one())
    return out
