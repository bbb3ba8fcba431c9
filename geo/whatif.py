"""What-if on a staffing plan: move officers between divisions or shifts, or change a target, and see the
change in expected delay (the queueing formulas of geo/staffing.py) and simulated response (geo/simulate.py).

The base is the queueing plan for the period (N officers by marginal allocation, or what the targets
need). A changed target rebuilds that plan under the new targets; moves are then applied to its units.
Officers move as whole unit-posts: k officers staff floor(k / (officers per unit x relief factor))
posts, the rest stay where they were (said in the result).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from geo.simulate import SimCalls, SimulationConfig, simulate_plan
from geo.staffing import StaffingConfig, parse_targets, plan

_MOVE = re.compile(r"^\s*(\d+)\s*:\s*([^/\s]+)\s*/\s*([^-\s>]+)\s*->\s*([^/\s]+)\s*/\s*(\S+?)\s*$")


@dataclass(frozen=True)
class Move:
    """k officers from one division-shift to another."""

    officers: int
    source: tuple[str, str]
    target: tuple[str, str]


def parse_moves(text: str) -> list[Move]:
    """'2:01/night->05/night; 3:02/day->02/evening' -> moves (officers:division/shift->division/shift)."""
    moves = []
    for part in (p for p in text.split(";") if p.strip()):
        m = _MOVE.match(part)
        if not m:
            raise ValueError(f"move {part.strip()!r} is not OFFICERS:DIVISION/SHIFT->DIVISION/SHIFT, "
                             "e.g. 2:01/night->05/night")
        k, d1, s1, d2, s2 = m.groups()
        if int(k) < 1:
            raise ValueError(f"move {part.strip()!r}: the number of officers must be at least 1")
        moves.append(Move(int(k), (d1, s1), (d2, s2)))
    return moves


def apply_moves(units: dict[tuple[str, str], int], moves: list[Move], config: StaffingConfig) -> tuple[dict, list[str]]:
    """Units per division-shift after the moves, and a note per move on what it moved."""
    per_post = config.officers_per_unit * config.relief.factor
    out = dict(units)
    notes = []
    for move in moves:
        for end in (move.source, move.target):
            if end not in out:
                known = sorted({d for d, _ in out}), sorted({s for _, s in out})
                raise ValueError(f"move {move.officers}:{'/'.join(move.source)}->{'/'.join(move.target)}: "
                                 f"{'/'.join(end)} is not a division/shift of the plan (divisions "
                                 f"{', '.join(known[0])}; shifts {', '.join(known[1])})")
        posts = math.floor(move.officers / per_post + 1e-9)
        if posts < 1:
            raise ValueError(f"move of {move.officers} officer(s) staffs no unit-post: one post every day takes "
                             f"{per_post:.2f} officers (officers per unit x relief factor)")
        if out[move.source] < posts:
            raise ValueError(f"move {move.officers}:{'/'.join(move.source)}->{'/'.join(move.target)}: "
                             f"{'/'.join(move.source)} has {out[move.source]} unit(s), fewer than the {posts} moved")
        out[move.source] -= posts
        out[move.target] += posts
        notes.append(f"{move.officers} officer(s) = {posts} unit-post(s) from {'/'.join(move.source)} to "
                     f"{'/'.join(move.target)}" + (f" ({move.officers - posts * per_post:.1f} officer(s) left over)"
                                                    if move.officers - posts * per_post > 0.05 else ""))
    return out, notes


@dataclass
class WhatIf:
    """Before and after, per division-shift and city-wide."""

    table: pd.DataFrame
    summary: dict
    notes: list[str]

    def to_json(self) -> dict:
        """A JSON-ready body: summary, notes and one row per division-shift (NaN and infinity as null)."""
        rows = self.table.replace([np.inf, -np.inf], np.nan).astype(object)
        rows = rows.where(pd.notna(rows), None)
        return {"summary": _plain(self.summary), "notes": self.notes, "rows": rows.to_dict(orient="records")}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


QUEUE_COLUMNS = ("units", "officers", "p_wait", "mean_wait_min", "p1_mean_wait_min", "utilisation")
SIM_COLUMNS = ("share_waiting", "mean_wait_min", "p1_mean_wait_min", "p1_response_p90_min")


def whatif(load: pd.DataFrame, config: StaffingConfig, officers: int | None = None, moves: list[Move] = (),
           targets: str | None = None, calls: SimCalls | None = None, divisions: list[str] | None = None,
           start_how: int = 0, neighbours: dict[int, list[int]] | None = None,
           sim: SimulationConfig | None = None) -> WhatIf:
    """The base plan and the changed one (new targets, then moves), by the formulas and, given calls, by
    simulation; `*_before`/`*_after` columns per division-shift and city-wide call-weighted figures."""
    if not moves and not targets:
        raise ValueError("a what-if needs a move or a changed target (nothing would change)")
    before = plan(load, config, officers)
    changed = replace(config, targets=parse_targets(targets, config.targets)) if targets else config
    after = plan(load, changed, officers) if targets else before
    notes = []
    if targets:
        t = changed.targets
        notes.append(f"targets: P(wait) <= {t.p_wait:g}, Priority 1 mean wait <= {t.p1_wait_min:g} min, "
                     f"utilisation <= {t.utilisation:.0%}")
    if moves:
        units = {(r.division, r.shift): int(r.units) for r in after.itertuples()}
        moved, move_notes = apply_moves(units, list(moves), changed)
        after = plan(load, changed, units=moved)
        notes += move_notes
    table = before[["division", "shift", "calls_per_hour"]].copy()
    for column in QUEUE_COLUMNS:
        table[f"{column}_before"] = before[column].to_numpy()
        table[f"{column}_after"] = after[column].to_numpy()
    table["warnings_after"] = after["warnings"].to_numpy()
    weight = before["calls_per_hour"].to_numpy()
    summary = {"officers_before": int(before["officers"].sum()), "officers_after": int(after["officers"].sum()),
               "units_before": int(before["units"].sum()), "units_after": int(after["units"].sum())}
    for column in ("mean_wait_min", "p1_mean_wait_min", "p_wait"):
        for when, frame in (("before", before), ("after", after)):
            summary[f"{column}_{when}"] = _weighted(frame[column].to_numpy(), weight)
    if calls is not None:
        sim = sim or SimulationConfig()
        for when, frame, conf in (("before", before, config), ("after", after, changed)):
            by, overall = simulate_plan(frame, conf, calls, divisions, start_how, neighbours, sim)
            for column in SIM_COLUMNS:
                table[f"sim_{column}_{when}"] = by[column].to_numpy()
            for key in ("p1_response_median_min", "p1_response_p90_min", "p1_mean_wait_min", "share_waiting",
                        "no_unit", "utilisation"):
                summary[f"sim_{key}_{when}"] = overall[key]
    return WhatIf(table, summary, notes)


def _weighted(values: np.ndarray, weight: np.ndarray) -> float:
    """Call-weighted mean; infinite when any division-shift with calls has an unbounded queue."""
    has = weight > 0
    if not has.any():
        return 0.0
    if not np.isfinite(values[has]).all():
        return math.inf
    return float((values[has] * weight[has]).sum() / weight[has].sum())


def whatif_from_db(engine, period, config: StaffingConfig | None = None, officers: int | None = None,
                   moves: list[Move] = (), targets: str | None = None, simulate: bool = True,
                   sim: SimulationConfig | None = None) -> WhatIf:
    """whatif on the period's calls from the database (simulated unless `simulate` is False)."""
    from geo.simulate import period_inputs

    config = config or StaffingConfig.load()
    sim = sim or SimulationConfig.load()
    inputs = period_inputs(engine, period, config, sim)
    out = whatif(inputs.load, config, officers, moves, targets, inputs.calls if simulate else None,
                 inputs.divisions, inputs.start_how, inputs.neighbours, sim)
    out.summary["sources"] = inputs.sources
    return out
