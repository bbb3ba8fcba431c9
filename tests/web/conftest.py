"""A served database for the web tests: a year of synthetic calls, a trained model, saved hot spots,
and the real CMPD Homicide layer.

Built once per session as a template database. Read-only tests share one copy (`web_url`); tests
that write (live ingest) get their own copy (`writable_url`). `live_server` runs the app on a real
socket for clients that speak HTTP themselves (GDAL, Chromium).
"""

from __future__ import annotations

import threading
import uuid
from datetime import date

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from geo.db import make_engine
from tests.servers import free_port
from web import create_app

WEB_TEMPLATE = "hotspots_web_template"
# The synthetic year the demo data covers; tests pick dates inside it.
YEAR = 2021


def _admin(server_url):
    return sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def _url(server_url, name: str) -> str:
    return server_url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def web_template(server_url, template_db, data_dir, tmp_path_factory) -> str:
    """Template database: reference data, 40k synthetic calls and incidents of 2021, labelled, hot spots and
    emerging hot spots saved, and the 933 real homicide victims of 2015-2025."""
    from geo.classify import label_calls, train
    from geo.demo import generate_and_load
    from geo.hotspots import grid_hotspots, npa_hotspots
    from geo.ingest.homicides import load_homicides
    from geo.filters import Filter
    from geo.runs import RunKind, RunSpec, save_cell_results, save_npa_results

    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {WEB_TEMPLATE}")
        conn.exec_driver_sql(f"CREATE DATABASE {WEB_TEMPLATE} TEMPLATE {template_db}")
    engine = make_engine(_url(server_url, WEB_TEMPLATE))
    out = tmp_path_factory.mktemp("webdata")
    generate_and_load(n_calls=40_000, start=date(YEAR, 1, 1), days=365, seed=5, out=out / "data",
                      engine=engine, data_dir=data_dir, progress=False)
    load_homicides(engine, data_dir / "real" / "homicides_arcgis.json")
    result = train(engine, test_months=3, models_dir=out / "models")
    label_calls(engine)
    period = Filter.local_days(date(YEAR, 1, 1), date(YEAR + 1, 1, 1))
    save_npa_results(engine, RunSpec(RunKind.CALLS_NPA_HOTSPOTS, {"period": [period.start_date, period.end_date]}, result.version),
                     npa_hotspots(engine, period, source="labelled", permutations=99))
    save_cell_results(engine, RunSpec(RunKind.CALLS_GRID_HOTSPOTS, {"period": [period.start_date, period.end_date], "cell_ft": 2000},
                                      result.version),
                      grid_hotspots(engine, period, cell_ft=2000.0, source="labelled", permutations=99), 2000.0)
    # The map's emerging hot spots layer (emerging_npas): the year's 12 complete months.
    from geo.emerging import npa_emerging, save_npa_emerging

    save_npa_emerging(engine, npa_emerging(engine, period, source="labelled"), result.version)
    # Police metrics for the OGC collection response_times (as `hotspots stats response --by division,priority --save`).
    from geo.police import response_times
    from geo.runs import save_table

    save_table(engine, RunSpec(RunKind.RESPONSE_TIMES, {"period": [period.start_date, period.end_date],
                                                        "by": "division,priority"}, result.version),
               response_times(engine, period, ("division", "priority")))
    engine.dispose()
    admin.dispose()
    return WEB_TEMPLATE


def copy_database(server_url, template: str) -> tuple[str, str]:
    """A new database cloned from `template`: (name, url)."""
    name = f"w_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template}")
    admin.dispose()
    return name, _url(server_url, name)


def drop_database(server_url, name: str) -> None:
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(scope="session")
def web_url(server_url, web_template):
    """URL of the shared read-only served database (tests must not write to it)."""
    name, url = copy_database(server_url, web_template)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def writable_url(server_url, web_template):
    """URL of a private copy of the served database, for tests that write."""
    name, url = copy_database(server_url, web_template)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def app(web_url):
    """The app on the shared read-only database."""
    return create_app({"DATABASE_URL": web_url, "TESTING": True})


@pytest.fixture
def client(app):
    """Flask test client of the shared app."""
    return app.test_client()


class LiveServer:
    """The app on a real socket in a background thread (threaded WSGI server)."""

    def __init__(self, app):
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (its own browser download does not work here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def live_server(app):
    """Base URL of the shared app served over HTTP."""
    with LiveServer(app) as server:
        yield server.url
