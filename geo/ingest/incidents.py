"""CMPD Incidents CSV, in the column layout the City of Charlotte publishes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from geo.ingest.batch import LoadReport
from geo.ingest.points import LoadOptions, PointSource, load_points

INCIDENTS = PointSource(
    kind="incidents",
    table="incidents",
    id_column="INCIDENT_REPORT_ID",
    id_field="incident_report_id",
    text={
        "LOCATION": "location",
        "CITY": "city",
        "STATE": "state",
        "ZIP": "zip",
        "DIVISION_ID": "division_id_source",
        "CMPD_PATROL_DIVISION": "cmpd_patrol_division",
        "ADDRESS_DESCRIPTION": "address_description",
        "LOCATION_TYPE_DESCRIPTION": "location_type_description",
        "PLACE_TYPE_DESCRIPTION": "place_type_description",
        "PLACE_DETAIL_DESCRIPTION": "place_detail_description",
        "CLEARANCE_STATUS": "clearance_status",
        "CLEARANCE_DETAIL_STATUS": "clearance_detail_status",
        "HIGHEST_NIBRS_CODE": "highest_nibrs_code",
        "HIGHEST_NIBRS_DESCRIPTION": "highest_nibrs_description",
    },
    floats={
        "X_COORD_PUBLIC": "x_coord_public",
        "Y_COORD_PUBLIC": "y_coord_public",
        "LATITUDE_PUBLIC": "latitude_public",
        "LONGITUDE_PUBLIC": "longitude_public",
    },
    integers={"NPA": "npa_source", "OBJECTID": "objectid", "YEAR": "year"},
    times={
        "DATE_REPORTED": "date_reported",
        "DATE_INCIDENT_BEGAN": "date_incident_began",
        "DATE_INCIDENT_END": "date_incident_end",
        "CLEARANCE_DATE": "clearance_date",
    },
    required_time="DATE_REPORTED",
    lat="LATITUDE_PUBLIC",
    lon="LONGITUDE_PUBLIC",
    x="X_COORD_PUBLIC",
    y="Y_COORD_PUBLIC",
    city="CITY",
    zip="ZIP",
    source_division=("DIVISION_ID", "CMPD_PATROL_DIVISION"),
    category_from="HIGHEST_NIBRS_CODE",
    category_kind="nibrs",
    # Report ids read YYYYMMDD-HHMM-NN; the HHMM is a time only by inference (--time-from-report-id).
    report_id_time="DATE_REPORTED",
    unfounded_column="CLEARANCE_STATUS",
)


def load_incidents(engine: Engine, path: Path, *, force: bool = False, progress: bool = False,
                   options: LoadOptions = LoadOptions()) -> LoadReport:
    """Load a CMPD Incidents CSV export; see INCIDENTS for the column mapping."""
    return load_points(engine, INCIDENTS, path, force=force, progress=progress, options=options)
