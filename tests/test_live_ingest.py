"""geo/ingest/live.py on a real PostGIS with the real divisions and NPAs (no model trained here).

The labelling path (same p_violent/label as `hotspots label`) is tested end to end through the API
in tests/web/test_ingest_api.py, on a database with a trained model. A posted call is the row of
a calls CSV: the tests at the end load both ways and compare what is stored.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from geo.catalog import data_versions
from geo.ingest import live
from geo.ingest.calls import load_calls
from tests.clusters import cloned_database


def _points(engine, n: int) -> list[tuple[int, float, float]]:
    """(npa_id, lon, lat) of a point inside each of n NPAs."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT npa_id, ST_X(p), ST_Y(p) FROM (SELECT npa_id, ST_PointOnSurface(geom) p FROM neighborhoods"
            " ORDER BY npa_id LIMIT :n) s"), {"n": n})]


def _call(call_id: str, lon: float, lat: float, **kw) -> dict:
    return {"call_id": call_id, "received_at": "2021-06-01T14:05:00-04:00", "call_type": "ASSAULT", "priority": 2,
            "lon": lon, "lat": lat, **kw}


def _ingest(engine, payload, sha="a" * 64):
    return live.ingest_calls(engine, payload, body_sha256=sha, source="test")


@pytest.mark.parametrize("payload, parameter", [
    ({"rows": []}, "body"),
    ("calls", "body"),
    ({"calls": {"a": 1}}, "calls"),
    ({"calls": []}, "calls"),
    ([], "calls"),
    ({"type": "FeatureCollection", "features": None}, "features"),
    ({"type": "FeatureCollection", "features": []}, "features"),
])
def test_whole_batch_problems_name_the_member(payload, parameter):
    with pytest.raises(live.BatchError) as err:
        live.rows_of(payload)
    assert err.value.parameter == parameter


def test_too_many_rows_is_a_batch_error():
    with pytest.raises(live.BatchError) as err:
        live.rows_of([{}] * 4, max_rows=3)
    assert err.value.parameter == "calls" and "at most 3" in err.value.message


def _errors(engine, payload) -> tuple[live.IngestResult, dict[int, list[tuple[str, str]]]]:
    """Post the rows; the result and, per row index, the (field, reason) of each error."""
    result = _ingest(engine, payload)
    errors = {i: [] for i in range(result.received)}
    for e in result.errors:
        errors[e.index].append((e.field, e.reason))
    return result, errors


def test_each_kind_of_bad_row_is_named(engine):
    ok = _call("A", -80.84, 35.22)
    result, errors = _errors(engine, [
        ok,
        {**ok, "call_id": None},                                    # 1 missing id
        {**ok, "call_id": "B", "received_at": "2021-06-01 2pm"},     # 2 not RFC 3339
        {**ok, "call_id": "C", "received_at": "2021-02-30T10:00:00"},  # 3 no such day
        {**ok, "call_id": "D", "received_at": "1985-01-01T10:00:00Z"},  # 4 implausible
        {**ok, "call_id": "E", "lon": -78.6, "lat": 35.8},           # 5 Raleigh
        {**ok, "call_id": "F", "priority": "high"},                 # 6
        {**ok, "call_id": "G", "priority": 2.5},                    # 7
        {**ok, "call_id": "H", "call_type": "  "},                  # 8
        {**ok, "call_id": "I", "lon": None},                        # 9
        ok,                                                         # 10 duplicate of 0
        {**ok, "call_id": "J", "zip": "2820"},                      # 11
        {**ok, "call_id": "K", "address": ["1 MAIN ST"]},           # 12 a list is not an address
        {**ok, "call_id": "L", "lat": "35.2"},                      # 13 a string, not a number
        [1, 2],                                                     # 14
        {**ok, "call_id": "M", "priority": True},                   # 15 a boolean is not a priority
        {**ok, "call_id": "N", "lon": 10 ** 400},                   # 16 too large for a float
    ])
    assert errors[0] == []
    assert errors[1] == [("call_id", "missing_id")]
    assert errors[2] == [("received_at", "bad_date")]
    assert errors[3] == [("received_at", "bad_date")]
    assert errors[4] == [("received_at", "implausible_date")]
    assert errors[5] == [("lon", "outside_county")]
    assert errors[6] == [("priority", "bad_value")]
    assert errors[7] == [("priority", "bad_value")]
    assert errors[8] == [("call_type", "missing_value")]
    assert errors[9] == [("lon", "missing_coordinates")]
    assert errors[10] == [("call_id", "duplicate_id")]
    assert errors[11] == [("zip", "bad_value")]
    assert errors[12] == [("address", "bad_value")]
    assert errors[13] == [("lat", "bad_value")]
    assert errors[14] == [("", "malformed_row")]
    assert errors[15] == [("priority", "bad_value")]
    assert errors[16] == [("lon", "bad_value")]
    dup = next(e for e in result.errors if e.index == 10)
    assert "index 0" in dup.message and dup.call_id == "A"
    assert result.ids("created") == ["A"]


