"""Map tiles: z/x/y checks and Mapbox Vector Tiles from PostGIS.

Vector tiles (EPSG:3857, extent 4096, buffer 64) are built by PostGIS from the readable templates
in geo/sql/tiles/ (package data, read with importlib.resources), filled with identifiers from
geo/catalog.py and geo/filters.py only; every value is bound. Calls and incidents are too dense
to send as raw points at city zooms (a z10 tile held 170,000 points and 5 MB), so the rule is:

- below `RAW_MIN_ZOOM` (14) a point layer is always aggregated: one point per occupied square
  cell of `CELL` tile units (64 x 64 cells per tile) with `count`, `violent` and, for calls,
  `mean_p`; only points inside the tile are counted, so counts add up across tiles;
- from `RAW_MIN_ZOOM` on, a tile carries raw points with their popup properties when it (with its
  buffer) holds at most `MAX_RAW_FEATURES` points, else it stays aggregated until a closer zoom.

Heat tiles (PNG kernel density) are in geo/heat.py; the cache of finished tiles is web/tile_cache.py;
`hotspots db cluster` (CLUSTER on the GiST index) is geo.db.cluster_points.

This module never imports Flask: web/tiles.py parses requests and formats responses.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo import catalog
from geo.catalog import LAYERS, Layer
from geo.filters import TABLE_COLUMNS, Filter, ParameterError, parse_int, violent_sql

SQL_DIR = resources.files("geo") / "sql" / "tiles"

MAX_ZOOM = 22
EXTENT = 4096            # MVT tile coordinate range
BUFFER = 64              # tile units drawn beyond each edge, so symbols and outlines join up
CELL = 64                # aggregation cell side in tile units: at most 64 x 64 cells per tile
RAW_MIN_ZOOM = 14        # first zoom at which point layers may carry raw points
MAX_RAW_FEATURES = 4000  # raw points per tile at most (about 75 bytes each: ~300 kB before gzip)
# Bumped whenever the tile SQL or rendering changes, so ETags of old renderings stop matching.
TILES_REVISION = "1"

WORLD = 20037508.342789244          # half the EPSG:3857 world width, metres
# Charlotte: where the Mercator scale is taken for metre distances (Mecklenburg spans 35.0-35.5 N,
# so the scale varies by under 0.5% over the county) and the TileJSON's centre.
CHARLOTTE_LAT = 35.227
CHARLOTTE_CENTER = (-80.843, 35.227, 11)
MECKLENBURG_BOUNDS = (-81.058, 35.002, -80.550, 35.515)
PARALLEL_OFF = "SET LOCAL max_parallel_workers_per_gather = 0"


# --- tile addresses -----------------------------------------------------------------------------
def _parse_int(name: str, value: str | int) -> int:
    if isinstance(value, int):
        return value
    return parse_int(name, value)


def parse_tile(z: str | int, x: str | int, y: str | int, max_zoom: int = MAX_ZOOM) -> tuple[int, int, int]:
    """Checked tile address: z in 0..max_zoom, x and y in 0..2^z-1, else ParameterError naming it."""
    zi = _parse_int("z", z)
    if not 0 <= zi <= max_zoom:
        raise ParameterError("z", f"zoom {zi} is outside 0..{max_zoom}")
    n = 1 << zi
    xi, yi = _parse_int("x", x), _parse_int("y", y)
    if not 0 <= xi < n:
        raise ParameterError("x", f"column {xi} is outside 0..{n - 1} at zoom {zi}")
    if not 0 <= yi < n:
        raise ParameterError("y", f"row {yi} is outside 0..{n - 1} at zoom {zi}")
    return zi, xi, yi


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds (xmin, ymin, xmax, ymax) of an XYZ tile (row 0 at the top), as ST_TileEnvelope."""
    size = 2 * WORLD / (1 << z)
    return -WORLD + x * size, WORLD - (y + 1) * size, -WORLD + (x + 1) * size, WORLD - y * size


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a WGS84 point at zoom z."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


