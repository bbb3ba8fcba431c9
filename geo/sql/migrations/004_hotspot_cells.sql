-- Gi* results on square grid cells (EPSG:2264 cells stored as WGS84 polygons for the map and tiles).
CREATE TABLE hotspot_cell_results (
    run_id         bigint  NOT NULL REFERENCES analysis_runs (run_id) ON DELETE CASCADE,
    col            integer NOT NULL,
    "row"          integer NOT NULL,
    cell_ft        double precision NOT NULL,
    value          double precision NOT NULL,
    gi_z           double precision NOT NULL,
    gi_p           double precision NOT NULL,
    gi_q           double precision NOT NULL,
    gi_p_sim       double precision,
    hotspot_class  text NOT NULL,
    geom           geometry(Polygon, 4326) NOT NULL,
    PRIMARY KEY (run_id, col, "row")
);
CREATE INDEX hotspot_cell_results_geom_idx ON hotspot_cell_results USING gist (geom);
