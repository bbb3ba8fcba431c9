"""Staffing plan solve time: 14 divisions x 168 hours, against the proportional split on the same load.

No database: the call counts per division, hour of week and category are generated at CMPD's
scale (about 1,000,000 calls a year over 14 divisions, a daily and weekly cycle, divisions of
unequal size), and the same load goes to
- `plan`: units needed per hour (Erlang C, Priority 1 wait, rule of 60), rolled up to shifts;
- `plan --officers N`: N (80% of what the targets need) placed by marginal allocation;
- the proportional split (`geo.allocate.largest_remainder` of N over the division-shifts by
  workload, as `hotspots allocate --method proportional` does after its query), evaluated by
  the same queueing formulas so the two plans can be compared at the same N.
Each is timed best of `--repeat`. Figures go to bench/RESULTS.md.

Usage: python bench/plan.py [--repeat 5] [--calls 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo.allocate import largest_remainder  # noqa: E402
from geo.filters import Filter  # noqa: E402
from geo.staffing import HOURS_OF_WEEK, StaffingConfig, hourly_load, plan, shift_of_hour, weekday_counts  # noqa: E402

YEAR = Filter.local_days(date(2021, 1, 4), date(2022, 1, 3))      # 52 whole weeks


def generated_counts(calls: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    divisions = [f"{i:02d}" for i in range(1, 15)]
    size = rng.uniform(0.5, 1.6, len(divisions))
    hour = np.arange(HOURS_OF_WEEK) % 24
    day = np.arange(HOURS_OF_WEEK) // 24
    shape = (1.1 + np.cos((hour - 17) / 24 * 2 * np.pi)) * np.where(day >= 4, 1.15, 1.0)
    mix = {"service_other": 0.25, "traffic": 0.14, "disorder": 0.14, "alarms": 0.10, "property": 0.12,
           "mental_health_welfare": 0.08, "domestic_violence": 0.07, "crimes_against_persons": 0.04,
           "violent_crime": 0.03, "drugs_vice": 0.03}
    expected = calls * np.outer(size / size.sum(), shape / shape.sum())
    rows = []
    for i, d in enumerate(divisions):
        for how in range(HOURS_OF_WEEK):
            for category, share in mix.items():
                n = int(rng.poisson(expected[i, how] * share))
                if n:
                    violent = n if category == "violent_crime" else 0
                    rows.append((d, category, how, n, violent, int(rng.binomial(n, 0.12)), n))
    return pd.DataFrame(rows, columns=["division_id", "category", "hour_of_week", "calls", "violent", "p1",
                                       "priority_known"]), divisions


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def summary(table: pd.DataFrame) -> str:
    missed = (table["warnings"] != "").sum()
    over = table["warnings"].str.contains("without limit").sum()
    return (f"worst mean wait {table['mean_wait_min'].max():.2f} min, worst P1 mean wait "
            f"{table['p1_mean_wait_min'].max():.2f} min, {missed}/{len(table)} division-shifts miss a target, "
            f"{over} with hours of more work than units (queue without limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    config = StaffingConfig.load()
    counts, divisions = generated_counts(args.calls)
    print(f"{int(counts['calls'].sum()):,} calls, {len(divisions)} divisions x {HOURS_OF_WEEK} hours, "
          f"{len(counts):,} (division, hour, category) rows")
    t_load, load = best(lambda: hourly_load(counts, divisions, weekday_counts(YEAR), config), args.repeat)
    t_need, needed = best(lambda: plan(load, config), args.repeat)
    n = int(needed["officers"].sum() * 0.8)
    t_marginal, marginal = best(lambda: plan(load, config, officers=n), args.repeat)
    # The proportional split of the same N by workload (minimum 2 officers per division-shift).
    shift = shift_of_hour(config)
    frame = load.reset_index().assign(shift=shift[load.index.get_level_values(1)])
    work = frame.groupby(["division_id", "shift"], sort=False)["offered"].sum()
    keys = [(d, s) for d in divisions for s in config.shifts]
    weights = work.reindex(keys).to_numpy()

    def proportional():
        return largest_remainder(weights, n - 2 * len(keys)) + 2

    t_prop, split = best(proportional, args.repeat)
    per_unit = config.officers_per_unit * config.relief.factor
    units = {key: int(officers // per_unit) for key, officers in zip(keys, split)}
    t_eval, prop_table = best(lambda: plan(load, config, units=units), args.repeat)
    print(f"load per division x hour:            {t_load * 1000:8.1f} ms")
    print(f"plan (units needed, 42 shifts):      {t_need * 1000:8.1f} ms  -> {int(needed['officers'].sum())} officers, "
          f"{int(needed['units'].sum())} unit-posts; {summary(needed)}")
    print(f"plan --officers {n} (marginal):     {t_marginal * 1000:8.1f} ms  -> {summary(marginal)}")
    print(f"proportional split of {n}:          {t_prop * 1000:8.3f} ms  -> (evaluated in {t_eval * 1000:.0f} ms) "
          f"{summary(prop_table)}")


if __name__ == "__main__":
    main()
