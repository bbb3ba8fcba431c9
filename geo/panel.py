"""The map's numbers: areas with their call counts, Gi* on NPAs, and the side panel of one area.

Every count here goes through the shared filter (geo.filters), so the map, its side panel, the
OGC items and the tiles agree on what "violent calls in Central last month" means. Identifiers
come from the layer catalog (geo.catalog) and the fixed level table below; values are bound.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import catalog, metrics
from geo.filters import Filter, configured_zone
from geo.metrics import WEEKDAYS
from geo.sources import SOURCES


@dataclass(frozen=True)
class Level:
    """An area level of the map: its polygon layer, and the calls column holding the area's id."""

    name: str
    layer: str          # catalog layer with the polygons
    calls_column: str   # column of `calls` assigned by the loader's spatial join
    metrics_by: str     # the `by` of geo.metrics functions


LEVELS = {
    "division": Level("division", "divisions", "division_id", "division"),
    "npa": Level("npa", "neighborhoods", "npa_id", "npa"),
}
# Simplification for the browser, in degrees (about 10 m at Charlotte's latitude): invisible at
# city zooms; it cuts the divisions' 55k vertices to under 7k (the NPAs are already coarse).
SIMPLIFY_DEG = 0.0001


class UnknownArea(LookupError):
    """An area id that the level does not have."""

    def __init__(self, level: str, area_id: str):
        super().__init__(f"no {level} {area_id!r}")
        self.level = level
        self.area_id = area_id


def level(name: str) -> Level:
    """The level called `name` ('division' or 'npa'); ValueError listing the valid ones."""
    try:
        return LEVELS[name]
    except KeyError:
        raise ValueError(f"unknown level {name!r}; one of {', '.join(LEVELS)}") from None


def _ident(lvl: Level) -> tuple[str, str]:
    lyr = catalog.layer(lvl.layer)
    calls = {p.name for p in catalog.layer("calls").properties}
    assert lvl.calls_column in calls  # the level table may only name catalogued columns
    assert isinstance(lyr.source, catalog.TableSource)  # area levels are tables, never run results
    return lyr.source.table, lyr.id_sql


# --- areas -------------------------------------------------------------------------------------
def area_shapes(engine: Engine, level_name: str, tolerance: float = SIMPLIFY_DEG) -> list[dict]:
    """Every area of a level: id, name, population (NPAs), division (NPAs) and simplified GeoJSON geometry text."""
    lvl = level(level_name)
    table, id_col = _ident(lvl)
    # Topology-preserving simplification keeps every polygon valid and non-empty.
    geometry = "ST_AsGeoJSON(ST_SimplifyPreserveTopology(a.geom, :tol), 5)"
    if lvl.name == "division":
        sql = (f"SELECT a.{id_col} AS id, a.name, a.short_name, NULL::int AS population, NULL::text AS division_id,"
               f" {geometry} AS geometry FROM {table} a ORDER BY 1")
    else:
        # An NPA's division: the one holding a point guaranteed inside the NPA (divisions follow
        # NPA edges closely, so this is the division most of the NPA lies in).
        sql = (f"SELECT a.{id_col} AS id, 'NPA ' || a.{id_col} AS name, NULL AS short_name, a.population,"
               " (SELECT d.division_id FROM divisions d WHERE ST_Contains(d.geom, ST_PointOnSurface(a.geom))"
               "  ORDER BY d.division_id LIMIT 1) AS division_id,"
               f" {geometry} AS geometry FROM {table} a ORDER BY 1")
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), {"tol": tolerance})]


def _area_id(lvl: Level, text: str):
    # geo.metrics groups areas as text; the map keys divisions by code and NPAs by number.
    return int(text) if lvl.name == "npa" else text


def area_counts(engine: Engine, level_name: str, flt: Filter) -> dict:
    """Calls, labelled-violent calls and expected violent calls (sum of probabilities) per area under the filter."""
    lvl = level(level_name)
    rows = metrics.call_measures(engine, flt, (lvl.metrics_by,))
    return {_area_id(lvl, r[0]): (int(r[1]), int(r[2]), float(r[3]))
            for r in rows[[lvl.metrics_by, "calls", "labelled_violent", "expected_violent"]].itertuples(index=False)
            if r[0] != "(none)"}


def per_1000(count: float, population: int | None) -> float | None:
    """A count per 1,000 residents; None where nobody lives (parks, the airport)."""
    if not population or population <= 0:
        return None
    return round(count / population * 1000.0, 3)


