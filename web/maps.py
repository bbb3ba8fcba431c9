"""The supervisor map page and the JSON it draws: config, areas, Gi* hot spots and the side panel.

Thin: parse the request (shared filter, level, id), call geo.panel, cache with web.database.memo
until the calls (or the polygons) change, and format JSON. Leaflet is served from the
xstatic-leaflet package, so the page needs no internet.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_from_directory

from geo import catalog, panel
from geo.emerging import PATTERNS
from geo.filters import FILTER_PARAMETERS, PRESETS, Filter, ParameterError
from web import admission, database
from web.errors import ApiError
from web.params import int_arg, request_filter

bp = Blueprint("maps", __name__)

# Calls are drawn one by one from this zoom on (a few streets); below it the heat layer shows them.
CALLS_MIN_ZOOM = 15
CALLS_LIMIT = 2000
# Homicide victims are drawn all at once: the whole layer is under a thousand.
HOMICIDES_LIMIT = 5000
DEFAULT_OFFICERS = 300   # a planning figure for the panel's allocation; the request's `officers` overrides it
PRESET_LABELS = {"7d": "Last 7 days", "28d": "Last 28 days", "ytd": "Year to date", "365d": "Last 365 days"}
_POLYGONS = {"division": "divisions", "npa": "neighborhoods"}


def _level(name: str) -> panel.Level:
    try:
        return panel.level(name)
    except ValueError as exc:
        raise ApiError(404, str(exc), "level") from None


def _shapes(level_name: str) -> list[dict]:
    return database.memo(("map_shapes", level_name), (_POLYGONS[level_name], "divisions"),
                         lambda: panel.area_shapes(database.engine(), level_name))


def _data_range():
    return database.memo(("map_data_range",), ("calls",), lambda: panel.data_range(database.engine()))


def _json_text(text: str, key: tuple, layers: tuple[str, ...]) -> Response:
    """A cached JSON body with an ETag from its key and the data versions, so browsers revalidate cheaply."""
    v = database.versions()
    tag = hashlib.sha256(repr((key, [v.get(x, 0) for x in layers])).encode()).hexdigest()[:20]
    resp = Response(text, mimetype="application/json")
    resp.set_etag(tag)
    resp.headers["Cache-Control"] = "no-cache"
    return resp.make_conditional(request)


@bp.get("/")
def index():
    """The map page."""
    from geo.taxonomy import VIOLENT_NUMBERS

    return render_template("maps/index.html", violent_numbers=VIOLENT_NUMBERS)


@bp.get("/vendor/leaflet/<path:path>")
def leaflet_asset(path: str):
    """Leaflet's JS, CSS and images from the xstatic-leaflet package (no CDN)."""
    from xstatic.pkg import leaflet

    return send_from_directory(leaflet.BASE_DIR, path, max_age=86400)


@bp.get("/api/config")
def config():
    """What the page needs to build its controls: basemap, presets, categories, divisions, data dates."""
    from geo.taxonomy import load_taxonomy

    first, last = _data_range()
    divisions = [{"id": s["id"], "name": s["name"], "short_name": s["short_name"]} for s in _shapes("division")]
    url = current_app.config.get("BASEMAP_URL") or ""
    return jsonify({
        "basemap": {"url": url, "attribution": current_app.config.get("BASEMAP_ATTRIBUTION") or ""} if url else None,
        "presets": [{"id": p, "label": PRESET_LABELS.get(p, p), "days": PRESETS[p]} for p in PRESETS],
        "categories": [{"id": k, "description": v} for k, v in load_taxonomy().categories.items()],
        "divisions": divisions,
        "data": {"first": first.isoformat() if first else None, "last": last.isoformat() if last else None},
        "levels": list(panel.LEVELS),
        "hotspot_classes": panel.hotspot_classes(),
        "emerging_patterns": list(PATTERNS),   # the 17 names of geo.emerging, for the emerging layer's legend
        "measures": list(panel.MEASURES),
        "filters": list(FILTER_PARAMETERS),
        "timezone": current_app.config["TIMEZONE"],
        "calls_min_zoom": CALLS_MIN_ZOOM,
        "calls_limit": CALLS_LIMIT,
        "homicides_limit": HOMICIDES_LIMIT,
        "default_officers": DEFAULT_OFFICERS,
        # Real and synthetic rows per layer, for the legend (never added together silently).
        # (Calls only: the map draws calls, and the page must not wait on the incidents table.)
        "origins": database.memo(("map_origins",), ("calls",),
                                 lambda: catalog.origin_counts(database.engine(), ("calls",))),
        # The latest `hotspots accuracy` run (hit rate, PAI, RRI per source), for the legend; None if never run.
        "accuracy": _latest_accuracy(),
    })


