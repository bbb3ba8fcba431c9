"""`hotspots load incidents|calls FILE.json`: an ArcGIS query answer (f=json) or a GeoJSON
FeatureCollection, built here from the real API sample (incidents_api_sample.csv, which is the
layer's f=geojson answer flattened), loaded through the same cleaning as a CSV and the sync."""

from __future__ import annotations

import copy
import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.cli import main
from geo.ingest import points
from geo.ingest.batch import IngestError
from geo.ingest.incidents import INCIDENTS, load_incidents
from tests.clusters import cloned_database, snapshot

GEOMETRY_COLUMNS = ("geometry_type", "coordinates_lon", "coordinates_lat", "coordinates_json")


@pytest.fixture(scope="module")
def api_sample(data_dir) -> list[dict[str, str]]:
    """The 5,000 real records as text, as the CSV holds them (dates in epoch milliseconds)."""
    with open(data_dir / "real" / "incidents_api_sample.csv", newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5000
    return rows


def _number(text: str) -> int | float | None:
    """The number a text cell spells exactly (so the loader writes the same text back), else None."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if str(value) == text:
            return value
    return None


def _typed(rows: list[dict[str, str]]) -> tuple[list[dict], list[dict]]:
    """Esri `fields` and per-record attributes: a column whose every cell is a number becomes numbers."""
    columns = [c for c in rows[0] if c not in GEOMETRY_COLUMNS]
    fields, numeric = [], {}
    for c in columns:
        cells = [r[c] for r in rows if r[c] != ""]
        numeric[c] = bool(cells) and all(_number(v) is not None for v in cells)
        kind = ("esriFieldTypeDate" if c in INCIDENTS.times else "esriFieldTypeOID" if c == "OBJECTID"
                else "esriFieldTypeDouble" if numeric[c] else "esriFieldTypeString")
        fields.append({"name": c, "type": kind, "alias": c})
    attrs = [{c: (None if r[c] == "" else _number(r[c]) if numeric[c] else r[c]) for c in columns} for r in rows]
    return fields, attrs


def esri_answer(rows: list[dict[str, str]], **over) -> dict:
    """The layer's f=json query answer holding these records (geometry x/y in WGS84)."""
    fields, attrs = _typed(rows)
    return {
        "objectIdFieldName": "OBJECTID", "geometryType": "esriGeometryPoint",
        "spatialReference": {"wkid": 4326, "latestWkid": 4326}, "fields": fields,
        "features": [{"attributes": a, "geometry": {"x": float(r["coordinates_lon"]), "y": float(r["coordinates_lat"])}}
                     for a, r in zip(attrs, rows)],
        **over,
    }


def geojson_answer(rows: list[dict[str, str]]) -> dict:
    """The layer's f=geojson query answer holding these records."""
    _, attrs = _typed(rows)
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": a["OBJECTID"], "properties": a,
         "geometry": {"type": "Point", "coordinates": [float(r["coordinates_lon"]), float(r["coordinates_lat"])]}}
        for a, r in zip(attrs, rows)]}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def other_engine(server_url, template_db):
    """A second fresh database, to load the same records another way."""
    with cloned_database(server_url, template_db) as (_, engine):
        yield engine


def table_rows(engine, leave_out: tuple[str, ...] = ()) -> list[tuple]:
    """Every incident column but the batch id (and `leave_out`), in id order (geometry as text)."""
    with engine.connect() as conn:
        cols = [name for (name,) in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'incidents'"
            " AND column_name NOT IN ('batch_id', 'geom') ORDER BY ordinal_position")) if name not in leave_out]
        q = f"SELECT {', '.join(cols)}, ST_AsText(geom) FROM incidents ORDER BY incident_report_id"
        return [tuple(r) for r in conn.exec_driver_sql(q)]


def stored(engine) -> dict[str, tuple]:
    """id -> (lon, lat, UTC date of date_reported)."""
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
            "SELECT incident_report_id, ST_X(geom), ST_Y(geom), (date_reported AT TIME ZONE 'UTC')::date FROM incidents"))}