def area_features(shapes: list[dict], counts: dict) -> str:
    """GeoJSON FeatureCollection text of the areas with their counts and rates (geometry text spliced in)."""
    parts = []
    for s in shapes:
        calls, violent, expected = counts.get(s["id"], (0, 0, 0.0))
        props = {"id": s["id"], "name": s["name"], "calls": calls, "violent": violent,
                 "expected_violent": round(expected, 2),
                 "violent_share": round(violent / calls, 4) if calls else None}
        if s["short_name"] is not None:
            props["short_name"] = s["short_name"]
        if s["population"] is not None or s["division_id"] is not None:
            props.update(population=s["population"], division_id=s["division_id"],
                         calls_per_1000=per_1000(calls, s["population"]),
                         violent_per_1000=per_1000(violent, s["population"]))
        parts.append(f'{{"type":"Feature","id":{json.dumps(s["id"])},"geometry":{s["geometry"]},'
                     f'"properties":{json.dumps(props)}}}')
    return '{"type":"FeatureCollection","features":[' + ",".join(parts) + "]}"


# --- Gi* on NPAs -------------------------------------------------------------------------------
MEASURES = {"violent": "count(*) FILTER (WHERE c.label)", "calls": "count(*)",
            "expected": "coalesce(sum(c.p_violent), 0)"}
# The map's Gi* measures that are sources of geo.sources (calls about one incident counted once there).
MEASURE_SOURCES = {"violent": "labelled", "expected": "expected"}
# Gi* on a measure per 1,000 residents (geo.hotspots.npa_rate_gi_star, as `hotspots hotspots --per-1000`).
RATE_MEASURES = {f"{m}_per_1000": m for m in MEASURES}


def measure_source(measure: str) -> str:
    """What a map measure counts, in words (every output names its source)."""
    if measure in MEASURE_SOURCES:
        return SOURCES[MEASURE_SOURCES[measure]].describe()
    return "calls: every call for service under the filters"


def npa_weights(engine: Engine):
    """Queen-contiguity weights of the NPAs in npa_id order, and that order."""
    from geo.hotspots import queen_weights
    from geo.spatial import read_neighborhoods

    npas = read_neighborhoods(engine)
    return queen_weights(npas), npas["npa_id"].to_numpy()


def npa_gi_star(engine: Engine, flt: Filter, weights, npa_ids: np.ndarray, measure: str = "violent") -> pd.DataFrame:
    """Gi* of a measure per NPA under the filter: npa_id, value, gi_z, gi_p, gi_q, hotspot_class.

    No permutations: the classes come from the normal approximation with the FDR correction (as
    in geo.hotspots), which is what the map shows; pseudo p-values would only add seconds.
    """
    from geo.hotspots import gi_star, npa_rate_gi_star

    if measure in RATE_MEASURES:   # the count first, then the CLI's rate and its Gi*
        return npa_rate_gi_star(engine, npa_gi_star(engine, flt, weights, npa_ids, RATE_MEASURES[measure]))
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; one of {', '.join(MEASURES)}")
    source = MEASURE_SOURCES.get(measure)
    if source is None:
        counted = metrics.call_measures(engine, flt, ("npa",))
        rows = {int(n): float(v) for n, v in zip(counted["npa"], counted["calls"]) if n != "(none)"}
    else:   # one count per incident, as geo.sources counts calls
        counted = metrics.source_values(engine, flt, SOURCES[source], ("npa",))
        rows = {int(n): float(v) for n, v in zip(counted["npa"], counted["value"])}
    values = np.array([float(rows.get(int(n), 0.0)) for n in npa_ids])
    result = gi_star(None, values, permutations=0, weights=weights)
    return pd.DataFrame({"npa_id": npa_ids.astype(int), "value": values, "gi_z": result.z, "gi_p": result.p,
                         "gi_q": result.q, "hotspot_class": result.classes})


def hotspot_features(shapes: list[dict], gi: pd.DataFrame) -> dict:
    """GeoJSON FeatureCollection (as a dict) of the NPAs with their Gi* class, z and q, plus class counts."""
    by_id = {s["id"]: s for s in shapes}
    features = []
    for r in gi.itertuples(index=False):
        s = by_id[r.npa_id]
        features.append({"type": "Feature", "id": int(r.npa_id), "geometry": json.loads(s["geometry"]),
                         "properties": {"npa_id": int(r.npa_id), "value": float(r.value),
                                        "gi_z": round(float(r.gi_z), 4), "gi_p": float(r.gi_p),
                                        "gi_q": float(r.gi_q), "hotspot_class": r.hotspot_class,
                                        "division_id": s["division_id"], "population": s["population"]}})
    summary = gi["hotspot_class"].value_counts().to_dict()
    return {"type": "FeatureCollection", "features": features, "classes": hotspot_classes(),
            "summary": {k: int(v) for k, v in summary.items()}}


