"""Officer allocation: divisions x shifts in proportion to workload, with minimums, plus unit suggestions.

Workload is calls times expected service minutes for their category (geo/allocation.toml), with
calls the model labels violent needing two officers. Every division-shift first gets the minimum;
the rest is shared by workload with the largest-remainder method, so the total is exactly N.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.filters import Filter
from geo.metrics import call_measures, source_values

ALLOCATION_TOML = Path(__file__).with_name("allocation.toml")


@dataclass
class AllocationConfig:
    """Weights read from allocation.toml."""

    shifts: dict[str, tuple[int, int]]
    minimum: int
    officers_default: int
    officers_violent: int
    minutes: dict[str, float]
    suggestions: dict[str, dict]

    @classmethod
    def load(cls, path: Path = ALLOCATION_TOML) -> "AllocationConfig":
        raw = tomllib.loads(Path(path).read_text())
        shifts = {name: (int(a), int(b)) for name, (a, b) in raw["shifts"].items()}
        hours = sorted(h for a, b in shifts.values() for h in shift_hours(a, b))
        if hours != list(range(24)):
            raise ValueError(f"{path}: shifts must cover each hour of the day exactly once; they cover {hours}")
        return cls(shifts, int(raw["minimums"]["per_division_shift"]), int(raw["officers_per_call"]["default"]),
                   int(raw["officers_per_call"]["violent"]), {k: float(v) for k, v in raw["service_minutes"].items()},
                   raw.get("suggestions", {}))


def parse_shifts(text: str) -> dict[str, tuple[int, int]]:
    """'day=6-14,evening=14-22,night=22-6' -> {'day': (6, 14), ...}; hours are local, end excluded."""
    shifts = {}
    for part in text.split(","):
        name, _, span = part.partition("=")
        try:
            start, end = (int(h) for h in span.split("-"))
        except ValueError:
            raise ValueError(f"shift {part!r} is not NAME=START-END with whole hours, e.g. night=22-6") from None
        if not name.strip() or not (0 <= start < 24 and 0 <= end <= 24) or start == end:
            raise ValueError(f"shift {part!r} needs a name and hours 0-24 with start != end")
        shifts[name.strip()] = (start, end % 24)
    hours = sorted(h for a, b in shifts.values() for h in shift_hours(a, b))
    if hours != list(range(24)):
        raise ValueError(f"shifts {text!r} must cover each hour of the day exactly once")
    return shifts


def shift_hours(start: int, end: int) -> list[int]:
    """The hours of the day a shift from `start` to `end` (o'clock, may cross midnight) covers."""
    return list(range(start, end)) if start < end else list(range(start, 24)) + list(range(0, end))


def largest_remainder(weights: np.ndarray, seats: int) -> np.ndarray:
    """Integer shares of `seats` proportional to weights, summing exactly to `seats` (Hamilton's method)."""
    weights = np.asarray(weights, dtype=float)
    if seats <= 0:
        return np.zeros(len(weights), dtype=int)
    if weights.sum() <= 0:
        weights = np.ones(len(weights))
    quotas = weights / weights.sum() * seats
    base = np.floor(quotas).astype(int)
    left = seats - base.sum()
    order = np.argsort(-(quotas - base), kind="stable")
    base[order[:left]] += 1
    return base


WORKLOAD_SOURCES = ("labelled", "expected")


def workload(engine: Engine, period: Filter, config: AllocationConfig, source: str = "expected") -> pd.DataFrame:
    """Officer-minutes of work per division, shift and category over the period.

    The violent part of each group's calls (two-officer responses) is what `source` counts
    (geo.sources): calls labelled violent, or expected violent calls (the sum of probabilities, the
    default), calls about one incident counted once. attrs['source'] names it.
    """
    from geo.sources import check_origin, get_source

    if source not in WORKLOAD_SOURCES:
        raise ValueError(f"the workload's violent calls come from calls: source must be one of "
                         f"{', '.join(WORKLOAD_SOURCES)}, not {source!r}")
    src = get_source(source)
    check_origin(engine, src, period, None)
    counted = call_measures(engine, period, ("division", "category", "hour", "date_only"))
    counted = counted[counted["division"] != "(none)"]
    # A call known only by its date belongs to no shift: left out (counted in attrs).
    dated = counted["date_only"].astype(bool)
    left_out = counted.loc[dated, "calls"].sum()
    rows = counted.loc[~dated, ["division", "category", "hour", "calls"]].rename(columns={"division": "division_id"})
    rows = rows.groupby(["division_id", "category", "hour"], as_index=False)["calls"].sum()
    violent = source_values(engine, period, src, ("division", "category", "hour"),
                            condition=lambda t: t.c.received_at_precision != "date")
    violent = violent.rename(columns={"division": "division_id", "value": "violent"})
    rows = rows.merge(violent, on=["division_id", "category", "hour"], how="left").fillna({"violent": 0.0})
    shift_of = {h: name for name, (a, b) in config.shifts.items() for h in shift_hours(a, b)}
    rows["shift"] = rows["hour"].map(shift_of)
    minutes = rows["category"].map(config.minutes).fillna(config.minutes.get("unknown", 30.0))
    officers = (rows["calls"] - rows["violent"]) * config.officers_default + rows["violent"] * config.officers_violent
    rows["officer_minutes"] = minutes * officers
    out = rows.groupby(["division_id", "shift", "category"], as_index=False)[["calls", "violent", "officer_minutes"]].sum()
    out.attrs["left_out_date_only"] = int(left_out)
    out.attrs["source"] = src.describe()
    return out


def allocate(engine: Engine, officers: int, period: Filter, config: AllocationConfig | None = None,
             source: str = "expected") -> tuple[pd.DataFrame, dict[str, str]]:
    """Officers per division and shift, and the reasoning (with unit and gear suggestions) per division;
    the table's attrs['source'] names what the violent part of the workload counts."""
    config = config or AllocationConfig.load()
    work = workload(engine, period, config, source)
    with engine.connect() as conn:
        divisions = pd.read_sql(sa.text("SELECT division_id, short_name FROM divisions ORDER BY division_id"), conn)
    cells = pd.MultiIndex.from_product([divisions["division_id"], list(config.shifts)], names=["division_id", "shift"])
    load = work.groupby(["division_id", "shift"])["officer_minutes"].sum().reindex(cells, fill_value=0.0)
    floor = config.minimum * len(cells)
    if officers < floor:
        raise ValueError(f"--officers {officers} is below the minimum of {config.minimum} per division and shift "
                         f"({len(divisions)} divisions x {len(config.shifts)} shifts = {floor})")
    extra = largest_remainder(load.to_numpy(), officers - floor)
    table = pd.DataFrame({"workload_hours": (load / 60).round(1), "officers": extra + config.minimum}).reset_index()
    table = table.merge(divisions, on="division_id")
    reasons = {}
    city_load = load.sum()
    for division, rows in work.groupby("division_id"):
        calls = rows.groupby("category")["calls"].sum()
        share = calls / calls.sum()
        top = ", ".join(f"{c} {s:.0%}" for c, s in share.sort_values(ascending=False).head(3).items())
        notes = [f"{s['unit']} ({category.replace('_', ' ')} is {share.get(category, 0):.0%} of calls"
                 f"{'; gear: ' + s['gear'] if s.get('gear') else ''})"
                 for category, s in config.suggestions.items() if share.get(category, 0) > float(s["share"])]
        assigned = table.loc[table["division_id"] == division, "officers"].sum()
        reasons[division] = (
            f"{int(calls.sum()):,} calls, {rows['officer_minutes'].sum() / 60:,.0f} officer-hours "
            f"({rows['officer_minutes'].sum() / city_load:.1%} of the city's workload) -> {assigned} officers. "
            f"Call mix: {top}. " + ("Suggest: " + "; ".join(notes) + "." if notes else "No specialised units suggested.")
        )
    table.attrs["source"] = work.attrs["source"]
    return table, reasons
