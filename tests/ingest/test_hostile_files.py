"""Hostile input files for every file loader (issue 7): a clear error or rejected rows with reasons,
never a crash, a silent drop or a partial load.

Refused files are loaded into one module database that already holds calls, incidents, polygons and
counts, and every table is compared (row count and an md5 over its ordered rows) before and after.
Files that load (with rejects or repairs) are checked row by row.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import shutil
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
import sqlalchemy as sa

from geo.ingest.batch import IngestError
from geo.ingest.calls import load_calls
from geo.ingest.counts import CALL_COUNTS, load_monthly_counts
from geo.ingest.incidents import load_incidents
from geo.ingest.shapes import load_divisions, load_neighborhoods
from tests.clusters import cloned_database, snapshot
from tests.ingest.test_points import CALL_COLUMNS, INCIDENT_COLUMNS, call, incident, places, write_csv  # noqa: F401

# Every table a loader writes; each holds rows before the tests, so any change to it shows.
# data_versions is bumped by any write to a served table (tile caches follow it).
TABLES = ("calls", "incidents", "divisions", "neighborhoods", "offense_counts", "call_counts", "ingest_batches",
          "ingest_rejects", "data_versions")

COUNT_COLUMNS = "OBJECTID,ROW_TYPE,GEOGRAPHY,GEOGRAPHY_ID,CALENDAR_YEAR,CALENDAR_MONTH,CALL_DESCRIPTION,CALL_COUNT"
UPTOWN = (-80.8431, 35.2271)  # a point in an NPA, for files that never get as far as their rows


def fingerprint(engine) -> dict[str, tuple[int, str]]:
    """Every table's row count and md5 over its rows, indexes and constraints (tests.clusters.snapshot);
    the module's TABLES must be among them."""
    out = snapshot(engine)
    assert set(TABLES) <= set(out), set(TABLES) - set(out)
    return out


def assert_refused(engine, load, match: str) -> str:
    """`load()` raises IngestError matching `match` and leaves every table exactly as it was."""
    before = fingerprint(engine)
    with pytest.raises(IngestError, match=match) as caught:
        load()
    assert fingerprint(engine) == before
    return str(caught.value)


@pytest.fixture(scope="module")
def db(server_url, template_db, places, tmp_path_factory):
    """A database for this module with polygons, offense counts, and a few calls, incidents and call counts."""
    with cloned_database(server_url, template_db, "t_hostile_") as (_, engine):
        yield _seeded(engine, places, tmp_path_factory.mktemp("seed"))


def _seeded(engine, places, seed):
    """The module database's few rows of every kind (one of them a reject)."""
    lon, lat, _, _ = places[2]
    seed_calls = [*(call(f"S-{i}", lon, lat) for i in range(3)), call("S-x", "", "")]  # S-x: a reject
    load_calls(engine, write_csv(seed / "calls.csv", CALL_COLUMNS, seed_calls))
    load_incidents(engine, write_csv(seed / "incidents.csv", INCIDENT_COLUMNS, [incident(f"S-{i}", lon, lat) for i in range(3)]))
    (seed / "counts.csv").write_text(f"{COUNT_COLUMNS}\n1,CMPD Jurisdiction,CMPD,0,2021,01,All Calls,40000\n")
    load_monthly_counts(engine, CALL_COUNTS, seed / "counts.csv")
    before = fingerprint(engine)
    assert all(before[t][0] > 0 for t in TABLES), before
    return engine


def _line(columns: list[str], row: dict) -> str:
    return ",".join(row[c] for c in columns)