def hotspot_classes() -> list[str]:
    """The Gi* classes in legend order: hot 99/95/90, not significant, cold 90/95/99."""
    from geo.hotspots import CLASSES, NOT_SIGNIFICANT

    return [hot for _, hot, _ in CLASSES] + [NOT_SIGNIFICANT] + [cold for _, _, cold in reversed(CLASSES)]


# --- the side panel ----------------------------------------------------------------------------
def resolve_area(engine: Engine, level_name: str, area_id: str, division_names: dict[str, str]) -> dict:
    """The area's id, name and population; UnknownArea when the level has no such area."""
    lvl = level(level_name)
    table, id_col = _ident(lvl)
    if lvl.name == "division":
        code = division_names.get(area_id.strip().lower())
        if code is None:
            raise UnknownArea(lvl.name, area_id)
        sql = f"SELECT {id_col} AS id, name, short_name, NULL::int AS population FROM {table} WHERE {id_col} = :id"
        key: object = code
    else:
        try:
            key = int(area_id)
        except ValueError:
            raise ValueError(f"NPA ids are integers, not {area_id!r}") from None
        sql = (f"SELECT a.{id_col} AS id, 'NPA ' || a.{id_col} AS name, NULL AS short_name, a.population,"
               " (SELECT d.division_id FROM divisions d WHERE ST_Contains(d.geom, ST_PointOnSurface(a.geom))"
               "  ORDER BY 1 LIMIT 1) AS division_id"
               f" FROM {table} a WHERE a.{id_col} = :id")
    with engine.connect() as conn:
        row = conn.execute(sa.text(sql), {"id": key}).mappings().first()
    if row is None:
        raise UnknownArea(lvl.name, area_id)
    return dict(row)


def area_totals(engine: Engine, level_name: str, area_id, flt: Filter, population: int | None = None) -> dict:
    """Calls, labelled-violent and expected violent calls in the area under the filter, with rates."""
    lvl = level(level_name)
    r = metrics.call_measures(engine, flt, (), (lvl.metrics_by, area_id)).iloc[0]
    calls, violent = int(r["calls"]), int(r["labelled_violent"])
    return {"calls": calls, "violent": violent, "expected_violent": round(float(r["expected_violent"]), 2),
            # What the counts are made of: real records, generated ones, or (said loudly) both.
            "origins": {"real": int(r["real"]), "synthetic": int(r["synthetic"])},
            "violent_share": round(violent / calls, 4) if calls else None,
            "calls_per_1000": per_1000(calls, population), "violent_per_1000": per_1000(violent, population)}


def category_breakdown(engine: Engine, level_name: str, area_id, flt: Filter) -> list[dict]:
    """Calls per category in the area under the filter, largest first, with shares and violent labels."""
    lvl = level(level_name)
    rows = metrics.call_measures(engine, flt, ("category",), (lvl.metrics_by, area_id))
    rows = rows.sort_values(["calls", "category"], ascending=[False, True])
    total = int(rows["calls"].sum())
    return [{"category": r.category, "calls": int(r.calls), "violent": int(r.labelled_violent),
             "share": round(r.calls / total, 4)} for r in rows.itertuples(index=False)]


def hour_weekday(engine: Engine, level_name: str, area_id, flt: Filter) -> dict:
    """The area's 7x24 under the filter (geo.metrics.hour_weekday) as JSON: mean per occurrence, totals, occurrences."""
    lvl = level(level_name)
    return week_hour_json(metrics.hour_weekday(engine, flt, area=(lvl.metrics_by, area_id)))


def response_figures(engine: Engine, level_name: str, area_id, flt: Filter) -> dict:
    """The area's response times under the filter by priority (geo.police): median, p90 and n of the
    response and its parts, and how many calls were left out for want of usable CAD times."""
    from geo.police import LEFT_OUT, response_times

    lvl = level(level_name)
    rows = response_times(engine, flt, ("priority",), (lvl.metrics_by, area_id))
    figures = {}
    for r in rows.itertuples(index=False):
        figures.setdefault(r.priority, {"priority": r.priority})[r.interval] = {
            "median_min": _finite(r.median_min, 2), "p90_min": _finite(r.p90_min, 2), "n": int(r.n)}
    response = rows[rows["interval"] == "response"]
    left_out = {reason: int(response[f"left_out_{reason}"].sum()) for reason in LEFT_OUT}
    return {"by_priority": sorted(figures.values(), key=lambda f: (f["priority"] == "unknown", f["priority"])),
            "calls": int(response["calls"].sum()), "measured": int(response["n"].sum()), "left_out": left_out}


