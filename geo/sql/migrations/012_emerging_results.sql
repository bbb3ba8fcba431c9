-- Emerging hot spots over the NPAs (issue 13, geo/emerging.py): one row per NPA and saved run.
-- What the whole run shares (source, analysed period, time step, neighbourhood time step,
-- confidence, the partial steps left out) is in analysis_runs.params; the served layer
-- (geo/catalog.py, emerging_npas) joins it to every row.
CREATE TABLE emerging_npa_results (
    run_id      bigint  NOT NULL REFERENCES analysis_runs (run_id) ON DELETE CASCADE,
    npa_id      integer NOT NULL,
    pattern     text    NOT NULL CHECK (pattern IN (
        'No Pattern Detected', 'New Hot Spot', 'Consecutive Hot Spot',
        'Intensifying Hot Spot', 'Persistent Hot Spot', 'Diminishing Hot Spot',
        'Sporadic Hot Spot', 'Oscillating Hot Spot', 'Historical Hot Spot',
        'New Cold Spot', 'Consecutive Cold Spot', 'Intensifying Cold Spot',
        'Persistent Cold Spot', 'Diminishing Cold Spot', 'Sporadic Cold Spot',
        'Oscillating Cold Spot', 'Historical Cold Spot')),
    trend_z     double precision,            -- Mann-Kendall z on the NPA's series of Gi* z-scores
    trend_p     double precision,            -- its two-sided p
    hot_steps   integer NOT NULL,            -- steps in which the NPA's bin is a significant hot spot
    cold_steps  integer NOT NULL,
    steps       integer NOT NULL,            -- complete time steps analysed
    hot_share   double precision NOT NULL,   -- hot_steps / steps
    cold_share  double precision NOT NULL,
    final_z     double precision,            -- Gi* z of the final step's bin
    total       double precision NOT NULL,   -- what was counted over all steps
    PRIMARY KEY (run_id, npa_id)
);

INSERT INTO data_versions (layer) VALUES ('emerging_npas');
CREATE TRIGGER emerging_npas_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON emerging_npa_results
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('emerging_npas');