CALL_HEADER = ",".join(CALL_COLUMNS)
CALL_ROW = _line(CALL_COLUMNS, call("R-1", *UPTOWN))
INCIDENT_HEADER = ",".join(INCIDENT_COLUMNS)
INCIDENT_ROW = _line(INCIDENT_COLUMNS, incident("R-1", "-80.8431", "35.2271"))
COUNT_ROW = "7,CMPD Jurisdiction,CMPD,0,2021,02,All Calls,41000"
LOADERS = {
    "calls": (CALL_HEADER, CALL_ROW, lambda engine, path: load_calls(engine, path)),
    "incidents": (INCIDENT_HEADER, INCIDENT_ROW, lambda engine, path: load_incidents(engine, path)),
    "counts": (COUNT_COLUMNS, COUNT_ROW, lambda engine, path: load_monthly_counts(engine, CALL_COUNTS, path)),
}


def _xlsx_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    return buf.getvalue()


# (case, loader, file content from the loader's valid header and row, what the error must say)
REFUSED_CSV = [
    ("other_layout", "calls", lambda h, r: f"{COUNT_COLUMNS}\n{COUNT_ROW}\n".encode(),
     r"missing column\(s\) CALL_ID, DATE_RECEIVED, CALL_TYPE; found OBJECTID, ROW_TYPE"),
    ("column_missing", "counts", lambda h, r: (h.replace(",CALL_COUNT", "") + "\n" + r.rsplit(",", 1)[0] + "\n").encode(),
     r"missing column\(s\) CALL_COUNT"),
    ("column_renamed", "incidents", lambda h, r: (h.replace("DATE_REPORTED", "REPORTED_ON") + "\n" + r + "\n").encode(),
     r"missing column\(s\) DATE_REPORTED; found INCIDENT_REPORT_ID"),
    ("column_twice", "calls", lambda h, r: (h + ",ADDRESS\n" + r + ",x\n").encode(),
     r"duplicate column name\(s\) in header: ADDRESS"),
    ("column_twice_other_case", "counts", lambda h, r: (h + ",geography\n" + r + ",x\n").encode(),
     r"duplicate column name\(s\) in header: GEOGRAPHY"),
    ("nul_in_header", "calls", lambda h, r: (h.replace("CALL_TYPE", "CALL_\0TYPE") + "\n" + r + "\n").encode(),
     r"header column 3 \('CALL_\\x00TYPE'\) contains a NUL character"),
    ("nul_in_optional_header", "incidents", lambda h, r: (h.replace("LOCATION,", "LOC\0ATION,") + "\n" + r + "\n").encode(),
     r"header column 2 \('LOC\\x00ATION'\) contains a NUL character"),
    ("empty_file", "calls", lambda h, r: b"", r"the file is empty \(no header row\)"),
    ("empty_file", "counts", lambda h, r: b"", r"the file is empty \(no header row\)"),
    ("blank_lines", "incidents", lambda h, r: b"\n\n\n", r"missing column\(s\) INCIDENT_REPORT_ID, DATE_REPORTED; found none"),
    ("random_bytes", "calls", lambda h, r: random.Random(7).randbytes(8192),
     r"not a CSV text file \(\d+% of its first 8,192 bytes are control characters\)"),
    ("random_bytes", "counts", lambda h, r: random.Random(8).randbytes(300), r"not a CSV text file"),
    ("gzip_renamed_csv", "calls", lambda h, r: gzip.compress(f"{h}\n{r}\n".encode()), r"gzip-compressed, not a CSV"),
    ("gzip_renamed_csv", "incidents", lambda h, r: gzip.compress(f"{h}\n{r}\n".encode()), r"gzip-compressed, not a CSV"),
    ("xlsx_renamed_csv", "counts", lambda h, r: _xlsx_bytes(), r"zip archive \(an Excel .xlsx workbook\?\)"),
    ("utf16_without_bom", "calls", lambda h, r: f"{h}\n{r}\n".encode("utf-16-le"), r"UTF-16 without a byte-order mark"),
    ("utf8_and_latin1_mixed", "calls",
     lambda h, r: f"{h}\n{r.replace('MAIN ST', 'CAFÉ ST')}\n".encode() + r.replace("R-1", "R-2").replace("MAIN", "Caf\xe9").encode("latin-1") + b"\n",
     r"line 3 is not UTF-8 \(byte 0xe9\) while other lines are: the file mixes encodings"),
    ("not_even_windows_1252", "counts", lambda h, r: f"{h}\n{r}\n".encode() + b"8,CMPD Jurisdiction,CMPD\x81,0,2021,03,x,1\n",
     r"line 3 is neither UTF-8 nor Windows-1252 \(byte 0x81\)"),
]


