-- One vector tile of calls or incidents counted per square cell of :cell tile units
-- (4096 / 64 = 64 x 64 cells at most, so a tile stays far below 500 kB at any density).
--
-- Each occupied cell becomes one point at the cell's centre, with `count` (points in the cell),
-- `violent` (violent ones among them) and, for calls, `mean_p` (mean model probability).
-- Cells are half-open ([xmin, xmax) x (ymin, ymax] in EPSG:3857), and only points inside the
-- tile itself are counted (no buffer), so each point is counted in exactly one tile per zoom
-- and the counts of a zoom level add up to the filtered total.
--
-- Filled in by geo/tiles.py from geo/catalog.py and geo/filters.py only:
--   source (aliased src), where (the shared filter), violent (the table's violent test),
--   point_values and aggregates (the mean probability, for calls)
-- Bound values: :z :x :y, the tile's EPSG:3857 bounds :tile_xmin :tile_ymin :tile_xmax :tile_ymax,
-- :cell_m (cell side in EPSG:3857 metres), :extent, :cell, :layer_name and the filter's :f_*.
WITH pts AS (
    -- Spherical Mercator (EPSG:3857) written out: x = R lon, y = R ln tan(pi/4 + lat/2).
    -- The same numbers as ST_Transform at a small fraction of its per-point cost, which
    -- dominated low-zoom tiles holding hundreds of thousands of calls.
    SELECT ST_X(src.geom) * (20037508.342789244 / 180.0) AS mx,
           ln(tan(radians(90.0 + ST_Y(src.geom)) / 2.0)) * (20037508.342789244 / pi()) AS my,
           {violent} AS is_violent{point_values}
    FROM {source}
    WHERE src.geom && ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326)
      AND {where}
), cells AS (
    SELECT floor((mx - :tile_xmin) / :cell_m)::int AS cx,
           floor((:tile_ymax - my) / :cell_m)::int AS cy,
           pts.*
    FROM pts
    WHERE mx >= :tile_xmin AND mx < :tile_xmax
      AND my > :tile_ymin AND my <= :tile_ymax
)
SELECT ST_AsMVT(agg, :layer_name, :extent, 'geom')
FROM (
    -- Tile coordinates run down from the top-left corner, as MVT expects.
    SELECT ST_MakePoint((cx + 0.5) * :cell, (cy + 0.5) * :cell) AS geom,
           count(*)::int AS count,
           (count(*) FILTER (WHERE is_violent))::int AS violent{aggregates}
    FROM cells
    GROUP BY cx, cy
) AS agg