def week_hour_json(matrix: metrics.WeekHourMatrix) -> dict:
    """A 7x24 matrix as JSON: `mean` (calls per occurrence of the weekday-hour, the shading), `counts` (totals)."""
    mean = matrix.mean
    means = [[None if v != v else round(float(v), 3) for v in row] for row in mean.to_numpy()]
    counts = matrix.totals.to_numpy().astype(int).tolist()
    return {"weekdays": list(WEEKDAYS), "hours": list(range(24)), "statistic": "mean per occurrence",
            "mean": means, "counts": counts, "occurrences": matrix.occurrences.to_numpy().astype(int).tolist(),
            "max": max(max(row) for row in counts),
            "max_mean": max((v for row in means for v in row if v is not None), default=0.0),
            "period": [matrix.start.isoformat(), matrix.end.isoformat()],
            "left_out_date_only": matrix.left_out_date_only}


def compstat_for(table: pd.DataFrame, area_id) -> list[dict]:
    """One area's rows of a geo.metrics.compstat table (all areas of the level, FDR across them), as JSON."""
    rows = table[table["area"].astype(str) == str(area_id)] if not table.empty else table
    out = []
    for r in rows.itertuples(index=False):
        out.append({"window": r.window, "current": int(r.current), "prior": int(r.prior),
                    "current_period": r.current_period.split(".."), "prior_period": r.prior_period.split(".."),
                    "compare": r.compare, "pct_change": _finite(r.pct_change), "dispersion": _finite(r.dispersion),
                    "history_pairs": int(r.history_pairs), "p_value": _finite(r.p_value, 4),
                    "q_value": _finite(r.q_value, 4), "significant": bool(r.significant),
                    "data_covers_both": bool(r.data_covers_both), "note": r.note})
    return out


def _finite(value, digits: int | None = None):
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def analysis_period(flt: Filter, data_range: tuple[date | None, date | None]) -> Filter:
    """The whole filter over whole local days, open ends closed by the data's first and last day."""
    lo, hi = flt.local_period()
    first, last = data_range
    lo = lo or first or date.today()
    hi = hi or ((last + timedelta(days=1)) if last else lo + timedelta(days=1))
    return flt.with_days(lo, max(hi, lo + timedelta(days=1)))


def outreach_for(flags: pd.DataFrame, area_id) -> list[dict]:
    """The outreach flags (geo.metrics.outreach_flags rows) of one area."""
    if flags.empty:
        return []
    rows = flags[flags["area"].astype(str) == str(area_id)]
    return [{"category": r.category, "calls": int(r.calls), "share": round(float(r.share), 4),
             "city_share": round(float(r.city_share), 4), "ratio_to_city": float(r.ratio_to_city)}
            for r in rows.itertuples(index=False)]


def allocation_for(table: pd.DataFrame, reasons: dict[str, str], division_id: str) -> dict:
    """One division's officers per shift and workload from a geo.allocate.allocate result, with its reasoning."""
    rows = table[table["division_id"] == division_id]
    return {"division_id": division_id,
            "shifts": [{"shift": r.shift, "officers": int(r.officers), "workload_hours": float(r.workload_hours)}
                       for r in rows.itertuples(index=False)],
            "officers": int(rows["officers"].sum()), "officers_citywide": int(table["officers"].sum()),
            "workload_share": round(float(rows["workload_hours"].sum() / table["workload_hours"].sum()), 4)
            if table["workload_hours"].sum() else None,
            "reasoning": reasons.get(division_id, "no calls in the period")}


def staffing_for(table: pd.DataFrame, division_id: str) -> dict:
    """One division's rows of a geo.staffing plan: units, waits, utilisation, officers, warnings, needs."""
    rows = table[table["division"] == division_id]
    keep = ["shift", "calls_per_hour", "mean_service_min", "units", "units_needed", "p_wait", "mean_wait_min",
            "p1_mean_wait_min", "utilisation", "officers", "officers_needed", "warnings", "needs_reasoning"]
    shifts = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
              for r in rows[keep].to_dict(orient="records")]
    return {"division_id": division_id, "shifts": shifts, "officers": int(rows["officers"].sum()),
            "officers_citywide": int(table["officers"].sum()), "officers_given": table.attrs.get("officers_given"),
            "service_times": ", ".join(sorted(set(rows["service_times"]))) + " service times"}


def as_of_date(flt: Filter, last: date | None) -> date:
    """The CompStat report date: the day after the filter's last day, else the day after the newest data."""
    _, hi = flt.local_period()
    if hi is not None:
        return hi
    return (last or date.today()) + timedelta(days=1)


def data_range(engine: Engine, tz: str | None = None) -> tuple[date | None, date | None]:
    """First and last local dates with calls (in the zone `tz`, the configured one if None)."""
    return metrics.data_coverage(engine, "calls", None, tz or configured_zone())


def clean_json(value):
    """NaN and infinities as None, numpy scalars as Python numbers (JSON has neither)."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

