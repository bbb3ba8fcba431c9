"""CompStat: the report's windows, the overdispersed test and its FDR correction, on planted nulls and changes.

The statistical tests run on simulated daily counts (no database, fast); the database tests check
that calls are counted by local day into the same windows, by the CLI and the map's panel alike.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from geo.filters import Filter
from geo.metrics import (compstat, compstat_table, compstat_windows, history_dispersion, history_pairs,
                         overdispersed_change_test, report_end)

TZ = "America/New_York"


# --- windows -------------------------------------------------------------------------------------
def _days(p: Filter) -> tuple[str, str]:
    return str(p.start_date), str(p.end_date - timedelta(days=1))


def test_windows_end_on_the_last_complete_week_and_compare_with_a_year_earlier():
    w = compstat_windows(date(2021, 7, 1))   # a Thursday: the report week is Monday 21 to Sunday 27 June
    assert report_end(date(2021, 7, 1)) == date(2021, 6, 27)
    assert [_days(p) for p in w["week"]] == [("2021-06-21", "2021-06-27"), ("2020-06-22", "2020-06-28")]
    assert [_days(p) for p in w["28 days"]] == [("2021-05-31", "2021-06-27"), ("2020-06-01", "2020-06-28")]
    assert [_days(p) for p in w["year to date"]] == [("2021-01-01", "2021-06-27"), ("2020-01-01", "2020-06-27")]
    # Weeks run Monday to Sunday in both years (52 weeks back), so they hold the same weekdays.
    for current, prior in (w["week"], w["28 days"]):
        assert current.start_date.isoweekday() == prior.start_date.isoweekday() == 1
        assert (current.end_date - timedelta(days=1)).isoweekday() == (prior.end_date - timedelta(days=1)).isoweekday() == 7
    # A report date on a Monday reports the week that ended the day before.
    assert report_end(date(2021, 6, 28)) == date(2021, 6, 27) and report_end(date(2021, 6, 29)) == date(2021, 6, 27)


def test_1_january_reports_last_year_and_a_straddling_week_has_a_short_year_to_date():
    w = compstat_windows(date(2024, 1, 1))   # Monday: the week ending Sunday 31 December
    assert [_days(p) for p in w["year to date"]] == [("2023-01-01", "2023-12-31"), ("2022-01-01", "2022-12-31")]
    assert w["year to date"][0].days == 365
    assert _days(w["week"][0]) == ("2023-12-25", "2023-12-31")
    w = compstat_windows(date(2026, 1, 5))   # the week 29 December 2025 - 4 January 2026
    assert _days(w["week"][0]) == ("2025-12-29", "2026-01-04")
    assert [_days(p) for p in w["year to date"]] == [("2026-01-01", "2026-01-04"), ("2025-01-01", "2025-01-04")]
    for name in ("2021-01-01", "2022-01-01", "2023-01-01", "2027-01-01"):
        assert all(c.days > 0 and p.days > 0 for c, p in compstat_windows(date.fromisoformat(name)).values())


def test_29_february_against_28_february_and_the_leap_day_in_last_year():
    w = compstat_windows(date(2032, 3, 1))   # 29 February 2032 is a Sunday: it ends the report week
    assert [_days(p) for p in w["year to date"]] == [("2032-01-01", "2032-02-29"), ("2031-01-01", "2031-02-28")]
    assert (w["year to date"][0].days, w["year to date"][1].days) == (60, 59)
    w = compstat_windows(date(2025, 3, 3))   # last year's year to date holds 29 February 2024
    assert [_days(p) for p in w["year to date"]] == [("2025-01-01", "2025-03-02"), ("2024-01-01", "2024-03-02")]
    assert (w["year to date"][0].days, w["year to date"][1].days) == (61, 62)


def test_back_to_back_is_an_option_for_the_week_and_28_days():
    w = compstat_windows(date(2021, 7, 1), compare="previous")
    assert _days(w["week"][1]) == ("2021-06-14", "2021-06-20")
    assert _days(w["28 days"][1]) == ("2021-05-03", "2021-05-30")
    assert _days(w["year to date"][1]) == ("2020-01-01", "2020-06-27")
    with pytest.raises(ValueError, match="compare must be one of year, previous"):
        compstat_windows(date(2021, 7, 1), compare="month")


def test_history_pairs_do_not_share_a_day_and_stay_inside_the_data():
    current, prior = compstat_windows(date(2021, 7, 1))["28 days"]
    rule = lambda p: Filter.local_days(p.start_date - timedelta(days=364), p.end_date - timedelta(days=364))  # noqa: E731
    pairs = history_pairs(current, prior, rule, first=date(2019, 1, 1))
    periods = [current, prior] + [p for pair in pairs for p in pair]
    assert all(p.days == 28 for p in periods)
    assert all(not (a.start < b.end and b.start < a.end) for i, a in enumerate(periods) for b in periods[i + 1:])
    assert min(p.start_date for p in periods) >= date(2019, 1, 1)
    # 12 earlier blocks fit between the window and its comparison (the 13th is the comparison itself).
    assert len(pairs) == 12 and pairs[0][0] == Filter.local_days(current.start_date - timedelta(days=28), current.start_date)


# --- the test statistic --------------------------------------------------------------------------
def test_dispersion_is_the_pearson_chi_square_of_the_earlier_pairs():
    block = np.array([[30], [18], [25], [40]])
    other = np.array([[20], [22], [25], [20]])
    phi, df = history_dispersion(block, other, np.full(4, 28), np.full(4, 28))
    pi = block.sum() / (block.sum() + other.sum())
    n = (block + other)[:, 0]
    chi2 = sum((b - k * pi) ** 2 / (k * pi * (1 - pi)) for b, k in zip(block[:, 0], n))
    assert df[0] == 3 and phi[0] == pytest.approx(chi2 / 3)
    # Less variable than Poisson: floored at 1. One pair: no degrees of freedom, no estimate.
    phi, df = history_dispersion(np.array([[10], [11]]), np.array([[10], [10]]), np.full(2, 7), np.full(2, 7))
    assert phi[0] == 1.0 and df[0] == 1
    phi, df = history_dispersion(np.array([[10]]), np.array([[10]]), np.full(1, 7), np.full(1, 7))
    assert np.isnan(phi[0]) and df[0] == 0


def test_change_test_is_the_score_z_scaled_by_the_dispersion():
    from scipy.stats import t as student

    # 130 against 100 days alike, phi 2 from 12 degrees of freedom: z by hand.
    z = (abs(130 - 230 * 0.5) - 0.5) / np.sqrt(2.0 * 230 * 0.25)
    got = overdispersed_change_test([130], [100], 28, 28, [2.0], [12])
    assert got[0] == pytest.approx(2 * student.sf(z, 12))
    # Unequal exposure: 60 in 60 days against 50 in 50 is no change; over equal days it is a rise.
    assert overdispersed_change_test([60], [50], 60, 50, [1.0], [30])[0] == 1.0
    assert overdispersed_change_test([60], [50], 50, 50, [1.0], [30])[0] < 0.5
    # More dispersion, less significance; nothing in either period, nothing to test.
    p1, p3 = (overdispersed_change_test([140], [100], 28, 28, [phi], [12])[0] for phi in (1.0, 3.0))
    assert p1 < 0.05 < p3
    assert overdispersed_change_test([0], [0], 28, 28, [np.nan], [-1])[0] == 1.0
    assert np.isnan(overdispersed_change_test([5], [3], 28, 28, [np.nan], [0])[0])


# --- planted nulls and changes -------------------------------------------------------------------
DAYS = pd.date_range("2020-01-01", "2023-12-31", freq="D")
COVERAGE = (date(2020, 1, 1), date(2023, 12, 31))


def _daily(rng, base: np.ndarray, *, ratio: float = 2.0, season: float = 0.3, boost=None) -> pd.DataFrame:
    """Daily counts per area: negative binomial with variance/mean `ratio` at every window length
    (independent days, a common success probability), a shared summer peak, optional planted rises."""
    doy = DAYS.day_of_year.to_numpy()
    mu = (1 + season * np.cos(2 * np.pi * (doy - 200) / 365.25))[:, None] * base[None, :]
    if boost is not None:
        mu = mu * boost
    counts = rng.negative_binomial(mu / (ratio - 1), 1 / ratio)
    return pd.DataFrame(counts, index=DAYS, columns=[f"a{i}" for i in range(len(base))])


def test_a_null_with_variance_twice_the_mean_is_flagged_at_most_5_percent():
    rng = np.random.default_rng(11)
    daily = _daily(rng, rng.uniform(0.3, 8.0, 200))   # 8 to 220 a 28-day window, summer peak +-30%
    reports = [d.date() for d in pd.date_range("2023-03-06", "2023-12-25", freq="21D")]
    table = pd.concat([compstat_table(daily, d, COVERAGE) for d in reports])
    tested = table[table["window"].isin(["week", "28 days"])]
    assert len(tested) == 2 * 200 * len(reports) and tested["p_value"].notna().all()
    raw = tested.groupby("window")["p_value"].apply(lambda p: float((p < 0.05).mean()))
    assert raw["week"] <= 0.05 and raw["28 days"] <= 0.05
    assert raw["28 days"] > 0.02   # calibrated, not merely timid
    # After the FDR correction across the 200 areas: next to nothing (a complete null).
    assert table["significant"].mean() <= 0.005
    # The areas' own history finds the planted dispersion.
    assert 1.7 < tested.loc[tested["window"] == "28 days", "dispersion"].median() < 2.3
    # The same windows with a Poisson test (phi = 1) flag two to three times too many.
    four = tested[tested["window"] == "28 days"]
    poisson = overdispersed_change_test(four["current"], four["prior"], 28, 28, np.ones(len(four)), np.full(len(four), 1e6))
    assert (poisson < 0.05).mean() > 0.12


def test_a_planted_50_percent_rise_is_found():
    rng = np.random.default_rng(12)
    as_of = date(2023, 10, 2)
    current = compstat_windows(as_of)["28 days"][0]
    inside = (DAYS >= pd.Timestamp(current.start_date)) & (DAYS < pd.Timestamp(current.end_date))
    boost = np.ones((len(DAYS), 100))
    boost[np.ix_(inside, np.arange(10))] = 1.5                 # areas a0-a9 up 50% in the 28 days
    daily = _daily(rng, np.full(100, 600 / 28), boost=boost)   # about 600 a 28-day window, var/mean 2
    table = compstat_table(daily, as_of, COVERAGE)
    four = table[table["window"] == "28 days"].set_index("area")
    planted = [f"a{i}" for i in range(10)]
    assert 40 < four.loc[planted, "pct_change"].median() < 60 and (four.loc[planted, "pct_change"] > 10).all()
    assert four.loc[planted, "significant"].sum() >= 9                  # power at this size: about 0.97
    assert four.drop(planted)["significant"].sum() <= 1
    assert (four.loc[planted, "q_value"] < 0.05).sum() == four.loc[planted, "significant"].sum()


def test_back_to_back_mixes_in_the_season_and_the_year_comparison_does_not():
    rng = np.random.default_rng(13)
    daily = _daily(rng, np.full(100, 10.0), season=0.4)   # no change at all, a strong summer peak
    as_of = date(2023, 5, 1)                              # spring: every week busier than the last
    year = compstat_table(daily, as_of, COVERAGE).query("window == '28 days'")
    previous = compstat_table(daily, as_of, COVERAGE, compare="previous").query("window == '28 days'")
    # Against the same weeks a year earlier: no change, and the planted dispersion (2).
    assert abs(year["pct_change"].median()) < 5 and 1.6 < year["dispersion"].median() < 2.4
    # Back to back: a seasonal "rise" of about a quarter, and the season's swings taken for noise
    # (a dispersion twice as large), so real changes are harder to see. Neither flags the null.
    assert previous["pct_change"].median() > 15
    assert previous["dispersion"].median() > 1.8 * year["dispersion"].median()
    assert year["significant"].sum() <= 1 and previous["significant"].sum() <= 1


def test_windows_the_data_do_not_cover_are_reported_not_tested():
    rng = np.random.default_rng(14)
    daily = _daily(rng, np.full(3, 5.0)).loc["2023-01-01":]
    table = compstat_table(daily, date(2023, 10, 2), (date(2023, 1, 1), date(2023, 12, 31)))
    assert not table["data_covers_both"].any() and table["p_value"].isna().all()
    assert set(table["note"]) == {"data do not cover both periods"} and not table["significant"].any()
    # Back to back on the one year: tested, with the history the year holds.
    table = compstat_table(daily, date(2023, 10, 2), (date(2023, 1, 1), date(2023, 12, 31)), compare="previous")
    week = table[table["window"] == "week"]
    assert week["data_covers_both"].all() and week["p_value"].notna().all() and (week["history_pairs"] > 10).all()


# --- the database: local days, the CLI -----------------------------------------------------------
def _generate_calls(engine, first: date, last: date) -> None:
    """Division 01: 1-3 calls at noon each day (by the date's ordinal), division 02: 2 calls each day."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, division_id, category, row_hash, batch_id)"
            " SELECT 'G' || d::date || '-' || k || '-' || div, (d::date + time '12:00') AT TIME ZONE :tz, 'X',"
            "  ST_SetSRID(ST_Point(-80.84, 35.22), 4326), div, 'traffic', 0, 0"
            " FROM generate_series(CAST(:a AS date), CAST(:b AS date), interval '1 day') d"
            " CROSS JOIN (VALUES ('01'), ('02')) v(div) CROSS JOIN generate_series(1, 3) k"
            " WHERE (div = '01' AND k <= ((d::date - date '0001-01-01' + 1) % 3) + 1) OR (div = '02' AND k <= 2)"),
            {"tz": TZ, "a": first, "b": last})


