"""Heat tiles: the kernel density of violent calls as 256 x 256 RGBA PNGs, with their legend.

The density window (quartic kernel of geo.hotspots.kernel_density on a cell lattice aligned with
the world's pixels, so neighbouring tiles agree), one colour scale per zoom and filter (`heat_scale`),
the colour ramp, the PNG encoding and the legend. The query is the readable template
geo/sql/tiles/heat_points.sql; vector tiles stay in geo/tiles.py. Never imports Flask.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geo.filters import Filter
from geo.tiles import CHARLOTTE_LAT, PARALLEL_OFF, WORLD, sql_template, tile_bounds

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
        sql = sql_template("heat_points.sql").format(where=where, within="TRUE")
    else:
        sql = sql_template("heat_points.sql").format(
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
