-- Real CMPD records carry calendar dates, not instants, and a demo mixes real and generated rows.
--
-- <time>_precision says how much of a stored time is known:
--   'time'      a recorded instant (date and time of day);
--   'date'      a calendar date in HOTSPOTS_TIMEZONE only: stored at local midnight, time of day
--               unknown (CMPD's DATE_REPORTED is always such a date). Anything that needs a time of
--               day (7x24, hour features, windows shorter than a day) leaves these rows out;
--   'report_id' the date as published, the time of day inferred from the report id's HHMM
--               (only with `hotspots load ... --time-from-report-id`): an inference, never a record.
-- data_origin says where a row came from: 'real' (a published file or feed) or 'synthetic' (the
-- demo generator). Real and synthetic rows are never added together silently.
ALTER TABLE incidents
    ADD COLUMN date_reported_precision text NOT NULL DEFAULT 'time'
        CHECK (date_reported_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN date_incident_began_precision text
        CHECK (date_incident_began_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN date_incident_end_precision text
        CHECK (date_incident_end_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN clearance_date_precision text
        CHECK (clearance_date_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN data_origin text NOT NULL DEFAULT 'real' CHECK (data_origin IN ('real', 'synthetic'));

ALTER TABLE calls
    ADD COLUMN received_at_precision text NOT NULL DEFAULT 'time'
        CHECK (received_at_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN data_origin text NOT NULL DEFAULT 'real' CHECK (data_origin IN ('real', 'synthetic'));

-- Rows loaded before origins were recorded came from the demo generator when their file did.
UPDATE incidents SET data_origin = 'synthetic'
    WHERE batch_id IN (SELECT batch_id FROM ingest_batches WHERE source_file ~ '(^|/)demo/');
UPDATE calls SET data_origin = 'synthetic'
    WHERE batch_id IN (SELECT batch_id FROM ingest_batches WHERE source_file ~ '(^|/)demo/');