def rejects(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT line, reason, detail, raw FROM ingest_rejects WHERE kind = 'incidents' ORDER BY line"))]


def test_an_arcgis_answer_and_a_geojson_load_the_same_records(engine, other_engine, api_sample, tmp_path):
    esri = load_incidents(engine, write(tmp_path / "incidents.json", esri_answer(api_sample)))
    # Told by content: a GeoJSON FeatureCollection under a name that says nothing.
    gj = load_incidents(other_engine, write(tmp_path / "incidents.txt", geojson_answer(api_sample)))

    for report in (esri, gj):
        assert report.rows_read == 5000
        assert report.rows_loaded + report.rows_rejected == 5000 and report.inserted == report.rows_loaded
        assert "partial_page" not in report.notes
    assert dict(esri.rejected) == dict(gj.rejected) and esri.rows_loaded > 4900
    assert table_rows(other_engine) == table_rows(engine)
    esri_rejects, gj_rejects = rejects(engine), rejects(other_engine)
    assert [r[:3] for r in gj_rejects] == [r[:3] for r in esri_rejects]

    # Against the file itself: every record loaded or rejected (a reject's line is the feature's
    # position), at its own coordinates, on its own reported day.
    by_id = stored(engine)
    rejected_ids = {api_sample[line - 1]["INCIDENT_REPORT_ID"] for line, *_ in esri_rejects}
    assert rejected_ids.isdisjoint(by_id) and rejected_ids | set(by_id) == {r["INCIDENT_REPORT_ID"] for r in api_sample}
    for line, reason, detail, raw in esri_rejects:
        feature = json.loads(raw)
        assert feature["attributes"]["INCIDENT_REPORT_ID"] == api_sample[line - 1]["INCIDENT_REPORT_ID"]
    for line, reason, detail, raw in gj_rejects:
        assert json.loads(raw)["properties"]["INCIDENT_REPORT_ID"] == api_sample[line - 1]["INCIDENT_REPORT_ID"]
    checked = 0
    for row in api_sample:
        got = by_id.get(row["INCIDENT_REPORT_ID"])
        if got is None:
            continue
        lon, lat, day = got
        assert abs(lon - float(row["coordinates_lon"])) < 1e-6 and abs(lat - float(row["coordinates_lat"])) < 1e-6
        assert day == datetime.fromtimestamp(int(row["DATE_REPORTED"]) / 1000, timezone.utc).date()
        checked += 1
    assert checked == esri.rows_loaded


@pytest.mark.parametrize("csv_form", ["the real file", "portal layout"])
def test_the_same_records_from_a_csv_are_stored_alike(engine, other_engine, api_sample, data_dir, tmp_path, csv_form):
    """Against the real CSV itself (epoch ms, geometry columns) and the same records in the portal's
    layout (dates as `YYYY/MM/DD 00:00:00+00`, no geometry columns)."""
    path = data_dir / "real" / "incidents_api_sample.csv"
    if csv_form == "portal layout":
        path = tmp_path / "incidents.csv"
        columns = [c for c in api_sample[0] if c not in GEOMETRY_COLUMNS]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(columns)
            for r in api_sample:
                out.writerow([datetime.fromtimestamp(int(r[c]) / 1000, timezone.utc).strftime("%Y/%m/%d %H:%M:%S+00")
                              if c in INCIDENTS.times and r[c] else r[c] for c in columns])
    from_csv = load_incidents(other_engine, path)
    from_json = load_incidents(engine, write(tmp_path / "incidents.json", esri_answer(api_sample)))
    assert (from_json.rows_loaded, dict(from_json.rejected)) == (from_csv.rows_loaded, dict(from_csv.rejected))
    # The row hash covers the source cells, which differ (a CSV carries every column); the rest is equal.
    assert table_rows(engine, ("row_hash",)) == table_rows(other_engine, ("row_hash",))
    assert [r[:2] for r in rejects(engine)] == [(line - 1, reason) for line, reason, *_ in rejects(other_engine)]


@pytest.mark.parametrize("fmt", ["json", "geojson"])
def test_the_geometry_fills_coordinates_the_attributes_lack(engine, api_sample, tmp_path, fmt):
    data = esri_answer(api_sample) if fmt == "json" else geojson_answer(api_sample)
    for f in data["features"]:
        values = f["attributes" if fmt == "json" else "properties"]
        values["LATITUDE_PUBLIC"] = None
        values["LONGITUDE_PUBLIC"] = None
    report = load_incidents(engine, write(tmp_path / f"incidents.{fmt}", data))
    assert report.fixes.get("coordinates_from_state_plane", 0) == 0   # the geometry, not X/Y
    by_id = stored(engine)
    assert report.rows_loaded == len(by_id) > 4900
    exact = 0
    for row in api_sample:
        if row["INCIDENT_REPORT_ID"] not in by_id:
            continue
        lon, lat, _ = by_id[row["INCIDENT_REPORT_ID"]]
        # To the geometry's full precision, not the attributes' six decimals.
        assert abs(lon - float(row["coordinates_lon"])) < 1e-9 and abs(lat - float(row["coordinates_lat"])) < 1e-9
        exact += abs(lon - float(row["LONGITUDE_PUBLIC"])) > 1e-8
    assert exact > 4000


def test_junk_latitude_without_state_plane_falls_back_to_the_geometry(engine, api_sample, tmp_path):
    """The real layer's junk rows carry the longitude in LATITUDE_PUBLIC; with no X/Y either, the
    feature's geometry is the point left."""
    rows = api_sample[:100]
    data = esri_answer(rows)
    for f in data["features"][:10]:
        a = f["attributes"]
        a["LATITUDE_PUBLIC"], a["X_COORD_PUBLIC"], a["Y_COORD_PUBLIC"] = a["LONGITUDE_PUBLIC"], None, None
    report = load_incidents(engine, write(tmp_path / "junk.json", data))
    assert (report.fixes["coordinates_from_geometry"], report.fixes["latitude_longitude_unusable"]) == (10, 10)
    by_id = stored(engine)
    for r in rows[:10]:
        lon, lat, _ = by_id[r["INCIDENT_REPORT_ID"]]
        assert abs(lon - float(r["coordinates_lon"])) < 1e-9 and abs(lat - float(r["coordinates_lat"])) < 1e-9


def test_state_plane_geometry_is_converted(engine, api_sample, tmp_path):
    rows = api_sample[:300]
    data = esri_answer(rows, spatialReference={"wkid": 102719, "latestWkid": 2264})
    for f, r in zip(data["features"], rows):
        f["geometry"] = {"x": float(r["X_COORD_PUBLIC"]), "y": float(r["Y_COORD_PUBLIC"])}
        for c in ("LATITUDE_PUBLIC", "LONGITUDE_PUBLIC", "X_COORD_PUBLIC", "Y_COORD_PUBLIC"):
            f["attributes"][c] = None
    report = load_incidents(engine, write(tmp_path / "sp.json", data))
    by_id = stored(engine)
    assert report.fixes["coordinates_from_state_plane"] == 300 and len(by_id) == 300 - report.rows_rejected
    for r in rows:
        if r["INCIDENT_REPORT_ID"] in by_id:
            lon, lat, _ = by_id[r["INCIDENT_REPORT_ID"]]
            # Whole feet: about 0.15 m, under 2e-6 degrees.
            assert math.dist((lon, lat), (float(r["coordinates_lon"]), float(r["coordinates_lat"]))) < 1e-5


def test_loading_the_same_file_again_changes_nothing(engine, api_sample, tmp_path):
    path = write(tmp_path / "incidents.geojson", geojson_answer(api_sample[:500]))
    first = load_incidents(engine, path)
    before = snapshot(engine)
    again = load_incidents(engine, path)
    assert again.already_loaded_batch == first.batch_id and again.rows_read == 0
    assert snapshot(engine) == before
    forced = load_incidents(engine, path, force=True)
    assert (forced.inserted, forced.updated, forced.unchanged) == (0, 0, first.rows_loaded)


def test_bad_features_are_rejects_with_their_position_and_json(engine, api_sample, tmp_path, monkeypatch):
    # Batches of 7 rows: positions and the duplicate's first occurrence must hold across batches.
    monkeypatch.setattr(points, "FRAME_BATCH_ROWS", 7)
    data = geojson_answer(api_sample[:50])
    data["features"][4] = None                                          # feature 5: not a feature
    data["features"][9]["properties"] = ["not", "an", "object"]         # feature 10
    del data["features"][14]["properties"]["DATE_REPORTED"]             # feature 15: no date
    data["features"][19] = copy.deepcopy(data["features"][2])           # feature 20 repeats feature 3
    data["exceededTransferLimit"] = True
    report = load_incidents(engine, write(tmp_path / "bad.geojson", data))
    assert report.rows_read == 50 and report.rows_loaded + report.rows_rejected == 50
    assert "exceededTransferLimit" in report.notes["partial_page"]
    got = {line: (reason, detail, raw) for line, reason, detail, raw in rejects(engine)}
    assert got[5][:2] == ("malformed_row", "feature 5 is not a feature: NoneType, expected a JSON object with properties")
    assert got[5][2] == "null"
    assert got[10][0] == "malformed_row" and "its properties are a list" in got[10][1]
    assert got[15][:2] == ("missing_value", "DATE_REPORTED is empty")
    assert got[20][:2] == ("duplicate_id", "INCIDENT_REPORT_ID repeats the row at feature 3")
    assert json.loads(got[20][2]) == data["features"][2]
    with engine.connect() as conn:
        loaded = set(conn.execute(sa.text("SELECT incident_report_id FROM incidents")).scalars())
        note = conn.execute(sa.text("SELECT report->'notes'->>'partial_page' FROM ingest_batches WHERE kind = 'incidents'")).scalar()
    assert api_sample[2]["INCIDENT_REPORT_ID"] in loaded and api_sample[4]["INCIDENT_REPORT_ID"] not in loaded
    assert loaded == {r["INCIDENT_REPORT_ID"] for i, r in enumerate(api_sample[:50]) if i + 1 not in got}
    assert note == report.notes["partial_page"]


def _refused(api_sample) -> dict[str, tuple[bytes, str]]:
    good = json.dumps(esri_answer(api_sample[:200])).encode()
    crs = geojson_answer(api_sample[:5]) | {"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}}
    no_date = geojson_answer(api_sample[:5])
    for f in no_date["features"]:
        del f["properties"]["DATE_REPORTED"]
    return {
        "truncated.json": (good[: len(good) // 2], r"not valid JSON \(.*: line 1 column \d+; the file ends early: cut off\?\)"),
        "other.json": (b'{"results": [{"a": 1}], "count": 1}',
                       "not an ArcGIS query answer or GeoJSON FeatureCollection: no 'features' array "
                       r"\(top-level keys: results, count\)"),
        "array.json": (b"[1, 2]", "the file holds a JSON array, not an object"),
        "csv.json": (b"INCIDENT_REPORT_ID,DATE_REPORTED\nX,2021-01-01\n", "not valid JSON"),
        "mercator.json": (json.dumps(esri_answer(api_sample[:5], spatialReference={"wkid": 102100, "latestWkid": 3857})).encode(),
                          "points come in spatial reference 3857"),
        "crs.geojson": (json.dumps(crs).encode(), "points come in spatial reference 3857"),
        "nodate.geojson": (json.dumps(no_date).encode(),
                           "missing field.s. DATE_REPORTED: absent from every feature's properties"),
        "error.json": (b'{"error": {"code": 400, "message": "Invalid query", "details": []}}',
                       "an ArcGIS error answer, not features .code 400: Invalid query"),
    }


@pytest.mark.parametrize("name", ["truncated.json", "other.json", "array.json", "csv.json", "mercator.json",
                                  "crs.geojson", "nodate.geojson", "error.json"])
def test_a_file_that_is_not_a_feature_answer_is_refused_whole(engine, api_sample, tmp_path, name):
    content, message = _refused(api_sample)[name]
    path = tmp_path / name
    path.write_bytes(content)
    before = snapshot(engine)
    with pytest.raises(IngestError, match=message):
        load_incidents(engine, path)
    assert snapshot(engine) == before


def test_another_layers_answer_is_refused_naming_the_missing_fields(engine, data_dir):
    """The real Homicide layer answer (f=json) is an ArcGIS answer, but not of the incidents layer."""
    before = snapshot(engine)
    with pytest.raises(IngestError, match="missing field.s. INCIDENT_REPORT_ID: absent from the answer's 'fields'"):
        load_incidents(engine, data_dir / "real" / "homicides_arcgis.json")
    assert snapshot(engine) == before


def test_cli_loads_calls_and_incidents_from_json(engine, api_sample, tmp_path):
    """Calls in the project's layout, as a layer answer would hold them (coordinates only in the geometry)."""
    rows = api_sample[:200]
    calls = {"objectIdFieldName": "OBJECTID", "spatialReference": {"wkid": 4326},
             "fields": [{"name": n, "type": t} for n, t in (("CALL_ID", "esriFieldTypeString"),
                                                            ("DATE_RECEIVED", "esriFieldTypeDate"),
                                                            ("CALL_TYPE", "esriFieldTypeString"),
                                                            ("ADDRESS", "esriFieldTypeString"))],
             "features": [{"attributes": {"call_id": r["INCIDENT_REPORT_ID"], "date_received": int(r["DATE_REPORTED"]),
                                          "call_type": r["HIGHEST_NIBRS_DESCRIPTION"], "address": r["LOCATION"]},
                           "geometry": {"x": float(r["coordinates_lon"]), "y": float(r["coordinates_lat"])}}
                          for r in rows]}
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTSPOTS_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    result = runner.invoke(main, ["load", "calls", str(write(tmp_path / "calls.json", calls))], env=env,
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        got = {r[0]: r[1:] for r in conn.execute(sa.text(
            "SELECT call_id, ST_X(geom), ST_Y(geom), address, (received_at AT TIME ZONE 'UTC')::date FROM calls"))}
        n_rejected = conn.execute(sa.text("SELECT count(*) FROM ingest_rejects WHERE kind = 'calls'")).scalar()
    assert len(got) + n_rejected == 200 and len(got) >= 195
    assert f"loaded {len(got):,} " in result.output
    for r in rows:
        if r["INCIDENT_REPORT_ID"] in got:
            lon, lat, address, day = got[r["INCIDENT_REPORT_ID"]]
            assert (lon, lat) == pytest.approx((float(r["coordinates_lon"]), float(r["coordinates_lat"])), abs=1e-9)
            assert address == r["LOCATION"]
            assert day == datetime.fromtimestamp(int(r["DATE_REPORTED"]) / 1000, timezone.utc).date()

    partial = write(tmp_path / "page.geojson", geojson_answer(rows) | {"exceededTransferLimit": True})
    result = runner.invoke(main, ["load", "incidents", str(partial)], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "partial_page: the answer says the layer holds more records (exceededTransferLimit)" in result.output
    bad = tmp_path / "cut.json"
    bad.write_text(partial.read_text()[:1000])
    result = runner.invoke(main, ["load", "incidents", str(bad)], env=env, catch_exceptions=False)
    assert result.exit_code == 1 and "not valid JSON" in result.output and "cut off?" in result.output
