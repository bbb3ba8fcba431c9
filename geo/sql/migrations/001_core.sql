-- Core schema: reference polygons, CMPD counts, point-level incidents and calls, ingest bookkeeping.
-- All geometries are EPSG:4326 (WGS84 lon/lat) with GiST indexes; analysis reprojects to
-- EPSG:2264 (NC State Plane, US feet) where distances or areas matter.

CREATE EXTENSION IF NOT EXISTS postgis;

-- One row per `hotspots load ...` run (file checksum, counts, timings).
CREATE TABLE ingest_batches (
    batch_id      bigserial PRIMARY KEY,
    kind          text        NOT NULL,
    source_file   text        NOT NULL,
    source_sha256 text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    rows_read     integer     NOT NULL DEFAULT 0,
    rows_loaded   integer     NOT NULL DEFAULT 0,
    rows_rejected integer     NOT NULL DEFAULT 0,
    report        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ingest_batches_sha_idx ON ingest_batches (kind, source_sha256);

-- Every row of a source file that was not loaded, with the reason; nothing is silently dropped.
CREATE TABLE ingest_rejects (
    reject_id     bigserial PRIMARY KEY,
    batch_id      bigint      NOT NULL REFERENCES ingest_batches (batch_id),
    kind          text        NOT NULL,
    source_file   text        NOT NULL,
    source_sha256 text        NOT NULL,
    line          integer     NOT NULL,
    raw           text        NOT NULL,
    reason        text        NOT NULL,
    detail        text        NOT NULL DEFAULT '',
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    -- re-loading the same file must not duplicate its rejects
    UNIQUE (source_sha256, line)
);
CREATE INDEX ingest_rejects_reason_idx ON ingest_rejects (kind, reason);

CREATE TABLE divisions (
    division_id  text PRIMARY KEY,          -- CMPD two-digit code, e.g. '01'
    name         text NOT NULL UNIQUE,      -- e.g. 'Central Division'
    short_name   text NOT NULL,             -- e.g. 'Central' (as in CMPD_PATROL_DIVISION)
    source_file  text NOT NULL,
    geom         geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX divisions_geom_idx ON divisions USING gist (geom);

CREATE TABLE neighborhoods (
    npa_id           integer PRIMARY KEY,   -- Neighborhood Profile Area number
    population       integer,
    population_year  smallint,
    source_file      text NOT NULL,
    geom             geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX neighborhoods_geom_idx ON neighborhoods USING gist (geom);

-- CMPD "Violent Crime Offenses": monthly counts, published with roll-up rows
-- (OFFENSE_DESCRIPTION = 'Violent Crime'); detail categories overlap and must not be summed blindly.
CREATE TABLE offense_counts (
    objectid             integer PRIMARY KEY,
    row_type             text     NOT NULL,
    geography            text     NOT NULL,
    geography_id         integer  NOT NULL,
    calendar_year        smallint NOT NULL,
    calendar_month       smallint NOT NULL CHECK (calendar_month BETWEEN 1 AND 12),
    offense_description  text     NOT NULL,
    offense_count        integer  NOT NULL CHECK (offense_count >= 0),
    batch_id             bigint   REFERENCES ingest_batches (batch_id)
);
CREATE INDEX offense_counts_lookup_idx ON offense_counts (row_type, geography, calendar_year);

-- CMPD monthly calls-for-service counts, same shape as offense_counts.
CREATE TABLE call_counts (
    objectid          integer PRIMARY KEY,
    row_type          text     NOT NULL,
    geography         text     NOT NULL,
    geography_id      integer  NOT NULL,
    calendar_year     smallint NOT NULL,
    calendar_month    smallint NOT NULL CHECK (calendar_month BETWEEN 1 AND 12),
    call_description  text     NOT NULL,
    call_count        integer  NOT NULL CHECK (call_count >= 0),
    batch_id          bigint   REFERENCES ingest_batches (batch_id)
);
CREATE INDEX call_counts_lookup_idx ON call_counts (row_type, geography, calendar_year);

-- CMPD Incidents, in the published column layout, plus the project's own assignments.
CREATE TABLE incidents (
    incident_report_id         text PRIMARY KEY,
    location                   text,
    city                       text,
    state                      text,
    zip                        text,
    x_coord_public             double precision,
    y_coord_public             double precision,
    latitude_public            double precision,
    longitude_public           double precision,
    division_id_source         text,   -- DIVISION_ID as published
    cmpd_patrol_division       text,   -- CMPD_PATROL_DIVISION as published
    npa_source                 integer,-- NPA as published
    date_reported              timestamptz NOT NULL,
    date_incident_began        timestamptz,
    date_incident_end          timestamptz,
    address_description        text,
    location_type_description  text,
    place_type_description     text,
    place_detail_description   text,
    clearance_status           text,
    clearance_detail_status    text,
    clearance_date             timestamptz,
    highest_nibrs_code         text,
    highest_nibrs_description  text,
    objectid                   bigint,
    year                       smallint,
    geom                       geometry(Point, 4326) NOT NULL,
    -- Assigned by the loader's spatial join. No foreign keys on the point tables: per-row
    -- FK triggers would dominate bulk-load time, and the values come from those tables anyway.
    division_id                text,
    npa_id                     integer,
    row_hash                   bigint NOT NULL,   -- hash of the source row: reloads skip unchanged rows
    batch_id                   bigint NOT NULL
);
-- Only the indexes queries need: space (tiles, bbox) and time (date filters). Per-area
-- aggregates scan the time range anyway, and every extra index slows bulk loads.
CREATE INDEX incidents_geom_idx ON incidents USING gist (geom);
CREATE INDEX incidents_date_reported_idx ON incidents (date_reported);

-- Calls for service (CAD events). p_violent/label/model_version are written by the classifier.
CREATE TABLE calls (
    call_id               text PRIMARY KEY,
    received_at           timestamptz NOT NULL,
    call_type             text NOT NULL,
    priority              smallint,
    address               text,
    city                  text,
    zip                   text,
    division_source       text,      -- division named in the source file, if any
    incident_report_id    text,      -- linked incident report (not a foreign key: it may arrive later)
    geom                  geometry(Point, 4326) NOT NULL,
    division_id           text,      -- from the spatial join (see incidents)
    npa_id                integer,
    p_violent             real CHECK (p_violent BETWEEN 0 AND 1),
    label                 boolean,
    model_version         text,
    labelled_at           timestamptz,
    row_hash              bigint NOT NULL,
    batch_id              bigint NOT NULL
);
CREATE INDEX calls_geom_idx ON calls USING gist (geom);
CREATE INDEX calls_received_at_idx ON calls (received_at);

-- One row per trained classifier (filled by `hotspots train`).
CREATE TABLE model_runs (
    model_version  text PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    algorithm      text NOT NULL,
    train_start    timestamptz,
    train_end      timestamptz,
    test_start     timestamptz,
    test_end       timestamptz,
    params         jsonb NOT NULL DEFAULT '{}'::jsonb,
    metrics        jsonb NOT NULL DEFAULT '{}'::jsonb,
    threshold      double precision,
    artifact_path  text,
    artifact_sha256 text,
    is_current     boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX model_runs_one_current_idx ON model_runs (is_current) WHERE is_current;
