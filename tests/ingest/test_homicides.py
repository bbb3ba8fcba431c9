"""The CMPD Homicide layer: the real ArcGIS answer and a CSV of it loaded, read right (calendar dates,
victims without a place kept without a point), refused whole when it is not the layer, bad records
rejected with reasons, followed by `hotspots sync`, and Gi* over NPAs of its counts."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.catalog import data_versions
from geo.cli import main
from geo.ingest.arcgis import FeedClient, make_feed, read_state, sync_feed
from geo.ingest.batch import IngestError
from geo.ingest.clean import PLACEHOLDER_LONLAT
from geo.ingest.homicides import calendar_dates, load_homicides
from geo.settings import ArcGISSettings
from tests.clusters import snapshot
from tests.ingest.fake_arcgis import FakeArcGIS, FakeLayer

NY = ZoneInfo("America/New_York")
VICTIMS, REPORTS, UNPLACED = 933, 894, 5


@pytest.fixture(scope="module")
def layer_file(data_dir) -> Path:
    return data_dir / "real" / "homicides_arcgis.json"


@pytest.fixture(scope="module")
def layer(layer_file) -> dict:
    """The saved answer as JSON, for the expected values."""
    return json.loads(layer_file.read_text())


def utc_day(ms: int | None) -> date | None:
    """The calendar date an epoch-millisecond value at midnight UTC stands for."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).date()


def rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def one(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def test_the_real_layer_loads_one_row_per_victim(engine, layer_file, layer):
    report = load_homicides(engine, layer_file)
    attrs = {f["attributes"]["OBJECTID"]: f["attributes"] for f in layer["features"]}
    assert (report.rows_read, report.inserted, report.rows_rejected) == (VICTIMS, VICTIMS, 0)
    assert rows(engine, "SELECT count(*), count(DISTINCT crime_report_id), count(*) FILTER (WHERE geom IS NULL),"
                        " count(DISTINCT data_origin), min(data_origin) FROM homicides") == [
        (VICTIMS, REPORTS, UNPLACED, 1, "real")]
    # The victims without a place are the ones the layer puts at the State Plane origin; none is stored there.
    placeholder = {f["attributes"]["OBJECTID"] for f in layer["features"]
                   if abs(f["geometry"]["x"] - PLACEHOLDER_LONLAT[0]) < 0.01
                   and abs(f["geometry"]["y"] - PLACEHOLDER_LONLAT[1]) < 0.01}
    assert len(placeholder) == UNPLACED
    assert {r[0] for r in rows(engine, "SELECT objectid FROM homicides WHERE geom IS NULL")} == placeholder
    assert report.notes["kept_without_a_point"] == report.notes["placeholder_points"] == UNPLACED
    assert one(engine, "SELECT count(*) FROM homicides WHERE NOT ST_Within(geom, ST_MakeEnvelope(-81.1, 34.95, -80.5, 35.56, 4326))") == 0
    assert rows(engine, "SELECT latitude_public, longitude_public, npa_id, division_id FROM homicides WHERE geom IS NULL"
                ) == [(None, None, None, None)] * UNPLACED

    # Every date is the calendar date of its epoch value in UTC (midnight UTC = a Charlotte date).
    stored = {oid: (d, c) for oid, d, c in rows(engine, "SELECT objectid, date_reported, clearance_date FROM homicides")}
    assert stored == {oid: (utc_day(a["DATE_REPORTED"]), utc_day(a["CLEARANCE_DATE"])) for oid, a in attrs.items()}
    assert stored[1][0] == date(2025, 6, 24) and attrs[1]["CRIME_REPORT_ID"] == "20250624-1928-00"
    assert sum(c is not None for _, c in stored.values()) == 734
    # ...and it is the report id's YYYYMMDD for every victim of this layer (measured: all 933).
    agree = one(engine, "SELECT count(*) FROM homicides WHERE to_char(date_reported, 'YYYYMMDD') = left(crime_report_id, 8)")
    assert agree == report.notes["report_id_date_agrees"] == VICTIMS and report.notes["report_id_date_disagrees"] == 0

    # Every placed victim has an NPA and a division from our join; disagreements with the published ones are counted.
    assert rows(engine, "SELECT count(*) FILTER (WHERE npa_id IS NULL), count(*) FILTER (WHERE division_id IS NULL)"
                        " FROM homicides WHERE geom IS NOT NULL") == [(0, 0)]
    npa_off = one(engine, "SELECT count(*) FROM homicides WHERE npa_source <> npa_id")
    assert npa_off == report.notes["npa_disagreements"] == 186
    # 30 of them name NPA 476, which the 462 NPAs we serve do not have.
    assert one(engine, "SELECT count(*) FROM homicides WHERE npa_source NOT IN (SELECT npa_id FROM neighborhoods)") == 30
    division_off = one(engine, "SELECT count(*) FROM homicides h JOIN divisions d ON d.short_name = h.cmpd_patrol_division"
                               " WHERE h.division_id <> d.division_id")
    assert division_off == report.notes["division_disagreements"] == 26

    # AGE is text in the layer: numbers stored as years, the text kept; IPV read as a flag.
    ages = Counter(a["AGE"] for a in attrs.values())
    assert one(engine, "SELECT count(*) FROM homicides WHERE age IS NULL") == ages[None] == 27
    assert one(engine, "SELECT count(*) FROM homicides WHERE age = 0") == ages["0"] == 8
    assert one(engine, "SELECT count(*) FROM homicides WHERE age::text IS DISTINCT FROM age_source") == 0
    assert one(engine, "SELECT count(*) FROM homicides WHERE intimate_partner") == 66 == sum(
        a["IPV"] == "Intimate Partner" for a in attrs.values())
    assert one(engine, "SELECT count(*) FROM homicides WHERE intimate_partner IS NULL") == 0
    first = rows(engine, "SELECT crime_report_id, gender, race_ethnicity, weapon, circumstances, clearance_status, location,"
                         " cmpd_patrol_division, npa_source, council_district, commission_district FROM homicides"
                         " WHERE objectid = 2")[0]
    a = attrs[2]
    assert first == (a["CRIME_REPORT_ID"], a["GENDER"], a["RACE_ETHNICITY"], a["WEAPON"], a["CIRCUMSTANCES"],
                     a["CLEARANCE_STATUS"], a["LOCATION"], a["CMPD_PATROL_DIVISION"], a["NPA"], a["COUNCIL_DISTRICT"],
                     a["COMMISSION_DISTRICT"])


def test_reloading_the_same_file_changes_nothing(engine, layer_file):
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    first = CliRunner().invoke(main, ["load", "homicides", str(layer_file)], env=env)
    assert first.exit_code == 0, first.output
    assert f"read {VICTIMS}  loaded {VICTIMS} (new {VICTIMS}, changed 0, unchanged 0)  rejected 0" in first.output
    assert f"kept_without_a_point: {UNPLACED}" in first.output and "npa_disagreements: 186" in first.output
    batch = one(engine, "SELECT max(batch_id) FROM ingest_batches WHERE kind = 'homicides'")
    before = snapshot(engine)
    again = load_homicides(engine, layer_file)
    assert again.already_loaded_batch == batch and snapshot(engine) == before
    repeat = CliRunner().invoke(main, ["load", "homicides", str(layer_file)], env=env)
    assert f"was already loaded (batch {batch}); nothing changed" in repeat.output
    version = data_versions(engine)["homicides"]
    forced = load_homicides(engine, layer_file, force=True)
    assert (forced.inserted, forced.updated, forced.unchanged) == (0, 0, VICTIMS)
    after = snapshot(engine)
    assert after["homicides"] == before["homicides"] and after["ingest_rejects"] == before["ingest_rejects"]
    assert data_versions(engine)["homicides"] == version     # nothing changed: tiles and caches stay valid


def write_csv(path: Path, layer: dict, date_form) -> None:
    """The layer's attributes as a CSV of the same fields, dates written by `date_form(ms)`."""
    names = [f["name"] for f in layer["fields"]]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i, f in enumerate(layer["features"]):
            a = f["attributes"]
            w.writerow(["" if a[n] is None else date_form(a[n], i) if n in ("DATE_REPORTED", "CLEARANCE_DATE") else a[n]
                        for n in names])


def portal_dates(ms: int, i: int) -> str:
    """The portal's CSV form for most rows, an ISO date or the raw epoch value for some."""
    day = utc_day(ms)
    return [f"{day:%Y/%m/%d} 00:00:00+00", day.isoformat(), str(ms)][i % 3]


def test_a_csv_of_the_same_fields_stores_the_same_rows(engine, layer_file, layer, tmp_path):
    load_homicides(engine, layer_file)
    before = snapshot(engine)["homicides"]
    path = tmp_path / "homicides.csv"
    write_csv(path, layer, portal_dates)
    report = load_homicides(engine, path)
    # The same stored values (row hashes are of what is stored): nothing inserted or changed.
    assert (report.rows_read, report.inserted, report.updated, report.unchanged) == (VICTIMS, 0, 0, VICTIMS)
    assert report.notes["format"] == "csv" and report.notes["kept_without_a_point"] == UNPLACED
    assert snapshot(engine)["homicides"] == before
    # An f=geojson answer too; one flagged as a page of a larger layer says so.
    geojson = {"type": "FeatureCollection", "exceededTransferLimit": True, "features": [
        {"type": "Feature", "id": f["attributes"]["OBJECTID"], "properties": f["attributes"],
         "geometry": {"type": "Point", "coordinates": [f["geometry"]["x"], f["geometry"]["y"]]}}
        for f in layer["features"]]}
    path = tmp_path / "homicides.geojson"
    path.write_text(json.dumps(geojson))
    report = load_homicides(engine, path)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, VICTIMS)
    assert report.notes["format"] == "geojson" and "exceededTransferLimit" in report.notes["partial_page"]
    assert snapshot(engine)["homicides"] == before


