"""Officer allocation: sums to N, respects minimums, follows workload; config is checked."""

from __future__ import annotations

import json
import math
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from geo.allocate import ALLOCATION_TOML, AllocationConfig, allocate, largest_remainder
from geo.filters import Filter
from geo.queueing import erlang_c, priority1_wait
from geo.staffing import (ASSUMED, HOURS_OF_WEEK, Relief, StaffingConfig, Targets, build_plan, hourly_load,
                          officers_for, parse_targets, plan, shift_of_hour, units_needed, weekday_counts)
from tests.test_metrics import add_calls


def test_largest_remainder_sums_exactly():
    rng = np.random.default_rng(0)
    for _ in range(200):
        weights = rng.uniform(0, 10, rng.integers(1, 40))
        seats = int(rng.integers(0, 500))
        out = largest_remainder(weights, seats)
        assert out.sum() == seats and (out >= 0).all()
        assert np.all(np.abs(out - weights / weights.sum() * seats) < 1 + 1e-9)
    assert list(largest_remainder(np.array([1.0, 1.0, 2.0]), 4)) == [1, 1, 2]
    # The Alabama paradox of the proportional split (issue 15): one more seat takes one away.
    assert list(largest_remainder(np.array([6.0, 6.0, 2.0]), 10)) == [4, 4, 2]
    assert list(largest_remainder(np.array([6.0, 6.0, 2.0]), 11)) == [5, 5, 1]


def test_allocation_follows_workload_and_keeps_minimums(engine):
    rows = []
    # Division 01: 30 violent calls at night (2 officers x 120 min each); 02: 30 alarm calls by day.
    rows += [(datetime(2021, 5, 1 + i % 20, 23), "01", "violent_crime", True, 0.9) for i in range(30)]
    rows += [(datetime(2021, 5, 1 + i % 20, 10), "02", "alarms", False, 0.0) for i in range(30)]
    add_calls(engine, rows)
    config = AllocationConfig.load()
    table, reasons = allocate(engine, 120, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), config, source="labelled")
    assert table.attrs["source"].startswith("labelled: calls the model labelled violent")
    assert table["officers"].sum() == 120
    assert (table["officers"] >= config.minimum).all()
    assert len(table) == 14 * len(config.shifts)
    by = table.set_index(["division_id", "shift"])["officers"]
    # Workload: 01 night = 30 x 2 x 120 = 7,200 min; 02 day = 30 x 15 = 450 min; everything else 0.
    spare = 120 - config.minimum * len(table)
    assert by[("01", "night")] == config.minimum + round(spare * 7200 / 7650)
    assert by[("02", "day")] == config.minimum + spare - round(spare * 7200 / 7650)
    assert "two-officer cars" in reasons["01"] and "false-alarm" in reasons["02"]
    with pytest.raises(ValueError, match="below the minimum"):
        allocate(engine, 10, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), config)
    # Expected violent calls (the default): 27 of the 30 (p 0.9) take two officers, 3 one.
    from geo.allocate import workload

    work = workload(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), config).set_index(["division_id", "shift"])
    assert work.loc[("01", "night"), "violent"] == pytest.approx(27.0)
    assert work.loc[("01", "night"), "officer_minutes"] == pytest.approx((3 * 1 + 27 * 2) * 120)
    assert work.attrs["source"].startswith("expected: expected violent calls")
    with pytest.raises(ValueError, match="source must be one of labelled, expected, not 'incidents'"):
        workload(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), config, "incidents")


def test_workload_counts_calls_about_one_incident_once(engine):
    import sqlalchemy as sa

    from geo.allocate import workload

    add_calls(engine, [(datetime(2021, 5, 3, 23), "01", "violent_crime", True, 0.9) for _ in range(5)])
    with engine.begin() as conn:   # the five calls are about one incident
        conn.execute(sa.text("UPDATE calls SET incident_report_id = 'R1'"))
    config = AllocationConfig.load()
    for source in ("labelled", "expected"):
        work = workload(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), config, source).set_index(["division_id", "shift"])
        row = work.loc[("01", "night")]
        assert row["calls"] == 5 and row["violent"] == pytest.approx(1.0 if source == "labelled" else 0.9)


