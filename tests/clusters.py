"""Private PostgreSQL+PostGIS clusters that tests start, own and destroy."""

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
