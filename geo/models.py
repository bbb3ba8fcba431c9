"""GeoAlchemy2 table definitions matching geo/sql/migrations (a test keeps the two in step)."""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    REAL,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

TS = DateTime(timezone=True)

ingest_batches = Table(
    "ingest_batches", metadata,
    Column("batch_id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("source_file", Text, nullable=False),
    Column("source_sha256", Text, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
    Column("rows_read", Integer, nullable=False),
    Column("rows_loaded", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    Column("report", JSONB, nullable=False),
)

ingest_rejects = Table(
    "ingest_rejects", metadata,
    Column("reject_id", BigInteger, primary_key=True),
    Column("batch_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("source_file", Text, nullable=False),
    Column("source_sha256", Text, nullable=False),
    Column("line", Integer, nullable=False),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("rejected_at", TS, nullable=False),
)

divisions = Table(
    "divisions", metadata,
    Column("division_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("short_name", Text, nullable=False),
    Column("source_file", Text, nullable=False),
    Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
)

neighborhoods = Table(
    "neighborhoods", metadata,
    Column("npa_id", Integer, primary_key=True, autoincrement=False),
    Column("population", Integer),
    Column("population_year", SmallInteger),
    Column("source_file", Text, nullable=False),
    Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
)


def _monthly_counts(name: str, description: str, count: str) -> Table:
    return Table(
        name, metadata,
        Column("objectid", Integer, primary_key=True, autoincrement=False),
        Column("row_type", Text, nullable=False),
        Column("geography", Text, nullable=False),
        Column("geography_id", Integer, nullable=False),
        Column("calendar_year", SmallInteger, nullable=False),
        Column("calendar_month", SmallInteger, nullable=False),
        Column(description, Text, nullable=False),
        Column(count, Integer, nullable=False),
        Column("batch_id", BigInteger),
    )


offense_counts = _monthly_counts("offense_counts", "offense_description", "offense_count")
call_counts = _monthly_counts("call_counts", "call_description", "call_count")

incidents = Table(
    "incidents", metadata,
    Column("incident_report_id", Text, primary_key=True),
    Column("location", Text),
    Column("city", Text),
    Column("state", Text),
    Column("zip", Text),
    Column("x_coord_public", Float),
    Column("y_coord_public", Float),
    Column("latitude_public", Float),
    Column("longitude_public", Float),
    Column("division_id_source", Text),
    Column("cmpd_patrol_division", Text),
    Column("npa_source", Integer),
    Column("date_reported", TS, nullable=False),
    Column("date_incident_began", TS),
    Column("date_incident_end", TS),
    Column("address_description", Text),
    Column("location_type_description", Text),
    Column("place_type_description", Text),
    Column("place_detail_description", Text),
    Column("clearance_status", Text),
    Column("clearance_detail_status", Text),
    Column("clearance_date", TS),
    Column("highest_nibrs_code", Text),
    Column("highest_nibrs_description", Text),
    Column("objectid", BigInteger),
    Column("year", SmallInteger),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("division_id", Text),
    Column("npa_id", Integer),
    Column("row_hash", BigInteger, nullable=False),
    Column("batch_id", BigInteger, nullable=False),
    Column("category", Text),
    Column("is_crime", Boolean),
    Column("date_reported_precision", Text, nullable=False),
    Column("date_incident_began_precision", Text),
    Column("date_incident_end_precision", Text),
    Column("clearance_date_precision", Text),
    Column("data_origin", Text, nullable=False),
)

calls = Table(
    "calls", metadata,
    Column("call_id", Text, primary_key=True),
    Column("received_at", TS, nullable=False),
    Column("call_type", Text, nullable=False),
    Column("priority", SmallInteger),
    Column("address", Text),
    Column("city", Text),
    Column("zip", Text),
    Column("division_source", Text),
    Column("incident_report_id", Text),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    Column("division_id", Text),
    Column("npa_id", Integer),
    Column("p_violent", REAL),
    Column("label", Boolean),
    Column("model_version", Text),
    Column("labelled_at", TS),
    Column("row_hash", BigInteger, nullable=False),
    Column("batch_id", BigInteger, nullable=False),
    Column("category", Text),
    Column("received_at_precision", Text, nullable=False),
    Column("data_origin", Text, nullable=False),
    # CAD times (migration 011): known only after the call, never classifier features.
    Column("dispatched_at", TS),
    Column("enroute_at", TS),
    Column("onscene_at", TS),
    Column("cleared_at", TS),
    Column("dispatched_at_precision", Text),
    Column("enroute_at_precision", Text),
    Column("onscene_at_precision", Text),
    Column("cleared_at_precision", Text),
    Column("units_assigned", SmallInteger),
    Column("primary_unit", Text),
    Column("disposition", Text),
)

# CMPD's Homicide layer, one row per victim (migration 009); dates are calendar dates, geom may be NULL.
homicides = Table(
    "homicides", metadata,
    Column("objectid", BigInteger, primary_key=True, autoincrement=False),
    Column("id_source", BigInteger),
    Column("crime_report_id", Text, nullable=False),
    Column("date_reported", Date, nullable=False),
    Column("age", SmallInteger),
    Column("age_source", Text),
    Column("gender", Text),
    Column("race_ethnicity", Text),
    Column("weapon", Text),
    Column("circumstances", Text),
    Column("ipv", Text),
    Column("intimate_partner", Boolean),
    Column("clearance_status", Text),
    Column("clearance_date", Date),
    Column("location", Text),
    Column("corridor", Text),
    Column("cmpd_patrol_division", Text),
    Column("npa_source", Integer),
    Column("council_district", SmallInteger),
    Column("commission_district", SmallInteger),
    Column("x_coord_public", Float),
    Column("y_coord_public", Float),
    Column("latitude_public", Float),
    Column("longitude_public", Float),
    Column("geom", Geometry("POINT", srid=4326, spatial_index=False)),
    Column("division_id", Text),
    Column("npa_id", Integer),
    Column("data_origin", Text, nullable=False, server_default="real"),
    Column("row_hash", BigInteger, nullable=False),
    Column("batch_id", BigInteger, nullable=False),
)

model_runs = Table(
    "model_runs", metadata,
    Column("model_version", Text, primary_key=True),
    Column("created_at", TS, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("train_start", TS),
    Column("train_end", TS),
    Column("test_start", TS),
    Column("test_end", TS),
    Column("params", JSONB, nullable=False),
    Column("metrics", JSONB, nullable=False),
    Column("threshold", Float),
    Column("artifact_path", Text),
    Column("artifact_sha256", Text),
    Column("is_current", Boolean, nullable=False),
)

analysis_runs = Table(
    "analysis_runs", metadata,
    Column("run_id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("model_version", Text),
    Column("created_at", TS, nullable=False),
)

def _gi_columns() -> list[Column]:
    """The Gi* result columns shared by NPA and grid-cell results."""
    return [
        Column("value", Float, nullable=False),
        Column("gi_z", Float, nullable=False),
        Column("gi_p", Float, nullable=False),
        Column("gi_q", Float, nullable=False),
        Column("gi_p_sim", Float),
        Column("hotspot_class", Text, nullable=False),
    ]


hotspot_npa_results = Table(
    "hotspot_npa_results", metadata,
    Column("run_id", BigInteger, primary_key=True, autoincrement=False),
    Column("npa_id", Integer, primary_key=True, autoincrement=False),
    *_gi_columns(),
    Column("value_unit", Text, nullable=False, server_default="count"),  # 'count' | 'per_1000_residents' (010)
    Column("event_count", Float),
)

hotspot_cell_results = Table(
    "hotspot_cell_results", metadata,
    Column("run_id", BigInteger, primary_key=True, autoincrement=False),
    Column("col", Integer, primary_key=True, autoincrement=False),
    Column("row", Integer, primary_key=True, autoincrement=False),
    Column("cell_ft", Float, nullable=False),
    *_gi_columns(),
    Column("geom", Geometry("POLYGON", srid=4326, spatial_index=False), nullable=False),
)

# Emerging hot spots per NPA and saved run (migration 012); the run's shared settings are its params.
emerging_npa_results = Table(
    "emerging_npa_results", metadata,
    Column("run_id", BigInteger, primary_key=True, autoincrement=False),
    Column("npa_id", Integer, primary_key=True, autoincrement=False),
    Column("pattern", Text, nullable=False),   # one of geo.emerging.PATTERNS (a CHECK in the migration)
    Column("trend_z", Float),
    Column("trend_p", Float),
    Column("hot_steps", Integer, nullable=False),
    Column("cold_steps", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("hot_share", Float, nullable=False),
    Column("cold_share", Float, nullable=False),
    Column("final_z", Float),
    Column("total", Float, nullable=False),
)

analysis_rows = Table(
    "analysis_rows", metadata,
    Column("run_id", BigInteger, primary_key=True, autoincrement=False),
    Column("row_no", Integer, primary_key=True, autoincrement=False),
    Column("data", JSONB, nullable=False),
)

# Bumped by statement triggers on each served table (migration 006): keys tile and analysis caches.
data_versions = Table(
    "data_versions", metadata,
    Column("layer", Text, primary_key=True),
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# `hotspots sync` high-water marks, one per followed ArcGIS layer (migration 007).
sync_state = Table(
    "sync_state", metadata,
    Column("kind", Text, primary_key=True),
    Column("url", Text, primary_key=True),
    Column("date_field", Text, nullable=False),
    Column("high_water", TS),
    Column("pages", BigInteger, nullable=False, server_default="0"),
    Column("records_read", BigInteger, nullable=False, server_default="0"),
    Column("run_started_at", TS),
    Column("last_success_at", TS),
    Column("last_error", Text),
    Column("updated_at", TS, nullable=False, server_default=func.now()),
)
