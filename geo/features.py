"""OGC API - Features data layer: which rows an items request selects, and their GeoJSON, built in PostGIS.

The HTTP layer (web/features.py) parses the request into a `Selection` with the functions here,
then asks for a count and a page. Features are assembled as GeoJSON text by PostgreSQL
(ST_AsGeoJSON plus json_build_object, concatenated with string_agg), so a 10,000-feature page
never becomes 10,000 Python objects. Identifiers come only from geo.catalog; values are bound.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.catalog import Layer, Property, TableSource
from geo.filters import (FILTER_PARAMETERS, Filter, ParameterError, bare_columns, bbox_predicate, compile_text, parse_bbox,
                         parse_bool, parse_float, parse_int)
from geo.settings import locale_settings

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
# 6 decimal places of a degree is about 0.1 m: finer than any geocoded address, and it keeps
# pages small (RFC 7946 section 11.2 recommends not over-stating precision).
COORD_DIGITS = 6
# Parameters of OGC API - Features Part 1 (and the CRS parameters of Part 2, CRS84 only) that
# every items request may carry; everything else must be a filter this collection understands.
STANDARD_PARAMETERS = ("f", "limit", "offset", "bbox", "bbox-crs", "crs", "datetime")
# Shared-filter parameters that are also property names: listed among a collection's queryables.
FILTER_PROPERTIES = ("category", "violent")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# From this offset on, unfiltered pages skip rows on the primary key's index alone.
DEEP_OFFSET = 10_000


@dataclass(frozen=True)
class Selection:
    """The rows an items request selects: the shared filter or a plain bbox, property equalities, a run."""

    filter: Filter | None = None                          # calls, incidents, homicides (geo.filters)
    bbox: tuple[float, float, float, float] | None = None  # other layers (the filter carries its own)
    properties: tuple[tuple[str, Any], ...] = ()
    run_id: int | None = None

    def where(self, lyr: Layer) -> tuple[str, dict]:
        """SQL condition on the layer's source (unqualified columns) and its bound parameters, compiled once."""
        conditions = []
        if self.filter is not None:
            # Its bbox is already an exact ST_Intersects (OGC bbox means "intersects").
            conditions.append(self.filter.predicate(lyr.filter_table, bare_columns(lyr.filter_table)))
        if self.bbox is not None:
            conditions.append(bbox_predicate(sa.literal_column(lyr.geom), self.bbox, prefix="b"))
        for i, (name, value) in enumerate(self.properties):
            conditions.append(sa.literal_column(lyr.property(name).sql) == sa.bindparam(f"q_{i}", value))
        sql, params = compile_text(sa.and_(sa.true(), *conditions))
        return sql, {**params, **lyr.source.binds(self.run_id)}

    def key(self) -> str:
        """A short digest of what is selected, for cache keys."""
        parts = [self.filter.key() if self.filter else None, self.bbox, list(self.properties), self.run_id]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def queryable_properties(lyr: Layer) -> tuple[Property, ...]:
    """Properties usable as `name=value` on the layer's items: catalog queryables and filter-backed ones."""
    names = {p.name for p in lyr.public if p.queryable}
    if lyr.filter_table:
        names.update(n for n in FILTER_PROPERTIES if lyr.property(n) is not None)
    return tuple(p for p in lyr.public if p.name in names)


def queryables_schema(lyr: Layer, schema_id: str) -> dict:
    """The JSON Schema (OGC API - Features Part 3 queryables) of the layer's queryable properties."""
    props: dict[str, dict] = {}
    for p in queryable_properties(lyr):
        entry: dict[str, Any] = {"title": p.name, "type": p.type}
        if p.format:
            entry["format"] = p.format
        if p.description:
            entry["description"] = p.description
        props[p.name] = entry
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": schema_id,
        "type": "object",
        "title": lyr.title,
        "properties": props,
        "additionalProperties": False,
    }


