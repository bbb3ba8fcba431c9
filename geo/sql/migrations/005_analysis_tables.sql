-- Tabular analysis results (counts, 7x24, CompStat, indicators, outreach, allocation), one JSON
-- object per row, under the analysis run that records their parameters and model version.
CREATE TABLE analysis_rows (
    run_id   bigint  NOT NULL REFERENCES analysis_runs (run_id) ON DELETE CASCADE,
    row_no   integer NOT NULL,
    data     jsonb   NOT NULL,
    PRIMARY KEY (run_id, row_no)
);
