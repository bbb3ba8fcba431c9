"""Police metrics (geo/police.py) on calls with planted CAD times whose medians and p90s are worked by hand."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.filters import Filter
from geo.police import Roster, interval_stats, response_times, unit_hours, workload_per_officer
from tests.test_metrics import add_calls

MAY = Filter.local_days(date(2021, 5, 1), date(2021, 6, 1))
# Division 01, Priority 1, traffic: (minutes to dispatch, to on scene) after receipt; cleared 30 on scene.
P1 = [(1, 2), (1, 4), (2, 6), (2, 8), (3, 10)]
# Division 02, Priority 3, property: dispatched after 5, on scene after 10 and 20.
P3 = [(5, 10), (5, 20)]


def _set(conn, call_id: str, **values) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    conn.execute(sa.text(f"UPDATE calls SET {sets} WHERE call_id = :id"), {"id": call_id, **values})


def _offset(conn, call_id: str, column: str, minutes: float | None, precision: str = "time") -> None:
    if minutes is None:
        return
    conn.execute(sa.text(f"UPDATE calls SET {column} = received_at + make_interval(secs => :m * 60),"
                         f" {column}_precision = :p WHERE call_id = :id"), {"id": call_id, "m": minutes, "p": precision})


@pytest.fixture
def planted(engine):
    rows = [(datetime(2021, 5, 3, 10 + i), "01", "traffic", False, 0.0) for i in range(len(P1))]
    rows += [(datetime(2021, 5, 4, 22), "02", "property", False, 0.0) for _ in P3]
    rows += [(datetime(2021, 5, 5, 9), "01", "traffic", False, 0.0)] * 3     # T7..T9: left out
    rows += [(datetime(2021, 6, 2, 9), "01", "traffic", False, 0.0)]         # T10: outside May
    add_calls(engine, rows)
    with engine.begin() as conn:
        for i, (d, s) in enumerate(P1):
            _offset(conn, f"T{i}", "dispatched_at", d)
            _offset(conn, f"T{i}", "onscene_at", s)
            _offset(conn, f"T{i}", "cleared_at", s + 30)
            _set(conn, f"T{i}", priority=1, units_assigned=2 if i < 2 else None)
        for j, (d, s) in enumerate(P3):
            i = len(P1) + j
            _offset(conn, f"T{i}", "dispatched_at", d)
            _offset(conn, f"T{i}", "onscene_at", s)
            _offset(conn, f"T{i}", "cleared_at", s + 60)
            _set(conn, f"T{i}", priority=3, units_assigned=1)
        # T7: on scene known only by its date; T8: on scene before it was received; T9: no CAD times.
        _offset(conn, "T7", "dispatched_at", 1)
        _offset(conn, "T7", "onscene_at", 5, "date")
        _offset(conn, "T7", "cleared_at", 40, "date")
        _offset(conn, "T8", "dispatched_at", 1)
        _offset(conn, "T8", "onscene_at", -5)
        _offset(conn, "T8", "cleared_at", 30)
        _set(conn, "T7", priority=1)
        _set(conn, "T8", priority=1)
        _set(conn, "T9", priority=1)
        _offset(conn, "T10", "dispatched_at", 1)
        _offset(conn, "T10", "onscene_at", 3)
        _set(conn, "T10", priority=1)
    return engine


def test_response_time_median_and_p90_by_priority(planted):
    rows = interval_stats(planted, MAY, "response", ("division", "priority")).set_index(["division", "priority"])
    p1 = rows.loc[("01", "1")]
    # 2, 4, 6, 8, 10 minutes: median 6; p90 interpolated at rank 0.9 x 4 = 3.6 -> 8 + 0.6 x 2 = 9.2.
    assert (p1["calls"], p1["n"]) == (8, 5)
    assert (p1["median_min"], p1["p90_min"], p1["mean_min"]) == pytest.approx((6.0, 9.2, 6.0))
    assert (p1["left_out_missing"], p1["left_out_imprecise"], p1["left_out_out_of_order"]) == (1, 1, 1)
    p3 = rows.loc[("02", "3")]
    assert (p3["n"], p3["median_min"], p3["p90_min"]) == (2, pytest.approx(15.0), pytest.approx(19.0))
    assert p3["left_out_missing"] + p3["left_out_imprecise"] + p3["left_out_out_of_order"] == 0


def test_dispatch_delay_and_travel_are_the_two_parts(planted):
    parts = response_times(planted, MAY.narrowed(division="01"), ("priority",)).set_index("interval")
    # dispatch 1, 1, 2, 2, 3 and T7's 1 (a real instant, in order): median 1.5, p90 at rank 4.5 -> 2 + 0.5 x 1;
    # travel 1, 3, 4, 6, 7 (T7's on-scene time is a date): median 4, p90 at rank 3.6 -> 6 + 0.6 x 1.
    assert (parts.loc["dispatch", "median_min"], parts.loc["dispatch", "p90_min"]) == pytest.approx((1.5, 2.5))
    assert (parts.loc["travel", "median_min"], parts.loc["travel", "p90_min"]) == pytest.approx((4.0, 6.6))
    assert parts.loc["dispatch", "n"] == 6 and parts.loc["travel", "n"] == 5
    assert parts.loc["travel", "left_out_imprecise"] == 1 and parts.loc["travel", "left_out_out_of_order"] == 1
    hours = interval_stats(planted, MAY.narrowed(division="01"), "response", ("hour",)).set_index("hour")
    assert hours.loc[10, "median_min"] == pytest.approx(2.0) and hours.loc[14, "p90_min"] == pytest.approx(10.0)
    assert hours.loc[9, "n"] == 0 and hours.loc[9, "calls"] == 3
    with planted.begin() as conn:   # a call known only by its date: no hour at all, not midnight
        conn.execute(sa.text("UPDATE calls SET received_at_precision = 'date' WHERE call_id = 'T9'"))
    hours = interval_stats(planted, MAY.narrowed(division="01"), "response", ("hour",))
    timed = hours[hours["hour"].notna()].set_index("hour")
    assert 0 not in timed.index and hours["hour"].isna().sum() == 1 and timed.loc[9, "calls"] == 2
    assert hours[hours["hour"].isna()].iloc[0]["left_out_missing"] == 1
    with pytest.raises(ValueError, match="interval must be one of response"):
        interval_stats(planted, MAY, "arrival")
    with pytest.raises(ValueError, match="cannot group by 'beat'"):
        interval_stats(planted, MAY, "response", ("beat",))


def test_unit_hours_and_workload_per_officer(planted):
    rows = unit_hours(planted, MAY, ("category",)).set_index("category")
    traffic = rows.loc["traffic"]
    # busy (dispatch to clear) = travel + 30: 31, 33, 34, 36, 37 minutes; units 2, 2, then 1 assumed (not violent).
    assert traffic["n"] == 5 and traffic["units_assumed"] == 3
    assert traffic["unit_hours"] == pytest.approx((2 * 31 + 2 * 33 + 34 + 36 + 37) / 60, abs=1e-3)
    assert traffic["on_scene_median_min"] == pytest.approx(30.0)
    assert (traffic["left_out_missing"], traffic["left_out_imprecise"], traffic["left_out_out_of_order"]) == (1, 1, 1)
    prop = rows.loc["property"]   # 5 + 60 and 15 + 60 busy minutes, one unit each
    assert prop["unit_hours"] == pytest.approx(140 / 60, abs=1e-3) and prop["on_scene_p90_min"] == pytest.approx(60.0)
    roster = Roster({"01": 10.0, "02": 4.0}, {"01": 100.0, "02": 0.0}, "given for the test")
    per = workload_per_officer(planted, MAY, roster).set_index("division")
    assert per.loc["01", "calls_per_officer"] == pytest.approx(0.8)
    assert per.loc["01", "unit_hours_per_officer"] == pytest.approx(235 / 60 / 10, abs=1e-4)
    assert per.loc["01", "obligated_share"] == pytest.approx(235 / 60 / 100, abs=1e-5)
    assert per.loc["01", "proactive_share"] == pytest.approx(1 - 235 / 60 / 100, abs=1e-5)
    assert per.loc["02", "obligated_share"] != per.loc["02", "obligated_share"]   # no on-duty hours: NaN, not 0
    assert per.attrs["officers_from"] == "given for the test" and per.loc["01", "left_out"] == 3


def test_stats_response_command(planted):
    from geo.cli import main

    env = {"DATABASE_URL": planted.url.render_as_string(hide_password=False)}
    args = ["stats", "response", "--from", "2021-05-01", "--to", "2021-05-31", "--by", "division,priority"]
    result = CliRunner().invoke(main, args + ["--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    one = next(r for r in rows if r["interval"] == "response" and r["division"] == "01" and r["priority"] == "1")
    assert (one["median_min"], one["p90_min"], one["n"]) == (6.0, 9.2, 5)
    table = CliRunner().invoke(main, args, env=env)
    assert table.exit_code == 0, table.output
    assert "left out: 3 calls" in table.output and "9.20" in table.output
    csv = CliRunner().invoke(main, args + ["--format", "csv"], env=env)
    assert csv.output.splitlines()[0].startswith("interval,division,priority,calls,n,median_min,p90_min")
    bad = CliRunner().invoke(main, ["stats", "response", "--by", "beat"], env=env)
    assert bad.exit_code == 2 and "cannot group by 'beat'" in bad.output


def test_generated_p1_response_lands_in_cmpd_published_range(engine, data_dir, tmp_path):
    from geo.ingest.calls import load_calls
    from geo.synth import generate

    result = generate(data_dir, tmp_path, n_calls=60_000, seed=5, dirty=False)
    load_calls(engine, result.calls_csv, label=False)
    year = Filter.local_days(date(2024, 1, 1), date(2025, 1, 1))
    rows = interval_stats(engine, year.narrowed(), "response", ("division", "priority"))
    p1 = rows[(rows["priority"] == "1") & (rows["division"] != "(none)") & (rows["n"] >= 100)].set_index("division")
    assert len(p1) >= 12
    # CMPD's published average Priority 1 response by division: about 5 (Eastway) to 8.5 minutes (North).
    assert p1["mean_min"].between(4.5, 9.0).all(), p1
    assert p1["mean_min"].min() < 6.0 and p1["mean_min"].max() > 7.5
    assert (p1["p90_min"] > p1["median_min"]).all()
    assert (p1["left_out_out_of_order"] == 0).all() and (p1["left_out_imprecise"] == 0).all()


def test_stats_workload_command_names_where_officers_come_from(planted):
    from geo.cli import main

    env = {"DATABASE_URL": planted.url.render_as_string(hide_password=False)}
    args = ["stats", "workload", "--from", "2021-05-01", "--to", "2021-05-31"]
    rows = json.loads(CliRunner().invoke(main, args + ["--format", "json"], env=env).output)
    traffic = next(r for r in rows if r["category"] == "traffic")
    assert traffic["unit_hours"] == pytest.approx(235 / 60, abs=1e-3) and traffic["units_assumed"] == 3
    result = CliRunner().invoke(main, args + ["--officers", "150"], env=env)
    assert result.exit_code == 0, result.output
    assert "officers and on-duty unit-hours from the queueing plan placing --officers 150" in result.output
    assert "obligated_share" in result.output and "left out: 3 calls" in result.output


def test_stats_clearance_command(engine):
    from geo.cli import main

    with engine.begin() as conn:
        for i, (status, crime) in enumerate([("Cleared by Arrest", True), ("Open", True), ("Exceptionally Cleared", True),
                                             ("Open", True), ("Unfounded", False)]):
            conn.execute(sa.text(
                "INSERT INTO incidents (incident_report_id, date_reported, clearance_status, is_crime, category,"
                " division_id, geom, row_hash, batch_id) VALUES (:i, '2021-05-05 12:00-04', :s, :c, 'property', '01',"
                " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), 0, 0)"), {"i": f"R{i}", "s": status, "c": crime})
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(main, ["stats", "clearance", "--from", "2021-05-01", "--to", "2021-05-31",
                                       "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["area,incidents,cleared,clearance_rate", "01,4,2,0.5"]
