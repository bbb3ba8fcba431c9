-- Categories from geo/taxonomy.csv, stored with each record at load time (and recomputed by
-- `hotspots taxonomy --apply` after the table changes).
ALTER TABLE calls ADD COLUMN category text;
ALTER TABLE incidents ADD COLUMN category text;
-- False for CMPD's 800-series non-criminal reports and other non-crimes: kept out of crime totals.
ALTER TABLE incidents ADD COLUMN is_crime boolean;