def _expected(first: date, last: date, period: Filter, division: str) -> int:
    days = [period.start_date + timedelta(days=i) for i in range(period.days)]
    days = [d for d in days if first <= d <= last]
    return sum((d.toordinal() % 3) + 1 if division == "01" else 2 for d in days)


def test_compstat_counts_calls_by_local_day_and_tests_every_division(engine):
    first, last = date(2019, 1, 1), date(2021, 7, 10)
    _generate_calls(engine, first, last)
    with engine.begin() as conn:   # the report week's edges, in local time
        for i, (when, precision) in enumerate([(datetime(2021, 6, 27, 23, 30), "time"),    # Sunday night: in
                                               (datetime(2021, 6, 28, 0, 10), "time"),     # Monday: out
                                               (datetime(2021, 6, 21, 0, 0), "date"),      # date only, Monday: in
                                               (datetime(2021, 6, 20, 23, 59), "time")]):  # Sunday before: out
            conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, received_at_precision, call_type, geom, division_id,"
                " category, row_hash, batch_id) VALUES (:id, CAST(:t AS timestamp) AT TIME ZONE :tz, :p, 'X',"
                " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), '01', 'traffic', 0, 0)"),
                {"id": f"E{i}", "t": when, "p": precision, "tz": TZ})
    table = compstat(engine, date(2021, 7, 1), by="division")
    assert list(table["window"].unique()) == ["week", "28 days", "year to date"]
    # Every division is reported and in the FDR family, with calls or without.
    with engine.connect() as conn:
        divisions = [r[0] for r in conn.execute(sa.text("SELECT division_id FROM divisions ORDER BY 1"))]
    assert table.loc[table["window"] == "week", "area"].tolist() == divisions and len(divisions) == 14
    quiet = table[(table["area"] == divisions[-1]) & (table["window"] == "week")].iloc[0]
    assert (quiet["current"], quiet["prior"], quiet["p_value"]) == (0, 0, 1.0)
    rows = table.set_index(["window", "area"])
    windows = compstat_windows(date(2021, 7, 1))
    for name, (current, prior) in windows.items():
        for division in ("01", "02"):
            r = rows.loc[(name, division)]
            # The edge calls of division 01: two in the week, three in the 28 days and the year to date.
            extra = 0 if division == "02" else (2 if name == "week" else 3)
            assert (r.current, r.prior) == (_expected(first, last, current, division) + extra,
                                            _expected(first, last, prior, division))
            assert r.data_covers_both and r.current_period == f"{current.start_date}..{current.end_date - timedelta(days=1)}"
    # Division 02 is perfectly regular: dispersion floored at 1, no change, p = 1 after the correction.
    week = rows.loc[("week", "02")]
    assert week.dispersion == 1.0 and week["pct_change"] == 0.0 and week.p_value == 1.0 and not week.significant
    # 28 days: twelve earlier pairs in the 2.5 years; the year to date has too little history to
    # estimate its dispersion (one earlier pair): counted and changed, not tested.
    assert rows.loc[("28 days", "01"), "history_pairs"] == 12
    ytd = rows.loc[("year to date", "01")]
    assert np.isnan(ytd.p_value) and ytd.note.startswith("history too short") and not ytd.significant
    # 1 January: the report of last year's final week, year to date over the whole of 2020.
    new_year = compstat(engine, date(2021, 1, 1), by="division").set_index(["window", "area"])
    ytd = new_year.loc[("year to date", "02")]
    assert ytd.current_period == "2020-01-01..2020-12-27" and ytd.current == 2 * 362 and ytd.prior == 2 * 361
    assert ytd["pct_change"] == 0.0   # per day: 362 days against 361


