-- Results of analyses, kept with their parameters so the web layer serves what was computed.
CREATE TABLE analysis_runs (
    run_id         bigserial PRIMARY KEY,
    kind           text NOT NULL,                -- e.g. 'npa_hotspots', 'offense_hotspots'
    params         jsonb NOT NULL DEFAULT '{}'::jsonb,
    model_version  text,                         -- classifier behind the labels/probabilities used, if any
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analysis_runs_kind_idx ON analysis_runs (kind, created_at DESC);

CREATE TABLE hotspot_npa_results (
    run_id         bigint  NOT NULL REFERENCES analysis_runs (run_id) ON DELETE CASCADE,
    npa_id         integer NOT NULL,
    value          double precision NOT NULL,    -- the counted measure in the NPA
    gi_z           double precision NOT NULL,
    gi_p           double precision NOT NULL,    -- two-sided, normal approximation
    gi_q           double precision NOT NULL,    -- FDR-corrected
    gi_p_sim       double precision,             -- permutation pseudo p-value
    hotspot_class  text NOT NULL,
    PRIMARY KEY (run_id, npa_id)
);
