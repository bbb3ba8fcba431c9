-- `hotspots sync`: one row per ArcGIS feature layer being followed. high_water is the newest
-- value of the layer's date field among the records stored so far; it moves forward in the same
-- transaction as the page of records that carried it, so an interrupted sync resumes from what
-- is really in the tables (re-reading an overlap window, never skipping a record).
CREATE TABLE sync_state (
    kind             text        NOT NULL,   -- 'incidents' or 'calls'
    url              text        NOT NULL,   -- the layer's query endpoint
    date_field       text        NOT NULL,   -- the field the sync is incremental on, e.g. DATE_REPORTED
    high_water       timestamptz,
    pages            bigint      NOT NULL DEFAULT 0,
    records_read     bigint      NOT NULL DEFAULT 0,
    run_started_at   timestamptz,
    last_success_at  timestamptz,
    last_error       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, url)
);
