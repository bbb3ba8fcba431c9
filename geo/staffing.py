"""Staffing plan: calls per division and hour of week -> units needed (queueing) -> officers.

The method, in the order of the code (docs/methods.md "Staffing" gives the references):

1. Load. Per division and hour of the week (Monday 00-01 = 0 ... Sunday 23-24 = 167): calls per
   hour = calls in that weekday-hour / the number of times that weekday occurs in the period.
   Each call keeps `units_per_call` units busy (two for calls the model labels violent) for the
   service minutes of its category, so the offered load (Erlang, the mean number of busy units)
   is calls per hour x unit-minutes per call / 60. Service minutes are measured from the calls' CAD
   times where they carry them (dispatch, or receipt where no dispatch is recorded, to clear, times
   the units assigned: measured_service), else taken from geo/allocation.toml; the output says
   which per division-shift ("measured", "assumed (configured)" or "measured where known, else
   assumed"). The Priority 1 share is measured from calls.priority where known, else configured.
2. Units needed per hour: the smallest c with P(wait) (Erlang C) <= target, the Priority 1 mean
   wait (M/M/c non-preemptive priority, Cobham) <= target and utilisation (obligated time) <=
   target (CPSM's rule of 60). A shift gets the largest hourly need among its hours, so every
   hour of the shift meets the targets.
3. Officers = units x officers per unit x the relief factor (Wilson & Weiss): the shifts a post
   needs per year (365) over the shifts an officer actually works (scheduled days - leave -
   training - court - sick), rounded up per division-shift.
4. With N officers: units are placed one at a time, each on the division-shift whose mean wait
   is the worst (ties: the one a unit helps most), as PCAM's marginal allocation does; placing
   stops at the first unit that no longer fits, so N+1 officers give every division-shift at
   least what N gave (no Alabama paradox).
5. Skills, vehicles and gear: per division-shift, the 90th percentile of calls in progress at
   once that need each (Poisson with mean calls per hour x hours per call, the M/M/infinity
   count), taken at the shift's busiest hour.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.allocate import ALLOCATION_TOML, parse_shifts, shift_hours
from geo.filters import Filter
from geo.queueing import concurrent_calls_quantile, erlang_c_table

HOURS_OF_WEEK = 168
ASSUMED = "assumed (configured)"
MEASURED = "measured"
MAX_UNITS = 2000          # a division-shift needing more than this is a configuration error
NEGLIGIBLE_WAIT_MIN = 1 / 60   # marginal allocation stops once every mean wait is under a second


@dataclass
class Targets:
    """What every hour of the plan must meet."""

    p_wait: float = 0.2          # chance a call waits for a unit
    p1_wait_min: float = 3.0     # mean wait of Priority 1 calls, minutes (CMPD holds P1 at most 3)
    utilisation: float = 0.6     # obligated share of unit time (rule of 60)

    def check(self) -> None:
        if not 0 < self.p_wait <= 1:
            raise ValueError(f"target p_wait = {self.p_wait}: must be above 0 and at most 1 (no number of units "
                             "makes the chance of waiting 0)")
        if not self.p1_wait_min > 0:
            raise ValueError(f"target p1_wait_min = {self.p1_wait_min}: must be above 0 minutes (no number of units "
                             "makes the mean wait 0)")
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"target utilisation = {self.utilisation}: must be above 0 and at most 1")


def parse_targets(text: str, base: Targets) -> Targets:
    """'p_wait=0.1,p1_wait_min=2,utilisation=0.6' over the configured targets."""
    values = dict(vars(base))
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in values:
            raise ValueError(f"target {name!r} is not one of {', '.join(values)}")
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"target {part!r} is not NAME=NUMBER") from None
    out = Targets(**values)
    out.check()
    return out


@dataclass
class Relief:
    """Days an officer is scheduled and away per year (Wilson & Weiss's shift relief factor)."""

    days_on: int = 5
    days_off: int = 2
    leave: float = 20.0
    training: float = 5.0
    court: float = 4.0
    sick: float = 6.0

    @property
    def scheduled(self) -> float:
        return 365 * self.days_on / (self.days_on + self.days_off)

    @property
    def worked(self) -> float:
        return self.scheduled - self.leave - self.training - self.court - self.sick

    @property
    def factor(self) -> float:
        """Officers needed to staff one post every day of the year."""
        return 365 / self.worked

    def check(self) -> None:
        for name in ("leave", "training", "court", "sick"):
            if getattr(self, name) < 0:
                raise ValueError(f"relief {name} = {getattr(self, name)} days: must not be negative")
        if self.days_on <= 0 or self.days_off < 0:
            raise ValueError(f"relief days_on = {self.days_on}, days_off = {self.days_off}: need days_on > 0, "
                             "days_off >= 0")
        if self.worked <= 0:
            raise ValueError(f"relief: {self.scheduled:.1f} scheduled days minus leave, training, court and sick "
                             f"leaves {self.worked:.1f} days worked; must be above 0")


@dataclass
class Need:
    """A skill, vehicle or piece of gear some call categories need."""

    kind: str                 # skill | vehicle | gear
    label: str
    categories: list[str]


@dataclass
class StaffingConfig:
    shifts: dict[str, tuple[int, int]]
    minutes: dict[str, float]
    units_default: int
    units_violent: int
    officers_per_unit: float
    p1_share: float
    min_units: int
    targets: Targets
    relief: Relief
    needs: dict[str, Need] = field(default_factory=dict)
    quantile: float = 0.9

    @classmethod
    def load(cls, path: Path = ALLOCATION_TOML) -> "StaffingConfig":
        raw = tomllib.loads(Path(path).read_text())
        try:
            shifts = parse_shifts(",".join(f"{k}={a}-{b}" for k, (a, b) in raw["shifts"].items()))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        plan = raw.get("plan", {})
        needs = {name: Need(str(v["kind"]), str(v["label"]), list(v["categories"]))
                 for name, v in raw.get("needs", {}).items()}
        config = cls(shifts, {k: float(v) for k, v in raw["service_minutes"].items()},
                     int(raw["officers_per_call"]["default"]), int(raw["officers_per_call"]["violent"]),
                     float(plan.get("officers_per_unit", 1)), float(plan.get("p1_share", 0.1)),
                     int(plan.get("min_units", 1)), Targets(**raw.get("targets", {})), Relief(**raw.get("relief", {})),
                     needs, float(plan.get("concurrency_quantile", 0.9)))
        try:
            config.check()
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return config

    def check(self) -> None:
        bad = {k: v for k, v in self.minutes.items() if not v > 0}
        if bad:
            raise ValueError("service_minutes must be above 0; " + ", ".join(f"{k} = {v}" for k, v in bad.items()))
        if self.units_default < 1 or self.units_violent < 1:
            raise ValueError(f"officers_per_call default = {self.units_default}, violent = {self.units_violent}: "
                             "each must be at least 1")
        if not self.officers_per_unit > 0:
            raise ValueError(f"plan officers_per_unit = {self.officers_per_unit}: must be above 0")
        if not 0 <= self.p1_share <= 1:
            raise ValueError(f"plan p1_share = {self.p1_share}: must be between 0 and 1")
        if self.min_units < 0:
            raise ValueError(f"plan min_units = {self.min_units}: must not be negative")
        if not 0 < self.quantile < 1:
            raise ValueError(f"plan concurrency_quantile = {self.quantile}: must be between 0 and 1")
        for name, need in self.needs.items():
            if need.kind not in ("skill", "vehicle", "gear"):
                raise ValueError(f"needs.{name}: kind {need.kind!r} is not skill, vehicle or gear")
            unknown = [c for c in need.categories if c not in self.minutes]
            if unknown or not need.categories:
                raise ValueError(f"needs.{name}: categories {unknown or need.categories} have no service_minutes")
        self.targets.check()
        self.relief.check()
        hours = sorted(h for a, b in self.shifts.values() for h in shift_hours(a, b))
        if hours != list(range(24)):
            raise ValueError(f"shifts must cover each hour of the day exactly once; they cover {hours}")


# --- 1. load -------------------------------------------------------------------------------------

def weekday_counts(period: Filter) -> np.ndarray:
    """How many Mondays ... Sundays the period holds (end excluded)."""
    counts = np.zeros(7, dtype=int)
    for i in range(period.days):
        counts[(period.start_date + timedelta(days=i)).weekday()] += 1
    return counts


def call_counts(engine: Engine, period: Filter) -> pd.DataFrame:
    """Calls per division, hour of week and category: calls, violent, p1, priority_known."""
    from geo.metrics import workload_cells

    cells = workload_cells(engine, period)
    # A call known only by its date has no hour: left out (counted in attrs).
    left_out = cells.loc[cells["date_only"] == 1, "calls"].sum()
    rows = cells.loc[cells["date_only"] == 0, ["division_id", "category", "hour_of_week", "calls", "violent", "p1",
                                              "priority_known"]].reset_index(drop=True)
    with engine.connect() as conn:
        divisions = [r[0] for r in conn.execute(sa.text("SELECT division_id FROM divisions ORDER BY division_id"))]
    rows.attrs.update(divisions=divisions, left_out_date_only=int(left_out))
    return rows


def hourly_load(counts: pd.DataFrame, divisions: list[str], weekdays: np.ndarray, config: StaffingConfig,
                service: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per division x hour of week: calls_per_hour, service_min (unit-minutes per call), offered,
    offered_p1, service_source, and calls-in-progress means per configured need (`need_<name>`)."""
    rows = counts.astype({"calls": int, "violent": int, "p1": int, "priority_known": int, "hour_of_week": int})
    rows["minutes"] = rows["category"].map(config.minutes).fillna(config.minutes.get("unknown", 30.0))
    rows["source"] = ASSUMED
    if service is not None and len(service):
        measured = service.set_index(["division_id", "hour_of_week", "category"])["service_min"]
        if (measured <= 0).any():
            raise ValueError(f"measured service_min must be above 0; {int((measured <= 0).sum())} rows are not")
        key = pd.MultiIndex.from_frame(rows[["division_id", "hour_of_week", "category"]])
        got = measured.reindex(key).to_numpy()
        rows.loc[~np.isnan(got), "minutes"] = got[~np.isnan(got)]
        rows.loc[~np.isnan(got), "source"] = MEASURED
    rows["is_measured"] = rows["source"] == MEASURED
    units = (rows["calls"] - rows["violent"]) * config.units_default + rows["violent"] * config.units_violent
    occurrences = weekdays[rows["hour_of_week"].to_numpy(dtype=int) // 24]
    rows["rate"] = rows["calls"] / occurrences
    rows["unit_minutes"] = units * rows["minutes"] / occurrences        # unit-minutes per hour
    cells = pd.MultiIndex.from_product([divisions, range(HOURS_OF_WEEK)], names=["division_id", "hour_of_week"])
    g = rows.groupby(["division_id", "hour_of_week"])
    out = pd.DataFrame({"calls_per_hour": g["rate"].sum(), "unit_minutes": g["unit_minutes"].sum(),
                        "p1": g["p1"].sum(), "known": g["priority_known"].sum(),
                        "measured": g["is_measured"].max()}).reindex(cells)
    out[["calls_per_hour", "unit_minutes", "p1", "known"]] = out[["calls_per_hour", "unit_minutes", "p1", "known"]].fillna(0)
    out["measured"] = out["measured"].fillna(False).astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["service_min"] = np.where(out["calls_per_hour"] > 0, out["unit_minutes"] / out["calls_per_hour"],
                                      float(np.mean(list(config.minutes.values()))))
    out["offered"] = out["unit_minutes"] / 60
    # The Priority 1 share of the division, measured where priorities are recorded, else configured.
    by_div = out.groupby(level=0)[["p1", "known"]].sum()
    share = (by_div["p1"] / by_div["known"]).where(by_div["known"] > 0, config.p1_share)
    out["p1_share"] = share.reindex(out.index.get_level_values(0)).to_numpy()
    out["p1_source"] = np.where(by_div["known"].reindex(out.index.get_level_values(0)).to_numpy() > 0,
                                MEASURED, ASSUMED)
    out["offered_p1"] = out["offered"] * out["p1_share"]
    out["service_source"] = np.where(out["measured"], MEASURED, ASSUMED)
    for name, need in config.needs.items():
        mine = rows[rows["category"].isin(need.categories)]
        progress = (mine["rate"] * mine["minutes"] / 60).groupby([mine["division_id"], mine["hour_of_week"]]).sum()
        out[f"need_{name}"] = progress.reindex(cells, fill_value=0.0).to_numpy()
    return out.drop(columns=["unit_minutes", "p1", "known", "measured"])


# --- 2. units needed ------------------------------------------------------------------------------

def units_needed(offered: np.ndarray, offered_p1: np.ndarray, service_min: np.ndarray, targets: Targets,
                 min_units: int = 1) -> np.ndarray:
    """Smallest c per cell meeting all three targets (vectorised over cells; Erlang B recursion in c)."""
    targets.check()
    a = np.asarray(offered, dtype=float)
    a1 = np.asarray(offered_p1, dtype=float)
    s = np.asarray(service_min, dtype=float)
    if (s[a > 0] <= 0).any() or (a < 0).any():
        raise ValueError("service minutes must be above 0 and loads not negative")
    need = np.where(a > 0, 0, max(min_units, 0))
    b = np.ones(a.shape)
    todo = a > 0
    for c in range(1, MAX_UNITS + 1):
        b = a * b / (c + a * b)
        if not todo.any():
            break
        rho = a / c
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(c > a, b / (1 - rho * (1 - b)), 1.0)
            w1 = np.where(c > a, p * s / (c - a1), np.inf)
        ok = todo & (c > a) & (p <= targets.p_wait) & (w1 <= targets.p1_wait_min) & (rho <= targets.utilisation)
        need[ok] = max(c, min_units)
        todo &= ~ok
    if todo.any():
        raise ValueError(f"no number of units up to {MAX_UNITS} meets the targets for a load of "
                         f"{a[todo].max():.1f} Erlang: {targets}")
    return need


def shift_of_hour(config: StaffingConfig) -> np.ndarray:
    """Shift name of each of the 168 hours of the week (by hour of day)."""
    of_day = {h: name for name, (a, b) in config.shifts.items() for h in shift_hours(a, b)}
    return np.array([of_day[h % 24] for h in range(HOURS_OF_WEEK)])


class WaitTables:
    """P(wait), mean wait and Priority 1 mean wait of every hour for every number of units up to a cap,
    from one Erlang B pass (column c = c units); infinite waits where c <= load."""

    def __init__(self, load: pd.DataFrame, max_units: int):
        a = load["offered"].to_numpy()[:, None]
        a1 = load["offered_p1"].to_numpy()[:, None]
        s = load["service_min"].to_numpy()[:, None]
        c = np.arange(max_units + 1)[None, :]
        self.p = erlang_c_table(load["offered"].to_numpy(), max_units)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.w = np.where(a == 0, 0.0, np.where(c > a, self.p * s / (c - a), np.inf))
            self.w1 = np.where(a == 0, 0.0, np.where(c > a, self.p * s / (c - a1), np.inf))
        self.max_units = max_units


def _shift_metrics(g: pd.DataFrame, rows: np.ndarray, tables: WaitTables, units: int) -> dict:
    """Call-weighted P(wait), mean waits and utilisation over a division-shift's hours with `units`."""
    lam = g["calls_per_hour"].to_numpy()
    a = g["offered"].to_numpy()
    p, w, w1 = tables.p[rows, units], tables.w[rows, units], tables.w1[rows, units]
    calls = lam.sum()
    lam1 = lam * g["p1_share"].to_numpy()
    with np.errstate(invalid="ignore"):
        return {"p_wait": float((lam * p).sum() / calls) if calls else 0.0,
                "mean_wait_min": float(np.where(lam > 0, lam * w, 0).sum() / calls) if calls else 0.0,
                "p1_mean_wait_min": float(np.where(lam1 > 0, lam1 * w1, 0).sum() / lam1.sum()) if lam1.sum() else 0.0,
                "worst_p1_wait_min": float(np.max(np.where(lam > 0, w1, 0))),
                "utilisation": float(a.sum() / (units * len(a))) if units else (math.inf if a.sum() else 0.0)}


# --- 3. relief and the plan --------------------------------------------------------------------------

def officers_for(units, config: StaffingConfig) -> np.ndarray:
    """Officers who keep `units` units staffed every day: units x officers per unit x relief, rounded up."""
    raw = np.asarray(units, dtype=float) * config.officers_per_unit * config.relief.factor
    return np.ceil(np.round(raw, 9)).astype(int)


def plan(load: pd.DataFrame, config: StaffingConfig, officers: int | None = None,
         units: dict[tuple[str, str], int] | None = None) -> pd.DataFrame:
    """One row per division and shift; with `officers`, units placed by marginal allocation; with
    `units` ({(division, shift): units}), that given plan evaluated (e.g. a proportional split)."""
    config.check()
    hours = pd.Series(shift_of_hour(config), name="shift")
    need = units_needed(load["offered"].to_numpy(), load["offered_p1"].to_numpy(), load["service_min"].to_numpy(),
                        config.targets, config.min_units)
    frame = load.reset_index().assign(shift=hours.to_numpy()[load.index.get_level_values(1)], units_needed=need)
    groups = {key: rows for key, rows in frame.groupby(["division_id", "shift"], sort=False)}
    index = {key: g.index.to_numpy() for key, g in groups.items()}
    order = [(d, s) for d in dict.fromkeys(frame["division_id"]) for s in config.shifts]
    needed = {key: int(groups[key]["units_needed"].max()) for key in order}
    cap = max(needed.values(), default=1) + 1
    if officers is not None:
        # Enough room for marginal allocation to bring every mean wait under NEGLIGIBLE_WAIT_MIN.
        cap = max(cap, min(MAX_UNITS, int(officers / (config.officers_per_unit * config.relief.factor)) + 2,
                           2 * cap + 20))
    if units is not None:
        missing = [key for key in order if key not in units]
        if missing or any(u < 0 for u in units.values()):
            raise ValueError(f"given units need a count >= 0 for every division and shift; missing {missing[:3]}")
        cap = max(cap, max(units.values(), default=0) + 1)
    tables = WaitTables(frame, cap)
    if units is not None:
        placed = {key: int(units[key]) for key in order}
    else:
        placed = dict(needed) if officers is None else marginal_allocation(groups, index, order, officers, config,
                                                                            tables, needed)
    rows = []
    for key in order:
        g = groups[key]
        m = _shift_metrics(g, index[key], tables, placed[key])
        units = placed[key]
        row = {"division": key[0], "shift": key[1], "calls_per_hour": g["calls_per_hour"].mean(),
               "mean_service_min": float((g["calls_per_hour"] * g["service_min"]).sum() / g["calls_per_hour"].sum())
               if g["calls_per_hour"].sum() else 0.0,
               "units": units, "units_needed": needed[key], **m,
               "officers": int(officers_for(units, config)),
               "officers_needed": int(officers_for(needed[key], config)),
               "service_times": _service_words(g),
               "p1_share_source": g["p1_source"].iloc[0]}
        row["warnings"] = "; ".join(_warnings(g, index[key], tables, units, config.targets))
        row.update(_needs(g, config))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(relief_factor=config.relief.factor, officers_given=officers,
                     officers_placed=int(out["officers"].sum()))
    return out


def _service_words(g: pd.DataFrame) -> str:
    """Where a division-shift's service times came from, over the hours that had calls."""
    source = g.loc[g["calls_per_hour"] > 0, "service_source"]
    if len(source) and (source == MEASURED).all():
        return MEASURED
    return ASSUMED if (source != MEASURED).all() else "measured where known, else assumed"


def _warnings(g: pd.DataFrame, rows: np.ndarray, tables: WaitTables, units: int, t: Targets) -> list[str]:
    a = g["offered"].to_numpy()
    c = np.full(len(a), units)
    hours = g["hour_of_week"].to_numpy()
    out = []
    over = a >= c
    if over.any():
        out.append(f"{int(over.sum())} hour(s) of the week with more work than {units} units can clear "
                   f"(up to {a.max():.1f} units' worth): calls queue without limit")
    p, w1 = tables.p[rows, units], tables.w1[rows, units]
    checks = [(p > t.p_wait + 1e-12, f"chance of waiting above {t.p_wait:.0%}"),
              (w1 > t.p1_wait_min + 1e-12, f"Priority 1 mean wait above {t.p1_wait_min:g} min"),
              (a / np.maximum(c, 1) > t.utilisation + 1e-12, f"utilisation above {t.utilisation:.0%} (rule of 60)")]
    for bad, text in checks:
        bad = bad & ~over & (a > 0)
        if bad.any():
            worst = int(hours[bad][0])
            out.append(f"{text} in {int(bad.sum())} hour(s) of the week, first {_hour_name(worst)}")
    return out


def _hour_name(how: int) -> str:
    return f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][how // 24]} {how % 24:02d}:00"


def _needs(g: pd.DataFrame, config: StaffingConfig) -> dict:
    out, reasons = {}, []
    for name, need in config.needs.items():
        mean = g[f"need_{name}"].to_numpy()
        k = concurrent_calls_quantile(mean, config.quantile)
        count = int(k.max(initial=0))
        out[name] = count
        if count:
            busiest = int(g["hour_of_week"].to_numpy()[int(np.argmax(mean))])
            reasons.append(f"{count} {need.label} ({need.kind}): {', '.join(c.replace('_', ' ') for c in need.categories)}"
                           f" calls in progress average {mean.max():.2f} at the busiest hour ({_hour_name(busiest)});"
                           f" {count} cover {config.quantile:.0%} of the time")
    out["needs_reasoning"] = "; ".join(reasons) if reasons else "no configured skill, vehicle or gear needed"
    return out


# --- 4. marginal allocation -------------------------------------------------------------------------

def _delay(g: pd.DataFrame, rows: np.ndarray, tables: WaitTables, units: int) -> tuple[float, float]:
    """(call-weighted mean wait, overload) of a division-shift with `units`; overload breaks ties among
    infinite waits (the most overloaded first)."""
    lam = g["calls_per_hour"].to_numpy()
    if lam.sum() == 0:
        return 0.0, 0.0
    w = tables.w[rows, min(units, tables.max_units)][lam > 0]
    wait = float((lam[lam > 0] * w).sum() / lam.sum()) if np.isfinite(w).all() else math.inf
    return wait, float(g["offered"].max() / max(units, 0.5))


def marginal_allocation(groups: dict, index: dict, order: list, officers: int, config: StaffingConfig,
                        tables: WaitTables, needed: dict) -> dict:
    """Units per division-shift from N officers: start at the minimum, then one unit at a time to the
    worst mean wait among the division-shifts still short of what their targets need (`needed`), then
    among all (ties: the largest reduction, then the most overloaded). Stops at the first unit whose
    officers no longer fit, or once every target is met and every mean wait is under a second (the
    rest are not needed). The order of steps does not depend on N, so more officers never take a
    unit away."""
    units = {key: config.min_units for key in order}
    floor = int(officers_for(np.array(list(units.values())), config).sum())
    if officers < floor:
        raise ValueError(f"--officers {officers} is below the {floor} officers that {config.min_units} unit(s) per "
                         f"division and shift need (relief factor {config.relief.factor:.3f})")
    used = floor

    def delay(key, u):
        return _delay(groups[key], index[key], tables, u)

    state = {key: delay(key, units[key]) for key in order}
    after = {key: delay(key, units[key] + 1)[0] for key in order}

    def priority(key):
        wait, overload = state[key]
        gain = (wait - after[key]) if math.isfinite(wait) else math.inf
        return (units[key] < needed[key], wait, gain, overload)

    while True:
        worst = max(order, key=priority)
        if units[worst] >= tables.max_units or (state[worst][0] < NEGLIGIBLE_WAIT_MIN
                                                 and all(units[k] >= needed[k] for k in order)):
            break        # targets met and no mean wait reaches a second: the rest are not needed
        cost = int(officers_for(units[worst] + 1, config)) - int(officers_for(units[worst], config))
        if used + cost > officers:
            break
        used += cost
        units[worst] += 1
        state[worst] = delay(worst, units[worst])
        after[worst] = delay(worst, units[worst] + 1)[0]
    return units


def cad_calls(engine: Engine, period: Filter, start=None) -> pd.DataFrame:
    """The period's calls with an hour (not date-only) and a division, one row each, with their CAD times in minutes.

    Columns: division_id, hour_of_week (local, Monday 00-01 = 0), category ('unknown' where none),
    priority, violent (the model's label, false where none), busy_min, travel_min, units_assigned,
    and `minute` (local wall-clock minutes from the local midnight `start`, a date) when `start` is given.
    busy_min: dispatch (or receipt, where no dispatch time is recorded) to clear, only where both ends
    are recorded instants and clear comes after; travel_min: dispatch to on scene, likewise.
    Row by row: the simulation replays each call, and the measured service times weight each by its units.
    """
    from geo import models
    from geo.metrics import local_hour_of_week

    t = models.calls
    begin = sa.func.coalesce(t.c.dispatched_at, t.c.received_at)
    busy = sa.case((sa.and_(t.c.cleared_at_precision == "time",
                            sa.func.coalesce(t.c.dispatched_at_precision, t.c.received_at_precision) == "time",
                            t.c.cleared_at > begin), sa.extract("epoch", t.c.cleared_at - begin) / 60))
    travel = sa.case((sa.and_(t.c.onscene_at_precision == "time", t.c.dispatched_at_precision == "time",
                              t.c.onscene_at >= t.c.dispatched_at),
                      sa.extract("epoch", t.c.onscene_at - t.c.dispatched_at) / 60))
    columns = [t.c.division_id, local_hour_of_week(t, period.tz).label("hour_of_week")]
    if start is not None:
        local = sa.func.timezone(period.tz, t.c.received_at)
        origin = sa.cast(sa.bindparam("start", start, type_=sa.Date), sa.DateTime)
        columns.append((sa.extract("epoch", local - origin) / 60).label("minute"))
    columns += [t.c.priority, sa.func.coalesce(t.c.category, sa.literal_column("'unknown'")).label("category"),
                sa.func.coalesce(t.c.label, sa.false()).label("violent"), busy.label("busy_min"),
                travel.label("travel_min"), t.c.units_assigned]
    query = (sa.select(*columns)
             .where(t.c.division_id.is_not(None), t.c.received_at_precision != "date", period.predicate("calls")))
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def measured_service(engine: Engine, period: Filter, config: StaffingConfig) -> pd.DataFrame:
    """Measured service minutes per division, hour of week and category from the calls' CAD times:
    (division_id, hour_of_week, category, service_min, measured_calls), where service_min x the configured
    units of those calls (hourly_load's formula) gives the measured unit-minutes (busy time x units
    assigned, the configured units where none are recorded). Empty where no call carries CAD times."""
    rows = cad_calls(engine, period)
    rows = rows[rows["busy_min"].notna()]
    columns = ["division_id", "hour_of_week", "category", "service_min", "measured_calls"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    configured = np.where(rows["violent"].to_numpy(dtype=bool), config.units_violent, config.units_default)
    units = rows["units_assigned"].to_numpy(dtype=float, na_value=np.nan)
    units = np.where(np.isnan(units) | (units < 1), configured, units)
    rows = rows.assign(unit_minutes=rows["busy_min"].to_numpy(dtype=float) * units, configured=configured)
    g = rows.groupby(["division_id", "hour_of_week", "category"])
    out = pd.DataFrame({"unit_minutes": g["unit_minutes"].sum(), "configured": g["configured"].sum(),
                        "measured_calls": g.size()}).reset_index()
    out["service_min"] = out["unit_minutes"] / out["configured"]
    return out[columns]


def build_plan(engine: Engine, period: Filter, config: StaffingConfig | None = None, officers: int | None = None,
               service: pd.DataFrame | None = None) -> pd.DataFrame:
    """The plan for the period's calls (see plan); service times measured from the CAD times where the
    calls carry them (measured_service), unless a `service` table is given."""
    config = config or StaffingConfig.load()
    counts = call_counts(engine, period)
    if service is None:
        service = measured_service(engine, period, config)
    load = hourly_load(counts, counts.attrs["divisions"], weekday_counts(period), config, service)
    out = plan(load, config, officers)
    out.attrs["left_out_date_only"] = counts.attrs["left_out_date_only"]
    return out
