"""Discrete-event simulation of patrol units answering calls: does a staffing plan meet its targets?

The queueing formulas (geo/queueing.py) assume Poisson arrivals, exponential service, one unit per
call and a steady load; real calls break all four. This module replays calls one by one against
units on duty per division and hour of the week and measures what the formulas predict. The rules
(docs/methods.md "Simulation" gives the references):

- Time is minutes from the start of the period; hour t // 60 of the run is hour of the week
  (start_how + t // 60) % 168 (Monday 00-01 = 0), which sets each division's units on duty.
- A call asks for `units` units (e.g. two for a violent call). It is dispatched as soon as one unit
  of its division is free and takes up to that many of the free ones (the first unit on scene makes
  the response time; a backup that is busy elsewhere is not waited for, as dispatchers do not hold
  a call for it). A call that finds no unit free waits in its division's queue: Priority 1 first,
  then 2 ..., first come first served within a priority.
- Cross-division help (a simplification of Larson's hypercube model, where the nearest free unit
  answers): a call that finds no free unit in its own division, at its arrival, takes units from
  the neighbouring division with the most free units, if that neighbour has no call waiting and
  keeps at least `help_reserve` units free afterwards; the helpers drive `help_travel_min` further
  and stay busy that much longer. Help is never sent later to calls already queued.
- A unit is busy for the call's service time (dispatch to clear, travel included, as CAD records
  time on a call), plus any help travel. Response time = dispatch delay (time queued) + travel.
- When fewer units are on duty after a shift change than are busy, the busy ones finish their
  calls first (overtime); utilisation counts the busy time of a division's own units, wherever
  they work, over its unit-hours on duty.

The event loop is a plain heap of unit clear-times merged with the sorted arrivals and the hour
ticks: one pass, no third-party scheduler (measured in bench/simulate.py).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

HOURS_OF_WEEK = 168


@dataclass
class SimCalls:
    """Calls to replay, sorted by arrival; arrays of one length."""

    arrival_min: np.ndarray      # minutes from the start of the run
    division: np.ndarray         # index into the staffing array's rows
    priority: np.ndarray         # 1 (most urgent) .. 9
    service_min: np.ndarray      # minutes a unit is busy (dispatch to clear, travel included)
    travel_min: np.ndarray       # minutes from dispatch to on scene
    units: np.ndarray            # units the call needs

    def __post_init__(self) -> None:
        self.arrival_min = np.asarray(self.arrival_min, dtype=float)
        n = len(self.arrival_min)
        self.division = np.asarray(self.division, dtype=np.int64)
        self.priority = np.asarray(self.priority, dtype=np.int64)
        self.service_min = np.asarray(self.service_min, dtype=float)
        self.travel_min = np.asarray(self.travel_min, dtype=float)
        self.units = np.asarray(self.units, dtype=np.int64)
        for name in ("division", "priority", "service_min", "travel_min", "units"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"calls: {name} has {len(getattr(self, name))} values for {n} arrivals")
        checks = [("arrival_min", self.arrival_min < 0, "must not be negative"),
                  ("service_min", ~(self.service_min > 0), "must be above 0"),
                  ("travel_min", ~(self.travel_min >= 0), "must not be negative"),
                  ("units", self.units < 1, "must be at least 1"),
                  ("priority", self.priority < 1, "must be at least 1")]
        for name, bad, rule in checks:
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"calls: {name} {rule}; {int(bad.sum())} values are not (first: call {i}, "
                                 f"{getattr(self, name)[i]})")
        if n and (np.diff(self.arrival_min) < 0).any():
            raise ValueError("calls: arrival_min must be sorted (oldest first)")

    def __len__(self) -> int:
        return len(self.arrival_min)


@dataclass
class SimResult:
    """Per call: wait (dispatch delay), response, queued, helped, no unit free in its division; per
    division x hour of week: busy and on-duty unit-minutes."""

    calls: SimCalls
    wait_min: np.ndarray
    response_min: np.ndarray
    queued: np.ndarray
    helped: np.ndarray
    no_unit: np.ndarray
    busy_unit_min: np.ndarray       # (divisions, 168)
    duty_unit_min: np.ndarray       # (divisions, 168)
    hour_of_week: np.ndarray        # of each call's arrival
    divisions: list[str] = field(default_factory=list)

    def by_group(self, shift_of_hour: np.ndarray | None = None) -> pd.DataFrame:
        """Per division (and shift, given the shift of each hour of the week): calls, P1 response median
        and p90, mean P1 wait, share queued, no-unit count, utilisation."""
        names = np.array(self.divisions or [str(i) for i in range(self.busy_unit_min.shape[0])], dtype=object)
        frame = pd.DataFrame({"division": names[self.calls.division], "priority": self.calls.priority,
                              "wait": self.wait_min, "response": self.response_min, "queued": self.queued,
                              "no_unit": self.no_unit, "helped": self.helped})
        keys = ["division"]
        busy = pd.DataFrame(self.busy_unit_min, index=names).stack()
        duty = pd.DataFrame(self.duty_unit_min, index=names).stack()
        if shift_of_hour is not None:
            frame["shift"] = np.asarray(shift_of_hour)[self.hour_of_week]
            keys.append("shift")
            shifts = np.asarray(shift_of_hour)[busy.index.get_level_values(1)]
            busy = busy.groupby([busy.index.get_level_values(0), shifts]).sum()
            duty = duty.groupby([duty.index.get_level_values(0), shifts]).sum()
        else:
            busy, duty = busy.groupby(level=0).sum(), duty.groupby(level=0).sum()
        out = summarise(frame, keys)
        util = (busy / duty.where(duty > 0)).rename("utilisation")
        util.index.names = keys
        return out.join(util, on=keys)

    def overall(self) -> dict:
        """City-wide figures: P1 and all-call response median/p90, share queued, no-unit count, utilisation."""
        frame = pd.DataFrame({"priority": self.calls.priority, "wait": self.wait_min, "response": self.response_min,
                              "queued": self.queued, "no_unit": self.no_unit, "helped": self.helped, "all": 0})
        row = summarise(frame, ["all"]).iloc[0].to_dict()
        row.pop("all")
        duty = self.duty_unit_min.sum()
        row["utilisation"] = float(self.busy_unit_min.sum() / duty) if duty else math.nan
        return row


def summarise(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Response-time percentiles and waiting shares of simulated calls per group (frame from SimResult)."""
    g = frame.groupby(keys, sort=False)
    p1 = frame[frame["priority"] == 1].groupby(keys, sort=False)
    out = pd.DataFrame({"calls": g.size(), "share_waiting": g["queued"].mean(), "no_unit": g["no_unit"].sum(),
                        "helped": g["helped"].sum(), "mean_wait_min": g["wait"].mean(),
                        "response_median_min": g["response"].median(),
                        "response_p90_min": g["response"].quantile(0.9)})
    p1_out = pd.DataFrame({"p1_calls": p1.size(), "p1_mean_wait_min": p1["wait"].mean(),
                           "p1_response_median_min": p1["response"].median(),
                           "p1_response_p90_min": p1["response"].quantile(0.9),
                           "p1_response_mean_min": p1["response"].mean()})
    out = out.join(p1_out).reset_index()
    out["p1_calls"] = out["p1_calls"].fillna(0).astype(int)
    return out


