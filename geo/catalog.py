"""The served layers: which tables, columns and filters each collection, tile layer and export exposes.

Identifiers reach SQL only from this catalog (never from a request): a request names a collection
or a property, and it is looked up here or refused. Columns marked `private` stay in the database
and never leave it through items, tiles or exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Union

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo import models
from geo.filters import ParameterError, compile_text
from geo.runs import RunKind

# Every layer's rows are read as `<source> AS src`, so one alias serves every tile template.
SOURCE_ALIAS = "src"


@dataclass(frozen=True)
class Property:
    """One served attribute: its public name, the SQL that computes it, and its JSON Schema type."""

    name: str
    sql: str
    type: str                  # JSON Schema type: string, integer, number, boolean
    description: str = ""
    format: str | None = None  # e.g. date-time
    private: bool = False      # kept out of items, tiles and exports
    queryable: bool = False    # can be used as `name=value` in an items request


@dataclass(frozen=True)
class TableSource:
    """A layer read straight from one table of geo/models.py (no run to choose)."""

    table: str

    def __post_init__(self):
        if self.table not in models.metadata.tables:
            raise ValueError(f"table {self.table!r} is not described in geo/models.py")

    @property
    def from_sql(self) -> str:
        """The FROM item: the table aliased `src`."""
        return f"{self.table} AS {SOURCE_ALIAS}"

    def binds(self, run_id: int | None = None) -> dict:
        """Bound values the FROM item needs: none for a table."""
        return {}


@dataclass(frozen=True)
class RunResultSource:
    """A layer read from one saved run's result rows: a Core SELECT given an explicit `run_id` bind."""

    # Builds the SELECT from the run_id bind parameter (a function, so the Core objects are made once, lazily).
    build: Callable[[sa.BindParameter], sa.Select] = field(compare=False)
    name: str = ""   # what it selects, for repr and equality

    @cached_property
    def _compiled(self) -> tuple[str, dict]:
        return compile_text(self.build(sa.bindparam("run_id", type_=sa.BigInteger)))

    @property
    def from_sql(self) -> str:
        """The FROM item: the run's result rows as a subquery aliased `src`, binding `:run_id`."""
        return f"({self._compiled[0]}) AS {SOURCE_ALIAS}"

    def binds(self, run_id: int | None = None) -> dict:
        """The run's id bound to `:run_id` (None selects no rows: a layer with no saved run is empty), and the
        subquery's own bound constants (JSON keys of a run's params or rows)."""
        return {**self._compiled[1], "run_id": run_id}


Source = Union[TableSource, RunResultSource]


def _as_geometry(column: sa.ColumnElement) -> sa.ColumnElement:
    # The geometry leaves the subquery as geometry: GeoAlchemy2 would wrap a top-level
    # geometry column in ST_AsEWKB, which the templates around it could not draw.
    return sa.type_coerce(column, sa.types.NullType()).label(column.name)


def _cell_results(run_id: sa.BindParameter) -> sa.Select:
    r = models.hotspot_cell_results.alias("r")
    return (sa.select(r.c.run_id, r.c.col, r.c.row, r.c.cell_ft, r.c.value, r.c.gi_z, r.c.gi_p, r.c.gi_q,
                      r.c.gi_p_sim, r.c.hotspot_class, _as_geometry(r.c.geom))
            .where(r.c.run_id == run_id))


def _npa_results(run_id: sa.BindParameter) -> sa.Select:
    r = models.hotspot_npa_results.alias("r")
    n = models.neighborhoods.alias("n")
    return (sa.select(r.c.run_id, r.c.npa_id, n.c.population, r.c.value, r.c.value_unit, r.c.event_count, r.c.gi_z,
                      r.c.gi_p, r.c.gi_q, r.c.gi_p_sim, r.c.hotspot_class, _as_geometry(n.c.geom))
            .select_from(r.join(n, r.c.npa_id == n.c.npa_id))
            .where(r.c.run_id == run_id))


