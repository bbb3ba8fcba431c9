"""The real CMPD point records (HOTSPOTS_DATA_DIR/real, never committed) through the incident loader.

Every row is loaded or rejected with a reason; the stored local report date is the calendar date
the file gives; junk latitudes are kept at their State Plane X/Y; non-crimes are kept but not
counted as crimes.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from geo.ingest.incidents import load_incidents
from geo.ingest.points import LoadOptions
from geo.spatial import state_plane_to_lonlat
from tests.factories import read_rows, write_rows

STREETS = "incidents_streets_QVXYZ.csv"
API = "incidents_api_sample.csv"
TZ = "America/New_York"


def _calendar_date(value: str) -> str:
    """The calendar date a real file's DATE_REPORTED encodes (`YYYY/MM/DD 00:00:00+00` or epoch ms)."""
    value = value.strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, timezone.utc).strftime("%Y-%m-%d")
    return value[:10].replace("/", "-")


def _stored(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {r[0]: r[1:] for r in conn.execute(sa.text(
            "SELECT incident_report_id, (date_reported AT TIME ZONE :tz)::text, date_reported_precision,"
            " ST_X(geom), ST_Y(geom), is_crime, data_origin, zip, clearance_date_precision FROM incidents"), {"tz": TZ})}


def _rejected(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT reason, count(*) FROM ingest_rejects GROUP BY 1")).all())


@pytest.mark.parametrize("name", [STREETS, API])
def test_every_real_row_is_loaded_or_rejected_and_dated_by_its_calendar_day(engine, data_dir, name):
    path = data_dir / "real" / name
    source = read_rows(path)
    report = load_incidents(engine, path)
    stored = _stored(engine)
    rejected = _rejected(engine)
    assert report.rows_read == len(source)
    assert len(stored) + sum(rejected.values()) == len(source), rejected
    # The one reject of each file is a point that lies in no Neighborhood Profile Area (at the
    # county line), kept in ingest_rejects with that reason.
    assert rejected == {"outside_county": 1}
    # Nothing real is lost to the date parser: the API's epoch ms are dates too.
    assert rejected.get("bad_date", 0) == 0 and rejected.get("implausible_date", 0) == 0
    # Every stored report date is the file's calendar date at local midnight, time of day unknown.
    by_id = {r["INCIDENT_REPORT_ID"]: r for r in source}
    wrong = [(i, got[0]) for i, got in stored.items()
             if got[0] != _calendar_date(by_id[i]["DATE_REPORTED"]) + " 00:00:00" or got[1] != "date"]
    assert wrong == []
    assert report.notes["times"]["DATE_REPORTED"]["date"] == len(stored)
    assert report.notes["times"]["DATE_REPORTED"]["time"] == 0
    assert "calendar dates" in report.notes["times"]["DATE_REPORTED"]["read_as"]
    # Clearance dates are calendar dates as well, wherever there is one.
    assert {got[7] for got in stored.values()} <= {"date", None}
    assert {got[5] for got in stored.values()} == {"real"}


def test_the_issue_report_is_stored_on_its_day(engine, data_dir):
    load_incidents(engine, data_dir / "real" / STREETS)
    assert _stored(engine)["20211227-2118-00"][:2] == ("2021-12-27 00:00:00", "date")


def test_junk_latitudes_are_kept_at_their_state_plane_point(engine, data_dir):
    path = data_dir / "real" / STREETS
    junk = [r for r in read_rows(path) if r["LATITUDE_PUBLIC"].strip() == r["LONGITUDE_PUBLIC"].strip() != ""]
    assert len(junk) == 38
    report = load_incidents(engine, path)
    stored = _stored(engine)
    assert report.fixes["latitude_longitude_unusable"] == 38
    assert all(r["INCIDENT_REPORT_ID"] in stored for r in junk)
    for r in junk:
        lon, lat = state_plane_to_lonlat(np.array([float(r["X_COORD_PUBLIC"])]), np.array([float(r["Y_COORD_PUBLIC"])]))
        got = stored[r["INCIDENT_REPORT_ID"]]
        assert abs(got[2] - lon[0]) < 1e-6 and abs(got[3] - lat[0]) < 1e-6


def test_api_junk_latitude_and_every_point_on_its_geometry(engine, data_dir):
    path = data_dir / "real" / API
    source = read_rows(path)
    load_incidents(engine, path)
    stored = _stored(engine)
    far = [i for i, r in ((r["INCIDENT_REPORT_ID"], r) for r in source) if i in stored
           and r["coordinates_lon"] and (abs(stored[i][2] - float(r["coordinates_lon"])) > 1e-4
                                         or abs(stored[i][3] - float(r["coordinates_lat"])) > 1e-4)]
    assert far == []
    # (The shared README counts one junk latitude in this sample; in this copy every row's
    # LATITUDE_PUBLIC agrees with its geometry, so the point-by-point check above is the test.)
    assert len(far) == 0 and len(stored) == len(source) - 1


def test_non_crimes_are_kept_served_and_not_counted_as_crimes(engine, data_dir):
    path = data_dir / "real" / STREETS
    source = read_rows(path)
    report = load_incidents(engine, path)
    stored = _stored(engine)
    by_id = {r["INCIDENT_REPORT_ID"]: r for r in source}
    eight = {i for i in stored if by_id[i]["HIGHEST_NIBRS_CODE"].startswith("8")}
    unfounded = {i for i in stored if by_id[i]["CLEARANCE_STATUS"] == "Unfounded"}
    assert len(eight) > 1000 and len(unfounded) > 100
    assert all(stored[i][4] is False for i in eight | unfounded)
    assert report.notes["unfounded_reports"] == len(unfounded)
    crimes = {i for i, got in stored.items() if got[4]}
    assert crimes and not crimes & (eight | unfounded)


def test_time_from_report_id_only_when_asked_and_flagged(engine, data_dir):
    path = data_dir / "real" / STREETS
    report = load_incidents(engine, path, options=LoadOptions(time_from_report_id=True))
    stored = _stored(engine)
    source = read_rows(path)
    filled = {i: got for i, got in stored.items() if got[1] == "report_id"}
    # The README: every id's YYYYMMDD equals the reported date and its HHMM is a valid time.
    assert len(filled) == len(stored) == report.notes["times"]["DATE_REPORTED"]["report_id"] == len(source) - 1
    for i, got in filled.items():
        assert got[0] == f"{i[0:4]}-{i[4:6]}-{i[6:8]} {i[9:11]}:{i[11:13]}:00"


def test_zip_written_as_a_number_is_a_zip(engine, tmp_path, data_dir):
    rows = read_rows(data_dir / "real" / STREETS)[:3]
    rows[0]["ZIP"], rows[1]["ZIP"], rows[2]["ZIP"] = "28239.0", "28277-1234", "2823"
    load_incidents(engine, write_rows(tmp_path / "zips.csv", rows))
    stored = _stored(engine)
    assert [stored[r["INCIDENT_REPORT_ID"]][6] for r in rows] == ["28239", "28277", None]


def test_a_generated_record_never_replaces_a_real_one(engine, data_dir, tmp_path):
    """The same report id arriving as synthetic (or real over synthetic) refuses the file whole."""
    from geo.ingest.batch import IngestError
    from tests.clusters import snapshot

    path = data_dir / "real" / STREETS
    load_incidents(engine, path)
    rows = read_rows(path)[:5]
    for r in rows:
        r["DATA_ORIGIN"] = "synthetic"
    fake = write_rows(tmp_path / "clash.csv", rows)
    before = snapshot(engine)
    with pytest.raises(IngestError, match=r"5 incidents carry ids already stored as real records .*nothing was loaded"):
        load_incidents(engine, fake)
    assert snapshot(engine) == before


def test_generated_report_ids_are_marked_and_never_real_ones(tmp_path, data_dir):
    from datetime import date

    from geo.synth import generate

    generate(data_dir, tmp_path, start=date(2024, 1, 1), days=20, n_calls=3000, seed=3, dirty=False, progress=False)
    ids = [r["INCIDENT_REPORT_ID"] for r in read_rows(tmp_path / "incidents.csv")]
    real = {r["INCIDENT_REPORT_ID"] for name in (STREETS, API) for r in read_rows(data_dir / "real" / name)}
    import re

    assert ids and all(re.fullmatch(r"\d{8}-\d{4}-S\d{2,}", i) for i in ids)
    assert not set(ids) & real