def test_compstat_on_1_january_reports_the_whole_last_year(engine):
    """A report dated 1 January (also the map's report date for a filter ending 31 December) is last
    year's: the year to date has its days and nothing is divided by zero, on the CLI and the panel."""
    first, last = date(2019, 1, 1), date(2021, 7, 10)
    _generate_calls(engine, first, last)
    for day in (date(2020, 1, 1), date(2021, 1, 1)):
        table = compstat(engine, day, by="division")
        ytd = table[(table["window"] == "year to date") & (table["area"] == "02")].iloc[0]
        current, prior = compstat_windows(day)["year to date"]
        assert ytd["current_days"] == current.days > 300 and ytd["prior_days"] == prior.days > 300
        assert ytd["current"] == _expected(first, last, current, "02") > 0
        assert np.isfinite(ytd["pct_change"]) == (day.year > 2020)


def test_compstat_cli_prints_windows_dispersion_and_q(engine):
    from click.testing import CliRunner

    from geo.cli import main

    _generate_calls(engine, date(2019, 1, 1), date(2021, 7, 10))
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    out = CliRunner().invoke(main, ["stats", "compstat", "--as-of", "2021-07-01", "--by", "division",
                                    "--source", "calls"], env=env)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "source: calls: every row under the filter"
    assert "week: 2021-06-21 to 2021-06-27 against 2020-06-22 to 2020-06-28" in lines
    row = next(line.split() for line in lines if line.startswith("week") and " 02 " in line)
    assert row[1:8] == ["02", "14", "14", "+0.0%", "1.000", "1.000", "1.000"] and row[8] == "within"
    out = CliRunner().invoke(main, ["stats", "compstat", "--as-of", "2019-03-01", "--source", "calls"], env=env)
    assert "data do not cover both periods" in out.output
    out = CliRunner().invoke(main, ["stats", "compstat", "--as-of", "2021-07-01", "--compare", "previous",
                                    "--source", "calls"], env=env)
    assert "week: 2021-06-21 to 2021-06-27 against 2021-06-14 to 2021-06-20" in out.output


