"""M/M/c queueing for patrol staffing: Erlang B and C, mean wait, and the top-priority wait.

Calls arrive as a Poisson stream at rate `lam` per hour, each keeps one unit busy for an
exponential time with mean `service_h` hours; `offered = lam * service_h` (Erlang) is the mean
number of busy units. With `c` units:

- Erlang B by its recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)), which never forms a^c or
  c! and so stays accurate for hundreds of units;
- Erlang C (the chance a call finds every unit busy and waits) from B: C = B / (1 - rho (1 - B)),
  rho = a / c;
- the mean wait of all calls Wq = C * service / (c - a);
- the mean wait of the top class under non-preemptive priority with equal service times
  (Cobham, 1954): W1 = C * service / (c (1 - rho1)), rho1 = lam1 * service / c. A Priority 1 call
  waits only for a unit to free up, never behind lower priorities already queued.

Every function takes numpy arrays (broadcast) or scalars; with c <= a the queue grows without
bound and P(wait) = 1, waits are infinite.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def erlang_b(c, offered) -> np.ndarray:
    """Probability that a call finds all `c` units busy when blocked calls are lost (Erlang B)."""
    c = np.asarray(c, dtype=int)
    a = np.asarray(offered, dtype=float)
    if (c < 0).any() or (a < 0).any():
        raise ValueError("units and offered load must be non-negative")
    c, a = np.broadcast_arrays(c, a)
    b = np.ones(a.shape)
    for k in range(1, int(c.max(initial=0)) + 1):
        step = a * b / (k + a * b)
        b = np.where(k <= c, step, b)
    return b


def erlang_c(c, offered) -> np.ndarray:
    """Probability that a call waits for a unit (Erlang C); 1 where c <= offered load."""
    c = np.asarray(c, dtype=int)
    a = np.asarray(offered, dtype=float)
    b = erlang_b(c, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(c > 0, a / np.maximum(c, 1), np.inf)
        out = b / (1 - rho * (1 - b))
    return np.where((c > a) | (a == 0), np.where(a == 0, 0.0, out), 1.0)


def mean_wait(c, offered, service) -> np.ndarray:
    """Mean wait of all calls for a unit, in the unit of `service` (infinite where c <= offered)."""
    c = np.asarray(c, dtype=int)
    a = np.asarray(offered, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = erlang_c(c, a) * np.asarray(service, dtype=float) / (c - a)
    return np.where(c > a, np.where(a == 0, 0.0, out), np.inf)


def priority1_wait(c, offered, offered_p1, service) -> np.ndarray:
    """Mean wait of top-priority calls under non-preemptive priority, equal service times (Cobham)."""
    c = np.asarray(c, dtype=int)
    a = np.asarray(offered, dtype=float)
    a1 = np.asarray(offered_p1, dtype=float)
    if (a1 > a + 1e-12).any():
        raise ValueError("the Priority 1 load cannot exceed the total load")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = erlang_c(c, a) * np.asarray(service, dtype=float) / (c - a1)
    return np.where(c > a, np.where(a == 0, 0.0, out), np.inf)


def utilisation(c, offered) -> np.ndarray:
    """Share of unit time spent on calls (obligated time), offered / c; infinite with no units."""
    c = np.asarray(c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c > 0, np.asarray(offered, dtype=float) / c, np.inf)


def concurrent_calls_quantile(mean, q: float = 0.9) -> np.ndarray:
    """Smallest k with P(N <= k) >= q for N ~ Poisson(mean): the calls in progress at once that
    cover share q of the time (an M/M/infinity system has Poisson(lam * service) calls in progress)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile {q} must be between 0 and 1")
    mean = np.asarray(mean, dtype=float)
    return np.where(mean > 0, stats.poisson.ppf(q, np.maximum(mean, 1e-300)), 0).astype(int)


def erlang_c_table(offered, max_units: int) -> np.ndarray:
    """P(wait) for every load (rows) and every number of units 0..max_units (columns), one pass of
    the Erlang B recursion; 1 where c <= load, 0 for zero load."""
    a = np.asarray(offered, dtype=float).ravel()
    out = np.ones((len(a), max_units + 1))
    b = np.ones(len(a))
    for c in range(1, max_units + 1):
        b = a * b / (c + a * b)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, c] = np.where(c > a, b / (1 - a / c * (1 - b)), 1.0)
    out[a == 0, :] = 0.0
    return out