def simulate(calls: SimCalls, staffing: np.ndarray, start_how: int = 0,
             neighbours: dict[int, list[int]] | None = None, help_travel_min: float = 5.0,
             help_reserve: int = 1, divisions: list[str] | None = None) -> SimResult:
    """Replay `calls` against `staffing` (units on duty, divisions x 168 hours of the week); see the
    module docstring for the rules."""
    staffing = np.asarray(staffing)
    if staffing.ndim != 2 or staffing.shape[1] != HOURS_OF_WEEK:
        raise ValueError(f"staffing must be divisions x {HOURS_OF_WEEK} hours of the week, not {staffing.shape}")
    if (staffing < 0).any():
        raise ValueError("staffing: units on duty must not be negative")
    if help_travel_min < 0 or help_reserve < 0:
        raise ValueError(f"help_travel_min = {help_travel_min}, help_reserve = {help_reserve}: must not be negative")
    if not 0 <= start_how < HOURS_OF_WEEK:
        raise ValueError(f"start_how = {start_how}: must be an hour of the week, 0..167")
    n_div = staffing.shape[0]
    if len(calls) and (calls.division.min() < 0 or calls.division.max() >= n_div):
        raise ValueError(f"calls: division indexes must be 0..{n_div - 1}")
    used = np.unique(calls.division)
    idle = [int(d) for d in used if staffing[d].max() == 0]
    if idle:
        names = [divisions[d] if divisions else str(d) for d in idle]
        raise ValueError(f"staffing: division(s) {', '.join(names)} have calls but no unit in any hour of the week")
    neighbours = {int(k): [int(x) for x in v] for k, v in (neighbours or {}).items()}
    table = staffing.astype(int).tolist()
    arrival = calls.arrival_min.tolist()
    div = calls.division.tolist()
    pri = calls.priority.tolist()
    service = calls.service_min.tolist()
    need = calls.units.tolist()
    n = len(arrival)
    wait = [0.0] * n
    extra = [0.0] * n          # help travel
    queued = bytearray(n)
    helped = bytearray(n)
    no_unit = bytearray(n)
    done = bytearray(n)
    busy = [0] * n_div
    cap = [table[d][start_how] for d in range(n_div)]
    queues: list[list] = [[] for _ in range(n_div)]
    clears: list = []          # (time, seq, division, units)
    busy_area = [[0.0] * HOURS_OF_WEEK for _ in range(n_div)]
    duty_hours = [0] * HOURS_OF_WEEK
    last = [0.0] * n_div
    hour = 0
    how = start_how
    next_tick = 60.0
    seq = 0
    heappush, heappop = heapq.heappush, heapq.heappop

    def dispatch(i: int, d: int, k: int, t: float) -> None:
        nonlocal seq
        area = busy_area[d]
        area[how] += busy[d] * (t - last[d])
        last[d] = t
        busy[d] += k
        done[i] = 1
        seq += 1
        heappush(clears, (t + service[i] + extra[i], seq, d, k))

    def drain(d: int, t: float) -> None:
        q = queues[d]
        while q:
            free = cap[d] - busy[d]
            if free < 1:
                return
            i = heappop(q)[2]
            wait[i] = t - arrival[i]
            dispatch(i, d, min(need[i], free), t)

    nxt = 0
    while nxt < n or clears or any(queues):
        t_arr = arrival[nxt] if nxt < n else math.inf
        t_clr = clears[0][0] if clears else math.inf
        if t_clr <= t_arr and t_clr <= next_tick:
            t, _, d, k = heappop(clears)
            busy_area[d][how] += busy[d] * (t - last[d])
            last[d] = t
            busy[d] -= k
            drain(d, t)
        elif next_tick <= t_arr:
            t = next_tick
            for d in range(n_div):
                busy_area[d][how] += busy[d] * (t - last[d])
                last[d] = t
            duty_hours[how] += 1
            hour += 1
            how = (start_how + hour) % HOURS_OF_WEEK
            next_tick = 60.0 * (hour + 1)
            for d in range(n_div):
                cap[d] = table[d][how]
                drain(d, t)
        else:
            i = nxt
            nxt += 1
            t = t_arr
            d = div[i]
            free = cap[d] - busy[d]
            if not queues[d] and free >= 1:
                dispatch(i, d, min(need[i], free), t)
                continue
            if free < 1:
                no_unit[i] = 1
                best, most = -1, -1
                for m in neighbours.get(d, ()):
                    spare = cap[m] - busy[m] - help_reserve
                    if not queues[m] and spare >= 1 and spare > most:
                        best, most = m, spare
                if best >= 0:
                    helped[i] = 1
                    extra[i] = help_travel_min
                    dispatch(i, best, min(need[i], most), t)
                    continue
            heappush(queues[d], (pri[i], t, i))
            drain(d, t)
            if not done[i]:
                queued[i] = 1
    # The last, partial hour counts its on-duty time up to the last event.
    end = max(last) if n_div else 0.0
    for d in range(n_div):
        busy_area[d][how] += busy[d] * (end - last[d])
    wait_a = np.array(wait)
    queued_a = np.frombuffer(bytes(queued), dtype=np.uint8).astype(bool) | (wait_a > 0)
    duty = np.array(duty_hours, dtype=float)[None, :] * 60.0 * staffing
    duty[:, how] += staffing[:, how] * (end - 60.0 * hour)
    how_of_call = ((start_how + (calls.arrival_min // 60).astype(np.int64)) % HOURS_OF_WEEK)
    return SimResult(calls, wait_a, wait_a + calls.travel_min + np.array(extra), queued_a,
                     np.frombuffer(bytes(helped), dtype=np.uint8).astype(bool),
                     np.frombuffer(bytes(no_unit), dtype=np.uint8).astype(bool),
                     np.array(busy_area), duty, how_of_call, list(divisions or []))


# --- plans against the simulation -------------------------------------------------------------------

@dataclass
class SimulationConfig:
    """Assumptions of `hotspots simulate` where the calls carry no CAD times ([simulation] in allocation.toml)."""

    travel_min: float = 6.0          # mean drive from dispatch to on scene, minutes
    travel_cv: float = 0.5           # its coefficient of variation (gamma)
    service_cv: float = 1.0          # of time on a call around the configured mean (lognormal: heavy right tail)
    help_travel_min: float = 5.0     # extra drive of a unit helping a neighbouring division
    help_reserve: int = 1            # free units a neighbour keeps for itself
    unknown_priority: int = 3        # priority of a call without one (P1 drawn at the plan's p1_share instead)
    seed: int = 2264

    @classmethod
    def load(cls, path=None) -> "SimulationConfig":
        """The [simulation] table of allocation.toml (defaults where absent), checked."""
        import tomllib
        from pathlib import Path

        from geo.allocate import ALLOCATION_TOML

        path = Path(path or ALLOCATION_TOML)
        raw = tomllib.loads(path.read_text()).get("simulation", {})
        try:
            config = cls(**raw)
            config.check()
        except (TypeError, ValueError) as exc:     # TypeError: a key that is not a field
            raise ValueError(f"{path}: [simulation] {exc}") from None
        return config

    def check(self) -> None:
        """Refuse negative times and impossible shares, naming the value."""
        for name in ("travel_min", "travel_cv", "service_cv", "help_travel_min"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"simulation {name} = {getattr(self, name)}: must not be negative")
        if self.help_reserve < 0:
            raise ValueError(f"simulation help_reserve = {self.help_reserve}: must not be negative")
        if self.unknown_priority < 1:
            raise ValueError(f"simulation unknown_priority = {self.unknown_priority}: must be 1 or more")


def _draw(rng: np.random.Generator, mean: np.ndarray, cv: float, kind: str) -> np.ndarray:
    """Random times with the given means and coefficient of variation (gamma or lognormal); the mean if cv = 0."""
    mean = np.asarray(mean, dtype=float)
    if cv == 0:
        return mean.copy()
    if kind == "gamma":
        shape = 1 / cv ** 2
        return rng.gamma(shape, mean / shape)
    sigma2 = math.log(1 + cv ** 2)
    return rng.lognormal(np.log(np.maximum(mean, 1e-9)) - sigma2 / 2, math.sqrt(sigma2))


def assumed_calls(frame: pd.DataFrame, divisions: list[str], staffing_config, sim: SimulationConfig,
                  p1_share: dict[str, float] | None = None) -> tuple[SimCalls, dict[str, str]]:
    """SimCalls from rows (division_id, minute, priority, category, violent; optional busy_min, travel_min,
    units_assigned measured from CAD times, NaN where unknown): what is not measured is drawn around the
    configured means, units from the violent flag; the sources say what was measured and what assumed."""
    rng = np.random.default_rng(sim.seed)
    frame = frame.sort_values("minute", kind="stable")
    index = {d: i for i, d in enumerate(divisions)}
    unknown_div = sorted(set(frame["division_id"]) - set(index))
    if unknown_div:
        raise ValueError(f"calls name divisions {unknown_div[:5]} that are not in the plan")
    minutes = frame["category"].map(staffing_config.minutes).fillna(staffing_config.minutes.get("unknown", 30.0))
    n = len(frame)

    def measured(column: str) -> np.ndarray:
        return frame[column].to_numpy(dtype=float, na_value=np.nan) if column in frame.columns else np.full(n, np.nan)

    cad_travel, cad_busy, cad_units = measured("travel_min"), measured("busy_min"), measured("units_assigned")
    travel = np.where(cad_travel >= 0, cad_travel, _draw(rng, np.full(n, sim.travel_min), sim.travel_cv, "gamma"))
    # The configured minutes are the whole time on a call, drive included: at least the drive plus a minute.
    drawn = np.maximum(_draw(rng, minutes.to_numpy(), sim.service_cv, "lognormal"), travel + 1)
    service = np.where(cad_busy > 0, np.maximum(cad_busy, travel + 1e-6), drawn)
    priority = frame["priority"].to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(priority)
    share = frame["division_id"].map(p1_share or {}).fillna(staffing_config.p1_share).to_numpy()
    drawn = np.where(rng.random(len(frame)) < share, 1, sim.unknown_priority)
    priority = np.where(missing, drawn, priority).astype(int)
    units = np.where(frame["violent"].to_numpy(dtype=bool), staffing_config.units_violent,
                     staffing_config.units_default)
    units = np.where(cad_units >= 1, np.nan_to_num(cad_units, nan=1.0), units).astype(int)
    calls = SimCalls(frame["minute"].to_numpy(dtype=float), frame["division_id"].map(index).to_numpy(), priority,
                     service, travel, units)

    def said(known: np.ndarray, assumed: str) -> str:
        share = float(known.mean()) if n else 0.0
        if share == 1:
            return "measured (CAD times)"
        return (f"measured (CAD times) for {share:.0%} of calls, the rest " if share else "") + assumed

    sources = {"service": said(cad_busy > 0, f"assumed (configured minutes by category, lognormal cv "
                                             f"{sim.service_cv:g})"),
               "travel": said(cad_travel >= 0, f"assumed (mean {sim.travel_min:g} min, gamma cv {sim.travel_cv:g})"),
               "units": said(cad_units >= 1, "assumed (officers_per_call: two for calls labelled violent)"),
               "priority": "recorded" if not missing.any() else
               f"recorded for {1 - missing.mean():.0%}; the rest drawn: P1 at the plan's share, else "
               f"Priority {sim.unknown_priority}"}
    return calls, sources


def calls_from_db(engine, period, staffing_config, sim: SimulationConfig, divisions: list[str],
                  p1_share: dict[str, float] | None = None) -> tuple[SimCalls, dict[str, str]]:
    """The period's calls with an hour (not date-only) and a division, as SimCalls from the period's start."""
    from geo.staffing import cad_calls

    frame = cad_calls(engine, period, start=period.start_date)
    frame = frame[["division_id", "minute", "priority", "category", "violent", "busy_min", "travel_min",
                   "units_assigned"]]
    # Local wall-clock minutes: the repeated autumn hour may put a call a few minutes before period start.
    frame["minute"] = frame["minute"].clip(lower=0)
    return assumed_calls(frame, divisions, staffing_config, sim, p1_share)


def division_neighbours(engine, divisions: list[str]) -> dict[int, list[int]]:
    """Divisions whose areas touch, by index in `divisions` (who may help whom)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        pairs = conn.execute(sa.text(
            "SELECT a.division_id, b.division_id FROM divisions a JOIN divisions b"
            " ON a.division_id < b.division_id AND ST_Intersects(a.geom, b.geom)")).all()
    index = {d: i for i, d in enumerate(divisions)}
    out: dict[int, list[int]] = {}
    for a, b in pairs:
        if a in index and b in index:
            out.setdefault(index[a], []).append(index[b])
            out.setdefault(index[b], []).append(index[a])
    return out


def staffing_array(table: pd.DataFrame, divisions: list[str], shift_of_hour: np.ndarray) -> np.ndarray:
    """Units on duty per division x hour of week from a plan (rows division, shift, units)."""
    units = table.set_index(["division", "shift"])["units"]
    out = np.zeros((len(divisions), HOURS_OF_WEEK), dtype=int)
    for i, d in enumerate(divisions):
        for h in range(HOURS_OF_WEEK):
            out[i, h] = int(units.get((d, shift_of_hour[h]), 0))
    return out


def proportional_units(load: pd.DataFrame, config, total_units: int) -> dict[tuple[str, str], int]:
    """Today's split (geo/allocate.py): `total_units` unit-posts by workload (calls x unit-minutes) over
    division-shifts with the largest-remainder method, after `min_units` each."""
    from geo.allocate import largest_remainder
    from geo.staffing import shift_of_hour

    shifts = shift_of_hour(config)
    frame = load.reset_index()
    frame["shift"] = shifts[frame["hour_of_week"].to_numpy()]
    work = frame.groupby(["division_id", "shift"], sort=False)["offered"].sum()
    keys = [(d, s) for d in dict.fromkeys(frame["division_id"]) for s in config.shifts]
    work = work.reindex(keys, fill_value=0.0)
    floor = config.min_units * len(keys)
    if total_units < floor:
        raise ValueError(f"{total_units} unit-posts are fewer than {config.min_units} per division and shift "
                         f"({floor})")
    extra = largest_remainder(work.to_numpy(), total_units - floor)
    return {key: int(config.min_units + e) for key, e in zip(keys, extra)}


def targets_met(table: pd.DataFrame, targets) -> pd.Series:
    """Per simulated division-shift: share waiting, Priority 1 mean wait and utilisation within the targets."""
    p1 = table["p1_mean_wait_min"].fillna(0.0)
    return ((table["share_waiting"] <= targets.p_wait) & (p1 <= targets.p1_wait_min)
            & (table["utilisation"].fillna(0.0) <= targets.utilisation))


@dataclass
class Comparison:
    """The queueing plan and today's proportional plan, each evaluated by the formulas and by simulation."""

    plans: dict[str, pd.DataFrame]          # plan name -> geo.staffing.plan table
    simulated: dict[str, pd.DataFrame]      # plan name -> per division-shift simulation
    overall: dict[str, dict]                # plan name -> city-wide simulated figures
    sources: dict[str, str]

    def summary(self) -> pd.DataFrame:
        """One row per measure, one column per plan, and queueing minus proportional."""
        rows = {}
        for name in self.plans:
            o = self.overall[name]
            sim = self.simulated[name]
            rows[name] = {
                "unit_posts": int(self.plans[name]["units"].sum()),
                "officers": int(self.plans[name]["officers"].sum()),
                "p1_response_median_min": o["p1_response_median_min"],
                "p1_response_p90_min": o["p1_response_p90_min"],
                "p1_mean_wait_min": o["p1_mean_wait_min"],
                "response_median_min": o["response_median_min"], "response_p90_min": o["response_p90_min"],
                "share_waiting": o["share_waiting"], "no_unit": int(o["no_unit"]), "helped": int(o["helped"]),
                "utilisation": o["utilisation"], "max_utilisation": float(sim["utilisation"].max()),
                "worst_p1_mean_wait_min": float(sim["p1_mean_wait_min"].max()),
                "division_shifts_meeting_targets": int(sim["meets_targets"].sum()),
                "division_shifts": len(sim),
            }
        out = pd.DataFrame(rows)
        if {"queueing", "proportional"} <= set(out.columns):
            out["difference"] = out["queueing"] - out["proportional"]
        return out


def compare_plans(load: pd.DataFrame, config, calls: SimCalls, divisions: list[str], start_how: int,
                  officers: int | None = None, neighbours: dict[int, list[int]] | None = None,
                  sim: SimulationConfig | None = None, sources: dict[str, str] | None = None) -> Comparison:
    """Build the queueing plan (N officers by marginal allocation, or what the targets need) and the
    proportional split of the same unit-posts, simulate both on `calls`, and compare."""
    from geo.staffing import plan

    sim = sim or SimulationConfig()
    sim.check()
    queueing = plan(load, config, officers)
    proportional = plan(load, config, units=proportional_units(load, config, int(queueing["units"].sum())))
    plans = {"queueing": queueing, "proportional": proportional}
    simulated, overall = {}, {}
    for name, table in plans.items():
        simulated[name], overall[name] = simulate_plan(table, config, calls, divisions, start_how, neighbours, sim)
    return Comparison(plans, simulated, overall, dict(sources or {}))


def simulate_plan(table: pd.DataFrame, config, calls: SimCalls, divisions: list[str], start_how: int,
                  neighbours: dict[int, list[int]] | None, sim: SimulationConfig) -> tuple[pd.DataFrame, dict]:
    """One plan (rows division, shift, units) simulated: per division-shift figures with whether the
    targets are met, and the city-wide figures."""
    from geo.staffing import shift_of_hour

    shifts = shift_of_hour(config)
    result = simulate(calls, staffing_array(table, divisions, shifts), start_how, neighbours,
                      sim.help_travel_min, sim.help_reserve, divisions)
    by = table[["division", "shift"]].merge(result.by_group(shifts), on=["division", "shift"], how="left")
    by["calls"] = by["calls"].fillna(0).astype(int)
    counts = ["share_waiting", "no_unit", "helped", "mean_wait_min"]
    by[counts] = by[counts].fillna(0)
    by.insert(2, "units", table["units"].to_numpy())
    by["meets_targets"] = targets_met(by, config.targets)
    return by, result.overall()


@dataclass
class PeriodInputs:
    """What a plan and its simulation need from the database for one period."""

    load: pd.DataFrame
    calls: SimCalls
    divisions: list[str]
    start_how: int
    neighbours: dict[int, list[int]] | None
    sources: dict[str, str]


def period_inputs(engine, period, config, sim: SimulationConfig, help_neighbours: bool = True) -> PeriodInputs:
    """The period's load (service times measured from CAD times where present) and calls to replay."""
    from geo.staffing import call_counts, hourly_load, measured_service, weekday_counts

    counts = call_counts(engine, period)
    divisions = counts.attrs["divisions"]
    load = hourly_load(counts, divisions, weekday_counts(period), config, measured_service(engine, period, config))
    p1_share = load.groupby(level=0)["p1_share"].first().to_dict()
    calls, sources = calls_from_db(engine, period, config, sim, divisions, p1_share)
    neighbours = division_neighbours(engine, divisions) if help_neighbours else None
    sources["help"] = (f"from touching divisions, {sim.help_travel_min:g} min further, keeping "
                       f"{sim.help_reserve} free" if help_neighbours else "none")
    sources["calls"] = f"{len(calls):,}"
    return PeriodInputs(load, calls, divisions, period.start_date.weekday() * 24, neighbours, sources)


def simulate_plans(engine, period, config=None, sim: SimulationConfig | None = None,
                   officers: int | None = None, help_neighbours: bool = True) -> Comparison:
    """The period's calls from the database: both plans built from their load and simulated on them."""
    from geo.staffing import StaffingConfig

    config = config or StaffingConfig.load()
    sim = sim or SimulationConfig.load()
    inputs = period_inputs(engine, period, config, sim, help_neighbours)
    out = compare_plans(inputs.load, config, inputs.calls, inputs.divisions, inputs.start_how, officers,
                        inputs.neighbours, sim, inputs.sources)
    out.sources["plan service times"] = ", ".join(sorted(set(out.plans["queueing"]["service_times"])))
    return out
