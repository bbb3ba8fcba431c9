"""CMPD's monthly count tables: Violent_Crime_Offenses.csv and the calls-for-service counts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from geo.ingest import clean
from geo.ingest.batch import (
    LoadReport,
    Rejects,
    Timer,
    copy_frame,
    file_sha256,
    finish_batch,
    merge_staged,
    start_report,
    start_batch,
    store_rejects,
)
from geo.ingest.csvfile import nul_rows, read_source_csv, shown_cell

ROW_TYPES = ("CMPD Jurisdiction", "Neighborhood Profile Area", "Violent Crime Hotspot")

# Valid ranges of the numeric columns: what the tables' integer/smallint columns hold and what makes
# sense (a month is 1-12, a count is never negative, a year is not before the data began).
_INT_MAX = 2**31 - 1
_RANGES = {
    "OBJECTID": (0, _INT_MAX),
    "GEOGRAPHY_ID": (-_INT_MAX - 1, _INT_MAX),
    "CALENDAR_YEAR": (1990, 2100),
    "CALENDAR_MONTH": (1, 12),
}


@dataclass(frozen=True)
class CountSource:
    """One monthly-count layout: the description and count column names differ."""

    kind: str
    table: str
    description: str  # source column, e.g. OFFENSE_DESCRIPTION
    count: str        # source column, e.g. OFFENSE_COUNT

    @property
    def columns(self) -> list[str]:
        return ["OBJECTID", "ROW_TYPE", "GEOGRAPHY", "GEOGRAPHY_ID", "CALENDAR_YEAR", "CALENDAR_MONTH", self.description, self.count]


OFFENSES = CountSource("offense_counts", "offense_counts", "OFFENSE_DESCRIPTION", "OFFENSE_COUNT")
CALL_COUNTS = CountSource("call_counts", "call_counts", "CALL_DESCRIPTION", "CALL_COUNT")


def load_monthly_counts(engine: Engine, source: CountSource, path: Path, *, force: bool = False) -> LoadReport:
    """Load a monthly-count CSV exactly as CMPD publishes it (BOM, roll-up rows) in one transaction."""
    timer = Timer()
    path = Path(path)
    report = start_report(engine, source.kind, path, file_sha256(path), force=force)
    if report.already_loaded_batch is not None:
        return report
    table = read_source_csv(path, source.columns)
    frame, lines = table.frame, table.lines
    report.rows_read = len(frame) + len(table.malformed)
    rejects = Rejects()
    rejects.add_malformed(table.malformed)
    alive = np.ones(len(frame), dtype=bool)
    reject = partial(rejects.set_aside, frame, lines, alive)

    if table.has_nul:
        # PostgreSQL text cannot hold NUL: such a row is damaged, not a value to clean.
        nul, nul_details = nul_rows(frame)
        reject(nul, "malformed_row", nul_details)
    numbers = {}
    ranges = {**_RANGES, source.count: (0, _INT_MAX)}
    for col, (low, high) in ranges.items():
        raw = clean.strip(frame[col])
        value = pd.to_numeric(raw, errors="coerce").astype(float)
        whole = (np.isfinite(value) & (value == np.floor(value))).to_numpy()
        cells = raw.to_numpy(dtype=object)
        reject(~whole, "bad_number",
               lambda m, col=col, cells=cells: [f"{col} {shown_cell(v)} is not a whole number" for v in cells[m]])
        reject(~value.between(low, high).to_numpy(), "bad_number",
               lambda m, col=col, cells=cells, low=low, high=high: [
                   f"{col} {shown_cell(v)} is out of range ({low}..{high})" for v in cells[m]])
        numbers[col] = value
    row_type = clean.strip(frame["ROW_TYPE"])
    reject(~row_type.isin(ROW_TYPES).to_numpy(), "unknown_row_type", f"ROW_TYPE is not one of {', '.join(ROW_TYPES)}")
    geography = clean.strip(frame["GEOGRAPHY"])
    reject((geography == "").to_numpy(), "missing_value", "GEOGRAPHY is empty")
    description = clean.strip(frame[source.description])
    reject((description == "").to_numpy(), "missing_value", f"{source.description} is empty")
    objectid = numbers["OBJECTID"]
    dup, first_line = clean.first_duplicates(objectid.where(alive), lines)
    dup &= alive & objectid.notna().to_numpy()
    reject(dup, "duplicate_id", "OBJECTID repeats an earlier row")

    good = alive
    out = pd.DataFrame(
        {
            "objectid": numbers["OBJECTID"][good].astype("int64").to_numpy(),
            "row_type": row_type[good].to_numpy(),
            "geography": geography[good].to_numpy(),
            "geography_id": numbers["GEOGRAPHY_ID"][good].astype("int64").to_numpy(),
            "calendar_year": numbers["CALENDAR_YEAR"][good].astype("int64").to_numpy(),
            "calendar_month": numbers["CALENDAR_MONTH"][good].astype("int64").to_numpy(),
            source.description.lower(): description[good].to_numpy(),
            source.count.lower(): numbers[source.count][good].astype("int64").to_numpy(),
        }
    )
    cols = list(out.columns)
    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        out["batch_id"] = report.batch_id
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE stage_counts ON COMMIT DROP AS SELECT {', '.join(cols)}, batch_id FROM {source.table} WITH NO DATA"
        )
        copy_frame(conn, "stage_counts", out)
        changed_if = " OR ".join(f"t.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in cols[1:])
        report.inserted, report.updated = merge_staged(
            conn, source.table, "stage_counts", "objectid", [*cols, "batch_id"], changed_if=changed_if)
        report.unchanged = len(out) - report.inserted - report.updated
        store_rejects(conn, report, rejects)
        report.seconds = timer.elapsed
        finish_batch(conn, report)
    return report