def test_config_must_cover_the_day(tmp_path):
    text = (AllocationConfig.load.__globals__["ALLOCATION_TOML"]).read_text().replace("night = [22, 6]", "night = [22, 5]")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ValueError, match="exactly once"):
        AllocationConfig.load(bad)


def test_shifts_option_parses_and_checks_cover():
    from geo.allocate import parse_shifts

    assert parse_shifts("early=5-13,late=13-21,overnight=21-5") == {"early": (5, 13), "late": (13, 21), "overnight": (21, 5)}
    for bad in ("day=6-14,night=14-5", "day=six-14", "=0-24"):
        with pytest.raises(ValueError):
            parse_shifts(bad)


def test_allocate_command_with_two_shifts(engine):
    from click.testing import CliRunner

    from geo.cli import main

    add_calls(engine, [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.0)] * 10)
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(main, ["allocate", "--method", "proportional", "--officers", "80", "--from", "2021-05-01",
                                       "--to", "2021-05-31", "--shifts", "days=7-19,nights=19-7"], env=env)
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[1:] == ["days", "nights", "total"]
    total = next(line for line in rows if line.startswith("total"))
    assert total.split()[-1] == "80"
    assert rows[-1].startswith("source of the violent (two-officer) calls: expected: expected violent calls")
    bad = CliRunner().invoke(main, ["allocate", "--method", "proportional", "--officers", "80", "--shifts", "days=7-19"],
                             env=env)
    assert bad.exit_code == 2 and "--shifts" in bad.output


# --- the staffing plan (geo/staffing.py) ----------------------------------------------------------