@pytest.mark.parametrize("case,loader,content,match", REFUSED_CSV, ids=[f"{c[1]}-{c[0]}" for c in REFUSED_CSV])
def test_unreadable_csv_is_refused_naming_file_and_problem(db, tmp_path, case, loader, content, match):
    header, row, load = LOADERS[loader]
    path = tmp_path / f"{case}.csv"
    path.write_bytes(content(header, row))
    message = assert_refused(db, lambda: load(db, path), match)
    assert message.startswith(str(path))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_missing_file_or_directory_is_refused(db, tmp_path, loader):
    load = LOADERS[loader][2]
    assert_refused(db, lambda: load(db, tmp_path / "nowhere.csv"), r"nowhere.csv: no such file")
    assert_refused(db, lambda: load(db, tmp_path), re.escape(f"{tmp_path}: not a file"))


def test_header_only_file_loads_nothing_and_says_so(db, tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text(CALL_HEADER + "\n")
    before = fingerprint(db)
    report = load_calls(db, path)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (0, 0, 0)
    after = fingerprint(db)
    assert {t: v for t, v in after.items() if t != "ingest_batches"} == {t: v for t, v in before.items() if t != "ingest_batches"}
    with db.connect() as conn:
        batch = conn.execute(sa.text("SELECT rows_read, rows_loaded, rows_rejected, finished_at IS NOT NULL FROM ingest_batches"
                                     " WHERE batch_id = :b"), {"b": report.batch_id}).one()
    assert tuple(batch) == (0, 0, 0, True)


def test_hostile_rows_are_rejected_with_line_and_reason(db, tmp_path, places):
    """Ragged rows, NUL bytes, megabyte fields, coordinates that are text/NaN/inf/out of range, an
    unclosed quote at the end of the file: each row is loaded or rejected, the good ones load."""
    lon, lat, _, _ = places[3]
    big = "X" * (1 << 20)
    columns = [*CALL_COLUMNS, "NOTES"]  # an extra column is ignored

    def row(i: str, **over) -> str:
        return _line(columns, {**call(i, lon, lat, **over), "NOTES": "not loaded anywhere"})

    lines = [
        ",".join(columns),
        row("H-1"),                                                              # 2 loads
        row("H-2", ADDRESS="100 MAIN ST, APT 4"),                                # 3 one field too many
        "H-3,2021-07-04 23:59:30,SHOTS FIRED",                                   # 4 too few
        row("H-4", CALL_TYPE="SHOTS\0FIRED", ADDRESS="1\0 MAIN ST"),              # 5 NUL in two fields
        row("H-5", ADDRESS=big),                                                 # 6 loads, 1 MB address
        row("H-6", LATITUDE="3" * (1 << 20)),                                    # 7 1 MB latitude
        row("H-7", LATITUDE="north", LONGITUDE="west"),                         # 8 text
        row("H-8", LATITUDE="NaN", LONGITUDE="NaN"),                             # 9
        row("H-9", LATITUDE="inf", LONGITUDE="-inf"),                            # 10
        row("H-10", LATITUDE="95", LONGITUDE="-200"),                            # 11 out of range
        row("H-11", LATITUDE="1e400", LONGITUDE=str(lon)),                       # 12 overflows to inf
        row("H-12", X_COORD="1e999", Y_COORD="-1e999", LATITUDE="", LONGITUDE=""),  # 13 State Plane junk
        row("H-13", ADDRESS='"unclosed 100 MAIN ST'),                            # 14 quote never closed, at EOF
    ]
    path = tmp_path / "hostile_rows.csv"
    path.write_bytes("\n".join(lines).encode())  # no newline after the last line
    report = load_calls(db, path)
    assert report.rows_read == 13 and report.inserted == 2
    assert dict(report.rejected) == {"malformed_row": 4, "missing_coordinates": 6, "outside_county": 1}
    with db.connect() as conn:
        rejects = conn.execute(sa.text("SELECT line, reason, detail, raw FROM ingest_rejects WHERE batch_id = :b ORDER BY line"),
                               {"b": report.batch_id}).all()
        loaded = conn.execute(sa.text("SELECT call_id, length(address), call_type, npa_id FROM calls WHERE batch_id = :b ORDER BY 1"),
                              {"b": report.batch_id}).all()
        batch = conn.execute(sa.text("SELECT rows_read, rows_loaded, rows_rejected FROM ingest_batches WHERE batch_id = :b"),
                             {"b": report.batch_id}).one()
    assert [(r.line, r.reason) for r in rejects] == [
        (3, "malformed_row"), (4, "malformed_row"), (5, "malformed_row"), (7, "missing_coordinates"),
        (8, "missing_coordinates"), (9, "missing_coordinates"), (10, "missing_coordinates"), (11, "outside_county"),
        (12, "missing_coordinates"), (13, "missing_coordinates"), (14, "malformed_row"),
    ]
    detail = {r.line: r.detail for r in rejects}
    assert detail[3] == "expected 15 fields, found 16" and detail[4] == "expected 15 fields, found 3"
    assert detail[5] == "NUL character in CALL_TYPE, ADDRESS"
    assert detail[7].startswith("no usable coordinates (LATITUDE='" + "3" * 40 + "...', LONGITUDE=")
    assert len(detail[7]) < 300  # the megabyte is not copied into the message
    assert "LATITUDE='north', LONGITUDE='west', X_COORD='', Y_COORD=''" in detail[8]
    assert "LATITUDE='inf', LONGITUDE='-inf'" in detail[10]
    assert detail[11] == "point (-200.000000, 95.000000) is outside Mecklenburg County"
    assert "X_COORD='1e999', Y_COORD='-1e999'" in detail[13]
    assert detail[14] == "expected 15 fields, found 5"
    raw = {r.line: r.raw for r in rejects}
    assert raw[5].startswith("H-4,2021-07-04 23:59:30,SHOTS\ufffdFIRED,")  # NUL shown as U+FFFD, not lost
    assert len(raw[7]) > 1 << 20 and raw[14].endswith("not loaded anywhere")
    assert [tuple(r) for r in loaded] == [("H-1", 20, "SHOTS FIRED", 3), ("H-5", 1 << 20, "SHOTS FIRED", 3)]
    assert tuple(batch) == (13, 2, 11)


ENCODED = {
    "utf8_bom": lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    "crlf": lambda text: text.replace("\n", "\r\n").encode("utf-8"),
    "windows_1252": lambda text: text.encode("cp1252"),
    "utf16_le_bom": lambda text: text.replace("\n", "\r\n").encode("utf-16"),
    "utf16_be_bom": lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_other_encodings_and_line_endings_load_the_same_values(db, tmp_path, places, encoding):
    lon, lat, _, _ = places[9]
    prefix = f"E-{encoding}-"
    rows = [call(prefix + "1", lon, lat, ADDRESS="100 BLOCK OF CAFÉ ST"), call(prefix + "2", lon, lat, CALL_TYPE="ASSAULT")]
    text = "\n".join([CALL_HEADER, _line(CALL_COLUMNS, rows[0]), "too,few,fields", _line(CALL_COLUMNS, rows[1])]) + "\n"
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(ENCODED[encoding](text))
    report = load_calls(db, path)
    assert (report.rows_read, report.inserted, dict(report.rejected)) == (3, 2, {"malformed_row": 1})
    assert report.notes.get("encoding", "utf-8") == {"windows_1252": "cp1252", "utf16_le_bom": "utf-16",
                                                      "utf16_be_bom": "utf-16"}.get(encoding, "utf-8")
    with db.connect() as conn:
        got = conn.execute(sa.text("SELECT call_id, address, call_type, zip, npa_id FROM calls WHERE call_id LIKE :p ORDER BY 1"),
                           {"p": prefix + "%"}).all()
        bad = conn.execute(sa.text("SELECT line, raw FROM ingest_rejects WHERE batch_id = :b"), {"b": report.batch_id}).one()
    # No byte-order mark in the first name, no carriage return left in the last column, é decoded.
    assert [tuple(r) for r in got] == [(prefix + "1", "100 BLOCK OF CAFÉ ST", "SHOTS FIRED", "28202", 9),
                                       (prefix + "2", "100 BLOCK OF MAIN ST", "ASSAULT", "28202", 9)]
    assert tuple(bad) == (3, "too,few,fields")


def test_count_rows_with_hostile_values_are_rejected_with_reasons(db, tmp_path):
    lines = [
        COUNT_COLUMNS,
        "101,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,40000",           # 2 loads
        "102,CMPD Jurisdiction,,0,2022,01,All Calls,3",                   # 3 no geography
        "103,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,inf",             # 4
        "104,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,1e12",            # 5 beyond integer
        "105,CMPD Jurisdiction,CMPD,0,99999,01,All Calls,5",              # 6 beyond smallint
        "106,CMPD Jurisdiction,CMPD,0,2022,01,All\0Calls,5",              # 7 NUL
        "107,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,12 calls",        # 8
        "108,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,-5",              # 9
        "109,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,NaN",             # 10
        "99999999999,CMPD Jurisdiction,CMPD,0,2022,01,All Calls,5",       # 11 id beyond integer
        "111,CMPD Jurisdiction,CMPD,0,2022,1.5,All Calls,5",              # 12
        "112,CMPD Jurisdiction,CMPD,0,2022,01," + "x" * (1 << 20) + ",5",  # 13 loads, 1 MB description
    ]
    path = tmp_path / "counts.csv"
    path.write_text("\n".join(lines) + "\n")
    report = load_monthly_counts(db, CALL_COUNTS, path)
    assert (report.rows_read, report.inserted) == (12, 2)
    with db.connect() as conn:
        rejects = conn.execute(sa.text("SELECT line, reason, detail FROM ingest_rejects WHERE batch_id = :b ORDER BY line"),
                               {"b": report.batch_id}).all()
        loaded = conn.execute(sa.text("SELECT objectid, call_count, length(call_description) FROM call_counts WHERE batch_id = :b"
                                      " ORDER BY 1"), {"b": report.batch_id}).all()
    assert [tuple(r) for r in rejects] == [
        (3, "missing_value", "GEOGRAPHY is empty"),
        (4, "bad_number", "CALL_COUNT 'inf' is not a whole number"),
        (5, "bad_number", "CALL_COUNT '1e12' is out of range (0..2147483647)"),
        (6, "bad_number", "CALENDAR_YEAR '99999' is out of range (1990..2100)"),
        (7, "malformed_row", "NUL character in CALL_DESCRIPTION"),
        (8, "bad_number", "CALL_COUNT '12 calls' is not a whole number"),
        (9, "bad_number", "CALL_COUNT '-5' is out of range (0..2147483647)"),
        (10, "bad_number", "CALL_COUNT 'NaN' is not a whole number"),
        (11, "bad_number", "OBJECTID '99999999999' is out of range (0..2147483647)"),
        (12, "bad_number", "CALENDAR_MONTH '1.5' is not a whole number"),
    ]
    assert [tuple(r) for r in loaded] == [(101, 40000, 9), (112, 5, 1 << 20)]


# --- polygon layers -------------------------------------------------------------------------------

DIVISIONS_SHP = "divisions/CMPD_Police_Divisions.shp"


def _copy_shapefile(data_dir: Path, dest: Path, skip: str = "") -> Path:
    dest.mkdir()
    for part in (data_dir / DIVISIONS_SHP).parent.iterdir():
        if part.suffix != skip:
            shutil.copyfile(part, dest / part.name)
    return dest / Path(DIVISIONS_SHP).name


@pytest.mark.parametrize("part,match", [
    (".shx", r"shapefile part\(s\) missing: .shx"),
    (".dbf", r"shapefile part\(s\) missing: .dbf"),
    (".prj", r"the layer has no coordinate reference system \(.prj missing\?\)"),
])
def test_shapefile_without_a_part_is_refused_naming_it(db, tmp_path, data_dir, part, match):
    shp = _copy_shapefile(data_dir, tmp_path / "div", skip=part)
    assert_refused(db, lambda: load_divisions(db, shp), match)


@pytest.mark.parametrize("label,coordinates", [(4326, 2264), (32617, 2264), (2264, 4326)])
def test_prj_naming_another_crs_than_the_coordinates_is_refused(db, tmp_path, data_dir, label, coordinates):
    """State Plane feet labelled WGS84 (or UTM metres), or degrees labelled State Plane, land far from Charlotte."""
    layer = gpd.read_file(data_dir / DIVISIONS_SHP).to_crs(coordinates).set_crs(label, allow_override=True)
    shp = tmp_path / "mislabelled.shp"
    layer.to_file(shp)
    message = assert_refused(db, lambda: load_divisions(db, shp), r"the layer's coordinates, read as "
                             rf"EPSG:{label} \(.+\)( and reprojected to EPSG:4326)?, span longitude .*: not the served region")
    assert f"Is EPSG:{label} " in message and "really the coordinate system of the data (a shapefile's .prj)?" in message


@pytest.mark.parametrize("bbox,match", [
    ("-120,30,-100,40", r"not the served region \(longitude -120.0 to -100.0, latitude 30.0 to 40.0, HOTSPOTS_REGION_BBOX\)"),
    ("-79,34,-82,36", r"HOTSPOTS_REGION_BBOX='-79,34,-82,36': expected west < east"),
    ("charlotte", r"HOTSPOTS_REGION_BBOX='charlotte': expected west,south,east,north"),
])
def test_the_served_region_is_a_setting(db, data_dir, monkeypatch, bbox, match):
    """Real divisions are refused when the configured region does not hold them, or the setting is not a box."""
    monkeypatch.setenv("HOTSPOTS_REGION_BBOX", bbox)
    assert_refused(db, lambda: load_divisions(db, data_dir / DIVISIONS_SHP, force=True), match)


def test_a_wider_region_takes_a_layer_the_default_refuses(engine, tmp_path, data_dir, monkeypatch):
    """The same layer moved 3 degrees east: refused by default, loaded once the region is widened."""
    layer = gpd.read_file(data_dir / DIVISIONS_SHP).to_crs(4326)
    layer["geometry"] = layer.geometry.translate(xoff=3.0)
    moved = tmp_path / "moved.geojson"
    layer.to_file(moved)
    with pytest.raises(IngestError, match="not the served region"):
        load_divisions(engine, moved)
    monkeypatch.setenv("HOTSPOTS_REGION_BBOX", "-85,33,-75,37")
    report = load_divisions(engine, moved)
    with engine.connect() as conn:
        west = conn.execute(sa.text("SELECT min(ST_XMin(geom)) FROM divisions")).scalar()
    assert report.rows_loaded == len(layer) == 14 and -78.1 < west < -77.9


def test_truncated_shapefile_is_refused_naming_the_features_cut_off(db, tmp_path, data_dir):
    shp = _copy_shapefile(data_dir, tmp_path / "cut")
    data = shp.read_bytes()
    shp.write_bytes(data[: len(data) // 2])
    message = assert_refused(db, lambda: load_divisions(db, shp), r"have no geometry \(a truncated .shp")
    names = sorted(gpd.read_file(data_dir / DIVISIONS_SHP)["DIVISION"])
    cut = [code for code in names if f"DIVISION {code}" in message]
    assert 0 < len(cut) < len(names)
    shp.write_bytes(data[:60])  # not even a whole header
    assert_refused(db, lambda: load_divisions(db, shp), r"not a readable vector layer")


def test_zero_features_are_refused_not_an_empty_table(db, tmp_path, data_dir):
    layer = gpd.read_file(data_dir / DIVISIONS_SHP)
    shp = tmp_path / "none.shp"
    layer.iloc[:0].to_file(shp)
    assert_refused(db, lambda: load_divisions(db, shp), r"none.shp: the layer has no features")
    npa = tmp_path / "none.geojson"
    npa.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert_refused(db, lambda: load_neighborhoods(db, npa), r"none.geojson: the layer has no features")


SQUARE = [[-80.9, 35.2], [-80.8, 35.2], [-80.8, 35.3], [-80.9, 35.3], [-80.9, 35.2]]
SQUARE_2 = [[-80.7, 35.1], [-80.6, 35.1], [-80.6, 35.2], [-80.7, 35.2], [-80.7, 35.1]]


def _feature(geometry, code="1", name="North Division", **props) -> dict:
    return {"type": "Feature", "properties": {"DIVISION": code, "DNAME": name, "id": code, **props}, "geometry": geometry}


def _collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def _polygon(ring=SQUARE, *holes) -> dict:
    return {"type": "Polygon", "coordinates": [ring, *holes]}


GOOD = _feature(_polygon(SQUARE_2), "9", "Ninth Division")
REFUSED_GEOJSON = [
    ("points", _collection(_feature({"type": "Point", "coordinates": [-80.8, 35.2]}), GOOD),
     r"feature\(s\) without any polygon area: DIVISION 01 \(Point\); expected Polygon or MultiPolygon"),
    ("lines", _collection(_feature({"type": "LineString", "coordinates": [[-80.8, 35.2], [-80.7, 35.3]]})),
     r"without any polygon area: DIVISION 01 \(LineString\)"),
    ("mixed_types", _collection(GOOD, _feature(_polygon()), _feature({"type": "MultiPoint", "coordinates": [[-80.8, 35.2]]}, "3", "C")),
     r"without any polygon area: DIVISION 03 \(MultiPoint\);"),
    ("empty_geometry", _collection(GOOD, _feature({"type": "Polygon", "coordinates": []}, "2")),
     r"without any polygon area: DIVISION 02 \(empty Polygon\)"),
    ("zero_area_polygon", _collection(GOOD, _feature(_polygon([[-80.9, 35.2], [-80.8, 35.2], [-80.7, 35.2], [-80.9, 35.2]]), "2")),
     r"without any polygon area: DIVISION 02 \(Polygon\)"),
    ("null_geometry", _collection(GOOD, _feature(None, "2")), r"DIVISION 02 has no geometry"),
    ("coordinates_as_strings", _collection(_feature({"type": "Polygon", "coordinates": [[[str(x), str(y)] for x, y in SQUARE]]})),
     r"DIVISION 01 has no geometry"),
    ("ring_not_closed", _collection(_feature(_polygon(SQUARE[:-1]))), r"not a readable vector layer \(.*closed"),
    ("duplicate_codes", _collection(_feature(_polygon(), "1", "A"), _feature(_polygon(SQUARE_2), "01", "B")),
     r"DIVISION must be a unique, non-empty division code per feature; '01' appears more than once"),
    ("duplicate_names", _collection(_feature(_polygon(), "1", "Same"), _feature(_polygon(SQUARE_2), "2", "Same")),
     r"DNAME must be a unique, non-empty division name per feature; 'Same' appears more than once"),
    ("code_missing_in_one_feature", _collection(GOOD, _feature(_polygon(), None)),
     r"DIVISION must be a unique, non-empty division code per feature; feature\(s\) 2 \(counting from 1\) have none"),
    ("code_field_absent", _collection({"type": "Feature", "properties": {"DNAME": "X"}, "geometry": _polygon()}),
     r"field\(s\) DIVISION not found; fields are DNAME"),
    ("bare_geometry", _polygon(), r"field\(s\) DIVISION, DNAME not found; fields are none"),
    ("invalid_json", '{"type": "FeatureCollection", "features": [', r"not a readable vector layer"),
    ("far_away", _collection(_feature(_polygon([[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.8]]))),
     r"coordinates, read as EPSG:4326 \(WGS 84\), span longitude 2.3000 to 2.4000 and latitude 48.8000 to 48.9000: not the"),
]


@pytest.mark.parametrize("case,content,match", [
    # GDAL warns about the open ring before GEOS refuses it.
    pytest.param(*c, id=c[0], marks=[pytest.mark.filterwarnings("ignore:Non closed ring")] if c[0] == "ring_not_closed" else [])
    for c in REFUSED_GEOJSON
])
def test_bad_division_geojson_is_refused_naming_the_feature(db, tmp_path, case, content, match):
    path = tmp_path / f"{case}.geojson"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    message = assert_refused(db, lambda: load_divisions(db, path), match)
    assert message.startswith(str(path))


@pytest.mark.parametrize("case,content,match", [
    ("points", _collection(_feature({"type": "Point", "coordinates": [-80.8, 35.2]}, "7")),
     r"without any polygon area: id 7 \(Point\)"),
    ("id_not_a_number", _collection(_feature(_polygon(), "seven")),
     r"id must be a unique, non-empty whole NPA number per feature; feature\(s\) 1 \(counting from 1\) have none"),
    ("id_repeated", _collection(_feature(_polygon(), "7"), _feature(_polygon(SQUARE_2), "7.0")),
     r"'7' appears more than once"),
])
def test_bad_npa_geojson_is_refused_naming_the_feature(db, tmp_path, data_dir, case, content, match):
    path = tmp_path / f"{case}.geojson"
    path.write_text(json.dumps(content))
    assert_refused(db, lambda: load_neighborhoods(db, path, data_dir / "npa_metrics" / "population.csv"), match)


def test_population_file_that_is_not_a_csv_is_refused(db, tmp_path, data_dir):
    pop = tmp_path / "population.csv"
    pop.write_bytes(gzip.compress(b"id,y_2020\n1,100\n"))
    assert_refused(db, lambda: load_neighborhoods(db, data_dir / "npa" / "npa.geojson", pop, force=True),
                   r"population.csv: not a readable CSV")


def test_hole_outside_shell_and_3d_polygons_are_repaired_and_reported(engine, tmp_path):
    """Invalid but repairable: loaded valid, 2D, nothing dropped, and the report counts the repair."""
    hole_outside = _polygon(SQUARE, [[-80.5, 35.5], [-80.4, 35.5], [-80.4, 35.6], [-80.5, 35.5]])
    in_3d = {"type": "Polygon", "coordinates": [[[x, y, 200.0] for x, y in SQUARE_2]]}
    path = tmp_path / "repairable.geojson"
    path.write_text(json.dumps(_collection(_feature(hole_outside, "1", "Holey Division"), _feature(in_3d, "2", "High Division"))))
    report = load_divisions(engine, path)
    assert report.inserted == 2 and dict(report.fixes) == {"invalid_geometry_repaired": 1}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT division_id, short_name, ST_IsValid(geom), ST_NDims(geom), ST_NumGeometries(geom), ST_Area(geom)"
            " FROM divisions ORDER BY 1")).all()
    # The 'hole' lies outside its shell: GEOS keeps both rings as polygons (0.01 + 0.005 square degrees).
    assert [tuple(r[:5]) for r in rows] == [("01", "Holey", True, 2, 2), ("02", "High", True, 2, 1)]
    assert rows[0][5] == pytest.approx(0.015) and rows[1][5] == pytest.approx(0.01)