def test_a_nul_anywhere_refuses_the_whole_body():
    """PostgreSQL text and jsonb cannot hold NUL (nor lone surrogates), and every row's raw JSON is
    stored: such a body is refused whole, naming `body`, before anything is written."""
    ok = _call("A", -80.84, 35.22)
    for bad in ({**ok, "address": "1 MAIN\x00ST"}, {**ok, "note\x00": 1}, {**ok, "city": "\ud800"}):
        with pytest.raises(live.BatchError) as err:
            live.rows_of([ok, bad])
        assert err.value.parameter == "body" and "NUL" in str(err.value)


def test_cleaning_matches_file_loads(engine):
    _, errors = _errors(engine, [_call("A", -80.84, 35.22, city="clt", zip="28202-1234", call_type="  ASSAULT  ",
                                       priority="3")])
    assert errors == {0: []}
    with engine.connect() as conn:
        r = conn.execute(sa.text("SELECT city, zip, call_type, priority FROM calls WHERE call_id = 'A'")).one()
    assert tuple(r) == ("CHARLOTTE", "28202", "ASSAULT", 3)


def test_geojson_features_give_id_and_point(engine):
    result, errors = _errors(engine, {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "G1", "geometry": {"type": "Point", "coordinates": [-80.84, 35.22]},
         "properties": {"received_at": "2021-06-01T10:00:00Z", "call_type": "ASSAULT"}},
        {"type": "Feature", "id": "G2", "geometry": {"type": "LineString", "coordinates": [[-80.8, 35.2], [-80.7, 35.3]]},
         "properties": {"received_at": "2021-06-01T10:00:00Z", "call_type": "ASSAULT"}},
        {"type": "Feature", "geometry": None, "properties": {"call_id": "G3", "received_at": "2021-06-01T10:00:00Z",
                                                             "call_type": "ASSAULT"}},
        {"type": "Point", "coordinates": [-80.84, 35.22]},
    ]})
    assert errors == {0: [], 1: [("geometry", "bad_value")], 2: [("geometry", "missing_coordinates")],
                      3: [("", "malformed_row")]}
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT call_id, ST_X(geom), ST_Y(geom) FROM calls")).all()
    assert [tuple(r) for r in stored] == [("G1", -80.84, 35.22)]
    assert next(e for e in result.errors if e.index == 2).call_id == "G3"


@pytest.mark.parametrize("local", ["2021-11-07 01:30:00", "2021-03-14 02:30:00", "2021-07-04 12:00:00",
                                   "2021-01-01 00:00:00"])
def test_local_times_resolve_as_postgresql_resolves_them(engine, local):
    """The repeated hour, the skipped hour, an ordinary time and a midnight: what PostgreSQL reads
    in the zone, and a date-time is an instant even at midnight (a full-date is a calendar date)."""
    (_, lon, lat), = _points(engine, 1)
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TimeZone = 'America/New_York'")
        expected = conn.execute(sa.text("SELECT CAST(:t AS timestamptz)"), {"t": local}).scalar_one()
    assert _ingest(engine, [_call("T1", lon, lat, received_at=local.replace(" ", "T"))]).ids("created") == ["T1"]
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT received_at, received_at_precision FROM calls WHERE call_id = 'T1'")).one()
    assert tuple(stored) == (expected, "time")


