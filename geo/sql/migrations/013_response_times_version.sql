-- The OGC collection `response_times` (issue 15, geo/catalog.py) serves rows of saved runs kept in
-- analysis_rows: a data version that every change to analysis_rows bumps, so cached pages and the
-- cached "latest run" of that collection follow a newly saved run.
INSERT INTO data_versions (layer) VALUES ('analysis_rows');
CREATE TRIGGER analysis_rows_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON analysis_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('analysis_rows');
