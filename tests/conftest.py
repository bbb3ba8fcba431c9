"""One real PostGIS for the whole test session, and a fresh database per test cloned from a template."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from geo.db import make_engine
from geo.ingest.reference import DataDir, load_reference
from geo.migrate import migrate
from tests.clusters import cloned_database, private_cluster

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "hotspots_template"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real CMPD data (HOTSPOTS_DATA_DIR); its absence fails the run, never skips it."""
    root = Path(os.environ.get("HOTSPOTS_DATA_DIR", REPO.parent / "shared" / "cmpd")).resolve()
    missing = DataDir(root).missing()
    if missing:
        pytest.fail(f"HOTSPOTS_DATA_DIR={root} lacks {missing}; the tests need the shared CMPD data", pytrace=False)
    return root


@pytest.fixture(scope="session")
def cluster():
    """A private PostgreSQL+PostGIS cluster started for this test session."""
    with private_cluster("hotspots-test-pg-") as c:
        yield c


@pytest.fixture(scope="session")
def server_url(cluster) -> sa.URL:
    """URL of the session's server, pointing at the maintenance database."""
    return make_url(cluster.url())


def _admin(server_url: sa.URL):
    return sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def template_db(server_url, data_dir) -> str:
    """A migrated database holding the real divisions, NPAs and offense counts, used as a template."""
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.exec_driver_sql(f"CREATE DATABASE {TEMPLATE}")
    engine = make_engine(server_url.set(database=TEMPLATE).render_as_string(hide_password=False))
    migrate(engine)
    load_reference(engine, DataDir(data_dir))
    engine.dispose()
    admin.dispose()
    return TEMPLATE


@pytest.fixture
def engine(server_url, template_db):
    """An engine on a new database with schema and reference data; dropped after the test."""
    with cloned_database(server_url, template_db) as (_, engine):
        yield engine


@pytest.fixture
def empty_engine(server_url):
    """An engine on a new, empty database (PostGIS not yet installed); dropped after the test."""
    with cloned_database(server_url, "template0") as (_, engine):
        yield engine


def pytest_sessionfinish(session, exitstatus):
    """A skipped test is a failed test here: PostGIS and browser tests must really run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"{len(skipped)} test(s) skipped: failing the run (skips are not allowed)", red=True)
        session.exitstatus = 1
