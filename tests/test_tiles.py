"""Tile math (geo/tiles.py), heat-tile density and colours (geo/heat.py), the tile cache
(web/tile_cache.py), CLUSTER (geo.db.cluster_points) and the tile layers' fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sqlalchemy as sa

from geo import heat
from geo import tiles as gt
from geo.db import cluster_points
from geo.filters import ParameterError
from web.tile_cache import TileCache


def test_parse_tile_accepts_the_grid_and_names_what_is_wrong():
    assert gt.parse_tile("0", "0", "0") == (0, 0, 0)
    assert gt.parse_tile("22", str(2 ** 22 - 1), "5") == (22, 2 ** 22 - 1, 5)
    for args, parameter in [(("23", "0", "0"), "z"), (("-1", "0", "0"), "z"), (("1.5", "0", "0"), "z"),
                            (("4", "16", "0"), "x"), (("4", "0", "16"), "y"), (("4", "0", "y"), "y")]:
        with pytest.raises(ParameterError) as err:
            gt.parse_tile(*args)
        assert err.value.parameter == parameter


def test_tile_bounds_and_lookup():
    assert gt.tile_bounds(0, 0, 0) == pytest.approx((-gt.WORLD, -gt.WORLD, gt.WORLD, gt.WORLD))
    assert gt.tile_bounds(1, 1, 0) == pytest.approx((0, 0, gt.WORLD, gt.WORLD))
    # Charlotte's uptown at z12 (the XYZ scheme counts rows down from the north)
    assert gt.lonlat_to_tile(-80.843, 35.227, 12) == (1128, 1619)
    xmin, ymin, xmax, ymax = gt.tile_bounds(12, 1128, 1619)
    mx = -80.843 * gt.WORLD / 180
    my = math.log(math.tan(math.radians(90 + 35.227) / 2)) * gt.WORLD / math.pi
    assert xmin <= mx < xmax and ymin < my <= ymax


def test_tile_layers_carry_only_public_fields():
    for t in gt.TILE_LAYERS.values():
        public = {p.name for p in t.layer.public}
        assert set(t.fields) <= public and "address" not in t.fields
    with pytest.raises(ValueError, match="address"):
        gt._tile_layer("calls", ("call_id", "address"))
    with pytest.raises(ParameterError) as err:
        gt.tile_layer("roads")
    assert err.value.parameter == "layer"


def _points(n: int, seed: int, z: int, tx: int, ty: int, spread_tiles: float = 1.0):
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = gt.tile_bounds(z, tx, ty)
    size = xmax - xmin
    x = rng.uniform(xmin - spread_tiles * size, xmax + spread_tiles * size, n)
    y = rng.uniform(ymin - spread_tiles * size, ymax + spread_tiles * size, n)
    return x, y


@pytest.mark.parametrize("z", [9, 13, 17])
def test_heat_tiles_are_slices_of_one_field(z):
    """A tile equals the matching half of a window over it and its neighbour: edges agree exactly."""
    tx, ty = gt.lonlat_to_tile(-80.843, 35.227, z)
    x, y = _points(400, z, z, tx, ty)
    left = heat.tile_density(x, y, z, tx, ty)
    right = heat.tile_density(x, y, z, tx + 1, ty)
    both = heat.density_window(x, y, z, tx * 256, ty * 256, width=512, height=256)
    assert left.max() > 0
    np.testing.assert_allclose(both[:, :256], left, rtol=1e-9, atol=1e-9 * left.max())
    np.testing.assert_allclose(both[:, 256:], right, rtol=1e-9, atol=1e-9 * left.max())


def test_heat_density_keeps_the_mass_and_units():
    """One call far from tile edges integrates to one over the ground area (per km2 units)."""
    z = 14
    tx, ty = gt.lonlat_to_tile(-80.843, 35.227, z)
    xmin, ymin, xmax, ymax = gt.tile_bounds(z, tx, ty)
    d = heat.tile_density(np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2]), z, tx, ty)
    pixel_km2 = (heat.pixel_size(z) / heat.mercator_scale()) ** 2 / 1e6
    assert d.sum() * pixel_km2 == pytest.approx(1.0, rel=0.05)
    # the quartic kernel is zero beyond the bandwidth: the tile's corners stay empty
    bw = heat.heat_bandwidth_px(z)
    assert bw < 128 and d[0, 0] < 1e-9 * d.max()
    # binning to cells of up to a quarter bandwidth moves the peak by at most half a cell
    peak = np.unravel_index(np.argmax(d), d.shape)
    half_cell = heat._cell_px(bw) / 2
    assert abs(peak[0] - 128) <= half_cell + 1 and abs(peak[1] - 128) <= half_cell + 1


def test_heat_colours_and_transparency():
    density = np.linspace(0, 10, 256 * 256).reshape(256, 256)
    rgba = heat.heat_rgba(density, 10.0)
    assert rgba[0, 0, 3] == 0                      # nothing there: transparent
    assert rgba[-1, -1, 3] == heat.HEAT_RAMP[-1][4]  # the maximum: the ramp's last colour
    assert tuple(rgba[-1, -1, :3]) == heat.HEAT_RAMP[-1][1:4]
    alpha = rgba[..., 3].ravel()
    assert np.all(np.diff(alpha[alpha > 0].astype(int)) >= 0)   # opacity grows with density
    assert not heat.heat_rgba(density, 0.0).any()
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(heat.render_heat(np.empty(0), np.empty(0), 12, 0, 0, 1.0)))
    assert img.size == (256, 256) and img.mode == "RGBA" and img.getextrema()[3] == (0, 0)


def test_tile_cache_is_an_lru_bounded_by_bytes():
    cache = TileCache(1000)
    cache.put("a", b"x" * 300)
    cache.put("b", b"y" * 300)
    assert cache.get("a") == b"x" * 300           # a is now the most recent
    cache.put("c", b"z" * 300)                   # over budget: b (least recent) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes <= 1000 and len(cache) == 2
    cache.put("huge", b"h" * 5000)               # larger than the whole budget: not stored
    assert cache.get("huge") is None and len(cache) == 2
    cache.put("", b"")
    assert cache.get("") == b""                  # empty tiles are cached too (they answer 204)
    assert TileCache(0).max_bytes == 0


def test_cluster_points_orders_the_table_in_space(engine, tmp_path):
    """`hotspots db cluster` (geo.tiles.cluster_points) marks the GiST index as the table's order."""
    from click.testing import CliRunner

    from geo.cli import main

    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, row_hash, batch_id) "
            "SELECT 'C-' || g, now(), 'TEST', ST_SetSRID(ST_MakePoint(-80.9 + random() * 0.3, 35.1 + random() * 0.3), 4326), g, 0 "
            "FROM generate_series(1, 2000) g"))
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTSPOTS_VAR_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["db", "cluster", "calls"], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and "clustered calls" in result.output
    with engine.connect() as conn:
        clustered = conn.execute(sa.text(
            "SELECT i.indisclustered FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'calls_geom_idx'")).scalar()
        n = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar()
    assert clustered is True and n == 2000
    with pytest.raises(ValueError):
        cluster_points(engine, "divisions")