def test_a_file_that_is_not_the_layer_is_refused_whole(engine, layer_file, layer, tmp_path):
    load_homicides(engine, layer_file)
    before = snapshot(engine)
    data = layer_file.read_bytes()
    cases = {
        "cut.json": (data[: len(data) // 2], r"not valid JSON \(.*: line \d+ column \d+; the file ends early: cut off\?\)"),
        "garbage.json": (b"{\x00\xff garbage", r"not JSON text|not valid JSON"),
        "list.json": (b"[1, 2, 3]", "the file holds a JSON array, not an object"),
        "nofeatures.json": (json.dumps({"fields": layer["fields"]}).encode(), "no 'features' array"),
        "error.json": (json.dumps({"error": {"code": 400, "message": "Invalid query"}}).encode(),
                       "an ArcGIS error answer, not features \\(code 400: Invalid query\\)"),
        # An incidents answer: OBJECTID and DATE_REPORTED, but none of the victim fields.
        "incidents.json": (json.dumps({"fields": [{"name": n} for n in ("OBJECTID", "INCIDENT_REPORT_ID", "DATE_REPORTED")],
                                       "features": [{"attributes": {"OBJECTID": 1, "INCIDENT_REPORT_ID": "x",
                                                                    "DATE_REPORTED": 1750723200000}}]}).encode(),
                           "missing field\\(s\\) CRIME_REPORT_ID, AGE, GENDER"),
        "fields.json": (json.dumps({**layer, "fields": [f for f in layer["fields"] if f["name"] not in ("WEAPON", "AGE")],
                                    "features": [{**f, "attributes": {k: v for k, v in f["attributes"].items()
                                                                      if k not in ("WEAPON", "AGE")}}
                                                 for f in layer["features"]]}).encode(),
                        "missing field\\(s\\) AGE, WEAPON"),
        "sr.json": (json.dumps({**layer, "spatialReference": {"wkid": 3857}}).encode(), "spatial reference 3857"),
        "incidents.csv": (b"INCIDENT_REPORT_ID,DATE_REPORTED\n1,2021/01/01 00:00:00+00\n",
                          "missing column\\(s\\) OBJECTID, CRIME_REPORT_ID"),
        "nocoords.csv": ((",".join(("OBJECTID", "CRIME_REPORT_ID", "DATE_REPORTED", "AGE", "GENDER", "RACE_ETHNICITY",
                                    "WEAPON", "CIRCUMSTANCES", "IPV", "CLEARANCE_STATUS", "CMPD_PATROL_DIVISION", "NPA"))
                          + "\n").encode(), "no coordinate columns"),
        "empty.csv": (b"", "empty"),
    }
    for name, (body, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(IngestError, match=message):
            load_homicides(engine, path)
        assert snapshot(engine) == before, name


def test_bad_records_are_rejected_with_reasons_and_the_rest_kept(engine, layer, tmp_path):
    features = [json.loads(json.dumps(f)) for f in layer["features"][:12]]
    a = [f["attributes"] for f in features]
    a[0]["OBJECTID"] = None                                   # no id
    a[1]["OBJECTID"] = "twelve"                               # not an id
    a[3]["OBJECTID"] = a[2]["OBJECTID"]                       # the same id twice
    a[4]["DATE_REPORTED"] = None                              # no date
    a[5]["DATE_REPORTED"] = "24 June"                         # not a date
    a[6]["DATE_REPORTED"] = 315532800000                      # 1980-01-01: implausible
    a[7]["CRIME_REPORT_ID"] = " "                             # no report id
    a[8]["CLEARANCE_DATE"] = "soon"                           # a clearance date that is not a date
    a[9]["AGE"] = "Unknown"                                   # kept: no number of years
    a[9]["LATITUDE_PUBLIC"], a[9]["LONGITUDE_PUBLIC"] = 35.9, -79.0   # kept: a point outside the county
    a[9]["X_COORD_PUBLIC"] = a[9]["Y_COORD_PUBLIC"] = None            # (no State Plane X/Y to fall back on)
    features[9]["geometry"] = {"x": -79.0, "y": 35.9}
    a[10]["DATE_REPORTED"] = 1750780800000                    # 2025-06-24 16:00 UTC: an instant, its local date
    features.append("not a feature")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**layer, "features": features}))
    report = load_homicides(engine, path)
    assert report.rows_read == 13 and report.rows_loaded == 4
    assert dict(report.rejected) == {"missing_id": 1, "bad_id": 1, "duplicate_id": 1, "missing_value": 2,
                                     "bad_date": 2, "implausible_date": 1, "malformed_row": 1}
    got = rows(engine, "SELECT line, reason, detail FROM ingest_rejects WHERE kind = 'homicides' ORDER BY line")
    assert got == [
        (1, "missing_id", "OBJECTID is empty"),
        (2, "bad_id", "OBJECTID 'twelve' is not a whole number"),
        (4, "duplicate_id", f"OBJECTID {a[2]['OBJECTID']} repeats the record at feature 3"),
        (5, "missing_value", "DATE_REPORTED is empty"),
        (6, "bad_date", "DATE_REPORTED '24 June' is not a date"),
        (7, "implausible_date", "DATE_REPORTED '1980/01/01 00:00:00+00' is before 1990 or in the future"),
        (8, "missing_value", "CRIME_REPORT_ID is empty"),
        (9, "bad_date", "CLEARANCE_DATE 'soon' is not a date"),
        (13, "malformed_row", "feature 13 is not a feature: str, expected a JSON object with attributes"),
    ]
    raw = json.loads(rows(engine, "SELECT raw FROM ingest_rejects WHERE line = 6")[0][0])
    assert raw["attributes"]["DATE_REPORTED"] == "24 June"      # the record as it was in the file
    kept = {oid: (age, src, geom, d) for oid, age, src, geom, d in rows(
        engine, "SELECT objectid, age, age_source, geom IS NULL, date_reported FROM homicides")}
    assert set(kept) == {a[i]["OBJECTID"] for i in (2, 9, 10, 11)}
    assert kept[a[9]["OBJECTID"]][:3] == (None, "Unknown", True)
    assert kept[a[10]["OBJECTID"]][3] == date(2025, 6, 24)
    assert report.notes["points_outside_the_county"] == 1 and report.fixes["age_not_a_number_of_years_left_empty"] == 1
    assert report.fixes["date_reported_with_a_time_of_day_read_as_local_date"] == 1


