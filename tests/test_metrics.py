"""Counts, shares and the 7x24 matrix on hand-made calls whose answers are known (CompStat: test_compstat.py)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa

from geo.filters import Filter
from geo.metrics import call_counts, hour_occurrences, hour_weekday


def add_calls(engine, rows):
    """rows: (local datetime, division, category, label, p)"""
    with engine.begin() as conn:
        for i, (when, division, category, label, p) in enumerate(rows):
            conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, call_type, geom, division_id, category, label, p_violent,"
                " row_hash, batch_id) VALUES (:id, CAST(:t AS timestamp) AT TIME ZONE 'America/New_York', 'X',"
                " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), :d, :c, :l, :p, 0, 0)"),
                {"id": f"T{i}", "t": when, "d": division, "c": category, "l": label, "p": p})


def test_counts_and_shares_per_division(engine):
    add_calls(engine, [
        (datetime(2021, 5, 3, 10), "01", "traffic", False, 0.01),
        (datetime(2021, 5, 3, 11), "01", "traffic", False, 0.01),
        (datetime(2021, 5, 3, 23), "01", "violent_crime", True, 0.80),
        (datetime(2021, 5, 4, 1), "02", "property", False, 0.05),
        (datetime(2021, 6, 1, 0, 30), "02", "property", False, 0.05),  # outside the period
    ])
    rows = call_counts(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), "division")
    got = {(r.area, r.category): (r.calls, round(r.share, 4)) for r in rows.itertuples()}
    assert got == {("01", "traffic"): (2, 0.6667), ("01", "violent_crime"): (1, 0.3333), ("02", "property"): (1, 1.0)}
    one = rows[rows["area"] == "01"].iloc[0]
    assert one.total == 3 and one.area_labelled_violent == 1 and one.area_expected_violent == pytest.approx(0.82)
    city = call_counts(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), "city")
    assert set(city["area"]) == {"CMPD"} and city["calls"].sum() == 4


def test_hour_by_weekday_matrix_in_local_time(engine):
    # 2021-03-14 is a Sunday and the day clocks spring forward; 23:30 local is still Sunday 23h.
    add_calls(engine, [
        (datetime(2021, 3, 14, 23, 30), "01", "traffic", False, 0.0),
        (datetime(2021, 3, 15, 0, 10), "01", "traffic", False, 0.0),
        (datetime(2021, 3, 15, 0, 50), "01", "violent_crime", True, 0.9),
        (datetime(2021, 3, 20, 13, 0), "02", "traffic", False, 0.0),
    ])
    m = hour_weekday(engine, Filter.local_days(date(2021, 3, 1), date(2021, 4, 1))).totals
    assert m.shape == (7, 24) and int(m.to_numpy().sum()) == 4
    assert m.loc["Sun", 23] == 1 and m.loc["Mon", 0] == 2 and m.loc["Sat", 13] == 1
    violent = hour_weekday(engine, Filter.local_days(date(2021, 3, 1), date(2021, 4, 1), violent=True)).totals
    assert int(violent.to_numpy().sum()) == 1 and violent.loc["Mon", 0] == 1
    one = hour_weekday(engine, Filter.local_days(date(2021, 3, 1), date(2021, 4, 1), division="02")).totals
    assert int(one.to_numpy().sum()) == 1


def test_7x24_is_the_mean_per_occurrence_of_each_weekday_hour(engine):
    """June 2021 (30 days from a Tuesday): Tuesdays and Wednesdays occur five times, other weekdays four."""
    rows = [(datetime(2021, 6, day, 10, 15), "01", "traffic", False, 0.0) for day in (1, 8, 15, 22, 29)]   # Tuesdays
    rows += [(datetime(2021, 6, day, 10, 40), "01", "traffic", False, 0.0) for day in (7, 14, 21, 28)]     # Mondays
    rows += [(datetime(2021, 6, 4, 22, 5), "01", "traffic", False, 0.0)] * 2                               # Fridays
    rows += [(datetime(2021, 6, 25, 22, 5), "02", "traffic", False, 0.0)]
    rows += [(datetime(2021, 5, 31, 12, 0), "01", "traffic", False, 0.0),   # outside the month; where the data
             (datetime(2021, 7, 1, 12, 0), "01", "traffic", False, 0.0)]    # begin and end
    rows += [(datetime(2021, 6, 2, 0, 0), "01", "traffic", False, 0.0)]   # T14: known only by its date
    add_calls(engine, rows)
    with engine.begin() as conn:   # stored at local midnight of its date, in no cell of the matrix
        conn.execute(sa.text("UPDATE calls SET received_at_precision = 'date' WHERE call_id = 'T14'"))
    m = hour_weekday(engine, Filter.local_days(date(2021, 6, 1), date(2021, 7, 1)))
    times = m.occurrences
    assert times.loc["Tue"].tolist() == [5] * 24 and times.loc["Wed"].tolist() == [5] * 24
    assert all(times.loc[d].tolist() == [4] * 24 for d in ("Mon", "Thu", "Fri", "Sat", "Sun"))
    # Totals say Tuesday 10h is 25% busier than Monday 10h; per occurrence they are alike.
    assert (m.totals.loc["Tue", 10], m.totals.loc["Mon", 10]) == (5, 4)
    assert m.mean.loc["Tue", 10] == m.mean.loc["Mon", 10] == 1.0
    assert m.mean.loc["Fri", 22] == pytest.approx(3 / 4) and m.mean.loc["Wed", 10] == 0.0
    # The date-only call is left out of every cell and counted.
    assert m.left_out_date_only == 1 and int(m.totals.to_numpy().sum()) == 12 and m.totals.loc["Wed", 0] == 0
    frame = m.to_frame().set_index(["weekday", "hour"])
    assert len(frame) == 168 and frame.loc[("Fri", 22)].tolist() == [3, 4, 0.75]
    # A filter reaching past the data counts only the days the data cover (31 May to 1 July here).
    wide = hour_weekday(engine, Filter.local_days(date(2021, 1, 1), date(2021, 12, 31)))
    assert wide.start.date() == date(2021, 5, 31) and wide.end.date() == date(2021, 7, 2)
    assert wide.occurrences.loc["Mon"].tolist() == [5] * 24 and wide.occurrences.loc["Thu"].tolist() == [5] * 24


def test_hour_occurrences_follow_daylight_saving():
    from datetime import time
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("America/New_York")

    def month(m: int) -> tuple[datetime, datetime]:
        return datetime.combine(date(2021, m, 1), time(0), tz), datetime.combine(date(2021, m + 1, 1), time(0), tz)

    march = hour_occurrences(*month(3), "America/New_York")      # 14 March: no 02h
    assert march.loc["Sun", 2] == 3 and march.loc["Sun", 1] == march.loc["Sun", 3] == 4
    november = hour_occurrences(*month(11), "America/New_York")  # 7 November: 01h twice
    assert november.loc["Sun", 1] == 5 and november.loc["Sun", 2] == 4
    assert int(march.to_numpy().sum()) == 31 * 24 - 1 and int(november.to_numpy().sum()) == 30 * 24 + 1


def test_stats_commands_print_the_same_numbers(engine):
    from click.testing import CliRunner

    from geo.cli import main

    add_calls(engine, [
        (datetime(2021, 5, 3, 10), "01", "traffic", False, 0.01),
        (datetime(2021, 5, 3, 23), "01", "violent_crime", True, 0.8),
        (datetime(2021, 5, 4, 1), "02", "property", False, 0.05),
    ])
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    run = CliRunner().invoke
    out = run(main, ["stats", "calls", "--from", "2021-05-01", "--to", "2021-05-31"], env=env).output
    assert "division 01 Central: 2 calls, 1 labelled violent (50.0%)" in out and "division 02 Metro: 1 call," in out
    out = run(main, ["stats", "hours", "--from", "2021-05-01", "--to", "2021-05-31"], env=env).output
    # The data cover 3-4 May only: the mean is over that Monday and Tuesday, once each.
    assert "Mon 1x, Tue 1x, Wed 0x" in out
    mon = next(line for line in out.splitlines() if line.startswith("Mon"))
    assert mon.split()[1 + 10] == "1.00" and mon.split()[1 + 23] == "1.00" and mon.split()[1 + 9] == "0.00"
    assert next(line for line in out.splitlines() if line.startswith("Wed")).split()[1] == "n/a"
    out = run(main, ["stats", "hours", "--from", "2021-05-01", "--to", "2021-05-31", "--totals"], env=env).output
    mon = next(line for line in out.splitlines() if line.startswith("Mon"))
    assert mon.split()[1 + 10] == "1" and mon.split()[1 + 23] == "1"
    bad = run(main, ["stats", "calls", "--from", "2021-05-31", "--to", "2021-05-01"], env=env)
    assert bad.exit_code == 2 and "--to" in bad.output
    out = run(main, ["stats", "compstat", "--as-of", "2021-05-10"], env=env).output
    assert "data do not cover both periods" in out
    out = run(main, ["stats", "calls", "--from", "2021-05-01", "--to", "2021-05-31", "--save"], env=env).output
    assert "saved as analysis run" in out
    out = run(main, ["allocate", "--method", "proportional", "--officers", "100", "--from", "2021-05-01",
                     "--to", "2021-05-31", "--save"], env=env)
    assert out.exit_code == 0 and "saved as analysis run" in out.output
    with engine.connect() as conn:
        kinds = sorted(r[0] for r in conn.execute(sa.text("SELECT kind FROM analysis_runs")))
        reasoning = conn.execute(sa.text(
            "SELECT data->>'reasoning' FROM analysis_rows r JOIN analysis_runs a USING (run_id)"
            " WHERE a.kind = 'allocation' AND data->>'division_id' = '01' LIMIT 1")).scalar()
    assert kinds == ["allocation", "call_counts"] and "officers" in reasoning


def test_rates_per_1000_residents(engine):
    add_calls(engine, [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.1)] * 1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET npa_id = 3"))
        pop = conn.execute(sa.text("SELECT population FROM neighborhoods WHERE npa_id = 3")).scalar()
        conn.execute(sa.text("UPDATE neighborhoods SET population = 0 WHERE npa_id = 2"))
    from geo.metrics import npa_rates

    rates = npa_rates(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1))).set_index("npa_id")
    assert len(rates) == 462 and rates.loc[3, "calls"] == 1
    assert rates.loc[3, "calls_per_1000"] == pytest.approx(round(1000 / pop, 2))
    assert rates.loc[2, "calls_per_1000"] != rates.loc[2, "calls_per_1000"]  # no residents: no rate (NaN)


def test_clearance_rates(engine):
    from geo.metrics import clearance_rates

    with engine.begin() as conn:
        for i, (status, detail, crime, cat) in enumerate([
            ("Closed/Cleared", "Cleared by Arrest", True, "violent_crime"),
            ("Open", "Open", True, "violent_crime"),
            ("Open", "Open", True, "violent_crime"),
            ("Closed/Cleared", "Exceptionally Cleared", True, "property"),
            ("Closed/Cleared", "Cleared by Arrest", False, "service_other"),  # 800-series: not a crime
            # CMPD's own wording (the real files): the kind of clearance is the status.
            ("Exceptionally Cleared", "Victim Chose not to Prosecute", True, "violent_crime"),
            ("Cleared by Arrest by Another Agency", None, True, "property"),
            ("Cleared by Arrest", None, True, "property"),
            ("Unfounded", None, False, "property"),   # not a crime: outside the denominator
        ]):
            conn.execute(sa.text(
                "INSERT INTO incidents (incident_report_id, date_reported, clearance_status, clearance_detail_status,"
                " is_crime, category, division_id, geom, row_hash, batch_id) VALUES (:i, '2021-05-05 12:00-04', :s, :d,"
                " :c, :k, '01', ST_SetSRID(ST_Point(-80.84, 35.22), 4326), 0, 0)"),
                {"i": f"R{i}", "s": status, "d": detail, "c": crime, "k": cat})
    rows = clearance_rates(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)))
    got = {(r.area, r.category): (r.incidents, r.cleared, r.clearance_rate) for r in rows.itertuples()}
    assert got == {("01", "property"): (3, 3, 1.0), ("01", "violent_crime"): (4, 2, 0.5)}


def test_outreach_flags(engine):
    from geo.metrics import outreach_flags

    rows = [(datetime(2021, 5, 3, 10), "01", "mental_health_welfare", False, 0.0)] * 60
    rows += [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.0)] * 40
    rows += [(datetime(2021, 5, 3, 10), "02", "traffic", False, 0.0)] * 300
    rows += [(datetime(2021, 5, 3, 10), "02", "mental_health_welfare", False, 0.0)] * 20
    add_calls(engine, rows)
    flags = outreach_flags(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), by="division")
    assert list(flags["area"]) == ["01"]
    one = flags.iloc[0]
    assert one["category"] == "mental_health_welfare" and one["calls"] == 60
    assert one["share"] == pytest.approx(0.6) and one["city_share"] == pytest.approx(80 / 420)
    assert one["ratio_to_city"] == pytest.approx(round(0.6 / (80 / 420), 2))


def test_result_tables_are_saved_with_their_run(engine):
    from geo.runs import RunKind, RunSpec, load_table, save_table

    add_calls(engine, [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.01),
                       (datetime(2021, 5, 3, 23), "01", "violent_crime", True, 0.8)])
    period = Filter.local_days(date(2021, 5, 1), date(2021, 6, 1))
    counts = call_counts(engine, period, "division")
    run_id = save_table(engine, RunSpec(RunKind.CALL_COUNTS, {"period": [str(period.start_date), str(period.end_date)],
                                                            "by": "division"}, model_version="m1"), counts)
    back = load_table(engine, run_id)
    assert list(back["category"]) == list(counts["category"]) and list(back["calls"]) == list(counts["calls"])
    matrix_run = save_table(engine, RunSpec(RunKind.HOUR_WEEKDAY), hour_weekday(engine, period).to_frame())
    matrix = load_table(engine, matrix_run)
    assert len(matrix) == 168 and (matrix.iloc[0]["weekday"], matrix.iloc[0]["hour"]) == ("Mon", 0)
    assert matrix.iloc[23][["calls", "occurrences", "mean_per_occurrence"]].tolist() == [1, 1, 1.0]
    with engine.connect() as conn:
        kind, params, version = conn.execute(sa.text(
            "SELECT kind, params, model_version FROM analysis_runs WHERE run_id = :r"), {"r": run_id}).one()
    assert (kind, params["by"], version) == ("call_counts", "division", "m1")


def test_monthly_trend_uses_local_months(engine):
    from geo.metrics import monthly_trend

    add_calls(engine, [
        (datetime(2021, 4, 30, 23, 30), "01", "traffic", False, 0.1),   # 03:30 UTC on 1 May: still April locally
        (datetime(2021, 5, 1, 0, 30), "01", "violent_crime", True, 0.7),
        (datetime(2021, 5, 20, 12, 0), "02", "traffic", False, 0.1),
    ])
    city = monthly_trend(engine, Filter.local_days(date(2021, 4, 1), date(2021, 6, 1)))
    assert [(r.month, r.calls, r.labelled_violent) for r in city.itertuples()] == [("2021-04", 1, 0), ("2021-05", 2, 1)]
    by_div = monthly_trend(engine, Filter.local_days(date(2021, 4, 1), date(2021, 6, 1)), "division")
    assert [(r.area, r.month, r.calls) for r in by_div.itertuples()] == [("01", "2021-04", 1), ("01", "2021-05", 1), ("02", "2021-05", 1)]
    assert by_div["expected_violent"].sum() == pytest.approx(0.9)
