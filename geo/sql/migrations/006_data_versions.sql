-- A version number per served layer, bumped by every statement that changes the layer's table.
-- Tile ETags, cached tiles and cached analyses are keyed on these numbers, so a new batch of
-- calls (a load, a live POST, a relabel) can never leave a stale tile behind. Statement-level
-- triggers fire once per INSERT/UPDATE/DELETE/TRUNCATE/COPY, not once per row: bulk loads pay
-- nothing measurable.
CREATE TABLE data_versions (
    layer       text PRIMARY KEY,
    version     bigint      NOT NULL DEFAULT 1,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO data_versions (layer) VALUES
    ('calls'), ('incidents'), ('divisions'), ('neighborhoods'), ('hotspot_cells'), ('hotspot_npas');

CREATE FUNCTION bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE data_versions SET version = version + 1, changed_at = now() WHERE layer = TG_ARGV[0];
    RETURN NULL;
END;
$$;

CREATE TRIGGER calls_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON calls
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('calls');
CREATE TRIGGER incidents_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('incidents');
CREATE TRIGGER divisions_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON divisions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('divisions');
CREATE TRIGGER neighborhoods_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON neighborhoods
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('neighborhoods');
CREATE TRIGGER hotspot_cells_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotspot_cell_results
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('hotspot_cells');
CREATE TRIGGER hotspot_npas_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hotspot_npa_results
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('hotspot_npas');
