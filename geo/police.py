"""Standard police metrics from the calls' CAD times: response time and its parts, time on scene,
unit-hours, calls and unit-hours per officer, obligated vs proactive time, clearance rate.

Every measure is a function of (engine or reader, Filter, grouping), as in geo.metrics. Definitions
and references: docs/methods.md, "Police metrics". A call counts in a time measure only where both
ends are real instants (precision 'time') and its recorded CAD times run in order (received <=
dispatched <= en route <= on scene <= cleared); every other call under the filter is counted in a
`left_out_*` column by reason, never dropped silently nor put at midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from geo import models
from geo.filters import Filter
from geo.metrics import SqlReader, area_condition, call_groups, clearance_rates, reader_of

# The CAD chain in the order a call lives it; a recorded instant out of this order is a data error.
CHAIN = ("received_at", "dispatched_at", "enroute_at", "onscene_at", "cleared_at")
# Intervals: name -> (from, to, what it is).
INTERVALS = {
    "response": ("received_at", "onscene_at", "received to first unit on scene"),
    "dispatch": ("received_at", "dispatched_at", "received to first unit dispatched (dispatch delay)"),
    "travel": ("dispatched_at", "onscene_at", "dispatched to first unit on scene"),
    "on_scene": ("onscene_at", "cleared_at", "first unit on scene to last unit cleared"),
}
RESPONSE_GROUPS = ("city", "division", "npa", "priority", "hour", "weekday", "day", "month", "category")
QUANTILES = {"median": 0.5, "p90": 0.9}
LEFT_OUT = ("missing", "imprecise", "out_of_order")


def _groups(t: sa.Table, tz: str) -> dict[str, ColumnElement]:
    # The calls' own groups (geo.metrics), and the priority. A call known only by its date has no hour or
    # weekday hour: it is grouped under an empty hour (never at midnight) and left out as imprecise.
    groups = call_groups(t, tz)
    timed = t.c.received_at_precision == "time"
    for clock in ("hour", "weekday"):
        groups[clock] = sa.case((timed, groups[clock]))
    groups["priority"] = sa.func.coalesce(sa.cast(t.c.priority, sa.Text), sa.literal_column("'unknown'"))
    return groups


def _clock_columns(rows: pd.DataFrame) -> pd.DataFrame:
    # Hours and weekdays as whole numbers, empty (<NA>) for calls known only by their date.
    for c in ("hour", "weekday"):
        if c in rows:
            rows[c] = rows[c].astype("Int64")
    return rows


def _check_groups(by: Sequence[str]) -> None:
    for g in by:
        if g not in RESPONSE_GROUPS:
            raise ValueError(f"cannot group by {g!r}; one of {', '.join(RESPONSE_GROUPS)}")


def _precise(t: sa.Table, column: str) -> ColumnElement:
    return sa.and_(t.c[column].is_not(None), t.c[f"{column}_precision"] == "time")


def in_order(t: sa.Table = models.calls) -> ColumnElement:
    """True where every pair of the call's recorded instants runs in CAD order (received .. cleared)."""
    pairs = []
    for i, a in enumerate(CHAIN):
        for b in CHAIN[i + 1:]:
            # A pair with an end missing or known only by its date says nothing about order.
            pairs.append(sa.or_(sa.not_(sa.and_(_precise(t, a), _precise(t, b))), t.c[a] <= t.c[b]))
    return sa.and_(*pairs)


def _status(t: sa.Table, start: str, end: str) -> dict[str, ColumnElement]:
    missing = sa.or_(t.c[start].is_(None), t.c[end].is_(None))
    imprecise = sa.and_(sa.not_(missing), sa.or_(t.c[f"{start}_precision"] != "time",
                                                 t.c[f"{end}_precision"] != "time",
                                                 t.c[f"{start}_precision"].is_(None), t.c[f"{end}_precision"].is_(None)))
    ok = sa.and_(_precise(t, start), _precise(t, end), in_order(t))
    return {"ok": ok, "missing": missing, "imprecise": imprecise,
            "out_of_order": sa.and_(_precise(t, start), _precise(t, end), sa.not_(in_order(t)))}


def _minutes(t: sa.Table, start: str, end: str, ok: ColumnElement) -> ColumnElement:
    # NULL outside `ok`: percentile_cont and avg skip NULLs, so only valid intervals are ranked.
    return sa.case((ok, sa.extract("epoch", t.c[end] - t.c[start]) / 60.0))