def _counts(rng, divisions=("01", "02", "03"), scale=1.0):
    """A generated call table per division, hour of week and category (4 weeks of calls)."""
    rows = []
    for d, weight in zip(divisions, (1.0, 0.3, 2.5)):
        for how in range(HOURS_OF_WEEK):
            hour = how % 24
            for category in ("violent_crime", "traffic", "mental_health_welfare", "alarms"):
                calls = int(rng.poisson(4 * scale * weight * (1.2 + np.cos((hour - 18) / 24 * 2 * np.pi))))
                if calls:
                    rows.append((d, category, how, calls, calls // 4 if category == "violent_crime" else 0,
                                 calls // 5, calls))
    return pd.DataFrame(rows, columns=["division_id", "category", "hour_of_week", "calls", "violent", "p1",
                                       "priority_known"])


FOUR_WEEKS = Filter.local_days(date(2021, 1, 4), date(2021, 2, 1))


def test_relief_factor_hand_computed():
    config = StaffingConfig.load()
    # 5 on, 2 off: 365 x 5/7 = 260.71 scheduled days; minus 20 leave, 5 training, 4 court, 6 sick = 225.71.
    assert config.relief.worked == pytest.approx(260.7142857 - 35)
    assert config.relief.factor == pytest.approx(365 / 225.7142857)   # 1.617 officers per post
    four_ten = Relief(days_on=4, days_off=3, leave=15, training=10, court=0, sick=5)
    assert four_ten.factor == pytest.approx(365 / (365 * 4 / 7 - 30))
    assert list(officers_for([0, 1, 10], config)) == [0, 2, 17]   # ceil(1.617), ceil(16.17)


def test_plan_meets_its_targets_with_the_fewest_units():
    config = StaffingConfig.load()
    load = hourly_load(_counts(np.random.default_rng(3)), ["01", "02", "03"], weekday_counts(FOUR_WEEKS), config)
    assert weekday_counts(FOUR_WEEKS).tolist() == [4] * 7
    table = plan(load, config)
    assert len(table) == 3 * len(config.shifts) and (table["warnings"] == "").all()
    assert set(table["service_times"]) == {ASSUMED} and set(table["p1_share_source"]) == {"measured"}
    t = config.targets
    shift = shift_of_hour(config)
    for r in table.itertuples():
        hours = load.loc[r.division][shift == r.shift]
        a, a1, s = hours["offered"].to_numpy(), hours["offered_p1"].to_numpy(), hours["service_min"].to_numpy()
        assert (erlang_c(r.units, a) <= t.p_wait).all() and (a / r.units <= t.utilisation).all()
        assert (priority1_wait(r.units, a, a1, s) <= t.p1_wait_min).all()
        # One unit fewer fails a target in at least one hour: the plan is the smallest.
        fewer = r.units - 1
        assert ((erlang_c(fewer, a) > t.p_wait) | (a / fewer > t.utilisation)
                | (priority1_wait(fewer, a, a1, s) > t.p1_wait_min)).any()
        assert r.officers == math.ceil(r.units * config.relief.factor - 1e-9)
        assert r.p_wait <= t.p_wait and r.utilisation <= t.utilisation
    # Division 03 carries 2.5x division 01's calls, 02 0.3x: units follow.
    units = table.groupby("division")["units"].sum()
    assert units["03"] > units["01"] > units["02"]
    # calls_per_hour is calls / occurrences of the weekday-hour (4 Mondays, ...), averaged over the shift's hours.
    counts = _counts(np.random.default_rng(3))
    mine = counts[(counts["division_id"] == "01") & counts["hour_of_week"].map(lambda h: shift[h] == "day")]
    row = table[(table["division"] == "01") & (table["shift"] == "day")].iloc[0]
    assert row["calls_per_hour"] == pytest.approx(mine["calls"].sum() / 4 / (7 * 8))


def test_measured_service_times_replace_the_configured_ones():
    config = StaffingConfig.load()
    counts = pd.DataFrame([("01", "traffic", 10, 8, 0, 0, 0)], columns=["division_id", "category", "hour_of_week",
                                                                          "calls", "violent", "p1", "priority_known"])
    assumed = hourly_load(counts, ["01"], weekday_counts(FOUR_WEEKS), config)
    measured = hourly_load(counts, ["01"], weekday_counts(FOUR_WEEKS), config,
                           service=pd.DataFrame({"division_id": ["01"], "hour_of_week": [10], "category": ["traffic"],
                                                 "service_min": [24.0]}))
    # 8 calls over 4 Mondays = 2 per hour; 50 configured minutes -> 1.667 Erlang; 24 measured -> 0.8.
    assert assumed.loc[("01", 10), "offered"] == pytest.approx(2 * 50 / 60)
    assert measured.loc[("01", 10), "offered"] == pytest.approx(2 * 24 / 60)
    assert (assumed.loc[("01", 10), "service_source"], measured.loc[("01", 10), "service_source"]) == (ASSUMED, "measured")
    with pytest.raises(ValueError, match="measured service_min must be above 0; 1 rows are not"):
        hourly_load(counts, ["01"], weekday_counts(FOUR_WEEKS), config,
                    service=pd.DataFrame({"division_id": ["01"], "hour_of_week": [10], "category": ["traffic"],
                                          "service_min": [0.0]}))
    # No priorities recorded: the configured P1 share, said so.
    assert measured.loc[("01", 10), "p1_share"] == config.p1_share and measured.loc[("01", 10), "p1_source"] == ASSUMED


def test_needs_cover_the_90th_percentile_of_concurrent_calls():
    config = StaffingConfig.load()
    # 8 mental-health calls on the 4 Mondays at 10:00 = 2 per hour x 75 min = 2.5 in progress on average.
    # Poisson(2.5): P(<=4) = 0.891, P(<=5) = 0.958 -> 5 CIT-trained officers (and naloxone kits).
    counts = pd.DataFrame([("01", "mental_health_welfare", 10, 8, 0, 0, 0)],
                          columns=["division_id", "category", "hour_of_week", "calls", "violent", "p1", "priority_known"])
    table = plan(hourly_load(counts, ["01"], weekday_counts(FOUR_WEEKS), config), config).set_index("shift")
    assert (table.loc["day", "cit"], table.loc["day", "naloxone"], table.loc["day", "dv"]) == (5, 5, 0)
    assert table.loc["night", "cit"] == 0
    assert ("5 crisis-intervention-trained officers (skill): mental health welfare calls in progress average 2.50 at "
            "the busiest hour (Mon 10:00); 5 cover 90% of the time") in table.loc["day", "needs_reasoning"]


def test_marginal_allocation_never_takes_an_officer_away():
    config = StaffingConfig.load()
    load = hourly_load(_counts(np.random.default_rng(5), scale=0.5), ["01", "02", "03"], weekday_counts(FOUR_WEEKS),
                       config)
    needed = plan(load, config)["officers"].sum()
    before, worst = None, math.inf
    for n in range(18, needed + 40, 7):
        table = plan(load, config, officers=n)
        assert table["officers"].sum() <= n
        officers = table.set_index(["division", "shift"])["officers"]
        if before is not None:
            assert (officers >= before).all(), n       # no Alabama paradox
        now = table["mean_wait_min"].max()
        assert now <= worst + 1e-12, n                  # the worst expected delay never grows with N
        before, worst = officers, now
    # Short of the need, targets are missed and said so; with plenty, none are.
    short = plan(load, config, officers=needed // 2)
    assert short["warnings"].str.len().gt(0).any()
    assert "rule of 60" in " ".join(short["warnings"]) or "without limit" in " ".join(short["warnings"])
    assert (plan(load, config, officers=needed + 60)["warnings"] == "").all()
    # Far more officers than any wait needs: placing stops once every mean wait is under a second.
    plenty = plan(load, config, officers=100_000)
    assert plenty["mean_wait_min"].max() < 1 / 60 and plenty["officers"].sum() < 100_000
    assert (plenty["officers"] >= plan(load, config, officers=needed + 60)["officers"]).all()
    with pytest.raises(ValueError, match="below the 18 officers"):
        plan(load, config, officers=17)    # 1 unit x 9 division-shifts x ceil(1.617)


def test_a_given_plan_is_evaluated_with_the_same_formulas():
    config = StaffingConfig.load()
    load = hourly_load(_counts(np.random.default_rng(7)), ["01", "02", "03"], weekday_counts(FOUR_WEEKS), config)
    needed = plan(load, config)
    keys = list(zip(needed["division"], needed["shift"]))
    same = plan(load, config, units=dict(zip(keys, needed["units"])))
    assert same[["units", "p_wait", "mean_wait_min", "officers"]].equals(needed[["units", "p_wait", "mean_wait_min", "officers"]])
    # One unit per division-shift: the busy shifts have hours with more work than one unit clears.
    one = plan(load, config, units={k: 1 for k in keys})
    busy = one[one["division"] == "03"]
    assert busy["warnings"].str.contains("calls queue without limit").all()
    assert np.isinf(busy["mean_wait_min"]).all() and (busy["officers"] == 2).all()
    with pytest.raises(ValueError, match="every division and shift"):
        plan(load, config, units={keys[0]: 1})


@pytest.mark.parametrize(("edit", "message"), [
    (("traffic = 50", "traffic = -5"), "service_minutes must be above 0; traffic = -5.0"),
    (("alarms = 15", "alarms = 0"), "service_minutes must be above 0; alarms = 0.0"),
    (("p_wait = 0.2 ", "p_wait = 0.0 "), "target p_wait = 0.0: must be above 0"),
    (("p1_wait_min = 3.0", "p1_wait_min = 0"), "target p1_wait_min = 0"),
    (("utilisation = 0.6 ", "utilisation = 1.5 "), "target utilisation = 1.5"),
    (("night = [22, 6]", "night = [21, 6]"), "cover each hour of the day exactly once"),
    (("night = [22, 6]", "night = [22, 5]"), "cover each hour of the day exactly once"),
    (("court = 4", "court = -1"), "relief court = -1 days: must not be negative"),
    (("leave = 20", "leave = 300"), "260.7 scheduled days minus leave, training, court and sick leaves -54.3 days worked"),
])
def test_bad_plan_configuration_is_refused_with_the_reason(tmp_path, edit, message):
    text = ALLOCATION_TOML.read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ValueError) as err:
        StaffingConfig.load(bad)
    assert message in str(err.value) and str(bad) in str(err.value)


def test_targets_option_and_unreachable_targets():
    base = StaffingConfig.load().targets
    assert parse_targets("p_wait=0.1,p1_wait_min=2", base) == Targets(0.1, 2.0, base.utilisation)
    for text, message in (("p_wait=0", "p_wait = 0.0: must be above 0"), ("speed=3", "'speed' is not one of"),
                          ("p_wait=low", "not NAME=NUMBER")):
        with pytest.raises(ValueError, match=message):
            parse_targets(text, base)
    with pytest.raises(ValueError, match="no number of units up to 2000"):
        # 1,900 Erlang at 60% utilisation needs 3,167 units: past the cap, a configuration error.
        units_needed(np.array([1900.0]), np.array([190.0]), np.array([30.0]), Targets(0.2, 3.0, 0.6))


def test_plan_from_the_database_and_the_command(engine, tmp_path):
    from click.testing import CliRunner

    from geo.cli import main

    # 12 traffic calls on the 4 Mondays of May 2021 at 10:00 (3 per hour), 3 of them Priority 1.
    mondays = [datetime(2021, 5, d, 10, 15) for d in (3, 10, 17, 24)]
    add_calls(engine, [(t, "01", "traffic", False, 0.0) for t in mondays for _ in range(3)])
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET priority = CASE WHEN call_id IN ('T0', 'T3', 'T6') THEN 1 ELSE 3 END"))
    period = Filter.local_days(date(2021, 5, 3), date(2021, 5, 31))
    table = build_plan(engine, period)
    assert len(table) == 14 * 3
    row = table[(table["division"] == "01") & (table["shift"] == "day")].iloc[0]
    assert row["calls_per_hour"] == pytest.approx(3 / 8 / 7)      # 3 per Monday 10:00, 0 in the other 55 hours
    assert row["mean_service_min"] == pytest.approx(50.0) and row["service_times"] == ASSUMED
    # 3 per hour x 50 min = 2.5 Erlang at Monday 10:00: the rule of 60 alone needs ceil(2.5 / 0.6) = 5 units.
    c = row["units"]
    assert c == units_needed(np.array([2.5]), np.array([2.5 * 0.25]), np.array([50.0]), StaffingConfig.load().targets)[0]
    assert c >= 5 and row["p1_share_source"] == "measured"
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    out = tmp_path / "plan.csv"
    result = CliRunner().invoke(main, ["allocate", "--from", "2021-05-03", "--to", "2021-05-30", "--out", str(out)],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "assumed (configured) service times" in result.output
    written = pd.read_csv(out, dtype={"division": str})
    for column in ("division", "shift", "calls_per_hour", "mean_service_min", "units", "p_wait", "mean_wait_min",
                   "utilisation", "officers", "p1_mean_wait_min", "warnings", "cit", "needs_reasoning"):
        assert column in written.columns
    assert written.loc[(written["division"] == "01") & (written["shift"] == "day"), "units"].item() == c
    js = tmp_path / "plan.json"
    result = CliRunner().invoke(main, ["allocate", "--officers", "100", "--from", "2021-05-03", "--to", "2021-05-30",
                                       "--targets", "p1_wait_min=1", "--out", str(js)], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(js.read_text())
    assert len(rows) == 42 and sum(r["officers"] for r in rows) <= 100
    assert "of 100 given" in result.output
    bad = CliRunner().invoke(main, ["allocate", "--targets", "p_wait=0"], env=env)
    assert bad.exit_code == 2 and "p_wait = 0.0: must be above 0" in bad.output
    bad = CliRunner().invoke(main, ["allocate", "--officers", "10"], env=env)
    assert bad.exit_code == 2 and "below the 84 officers" in bad.output
