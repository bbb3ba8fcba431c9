"""Map tiles: z/x/y checks, Mapbox Vector Tiles from PostGIS, kernel-density heat tiles, a tile cache.

Vector tiles (EPSG:3857, extent 4096, buffer 64) are built by PostGIS from the readable templates
in geo/sql/tiles/ (package data, read with importlib.resources), filled with identifiers from
geo/catalog.py and geo/filters.py only; every value is bound. Calls and incidents are too dense
to send as raw points at city zooms (a z10 tile held 170,000 points and 5 MB), so the rule is:

- below `RAW_MIN_ZOOM` (14) a point layer is always aggregated: one point per occupied square
  cell of `CELL` tile units (64 x 64 cells per tile) with `count`, `violent` and, for calls,
  `mean_p`; only points inside the tile are counted, so counts add up across tiles;
- from `RAW_MIN_ZOOM` on, a tile carries raw points with their popup properties when it (with its
  buffer) holds at most `MAX_RAW_FEATURES` points, else it stays aggregated until a closer zoom.

Heat tiles are 256 x 256 RGBA PNGs of the quartic kernel density of violent calls (the kernel of
geo.hotspots.kernel_density), coloured against a per-zoom maximum for the current filter so that
every tile of a zoom shares one legend (see `heat_scale`).

This module never imports Flask: web/tiles.py parses requests and formats responses.
"""

from __future__ import annotations

import gzip
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Hashable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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
    )
}


def tile_layer(name: str) -> TileLayer:
    """The tile layer `name`, or ParameterError('layer') listing the valid ones."""
    try:
        return TILE_LAYERS[name]
    except KeyError:
        raise ParameterError("layer", f"unknown layer {name!r}; one of {', '.join(TILE_LAYERS)}") from None


