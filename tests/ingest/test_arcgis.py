"""`hotspots sync` against a fake ArcGIS feature layer served over HTTP: paging, cleaning and
rejects, the high-water mark, a changed record, retries (error pages, error JSON, a timeout), and
resuming after a failure or a kill mid-run with the same result as a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import pytest
import sqlalchemy as sa

from geo.catalog import data_versions
from geo.db import make_engine
from geo.ingest.arcgis import FeedClient, FeedError, make_feed, parse_interval, read_state, sync_feed
from geo.settings import ArcGISSettings
from tests.ingest.fake_arcgis import FakeArcGIS, FakeLayer, Fault, epoch_ms

REPO = Path(__file__).resolve().parents[2]
PAGE = 10
UTC = timezone.utc


@pytest.fixture(scope="module")
def npa_points(data_dir) -> list[tuple[float, float]]:
    """A point inside each of five NPAs (records cycle through them)."""
    npa = gpd.read_file(data_dir / "npa" / "npa.geojson")
    chosen = npa[npa["id"].isin(["2", "3", "9", "120", "300"])].geometry.representative_point()
    return [(p.x, p.y) for p in chosen]


def incident(oid: int, report_id: str, reported: str | None, point: tuple[float, float] | None, *,
             attrs_coords: bool = True, **over) -> dict:
    """One record as the City's incidents layer holds it (dates in epoch milliseconds)."""
    lon, lat = point if point else (None, None)
    rec = {
        "OBJECTID": oid, "YEAR": 2021, "INCIDENT_REPORT_ID": report_id, "LOCATION": "100 BLOCK OF TRADE ST",
        "CITY": "Charlotte", "STATE": "NC", "ZIP": "28202", "X_COORD_PUBLIC": None, "Y_COORD_PUBLIC": None,
        "LATITUDE_PUBLIC": lat if attrs_coords else None, "LONGITUDE_PUBLIC": lon if attrs_coords else None,
        "DIVISION_ID": None, "CMPD_PATROL_DIVISION": None, "NPA": None,
        "DATE_REPORTED": epoch_ms(reported) if reported else None,
        "DATE_INCIDENT_BEGAN": epoch_ms(reported) - 3_600_000 if reported else None, "DATE_INCIDENT_END": None,
        "ADDRESS_DESCRIPTION": None, "LOCATION_TYPE_DESCRIPTION": "Street", "PLACE_TYPE_DESCRIPTION": "Open Area",
        "PLACE_DETAIL_DESCRIPTION": "Street", "CLEARANCE_STATUS": "Open", "CLEARANCE_DETAIL_STATUS": None,
        "CLEARANCE_DATE": None, "HIGHEST_NIBRS_CODE": "13A", "HIGHEST_NIBRS_DESCRIPTION": "Aggravated Assault",
    }
    rec.update(over)
    return rec


def make_layer(npa_points) -> FakeLayer:
    """24 good incidents (one a day, 1-24 March 2021, 12:00 UTC) and five bad ones at known positions.

    In DATE_REPORTED, OBJECTID order with pages of 10: page 0 holds the 1985 record, days 1-5, the
    duplicate of day 5 and days 6-8; page 1 days 9-16 with the outside-county and no-coordinates
    records; page 2 days 17-24 and the record without a date (nulls sort last).
    """
    records, points = [], []

    def add(rec, point):
        records.append(rec)
        points.append(point)

    for day in range(1, 25):
        p = npa_points[day % len(npa_points)]
        # Every third record has its coordinates only in the geometry, as many layers do.
        add(incident(day, f"2021{day:04d}-0101-00", f"2021-03-{day:02d} 12:00:00", p, attrs_coords=day % 3 != 0), p)
    add(incident(25, "20210025-0101-00", None, npa_points[0]), npa_points[0])
    add(incident(26, "20210026-0101-00", "2021-03-10 13:00:00", (-79.0, 35.9)), (-79.0, 35.9))
    add(incident(27, "20210027-0101-00", "2021-03-11 13:00:00", None), None)
    add(incident(28, "20210005-0101-00", "2021-03-05 12:01:00", npa_points[1]), npa_points[1])
    add(incident(29, "20210029-0101-00", "1985-01-01 00:00:00", npa_points[2]), npa_points[2])
    return FakeLayer(records, points)