def test_calendar_dates_are_read_as_written():
    cases = {
        "1750723200000": "2025-06-24",                 # midnight UTC: the layer's encoding of a date
        "2025/06/24 00:00:00+00": "2025-06-24",        # the portal's CSV
        "2025-06-24": "2025-06-24",
        "2025-06-24T00:00:00Z": "2025-06-24",
        "2025-06-24 21:30:00": "2025-06-24",           # local wall time: its date
        "6/24/2025": "2025-06-24",
        "1750734000000": "2025-06-23",                 # 03:00 UTC is 23:00 the day before in Charlotte
        "2025-06-24T02:00:00+00:00": "2025-06-23",
        "2025-06-24T00:00:00-04:00": "2025-06-24",     # local midnight, given as an instant
        "": "",
        "2025-02-30": "",
        "June 24": "",
        "20250624": "",
        "1985-01-01": "",                              # before 1990
    }
    read = calendar_dates(pd.Series(list(cases)), NY)
    assert dict(zip(cases, read.text)) == cases
    assert list(np.flatnonzero(read.bad)) == [10, 11, 12] and list(np.flatnonzero(read.implausible)) == [13]
    assert read.local == 3


# --- hotspots sync --layer homicides ------------------------------------------------------------------
def fake_layer(layer: dict) -> FakeLayer:
    """The real layer served by the fake ArcGIS server (epoch-ms dates, WGS84 geometry)."""
    return FakeLayer([dict(f["attributes"]) for f in layer["features"]],
                     [(f["geometry"]["x"], f["geometry"]["y"]) for f in layer["features"]], max_record_count=250)


