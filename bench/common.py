"""Set-up shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from geo.db import EmbeddedCluster, make_engine
from geo.ingest.reference import DataDir, load_reference
from geo.migrate import migrate


def reference_database(cluster: EmbeddedCluster, name: str, data_dir: Path) -> sa.Engine:
    """A new database `name` on the bench cluster (dropped first if it exists), migrated and holding
    the real reference data (divisions, NPAs, offense counts)."""
    url = make_url(cluster.url())
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    engine = make_engine(url.set(database=name).render_as_string(hide_password=False))
    migrate(engine)
    load_reference(engine, DataDir(data_dir))
    return engine