def _typed(prop: Property, raw: str) -> Any:
    value = raw.strip()
    if prop.type == "integer":
        return parse_int(prop.name, value)
    if prop.type == "number":
        return parse_float(prop.name, value)
    if prop.type == "boolean":
        return parse_bool(prop.name, value)
    return value


def check_parameters(lyr: Layer, args: Mapping[str, str]) -> None:
    """Refuse query parameters the layer's items do not understand, naming the first one."""
    queryable = {p.name for p in queryable_properties(lyr)}
    for name in args:
        if name in STANDARD_PARAMETERS or name in queryable:
            if name == "datetime" and not lyr.time_property:
                raise ParameterError(name, f"{lyr.id} have no time property; datetime applies to calls, incidents "
                                           "and homicides")
            continue
        if name in FILTER_PARAMETERS:
            if lyr.filter_table:
                continue
            raise ParameterError(name, f"{name} does not apply to {lyr.id}; it filters calls, incidents and homicides"
                                 + _queryable_hint(lyr))
        if name == "run":
            if lyr.run_kinds:
                continue
            raise ParameterError(name, "run applies to the hot spot result layers (hotspot_cells, hotspot_npas)")
        if lyr.property(name) is not None:
            raise ParameterError(name, f"{name} is a property of {lyr.id} but cannot be filtered on" + _queryable_hint(lyr))
        raise ParameterError(name, f"unknown parameter {name!r} for {lyr.id}" + _queryable_hint(lyr))


def _queryable_hint(lyr: Layer) -> str:
    names = [p.name for p in queryable_properties(lyr)]
    return f"; queryable properties: {', '.join(names)}" if names else "; it has no queryable properties"


def parse_selection(lyr: Layer, args: Mapping[str, str], filt: Filter | None, run_id: int | None = None) -> Selection:
    """Read the layer's selection from request-like `args` (already passed `check_parameters`).

    `filt` is the shared filter parsed by the caller (it needs the division names and the
    latest-data date) for layers with a filter table; other layers take only a bbox here.
    """
    for name in ("bbox-crs", "crs"):
        value = args.get(name)
        if value is not None and value.strip() not in (CRS84, ""):
            raise ParameterError(name, f"only {CRS84} (WGS84 longitude/latitude) is supported")
    bbox = None
    if not lyr.filter_table and (args.get("bbox") or "").strip():
        bbox = parse_bbox(args["bbox"])
    props = []
    for prop in queryable_properties(lyr):
        if lyr.filter_table and prop.name in FILTER_PROPERTIES:
            continue  # the shared filter reads these (category names, boolean words)
        raw = args.get(prop.name)
        if raw is not None:
            props.append((prop.name, _typed(prop, raw)))
    return Selection(filt if lyr.filter_table else None, bbox, tuple(props), run_id)


def _session(conn: Connection) -> None:
    # Timestamps leave as UTC (RFC 3339 with +00:00) whatever the server's zone. JIT compilation
    # costs more than it saves on page-sized queries, and deep offsets inflate the planner's cost
    # estimate past jit_above_cost. Both are local to the transaction.
    conn.execute(sa.text("SELECT set_config('TimeZone', 'UTC', true), set_config('jit', 'off', true)"))


def _feature_sql(lyr: Layer) -> str:
    """SQL text of one GeoJSON Feature per row of the layer's source (column `s` aliases)."""
    for p in lyr.public:
        if not _NAME.match(p.name):  # names come from the catalog; keep them literal-safe anyway
            raise ValueError(f"property name {p.name!r} cannot be written into SQL")
    props = ", ".join(f"'{p.name}', {p.sql}" for p in lyr.public)
    geom = lyr.geom
    if lyr.geometry_type.endswith("Polygon"):
        # RFC 7946 right-hand rule: exterior rings counter-clockwise, holes clockwise.
        geom = f"ST_ForcePolygonCCW({geom})"
    # A row without a location (homicide victims published without one) is a Feature with a null geometry.
    return ("'{\"type\":\"Feature\",\"id\":' || to_json(" + lyr.id_sql + ")::text"
            f" || ',\"geometry\":' || coalesce(ST_AsGeoJSON({geom}, {COORD_DIGITS}), 'null')"
            f" || ',\"properties\":' || json_build_object({props})::text || '}}'")


