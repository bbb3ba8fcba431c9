"""M/M/c formulas: table values, limits, monotonicity and the priority wait."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geo.queueing import concurrent_calls_quantile, erlang_b, erlang_c, mean_wait, priority1_wait, utilisation


@pytest.mark.parametrize(("units", "erlang", "expected"), [
    (1, 0.5, 0.500),   # M/M/1: P(wait) = rho
    (2, 1.0, 0.333),   # 1/3
    (3, 2.0, 0.444),   # 4/9
    (2, 1.2, 0.450),   # /work/shared/NOTES.md, checked by hand
    (5, 4.0, 0.554),
    (10, 8.0, 0.409),
    (20, 12.0, 0.0241),  # NOTES.md: the same 60% utilisation as 2 at 1.2, ~19x fewer waits
])
def test_erlang_c_table_values(units, erlang, expected):
    assert float(erlang_c(units, erlang)) == pytest.approx(expected, abs=5e-4 if expected > 0.1 else 5e-5)


def _direct(c, a):
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


def test_erlang_c_matches_the_closed_form_and_stays_finite_for_many_units():
    for c, a in [(7, 3.3), (40, 31.0), (120, 100.0)]:
        assert float(erlang_c(c, a)) == pytest.approx(_direct(c, a), rel=1e-9)
    big = float(erlang_c(2000, 1950.0))   # a^c and c! overflow floats; the recursion does not
    assert 0 < big < 1 and math.isfinite(big)
    assert float(erlang_b(0, 3.0)) == 1.0 and float(erlang_b(1, 1.0)) == 0.5


def test_monotonic_in_units_and_load_and_unstable_when_overloaded():
    c = np.arange(5, 40)
    p = erlang_c(c, 4.5)
    assert (np.diff(p) < 0).all()
    w = mean_wait(c, 4.5, 0.5)
    assert (np.diff(w) < 0).all()
    loads = np.linspace(0.1, 9.9, 50)
    assert (np.diff(erlang_c(10, loads)) > 0).all()
    assert float(erlang_c(3, 3.0)) == 1.0 and math.isinf(float(mean_wait(3, 3.5, 1.0)))
    assert float(erlang_c(3, 0.0)) == 0.0 and float(mean_wait(3, 0.0, 1.0)) == 0.0
    assert float(utilisation(20, 12.0)) == 0.6


def test_mean_wait_and_priority_wait_hand_computed():
    # 2 units, 1.2 Erlang, 30-minute calls: Wq = 0.45 x 30 / (2 - 1.2) = 16.875 minutes.
    assert float(mean_wait(2, 1.2, 30.0)) == pytest.approx(16.875)
    # A quarter of the load is Priority 1 (0.3 Erlang): W1 = 0.45 x 30 / (2 - 0.3) = 7.941 minutes.
    assert float(priority1_wait(2, 1.2, 0.3, 30.0)) == pytest.approx(0.45 * 30 / 1.7)
    # All calls Priority 1: no one to jump, the FIFO wait.
    assert float(priority1_wait(2, 1.2, 1.2, 30.0)) == pytest.approx(16.875)
    # Conservation: the load-weighted waits of P1 and the rest equal the FIFO wait (equal service).
    c, a, a1, s = 4, 3.1, 0.9, 40.0
    w1 = float(priority1_wait(c, a, a1, s))
    w_rest = float(erlang_c(c, a)) * s * c / ((c - a1) * (c - a))
    assert (a1 * w1 + (a - a1) * w_rest) / a == pytest.approx(float(mean_wait(c, a, s)))
    with pytest.raises(ValueError, match="Priority 1 load"):
        priority1_wait(2, 1.0, 1.5, 30.0)


def test_concurrency_percentile_hand_computed():
    # Poisson(0.5): P(0) = 0.607, P(<=1) = 0.910 -> 1.  Poisson(2): P(<=3) = 0.857, P(<=4) = 0.947 -> 4.
    assert list(concurrent_calls_quantile([0.5, 2.0, 0.0])) == [1, 4, 0]
    with pytest.raises(ValueError, match="between 0 and 1"):
        concurrent_calls_quantile(1.0, q=1.0)
