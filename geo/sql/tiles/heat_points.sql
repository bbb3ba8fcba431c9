-- Violent calls (labelled by the classifier) inside an EPSG:3857 rectangle, as EPSG:3857 x/y,
-- for the heat tiles' kernel density. The rectangle is the tile grown by the kernel's reach,
-- so a tile sees every call that contributes to its pixels and neighbouring tiles agree.
--
-- {where}: geo/filters.py Filter.where(table, "src"): its Core predicate compiled once, values bound (:f_start, ...).
-- {within}: the rectangle test below, or TRUE for all calls (the legend's county-wide maximum,
-- where a sequential scan beats the index).
-- Bound values: :xmin :ymin :xmax :ymax (EPSG:3857 metres).
SELECT ST_X(p.g) AS x, ST_Y(p.g) AS y
FROM (
    SELECT ST_Transform(src.geom, 3857) AS g
    FROM calls AS src
    WHERE {within}
      AND coalesce(src.label, false)
      AND {where}
) AS p
