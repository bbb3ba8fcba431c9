"""Counts, shares, the 7x24 matrix and CompStat on hand-made calls whose answers are known."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from geo.metrics import Period, call_counts, compstat, compstat_windows, hour_weekday, poisson_change_test


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
    rows = call_counts(engine, Period(date(2021, 5, 1), date(2021, 6, 1)), "division")
    got = {(r.area, r.category): (r.calls, round(r.share, 4)) for r in rows.itertuples()}
    assert got == {("01", "traffic"): (2, 0.6667), ("01", "violent_crime"): (1, 0.3333), ("02", "property"): (1, 1.0)}
    one = rows[rows["area"] == "01"].iloc[0]
    assert one.total == 3 and one.area_labelled_violent == 1 and one.area_expected_violent == pytest.approx(0.82)
    city = call_counts(engine, Period(date(2021, 5, 1), date(2021, 6, 1)), "city")
    assert set(city["area"]) == {"CMPD"} and city["calls"].sum() == 4


def test_hour_by_weekday_matrix_in_local_time(engine):
    # 2021-03-14 is a Sunday and the day clocks spring forward; 23:30 local is still Sunday 23h.
    add_calls(engine, [
        (datetime(2021, 3, 14, 23, 30), "01", "traffic", False, 0.0),
        (datetime(2021, 3, 15, 0, 10), "01", "traffic", False, 0.0),
        (datetime(2021, 3, 15, 0, 50), "01", "violent_crime", True, 0.9),
        (datetime(2021, 3, 20, 13, 0), "02", "traffic", False, 0.0),
    ])
    m = hour_weekday(engine, Period(date(2021, 3, 1), date(2021, 4, 1)))
    assert m.shape == (7, 24) and int(m.to_numpy().sum()) == 4
    assert m.loc["Sun", 23] == 1 and m.loc["Mon", 0] == 2 and m.loc["Sat", 13] == 1
    violent = hour_weekday(engine, Period(date(2021, 3, 1), date(2021, 4, 1)), violent_only=True)
    assert int(violent.to_numpy().sum()) == 1 and violent.loc["Mon", 0] == 1
    assert int(hour_weekday(engine, Period(date(2021, 3, 1), date(2021, 4, 1)), division="02").to_numpy().sum()) == 1


def test_compstat_windows():
    w = compstat_windows(date(2021, 3, 1))
    assert w["7 days"][0] == Period(date(2021, 2, 22), date(2021, 3, 1))
    assert w["7 days"][1] == Period(date(2021, 2, 15), date(2021, 2, 22))
    assert w["28 days"][1].end == w["28 days"][0].start and w["28 days"][0].days == 28
    assert w["year to date"] == (Period(date(2021, 1, 1), date(2021, 3, 1)), Period(date(2020, 1, 1), date(2020, 3, 1)))
    assert w["365 days"][0].days == w["365 days"][1].days == 365
    assert compstat_windows(date(2024, 2, 29))["year to date"][1].end == date(2023, 2, 28)


def test_poisson_test_tells_noise_from_change():
    assert poisson_change_test(12, 10, 7, 7) > 0.5          # 12 vs 10: noise
    assert poisson_change_test(60, 30, 28, 28) < 0.01       # doubled on 30 a period: real
    assert poisson_change_test(0, 0, 7, 7) == 1.0
    # Agrees with the exact conditional binomial computed by hand for a small case.
    from math import comb
    exact = sum(comb(6, k) * 0.5 ** 6 for k in range(6 + 1) if comb(6, k) <= comb(6, 5))
    assert poisson_change_test(5, 1, 7, 7) == pytest.approx(exact)


def test_compstat_counts_change_and_significance(engine):
    as_of = date(2021, 7, 1)
    rows = []
    # 28-day window: 40 calls in the current 28 days, 20 in the prior 28 days; data covers a year back.
    for i in range(40):
        rows.append((datetime(2021, 6, 3) + timedelta(hours=15 * i), "01", "traffic", False, 0.0))
    for i in range(20):
        rows.append((datetime(2021, 5, 6) + timedelta(hours=30 * i), "01", "traffic", False, 0.0))
    rows.append((datetime(2020, 1, 1, 12), "01", "traffic", False, 0.0))
    rows.append((datetime(2021, 6, 30, 12), "01", "traffic", False, 0.0))
    add_calls(engine, rows)
    table = compstat(engine, as_of).set_index("window")
    four = table.loc["28 days"]
    assert (four.current, four.prior) == (41, 20)
    assert four["pct_change"] == pytest.approx(105.0)
    assert four["significant"] and four["p_value"] < 0.01
    seven = table.loc["7 days"]
    assert seven["significant"] == (seven["p_value"] < 0.05)
    # The data start in January 2020, so the prior 365 days are not covered: no change is claimed.
    year = table.loc["365 days"]
    assert not year["data_covers_both"] and not year["significant"] and year["pct_change"] != year["pct_change"]


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
    assert "division 01: 2 calls, 1 labelled violent (50.0%)" in out and "division 02: 1 calls" in out
    out = run(main, ["stats", "hours", "--from", "2021-05-01", "--to", "2021-05-31"], env=env).output
    mon = next(line for line in out.splitlines() if line.startswith("Mon"))
    assert mon.split()[1 + 10] == "1" and mon.split()[1 + 23] == "1"
    bad = run(main, ["stats", "calls", "--from", "2021-05-31", "--to", "2021-05-01"], env=env)
    assert bad.exit_code == 2 and "--to" in bad.output
    out = run(main, ["stats", "compstat", "--as-of", "2021-05-10"], env=env).output
    assert "data do not cover both periods" in out
    out = run(main, ["stats", "calls", "--from", "2021-05-01", "--to", "2021-05-31", "--save"], env=env).output
    assert "saved as analysis run" in out
    out = run(main, ["allocate", "--officers", "100", "--from", "2021-05-01", "--to", "2021-05-31", "--save"], env=env)
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

    rates = npa_rates(engine, Period(date(2021, 5, 1), date(2021, 6, 1))).set_index("npa_id")
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
    rows = clearance_rates(engine, Period(date(2021, 5, 1), date(2021, 6, 1)))
    got = {(r.area, r.category): (r.incidents, r.cleared, r.clearance_rate) for r in rows.itertuples()}
    assert got == {("01", "property"): (3, 3, 1.0), ("01", "violent_crime"): (4, 2, 0.5)}


def test_leading_indicator_finds_a_planted_relation(engine):
    """Disorder calls in one month are followed by violent incidents the next; traffic calls are not."""
    from geo.metrics import leading_indicators

    rng = __import__("numpy").random.default_rng(4)
    calls, incidents = [], []
    for npa in (2, 3, 9, 10, 11, 12):
        for month in range(1, 11):
            disorder = int(rng.integers(0, 8))
            traffic = int(rng.integers(0, 8))
            calls += [(datetime(2021, month, 5, 12), npa, "disorder")] * disorder
            calls += [(datetime(2021, month, 6, 12), npa, "traffic")] * traffic
            incidents += [(datetime(2021, month + 1, 10, 12), npa)] * disorder
    with engine.begin() as conn:
        for i, (when, npa, category) in enumerate(calls):
            conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, call_type, geom, npa_id, category, row_hash, batch_id)"
                " VALUES (:id, CAST(:t AS timestamp) AT TIME ZONE 'America/New_York', 'X',"
                " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), :n, :c, 0, 0)"), {"id": f"L{i}", "t": when, "n": npa, "c": category})
        for i, (when, npa) in enumerate(incidents):
            conn.execute(sa.text(
                "INSERT INTO incidents (incident_report_id, date_reported, highest_nibrs_code, npa_id, geom, row_hash,"
                " batch_id) VALUES (:id, CAST(:t AS timestamp) AT TIME ZONE 'America/New_York', '13A', :n,"
                " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), 0, 0)"), {"id": f"V{i}", "t": when, "n": npa})
    result = leading_indicators(engine, Period(date(2021, 1, 1), date(2021, 11, 1)), min_calls=10).set_index("category")
    assert result.loc["disorder", "rho"] > 0.9 and result.loc["disorder", "q_value"] < 0.001
    assert abs(result.loc["traffic", "rho"]) < 0.3 and result.loc["traffic", "q_value"] > 0.05
    assert result.loc["disorder", "n_pairs"] == 60


def test_outreach_flags(engine):
    from geo.metrics import outreach_flags

    rows = [(datetime(2021, 5, 3, 10), "01", "mental_health_welfare", False, 0.0)] * 60
    rows += [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.0)] * 40
    rows += [(datetime(2021, 5, 3, 10), "02", "traffic", False, 0.0)] * 300
    rows += [(datetime(2021, 5, 3, 10), "02", "mental_health_welfare", False, 0.0)] * 20
    add_calls(engine, rows)
    flags = outreach_flags(engine, Period(date(2021, 5, 1), date(2021, 6, 1)), by="division")
    assert list(flags["area"]) == ["01"]
    one = flags.iloc[0]
    assert one["category"] == "mental_health_welfare" and one["calls"] == 60
    assert one["share"] == pytest.approx(0.6) and one["city_share"] == pytest.approx(80 / 420)
    assert one["ratio_to_city"] == pytest.approx(round(0.6 / (80 / 420), 2))


def test_result_tables_are_saved_with_their_run(engine):
    from geo.metrics import load_table, save_table

    add_calls(engine, [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.01),
                       (datetime(2021, 5, 3, 23), "01", "violent_crime", True, 0.8)])
    period = Period(date(2021, 5, 1), date(2021, 6, 1))
    counts = call_counts(engine, period, "division")
    run_id = save_table(engine, "call_counts", {"period": [str(period.start), str(period.end)], "by": "division"},
                        counts, model_version="m1")
    back = load_table(engine, run_id)
    assert list(back["category"]) == list(counts["category"]) and list(back["calls"]) == list(counts["calls"])
    matrix_run = save_table(engine, "hour_weekday", {}, hour_weekday(engine, period))
    matrix = load_table(engine, matrix_run)
    assert len(matrix) == 7 and matrix.iloc[0]["index"] == "Mon" and int(matrix.iloc[0]["23"]) == 1
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
    city = monthly_trend(engine, Period(date(2021, 4, 1), date(2021, 6, 1)))
    assert [(r.month, r.calls, r.labelled_violent) for r in city.itertuples()] == [("2021-04", 1, 0), ("2021-05", 2, 1)]
    by_div = monthly_trend(engine, Period(date(2021, 4, 1), date(2021, 6, 1)), "division")
    assert [(r.area, r.month, r.calls) for r in by_div.itertuples()] == [("01", "2021-04", 1), ("01", "2021-05", 1), ("02", "2021-05", 1)]
    assert by_div["expected_violent"].sum() == pytest.approx(0.9)
