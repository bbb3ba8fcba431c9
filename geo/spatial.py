"""Spatial joins: assigning points to divisions and NPAs, reading the polygon layers."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from sqlalchemy.engine import Engine

WGS84 = "EPSG:4326"
STATE_PLANE = "EPSG:2264"  # NAD83 / North Carolina (ftUS): CMPD's X_COORD/Y_COORD

_to_wgs84 = Transformer.from_crs(STATE_PLANE, WGS84, always_xy=True)


def state_plane_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert NC State Plane feet (EPSG:2264) to WGS84 lon/lat."""
    lon, lat = _to_wgs84.transform(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return np.asarray(lon), np.asarray(lat)


def assign_points(lon: np.ndarray, lat: np.ndarray, polygons: gpd.GeoSeries, ids: pd.Series | np.ndarray) -> np.ndarray:
    """Id of the polygon containing each point (object array, None where no polygon does).

    Points strictly inside win; a point exactly on a shared boundary goes to the first polygon
    (in `ids` order) that touches it, so boundary points are never lost.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    ids = np.asarray(ids, dtype=object)
    out = np.full(len(lon), None, dtype=object)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any() or len(polygons) == 0:
        return out
    idx_ok = np.flatnonzero(ok)
    points = shapely.points(lon[idx_ok], lat[idx_ok])
    tree = shapely.STRtree(np.asarray(polygons.values))
    pt_i, poly_i = tree.query(points, predicate="within")
    # Polygon layers here do not overlap; if they did, keep the first polygon per point.
    order = np.lexsort((poly_i, pt_i))
    pt_i, poly_i = pt_i[order], poly_i[order]
    first = np.r_[True, pt_i[1:] != pt_i[:-1]] if len(pt_i) else np.array([], dtype=bool)
    out[idx_ok[pt_i[first]]] = ids[poly_i[first]]
    missing = np.flatnonzero(out[idx_ok] == None)  # noqa: E711 (elementwise on object array)
    if len(missing):
        b_pt, b_poly = tree.query(points[missing], predicate="intersects")
        order = np.lexsort((b_poly, b_pt))
        b_pt, b_poly = b_pt[order], b_poly[order]
        if len(b_pt):
            first = np.r_[True, b_pt[1:] != b_pt[:-1]]
            out[idx_ok[missing[b_pt[first]]]] = ids[b_poly[first]]
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