def _emerging_results(run_id: sa.BindParameter) -> sa.Select:
    # The run's shared settings come from its params, so every feature names its source and period.
    e = models.emerging_npa_results.alias("e")
    a = models.analysis_runs.alias("a")
    n = models.neighborhoods.alias("n")
    p = a.c.params
    return (sa.select(e.c.run_id, e.c.npa_id, e.c.pattern, e.c.trend_z, e.c.trend_p, e.c.hot_steps, e.c.cold_steps,
                      e.c.steps, e.c.hot_share, e.c.cold_share, e.c.final_z, e.c.total,
                      p["source"].astext.label("source"), p["source_words"].astext.label("source_words"),
                      p["unit"].astext.label("time_step"),
                      p["neighbourhood_steps"].astext.cast(sa.Integer).label("neighbourhood_steps"),
                      p["confidence"].astext.cast(sa.Float).label("confidence"),
                      p["first_step"].astext.label("first_step"), p["last_step"].astext.label("last_step"),
                      p["period"][0].astext.label("period_start"), p["period"][1].astext.label("period_end"),
                      p["left_out_words"].astext.label("left_out"), _as_geometry(n.c.geom))
            .select_from(e.join(a, e.c.run_id == a.c.run_id).join(n, e.c.npa_id == n.c.npa_id))
            .where(e.c.run_id == run_id))


def _response_rows(run_id: sa.BindParameter) -> sa.Select:
    # One saved police-metrics row (geo/police.py) per feature, drawn on its division's polygon.
    r = models.analysis_rows.alias("r")
    d = models.divisions.alias("d")
    data = r.c.data

    def number(key: str, kind) -> sa.ColumnElement:
        return data[key].astext.cast(kind).label(key)

    return (sa.select(r.c.run_id, r.c.row_no, data["interval"].astext.label("part"), d.c.division_id,
                      data["priority"].astext.label("priority"), number("hour", sa.Integer),
                      data["category"].astext.label("category"), number("calls", sa.Integer), number("n", sa.Integer),
                      number("median_min", sa.Float), number("p90_min", sa.Float), number("mean_min", sa.Float),
                      number("left_out_missing", sa.Integer), number("left_out_imprecise", sa.Integer),
                      number("left_out_out_of_order", sa.Integer), _as_geometry(d.c.geom))
            .select_from(r.join(d, d.c.division_id == data["division"].astext))
            .where(r.c.run_id == run_id))


@dataclass(frozen=True)
class Layer:
    """A served table or view: OGC collection, tile layer and export share this definition."""

    id: str
    title: str
    description: str
    source: Source              # a table, or one run's result rows (RunResultSource)
    id_sql: str                 # the feature id (unique within the layer)
    id_type: str                # JSON type of the id
    geom: str = "geom"          # geometry column of the source, EPSG:4326
    geometry_type: str = "Point"
    filter_table: str | None = None   # 'calls' / 'incidents' / 'homicides': the shared filters apply (geo.filters)
    time_property: str | None = None  # the property `datetime` filters on
    version_layer: str = ""     # data_versions row whose bump makes cached tiles/pages stale
    properties: tuple[Property, ...] = field(default_factory=tuple)
    run_kinds: tuple[str, ...] = ()   # RunKind values of result layers (latest run unless `run` given; geo.runs)

    @property
    def public(self) -> tuple[Property, ...]:
        """Properties that may leave the database."""
        return tuple(p for p in self.properties if not p.private)

    def property(self, name: str) -> Property | None:
        """A public property by name, or None."""
        return next((p for p in self.public if p.name == name), None)


def _p(name, sql=None, type="string", description="", **kw) -> Property:
    return Property(name, sql or name, type, description, **kw)


_GI = (
    _p("value", type="number", description="the analysed value in the area: a count (violent calls, expected violent "
       "calls, offenses, victims) or, for NPA runs with value_unit per_1000_residents, that count per 1,000 residents"),
    _p("gi_z", type="number", description="Getis-Ord Gi* z-score"),
    _p("gi_p", type="number", description="two-sided p-value of gi_z from the normal approximation, "
       "2 x (1 - Phi(|z|)); the classes use it after FDR correction (gi_q)"),
    _p("gi_q", type="number", description="gi_p after Benjamini-Hochberg FDR correction"),
    _p("gi_p_sim", type="number", description="one-sided permutation pseudo p-value (esda G_Local p_sim): with P "
       "conditional permutations of which L give a Gi* at least as large as observed, (min(L, P - L) + 1) / (P + 1), "
       "the tail the observed value lies in; double it to compare with the two-sided gi_p; empty when run "
       "without permutations"),
    _p("hotspot_class", type="string", description="ArcGIS-style class: Hot/Cold Spot with 99/95/90% confidence, or Not Significant",
       queryable=True),
)

