"""Incidents and calls loaders on crafted files: every reject reason, assignment, idempotence, rollback."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import sqlalchemy as sa
from pyproj import Transformer

from geo.ingest import points as points_mod
from geo.ingest.batch import IngestError
from geo.ingest.calls import load_calls
from geo.ingest.incidents import INCIDENTS, load_incidents

INCIDENT_COLUMNS = (
    "INCIDENT_REPORT_ID,LOCATION,CITY,STATE,ZIP,X_COORD_PUBLIC,Y_COORD_PUBLIC,LATITUDE_PUBLIC,LONGITUDE_PUBLIC,"
    "DIVISION_ID,CMPD_PATROL_DIVISION,NPA,DATE_REPORTED,DATE_INCIDENT_BEGAN,DATE_INCIDENT_END,ADDRESS_DESCRIPTION,"
    "LOCATION_TYPE_DESCRIPTION,PLACE_TYPE_DESCRIPTION,PLACE_DETAIL_DESCRIPTION,CLEARANCE_STATUS,"
    "CLEARANCE_DETAIL_STATUS,CLEARANCE_DATE,HIGHEST_NIBRS_CODE,HIGHEST_NIBRS_DESCRIPTION,OBJECTID,YEAR"
).split(",")
CALL_COLUMNS = (
    "CALL_ID,DATE_RECEIVED,CALL_TYPE,PRIORITY,ADDRESS,CITY,STATE,ZIP,LATITUDE,LONGITUDE,X_COORD,Y_COORD,"
    "CMPD_PATROL_DIVISION,INCIDENT_REPORT_ID"
).split(",")

TO_STATE_PLANE = Transformer.from_crs(4326, 2264, always_xy=True)


@pytest.fixture(scope="module")
def places(data_dir):
    """Known interior points: for a few NPAs, a point inside, and the division that contains it."""
    npa = gpd.read_file(data_dir / "npa" / "npa.geojson")
    div = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp").to_crs(4326)
    div["geometry"] = div.geometry.make_valid()
    chosen = npa[npa["id"].isin(["2", "3", "9", "120", "300"])].copy()
    chosen["geometry"] = chosen.geometry.representative_point()
    joined = gpd.sjoin(chosen, div[["DIVISION", "DNAME", "geometry"]], predicate="within", how="left")
    return {
        int(r.id): (r.geometry.x, r.geometry.y, r.DIVISION if isinstance(r.DIVISION, str) else None,
                    r.DNAME.replace(" Division", "") if isinstance(r.DNAME, str) else "")
        for r in joined.itertuples()
    }


def incident(i: str, lon: float | str, lat: float | str, **over) -> dict:
    row = {c: "" for c in INCIDENT_COLUMNS}
    row.update(
        INCIDENT_REPORT_ID=i, LOCATION="100 BLOCK OF MAIN ST", CITY="CHARLOTTE", STATE="NC", ZIP="28202",
        LATITUDE_PUBLIC=str(lat), LONGITUDE_PUBLIC=str(lon), DATE_REPORTED="2021/03/14 22:17:00+00",
        DATE_INCIDENT_BEGAN="2021/03/14 21:00:00+00", HIGHEST_NIBRS_CODE="13A",
        HIGHEST_NIBRS_DESCRIPTION="Aggravated Assault", CLEARANCE_STATUS="Open", OBJECTID="1", YEAR="2021",
    )
    if isinstance(lon, float):
        x, y = TO_STATE_PLANE.transform(lon, lat)
        row.update(X_COORD_PUBLIC=f"{x:.1f}", Y_COORD_PUBLIC=f"{y:.1f}")
    row.update(over)
    return row


def write_csv(path: Path, columns: list[str], rows: list[dict], extra_lines: dict[int, str] | None = None) -> Path:
    """Write rows; extra_lines maps a position (0-based among data rows) to a raw line inserted there."""
    lines = [",".join(columns)]
    body = []
    for r in rows:
        body.append(",".join(_quote(r[c]) for c in columns))
    for pos, text in sorted((extra_lines or {}).items()):
        body.insert(pos, text)
    path.write_text("\ufeff" + "\n".join(lines + body) + "\n", encoding="utf-8")
    return path


def _quote(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"') else v


@pytest.fixture
def incident_file(tmp_path, places):
    """A file with good rows and one row per reject reason, at known lines."""
    (lon2, lat2, div2, name2), (lon3, lat3, _, _) = places[2], places[3]
    lon9, lat9, _, _ = places[9]
    x2, y2 = TO_STATE_PLANE.transform(lon2, lat2)
    rows = [
        incident("I-1", lon2, lat2, DIVISION_ID=str(int(div2)), CMPD_PATROL_DIVISION=name2),            # line 2
        incident("I-2", lon3, lat3, CITY="CHAROLTTE", ZIP="CHARLOTTE"),                                 # line 3
        incident("I-3", "", "", CITY="charlotte, nc", X_COORD_PUBLIC=f"{x2:.2f}", Y_COORD_PUBLIC=f"{y2:.2f}"),  # line 4
        incident("I-4", "", "", X_COORD_PUBLIC="", Y_COORD_PUBLIC=""),                                  # line 5
        incident("I-5", -78.64, 35.78, X_COORD_PUBLIC="", Y_COORD_PUBLIC=""),                           # line 6 Raleigh
        incident("I-6", lon9, lat9, DATE_REPORTED="2021-02-30 10:00:00"),                                # line 7
        incident("I-7", lon9, lat9, DATE_REPORTED="N/A"),                                               # line 8
        incident("", lon9, lat9),                                                                       # line 9
        incident("I-1", lon3, lat3),                                                                    # line 10 dup
        incident("I-8", lon9, lat9, DATE_REPORTED="1899-01-01 00:00:00"),                               # line 11
        incident("I-9", lon9, lat9, DATE_REPORTED="3/14/2021 10:17 PM", DIVISION_ID="99",
                 CMPD_PATROL_DIVISION="Nowhere"),                                                       # line 13 (after malformed)
        incident("I-10", lon3, lat3, DIVISION_ID="01", CMPD_PATROL_DIVISION="Central"),                 # line 14
    ]
    malformed = "I-11,100 BLOCK OF MAIN ST, APT 4,CHARLOTTE,NC," + ",".join([""] * 22)
    return write_csv(tmp_path / "incidents.csv", INCIDENT_COLUMNS, rows, {10: malformed})


def test_every_row_is_loaded_or_rejected_with_its_reason(engine, incident_file, places):
    report = load_incidents(engine, incident_file)
    assert report.rows_read == 13
    assert report.inserted == 5 and report.updated == 0 and report.unchanged == 0
    assert dict(report.rejected) == {
        "missing_coordinates": 1, "outside_county": 1, "bad_date": 2, "missing_id": 1,
        "duplicate_id": 1, "implausible_date": 1, "malformed_row": 1,
    }
    assert report.rows_loaded + report.rows_rejected == report.rows_read
    with engine.connect() as conn:
        rejects = conn.execute(sa.text("SELECT line, reason, detail, raw FROM ingest_rejects WHERE kind = 'incidents' ORDER BY line")).all()
        loaded = conn.execute(sa.text("SELECT incident_report_id FROM incidents ORDER BY 1")).scalars().all()
        batch = conn.execute(sa.text("SELECT rows_read, rows_loaded, rows_rejected, finished_at IS NOT NULL FROM ingest_batches WHERE kind = 'incidents'")).one()
    assert [(r.line, r.reason) for r in rejects] == [
        (5, "missing_coordinates"), (6, "outside_county"), (7, "bad_date"), (8, "bad_date"), (9, "missing_id"),
        (10, "duplicate_id"), (11, "implausible_date"), (12, "malformed_row"),
    ]
    details = {r.line: r.detail for r in rejects}
    assert "DATE_REPORTED '2021-02-30 10:00:00'" in details[7]
    assert "line 2" in details[10]
    assert "expected 26 fields, found 27" in details[12]
    assert rejects[-1].raw.startswith("I-11,100 BLOCK OF MAIN ST, APT 4")
    assert rejects[0].raw.startswith("I-4,")
    assert sorted(loaded) == ["I-1", "I-10", "I-2", "I-3", "I-9"]
    assert batch == (13, 5, 8, True)


def test_cleaning_and_spatial_assignment(engine, incident_file, places):
    report = load_incidents(engine, incident_file)
    with engine.connect() as conn:
        rows = {
            r.incident_report_id: r
            for r in conn.execute(sa.text(
                "SELECT incident_report_id, city, zip, division_id, npa_id, ST_X(geom) AS lon, ST_Y(geom) AS lat,"
                " to_char(date_reported AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS utc FROM incidents"))
        }
    # Known points land in the NPA they were drawn from and the division geopandas finds for them.
    assert rows["I-1"].npa_id == 2 and rows["I-1"].division_id == places[2][2]
    assert rows["I-2"].npa_id == 3 and rows["I-2"].division_id == places[3][2]
    assert rows["I-9"].npa_id == 9 and rows["I-9"].division_id == places[9][2]
    # City variants normalised; a ZIP holding text is cleared.
    assert rows["I-2"].city == "CHARLOTTE" and rows["I-2"].zip is None
    assert rows["I-3"].city == "CHARLOTTE"
    # I-3 had no lat/lon: recovered from State Plane feet to within a few centimetres.
    assert rows["I-3"].npa_id == 2
    assert abs(rows["I-3"].lon - places[2][0]) < 1e-6 and abs(rows["I-3"].lat - places[2][1]) < 1e-6
    # '+00' is UTC; a US-style time without offset is Eastern local time (EDT on 14 March 2021 evening).
    assert rows["I-1"].utc == "2021-03-14 22:17"
    assert rows["I-9"].utc == "2021-03-15 02:17"
    assert report.fixes["coordinates_from_state_plane"] == 1
    assert report.fixes["city_name_normalised"] == 2
    assert report.fixes["zip_not_a_zip_cleared"] == 1
    # I-10 claims Central (01); I-9 names an unknown division.
    expected_disagreements = int(places[3][2] != "01")
    assert report.notes["division_disagreements"] == expected_disagreements
    assert report.notes["source_division_unrecognised"] == 1


def test_loading_the_same_file_twice_changes_nothing(engine, incident_file):
    first = load_incidents(engine, incident_file)
    snapshot = _snapshot(engine)
    again = load_incidents(engine, incident_file)
    assert again.already_loaded_batch == first.batch_id
    forced = load_incidents(engine, incident_file, force=True)
    assert (forced.inserted, forced.updated, forced.unchanged) == (0, 0, 5)
    after = _snapshot(engine)
    assert after["incidents"] == snapshot["incidents"]
    assert after["rejects"] == snapshot["rejects"]


def test_a_changed_record_is_updated(engine, tmp_path, places):
    lon, lat, _, _ = places[2]
    path = write_csv(tmp_path / "a.csv", INCIDENT_COLUMNS, [incident("X-1", lon, lat), incident("X-2", lon, lat)])
    load_incidents(engine, path)
    path2 = write_csv(tmp_path / "b.csv", INCIDENT_COLUMNS,
                      [incident("X-1", lon, lat, CLEARANCE_STATUS="Closed/Cleared"), incident("X-2", lon, lat)])
    report = load_incidents(engine, path2)
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT clearance_status FROM incidents WHERE incident_report_id='X-1'")).scalar() == "Closed/Cleared"


def test_failure_mid_file_leaves_database_as_before(engine, incident_file, monkeypatch):
    before = _snapshot(engine)

    def explode(*args, **kwargs):
        raise RuntimeError("disk full while storing rejects")

    # Fails after the records were upserted, inside the same transaction.
    monkeypatch.setattr(points_mod, "store_rejects", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        load_incidents(engine, incident_file)
    assert _snapshot(engine) == before
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_batches WHERE kind='incidents'")).scalar() == 0


def test_failure_in_a_later_batch_undoes_the_earlier_ones(engine, tmp_path, places, monkeypatch):
    """The file streams in batches, each COPYed as it is ready; a failure in batch 3 undoes batches 1-2."""
    from geo.ingest import csvfile

    lon, lat, _, _ = places[9]
    rows = [incident(f"B-{i}", lon, lat) for i in range(300)]
    path = write_csv(tmp_path / "big.csv", INCIDENT_COLUMNS, rows)
    monkeypatch.setattr(csvfile, "BLOCK_BYTES", 4096)  # about 15 rows per batch
    real = points_mod._prepare_batch
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("connection lost in batch 3")
        return real(*args, **kwargs)

    monkeypatch.setattr(points_mod, "_prepare_batch", fail_on_third)
    before = _snapshot(engine)
    with pytest.raises(RuntimeError, match="batch 3"):
        load_incidents(engine, path)
    assert _snapshot(engine) == before
    monkeypatch.setattr(points_mod, "_prepare_batch", real)
    report = load_incidents(engine, path)
    assert report.inserted == 300 and len(calls) == 3


def test_missing_columns_fail_naming_them(engine, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("INCIDENT_REPORT_ID,LOCATION\nA,B\n")
    with pytest.raises(IngestError, match="missing column\\(s\\) DATE_REPORTED"):
        load_incidents(engine, path)


def test_points_need_polygons_loaded(empty_engine, tmp_path):
    from geo.migrate import migrate

    migrate(empty_engine)
    path = write_csv(tmp_path / "x.csv", INCIDENT_COLUMNS, [incident("A", -80.8, 35.2)])
    with pytest.raises(IngestError, match="hotspots load shapes|load reference"):
        load_incidents(empty_engine, path)


def call(i: str, lon, lat, **over) -> dict:
    row = {c: "" for c in CALL_COLUMNS}
    row.update(CALL_ID=i, DATE_RECEIVED="2021-07-04 23:59:30", CALL_TYPE="SHOTS FIRED", PRIORITY="1",
               ADDRESS="100 BLOCK OF MAIN ST", CITY="CHARLOTTE", STATE="NC", ZIP="28202",
               LATITUDE=str(lat), LONGITUDE=str(lon))
    row.update(over)
    return row


def test_calls_loader_and_relabel_on_change(engine, tmp_path, places):
    lon, lat, div, name = places[120]
    rows = [
        call("C-1", lon, lat, CMPD_PATROL_DIVISION=name, INCIDENT_REPORT_ID="20210704-2359-01"),
        call("C-2", lon, lat, CALL_TYPE=""),
        call("C-3", lon, lat, PRIORITY="high"),
        call("C-4", lat, lon),  # latitude and longitude swapped
    ]
    report = load_calls(engine, write_csv(tmp_path / "calls.csv", CALL_COLUMNS, rows))
    assert report.inserted == 3 and dict(report.rejected) == {"missing_value": 1}
    assert report.fixes["coordinates_swapped"] == 1
    assert report.fixes["priority_not_a_number_cleared"] == 1
    with engine.begin() as conn:
        got = {r.call_id: r for r in conn.execute(sa.text(
            "SELECT call_id, priority, npa_id, division_id, incident_report_id, division_source,"
            " to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS utc FROM calls"))}
        conn.execute(sa.text("UPDATE calls SET p_violent = 0.9, label = true, model_version = 'm1'"))
    assert got["C-1"].npa_id == 120 and got["C-1"].division_id == div and got["C-1"].priority == 1
    assert got["C-1"].utc == "2021-07-05 03:59:30"  # EDT = UTC-4
    assert got["C-3"].priority is None and got["C-4"].npa_id == 120
    assert got["C-1"].incident_report_id == "20210704-2359-01"
    assert got["C-3"].incident_report_id is None
    assert report.notes["division_disagreements"] == 0

    with engine.connect() as conn:
        categories = dict(conn.execute(sa.text("SELECT call_id, category FROM calls")).all())
    assert categories == {"C-1": "violent_crime", "C-3": "violent_crime", "C-4": "violent_crime"}

    rows[0] = call("C-1", lon, lat, CALL_TYPE="ASSAULT", CMPD_PATROL_DIVISION=name)
    again = load_calls(engine, write_csv(tmp_path / "calls2.csv", CALL_COLUMNS, rows))
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 2)
    with engine.connect() as conn:
        labels = dict(conn.execute(sa.text("SELECT call_id, model_version FROM calls")).all())
    assert labels == {"C-1": None, "C-3": "m1", "C-4": "m1"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT category FROM calls WHERE call_id = 'C-1'")).scalar() == "crimes_against_persons"


def test_incident_categories_and_unknown_codes(engine, tmp_path, places):
    lon, lat, _, _ = places[2]
    rows = [incident("K-1", lon, lat, HIGHEST_NIBRS_CODE="13A"), incident("K-2", lon, lat, HIGHEST_NIBRS_CODE="899"),
            incident("K-3", lon, lat, HIGHEST_NIBRS_CODE="ZZ9"), incident("K-4", lon, lat, HIGHEST_NIBRS_CODE="23h")]
    report = load_incidents(engine, write_csv(tmp_path / "k.csv", INCIDENT_COLUMNS, rows))
    assert report.notes["unknown_nibrs_values"] == 1
    with engine.connect() as conn:
        got = {r[0]: (r[1], r[2]) for r in conn.execute(sa.text("SELECT incident_report_id, category, is_crime FROM incidents"))}
    assert got == {"K-1": ("violent_crime", True), "K-2": ("service_other", False),
                   "K-3": ("unknown", False), "K-4": ("property", True)}


def _snapshot(engine) -> dict:
    with engine.connect() as conn:
        return {
            "incidents": conn.execute(sa.text("SELECT incident_report_id, row_hash, batch_id, ST_AsText(geom) FROM incidents ORDER BY 1")).all(),
            "rejects": conn.execute(sa.text("SELECT source_sha256, line, reason, batch_id FROM ingest_rejects ORDER BY 1, 2")).all(),
        }


def test_required_columns_are_the_published_ones():
    assert INCIDENTS.required_columns == ["INCIDENT_REPORT_ID", "DATE_REPORTED"]
    assert set(INCIDENTS.text) | set(INCIDENTS.floats) | set(INCIDENTS.integers) | set(INCIDENTS.times) == set(INCIDENT_COLUMNS) - {"INCIDENT_REPORT_ID"}


def test_calendar_dates_are_local_days_and_stay_out_of_the_7x24(engine, tmp_path, places):
    """A column of timed values with some bare dates: those are calendar dates (per value); a column
    of midnights only is calendar dates throughout; neither is ever put at midnight in the 7x24."""
    from datetime import date

    from geo.filters import Filter
    from geo.metrics import hour_weekday

    lon, lat, _, _ = places[120]
    rows = [
        call("C-1", lon, lat, DATE_RECEIVED="2021-07-04 23:59:30"),
        call("C-2", lon, lat, DATE_RECEIVED="2021-07-05"),                 # bare date in a timed column
        call("C-3", lon, lat, DATE_RECEIVED="2021/07/05 00:00:00+00"),     # midnight, but the column has times
        call("C-4", lon, lat, DATE_RECEIVED="1625529600000"),              # epoch ms, 2021-07-06 00:00 UTC
    ]
    report = load_calls(engine, write_csv(tmp_path / "mixed.csv", CALL_COLUMNS, rows))
    assert report.notes["times"]["DATE_RECEIVED"]["date"] == 1
    assert report.notes["times"]["DATE_RECEIVED"]["time"] == 3
    assert "instants" in report.notes["times"]["DATE_RECEIVED"]["read_as"]
    with engine.connect() as conn:
        got = dict((r[0], r[1:]) for r in conn.execute(sa.text(
            "SELECT call_id, (received_at AT TIME ZONE 'America/New_York')::text, received_at_precision FROM calls")))
    assert got == {"C-1": ("2021-07-04 23:59:30", "time"), "C-2": ("2021-07-05 00:00:00", "date"),
                   "C-3": ("2021-07-04 20:00:00", "time"), "C-4": ("2021-07-05 20:00:00", "time")}
    matrix = hour_weekday(engine, Filter.local_days(date(2021, 7, 1), date(2021, 7, 8)))
    assert int(matrix.totals.to_numpy().sum()) == 3 and matrix.left_out_date_only == 1
    assert matrix.totals.loc["Mon", 0] == 0   # C-2 (Monday 5 July) is not at midnight

    # Every value midnight (or epoch ms at 00:00 UTC): the whole column is calendar dates.
    dates = [call(f"D-{i}", lon, lat, DATE_RECEIVED=v)
             for i, v in enumerate(["2021/07/05 00:00:00+00", "1625529600000", "2021-07-07 00:00:00"])]
    report = load_calls(engine, write_csv(tmp_path / "dates.csv", CALL_COLUMNS, dates))
    assert report.notes["times"]["DATE_RECEIVED"] == {
        "read_as": "calendar dates in HOTSPOTS_TIMEZONE (no time of day)", "date": 3, "time": 0, "report_id": 0,
        "epoch_ms": 1}
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text(
            "SELECT call_id, (received_at AT TIME ZONE 'America/New_York')::text FROM calls"
            " WHERE received_at_precision = 'date' AND call_id LIKE 'D-%'")).all())
    assert got == {"D-0": "2021-07-05 00:00:00", "D-1": "2021-07-06 00:00:00", "D-2": "2021-07-07 00:00:00"}
    matrix = hour_weekday(engine, Filter.local_days(date(2021, 7, 1), date(2021, 7, 8)))
    assert int(matrix.totals.to_numpy().sum()) == 3 and matrix.left_out_date_only == 4


def test_dates_nanoseconds_or_postgresql_cannot_hold_are_rejected_not_a_crash(engine, tmp_path, places):
    """Years outside 1678..2261 (what a datetime64[ns] holds) and offsets beyond PostgreSQL's 15:59
    used to fail the whole load (an Arrow/pandas overflow, or PostgreSQL refusing the COPY)."""
    lon, lat, _, _ = places[120]
    rows = [call("C-OK", lon, lat),
            call("C-0001", lon, lat, DATE_RECEIVED="0001-01-01 00:00:00+00"),    # the fast (Arrow) path
            call("C-4227", lon, lat, DATE_RECEIVED="4227-01-23"),                # the ISO (pandas) path
            call("C-US", lon, lat, DATE_RECEIVED="01/23/4227 10:00"),            # the US-format path
            call("C-OFF", lon, lat, DATE_RECEIVED="2021-06-01T10:00:00+23:59")]  # no offset PostgreSQL takes
    report = load_calls(engine, write_csv(tmp_path / "calls.csv", CALL_COLUMNS, rows))
    assert report.inserted == 1
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT line, reason FROM ingest_rejects WHERE kind = 'calls' ORDER BY line")).all()
    assert [tuple(r) for r in got] == [(3, "implausible_date"), (4, "implausible_date"), (5, "implausible_date"),
                                       (6, "bad_date")]


def test_origin_column_marks_generated_rows_and_refuses_other_values(engine, tmp_path, places):
    lon, lat, _, _ = places[120]
    columns = CALL_COLUMNS + ["DATA_ORIGIN"]
    rows = [call("C-1", lon, lat, DATA_ORIGIN="synthetic"), call("C-2", lon, lat, DATA_ORIGIN=""),
            call("C-3", lon, lat, DATA_ORIGIN="made up")]
    report = load_calls(engine, write_csv(tmp_path / "o.csv", columns, rows))
    assert dict(report.rejected) == {"bad_value": 1}
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT call_id, data_origin FROM calls")).all())
        detail = conn.execute(sa.text("SELECT detail FROM ingest_rejects")).scalar_one()
    assert got == {"C-1": "synthetic", "C-2": "real"}
    assert "DATA_ORIGIN 'made up'" in detail
