-- CMPD's Homicide layer: one row per victim (a report with several victims has several rows).
--
-- The key is the layer's OBJECTID (unique in the published layer, and what `hotspots sync` pages
-- and keys rejects on); CRIME_REPORT_ID repeats across the victims of one report.
-- DATE_REPORTED and CLEARANCE_DATE are published as midnight UTC, which encodes a calendar date in
-- Charlotte, not an instant: they are stored as dates, and no time of day is known.
-- Five published victims have no coordinates (their geometry is the State Plane origin, in
-- Alabama): those rows are kept with geom NULL, never at that point.
CREATE TABLE homicides (
    objectid             bigint PRIMARY KEY,   -- OBJECTID
    id_source            bigint,               -- ID as published (equal to OBJECTID in the 2025 layer)
    crime_report_id      text        NOT NULL, -- CRIME_REPORT_ID, YYYYMMDD-HHMM-NN
    date_reported        date        NOT NULL, -- DATE_REPORTED: a calendar date in Charlotte
    age                  smallint,             -- AGE as a number of years; NULL where not a number
    age_source           text,                 -- AGE as published (a text field in the layer)
    gender               text,
    race_ethnicity       text,
    weapon               text,
    circumstances        text,
    ipv                  text,                 -- IPV as published ('Intimate Partner' or empty)
    intimate_partner     boolean,              -- IPV read as a flag; NULL where the value is not recognised
    clearance_status     text,
    clearance_date       date,
    location             text,                 -- hundred-block address as published
    corridor             text,
    cmpd_patrol_division text,                 -- CMPD_PATROL_DIVISION as published (a short name)
    npa_source           integer,              -- NPA as published
    council_district     smallint,
    commission_district  smallint,
    x_coord_public       double precision,
    y_coord_public       double precision,
    latitude_public      double precision,
    longitude_public     double precision,
    geom                 geometry(Point, 4326),  -- NULL: no usable location published
    -- Assigned by the loader's spatial join (NULL without a point), as for incidents.
    division_id          text,
    npa_id               integer,
    data_origin          text        NOT NULL DEFAULT 'real' CHECK (data_origin IN ('real', 'synthetic')),
    row_hash             bigint      NOT NULL,   -- hash of the cleaned values: reloads skip unchanged rows
    batch_id             bigint      NOT NULL
);
CREATE INDEX homicides_geom_idx ON homicides USING gist (geom);
CREATE INDEX homicides_date_reported_idx ON homicides (date_reported);

-- Tiles, OGC pages and cached analyses of the layer are keyed on its data version (migration 006).
INSERT INTO data_versions (layer) VALUES ('homicides');
CREATE TRIGGER homicides_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON homicides
    FOR EACH STATEMENT EXECUTE FUNCTION bump_data_version('homicides');