def test_batch_stored_with_areas_rejects_and_batch_row(engine):
    pts = _points(engine, 3)
    good = [_call(f"L{i}", lon, lat, address="100 BLOCK OF MAIN ST", city="charlotte") for i, (_, lon, lat) in enumerate(pts)]
    bad = [_call("X1", -80.6, 35.0), {"call_id": "X2", "call_type": "ASSAULT", "lon": pts[0][1], "lat": pts[0][2]}]
    before = data_versions(engine)["calls"]
    result = _ingest(engine, {"calls": good + bad})
    # No model in this database: stored unlabelled, and the result says why.
    assert result.model_version is None and result.labelled == 0 and "no model" in result.note
    assert result.ids("created") == ["L0", "L1", "L2"] and result.rejected == 2
    assert [(e.index, e.call_id, e.field, e.reason) for e in result.errors] == [
        (3, "X1", "lon", "outside_county"), (4, "X2", "received_at", "missing_value")]
    with engine.connect() as conn:
        placed = conn.execute(sa.text(
            "SELECT c.call_id, c.npa_id, n.npa_id, c.division_id, d.division_id, c.category, c.city, c.p_violent,"
            "       c.batch_id, c.received_at"
            " FROM calls c LEFT JOIN neighborhoods n ON ST_Contains(n.geom, c.geom)"
            " LEFT JOIN divisions d ON ST_Contains(d.geom, c.geom) ORDER BY c.call_id")).all()
        batch = conn.execute(sa.text("SELECT kind, source_file, rows_read, rows_loaded, rows_rejected, report, finished_at"
                                     " FROM ingest_batches WHERE batch_id = :b"), {"b": result.batch_id}).one()
        rejects = conn.execute(sa.text("SELECT line, reason, raw, detail FROM ingest_rejects WHERE batch_id = :b ORDER BY line"),
                               {"b": result.batch_id}).all()
        after = data_versions(conn)["calls"]
    assert [r[0] for r in placed] == ["L0", "L1", "L2"]
    for call_id, npa, npa_sql, division, division_sql, category, city, p, batch_id, received in placed:
        assert npa == npa_sql and division == division_sql and division is not None
        assert category == "crimes_against_persons" or category == "violent_crime"
        assert city == "CHARLOTTE" and p is None and batch_id == result.batch_id
        assert received == datetime(2021, 6, 1, 18, 5, tzinfo=timezone.utc)
    assert [r[1] for r in placed] == [p[0] for p in pts]
    assert batch[:5] == ("calls_api", "test", 5, 3, 2) and batch.finished_at is not None
    assert batch.report["inserted"] == 3 and batch.report["rejected"] == {"missing_value": 1, "outside_county": 1}
    assert [(r.line, r.reason) for r in rejects] == [(3, "outside_county"), (4, "missing_value")]
    assert [json.loads(r.raw) for r in rejects] == bad
    assert "in no Neighborhood Profile Area" in rejects[0].detail  # in the county box, off the NPA map
    assert after > before


def test_resend_is_unchanged_and_a_changed_call_is_updated(engine):
    (_, lon, lat), = _points(engine, 1)
    call = _call("R1", lon, lat)
    first = _ingest(engine, [call])
    assert first.ids("created") == ["R1"]
    # Whitespace and spelling differences that cleaning removes are not changes.
    again = _ingest(engine, [{**call, "call_type": " ASSAULT ", "priority": "2"}], sha="b" * 64)
    assert again.ids("unchanged") == ["R1"] and again.ids("created") == []
    changed = _ingest(engine, [{**call, "call_type": "NOISE COMPLAINT"}], sha="c" * 64)
    assert changed.ids("updated") == ["R1"]
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT call_type, category, batch_id FROM calls WHERE call_id = 'R1'")).one()
        n = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar_one()
    assert row == ("NOISE COMPLAINT", changed.stored[0].category, changed.batch_id) and n == 1
    assert changed.stored[0].category != first.stored[0].category


