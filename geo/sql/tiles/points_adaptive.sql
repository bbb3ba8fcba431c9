-- Close-zoom tile of calls or incidents: raw points (with their popup properties) when the tile
-- and its buffer hold at most :max_raw of them, else the per-cell counts of points_grid.sql.
--
-- The count stops at :max_raw + 1 rows (LIMIT), so dense tiles pay only for that many index
-- hits; PostgreSQL evaluates only the CASE branch it takes (both are uncorrelated subqueries).
-- {raw_tile} is features.sql and {grid_tile} is points_grid.sql, with the same bound values.
SELECT CASE
    WHEN (SELECT count(*)
          FROM (SELECT 1
                FROM {source}
                WHERE src.geom && ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326)
                  AND {where}
                LIMIT :max_raw + 1) AS n) <= :max_raw
    THEN ({raw_tile})
    ELSE ({grid_tile})
END
