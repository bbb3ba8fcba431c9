-- NPA Gi* on rates (issue 13): what `value` is, and the count behind it.
-- value_unit 'count' (violent events, or expected events) or 'per_1000_residents' (that count
-- divided by the NPA's population, times 1,000). NPAs without residents are left out of a rate run.
ALTER TABLE hotspot_npa_results
    ADD COLUMN value_unit text NOT NULL DEFAULT 'count'
        CHECK (value_unit IN ('count', 'per_1000_residents')),
    ADD COLUMN event_count double precision;   -- the count behind `value` (equal to it for counts)