def test_identical_body_resent_does_not_duplicate_rejects(engine):
    payload = [_call("D1", -80.6, 35.0)]
    _ingest(engine, payload)
    _ingest(engine, payload)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_rejects WHERE kind = 'calls_api'")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_batches WHERE kind = 'calls_api'")).scalar_one() == 2


def test_area_index_is_rebuilt_when_the_polygons_change(engine):
    (npa, lon, lat), = _points(engine, 1)
    assert _ingest(engine, [_call("P1", lon, lat)]).stored[0].npa_id == npa
    with engine.begin() as conn:  # move that NPA far away: its old ground now belongs to no NPA
        conn.execute(sa.text("UPDATE neighborhoods SET geom = ST_Translate(geom, 5, 0) WHERE npa_id = :n"), {"n": npa})
    result = _ingest(engine, [_call("P2", lon, lat)], sha="d" * 64)
    assert result.stored == [] and [(e.call_id, e.reason) for e in result.errors] == [("P2", "outside_county")]
    assert "no Neighborhood Profile Area" in result.errors[0].message


def test_no_polygons_is_a_server_problem_not_a_row_problem(engine):
    from geo.ingest.batch import IngestError

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM neighborhoods"))
    with pytest.raises(IngestError, match="hotspots load shapes"):
        _ingest(engine, [_call("N1", -80.84, 35.22)])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_batches WHERE kind = 'calls_api'")).scalar_one() == 0


# --- one ingest path: a posted call is the row of a calls CSV ---------------------------------------
@pytest.fixture
def other_engine(server_url, template_db):
    """A second fresh database, to load the same calls from a CSV."""
    with cloned_database(server_url, template_db) as (_, engine):
        yield engine


def _stored_rows(engine) -> list[tuple]:
    """Every calls column but batch_id, in id order (geometry as EWKT)."""
    with engine.connect() as conn:
        cols = [c for (c,) in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls'"
            " AND column_name NOT IN ('batch_id', 'geom') ORDER BY ordinal_position"))]
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {', '.join(cols)}, ST_AsEWKT(geom) FROM calls ORDER BY call_id")]