LAYERS: dict[str, Layer] = {
    layer.id: layer
    for layer in (
        Layer(
            id="calls",
            title="Calls for service",
            description="CAD calls for service with the classifier's violent probability and label "
                        "(the demo's calls are synthetic, generated in CMPD's layout).",
            source=TableSource("calls"),
            id_sql="call_id",
            id_type="string",
            filter_table="calls",
            time_property="received_at",
            version_layer="calls",
            properties=(
                _p("call_id", description="CAD event number"),
                _p("received_at", type="string", format="date-time", description="when the call was received (UTC)"),
                _p("call_type", description="CAD call type (nature code)", queryable=True),
                _p("priority", type="integer", description="dispatch priority", queryable=True),
                _p("category", description="taxonomy category (geo/taxonomy.csv)"),
                _p("division_id", description="CMPD division code from the spatial join"),
                _p("npa_id", type="integer", description="Neighborhood Profile Area from the spatial join", queryable=True),
                _p("p_violent", type="number", description="model probability that the call is violent"),
                _p("violent", "label", type="boolean", description="label at the model's threshold"),
                _p("model_version", description="classifier that scored the call"),
                _p("city"),
                _p("zip", queryable=True),
                _p("incident_report_id", description="linked incident report, if any"),
                _p("received_at_precision", queryable=True,
                   description="'time': received_at is an instant; 'date': a calendar date only (stored at local "
                               "midnight, time of day unknown)"),
                _p("dispatched_at", type="string", format="date-time",
                   description="CAD: when a unit was assigned (UTC); empty where the source has no CAD times"),
                _p("enroute_at", type="string", format="date-time", description="CAD: when the first unit started driving (UTC)"),
                _p("onscene_at", type="string", format="date-time", description="CAD: when the first unit arrived (UTC); "
                   "response time = onscene_at - received_at"),
                _p("cleared_at", type="string", format="date-time", description="CAD: when the last unit cleared (UTC)"),
                _p("units_assigned", type="integer", description="CAD: units that answered the call"),
                _p("primary_unit", description="CAD: call sign of the primary unit"),
                _p("disposition", description="CAD: how the call was closed"),
                _p("data_origin", description="'real' (a published file or feed) or 'synthetic' (the demo generator); "
                                              "filter with origin=real|synthetic"),
                # Street addresses of callers stay in the database (issue 7: private fields).
                _p("address", private=True),
            ),
        ),
        Layer(
            id="incidents",
            title="Incident reports",
            description="Incident reports in CMPD's published layout, with the project's category and spatial join. "
                        "Non-crimes (800-series reports, Unfounded) are kept with is_crime = false; data_origin says "
                        "whether a row is a real CMPD record or generated.",
            source=TableSource("incidents"),
            id_sql="incident_report_id",
            id_type="string",
            filter_table="incidents",
            time_property="date_reported",
            version_layer="incidents",
            properties=(
                _p("incident_report_id"),
                _p("date_reported", type="string", format="date-time"),
                _p("date_incident_began", type="string", format="date-time"),
                _p("highest_nibrs_code", queryable=True),
                _p("highest_nibrs_description"),
                _p("category"),
                _p("is_crime", type="boolean"),
                _p("clearance_status", queryable=True),
                _p("location", description="block-level location as CMPD publishes it"),
                _p("city"),
                _p("zip", queryable=True),
                _p("location_type_description"),
                _p("place_type_description"),
                _p("division_id"),
                _p("npa_id", type="integer", queryable=True),
                _p("date_reported_precision", queryable=True,
                   description="'date': date_reported is a calendar date (CMPD publishes no time of day), stored "
                               "at local midnight; 'report_id': time of day inferred from the report id; 'time': an instant"),
                _p("data_origin", description="'real' (a published CMPD file or feed) or 'synthetic' (the demo "
                                              "generator); filter with origin=real|synthetic"),
            ),
        ),
        Layer(
            id="homicides",
            title="Homicide victims",
            description="CMPD's Homicide layer, one feature per victim (real records, City of Charlotte open data); "
                        "dates are calendar dates in Charlotte with no time of day. Victims published without a "
                        "location have a null geometry: they are in items and exports, not in tiles.",
            source=TableSource("homicides"),
            id_sql="objectid",
            id_type="integer",
            filter_table="homicides",
            time_property="date_reported",
            version_layer="homicides",
            properties=(
                _p("objectid", type="integer", description="the layer's OBJECTID (one per victim)"),
                _p("crime_report_id", description="CMPD report id; a report with several victims repeats it",
                   queryable=True),
                _p("date_reported", type="string", format="date", description="date reported, a calendar date in Charlotte"),
                _p("age", type="integer", description="victim's age in years (empty where not published as a number)"),
                _p("gender", queryable=True),
                _p("race_ethnicity", queryable=True),
                _p("weapon", queryable=True),
                _p("circumstances", queryable=True),
                _p("intimate_partner", type="boolean", description="flagged as intimate-partner violence (IPV)",
                   queryable=True),
                _p("clearance_status", queryable=True),
                _p("clearance_date", type="string", format="date"),
                _p("location", description="hundred-block location as CMPD publishes it"),
                _p("cmpd_patrol_division", description="patrol division as published"),
                _p("division_id", description="CMPD division code from the spatial join"),
                _p("npa_source", type="integer", description="NPA as published (CMPD's own assignment)"),
                _p("npa_id", type="integer", description="Neighborhood Profile Area from the spatial join", queryable=True),
                _p("council_district", type="integer", queryable=True),
                _p("commission_district", type="integer"),
            ),
        ),
        Layer(
            id="divisions",
            title="CMPD patrol divisions",
            description="The 14 CMPD patrol division polygons (City of Charlotte open data).",
            source=TableSource("divisions"),
            id_sql="division_id",
            id_type="string",
            geometry_type="MultiPolygon",
            version_layer="divisions",
            properties=(
                _p("division_id", queryable=True),
                _p("name", queryable=True),
                _p("short_name"),
            ),
        ),
        Layer(
            id="neighborhoods",
            title="Neighborhood Profile Areas",
            description="The 462 Charlotte-Mecklenburg Neighborhood Profile Areas with their latest population.",
            source=TableSource("neighborhoods"),
            id_sql="npa_id",
            id_type="integer",
            geometry_type="MultiPolygon",
            version_layer="neighborhoods",
            properties=(
                _p("npa_id", type="integer", queryable=True),
                _p("population", type="integer"),
                _p("population_year", type="integer"),
            ),
        ),
        Layer(
            id="hotspot_cells",
            title="Hot spot grid cells (Gi*)",
            description="Getis-Ord Gi* on square State Plane grid cells of violent calls, from the latest saved run "
                        "(`hotspots hotspots --grid-ft N --save`), or the run named by `run`.",
            source=RunResultSource(_cell_results, "hotspot_cell_results"),
            id_sql="(col::text || '_' || \"row\"::text)",
            id_type="string",
            geometry_type="Polygon",
            version_layer="hotspot_cells",
            run_kinds=(RunKind.CALLS_GRID_HOTSPOTS.value,),
            properties=(
                _p("run_id", type="integer"),
                _p("col", type="integer"),
                _p("row", '"row"', type="integer"),
                _p("cell_ft", type="number", description="cell side in US survey feet (EPSG:2264)"),
                *_GI,
            ),
        ),
        Layer(
            id="hotspot_npas",
            title="Hot spot neighborhoods (Gi*)",
            description="Getis-Ord Gi* over the 462 NPAs, from the latest saved run (`hotspots hotspots --save`), "
                        "or the run named by `run`.",
            source=RunResultSource(_npa_results, "hotspot_npa_results JOIN neighborhoods"),
            id_sql="npa_id",
            id_type="integer",
            geometry_type="MultiPolygon",
            version_layer="hotspot_npas",
            run_kinds=tuple(k.value for k in RunKind if k.layer == "hotspot_npas"),
            properties=(
                _p("run_id", type="integer"),
                _p("npa_id", type="integer", queryable=True),
                _p("population", type="integer"),
                _p("value_unit", type="string", description="what value is: 'count', or 'per_1000_residents' (the "
                   "count per 1,000 residents; NPAs without residents are left out of such runs)"),
                _p("event_count", type="number", description="the count behind value (equal to it for counts)"),
                *_GI,
            ),
        ),
        Layer(
            id="emerging_npas",
            title="Emerging hot spots (NPAs)",
            description="ArcGIS-style Emerging Hot Spot Analysis over the 462 NPAs (space-time Gi*, FDR, Mann-Kendall "
                        "on each NPA's Gi* z-scores, 17 patterns), from the latest saved run (`hotspots emerging "
                        "--save`), or the run named by `run`.",
            # The run's shared settings come from its params, so every feature names its source and period.
            source=RunResultSource(_emerging_results, "emerging_npa_results JOIN analysis_runs JOIN neighborhoods"),
            id_sql="npa_id",
            id_type="integer",
            geometry_type="MultiPolygon",
            version_layer="emerging_npas",
            run_kinds=(RunKind.EMERGING_NPA_HOTSPOTS.value,),
            properties=(
                _p("run_id", type="integer"),
                _p("npa_id", type="integer", queryable=True),
                _p("pattern", description="one of ArcGIS's 17 emerging hot spot patterns (geo.emerging.PATTERNS), "
                   "or No Pattern Detected", queryable=True),
                _p("trend_z", type="number", description="Mann-Kendall trend z on the NPA's series of Gi* z-scores"),
                _p("trend_p", type="number", description="two-sided p of trend_z"),
                _p("hot_steps", type="integer", description="time steps in which the NPA's bin is a hot spot"),
                _p("cold_steps", type="integer", description="time steps in which the NPA's bin is a cold spot"),
                _p("steps", type="integer", description="complete time steps analysed"),
                _p("hot_share", type="number", description="hot_steps / steps"),
                _p("cold_share", type="number", description="cold_steps / steps"),
                _p("final_z", type="number", description="Gi* z of the NPA's bin in the final step"),
                _p("total", type="number", description="what was counted in the NPA over the analysed steps"),
                _p("source", description="what was counted: incidents, homicides, labelled or expected (geo.sources)"),
                _p("source_words", description="what was counted, in words"),
                _p("time_step", description="month or week"),
                _p("neighbourhood_steps", type="integer", description="earlier steps in each bin's neighbourhood "
                   "(ArcGIS's Neighborhood Time Step)"),
                _p("confidence", type="number", description="confidence at which a bin is hot or cold and a trend counts"),
                _p("first_step", description="label of the first analysed step"),
                _p("last_step", description="label of the final analysed step"),
                _p("period_start", description="first day of the analysed steps"),
                _p("period_end", description="day after the last analysed step"),
                _p("left_out", description="partial time steps left out, with the share of each the data covered"),
            ),
        ),
        Layer(
            id="response_times",
            title="Response times by division (police metrics)",
            description="Response time (received to first unit on scene) and its parts, dispatch delay and travel, as "
                        "median, 90th percentile and mean minutes per division (and priority, hour, ... as saved), "
                        "drawn on the division polygons, from the latest saved run of `hotspots stats response --by "
                        "division,priority --save`, or the run named by `run`. Methods: docs/methods.md.",
            source=RunResultSource(_response_rows, "analysis_rows JOIN divisions"),
            id_sql="row_no",
            id_type="integer",
            geometry_type="MultiPolygon",
            version_layer="analysis_rows",
            run_kinds=(RunKind.RESPONSE_TIMES.value,),
            properties=(
                _p("run_id", type="integer"),
                _p("interval", "part", description="response (received to on scene), dispatch (received to dispatched) or "
                   "travel (dispatched to on scene)", queryable=True),
                _p("division_id", queryable=True),
                _p("priority", description="CMPD priority (1 most urgent), 'unknown', or empty when not grouped by it",
                   queryable=True),
                _p("hour", type="integer", description="local hour of receipt, when grouped by it"),
                _p("category", description="call category, when grouped by it"),
                _p("calls", type="integer", description="calls under the run's filter in the group"),
                _p("n", type="integer", description="calls whose two times are real instants in CAD order (measured)"),
                _p("median_min", type="number", description="median minutes (percentile_cont 0.5)"),
                _p("p90_min", type="number", description="90th percentile minutes (percentile_cont 0.9)"),
                _p("mean_min", type="number", description="mean minutes (CMPD publishes means)"),
                _p("left_out_missing", type="integer", description="calls left out: a time not recorded"),
                _p("left_out_imprecise", type="integer", description="calls left out: a time known only by its date"),
                _p("left_out_out_of_order", type="integer", description="calls left out: CAD times out of order"),
            ),
        ),
    )
}