def test_sync_follows_the_layer_through_the_same_cleaning(engine, layer, layer_file):
    fake = fake_layer(layer)
    settings = ArcGISSettings(HOTSPOTS_ARCGIS_PAGE_SIZE=300)
    client = FeedClient(timeout_s=10, retries=1, backoff_s=0.01, sleep=lambda s: None)
    with FakeArcGIS(fake) as server:
        feed = make_feed("homicides", settings, url=server.layer_url)
        assert feed.date_field == "DATE_REPORTED"
        first = sync_feed(engine, feed, client)
        assert (first.pages, first.records_read, first.inserted, sum(first.rejected.values())) == (4, VICTIMS, VICTIMS, 0)
        assert first.high_water == datetime(2025, 6, 24, tzinfo=timezone.utc)
        assert rows(engine, "SELECT count(*), count(*) FILTER (WHERE geom IS NULL) FROM homicides") == [(VICTIMS, UNPLACED)]
        # The file loader stores exactly what the sync stored: one cleaning path.
        again = load_homicides(engine, layer_file)
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, VICTIMS)

        # A new victim and a changed clearance upstream: the next sync reads from the mark less the overlap.
        new = dict(fake.records[0], OBJECTID=VICTIMS + 1, ID=VICTIMS + 1, CRIME_REPORT_ID="20250626-0415-00",
                   DATE_REPORTED=1750896000000, AGE="40")
        fake.records.append(new)
        fake.points.append(fake.points[0])
        fake.records[1]["CLEARANCE_STATUS"] = "Cleared by Arrest"
        fake.requests.clear()
        second = sync_feed(engine, feed, client)
        assert "DATE_REPORTED >= TIMESTAMP '2025-06-21 00:00:00'" in fake.requests[0]["where"]
        assert (second.inserted, second.updated) == (1, 1) and second.records_read < 20
        assert second.high_water == datetime(2025, 6, 26, tzinfo=timezone.utc)
        assert read_state(engine, feed)["high_water"] == second.high_water
    assert rows(engine, "SELECT date_reported, age, clearance_status FROM homicides WHERE objectid IN (2, :n) ORDER BY 1",
                n=VICTIMS + 1) == [(date(2025, 6, 22), 29, "Cleared by Arrest"), (date(2025, 6, 26), 40, "Open")]