@lru_cache(maxsize=None)
def _template(name: str) -> str:
    # Comment lines document the placeholders by name; they are dropped before formatting and binding.
    lines = (SQL_DIR / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("--"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _source(lyr: Layer) -> str:
    # Tables are aliased src like the run-selected subqueries, so one alias serves every template.
    return lyr.source if lyr.source.endswith(" src") else f"{lyr.source} AS src"


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
    return _template("features.sql").format(source=_source(t.layer), columns=_columns(t), where=where, geom3857=geom)


def _grid_sql(t: TileLayer, where: str) -> str:
    cols = TABLE_COLUMNS[t.layer.filter_table]
    violent = violent_sql(t.layer.filter_table, "src")
    point_values = aggregates = ""
    if cols.probability:
        point_values = f", src.{cols.probability} AS p"
        aggregates = ",\n           avg(p)::real AS mean_p"
    return _template("points_grid.sql").format(source=_source(t.layer), where=where, violent=violent,
                                                point_values=point_values, aggregates=aggregates)


def tile_sql(t: TileLayer, z: int, x: int, y: int, flt: Filter | None = None,
             run_id: int | None = None) -> tuple[str, dict]:
    """The SQL (one statement returning the MVT bytes) and its bound values for tile z/x/y."""
    if flt is not None and t.layer.filter_table:
        where, params = flt.where(t.layer.filter_table, "src")
    else:
        where, params = "TRUE", {}
    params = dict(params, z=z, x=x, y=y, extent=EXTENT, buffer=BUFFER, margin=BUFFER / EXTENT, layer_name=t.name)
    if t.layer.run_kinds:
        params["run_id"] = run_id
    if not t.aggregated:
        sql = _raw_sql(t, where)
    elif z < RAW_MIN_ZOOM:
        sql = _grid_sql(t, where)
        params.update(_grid_params(z, x, y), cell=CELL)
    else:
        sql = _template("points_adaptive.sql").format(
            source=_source(t.layer), where=where, raw_tile=_raw_sql(t, where), grid_tile=_grid_sql(t, where))
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


def cluster_points(engine: Engine, table: str = "calls") -> None:
    """Rewrite a point table in space order (CLUSTER on its GiST index) and re-analyse it.

    Neighbouring points then share disk pages, so a tile reads a few pages instead of one per point
    (NOTES.md: z12/z14 tiles about 30% faster). Takes an exclusive lock for the rewrite: run it in
    a quiet period, e.g. after a bulk load (`hotspots db cluster`). New rows are appended unsorted,
    so re-run it after large loads.
    """
    lyr = LAYERS[table]
    if lyr.filter_table is None:
        raise ValueError(f"{table!r} is not a point layer; one of calls, incidents")
    index = f"{lyr.source}_geom_idx"        # named by geo/sql/migrations/001_core.sql
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CLUSTER {lyr.source} USING {index}")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"ANALYZE {lyr.source}")


# --- heat tiles -----------------------------------------------------------------------------------
HEAT_SIZE = 256
MIN_BANDWIDTH_PX = 4.0      # at low zoom the kernel widens to at least 4 pixels, so it stays visible
TRANSPARENT_BELOW = 0.005   # density under 0.5% of the zoom's maximum is drawn fully transparent
# Colour ramp against sqrt(density / max): (position, R, G, B, alpha); yellow through orange to red.
HEAT_RAMP = ((0.0, 255, 255, 178, 60), (0.35, 254, 204, 92, 150), (0.6, 253, 141, 60, 190),
             (0.8, 240, 59, 32, 215), (1.0, 189, 0, 38, 235))


def mercator_scale() -> float:
    """EPSG:3857 metres per ground metre at Charlotte's latitude (1 / cos(lat))."""
    return 1.0 / math.cos(math.radians(CHARLOTTE_LAT))


def pixel_size(z: int) -> float:
    """EPSG:3857 metres per pixel of a 256-pixel tile at zoom z."""
    return 2 * WORLD / (HEAT_SIZE * (1 << z))


def heat_bandwidth_px(z: int, bandwidth_ft: float | None = None) -> float:
    """The kernel radius in pixels at zoom z: the ground bandwidth (default 1,500 ft), at least 4 px."""
    from geo.hotspots import DEFAULT_BANDWIDTH_FT

    ft = DEFAULT_BANDWIDTH_FT if bandwidth_ft is None else bandwidth_ft
    px = ft * 0.3048 * mercator_scale() / pixel_size(z)
    return max(px, MIN_BANDWIDTH_PX)


def _cell_px(bandwidth_px: float) -> int:
    # Density is computed on cells of a power-of-two number of pixels (so cells tile the world's
    # pixel lattice and both neighbours of an edge bin a call into the same cell), about a quarter
    # of the bandwidth, then interpolated to pixels: close-zoom tiles stay cheap.
    s = 1
    while s * 2 <= bandwidth_px / 4 and s * 2 <= HEAT_SIZE:
        s *= 2
    return s


def heat_reach(z: int) -> float:
    """How far (EPSG:3857 metres) beyond a tile the calls affecting its pixels may lie."""
    bw = heat_bandwidth_px(z)
    s = _cell_px(bw)
    return (bw + 3 * s) * pixel_size(z)


def _density_cells(cx: np.ndarray, cy: np.ndarray, ncols: int, nrows: int, bandwidth_cells: float) -> np.ndarray:
    """Quartic kernel density per square cell on an ncols x nrows grid (coordinates in cell units)."""
    from geo.hotspots import kernel_density

    d = kernel_density(cx, cy, None, (0.0, 0.0, float(ncols), float(nrows)),
                       bandwidth_ft=bandwidth_cells, cell_ft=1.0)
    # kernel_density reports per square mile of its unit (feet); with unit = one cell, undo that.
    return d.values[:nrows, :ncols] / 5280.0 ** 2


def density_window(x: np.ndarray, y: np.ndarray, z: int, px0: int, py0: int, width: int = HEAT_SIZE,
                   height: int = HEAT_SIZE) -> np.ndarray:
    """Violent calls per km2 at the centres of a window of pixels (global pixel coordinates at zoom z).

    `x`, `y` are EPSG:3857 metres. The field is the same whichever window asks (cells sit on the
    world lattice), so a tile equals the matching slice of a larger window and tile edges agree.
    Row 0 of the result is the window's top.
    """
    bw = heat_bandwidth_px(z)
    s = _cell_px(bw)
    pad = int(math.ceil(bw / s)) + 2
    # window origin on the cell lattice (px0, py0 are multiples of s for tiles and tile-aligned windows)
    c0, r0 = px0 // s - pad, py0 // s - pad
    ncols = (px0 + width - 1) // s + pad + 1 - c0
    nrows = (py0 + height - 1) // s + pad + 1 - r0
    ps = pixel_size(z)
    gx = (np.asarray(x, dtype=float) + WORLD) / ps / s - c0     # in cells from the grid's left edge
    gy = (WORLD - np.asarray(y, dtype=float)) / ps / s - r0     # in cells down from its top edge
    per_cell = _density_cells(gx, gy, ncols, nrows, bw / s)
    # Bilinear interpolation between cell centres at each pixel centre.
    from scipy.ndimage import map_coordinates

    cols = (px0 + np.arange(width) + 0.5) / s - c0 - 0.5
    rows = (py0 + np.arange(height) + 0.5) / s - r0 - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    values = map_coordinates(per_cell, [rr, cc], order=1, mode="nearest")
    ground_m2 = (s * ps / mercator_scale()) ** 2
    return np.clip(values, 0, None) / ground_m2 * 1e6


def tile_density(x: np.ndarray, y: np.ndarray, z: int, tx: int, ty: int) -> np.ndarray:
    """Violent calls per km2 at each pixel of heat tile z/tx/ty (256 x 256, row 0 at the top)."""
    return density_window(x, y, z, tx * HEAT_SIZE, ty * HEAT_SIZE)


def _heat_where(flt: Filter | None) -> tuple[str, dict]:
    return flt.where("calls", "src") if flt is not None else ("TRUE", {})


def heat_points(conn: Connection, bounds: tuple[float, float, float, float] | None,
                flt: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:3857 x, y of the filtered violent calls inside `bounds` (EPSG:3857 metres; None: all)."""
    where, params = _heat_where(flt)
    if bounds is None:
        sql = _template("heat_points.sql").format(where=where, within="TRUE")
    else:
        sql = _template("heat_points.sql").format(
            where=where, within="src.geom && ST_Transform(ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 3857), 4326)")
        params = dict(params, xmin=bounds[0], ymin=bounds[1], xmax=bounds[2], ymax=bounds[3])
    rows = conn.execute(sa.text(f"{PARALLEL_OFF};\n{sql}"), params).fetchall()
    if not rows:
        return np.empty(0), np.empty(0)
    arr = np.asarray(rows, dtype=float)
    return arr[:, 0], arr[:, 1]


def heat_tile_points(conn: Connection, z: int, x: int, y: int, flt: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The violent calls that reach tile z/x/y's pixels (the tile grown by the kernel's reach)."""
    xmin, ymin, xmax, ymax = tile_bounds(z, x, y)
    r = heat_reach(z)
    return heat_points(conn, (max(xmin - r, -WORLD), max(ymin - r, -WORLD), min(xmax + r, WORLD), min(ymax + r, WORLD)), flt)


def heat_scale(conn: Connection, z: int, flt: Filter | None = None) -> float:
    """The legend's maximum at zoom z: the highest density (per km2) of the filtered calls anywhere.

    One number per zoom and filter, so adjacent tiles share a colour scale and a legend. It is
    per zoom because below about z10 the kernel widens to 4 pixels and peaks flatten; from there
    on the bandwidth is the fixed 1,500 ft and the maximum is the same at every zoom. Computed on
    cells of a quarter bandwidth over the calls' extent (0 when nothing matches).
    """
    x, y = heat_points(conn, None, flt)
    if len(x) == 0:
        return 0.0
    bw_m = heat_bandwidth_px(z) * pixel_size(z)
    cell = bw_m / 4
    pad = 6 * cell
    x0, y0 = x.min() - pad, y.min() - pad
    ncols = int(math.ceil((x.max() + pad - x0) / cell))
    nrows = int(math.ceil((y.max() + pad - y0) / cell))
    while ncols * nrows > 4_000_000:       # calls spread beyond a county: coarser cells
        cell *= 2
        ncols, nrows = ncols // 2 + 1, nrows // 2 + 1
    per_cell = _density_cells((x - x0) / cell, (y - y0) / cell, ncols, nrows, bw_m / cell)
    ground_m2 = (cell / mercator_scale()) ** 2
    return float(per_cell.max() / ground_m2 * 1e6)


def heat_rgba(density: np.ndarray, scale_max: float) -> np.ndarray:
    """Colour a density array: sqrt(density / scale_max) along HEAT_RAMP, transparent near zero."""
    h, w = density.shape
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    if scale_max <= 0:
        return rgba
    frac = np.clip(density / scale_max, 0.0, 1.0)
    t = np.sqrt(frac)
    stops = np.array([s[0] for s in HEAT_RAMP])
    for channel in range(4):
        rgba[..., channel] = np.interp(t, stops, [s[channel + 1] for s in HEAT_RAMP]).round().astype(np.uint8)
    rgba[frac < TRANSPARENT_BELOW] = 0
    return rgba


def encode_png(rgba: np.ndarray) -> bytes:
    """An RGBA array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


@lru_cache(maxsize=1)
def transparent_png() -> bytes:
    """A fully transparent 256 x 256 tile (where no violent call reaches)."""
    return encode_png(np.zeros((HEAT_SIZE, HEAT_SIZE, 4), dtype=np.uint8))


def render_heat(x: np.ndarray, y: np.ndarray, z: int, tx: int, ty: int, scale_max: float) -> bytes:
    """PNG bytes of heat tile z/tx/ty from the violent calls x, y (EPSG:3857) that reach it."""
    if len(x) == 0 or scale_max <= 0:
        return transparent_png()
    rgba = heat_rgba(tile_density(x, y, z, tx, ty), scale_max)
    if not rgba[..., 3].any():
        return transparent_png()
    return encode_png(rgba)


def heat_legend(scale_max: float) -> list[dict]:
    """Legend stops: density (per km2) at each ramp position, with its colour."""
    return [{"density_per_km2": round(scale_max * pos ** 2, 3), "color": f"#{r:02x}{g:02x}{b:02x}",
             "opacity": round(a / 255, 2)} for pos, r, g, b, a in HEAT_RAMP]


# --- the finished-tile cache ----------------------------------------------------------------------
class TileCache:
    """A thread-safe LRU of finished tile bodies, bounded by their total size in bytes.

    Keys carry the layers' data versions, so entries of older data are never hit again and age out.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> bytes | None:
        """The cached body (marking it recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        """Store a body, evicting the least recently used ones beyond the byte budget."""
        size = len(value) + 100  # the key and bookkeeping cost something even for empty tiles
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old) + 100
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted) + 100

    @property
    def size_bytes(self) -> int:
        """Bytes held (bodies plus a fixed overhead per entry)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