class UnknownLayer(ParameterError):
    """A layer name that is not in the catalog (the one error of every layer lookup; the web answers 404)."""

    def __init__(self, name: str):
        super().__init__("layer", f"unknown layer {name!r}; one of {', '.join(LAYERS)}")
        self.name = name

    def __str__(self) -> str:
        return self.message


def layer(name: str) -> Layer:
    """The catalog entry for `name`, or UnknownLayer listing the valid names."""
    try:
        return LAYERS[name]
    except KeyError:
        raise UnknownLayer(name) from None


def result_layers() -> tuple[str, ...]:
    """The layers drawn from saved analysis runs (they take `run`)."""
    return tuple(name for name, lyr in LAYERS.items() if lyr.run_kinds)


def data_versions(conn: Connection | Engine) -> dict[str, int]:
    """Current version of every served layer (bumped by triggers on each change; migration 006)."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return data_versions(c)
    return {k: int(v) for k, v in conn.execute(sa.text("SELECT layer, version FROM data_versions"))}


def division_names(conn: Connection | Engine) -> dict[str, str]:
    """Every accepted spelling of a division (code, name, short name; lower case) -> division code."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return division_names(c)
    out: dict[str, str] = {}
    for code, name, short in conn.execute(sa.text("SELECT division_id, name, short_name FROM divisions")):
        for spelling in (code, name, short):
            if spelling:
                out[str(spelling).lower()] = code
    return out


