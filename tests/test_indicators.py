"""Leading indicators: complete months, NPA and month fixed effects, the target's own lag, permutation inference.

The planted worlds: a shared summer peak with no lead (the old rank correlation called every
category a leading indicator), a half-finished last month, and a real lead of one category.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from scipy.stats import spearmanr

from geo.filters import Filter
from geo.metrics import complete_months, indicator_panel, indicator_test, leading_indicators

TZ = "America/New_York"
CATEGORIES = {"disorder": 20, "traffic": 30, "property": 15, "mental_health_welfare": 10}


def world(rng, n: int = 80, months: int = 36, lead: float = 0.0, season: float = 0.4):
    """Monthly calls per category and violent incidents per NPA: NPAs of different sizes, one summer
    peak for everything, month-to-month noise; with `lead`, violence follows disorder a month later."""
    size = rng.uniform(0.5, 3.0, n)[:, None]
    peak = 1 + season * np.cos(2 * np.pi * (np.arange(months) % 12 - 6) / 12)[None, :]
    calls = {k: rng.poisson(base * size * peak * np.exp(rng.normal(0, 0.3, (n, months)))).astype(float)
             for k, base in CATEGORIES.items()}
    rate = 4 * size * peak * np.exp(rng.normal(0, 0.2, (n, months)))
    if lead:
        deviation = calls["disorder"] / (CATEGORIES["disorder"] * size * peak) - 1
        rate[:, 1:] *= np.exp(lead * deviation[:, :-1])
    return calls, rng.poisson(rate).astype(float)


# --- the estimator, checked against a regression written out in full ------------------------------
def _dummy_regression_t(x: np.ndarray, violent: np.ndarray) -> tuple[float, float]:
    """beta and its NPA-clustered t from OLS with every NPA and month dummy, the lag, and x (all relative)."""
    rel = lambda a: a / a.mean(axis=1, keepdims=True)  # noqa: E731
    v, xr = rel(violent), rel(x[:, :-1])
    n, t = v.shape[0], v.shape[1] - 1
    y, lag, xs = v[:, 1:].ravel(), v[:, :-1].ravel(), xr.ravel()
    npa = np.repeat(np.arange(n), t)
    month = np.tile(np.arange(t), n)
    design = np.column_stack([xs, lag, np.eye(n)[npa], np.eye(t)[month][:, 1:]])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    u = y - design @ coef
    bread = np.linalg.pinv(design.T @ design)
    meat = sum(np.outer(design[npa == i].T @ u[npa == i], design[npa == i].T @ u[npa == i]) for i in range(n))
    v_beta = (bread @ meat @ bread)[0, 0]
    return coef[0], coef[0] / np.sqrt(v_beta)


def test_fast_permutation_test_equals_the_regression_written_out():
    rng = np.random.default_rng(3)
    calls, violent = world(rng, n=7, months=9, lead=0.5)
    result = indicator_test({"disorder": calls["disorder"]}, violent, permutations=59, seed=8, min_calls=0).iloc[0]
    beta, t = _dummy_regression_t(calls["disorder"], violent)
    assert result["beta"] == pytest.approx(beta, rel=1e-9) and result["t"] == pytest.approx(t, rel=1e-9)
    # The p-value: the same permutations of whole NPA series, each run as a full regression.
    perms = np.random.default_rng(8)
    ts = [_dummy_regression_t(calls["disorder"][perms.permutation(7)], violent)[1] for _ in range(59)]
    assert result["p_value"] == pytest.approx((1 + sum(abs(s) >= abs(t) - 1e-9 for s in ts)) / 60)
    assert (result["npas"], result["months"]) == (7, 8)


# --- planted nulls and a planted lead ------------------------------------------------------------
def test_a_shared_summer_peak_with_no_lead_is_not_a_leading_indicator():
    rng = np.random.default_rng(21)
    naive, significant, raw, tested = [], 0, 0, 0
    for rep in range(20):
        calls, violent = world(rng)
        result = indicator_test(calls, violent, permutations=199, seed=rep)
        significant += int(result["significant"].sum())
        raw += int((result["p_value"] < 0.05).sum())
        tested += len(result)
        # The former method: rank correlation of deviations from each NPA's own mean, month t with t+1.
        x, y = calls["disorder"][:, :-1], violent[:, 1:]
        naive.append(spearmanr((x - x.mean(axis=1, keepdims=True)).ravel(),
                               (y - y.mean(axis=1, keepdims=True)).ravel())[0])
    assert tested == 80
    assert np.mean(naive) > 0.25          # what fooled the former method: the season, not a lead
    assert significant <= 2               # FDR across the 4 categories: at most 5% of runs flag anything
    assert raw / tested <= 0.1            # each permutation p-value is calibrated (expected 0.05)


def test_a_planted_lead_is_found_and_the_others_are_not():
    rng = np.random.default_rng(22)
    found, false = 0, 0
    for rep in range(10):
        calls, violent = world(rng, lead=0.3)
        result = indicator_test(calls, violent, permutations=199, seed=rep).set_index("category")
        found += bool(result.loc["disorder", "significant"])
        false += int(result.drop("disorder")["significant"].sum())
        assert result.loc["disorder", "beta"] > 0
    assert found == 10 and false <= 1


def test_complete_months_leave_out_a_half_finished_last_month():
    months, left_out = complete_months(Filter.local_days(date(2021, 1, 1), date(2021, 12, 1)),
                                       calls=(date(2021, 1, 1), date(2021, 11, 10)),
                                       incidents=(date(2020, 12, 1), date(2021, 11, 30)))
    assert months == [date(2021, m, 1) for m in range(1, 11)]
    assert left_out == ["2021-11: calls cover 2021-01-01..2021-11-10"]
    months, left_out = complete_months(Filter.local_days(date(2021, 1, 15), date(2021, 6, 1)),
                                       calls=(date(2021, 1, 1), date(2021, 12, 31)), incidents=(None, None))
    assert months == [] and left_out[0] == "2021-01: the period holds part of it; no incidents"
    months, left_out = complete_months(Filter.local_days(date(2021, 1, 15), date(2021, 6, 1)),
                                       calls=(date(2021, 1, 1), date(2021, 12, 31)))
    assert months[0] == date(2021, 2, 1) and left_out == ["2021-01: the period holds part of it"]


# --- the database --------------------------------------------------------------------------------
def _insert(engine, calls: list[tuple], incidents: list[tuple]) -> None:
    """calls: (local time, npa, category); incidents: (local reported, local began or None, npa, code, status)."""
    with engine.begin() as conn:
        if calls:
            conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, call_type, geom, npa_id, category, row_hash, batch_id)"
                " SELECT 'L' || i, t AT TIME ZONE :tz, 'X', ST_SetSRID(ST_Point(-80.84, 35.22), 4326), n, c, 0, 0"
                " FROM unnest(CAST(:t AS timestamp[]), CAST(:n AS int[]), CAST(:c AS text[])) WITH ORDINALITY"
                " AS u(t, n, c, i)"),
                {"tz": TZ, "t": [c[0] for c in calls], "n": [c[1] for c in calls], "c": [c[2] for c in calls]})
        if incidents:
            conn.execute(sa.text(
                "INSERT INTO incidents (incident_report_id, date_reported, date_incident_began, highest_nibrs_code,"
                " clearance_status, is_crime, npa_id, geom, row_hash, batch_id)"
                " SELECT 'V' || i, r AT TIME ZONE :tz, b AT TIME ZONE :tz, code, s, s IS DISTINCT FROM 'Unfounded', n,"
                " ST_SetSRID(ST_Point(-80.84, 35.22), 4326), 0, 0"
                " FROM unnest(CAST(:r AS timestamp[]), CAST(:b AS timestamp[]), CAST(:n AS int[]),"
                " CAST(:code AS text[]), CAST(:s AS text[])) WITH ORDINALITY AS u(r, b, n, code, s, i)"),
                {"tz": TZ, "r": [x[0] for x in incidents], "b": [x[1] for x in incidents], "n": [x[2] for x in incidents],
                 "code": [x[3] for x in incidents], "s": [x[4] for x in incidents]})


def _month_day(month: int, day: int) -> datetime:
    return datetime(2021 + (month - 1) // 12, (month - 1) % 12 + 1, day, 12)


def test_the_database_panel_drops_the_half_finished_month_and_dates_violence_by_occurrence(engine):
    """Ten NPAs, 14 months and ten days of a 15th; a shared summer peak and no lead; plus a few
    incidents that show how they are dated and which count."""
    rng = np.random.default_rng(5)
    npas = [2, 3, 9, 10, 11, 12, 13, 14, 15, 16]
    peak = lambda m: 1 + 0.5 * np.cos(2 * np.pi * ((m - 1) % 12 - 6) / 12)  # noqa: E731
    calls, incidents = [], []
    for npa in npas:
        for month in range(1, 16):
            days = 10 if month == 15 else 28   # the last month: data through the 10th only
            for category, base in (("disorder", 8), ("traffic", 10)):
                for _ in range(rng.poisson(base * peak(month) * days / 28)):
                    calls.append((_month_day(month, int(rng.integers(1, days + 1))), npa, category))
            for _ in range(rng.poisson(3 * peak(month) * days / 28)):
                incidents.append((_month_day(month, int(rng.integers(1, days + 1))), None, npa, "13A", "Open"))
    # The data begin on 1 January (the first rows of each source say what the data cover).
    calls.append((datetime(2021, 1, 1, 0, 5), 2, "traffic"))
    incidents.insert(0, (datetime(2021, 1, 1, 0, 5), None, 2, "13B", "Open"))
    # Reported in March, began in February: a February incident. Unfounded, or not violent: not counted.
    incidents += [(_month_day(3, 2), _month_day(2, 20), 2, "13A", "Open"),
                  (_month_day(3, 2), _month_day(2, 21), 2, "120", "Unfounded"),
                  (_month_day(3, 2), _month_day(2, 22), 2, "13B", "Open"),
                  (_month_day(3, 2), _month_day(3, 9), 2, "09A", "Open")]   # began after the report: by report
    _insert(engine, calls, incidents)
    period = Filter.local_days(date(2021, 1, 1), date(2022, 4, 1))
    panel = indicator_panel(engine, period)
    assert panel.months == [date(2021 + (m - 1) // 12, (m - 1) % 12 + 1, 1) for m in range(1, 15)]
    assert panel.left_out_months == ["2022-03: calls cover 2021-01-01..2022-03-10; incidents cover 2021-01-01..2022-03-10"]
    generated = [i for i in incidents[:-4] if i[3] == "13A"]
    in_months = sum(1 for i in generated if i[0] < datetime(2022, 3, 1))
    assert list(panel.npas) == npas and panel.violent_dated == {"occurrence": 1, "report": in_months + 1}
    def reported_in(npa: int, month: int) -> int:
        return sum(1 for i in generated if i[2] == npa and (i[0].year, i[0].month) == (2021, month))

    assert panel.violent[0, 1] == reported_in(2, 2) + 1   # NPA 2, February: plus the one that began then
    assert panel.violent[0, 2] == reported_in(2, 3) + 1   # March: plus the one dated by its report
    assert panel.calls["disorder"].sum() == sum(1 for c in calls if c[2] == "disorder" and c[0] < datetime(2022, 3, 1))
    result = leading_indicators(engine, period, min_calls=10, permutations=499).set_index("category")
    assert set(result.index) == {"disorder", "traffic"} and not result["significant"].any()
    assert result.attrs["months"][-1] == "2022-02" and result.attrs["left_out_months"] == panel.left_out_months


def test_the_database_finds_a_planted_lead(engine):
    """Disorder calls in one month are followed by as many violent incidents the next; traffic calls are not."""
    rng = np.random.default_rng(4)
    calls, incidents = [], []
    for npa in (2, 3, 9, 10, 11, 12, 13, 14):
        for month in range(1, 13):
            disorder, traffic = int(rng.integers(2, 12)), int(rng.integers(2, 12))
            calls += [(_month_day(month, 5), npa, "disorder")] * disorder + [(_month_day(month, 6), npa, "traffic")] * traffic
            incidents += [(_month_day(month + 1, 10), None, npa, "13A", "Open")] * (disorder + 2)
    _insert(engine, calls, incidents)
    result = leading_indicators(engine, Filter.local_days(date(2021, 1, 1), date(2022, 1, 1)), min_calls=10,
                                permutations=999).set_index("category")
    assert result.loc["disorder", "significant"] and result.loc["disorder", "p_value"] <= 0.002
    assert result.loc["disorder", "partial_r"] > 0.8 and not result.loc["traffic", "significant"]
    # Calls run 5 January - 6 December, incidents 10 February - 10 January: March to November are
    # complete in both, so 8 pairs of months.
    assert (result.loc["disorder", "npas"], result.loc["disorder", "months"]) == (8, 8)
    # The command prints the same numbers and says which months it used and left out.
    from click.testing import CliRunner

    from geo.cli import main

    out = CliRunner().invoke(main, ["stats", "indicators", "--from", "2021-01-01", "--to", "2021-12-31"],
                             env={"DATABASE_URL": engine.url.render_as_string(hide_password=False)})
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "complete months: 2021-03 to 2021-11 (9)" in lines
    assert "left out 2021-12: calls cover 2021-01-05..2021-12-06" in lines
    row = next(line.split() for line in lines if line.startswith("disorder"))
    assert float(row[1]) == pytest.approx(result.loc["disorder", "beta"], abs=5e-4) and row[-1] == "associated"


def test_violence_on_the_real_incidents_is_counted_by_occurrence_month(engine, data_dir):
    """The real API sample: violent crimes (not Unfounded) per month of DATE_INCIDENT_BEGAN, as the file says."""
    from geo.ingest.incidents import load_incidents
    from geo.taxonomy import load_taxonomy

    path = data_dir / "real" / "incidents_api_sample.csv"
    load_incidents(engine, path)
    # Calls define which months the data cover; two mark the span of the sample.
    _insert(engine, [(datetime(2017, 1, 1, 9), 2, "traffic"), (datetime(2025, 10, 31, 9), 2, "traffic")], [])
    with engine.connect() as conn:
        placed = {r[0] for r in conn.execute(sa.text("SELECT incident_report_id FROM incidents WHERE npa_id IS NOT NULL"))}
    day = lambda v: datetime.fromtimestamp(int(v) / 1000, timezone.utc).date()  # noqa: E731  (epoch ms: a date)
    violent, by_occurrence, moved = {}, 0, 0
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            if (r["INCIDENT_REPORT_ID"] not in placed or r["HIGHEST_NIBRS_CODE"] not in load_taxonomy().violent_codes
                    or r["CLEARANCE_STATUS"] == "Unfounded"):
                continue
            reported = day(r["DATE_REPORTED"])
            began = day(r["DATE_INCIDENT_BEGAN"]) if r["DATE_INCIDENT_BEGAN"] else None
            when = began if began is not None and began <= reported else reported
            if not date(2017, 1, 1) <= when < date(2025, 11, 1):
                continue
            by_occurrence += when is began
            moved += (when.year, when.month) != (reported.year, reported.month)
            violent[date(when.year, when.month, 1)] = violent.get(date(when.year, when.month, 1), 0) + 1
    panel = indicator_panel(engine, Filter.local_days(date(2017, 1, 1), date(2025, 11, 1)))
    assert panel.months[0] == date(2017, 1, 1) and panel.months[-1] == date(2025, 10, 1) and len(panel.months) == 106
    got = dict(zip(panel.months, panel.violent.sum(axis=0).astype(int)))
    assert got == {m: violent.get(m, 0) for m in panel.months}
    # Some real violent crimes (9 of the 256 here) were reported in a later month than they began.
    assert sum(got.values()) > 200 and moved > 0 and panel.violent_dated["occurrence"] == by_occurrence