def test_compstat_on_the_real_incidents_counts_their_calendar_days(engine, data_dir):
    """The real API sample (dates without a time of day) counted into the report's windows by its calendar dates."""
    import csv

    from geo.ingest.incidents import load_incidents

    path = data_dir / "real" / "incidents_api_sample.csv"
    load_incidents(engine, path)
    with engine.connect() as conn:
        loaded = {r[0] for r in conn.execute(sa.text("SELECT incident_report_id FROM incidents"))}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        days = [datetime.fromtimestamp(int(r["DATE_REPORTED"]) / 1000, timezone.utc).date()
                for r in csv.DictReader(fh) if r["INCIDENT_REPORT_ID"] in loaded]
    table = compstat(engine, date(2024, 7, 1), table="incidents").set_index("window")
    for name, (current, prior) in compstat_windows(date(2024, 7, 1)).items():
        r = table.loc[name]
        assert r.current == sum(current.start_date <= d < current.end_date for d in days) > 0
        assert r.prior == sum(prior.start_date <= d < prior.end_date for d in days) > 0
        assert r.data_covers_both
    # About 1.6 reports a day in the sample: the 28-day window has the history for a dispersion.
    assert table.loc["28 days", "history_pairs"] == 26 and table.loc["28 days", "dispersion"] >= 1.0
