"""The discrete-event simulation (geo/simulate.py) against the M/M/c formulas and planted shortages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geo.queueing import erlang_c, mean_wait
from geo.simulate import (HOURS_OF_WEEK, SimCalls, SimulationConfig, assumed_calls, compare_plans, simulate,
                          staffing_array)
from geo.staffing import StaffingConfig, hourly_load


def poisson_calls(rng, rate_per_h: float, hours: float, mean_service_min: float, divisions: int = 1,
                  travel_min: float = 0.0) -> SimCalls:
    """Poisson arrivals per division, exponential service, one unit per call, Priority 3 (1 in 10 P1)."""
    parts = []
    for d in range(divisions):
        gaps = rng.exponential(60 / rate_per_h, int(rate_per_h * hours * 1.2) + 50)
        t = np.cumsum(gaps)
        t = t[t < hours * 60]
        parts.append((t, np.full(len(t), d)))
    t = np.concatenate([p[0] for p in parts])
    d = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    n = len(t)
    return SimCalls(t[order], d[order], np.where(rng.random(n) < 0.1, 1, 3),
                    rng.exponential(mean_service_min, n) + 1e-9, np.full(n, travel_min), np.ones(n, dtype=int))


def batch_tolerance(values: np.ndarray, batches: int = 20, z: float = 4.0) -> tuple[float, float]:
    """Mean and a z-standard-error tolerance from batch means (successive calls are correlated)."""
    means = np.array([b.mean() for b in np.array_split(values, batches)])
    return float(values.mean()), float(z * means.std(ddof=1) / np.sqrt(batches))


def test_poisson_exponential_matches_mmc_formulas():
    rng = np.random.default_rng(7)
    rate, service, c = 10.0, 30.0, 7          # 5 Erlang on 7 units: utilisation 0.714
    calls = poisson_calls(rng, rate, 24 * 7 * 300, service)         # 300 weeks, about 500,000 calls
    result = simulate(calls, np.full((1, HOURS_OF_WEEK), c))
    a = rate * service / 60
    p_theory = float(erlang_c(c, a))
    w_theory = float(mean_wait(c, a, service))
    skip = len(calls) // 50                               # the first two percent: the warm-up from empty
    p_sim, p_tol = batch_tolerance(result.queued[skip:].astype(float))
    w_sim, w_tol = batch_tolerance(result.wait_min[skip:])
    assert p_tol < 0.05 and w_tol < 1.0                   # the run is long enough to test anything
    assert abs(p_sim - p_theory) < p_tol, (p_sim, p_theory, p_tol)
    assert abs(w_sim - w_theory) < w_tol, (w_sim, w_theory, w_tol)
    util = result.busy_unit_min.sum() / result.duty_unit_min.sum()
    assert util == pytest.approx(a / c, abs=0.02)
    # Without travel, response is the wait; P1 calls jump the queue, so wait less than the rest.
    assert np.allclose(result.response_min, result.wait_min)
    p1 = calls.priority == 1
    assert result.wait_min[p1].mean() < 0.5 * result.wait_min[~p1].mean()
    overall = result.overall()
    assert overall["calls"] == len(calls) and overall["share_waiting"] == pytest.approx(result.queued.mean())


def _planted(neighbours=None):
    rng = np.random.default_rng(11)
    calls = poisson_calls(rng, 4.0, 24 * 7 * 20, 30.0, divisions=3, travel_min=5.0)   # 2 Erlang per division
    staffing = np.full((3, HOURS_OF_WEEK), 10)
    wednesday = np.arange(48, 72)
    staffing[1, wednesday] = 1            # one unit for 2 Erlang: calls queue all Wednesday
    return calls, simulate(calls, staffing, neighbours=neighbours, divisions=["A", "B", "C"]), wednesday


def test_a_planted_shortage_queues_calls_there_and_not_elsewhere():
    calls, result, wednesday = _planted()
    in_b = calls.division == 1
    on_wed = np.isin(result.hour_of_week, wednesday)
    assert result.queued[in_b & on_wed].mean() > 0.5
    assert result.queued[~in_b].mean() < 0.002
    # Thursday from 06:00 on, B's backlog has long been cleared.
    later = in_b & (result.hour_of_week >= 78)
    assert result.queued[later].mean() < 0.002
    assert result.no_unit[in_b & on_wed].sum() > 100 and not result.helped.any()
    assert (result.response_min >= calls.travel_min).all()
    table = result.by_group(np.where(np.isin(np.arange(HOURS_OF_WEEK), wednesday), "wed", "other"))
    b_wed = table[(table["division"] == "B") & (table["shift"] == "wed")].iloc[0]
    a_wed = table[(table["division"] == "A") & (table["shift"] == "wed")].iloc[0]
    assert b_wed["share_waiting"] > 0.5 and a_wed["share_waiting"] < 0.01
    assert b_wed["utilisation"] > 0.95 and a_wed["utilisation"] == pytest.approx(0.2, abs=0.03)
    assert b_wed["no_unit"] == result.no_unit[in_b & on_wed].sum()


def test_neighbours_help_when_no_unit_is_free():
    calls, alone, wednesday = _planted()
    _, helped, _ = _planted(neighbours={1: [0, 2]})
    in_b = calls.division == 1
    on_wed = np.isin(helped.hour_of_week, wednesday)
    # A and C have 8 free units on average: B's calls that find its one unit busy are answered by them.
    assert helped.helped[in_b & on_wed].mean() > 0.4 and not helped.helped[~in_b].any()
    assert helped.queued[in_b & on_wed].mean() < 0.01 < alone.queued[in_b & on_wed].mean()
    # Helpers drive 5 minutes further.
    h = helped.helped
    assert np.allclose(helped.response_min[h], calls.travel_min[h] + 5.0 + helped.wait_min[h])
    util = helped.busy_unit_min.sum(axis=1) / helped.duty_unit_min.sum(axis=1)
    util_alone = alone.busy_unit_min.sum(axis=1) / alone.duty_unit_min.sum(axis=1)
    assert util[0] > util_alone[0] and util[1] < util_alone[1]


def test_multi_unit_calls_and_bad_input():
    # Two calls asking for two units each, one division of two units: the first takes both, the second
    # waits for them to clear; a third asking for two while one is free takes that one at once.
    calls = SimCalls([0.0, 1.0, 45.0, 46.0], [0, 0, 0, 0], [3, 1, 3, 3], [30.0, 10.0, 30.0, 30.0], [2.0] * 4,
                     [2, 2, 1, 2])
    result = simulate(calls, np.full((1, HOURS_OF_WEEK), 2))
    assert result.wait_min.tolist() == [0.0, 29.0, 0.0, 0.0] and result.queued.tolist() == [False, True, False, False]
    assert result.response_min.tolist() == [2.0, 31.0, 2.0, 2.0]
    # Busy unit-minutes: 2 x 30 + 2 x 10 + 30 + 1 x 30 (the last call got one unit) = 140.
    assert result.busy_unit_min.sum() == pytest.approx(140.0)
    # Units come on duty at 01:00 (hour of week 1): a call at 00:30 waits 30 minutes.
    staffing = np.full((1, HOURS_OF_WEEK), 1)
    staffing[0, 0] = 0
    assert simulate(SimCalls([30.0], [0], [1], [10.0], [0.0], [1]), staffing).wait_min.tolist() == [30.0]
    with pytest.raises(ValueError, match="service_min must be above 0; 1 values are not"):
        SimCalls([0.0], [0], [1], [-5.0], [1.0], [1])
    with pytest.raises(ValueError, match="arrival_min must be sorted"):
        SimCalls([5.0, 1.0], [0, 0], [1, 1], [5.0, 5.0], [1.0, 1.0], [1, 1])
    with pytest.raises(ValueError, match="division\\(s\\) B have calls but no unit"):
        simulate(SimCalls([0.0], [1], [1], [5.0], [1.0], [1]), np.zeros((2, HOURS_OF_WEEK)) + [[1], [0]],
                 divisions=["A", "B"])
    with pytest.raises(ValueError, match="divisions x 168"):
        simulate(SimCalls([0.0], [0], [1], [5.0], [1.0], [1]), np.ones((1, 24)))


def generated_calls(rng, weeks: int, divisions=("01", "02", "03"), weights=(1.0, 0.3, 2.5)):
    """Calls over `weeks` weeks from Monday 00:00: Poisson per division, hour of week and category with an
    evening peak; a quarter of violent-crime calls labelled violent; some Priority 1; and their counts."""
    rows = []
    for d, weight in zip(divisions, weights):
        for how in range(HOURS_OF_WEEK):
            rate = weight * (1.2 + np.cos((how % 24 - 18) / 24 * 2 * np.pi))
            for category in ("violent_crime", "traffic", "mental_health_welfare", "alarms"):
                for week in range(weeks):
                    for minute in rng.uniform(0, 60, rng.poisson(rate)):
                        violent = category == "violent_crime" and rng.random() < 0.25
                        rows.append((d, (week * HOURS_OF_WEEK + how) * 60 + minute, 1 if rng.random() < 0.1 else 3,
                                     category, violent, how))
    frame = pd.DataFrame(rows, columns=["division_id", "minute", "priority", "category", "violent", "hour_of_week"])
    counts = frame.assign(p1=frame["priority"] == 1).groupby(["division_id", "category", "hour_of_week"]).agg(
        calls=("minute", "size"), violent=("violent", "sum"), p1=("p1", "sum"), priority_known=("minute", "size"))
    return frame, counts.reset_index()


def test_the_queueing_plan_meets_its_targets_in_simulation():
    config = StaffingConfig.load()
    sim = SimulationConfig.load()
    frame, counts = generated_calls(np.random.default_rng(5), weeks=8)
    divisions = ["01", "02", "03"]
    load = hourly_load(counts, divisions, np.full(7, 8), config)
    calls, sources = assumed_calls(frame, divisions, config, sim)
    assert sources["priority"] == "recorded" and sources["service"].startswith("assumed")
    # Times drawn around the configured means: traffic's 50 minutes, a 6-minute drive.
    traffic = (frame.sort_values("minute", kind="stable")["category"] == "traffic").to_numpy()
    assert calls.service_min[traffic].mean() == pytest.approx(50, rel=0.08)
    assert calls.travel_min.mean() == pytest.approx(6.0, rel=0.03)
    assert (calls.units == np.where(frame.sort_values("minute", kind="stable")["violent"], 2, 1)).all()
    result = compare_plans(load, config, calls, divisions, 0, sim=sim)
    q = result.simulated["queueing"]
    t = config.targets
    assert len(q) == 9 and q["meets_targets"].all(), q
    assert (q["share_waiting"] <= t.p_wait).all() and (q["p1_mean_wait_min"] <= t.p1_wait_min).all()
    assert (q["utilisation"] <= t.utilisation).all()
    summary = result.summary()
    # The same unit-posts split by workload (shift totals, not peak hours) leave more calls without a unit:
    # on these calls 289 against 50, and the worst P1 mean wait more than twice as long.
    assert summary.loc["unit_posts", "queueing"] == summary.loc["unit_posts", "proportional"]
    assert summary.loc["no_unit", "proportional"] > 3 * summary.loc["no_unit", "queueing"]
    assert summary.loc["share_waiting", "difference"] < 0
    assert summary.loc["worst_p1_mean_wait_min", "proportional"] > 2 * summary.loc["worst_p1_mean_wait_min", "queueing"]
    assert summary.loc["p1_response_p90_min", "queueing"] == pytest.approx(
        np.quantile(_p1_response(result, "queueing", calls, divisions), 0.9))


def _p1_response(result, name, calls, divisions):
    from geo.staffing import shift_of_hour

    again = simulate(calls, staffing_array(result.plans[name], divisions, shift_of_hour(StaffingConfig.load())))
    return again.response_min[calls.priority == 1]


def test_bad_simulation_configuration_is_refused(tmp_path):
    from geo.allocate import ALLOCATION_TOML

    text = ALLOCATION_TOML.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("travel_min = 6.0", "travel_min = -2"))
    with pytest.raises(ValueError, match="simulation travel_min = -2: must not be negative"):
        SimulationConfig.load(bad)
    bad.write_text(text.replace("seed = 2264", "seed = 2264\nspeed = 3"))
    with pytest.raises(ValueError, match="unexpected keyword argument 'speed'"):
        SimulationConfig.load(bad)


def test_simulate_command_on_the_database(engine, tmp_path):
    import json
    from datetime import datetime

    import sqlalchemy as sa
    from click.testing import CliRunner

    from geo.allocate import ALLOCATION_TOML
    from geo.cli import main
    from tests.test_metrics import add_calls

    # A week of May 2021: two traffic calls every evening hour in 01, one property call every morning hour in 02.
    rows = [(datetime(2021, 5, 3 + day, hour, 10 + 20 * k), "01", "traffic", False, 0.0)
            for day in range(7) for hour in range(14, 22) for k in range(2)]
    rows += [(datetime(2021, 5, 3 + day, hour, 30), "02", "property", False, 0.0) for day in range(7)
             for hour in range(6, 14)]
    add_calls(engine, rows)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET priority = CASE WHEN right(call_id, 1) = '0' THEN 1 ELSE 3 END"))
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(main, ["simulate", "--from", "2021-05-03", "--to", "2021-05-09", "--out", str(out)],
                                env=env)
    assert result.exit_code == 0, result.output
    assert f"{len(rows):,} calls simulated" in result.output
    assert "service: assumed (configured minutes by category" in result.output and "priority: recorded" in result.output
    assert "help: from touching divisions" in result.output
    for measure in ("p1_response_median_min", "p1_response_p90_min", "share_waiting", "no_unit", "utilisation"):
        assert measure in result.output
    written = json.loads(out.read_text())
    assert len(written) == 2 * 14 * 3 and {r["plan"] for r in written} == {"queueing", "proportional"}
    evening = [r for r in written if r["plan"] == "queueing" and r["division"] == "01" and r["shift"] == "evening"][0]
    assert evening["calls"] == 7 * 8 * 2 and evening["meets_targets"]
    assert sum(r["calls"] for r in written if r["plan"] == "proportional") == len(rows)
    # Bad configuration is refused with the reason.
    bad = CliRunner().invoke(main, ["simulate", "--shifts", "day=6-14,night=22-6"], env=env)
    assert bad.exit_code == 2 and "must cover each hour of the day exactly once" in bad.output
    bad = CliRunner().invoke(main, ["simulate", "--targets", "utilisation=0"], env=env)
    assert bad.exit_code == 2 and "utilisation = 0.0: must be above 0" in bad.output
    config = tmp_path / "neg.toml"
    config.write_text(ALLOCATION_TOML.read_text().replace("travel_min = 6.0", "travel_min = -1"))
    bad = CliRunner().invoke(main, ["simulate", "--config", str(config)], env=env)
    assert bad.exit_code == 2 and "travel_min = -1: must not be negative" in bad.output
    config.write_text(ALLOCATION_TOML.read_text().replace("traffic = 50", "traffic = -50"))
    bad = CliRunner().invoke(main, ["simulate", "--config", str(config)], env=env)
    assert bad.exit_code == 2 and "service_minutes must be above 0; traffic = -50.0" in bad.output


def test_service_times_measured_from_cad_times(engine, tmp_path):
    from datetime import date, datetime

    import sqlalchemy as sa
    from click.testing import CliRunner

    from geo.cli import main
    from geo.filters import Filter
    from geo.staffing import ASSUMED, MEASURED, build_plan, measured_service
    from tests.test_metrics import add_calls

    # 12 traffic calls on the 4 Mondays of May 2021 at 10:15; CAD: dispatched after 2 minutes, on scene after 8,
    # cleared after 32 (30 busy minutes from dispatch); half of them took two units.
    mondays = [datetime(2021, 5, d, 10, 15) for d in (3, 10, 17, 24)]
    add_calls(engine, [(t, "01", "traffic", False, 0.0) for t in mondays for _ in range(3)])
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE calls SET dispatched_at = received_at + interval '2 minutes',"
            " onscene_at = received_at + interval '8 minutes', cleared_at = received_at + interval '32 minutes',"
            " dispatched_at_precision = 'time', onscene_at_precision = 'time', cleared_at_precision = 'time',"
            " units_assigned = CASE WHEN right(call_id, 1) IN ('0', '2', '4', '6', '8') THEN 2 ELSE 1 END"))
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, division_id, category, label, p_violent,"
            " row_hash, batch_id) VALUES ('N1', CAST('2021-05-04 10:15' AS timestamp) AT TIME ZONE 'America/New_York',"
            " 'X', ST_SetSRID(ST_Point(-80.84, 35.22), 4326), '02', 'traffic', false, 0, 0, 0)"))
    period = Filter.local_days(date(2021, 5, 3), date(2021, 5, 31))
    config = StaffingConfig.load()
    measured = measured_service(engine, period, config)
    assert len(measured) == 1 and measured.iloc[0]["measured_calls"] == 12
    assert measured.iloc[0]["service_min"] == pytest.approx(30 * 18 / 12)      # 6 x 2 + 6 x 1 units x 30 min
    table = build_plan(engine, period, config)
    row = table[(table["division"] == "01") & (table["shift"] == "day")].iloc[0]
    assert row["service_times"] == MEASURED and row["mean_service_min"] == pytest.approx(45.0)
    other = table[(table["division"] == "02") & (table["shift"] == "day")].iloc[0]
    assert other["service_times"] == ASSUMED and other["mean_service_min"] == pytest.approx(config.minutes["traffic"])
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(main, ["simulate", "--from", "2021-05-03", "--to", "2021-05-30", "--no-help"], env=env)
    assert result.exit_code == 0, result.output
    assert "service: measured (CAD times) for 92% of calls, the rest assumed" in result.output
    assert "travel: measured (CAD times) for 92% of calls" in result.output
    assert "plan service times: assumed (configured), measured" in result.output and "help: none" in result.output