# --- vector tile layers -------------------------------------------------------------------------
@dataclass(frozen=True)
class TileLayer:
    """How a catalog layer is tiled: its raw-feature fields and whether dense points are aggregated."""

    layer: Layer
    fields: tuple[str, ...]           # public catalog properties carried by raw features
    aggregated: bool = False          # point layer: per-cell counts at low zoom or in dense tiles
    version_layers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The layer id (also the MVT layer name)."""
        return self.layer.id

    def minzoom_raw(self) -> int:
        """First zoom at which raw features may appear."""
        return RAW_MIN_ZOOM if self.aggregated else 0


def _tile_layer(name: str, fields: tuple[str, ...] | None = None, aggregated: bool = False,
                extra_versions: tuple[str, ...] = ()) -> TileLayer:
    lyr = LAYERS[name]
    names = fields if fields is not None else tuple(p.name for p in lyr.public)
    for f in names:
        if lyr.property(f) is None:   # only public catalog properties may reach a tile
            raise ValueError(f"tile field {f!r} is not a public property of layer {name!r}")
    return TileLayer(lyr, names, aggregated, (lyr.version_layer, *extra_versions))


TILE_LAYERS: dict[str, TileLayer] = {
    t.name: t for t in (
        # The map's popup fields; the rest stays in OGC items and exports.
        _tile_layer("calls", ("call_id", "received_at", "call_type", "category", "p_violent", "violent"), True),
        _tile_layer("incidents", ("incident_report_id", "date_reported", "highest_nibrs_code",
                                  "highest_nibrs_description", "category", "clearance_status"), True),
        # A few hundred victims: raw points at every zoom. Rows without a location have no place in a tile.
        _tile_layer("homicides", ("objectid", "crime_report_id", "date_reported", "age", "gender", "race_ethnicity",
                                  "weapon", "circumstances", "intimate_partner", "clearance_status")),
        _tile_layer("divisions"),
        _tile_layer("neighborhoods"),
        _tile_layer("hotspot_cells"),
        # NPA results take their outlines from the neighborhoods table.
        _tile_layer("hotspot_npas", extra_versions=("neighborhoods",)),
        _tile_layer("emerging_npas", ("npa_id", "pattern", "trend_z", "trend_p", "hot_share", "cold_share", "steps",
                                      "source", "last_step"), extra_versions=("neighborhoods",)),
        # Response-time runs take their outlines from the divisions table.
        _tile_layer("response_times", extra_versions=("divisions",)),
    )
}


def tile_layer(name: str) -> TileLayer:
    """How the catalog layer `name` is tiled (catalog.UnknownLayer for a name the catalog lacks)."""
    return TILE_LAYERS[catalog.layer(name).id]


@lru_cache(maxsize=None)
def sql_template(name: str) -> str:
    """A template of geo/sql/tiles without its comment lines."""
    # Comment lines document the placeholders by name (:f_*): dropped, they are never read as binds.
    lines = (SQL_DIR / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("--"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(t: TileLayer) -> str:
    cols = []
    for name in t.fields:
        prop = t.layer.property(name)
        expr = f"src.{prop.sql}"   # catalog properties of tiled layers are columns of src
        if prop.format == "date-time":
            # ISO 8601 in UTC whatever the session's TimeZone is.
            expr = f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        elif prop.format == "date":
            expr = f"to_char({expr}, 'YYYY-MM-DD')"   # a calendar date, whatever the DateStyle
        cols.append(f"{expr} AS {_quote(name)}")
    return ",\n           ".join(cols)


# Spherical Mercator written out (see points_grid.sql): far cheaper than ST_Transform per point.
_POINT_3857 = ("ST_SetSRID(ST_MakePoint(ST_X(src.geom) * (20037508.342789244 / 180.0), "
               "ln(tan(radians(90.0 + ST_Y(src.geom)) / 2.0)) * (20037508.342789244 / pi())), 3857)")


def _raw_sql(t: TileLayer, where: str) -> str:
    geom = _POINT_3857 if t.layer.geometry_type == "Point" else "ST_Transform(src.geom, 3857)"
    return sql_template("features.sql").format(source=t.layer.source.from_sql, columns=_columns(t), where=where, geom3857=geom)


def _grid_sql(t: TileLayer, where: str) -> str:
    cols = TABLE_COLUMNS[t.layer.filter_table]
    violent = violent_sql(t.layer.filter_table, "src")
    point_values = aggregates = ""
    if cols.probability:
        point_values = f", src.{cols.probability} AS p"
        aggregates = ",\n           avg(p)::real AS mean_p"
    return sql_template("points_grid.sql").format(source=t.layer.source.from_sql, where=where, violent=violent,
                                                point_values=point_values, aggregates=aggregates)


def tile_sql(t: TileLayer, z: int, x: int, y: int, flt: Filter | None = None,
             run_id: int | None = None) -> tuple[str, dict]:
    """The SQL (one statement returning the MVT bytes) and its bound values for tile z/x/y."""
    if flt is not None and t.layer.filter_table:
        where, params = flt.where(t.layer.filter_table, "src")
    else:
        where, params = "TRUE", {}
    params = dict(params, z=z, x=x, y=y, extent=EXTENT, buffer=BUFFER, margin=BUFFER / EXTENT, layer_name=t.name)
    params.update(t.layer.source.binds(run_id))
    if not t.aggregated:
        sql = _raw_sql(t, where)
    elif z < RAW_MIN_ZOOM:
        sql = _grid_sql(t, where)
        params.update(_grid_params(z, x, y), cell=CELL)
    else:
        sql = sql_template("points_adaptive.sql").format(
            source=t.layer.source.from_sql, where=where, raw_tile=_raw_sql(t, where), grid_tile=_grid_sql(t, where))
        params.update(_grid_params(z, x, y), cell=CELL, max_raw=MAX_RAW_FEATURES)
    return sql, params


def _grid_params(z: int, x: int, y: int) -> dict:
    xmin, ymin, xmax, ymax = tile_bounds(z, x, y)
    return dict(tile_xmin=xmin, tile_ymin=ymin, tile_xmax=xmax, tile_ymax=ymax, cell_m=(xmax - xmin) * CELL / EXTENT)


@lru_cache(maxsize=256)
def _statement(sql: str) -> sa.TextClause:
    # One parsed statement per distinct SQL text (layer, zoom rule, filter shape): parsing the long
    # template for bind names on every tile cost a measurable share of small tiles.
    return sa.text(f"{PARALLEL_OFF};\n{sql}")


def render_mvt(conn: Connection, t: TileLayer, z: int, x: int, y: int, flt: Filter | None = None,
               run_id: int | None = None) -> bytes:
    """The tile's MVT bytes (b'' when empty), in the caller's transaction with parallel workers off.

    Parallel workers cost more than they save on one tile (NOTES.md: 19 ms -> 4 ms at z14);
    SET LOCAL keeps the setting inside this transaction, sent in the same round trip.
    """
    sql, params = tile_sql(t, z, x, y, flt, run_id)
    value = conn.execute(_statement(sql), params).scalar()
    return bytes(value) if value else b""


def render_mvt_tile(engine: Engine, t: TileLayer, z: int, x: int, y: int, flt: Filter | None = None,
                    run_id: int | None = None) -> bytes:
    """`render_mvt` in its own transaction (one per tile)."""
    with engine.begin() as conn:
        return render_mvt(conn, t, z, x, y, flt, run_id)


def gzip_tile(data: bytes) -> bytes:
    """Gzip a tile body at level 1: a 200 kB raw-point tile takes 2.8 ms (level 6: 11.5 ms) and comes
    out 12% larger, a good trade for uncached tiles (measured on the demo data)."""
    return gzip.compress(data, compresslevel=1, mtime=0) if data else b""
