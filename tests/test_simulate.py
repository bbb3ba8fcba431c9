"""The discrete-event simulation (geo/simulate.py) against the M/M/c formulas and planted shortages."""

from __future__ import annotations

import numpy as np
import pytest

from geo.queueing import erlang_c, mean_wait
from geo.simulate import HOURS_OF_WEEK, SimCalls, simulate


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
    # Two calls needing two units each, one division of two units: the second waits for the first to clear.
    calls = SimCalls([0.0, 1.0], [0, 0], [3, 1], [30.0, 10.0], [2.0, 2.0], [2, 2])
    result = simulate(calls, np.full((1, HOURS_OF_WEEK), 2))
    assert result.wait_min.tolist() == [0.0, 29.0] and result.queued.tolist() == [False, True]
    assert result.response_min.tolist() == [2.0, 31.0]
    # A call needing more units than are on duty takes all on duty.
    calls = SimCalls([0.0], [0], [1], [30.0], [2.0], [3])
    assert simulate(calls, np.full((1, HOURS_OF_WEEK), 2)).wait_min.tolist() == [0.0]
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
