"""geo.export on hand-made calls whose every value is known: each format read back and compared."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pyogrio
import pytest
import sqlalchemy as sa

from geo.catalog import LAYERS
from geo.export import (DBF_TEXT_BYTES, FORMATS, SHAPEFILE_FIELDS, dbf_text, export_sql,
                        shapefile_fields, write_export)
from geo.filters import Filter, ParameterError, parse_filter
from geo.runs import NoSavedRun

REPO = Path(__file__).resolve().parent.parent
LONG = "é" * 100 + "x" * 200          # 400 bytes of UTF-8: longer than a dBase text field
TRICKY = 'SHOTS, "FIRED"\nsecond line'
# call_id -> (local time, call_type, priority, p_violent, label, lon, lat)
CALLS = {
    "X01": ("2021-03-01 10:00:00", '=HYPERLINK("http://evil.example","click")', 1, 0.9, True, -80.8431, 35.2271),
    "X02": ("2021-03-01 11:00:00", "+15550100", 2, 0.2, False, -80.8432, 35.2272),
    "X03": ("2021-03-01 12:00:00", "-2+3", 3, 0.1, False, -80.8433, 35.2273),
    "X04": ("2021-03-01 13:00:00", "@SUM(A1:A9)", 3, 0.1, False, -80.8434, 35.2274),
    "X05": ("2021-03-01 14:00:00", "\tTAB", 3, 0.1, False, -80.8435, 35.2275),
    "X06": ("2021-03-01 15:00:00", "\rCR", 3, 0.1, False, -80.8436, 35.2276),
    "X07": ("2021-03-02 09:30:00", TRICKY, 4, 0.6, True, -80.8437, 35.2277),
    "X08": ("2021-03-02 10:30:00", LONG, 4, 0.3, False, -80.8438, 35.2278),
    "X09": ("2021-03-02 11:30:00", "NO VALUES", None, None, None, -80.8439, 35.2279),
    "X10": ("2021-07-04 21:00:00", "FIREWORKS", 3, 0.05, False, -80.70, 35.10),  # summer time: UTC-4
}
ADDRESS = "1 PRIVATE CALLER WAY"


@pytest.fixture
def calls_engine(engine):
    """The test database with the calls above (address set on every one: it must never leave)."""
    with engine.begin() as conn:
        for call_id, (when, kind, prio, p, label, lon, lat) in CALLS.items():
            conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, call_type, priority, address, city, zip, geom, division_id,"
                " npa_id, p_violent, label, model_version, category, row_hash, batch_id)"
                " VALUES (:id, CAST(:t AS timestamp) AT TIME ZONE 'America/New_York', :kind, :prio, :addr, 'CHARLOTTE',"
                " '28202', ST_SetSRID(ST_Point(:lon, :lat), 4326), '01', 380, :p, :label, 'test-1', 'other', 0, 0)"),
                {"id": call_id, "t": when, "kind": kind, "prio": prio, "addr": ADDRESS, "lon": lon, "lat": lat,
                 "p": p, "label": label})
    return engine


def export(engine, tmp_path, layer, ext, flt=None, **kw) -> tuple[Path, int]:
    out = tmp_path / f"{layer}.{ext}"
    job = write_export(engine, layer, ext, flt or Filter(), out, **kw)
    assert job.finished
    return out, job.rows


def utc(local: str) -> str:
    """The expected UTC text of a local America/New_York time."""
    from zoneinfo import ZoneInfo

    t = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("America/New_York")).astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_property_has_a_documented_shapefile_name():
    documented = dict(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", (REPO / "docs" / "exports.md").read_text(), re.M))
    assert documented == SHAPEFILE_FIELDS
    for lyr in LAYERS.values():
        names = [name for name, _ in shapefile_fields(lyr)]
        assert all(p.name in SHAPEFILE_FIELDS for p in lyr.public), lyr.id
        assert all(len(n) <= 10 for n in names) and len(set(names)) == len(names), (lyr.id, names)
    assert SHAPEFILE_FIELDS["received_at"] == "recv_at" and SHAPEFILE_FIELDS["hotspot_class"] == "hs_class"


def test_private_columns_are_never_selected():
    for lyr in LAYERS.values():
        private = [p.sql for p in lyr.properties if p.private]
        for fmt in FORMATS.values():
            sql, _ = export_sql(lyr, Filter(), fmt, 1 if lyr.run_kinds else None)
            assert not any(re.search(rf"\b{col}\b", sql) for col in private), (lyr.id, fmt.ext)
    assert "address" in [p.name for p in LAYERS["calls"].properties if p.private]


def test_dbf_text_cuts_at_a_character_boundary():
    assert dbf_text("short") == "short" and dbf_text(None) is None
    cut = dbf_text(LONG)
    assert len(cut.encode()) <= DBF_TEXT_BYTES and LONG.startswith(cut) and len(cut) == 154


def test_csv_is_formula_safe_and_round_trips(calls_engine, tmp_path):
    out, rows = export(calls_engine, tmp_path, "calls", "csv")
    raw = out.read_bytes()
    assert rows == len(CALLS) and raw.count(b"\r\n") >= len(CALLS) + 1
    assert ADDRESS.encode() not in raw and b"address" not in raw
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    by_id = {r["call_id"]: r for r in table}
    assert list(by_id) == list(CALLS)            # time order
    assert list(table[0]) == [p.name for p in LAYERS["calls"].public] + ["lon", "lat"]
    for call_id in ("X01", "X02", "X03", "X04", "X05", "X06"):
        assert by_id[call_id]["call_type"] == "'" + CALLS[call_id][1]
    assert by_id["X07"]["call_type"] == TRICKY and by_id["X08"]["call_type"] == LONG
    # Numbers stay numbers: negative longitudes are not prefixed, and the cells are not quoted.
    assert by_id["X01"]["lon"] == "-80.8431" and float(by_id["X01"]["lat"]) == 35.2271
    assert b',-80.8431,35.2271\r\n' in raw and b'"0.9"' not in raw
    assert by_id["X01"]["violent"] == "true" and by_id["X02"]["violent"] == "false"
    assert by_id["X09"]["priority"] == "" and by_id["X09"]["p_violent"] == "" and by_id["X09"]["violent"] == ""
    assert by_id["X01"]["received_at"] == utc(CALLS["X01"][0]) == "2021-03-01T15:00:00Z"
    assert by_id["X10"]["received_at"] == "2021-07-05T01:00:00Z"
    assert float(by_id["X01"]["p_violent"]) == pytest.approx(0.9, abs=1e-7)


def test_shapefile_zip_fields_types_and_text_limit(calls_engine, tmp_path):
    out, rows = export(calls_engine, tmp_path, "calls", "zip")
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == sorted(["calls.shp", "calls.shx", "calls.dbf", "calls.prj", "calls.cpg",
                                                 "fields.csv"])
        assert zf.read("calls.cpg").strip() == b"UTF-8"
        mapping = list(csv.DictReader(io.StringIO(zf.read("fields.csv").decode())))
    assert [(m["property"], m["field"]) for m in mapping] == [(p.name, SHAPEFILE_FIELDS[p.name])
                                                                for p in LAYERS["calls"].public]
    info = pyogrio.read_info(f"/vsizip/{out}/calls.shp")
    assert info["crs"] == "EPSG:4326" and info["features"] == rows == len(CALLS)
    assert list(info["fields"]) == [SHAPEFILE_FIELDS[p.name] for p in LAYERS["calls"].public]
    df = pyogrio.read_dataframe(f"/vsizip/{out}/calls.shp").set_index("call_id")
    assert df.loc["X08", "call_type"] == dbf_text(LONG) and df.loc["X07", "call_type"] == TRICKY
    assert df.loc["X01", "call_type"] == CALLS["X01"][1]          # only CSV needs the formula guard
    assert df.loc["X01", "recv_at"] == "2021-03-01T15:00:00Z"
    assert bool(df.loc["X01", "violent"]) is True and df.loc["X01", "priority"] == 1
    assert df.loc["X01", "p_violent"] == pytest.approx(0.9, abs=1e-6)
    assert (df.loc["X01", "geometry"].x, df.loc["X01", "geometry"].y) == (-80.8431, 35.2271)


def test_geopackage_keeps_types_and_utc(calls_engine, tmp_path):
    out, rows = export(calls_engine, tmp_path, "calls", "gpkg")
    info = pyogrio.read_info(out, layer="calls")
    assert info["crs"] == "EPSG:4326" and info["geometry_type"] == "Point" and info["features"] == len(CALLS)
    assert "address" not in info["fields"]
    df = pyogrio.read_dataframe(out).set_index("call_id")
    assert df.loc["X10", "received_at"] == datetime(2021, 7, 5, 1, tzinfo=timezone.utc)
    assert df.loc["X08", "call_type"] == LONG                      # no dBase limit here
    assert df["priority"].isna().sum() == 1 and df.loc["X09", "p_violent"] != df.loc["X09", "p_violent"]


def test_geojson_features(calls_engine, tmp_path):
    out, rows = export(calls_engine, tmp_path, "calls", "geojson")
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == rows == len(CALLS)
    f = {x["id"]: x for x in doc["features"]}
    assert f["X07"]["properties"]["call_type"] == TRICKY and f["X09"]["properties"]["priority"] is None
    assert f["X01"]["geometry"] == {"type": "Point", "coordinates": [-80.8431, 35.2271]}
    assert f["X01"]["properties"]["received_at"] == "2021-03-01T15:00:00Z" and "address" not in f["X01"]["properties"]


def test_filters_select_rows(calls_engine, tmp_path):
    march = parse_filter({"start": "2021-03-01", "end": "2021-03-01", "violent": "true"})
    _, rows = export(calls_engine, tmp_path, "calls", "csv", march)
    assert rows == 1
    out, rows = export(calls_engine, tmp_path, "calls", "geojson", parse_filter({"bbox": "-80.75,35.0,-80.6,35.2"}))
    assert rows == 1 and json.loads(out.read_text())["features"][0]["id"] == "X10"
    out, rows = export(calls_engine, tmp_path, "calls", "zip", parse_filter({"start": "2031-01-01"}))
    info = pyogrio.read_info(f"/vsizip/{out}/calls.shp")
    assert rows == 0 and info["features"] == 0 and "recv_at" in info["fields"]   # empty, still typed


def test_area_layers_take_bbox_only(calls_engine, tmp_path):
    with calls_engine.connect() as conn:
        inside = conn.execute(sa.text("SELECT count(*) FROM divisions WHERE ST_Intersects(geom, ST_MakeEnvelope("
                                      "-80.85, 35.22, -80.84, 35.23, 4326))")).scalar()
    out, rows = export(calls_engine, tmp_path, "divisions", "csv", parse_filter({"bbox": "-80.85,35.22,-80.84,35.23"}))
    assert 0 < rows == inside < 14
    assert out.read_text().splitlines()[0] == "division_id,name,short_name,wkt"
    with pytest.raises(ParameterError) as err:
        export(calls_engine, tmp_path, "divisions", "csv", parse_filter({"start": "2021-01-01"}))
    assert err.value.parameter == "start"
    with pytest.raises(ParameterError) as err:
        export(calls_engine, tmp_path, "calls", "csv", run=1)
    assert err.value.parameter == "run"


def test_unknown_layer_format_and_missing_run(calls_engine, tmp_path):
    for layer, ext, parameter in [("nope", "csv", "layer"), ("calls", "xls", "format")]:
        with pytest.raises(ParameterError) as err:
            export(calls_engine, tmp_path, layer, ext)
        assert err.value.parameter == parameter
    with pytest.raises(NoSavedRun):
        export(calls_engine, tmp_path, "hotspot_npas", "gpkg")
    assert not list(tmp_path.iterdir())            # nothing half-written left behind
