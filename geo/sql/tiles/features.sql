-- One vector tile of a catalog layer's own features (polygons, or raw points at close zoom).
--
-- Filled in by geo/tiles.py from geo/catalog.py only (never from a request):
--   {source}   the layer's table (aliased src) or its run-selected subquery `(...) src`
--   {columns}  the layer's public tile properties, each `expression AS "name"`
--   {where}    geo/filters.py Filter.where(table, "src"): its Core predicate compiled once, values bound (:f_start, ...)
--   {geom3857} the geometry in EPSG:3857: ST_Transform for polygons; for points the Mercator
--              formula of points_grid.sql, several times cheaper per point
-- Bound values: :z :x :y, :extent (4096), :buffer (64 tile units), :margin (buffer / extent),
-- :layer_name, and :run_id for hot spot results.
--
-- Geometries are stored in EPSG:4326; the tile is EPSG:3857. The index test (&&) compares the
-- stored geometry with the tile envelope (plus its buffer) brought to 4326, so the GiST index on
-- src.geom is used and only the matching rows are transformed.
SELECT ST_AsMVT(tile, :layer_name, :extent, 'geom')
FROM (
    SELECT ST_AsMVTGeom({geom3857}, ST_TileEnvelope(:z, :x, :y), :extent, :buffer, true) AS geom,
           {columns}
    FROM {source}
    WHERE src.geom && ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326)
      AND {where}
) AS tile
WHERE tile.geom IS NOT NULL