def _latest_accuracy() -> dict | None:
    from geo.accuracy import latest_accuracy

    scored = latest_accuracy(database.engine())
    if scored is None:
        return None
    keep = ("source", "level", "hit_rate", "pai", "rri", "hot_areas", "areas")
    return {"run_id": scored["run_id"], "train": scored["train"], "test": scored["test"], "truth": scored["truth"],
            "rows": [{k: r.get(k) for k in keep} for r in scored["rows"]]}


@bp.get("/api/areas/<level_name>")
def areas(level_name: str):
    """GeoJSON of divisions or NPAs with calls, violent calls and (NPAs) rates per 1,000 under the filters."""
    _level(level_name)
    flt = request_filter("calls")
    key = ("map_areas", level_name, flt.key())
    layers = ("calls", _POLYGONS[level_name], "divisions")
    text = admission.memo_admitted("stats", key, layers, lambda: panel.area_features(
        _shapes(level_name), panel.area_counts(database.engine(), level_name, flt)))
    return _json_text(text, key, layers)


def _measure() -> str:
    measure = (request.args.get("measure") or "violent").strip().lower()
    if measure not in panel.MEASURES and measure not in panel.RATE_MEASURES:
        raise ParameterError("measure", f"{measure!r} is not one of {', '.join([*panel.MEASURES, *panel.RATE_MEASURES])}")
    return measure


@bp.get("/api/hotspots/<level_name>")
def hotspots(level_name: str):
    """Gi* of violent calls (or `measure`) on the NPAs under the filters: class, z and q per NPA."""
    _level(level_name)
    if level_name != "npa":
        raise ApiError(404, "Gi* is computed on NPAs only (the 14 divisions are too few neighbours for a local "
                            "statistic); use /api/hotspots/npa", "level")
    flt = request_filter("calls")
    measure = _measure()
    weights, ids = database.memo(("npa_weights",), ("neighborhoods",), lambda: panel.npa_weights(database.engine()))

    def compute() -> str:
        import json

        gi = panel.npa_gi_star(database.engine(), flt, weights, ids, measure)
        body = panel.hotspot_features(_shapes("npa"), gi)
        body["measure"] = measure
        counted = panel.RATE_MEASURES.get(measure, measure)
        body["source"] = panel.measure_source(counted)
        # Rates as the CLI's --per-1000: value is the count per 1,000 residents, None where nobody lives.
        body["value_unit"] = "per_1000_residents" if counted != measure else "count"
        return json.dumps(panel.clean_json(body))

    key = ("map_hotspots", level_name, measure, flt.key())
    layers = ("calls", "neighborhoods", "divisions")
    return _json_text(admission.memo_admitted("stats", key, layers, compute), key, layers)


def _officers() -> int:
    from geo.allocate import AllocationConfig

    config = AllocationConfig.load()
    floor = config.minimum * len(config.shifts) * len(_shapes("division"))
    officers = int_arg("officers", DEFAULT_OFFICERS, lo=1, hi=100_000)
    if officers < floor:
        raise ParameterError("officers", f"{officers} is below the minimum of {floor} ({config.minimum} per division "
                                         f"and shift, geo/allocation.toml)")
    return officers


def _compare() -> str:
    from geo.metrics import COMPARISONS

    compare = (request.args.get("compare") or "year").strip().lower()
    if compare not in COMPARISONS:
        raise ParameterError("compare", f"{compare!r} is not one of {', '.join(COMPARISONS)} ("
                                        + "; ".join(f"{k}: {v}" for k, v in COMPARISONS.items()) + ")")
    return compare