def settings(**over) -> ArcGISSettings:
    return ArcGISSettings(HOTSPOTS_ARCGIS_PAGE_SIZE=PAGE, **{k: v for k, v in over.items()})


def client(**over) -> FeedClient:
    waits = over.pop("waits", None)
    return FeedClient(timeout_s=over.pop("timeout_s", 5.0), retries=over.pop("retries", 3),
                      backoff_s=over.pop("backoff_s", 0.01), sleep=lambda s: waits.append(s) if waits is not None else None)


def table_rows(engine) -> list[tuple]:
    """Every incident column but the batch id, in id order: what two runs must agree on."""
    with engine.connect() as conn:
        cols = [name for (name,) in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'incidents'"
            " AND column_name NOT IN ('batch_id', 'geom') ORDER BY ordinal_position"))]
        q = f"SELECT {', '.join(cols)}, ST_AsText(geom) FROM incidents ORDER BY incident_report_id"
        return [tuple(r) for r in conn.exec_driver_sql(q)]


def reject_rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT kind, line, reason FROM ingest_rejects WHERE kind = 'incidents_arcgis' ORDER BY line"))]


@pytest.fixture
def other_engine(server_url, template_db):
    """A second fresh database (for a clean reference run)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    engine = make_engine(server_url.set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def test_first_sync_pages_cleans_rejects_and_stores_the_mark(engine, npa_points):
    layer = make_layer(npa_points)
    with FakeArcGIS(layer) as server:
        feed = make_feed("incidents", settings(), url=server.layer_url)
        result = sync_feed(engine, feed, client())

    assert [r["resultOffset"] for r in layer.requests] == ["0", "10", "20"]
    assert {r["where"] for r in layer.requests} == {"1=1"}
    assert layer.requests[0]["orderByFields"] == "DATE_REPORTED ASC,OBJECTID ASC"
    assert layer.requests[0]["outFields"] == "*" and layer.requests[0]["f"] == "json"
    assert (result.pages, result.records_read, result.inserted, result.updated) == (3, 29, 24, 0)
    assert dict(result.rejected) == {"implausible_date": 1, "duplicate_id": 1, "outside_county": 1,
                                     "missing_coordinates": 1, "missing_value": 1}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT incident_report_id) FROM incidents")).one() == (24, 24)
        row = conn.execute(sa.text(
            "SELECT date_reported, date_incident_began, city, highest_nibrs_code, clearance_status, objectid, year,"
            " ST_X(geom), ST_Y(geom), npa_id, division_id, is_crime FROM incidents"
            " WHERE incident_report_id = '20210006-0101-00'")).one()
        # Day 6 had its coordinates only in the geometry; it is placed by the database's own polygons.
        expected_npa, expected_div = conn.execute(sa.text(
            "SELECT n.npa_id, d.division_id FROM neighborhoods n LEFT JOIN divisions d"
            " ON ST_Contains(d.geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"
            " WHERE ST_Contains(n.geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
            {"x": npa_points[6 % 5][0], "y": npa_points[6 % 5][1]}).one()
        batches = conn.execute(sa.text(
            "SELECT kind, source_sha256, rows_read, rows_loaded, rows_rejected FROM ingest_batches"
            " WHERE kind = 'incidents_arcgis' ORDER BY batch_id")).all()
        rejects = conn.execute(sa.text("SELECT line, reason, detail, raw, source_sha256 FROM ingest_rejects"
                                       " WHERE kind = 'incidents_arcgis' ORDER BY line")).all()
    assert row.date_reported == datetime(2021, 3, 6, 12, tzinfo=UTC)
    assert row.date_incident_began == datetime(2021, 3, 6, 11, tzinfo=UTC)
    assert (row.city, row.highest_nibrs_code, row.clearance_status, row.objectid, row.year) == (
        "CHARLOTTE", "13A", "Open", 6, 2021)
    assert (row.st_x, row.st_y) == pytest.approx(npa_points[1], abs=1e-9)
    assert (row.npa_id, row.division_id, row.is_crime) == (expected_npa, expected_div, True)
    assert [(b.kind, b.rows_read, b.rows_loaded, b.rows_rejected) for b in batches] == [
        ("incidents_arcgis", 10, 8, 2), ("incidents_arcgis", 10, 8, 2), ("incidents_arcgis", 9, 8, 1)]
    assert {b.source_sha256 for b in batches} == {feed.key}
    # Rejects are keyed by the record's OBJECTID and keep the record as received.
    assert [(r.line, r.reason) for r in rejects] == [(25, "missing_value"), (26, "outside_county"),
                                                     (27, "missing_coordinates"), (28, "duplicate_id"),
                                                     (29, "implausible_date")]
    assert rejects[3].detail == "INCIDENT_REPORT_ID repeats the row with OBJECTID 5"
    assert '"OBJECTID":26' in rejects[1].raw and "outside Mecklenburg County" in rejects[1].detail
    state = read_state(engine, feed)
    assert state["high_water"] == datetime(2021, 3, 24, 12, tzinfo=UTC)
    assert (state["pages"], state["records_read"], state["last_error"]) == (3, 29, None)
    assert state["last_success_at"] is not None and state["date_field"] == "DATE_REPORTED"


def test_geojson_pages_store_the_same_rows(engine, other_engine, npa_points):
    layer = make_layer(npa_points)
    with FakeArcGIS(layer) as server:
        sync_feed(engine, make_feed("incidents", settings(), url=server.layer_url), client())
        result = sync_feed(other_engine, make_feed("incidents", settings(), url=server.layer_url, fmt="geojson"), client())
    assert layer.requests[-1]["f"] == "geojson"
    assert (result.pages, result.inserted, sum(result.rejected.values())) == (3, 24, 5)
    assert table_rows(other_engine) == table_rows(engine)
    assert [r[1:] for r in reject_rows(other_engine)] == [r[1:] for r in reject_rows(engine)]


def test_incremental_sync_catches_a_changed_record_and_is_idempotent(engine, npa_points):
    layer = make_layer(npa_points)
    with FakeArcGIS(layer) as server:
        feed = make_feed("incidents", settings(), url=server.layer_url)
        sync_feed(engine, feed, client())
        v1 = data_versions(engine)["incidents"]
        # Between syncs: day 23 is cleared (inside the 72-hour overlap), a new record arrives.
        layer.records[22]["CLEARANCE_STATUS"] = "Cleared by Arrest"
        layer.records[22]["CLEARANCE_DATE"] = epoch_ms("2021-03-25 09:00:00")
        layer.records.append(incident(30, "20210030-0101-00", "2021-03-25 08:00:00", npa_points[0]))
        layer.points.append(npa_points[0])
        sent = len(layer.requests)
        second = sync_feed(engine, feed, client())
        assert layer.requests[sent]["where"] == "DATE_REPORTED >= TIMESTAMP '2021-03-21 12:00:00' OR DATE_REPORTED IS NULL"
        # Days 21-24, the new record and the one without a date (rejected again, stored once):
        # one new, one changed, three identical.
        assert (second.pages, second.records_read, second.inserted, second.updated, second.unchanged) == (1, 6, 1, 1, 3)
        v2 = data_versions(engine)["incidents"]
        third = sync_feed(engine, feed, client())
        v3 = data_versions(engine)["incidents"]
        # A full re-read changes nothing and stores no reject twice.
        full = sync_feed(engine, feed, client(), full=True)
    assert v2 > v1
    # The mark moved to 25 March: days 22-24 and the new record are read again, unchanged.
    assert (third.records_read, third.inserted, third.updated, third.unchanged) == (5, 0, 0, 4)
    assert v3 == v2, "a sync that changed nothing must not invalidate the tile caches"
    assert (full.records_read, full.inserted, full.updated, full.unchanged) == (30, 0, 0, 25)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT incident_report_id) FROM incidents")).one() == (25, 25)
        changed = conn.execute(sa.text("SELECT clearance_status, clearance_date, batch_id FROM incidents"
                                       " WHERE incident_report_id = '20210023-0101-00'")).one()
        untouched_batch = conn.execute(sa.text("SELECT batch_id FROM incidents WHERE incident_report_id = '20210024-0101-00'")).scalar()
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_rejects WHERE kind = 'incidents_arcgis'")).scalar() == 5
    assert changed.clearance_status == "Cleared by Arrest"
    assert changed.clearance_date == datetime(2021, 3, 25, 9, tzinfo=UTC)
    assert changed.batch_id == second.batches[0] and untouched_batch < second.batches[0]
    assert read_state(engine, feed)["high_water"] == datetime(2021, 3, 25, 8, tzinfo=UTC)


def test_error_pages_and_error_json_are_retried_with_back_off(engine, npa_points):
    layer = make_layer(npa_points)
    layer.faults = {0: Fault("http", 503), 1: Fault("error_json", 500), 2: Fault("truncate"), 4: Fault("http", 502)}
    waits: list[float] = []
    with FakeArcGIS(layer) as server:
        result = sync_feed(engine, make_feed("incidents", settings(), url=server.layer_url), client(waits=waits))
    # Three failures in a row on the first page, then one on the second: the wait doubles, then starts over.
    assert waits == [0.01, 0.02, 0.04, 0.01]
    assert [r["resultOffset"] for r in layer.requests] == ["0", "0", "0", "0", "10", "10", "20"]
    assert (result.inserted, result.retries) == (24, 4)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 24


def test_a_permanent_error_fails_at_once_and_is_recorded(engine, npa_points):
    layer = make_layer(npa_points)
    layer.faults = {1: Fault("error_json", 400)}
    waits: list[float] = []
    with FakeArcGIS(layer) as server:
        feed = make_feed("incidents", settings(), url=server.layer_url)
        with pytest.raises(FeedError, match="ArcGIS error 400"):
            sync_feed(engine, feed, client(waits=waits))
    assert waits == [] and len(layer.requests) == 2
    state = read_state(engine, feed)
    assert "ArcGIS error 400" in state["last_error"] and state["last_success_at"] is None
    # The first page was stored and its mark kept.
    assert state["high_water"] == datetime(2021, 3, 8, 12, tzinfo=UTC)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 8


def test_a_timeout_is_retried_without_duplicates(engine, npa_points):
    layer = make_layer(npa_points)
    layer.faults = {1: Fault("delay", seconds=2.0)}
    waits: list[float] = []
    with FakeArcGIS(layer) as server:
        result = sync_feed(engine, make_feed("incidents", settings(), url=server.layer_url),
                           client(timeout_s=0.5, waits=waits))
    assert waits == [0.01]
    assert [r["resultOffset"] for r in layer.requests] == ["0", "10", "10", "20"]
    assert (result.pages, result.inserted, result.retries) == (3, 24, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT incident_report_id) FROM incidents")).one() == (24, 24)


def test_resume_after_a_failure_mid_run_matches_a_clean_run(engine, other_engine, npa_points):
    layer = make_layer(npa_points)
    with FakeArcGIS(layer) as server:
        feed = make_feed("incidents", settings(), url=server.layer_url)
        sync_feed(other_engine, feed, client())          # the clean reference run
        layer.fail_from_offset = {20: Fault("http", 500)}
        with pytest.raises(FeedError, match="HTTP 500.*gave up after 3 attempts"):
            sync_feed(engine, feed, client(retries=2))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 16
        assert read_state(engine, feed)["high_water"] == datetime(2021, 3, 16, 12, tzinfo=UTC)
        layer.fail_from_offset = {}
        sent = len(layer.requests)
        resumed = sync_feed(engine, feed, client())
    assert layer.requests[sent]["where"] == "DATE_REPORTED >= TIMESTAMP '2021-03-13 12:00:00' OR DATE_REPORTED IS NULL"
    assert (resumed.inserted, resumed.updated) == (8, 0)
    assert table_rows(engine) == table_rows(other_engine)
    assert reject_rows(engine) == reject_rows(other_engine)
    assert read_state(engine, feed)["high_water"] == read_state(other_engine, feed)["high_water"]


def test_a_killed_sync_process_resumes_without_gaps_or_duplicates(engine, other_engine, npa_points):
    layer = make_layer(npa_points)
    layer.fail_from_offset = {20: Fault("hang")}   # page 3 never answers until released
    with FakeArcGIS(layer) as server:
        env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
               "HOTSPOTS_ARCGIS_PAGE_SIZE": str(PAGE), "HOTSPOTS_ARCGIS_INCIDENTS_URL": server.layer_url}
        proc = subprocess.Popen([sys.executable, "-m", "geo.cli", "sync", "--layer", "incidents"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(sa.text("SELECT count(*) FROM ingest_batches WHERE kind = 'incidents_arcgis'")).scalar()
                if done == 2 and any(r["resultOffset"] == "20" for r in layer.requests):
                    break
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
            else:
                pytest.fail("the sync did not store two pages in time")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 16
        layer.fail_from_offset = {}
        layer.release.set()
        feed = make_feed("incidents", settings(), url=server.layer_url)
        resumed = sync_feed(engine, feed, client())
        sync_feed(other_engine, feed, client())
    assert (resumed.inserted, resumed.updated) == (8, 0)
    assert table_rows(engine) == table_rows(other_engine)
    assert reject_rows(engine) == reject_rows(other_engine)


def test_configuration_errors_name_the_setting():
    with pytest.raises(ValueError, match="HOTSPOTS_ARCGIS_INCIDENTS_URL"):
        make_feed("incidents", ArcGISSettings())
    with pytest.raises(ValueError, match="not a field name"):
        make_feed("incidents", ArcGISSettings(), url="http://x/arcgis/FeatureServer/0", date_field="DATE_REPORTED; DROP")
    feed = make_feed("calls", ArcGISSettings(HOTSPOTS_ARCGIS_CALLS_URL="https://gis.example/FeatureServer/3/",
                                             HOTSPOTS_ARCGIS_SINCE="2024-01-01"))
    assert (feed.url, feed.date_field, feed.since) == ("https://gis.example/FeatureServer/3/query", "DATE_RECEIVED",
                                                       datetime(2024, 1, 1, tzinfo=UTC))
    assert [parse_interval(t) for t in ("90", "30s", "5m", "1h")] == [90, 30, 300, 3600]
    with pytest.raises(ValueError, match="not an interval"):
        parse_interval("5 minutes")


def test_sync_every_keeps_running_and_stops_cleanly_on_ctrl_c(engine, npa_points):
    layer = make_layer(npa_points)
    with FakeArcGIS(layer) as server:
        env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
               "HOTSPOTS_ARCGIS_PAGE_SIZE": str(PAGE), "HOTSPOTS_ARCGIS_INCIDENTS_URL": server.layer_url}
        proc = subprocess.Popen([sys.executable, "-m", "geo.cli", "sync", "--every", "1s"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            # Two syncs done (three pages, then one page of the overlap window) and a third begun.
            while time.monotonic() < deadline and len(layer.requests) < 5:
                assert proc.poll() is None
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert "new 24, changed 0, unchanged 0, rejected 5" in out
    assert "new 0, changed 0, unchanged 4, rejected 1" in out
    assert out.rstrip().endswith("sync stopped; the next run resumes from the stored high-water mark")
    assert layer.requests[3]["where"] == "DATE_REPORTED >= TIMESTAMP '2021-03-21 12:00:00' OR DATE_REPORTED IS NULL"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT incident_report_id) FROM incidents")).one() == (24, 24)


def test_a_layer_of_calendar_dates_is_stored_by_local_day(engine, npa_points):
    """The real API's dates are epoch ms at 00:00 UTC: calendar dates, judged per page, never the
    previous evening's instant."""
    records, points = [], []
    for day in range(1, 13):
        p = npa_points[day % len(npa_points)]
        records.append(incident(day, f"202112{day:02d}-1830-00", f"2021-12-{day:02d} 00:00:00", p,
                                DATE_INCIDENT_BEGAN=epoch_ms(f"2021-12-{day:02d} 00:00:00")))
        points.append(p)
    with FakeArcGIS(FakeLayer(records, points)) as server:
        result = sync_feed(engine, make_feed("incidents", settings(), url=server.layer_url), client())
    assert result.inserted == 12
    with engine.connect() as conn:
        got = conn.execute(sa.text(
            "SELECT incident_report_id, (date_reported AT TIME ZONE 'America/New_York')::text,"
            " date_reported_precision, date_incident_began_precision FROM incidents ORDER BY 1")).all()
    assert [tuple(r) for r in got] == [(f"202112{d:02d}-1830-00", f"2021-12-{d:02d} 00:00:00", "date", "date")
                                       for d in range(1, 13)]
