"""`/api/staffing/whatif`: move officers or change a target, and see the change in expected delay and
simulated response (geo/whatif.py, the same function as `hotspots whatif`); used by the panel."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from geo import panel, whatif
from geo.filters import ParameterError
from geo.simulate import SimulationConfig
from geo.staffing import StaffingConfig, parse_targets
from web import database
from web.admission import heavy
from web.params import int_arg, request_filter

bp = Blueprint("staffing", __name__)


@bp.get("/api/staffing/whatif")
def whatif_view():
    """Before/after per division-shift and city-wide for `move` (OFFICERS:DIV/SHIFT->DIV/SHIFT; ...) and/or
    `targets` (p_wait=..,p1_wait_min=..,utilisation=..) over `start`/`end`/`preset`; `officers` places N
    officers by marginal allocation; `simulate=false` skips the simulation."""
    flt = request_filter()
    officers = int_arg("officers", lo=1, hi=100_000)
    simulate = (request.args.get("simulate") or "true").strip().lower()
    if simulate not in ("true", "false"):
        raise ParameterError("simulate", f"{simulate!r} is not true or false")
    moves_text, targets = request.args.get("move") or "", request.args.get("targets") or None
    try:
        moves = whatif.parse_moves(moves_text)
    except ValueError as exc:
        raise ParameterError("move", str(exc)) from None
    if not moves and not targets:
        raise ParameterError("move", "give a move (OFFICERS:DIV/SHIFT->DIV/SHIFT) or targets to change")
    config = StaffingConfig.load()
    if targets:
        try:
            parse_targets(targets, config.targets)
        except ValueError as exc:
            raise ParameterError("targets", str(exc)) from None
    period = panel.analysis_period(flt, panel.data_range(database.engine()))
    return _compute(period, config, officers, moves, targets, simulate == "true")


@heavy("stats")
def _compute(period, config, officers, moves, targets, simulate: bool):
    # Only a valid request takes a slot; a move naming an unknown division-shift is refused here.
    try:
        result = whatif.whatif_from_db(database.engine(), period, config, officers, moves, targets, simulate,
                                       SimulationConfig.load())
    except ValueError as exc:
        text = str(exc)
        raise ParameterError("officers" if "--officers" in text else "move" if text.startswith("move") else
                             "targets", text) from None
    body = result.to_json()
    body["period"] = {"start": period.start_date.isoformat(), "end": period.end_date.isoformat()}
    return jsonify(body)
