"""CAD times on calls (migration 011): loaded with the date rules, impossible orders rejected, served."""

from __future__ import annotations

import sqlalchemy as sa

from geo.catalog import LAYERS
from geo.classify import ALL_FEATURES, POST_CALL_FIELDS
from geo.ingest.calls import CALLS, load_calls
from tests.ingest.test_points import CALL_COLUMNS, call, places, write_csv  # noqa: F401 (places: a fixture)

CAD_COLUMNS = ["DATE_DISPATCHED", "DATE_ENROUTE", "DATE_ONSCENE", "DATE_CLEARED", "UNITS_ASSIGNED", "PRIMARY_UNIT",
               "DISPOSITION"]
CAD_FIELDS = {"dispatched_at", "enroute_at", "onscene_at", "cleared_at", "units_assigned", "primary_unit",
              "disposition"}


def cad(i, lon, lat, times=("23:59:30", "2021-07-05 00:01:00", "2021-07-05 00:02:00", "2021-07-05 00:07:30",
                             "2021-07-05 00:40:00"), **over):
    row = call(i, lon, lat, DATE_RECEIVED=f"2021-07-04 {times[0]}")
    row.update(zip(CAD_COLUMNS, [*times[1:], "2", "2B31", "REPORT TAKEN"]))
    row.update(over)
    return row


def test_cad_times_load_and_impossible_orders_are_rejected(engine, tmp_path, places):  # noqa: F811
    lon, lat, _, _ = places[120]
    rows = [
        cad("K-1", lon, lat),
        # Cleared before received (a typo in the day): impossible.
        cad("K-2", lon, lat, DATE_CLEARED="2021-07-03 00:40:00"),
        # On scene before dispatched.
        cad("K-3", lon, lat, DATE_ONSCENE="2021-07-05 00:00:30"),
        # Only some CAD times known; a UTC instant compared as an instant (00:10 EDT = 04:10 UTC).
        cad("K-4", lon, lat, DATE_DISPATCHED="", DATE_ENROUTE="", DATE_ONSCENE="2021/07/05 04:10:00+00",
            DATE_CLEARED="", UNITS_ASSIGNED="", PRIMARY_UNIT="", DISPOSITION=""),
        # A calendar date is not compared with times.
        cad("K-5", lon, lat, DATE_CLEARED="2021-07-04"),
        cad("K-6", lon, lat, UNITS_ASSIGNED="-1"),
        cad("K-7", lon, lat, DATE_ENROUTE="yesterday"),
    ]
    report = load_calls(engine, write_csv(tmp_path / "cad.csv", CALL_COLUMNS + CAD_COLUMNS, rows))
    assert report.inserted == 3
    assert dict(report.rejected) == {"impossible_time_order": 2, "bad_value": 1, "bad_date": 1}
    with engine.connect() as conn:
        details = dict(conn.execute(sa.text("SELECT reason || ':' || substr(raw, 1, 3), detail FROM ingest_rejects")).all())
        got = {r.call_id: r for r in conn.execute(sa.text(
            "SELECT call_id, units_assigned, primary_unit, disposition, dispatched_at_precision, cleared_at_precision,"
            " extract(epoch FROM onscene_at - received_at) AS response_s,"
            " extract(epoch FROM cleared_at - onscene_at) AS on_scene_s FROM calls"))}
    assert details["impossible_time_order:K-2"].startswith(
        "DATE_CLEARED '2021-07-03 00:40:00' is before DATE_ONSCENE '2021-07-05 00:07:30'")
    assert details["impossible_time_order:K-3"].startswith(
        "DATE_ONSCENE '2021-07-05 00:00:30' is before DATE_ENROUTE '2021-07-05 00:02:00'")
    assert details["bad_value:K-6"] == "UNITS_ASSIGNED '-1' is not a whole number from 0 to 999"
    assert set(got) == {"K-1", "K-4", "K-5"}
    k1 = got["K-1"]
    assert (k1.units_assigned, k1.primary_unit, k1.disposition) == (2, "2B31", "REPORT TAKEN")
    assert k1.response_s == 8 * 60 and k1.on_scene_s == 32.5 * 60 and k1.dispatched_at_precision == "time"
    assert got["K-4"].response_s == 10 * 60 + 30 and got["K-4"].units_assigned is None
    assert got["K-4"].dispatched_at_precision is None and got["K-5"].cleared_at_precision == "date"
    # A file without the CAD columns loads as before (they stay empty).
    plain = load_calls(engine, write_csv(tmp_path / "plain.csv", CALL_COLUMNS, [call("P-1", lon, lat)]))
    assert plain.inserted == 1 and not plain.rejected


def test_cad_fields_are_served_but_never_features():
    assert CAD_FIELDS <= POST_CALL_FIELDS and not CAD_FIELDS & set(ALL_FEATURES)
    assert set(CALLS.times.values()) - {"received_at"} | set(CALLS.integers.values()) - {"priority"} \
        | {"primary_unit", "disposition"} == CAD_FIELDS
    served = {p.name for p in LAYERS["calls"].public}
    assert CAD_FIELDS <= served