def count_items(conn: Connection, lyr: Layer, sel: Selection) -> int:
    """numberMatched: how many features the selection holds (exact)."""
    where, params = sel.where(lyr)
    return int(conn.execute(sa.text(f"SELECT count(*) FROM {lyr.source.from_sql} WHERE {where}"), params).scalar())


def items_page(conn: Connection, lyr: Layer, sel: Selection, limit: int, offset: int) -> tuple[str, int]:
    """One page as comma-separated GeoJSON Feature texts in feature-id order, and how many there are."""
    where, params = sel.where(lyr)
    _session(conn)
    # The page is cut in an inner query so the GeoJSON is built only for the rows returned, not
    # for the rows an offset skips (PostgreSQL evaluates a scan's target list before LIMIT).
    # string_agg orders by the id itself: the page order is then guaranteed, not a plan accident.
    page = f"SELECT * FROM {lyr.source.from_sql} WHERE {where} ORDER BY {lyr.id_sql} LIMIT :lim OFFSET :off"
    if (offset >= DEEP_OFFSET and where == "TRUE" and isinstance(lyr.source, TableSource)
            and _NAME.match(lyr.id_sql)):
        # Unfiltered deep pages (GDAL and QGIS reading a whole layer): skip the offset on an
        # index-only scan of the primary key, then fetch just the page's rows (about 2x faster
        # at offset 990,000 of 1M calls than visiting every skipped row in the table).
        page = (f"SELECT r.* FROM {lyr.source.table} r JOIN (SELECT {lyr.id_sql} FROM {lyr.source.table}"
                f" ORDER BY {lyr.id_sql} LIMIT :lim OFFSET :off) k USING ({lyr.id_sql})")
    sql = (f"SELECT count(*), coalesce(string_agg(f, ',' ORDER BY k), '') FROM ("
           f" SELECT {_feature_sql(lyr)} AS f, {lyr.id_sql} AS k FROM ({page}) s) t")
    n, text = conn.execute(sa.text(sql), {**params, "lim": limit, "off": offset}).one()
    return text, int(n)


def get_item(conn: Connection, lyr: Layer, fid: str, run_id: int | None = None) -> str | None:
    """One feature's GeoJSON text, or None when the layer has no feature `fid`."""
    value: Any = fid
    if lyr.id_type == "integer":
        try:
            value = int(fid)
        except ValueError:
            return None
    params = {"fid": value, **lyr.source.binds(run_id)}
    _session(conn)
    sql = f"SELECT {_feature_sql(lyr)} FROM {lyr.source.from_sql} WHERE {lyr.id_sql} = :fid"
    return conn.execute(sa.text(sql), params).scalar()


def _rfc3339(t: datetime | date | None) -> str | None:
    if t is None:
        return None
    if not isinstance(t, datetime):
        # A calendar date (homicides): its local midnight, the instant the date filters start from.
        t = datetime.combine(t, time(0), ZoneInfo(locale_settings().timezone))
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def extent(conn: Connection, lyr: Layer, run_id: int | None = None) -> dict:
    """The collection's extent: WGS84 bbox of the data and, for layers with a time, its interval."""
    params = lyr.source.binds(run_id)
    box = conn.execute(sa.text(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent({lyr.geom}) AS e"
        f" FROM {lyr.source.from_sql}) x"), params).one()
    out: dict = {}
    if box[0] is not None:
        out["spatial"] = {"bbox": [[round(float(v), COORD_DIGITS) for v in box]], "crs": CRS84}
    if lyr.time_property:
        col = lyr.property(lyr.time_property).sql
        lo, hi = conn.execute(sa.text(f"SELECT min({col}), max({col}) FROM {lyr.source.from_sql}"), params).one()
        out["temporal"] = {"interval": [[_rfc3339(lo), _rfc3339(hi)]],
                           "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return out