def division_labels(conn: Connection | Engine) -> dict[str, str]:
    """Division code -> its short name ('01' -> 'Central'), for tables that print both."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return division_labels(c)
    return {str(code): short or name for code, name, short in
            conn.execute(sa.text("SELECT division_id, name, short_name FROM divisions"))}


def latest_call_date(conn: Connection | Engine, tz: str):
    """The local date of the newest call (the anchor of the map's 7/28/365-day presets)."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return latest_call_date(c, tz)
    return conn.execute(sa.text("SELECT (max(received_at) AT TIME ZONE :tz)::date FROM calls"), {"tz": tz}).scalar()


ORIGIN_TABLES = ("calls", "incidents")


def origin_counts(conn: Connection | Engine, tables: tuple[str, ...] = ORIGIN_TABLES) -> dict[str, dict[str, int]]:
    """Rows per data origin ('real', 'synthetic') in each point table: what a map or count is made of."""
    unknown = set(tables) - set(ORIGIN_TABLES)
    if unknown:
        raise ValueError(f"no data_origin in {sorted(unknown)}; tables with one: {', '.join(ORIGIN_TABLES)}")

    def run(c: Connection) -> dict[str, dict[str, int]]:
        out = {}
        for table in tables:   # checked against ORIGIN_TABLES, never from a request
            rows = c.execute(sa.text(f"SELECT data_origin, count(*) FROM {table} GROUP BY 1")).all()
            out[table] = {"real": 0, "synthetic": 0, **{o: int(n) for o, n in rows}}
        return out

    if isinstance(conn, Engine):
        with conn.connect() as c:
            return run(c)
    return run(conn)
