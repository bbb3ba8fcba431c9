-- CAD times on calls (issue 15), all optional: what the dispatch system records after a call comes in.
--   dispatched_at   a unit was assigned        enroute_at  the first unit started driving
--   onscene_at      the first unit arrived     cleared_at  the last unit cleared the call
-- Response time = onscene_at - received_at (dispatch delay = dispatched_at - received_at, travel =
-- onscene_at - dispatched_at); time on scene = cleared_at - onscene_at. Each time has a precision
-- column with the rules of migration 008 ('time', 'date' or 'report_id'; NULL where the time is empty).
-- None of these is known when the call comes in: the classifier never reads them.
ALTER TABLE calls
    ADD COLUMN dispatched_at timestamptz,
    ADD COLUMN enroute_at timestamptz,
    ADD COLUMN onscene_at timestamptz,
    ADD COLUMN cleared_at timestamptz,
    ADD COLUMN dispatched_at_precision text CHECK (dispatched_at_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN enroute_at_precision text CHECK (enroute_at_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN onscene_at_precision text CHECK (onscene_at_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN cleared_at_precision text CHECK (cleared_at_precision IN ('time', 'date', 'report_id')),
    ADD COLUMN units_assigned smallint CHECK (units_assigned >= 0),
    ADD COLUMN primary_unit text,
    ADD COLUMN disposition text;