def test_sync_command_takes_the_homicides_layer(engine, layer):
    with FakeArcGIS(fake_layer(layer)) as server:
        env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTSPOTS_ARCGIS_PAGE_SIZE": "500"}
        result = CliRunner().invoke(main, ["sync", "--layer", "homicides", "--url", server.layer_url, "--no-refresh"],
                                    env=env)
    assert result.exit_code == 0, result.output
    assert f"new {VICTIMS:,}, changed 0, unchanged 0, rejected 0; high-water mark 2025-06-24T00:00:00+00:00" in result.output
    assert one(engine, "SELECT count(*) FROM homicides") == VICTIMS


# --- Gi* over NPAs ---------------------------------------------------------------------------------
def test_gi_star_over_npas_of_homicide_counts(engine, layer_file, layer, tmp_path):
    from geo.hotspots import homicide_hotspots

    load_homicides(engine, layer_file)
    result, info = homicide_hotspots(engine, permutations=0)
    assert info == {"years": [2015, 2025], "victims": VICTIMS, "victims_without_npa": UNPLACED}
    assert len(result) == 462 and result["value"].sum() == VICTIMS - UNPLACED
    counts = dict(rows(engine, "SELECT npa_id, count(*) FROM homicides WHERE npa_id IS NOT NULL GROUP BY 1"))
    assert {int(r.npa_id): int(r.value) for r in result.itertuples() if r.value} == counts
    top = result.sort_values("value", ascending=False).iloc[0]
    # The NPA with the most victims sits in a significant cluster of them.
    assert top["gi_z"] > 3 and top["hotspot_class"].startswith("Hot spot")
    assert (result["gi_z"] > top["gi_z"]).sum() < 10

    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    run = CliRunner().invoke(main, ["hotspots", "--source", "homicides", "--years", "2019-2021", "--permutations", "0",
                                    "--save"], env=env)
    assert run.exit_code == 0, run.output
    per_year = Counter(a["CALENDAR_YEAR"] for a in (f["attributes"] for f in layer["features"]))
    victims = per_year["2019"] + per_year["2020"] + per_year["2021"]
    unplaced = one(engine, "SELECT count(*) FROM homicides WHERE npa_id IS NULL AND date_reported BETWEEN '2019-01-01'"
                           " AND '2021-12-31'")
    assert f"source: homicides (CMPD Homicide layer), 2019-2021: {victims:,} victims, {unplaced} without" in run.output
    assert "homicide victims" in run.output and "hottest NPAs:" in run.output
    saved = rows(engine, "SELECT r.kind, sum(h.value) FROM analysis_runs r JOIN hotspot_npa_results h USING (run_id)"
                         " GROUP BY r.run_id, r.kind")
    assert saved == [("homicides_npa_hotspots", float(victims - unplaced))]
    refused = CliRunner().invoke(main, ["hotspots", "--source", "homicides", "--years", "1990-1991"], env=env)
    assert refused.exit_code != 0 and "no homicides in 1990-1991; the loaded ones span 2015-2025" in refused.output