def interval_stats(source: "Engine | SqlReader", flt: Filter, interval: str = "response",
                   by: Sequence[str] = ("priority",), area: tuple[str, object] | None = None) -> pd.DataFrame:
    """Median, 90th percentile and mean minutes of a CAD interval per group, with n and the calls left out.

    `interval`: response (received to on scene), dispatch (received to dispatched), travel
    (dispatched to on scene) or on_scene (on scene to cleared); `by`: any of RESPONSE_GROUPS.
    Columns: the groups, calls, n, median_min, p90_min, mean_min, left_out_missing,
    left_out_imprecise, left_out_out_of_order. Percentiles are computed in PostgreSQL
    (percentile_cont, interpolated) under the filter's predicate; `area`: (level, id) of one
    division or NPA.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, not {interval!r}")
    _check_groups(by)
    t = models.calls
    start, end, _ = INTERVALS[interval]
    status = _status(t, start, end)
    minutes = _minutes(t, start, end, status["ok"])
    groups = _groups(t, flt.tz)
    columns = [groups[g].label(g) for g in by]
    query = (sa.select(*columns, sa.func.count().label("calls"), sa.func.count(minutes).label("n"),
                       *[sa.func.percentile_cont(q).within_group(minutes).label(f"{name}_min")
                         for name, q in QUANTILES.items()],
                       sa.func.avg(minutes).label("mean_min"),
                       *[sa.func.count().filter(status[r]).label(f"left_out_{r}") for r in LEFT_OUT])
             .where(flt.predicate("calls"), *area_condition(t, area))
             .group_by(*[sa.literal_column(str(i + 1)) for i in range(len(by))]))
    # Percentiles do not add up over partitions: always one query on the database (not the Dask reader).
    with reader_of(source).engine.connect() as conn:
        rows = _clock_columns(pd.read_sql(query, conn))
    for c in ("calls", "n", *[f"left_out_{r}" for r in LEFT_OUT]):
        rows[c] = rows[c].astype("int64")
    for c in ("median_min", "p90_min", "mean_min"):
        rows[c] = rows[c].astype(float).round(3)
    return rows.sort_values(list(by), ignore_index=True) if by else rows


def response_times(source: "Engine | SqlReader", flt: Filter, by: Sequence[str] = ("priority",),
                   area: tuple[str, object] | None = None) -> pd.DataFrame:
    """Response time and its two parts per group: one row per group and part (interval column), see interval_stats."""
    parts = [interval_stats(source, flt, name, by, area).assign(interval=name) for name in ("response", "dispatch", "travel")]
    out = pd.concat(parts, ignore_index=True)
    return out[["interval", *by, *[c for c in out.columns if c not in ("interval", *by)]]]


def _units(t: sa.Table, units_default: int, units_violent: int) -> tuple[ColumnElement, ColumnElement]:
    # Units recorded on the call; where none are, the configured units per call (violent label or not).
    recorded = sa.and_(t.c.units_assigned.is_not(None), t.c.units_assigned >= 1)
    configured = sa.case((sa.func.coalesce(t.c.label, sa.false()), units_violent), else_=units_default)
    return sa.case((recorded, t.c.units_assigned), else_=configured), recorded


def unit_hours(source: "Engine | SqlReader", flt: Filter, by: Sequence[str] = ("category",), *,
               units_default: int = 1, units_violent: int = 2) -> pd.DataFrame:
    """Time on scene and unit-hours per group: busy time (dispatched, else received, to cleared) x units.

    Columns: the groups, calls, n (calls with a valid busy time), on_scene_median_min,
    on_scene_p90_min, busy_mean_min, unit_hours, units_assumed (calls counted with the configured
    units because none were recorded), left_out_missing, left_out_imprecise, left_out_out_of_order.
    """
    _check_groups(by)
    t = models.calls
    start = sa.case((t.c.dispatched_at.is_not(None), t.c.dispatched_at), else_=t.c.received_at)
    start_precision = sa.case((t.c.dispatched_at.is_not(None), t.c.dispatched_at_precision),
                              else_=t.c.received_at_precision)
    missing = t.c.cleared_at.is_(None)
    precise = sa.and_(sa.not_(missing), start_precision == "time", t.c.cleared_at_precision == "time")
    ok = sa.and_(precise, in_order(t))
    busy = sa.case((ok, sa.extract("epoch", t.c.cleared_at - start) / 60.0))
    scene = _status(t, "onscene_at", "cleared_at")
    on_scene = _minutes(t, "onscene_at", "cleared_at", scene["ok"])
    units, recorded = _units(t, units_default, units_violent)
    groups = _groups(t, flt.tz)
    columns = [groups[g].label(g) for g in by]
    query = (sa.select(*columns, sa.func.count().label("calls"), sa.func.count(busy).label("n"),
                       sa.func.percentile_cont(0.5).within_group(on_scene).label("on_scene_median_min"),
                       sa.func.percentile_cont(0.9).within_group(on_scene).label("on_scene_p90_min"),
                       sa.func.avg(busy).label("busy_mean_min"),
                       sa.func.coalesce(sa.func.sum(busy * units) / 60.0, 0).label("unit_hours"),
                       sa.func.count().filter(sa.and_(ok, sa.not_(recorded))).label("units_assumed"),
                       sa.func.count().filter(missing).label("left_out_missing"),
                       sa.func.count().filter(sa.and_(sa.not_(missing), sa.not_(precise))).label("left_out_imprecise"),
                       sa.func.count().filter(sa.and_(precise, sa.not_(in_order(t)))).label("left_out_out_of_order"))
             .where(flt.predicate("calls"))
             .group_by(*[sa.literal_column(str(i + 1)) for i in range(len(by))]))
    with reader_of(source).engine.connect() as conn:
        rows = _clock_columns(pd.read_sql(query, conn))
    for c in ("calls", "n", "units_assumed", *[f"left_out_{r}" for r in LEFT_OUT]):
        rows[c] = rows[c].astype("int64")
    for c in ("on_scene_median_min", "on_scene_p90_min", "busy_mean_min", "unit_hours"):
        rows[c] = rows[c].astype(float).round(3)
    return rows.sort_values(list(by), ignore_index=True) if by else rows


@dataclass(frozen=True)
class Roster:
    """Officers and on-duty unit-hours per division over a period, and where the numbers come from."""

    officers: dict[str, float]            # division -> officers (headcount, relief included)
    on_duty_unit_hours: dict[str, float]  # division -> unit-hours on duty in the period
    source: str                           # e.g. "the queueing plan (geo/allocation.toml targets)"


def plan_roster(plan: pd.DataFrame, config, days: float, source: str) -> Roster:
    """A Roster from a staffing plan (geo.staffing.plan rows): officers summed over shifts, and units x
    the shift's hours x `days` as on-duty unit-hours."""
    from geo.allocate import shift_hours

    if days <= 0:
        raise ValueError(f"days = {days}: the period must hold at least one day")
    hours = {name: len(shift_hours(a, b)) for name, (a, b) in config.shifts.items()}
    officers: dict[str, float] = {}
    on_duty: dict[str, float] = {}
    for r in plan.itertuples():
        officers[r.division] = officers.get(r.division, 0.0) + float(r.officers)
        on_duty[r.division] = on_duty.get(r.division, 0.0) + float(r.units) * hours[r.shift] * days
    return Roster(officers, on_duty, source)


