"""Discrete-event simulation speed: a year of 1,000,000 calls across 14 divisions (target under 30 s).

No database: the counts of bench/plan.py (CMPD's scale, a daily and weekly cycle, divisions of
unequal size, a CMPD-like category mix) become calls (each count spread over the 52 weeks, a
uniform minute in its hour), with service and travel times drawn as `hotspots simulate` draws them
(geo/allocation.toml [simulation]). Timed:
- building the calls (`assumed_calls`);
- one simulation of the queueing plan (`simulate`), with cross-division help between neighbours
  (here each division's neighbours are the two next to it in a ring);
- `compare_plans`: the queueing plan and the proportional split of the same unit-posts, each
  built and simulated (what `hotspots simulate` does after its queries), at N = 80% of the
  officers the targets need and at what they need.
Figures go to bench/RESULTS.md.

Usage: python bench/simulate.py [--calls 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from plan import YEAR, best, generated_counts  # noqa: E402

from geo.simulate import SimulationConfig, assumed_calls, compare_plans, simulate, staffing_array  # noqa: E402
from geo.staffing import HOURS_OF_WEEK, StaffingConfig, hourly_load, plan, shift_of_hour, weekday_counts  # noqa: E402

WEEKS = 52


def calls_frame(counts: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """One row per call: each (division, hour of week, category) count spread over the year's weeks."""
    rng = np.random.default_rng(seed)
    n = counts["calls"].to_numpy()
    rows = np.repeat(np.arange(len(counts)), n)
    how = counts["hour_of_week"].to_numpy()[rows]
    minute = (rng.integers(0, WEEKS, len(rows)) * HOURS_OF_WEEK + how) * 60 + rng.uniform(0, 60, len(rows))
    category = counts["category"].to_numpy()[rows]
    return pd.DataFrame({"division_id": counts["division_id"].to_numpy()[rows], "minute": minute,
                         "priority": np.where(rng.random(len(rows)) < 0.12, 1, 3), "category": category,
                         "violent": category == "violent_crime"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    config, sim = StaffingConfig.load(), SimulationConfig.load()
    counts, divisions = generated_counts(args.calls)
    load = hourly_load(counts, divisions, weekday_counts(YEAR), config)
    frame = calls_frame(counts)
    t_calls, (calls, _) = best(lambda: assumed_calls(frame, divisions, config, sim), args.repeat)
    ring = {i: [(i - 1) % len(divisions), (i + 1) % len(divisions)] for i in range(len(divisions))}
    needed = plan(load, config)
    staffing = staffing_array(needed, divisions, shift_of_hour(config))
    t_sim, result = best(lambda: simulate(calls, staffing, 0, ring, sim.help_travel_min, sim.help_reserve,
                                          divisions), args.repeat)
    o = result.overall()
    print(f"{len(calls):,} calls over {WEEKS} weeks, {len(divisions)} divisions; building them {t_calls:.1f} s")
    print(f"simulate the plan the targets need ({int(needed['units'].sum())} unit-posts): {t_sim:.1f} s "
          f"({len(calls) / t_sim:,.0f} calls/s); P1 response median {o['p1_response_median_min']:.1f} min, "
          f"p90 {o['p1_response_p90_min']:.1f}; share waiting {o['share_waiting']:.2%}; "
          f"no unit free {int(o['no_unit']):,}; helped {int(o['helped']):,}; utilisation {o['utilisation']:.0%}")
    for share in (0.8, 1.0):
        officers = int(needed["officers"].sum() * share)
        t_cmp, cmp = best(lambda: compare_plans(load, config, calls, divisions, 0, officers, ring, sim), args.repeat)
        s = cmp.summary()
        print(f"\ncompare_plans at {officers} officers ({share:.0%} of need): {t_cmp:.1f} s")
        print(s.to_string(float_format=lambda v: f"{v:,.3f}"))


if __name__ == "__main__":
    main()
