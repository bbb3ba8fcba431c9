"""The grid-accelerated point-in-polygon index against plain GEOS tests on the real polygons."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geo.spatial import AreaIndex, state_plane_to_lonlat


@pytest.fixture(scope="module")
def npas(data_dir):
    return gpd.read_file(data_dir / "npa" / "npa.geojson")


@pytest.fixture(scope="module")
def divisions(data_dir):
    d = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp").to_crs(4326)
    d["geometry"] = d.geometry.make_valid()
    return d


def _reference(polygons, ids, x, y):
    """Direct GEOS answer: the polygon that contains each point (None if none)."""
    points = shapely.points(x, y)
    poly_i, pt_i = shapely.STRtree(points).query(np.asarray(polygons), predicate="contains")
    out = np.full(len(x), None, dtype=object)
    out[pt_i] = np.asarray(ids, dtype=object)[poly_i]
    return out


@pytest.mark.parametrize("layer,id_field", [("npas", "id"), ("divisions", "DIVISION")])
def test_same_answer_as_geos_for_random_points(request, layer, id_field):
    frame = request.getfixturevalue(layer)
    rng = np.random.default_rng(7)
    xmin, ymin, xmax, ymax = frame.total_bounds
    # Cover the whole extent and a margin outside it, so "no polygon" is exercised too.
    x = rng.uniform(xmin - 0.05, xmax + 0.05, 300_000)
    y = rng.uniform(ymin - 0.05, ymax + 0.05, 300_000)
    index = AreaIndex(frame.geometry, frame[id_field])
    got = index.lookup(x, y)
    want = _reference(frame.geometry.values, frame[id_field], x, y)
    assert (got == want).all()
    assert (want == None).sum() > 1000 and (want != None).sum() > 50_000  # noqa: E711
    # Most points are answered from the grid without an exact test.
    assert index.boundary.mean() < 0.1


def test_boundary_points_go_to_the_first_polygon_touching_them(npas):
    index = AreaIndex(npas.geometry, npas["id"])
    ring = shapely.get_coordinates(npas.geometry.iloc[10].exterior)[:50]
    got = index.lookup(ring[:, 0], ring[:, 1])
    for (x, y), gid in zip(ring, got):
        touching = [i for i, g in zip(npas["id"], npas.geometry) if g.intersects(shapely.Point(x, y))]
        assert gid == touching[0]


def test_missing_and_far_points_are_unassigned(npas):
    index = AreaIndex(npas.geometry, npas["id"])
    got = index.lookup(np.array([np.nan, -78.64, 0.0, -80.84]), np.array([35.2, 35.78, 0.0, np.nan]))
    assert list(got) == [None, None, None, None]


def test_state_plane_feet_land_in_the_same_division(data_dir, divisions):
    # The shapefile is in EPSG:2264 feet: a point inside Central Division in those coordinates,
    # converted by us, must fall inside Central Division in WGS84.
    native = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp")
    central = native[native["DIVISION"] == "01"].geometry.make_valid().iloc[0]
    inside = central.representative_point()
    lon, lat = state_plane_to_lonlat(np.array([inside.x]), np.array([inside.y]))
    assert 1_400_000 < inside.x < 1_500_000  # feet, not metres
    index = AreaIndex(divisions.geometry, divisions["DIVISION"])
    assert index.lookup(lon, lat)[0] == "01"
    assert -81.0 < lon[0] < -80.7 and 35.1 < lat[0] < 35.35