def _as_csv(path, calls: list[dict]):
    """The calls as a calls CSV with the columns posted calls become (live.COLUMNS), each cell the value's text."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(live.COLUMNS.values())
        for c in calls:
            out.writerow(["" if c.get(name) is None else str(c[name]) for name in live.COLUMNS])
    return path


def _mixed_calls(engine) -> list[dict]:
    (_, lon, lat), (_, lon2, lat2) = _points(engine, 2)
    return [
        _call("P-TIME", lon, lat, address="100 BLOCK OF MAIN ST", city="charlotte", zip="28202-1234",
              incident_report_id="20210601-1405-01"),
        _call("P-GAP", lon2, lat2, received_at="2021-03-14T02:30:00", priority=None),   # the skipped hour
        _call("P-FOLD", lon, lat, received_at="2021-11-07T01:30:00", call_type="NOISE COMPLAINT"),  # the repeated one
        _call("P-DATE", lon2, lat2, received_at="2021-06-01"),                          # the day only
    ]


def test_a_posted_call_and_the_same_call_from_a_csv_are_one_stored_row(engine, other_engine, tmp_path):
    calls = _mixed_calls(engine)
    posted = _ingest(engine, calls)
    assert posted.ids("created") == [c["call_id"] for c in calls] and posted.errors == []
    path = _as_csv(tmp_path / "calls.csv", calls)
    from_file = load_calls(other_engine, path)
    assert (from_file.inserted, from_file.rows_rejected) == (4, 0)
    assert _stored_rows(engine) == _stored_rows(other_engine)   # every column but batch_id, row_hash included
    # And the file after the post changes nothing: the same row hash.
    before = _stored_rows(engine)
    again = load_calls(engine, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    assert _stored_rows(engine) == before
    # The other way round: the calls loaded from the file, then posted, are unchanged.
    assert _ingest(other_engine, calls, sha="e" * 64).ids("unchanged") == [c["call_id"] for c in calls]


def test_a_dst_gap_and_fold_are_read_alike_by_both_paths(engine, other_engine, tmp_path):
    calls = _mixed_calls(engine)
    _ingest(engine, calls)
    load_calls(other_engine, _as_csv(tmp_path / "calls.csv", calls))
    got = []
    for eng in (engine, other_engine):
        with eng.connect() as conn:
            conn.exec_driver_sql("SET TimeZone = 'America/New_York'")
            got.append(conn.execute(sa.text(
                "SELECT call_id, received_at, received_at = CAST(:gap AS timestamptz), received_at = CAST(:fold AS timestamptz)"
                " FROM calls WHERE call_id IN ('P-GAP', 'P-FOLD') ORDER BY call_id"),
                {"gap": "2021-03-14 02:30:00", "fold": "2021-11-07 01:30:00"}).all())
    assert got[0] == got[1]
    (fold, fold_at, _, fold_ok), (gap, gap_at, gap_ok, _) = got[0]
    assert (fold, fold_ok, gap, gap_ok) == ("P-FOLD", True, "P-GAP", True)
    # PostgreSQL's reading: the skipped 02:30 as standard time (07:30 UTC), the repeated 01:30 as standard time too.
    assert gap_at == datetime(2021, 3, 14, 7, 30, tzinfo=timezone.utc)
    assert fold_at == datetime(2021, 11, 7, 6, 30, tzinfo=timezone.utc)


def test_a_posted_date_is_a_local_calendar_date(engine):
    (_, lon, lat), = _points(engine, 1)
    result = _ingest(engine, [_call("DAY-1", lon, lat, received_at="2021-06-01"),
                              _call("DAY-2", lon, lat, received_at="2021-06-01T00:00:00")])
    assert result.ids("created") == ["DAY-1", "DAY-2"]
    with engine.connect() as conn:
        got = conn.execute(sa.text(
            "SELECT call_id, (received_at AT TIME ZONE 'America/New_York')::text, received_at_precision FROM calls"
            " ORDER BY call_id")).all()
        notes = conn.execute(sa.text("SELECT report FROM ingest_batches WHERE batch_id = :b"),
                             {"b": result.batch_id}).scalar_one()["notes"]["times"]["DATE_RECEIVED"]
    # The day in Charlotte (not UTC midnight, 20:00 the day before); a date-time at midnight stays an instant.
    assert [tuple(r) for r in got] == [("DAY-1", "2021-06-01 00:00:00", "date"), ("DAY-2", "2021-06-01 00:00:00", "time")]
    assert (notes["date"], notes["time"]) == (1, 1)


def test_a_posted_call_never_replaces_a_synthetic_one(engine, tmp_path):
    """A posted call is real: one whose id a generated call holds refuses the batch (400 in the API),
    as a file load refuses it, and nothing of the batch is stored."""
    (_, lon, lat), = _points(engine, 1)
    fake = _call("SYN-1", lon, lat)
    path = tmp_path / "synthetic.csv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join([*live.COLUMNS.values(), "DATA_ORIGIN"]) + "\n")
        fh.write(",".join([*("" if fake.get(k) is None else str(fake[k]) for k in live.COLUMNS), "synthetic"]) + "\n")
    assert load_calls(engine, path).inserted == 1
    with pytest.raises(live.BatchError) as err:
        _ingest(engine, [_call("NEW-1", lon, lat), {**fake, "call_type": "NOISE COMPLAINT"}])
    assert err.value.parameter == "calls" and "synthetic" in err.value.message
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT call_id, call_type, data_origin FROM calls")).all() == [
            ("SYN-1", "ASSAULT", "synthetic")]
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_batches WHERE kind = 'calls_api'")).scalar_one() == 0