def _period_key(period: Filter) -> str:
    # The whole filter: outreach, allocation and staffing honour every condition, not only the dates.
    return period.key()


@bp.get("/api/panel/<level_name>/<area_id>")
def area_panel(level_name: str, area_id: str):
    """The side panel of one division or NPA: totals, categories, 7x24, CompStat, outreach, allocation."""
    lvl = _level(level_name)
    flt = request_filter("calls")
    officers = _officers()
    compare = _compare()
    engine = database.engine()
    try:
        area = panel.resolve_area(engine, level_name, area_id, database.division_names())
    except ValueError as exc:
        raise ApiError(400, str(exc), "id") from None
    except panel.UnknownArea as exc:
        raise ApiError(404, f"{exc}; see /api/areas/{level_name} for the ids", "id") from None
    key = ("map_panel", level_name, str(area["id"]), flt.key(), officers, compare)
    return jsonify(admission.memo_admitted("stats", key, ("calls", "divisions", "neighborhoods"),
                                           lambda: _panel_body(lvl, area, flt, officers, compare)))


def _panel_body(lvl: panel.Level, area: dict, flt: Filter, officers: int, compare: str) -> dict:
    from geo.allocate import allocate
    from geo.metrics import compstat, outreach_flags, report_end
    from geo.staffing import build_plan

    engine = database.engine()
    first, last = _data_range()
    period = panel.analysis_period(flt, (first, last))
    as_of = panel.as_of_date(flt, last)
    area_id = area["id"]
    body = {
        "level": lvl.name,
        "area": {k: area.get(k) for k in ("id", "name", "short_name", "population", "division_id") if k in area},
        "filter": flt.given,
        "period": [period.start_date.isoformat(), (period.end_date - timedelta(days=1)).isoformat()],
        "totals": panel.area_totals(engine, lvl.name, area_id, flt, area.get("population")),
        "categories": panel.category_breakdown(engine, lvl.name, area_id, flt),
        "hour_weekday": panel.hour_weekday(engine, lvl.name, area_id, flt),
        "response": panel.response_figures(engine, lvl.name, area_id, flt),
    }
    # The same shading as the CompStat page's heat matrix (geo/charts.py), computed once, here.
    import pandas as pd

    from geo import charts

    body["hour_weekday"]["colours"] = charts.heat_colours(pd.DataFrame(body["hour_weekday"]["mean"], dtype=float))
    # CompStat tests every area of the level (FDR across them), so the table is computed for all
    # areas once per report date and filter (its dates replaced by the windows) and shared.
    no_dates = replace(flt, start=None, end=None, given={})
    table = database.memo(("map_compstat", lvl.metrics_by, no_dates.key(), as_of.isoformat(), compare),
                          ("calls", _POLYGONS[lvl.name]),
                          lambda: compstat(engine, as_of, by=lvl.metrics_by, flt=no_dates, compare=compare))
    body["compstat"] = {"as_of": as_of.isoformat(), "report_end": report_end(as_of).isoformat(), "compare": compare,
                        "windows": panel.compstat_for(table, area_id)}
    # Outreach and allocation compare the area with the whole city, so they are computed city-wide
    # once per period and shared by every area's panel.
    flags = database.memo(("map_outreach", lvl.metrics_by, _period_key(period)), ("calls",),
                          lambda: outreach_flags(engine, period, lvl.metrics_by))
    body["outreach"] = {"period": body["period"], "flags": panel.outreach_for(flags, area_id)}
    division_id = area_id if lvl.name == "division" else area.get("division_id")
    if division_id:
        table, reasons = database.memo(("map_allocation", _period_key(period), officers), ("calls", "divisions"),
                                       lambda: allocate(engine, officers, period))
        body["allocation"] = {"period": body["period"], **panel.allocation_for(table, reasons, division_id)}
        plan = database.memo(("map_staffing", _period_key(period), officers), ("calls", "divisions"),
                             lambda: build_plan(engine, period, officers=officers))
        body["staffing"] = {"period": body["period"], **panel.staffing_for(plan, division_id)}
    else:
        body["allocation"] = body["staffing"] = None
    return panel.clean_json(body)