def workload_per_officer(source: "Engine | SqlReader", flt: Filter, roster: Roster, *,
                         units_default: int = 1, units_violent: int = 2) -> pd.DataFrame:
    """Per division: calls, unit-hours, officers, calls and unit-hours per officer, and the obligated share.

    obligated_share = obligated unit-hours (unit_hours) / on-duty unit-hours; proactive_share = 1 -
    obligated_share (the CPSM rule of 60: obligated at most 0.6). Officers and on-duty hours come
    from `roster` (its `source` is returned in the frame's attrs).
    """
    work = unit_hours(source, flt, ("division",), units_default=units_default, units_violent=units_violent)
    work = work[work["division"] != "(none)"]
    rows = []
    for r in work.itertuples():
        officers = roster.officers.get(r.division, 0.0)
        on_duty = roster.on_duty_unit_hours.get(r.division, 0.0)
        obligated = r.unit_hours / on_duty if on_duty else float("nan")
        rows.append({"division": r.division, "calls": r.calls, "unit_hours": r.unit_hours, "officers": officers,
                     "calls_per_officer": r.calls / officers if officers else float("nan"),
                     "unit_hours_per_officer": r.unit_hours / officers if officers else float("nan"),
                     "on_duty_unit_hours": on_duty, "obligated_share": obligated,
                     "proactive_share": 1 - obligated if on_duty else float("nan"),
                     "left_out": r.left_out_missing + r.left_out_imprecise + r.left_out_out_of_order})
    out = pd.DataFrame(rows, columns=["division", "calls", "unit_hours", "officers", "calls_per_officer",
                                      "unit_hours_per_officer", "on_duty_unit_hours", "obligated_share",
                                      "proactive_share", "left_out"])
    out.attrs["officers_from"] = roster.source
    return out


def clearance(engine: Engine, flt: Filter, by: str = "division") -> pd.DataFrame:
    """Clearance rate as the FBI defines it, per area: geo.metrics.clearance_rates summed over categories."""
    rows = clearance_rates(engine, flt, by)
    out = rows.groupby("area", as_index=False)[["incidents", "cleared"]].sum()
    out["clearance_rate"] = (out["cleared"] / out["incidents"]).round(4)
    return out
