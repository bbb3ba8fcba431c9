"""Calls-for-service CSV in the project's documented layout (docs/data-formats.md)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from geo.ingest.batch import LoadReport
from geo.ingest.points import LoadOptions, PointSource, load_points

CALLS = PointSource(
    kind="calls",
    table="calls",
    id_column="CALL_ID",
    id_field="call_id",
    text={
        "CALL_TYPE": "call_type",
        "ADDRESS": "address",
        "CITY": "city",
        "ZIP": "zip",
        "CMPD_PATROL_DIVISION": "division_source",
        "INCIDENT_REPORT_ID": "incident_report_id",
        "PRIMARY_UNIT": "primary_unit",
        "DISPOSITION": "disposition",
    },
    integers={"PRIORITY": "priority", "UNITS_ASSIGNED": "units_assigned"},
    # The CAD times are optional (docs/data-formats.md); a file without them loads as before.
    times={"DATE_RECEIVED": "received_at", "DATE_DISPATCHED": "dispatched_at", "DATE_ENROUTE": "enroute_at",
           "DATE_ONSCENE": "onscene_at", "DATE_CLEARED": "cleared_at"},
    time_order=("DATE_RECEIVED", "DATE_DISPATCHED", "DATE_ENROUTE", "DATE_ONSCENE", "DATE_CLEARED"),
    integer_ranges={"UNITS_ASSIGNED": (0, 999)},
    required_time="DATE_RECEIVED",
    required_text=("CALL_TYPE",),
    lat="LATITUDE",
    lon="LONGITUDE",
    x="X_COORD",
    y="Y_COORD",
    city="CITY",
    zip="ZIP",
    source_division=("CMPD_PATROL_DIVISION",),
    # A changed call must be scored again by the classifier.
    reset_on_change=("p_violent", "label", "model_version", "labelled_at"),
    category_from="CALL_TYPE",
    category_kind="call_type",
)


def load_calls(engine: Engine, path: Path, *, force: bool = False, progress: bool = False, label: bool = True,
               options: LoadOptions = LoadOptions()) -> LoadReport:
    """Load a calls-for-service CSV (see CALLS for the column mapping), then, with `label`, label the new
    and changed calls with the current model (geo.refresh); the report's `labels` note says how many,
    or that no model exists and what to run."""
    report = load_points(engine, CALLS, path, force=force, progress=progress, options=options)
    if label and report.already_loaded_batch is None:
        from geo.refresh import label_new_calls

        done = label_new_calls(engine, progress=progress, tz=options.tz)
        report.notes["labels"] = "; ".join(done.summary_lines()) or "no call waits for a label"
    return report
