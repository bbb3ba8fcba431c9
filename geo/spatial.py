"""Spatial joins: assigning points to divisions and NPAs, reading the polygon layers."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from scipy import ndimage
from sqlalchemy.engine import Engine

WGS84 = "EPSG:4326"
STATE_PLANE = "EPSG:2264"  # NAD83 / North Carolina (ftUS): CMPD's X_COORD/Y_COORD

_to_wgs84 = Transformer.from_crs(STATE_PLANE, WGS84, always_xy=True)


def state_plane_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert NC State Plane feet (EPSG:2264) to WGS84 lon/lat."""
    lon, lat = _to_wgs84.transform(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return np.asarray(lon), np.asarray(lat)


class AreaIndex:
    """Exact point-in-polygon lookup for a set of non-overlapping polygons, accelerated by a grid.

    The polygons' extent is cut into cells. A cell that no polygon boundary crosses lies wholly
    inside one polygon (or outside all), so points falling there take that label from a table
    lookup; only points in cells a boundary crosses are tested against the polygons themselves.
    A point exactly on a boundary goes to the first polygon (in `ids` order) touching it.
    """

    def __init__(self, polygons: gpd.GeoSeries | np.ndarray, ids: pd.Series | np.ndarray, cells: int = 2048):
        self.polygons = np.asarray(getattr(polygons, "values", polygons), dtype=object)
        self.ids = np.asarray(ids, dtype=object)
        shapely.prepare(self.polygons)
        self.tree = shapely.STRtree(self.polygons)
        xmin, ymin, xmax, ymax = shapely.total_bounds(self.polygons)
        pad = 1e-9 * max(xmax - xmin, ymax - ymin, 1.0)
        self.x0, self.y0 = xmin - pad, ymin - pad
        self.nx = self.ny = cells
        self.dx = (xmax - xmin + 2 * pad) / cells
        self.dy = (ymax - ymin + 2 * pad) / cells
        self.label = np.full(cells * cells, -1, dtype=np.int32)  # polygon position, -1 = none
        self.boundary = np.zeros(cells * cells, dtype=bool)
        self._build()

    def _cell(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx = np.floor((x - self.x0) / self.dx).astype(np.int64)
        cy = np.floor((y - self.y0) / self.dy).astype(np.int64)
        return cx, cy

    def _build(self) -> None:
        # Boundary cells: densify every ring so consecutive vertices are closer than half a cell;
        # each crossed cell is then within one cell of a vertex's cell, so a 3x3 dilation of the
        # vertices' cells is a superset of the crossed cells (conservative, hence exact).
        step = 0.5 * min(self.dx, self.dy)
        rings = shapely.segmentize(shapely.boundary(self.polygons), step)
        xy = shapely.get_coordinates(rings)
        cx, cy = self._cell(xy[:, 0], xy[:, 1])
        grid = np.zeros((self.ny, self.nx), dtype=bool)
        grid[cy, cx] = True
        dilated = ndimage.binary_dilation(grid, structure=np.ones((3, 3), dtype=bool))
        boundary = dilated
        self.boundary = boundary.ravel()
        # No boundary separates two edge-adjacent interior cells, so each connected region of
        # interior cells lies in one polygon (or none): test one centre per region.
        regions, n_regions = ndimage.label(~boundary)
        flat = regions.ravel()
        # One cell per region without sorting: with repeated indices the last write wins, so
        # writing in reverse leaves each region's first cell.
        inner = np.flatnonzero(flat)
        first = np.zeros(n_regions + 1, dtype=np.int64)
        first[flat[inner][::-1]] = inner[::-1]
        sample = first[1:]
        centres_x = self.x0 + (sample % self.nx + 0.5) * self.dx
        centres_y = self.y0 + (sample // self.nx + 0.5) * self.dy
        region_label = np.r_[-1, self._exact(centres_x, centres_y)].astype(np.int32)
        self.label = region_label[flat]

    def _exact(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Polygon position containing each point (-1 for none), by direct tests."""
        out = np.full(len(x), -1, dtype=np.int32)
        if len(x) == 0:
            return out
        points = shapely.points(x, y)
        # Prepared polygons tested against a tree of the points: the fast direction in GEOS.
        point_tree = shapely.STRtree(points)
        poly_i, pt_i = point_tree.query(self.polygons, predicate="contains")
        order = np.lexsort((poly_i, pt_i))
        pt_i, poly_i = pt_i[order], poly_i[order]
        first = np.r_[True, pt_i[1:] != pt_i[:-1]] if len(pt_i) else np.array([], dtype=bool)
        out[pt_i[first]] = poly_i[first]
        missing = np.flatnonzero(out < 0)
        if len(missing):
            # Points on a boundary are not "contained" by either side: give them to the first toucher.
            b_poly, b_pt = shapely.STRtree(points[missing]).query(self.polygons, predicate="intersects")
            order = np.lexsort((b_poly, b_pt))
            b_pt, b_poly = b_pt[order], b_poly[order]
            if len(b_pt):
                first = np.r_[True, b_pt[1:] != b_pt[:-1]]
                out[missing[b_pt[first]]] = b_poly[first]
        return out

    def positions(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Position (in the polygon list) of the polygon containing each point, -1 for none or NaN."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        out = np.full(len(x), -1, dtype=np.int32)
        with np.errstate(invalid="ignore"):
            cx, cy = self._cell(np.nan_to_num(x, nan=-1e300), np.nan_to_num(y, nan=-1e300))
        inside = np.isfinite(x) & np.isfinite(y) & (cx >= 0) & (cx < self.nx) & (cy >= 0) & (cy < self.ny)
        idx = np.flatnonzero(inside)
        cell = cy[idx] * self.nx + cx[idx]
        on_edge = self.boundary[cell]
        out[idx[~on_edge]] = self.label[cell[~on_edge]]
        edge_idx = idx[on_edge]
        out[edge_idx] = self._exact(x[edge_idx], y[edge_idx])
        return out

    def lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Id of the polygon containing each point (object array, None where none does)."""
        pos = self.positions(x, y)
        out = np.full(len(pos), None, dtype=object)
        hit = pos >= 0
        out[hit] = self.ids[pos[hit]]
        return out


def read_divisions(engine: Engine) -> gpd.GeoDataFrame:
    """Division polygons from PostGIS (EPSG:4326), ordered by division_id."""
    return gpd.read_postgis(
        "SELECT division_id, name, short_name, geom FROM divisions ORDER BY division_id",
        engine, geom_col="geom",
    )


def read_neighborhoods(engine: Engine) -> gpd.GeoDataFrame:
    """NPA polygons from PostGIS (EPSG:4326) with population, ordered by npa_id."""
    return gpd.read_postgis(
        "SELECT npa_id, population, population_year, geom FROM neighborhoods ORDER BY npa_id",
        engine, geom_col="geom",
    )


def county_2264(engine: Engine):
    """The county as one (multi)polygon in EPSG:2264 feet: the union of the NPAs, which tile it."""
    npas = read_neighborhoods(engine).to_crs(2264)
    return shapely.union_all(npas.geometry.to_numpy())
