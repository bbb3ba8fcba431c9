"""CMPD's Homicide layer, one record per victim: the ArcGIS REST answer as saved, or a CSV of its fields.

`hotspots load homicides FILE` and `hotspots sync --layer homicides` share `prepare_homicides`:
a file is read into the same text frame an ArcGIS page gives (geo/ingest/arcgis.py), and every
frame is cleaned, checked and assigned to areas here. What the layer holds, and how it is read:

- DATE_REPORTED and CLEARANCE_DATE are published as midnight UTC (epoch milliseconds, or
  `YYYY/MM/DD 00:00:00+00` in a CSV). That midnight encodes a calendar date in Charlotte, not an
  instant, so the stored value is the date as written; nothing about the time of day is known.
- Five victims have no coordinates: their geometry is the State Plane origin (about -85.568,
  33.568, in Alabama), which means "unknown". Such rows are kept with no point (geom NULL), as
  are points outside Mecklenburg County; both are counted in the load report.
- AGE is a text field; a number of years is stored alongside the published text.
- A report with several victims has several records: OBJECTID is the key, CRIME_REPORT_ID repeats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from geo.ingest import clean
from geo.ingest.batch import (
    IngestError,
    LoadReport,
    Rejects,
    Timer,
    file_sha256,
    finish_batch,
    start_report,
    start_batch,
    store_rejects,
)
from geo.ingest.csvfile import nul_rows, read_source_csv
from geo.ingest.jsonfile import is_feature_file, read_feature_file
from geo.ingest.points import PointSource, area_indexes, ewkb_points_hex, upsert_rows
from geo.settings import zone_or_configured

@dataclass(frozen=True)
class HomicideLayout(PointSource):
    """The Homicide layer's fields: a point layout whose files must also carry the victim fields."""

    victim_fields: tuple[str, ...] = ()

    @property
    def required_columns(self) -> list[str]:
        """Fields a file must have (a CSV header, or an answer's fields): without them it is not the layer."""
        return list(dict.fromkeys([*super().required_columns, *self.victim_fields]))


# The layer's fields and their table columns. AGE, IPV and CMPD_PATROL_DIVISION are also read
# (a number of years, a flag, a division code); CALENDAR_YEAR/CALENDAR_MONTH are not stored: they
# are DATE_REPORTED's year and month.
HOMICIDES = HomicideLayout(
    kind="homicides",
    table="homicides",
    id_column="OBJECTID",
    id_field="objectid",
    text={
        "CRIME_REPORT_ID": "crime_report_id",
        "AGE": "age_source",
        "GENDER": "gender",
        "RACE_ETHNICITY": "race_ethnicity",
        "WEAPON": "weapon",
        "CIRCUMSTANCES": "circumstances",
        "IPV": "ipv",
        "CLEARANCE_STATUS": "clearance_status",
        "LOCATION": "location",
        "CORRIDOR": "corridor",
        "CMPD_PATROL_DIVISION": "cmpd_patrol_division",
    },
    floats={
        "X_COORD_PUBLIC": "x_coord_public",
        "Y_COORD_PUBLIC": "y_coord_public",
        "LATITUDE_PUBLIC": "latitude_public",
        "LONGITUDE_PUBLIC": "longitude_public",
    },
    integers={"ID": "id_source", "NPA": "npa_source", "COUNCIL_DISTRICT": "council_district",
              "COMMISSION_DISTRICT": "commission_district"},
    times={"DATE_REPORTED": "date_reported", "CLEARANCE_DATE": "clearance_date"},
    required_time="DATE_REPORTED",
    required_text=("CRIME_REPORT_ID",),
    lat="LATITUDE_PUBLIC",
    lon="LONGITUDE_PUBLIC",
    x="X_COORD_PUBLIC",
    y="Y_COORD_PUBLIC",
    source_division=("CMPD_PATROL_DIVISION",),
    origin_column=None,    # every record of the layer is real
    # A file lacking any of these is not the Homicide layer: it is refused whole, naming them.
    victim_fields=("AGE", "GENDER", "RACE_ETHNICITY", "WEAPON", "CIRCUMSTANCES", "IPV", "CLEARANCE_STATUS",
                   "CMPD_PATROL_DIVISION", "NPA"),
)

# Ages beyond this are not ages (the layer's oldest victim is 79).
MAX_AGE = 120
IPV_TRUE = {"intimate partner", "yes", "y", "true", "1"}
IPV_FALSE = {"", "no", "n", "false", "0", "not intimate partner"}
REPORT_ID = re.compile(r"^(\d{8})-\d{4}-\d{2}$")


# --- calendar dates --------------------------------------------------------------------------------
# A time of day followed by an offset: the value is an instant ('2021-03-14' ends in '-14', a day).
_INSTANT = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


@dataclass
class CalendarDates:
    """A column of date cells read as calendar dates."""

    text: np.ndarray         # 'YYYY-MM-DD', or '' where empty or rejected
    bad: np.ndarray          # not a date
    implausible: np.ndarray  # a date before 1990 or after tomorrow
    local: int               # instants with a time of day, taken as their local date


def calendar_dates(values: pd.Series, tz: ZoneInfo) -> CalendarDates:
    """Read date cells (every form clean.parse_times reads, epoch milliseconds included) as calendar dates.

    A date, a local wall time, or midnight UTC (the layer's encoding of a Charlotte date) gives the
    date as written; an instant at another time of day gives its date in `tz`.
    """
    parsed = clean.parse_times(values)
    day = parsed.day.to_numpy(dtype=object).copy()
    instant = (parsed.text != "") & parsed.text.str.contains(_INSTANT, regex=True)
    local = 0
    if instant.any():
        when = pd.to_datetime(parsed.text[instant].str.replace(r"([+-]\d{2})$", r"\1:00", regex=True),
                              format="ISO8601", utc=True)
        timed = when != when.dt.normalize()
        local_day = when[timed].dt.tz_convert(tz).dt.strftime("%Y-%m-%d")
        day[parsed.text.index.get_indexer(local_day.index)] = local_day.to_numpy(dtype=object)
        local = int(timed.sum())
    return CalendarDates(text=day, bad=parsed.bad, implausible=parsed.implausible, local=local)


# --- cleaning: one function for files and the ArcGIS feed ------------------------------------------
def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A source column as trimmed text ('' where absent)."""
    if name in frame.columns:
        return clean.strip(frame[name])
    return pd.Series([""] * len(frame), index=frame.index, dtype=object)


def _ages(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """AGE as whole years (None where it is not one), and which non-empty cells were not."""
    number = pd.to_numeric(raw.where(raw.str.fullmatch(r"\d{1,3}(?:\.0*)?"), None), errors="coerce")
    valid = (number.notna() & (number <= MAX_AGE)).to_numpy()
    out = np.where(valid, number.fillna(0).to_numpy().astype(int), None).astype(object)
    return out, (raw != "").to_numpy() & ~valid


def _flag(raw: pd.Series) -> np.ndarray:
    """IPV as a flag: True for 'Intimate Partner' (or yes), False for empty (or no), else None."""
    low = raw.str.lower()
    return np.where(low.isin(IPV_TRUE), True, np.where(low.isin(IPV_FALSE), False, None)).astype(object)


def _add(notes: dict, key: str, value: int) -> None:
    notes[key] = notes.get(key, 0) + value


def prepare_homicides(frame: pd.DataFrame, lines: np.ndarray, areas, report: LoadReport, rejects: Rejects,
                      tz: str | None = None) -> pa.Table:
    """Clean, check and assign a frame of the layer's fields (text); rows come back as table columns.

    `lines` names each row in rejects: a CSV line, a feature's position or an OBJECTID (whose
    FeatureRejects keep the feature's JSON as the raw text and say so in the details).
    Rejected: no, a non-numeric or a repeated OBJECTID, no CRIME_REPORT_ID, a DATE_REPORTED that is
    missing, not a date or implausible, a CLEARANCE_DATE that is not a date, a NUL character.
    Kept without a point: no coordinates, the placeholder point, a point outside the county.
    Instants are given their local date in `tz` (None: the configured zone).
    """
    frame = frame.reset_index(drop=True)
    lines = np.asarray(lines, dtype=np.int64)
    n = len(frame)
    alive = np.ones(n, dtype=bool)
    zone = ZoneInfo(zone_or_configured(tz))

    reject = partial(rejects.set_aside, frame, lines, alive)

    def shown(values: pd.Series | np.ndarray, mask: np.ndarray, what: str) -> list[str]:
        return [f"{what} {v!r}" for v in np.asarray(values, dtype=object)[mask]]

    nul, nul_details = nul_rows(frame)
    reject(nul, "malformed_row", nul_details)
    ids = _column(frame, HOMICIDES.id_column)
    reject((ids == "").to_numpy(), "missing_id", "OBJECTID is empty")
    # Up to 15 digits: exact as a float, and far beyond any layer's object ids.
    oid = pd.to_numeric(ids.where(ids.str.fullmatch(r"\d{1,15}(?:\.0*)?"), None), errors="coerce")
    reject(oid.isna().to_numpy(), "bad_id",
           lambda m: [f"{t} is not a whole number" for t in shown(ids, m, "OBJECTID")])
    dup, first = clean.first_duplicates(oid.where(alive), lines)
    reject(dup, "duplicate_id", lambda m: [f"OBJECTID {ids[i]} repeats the record at line {first[i]}"
                                            for i in np.flatnonzero(m)])
    report_id = _column(frame, "CRIME_REPORT_ID")
    reject((report_id == "").to_numpy(), "missing_value", "CRIME_REPORT_ID is empty")

    dates: dict[str, np.ndarray] = {}
    for col, dest in HOMICIDES.times.items():
        cells = _column(frame, col)
        read = calendar_dates(cells, zone)
        reject(read.bad, "bad_date", lambda m, c=cells, col=col: [f"{t} is not a date" for t in shown(c, m, col)])
        reject(read.implausible, "implausible_date",
               lambda m, c=cells, col=col: [f"{t} is before 1990 or in the future" for t in shown(c, m, col)])
        if read.local:
            report.fixes[f"{col.lower()}_with_a_time_of_day_read_as_local_date"] += read.local
        dates[dest] = read.text
    reject(dates["date_reported"] == "", "missing_value", "DATE_REPORTED is empty")

    good = alive
    keep = pa.array(good)
    m = int(good.sum())

    def kept(values) -> pa.Array:
        return pc.filter(clean.empty_to_null(clean.arrow_text(pd.Series(values, dtype=object))), keep)

    columns: dict[str, pa.Array] = {"objectid": pa.array(oid.to_numpy()[good].astype(np.int64))}
    for col, dest in HOMICIDES.text.items():
        columns[dest] = kept(_column(frame, col))
    for col, dest in HOMICIDES.integers.items():
        cells = _column(frame, col)
        values = pc.filter(clean.arrow_number(cells, whole=True), keep)
        report.fixes[f"{col.lower()}_not_a_number_cleared"] += int(
            pc.sum(pc.and_(pc.is_null(values), pc.not_equal(kept(cells), ""))).as_py() or 0)
        columns[dest] = values
    lon, lat, npa_id, coords = _points(frame, good, areas, report)
    no_point = pd.isna(npa_id)
    for col, dest in HOMICIDES.floats.items():
        # As published, except that the placeholder point is no coordinate at all.
        columns[dest] = pc.filter(clean.arrow_number(coords[col]), keep)
    for dest, text in dates.items():
        columns[dest] = kept(text)     # 'YYYY-MM-DD', read by COPY into a date column
    ages, not_ages = _ages(_column(frame, "AGE"))
    # The published text stays in age_source; only the number is left empty.
    report.fixes["age_not_a_number_of_years_left_empty"] += int((not_ages & good).sum())
    columns["age"] = pa.array(ages[good], type=pa.int16())
    flags = _flag(_column(frame, "IPV"))
    _add(report.notes, "ipv_values_not_recognised", int(pd.isna(flags[good]).sum()))
    columns["intimate_partner"] = pa.array(flags[good], type=pa.bool_())

    division_id = np.full(n, None, dtype=object)
    located = np.flatnonzero(good & ~no_point)
    division_id[located] = areas.division.lookup(lon[located], lat[located])
    columns["geom"] = pa.array(np.where(no_point, None, ewkb_points_hex(np.nan_to_num(lon), np.nan_to_num(lat)))[good],
                               type=pa.string())
    columns["division_id"] = pa.array(division_id[good], type=pa.string())
    columns["npa_id"] = pa.array(npa_id[good], type=pa.int64())
    columns["data_origin"] = pa.array(["real"] * m, type=pa.string())
    _compare(frame, good, no_point, report_id, dates["date_reported"], npa_id, division_id, areas, report)
    table = pa.table(columns)
    table = table.append_column("row_hash", pa.array(_row_hashes(table)))
    report.fixes = +report.fixes
    return table


def _numbers(values: pd.Series) -> np.ndarray:
    """Text cells as floats, NaN where not a number."""
    return np.asarray(pc.fill_null(clean.arrow_number(values), np.nan), dtype=float)


def _points(frame: pd.DataFrame, good: np.ndarray, areas, report: LoadReport
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, pd.Series]]:
    """Lon/lat of each row, its NPA (None: no usable point, counted by cause among the good rows),
    and the coordinate cells with the placeholder point blanked."""
    coords = {c: _column(frame, c) for c in (HOMICIDES.lat, HOMICIDES.lon, HOMICIDES.x, HOMICIDES.y)}
    geometry = [_column(frame, c) for c in (HOMICIDES.geometry_lon, HOMICIDES.geometry_lat)]   # JSON inputs only
    with np.errstate(invalid="ignore"):
        given = clean.is_placeholder(_numbers(coords[HOMICIDES.lon]), _numbers(coords[HOMICIDES.lat]))
        placeholder = given | clean.is_placeholder(*(_numbers(g) for g in geometry))
    # The placeholder is no coordinate at all: blanked before the repairs, and stored as NULL.
    for col in (HOMICIDES.lat, HOMICIDES.lon):
        coords[col] = coords[col].where(~given, "")
    found = clean.coordinates(*(coords[c] for c in (HOMICIDES.lat, HOMICIDES.lon, HOMICIDES.x, HOMICIDES.y)),
                              *geometry)
    report.fixes["coordinates_from_state_plane"] += found.from_state_plane
    report.fixes["coordinates_swapped"] += found.swapped
    report.fixes["latitude_longitude_unusable"] += found.unusable_lat_lon
    report.fixes["coordinates_from_geometry"] += found.from_geometry
    have = np.isfinite(found.lon) & np.isfinite(found.lat)
    in_county = have & clean.in_box(found.lon, found.lat)
    npa_id = np.full(len(frame), None, dtype=object)
    idx = np.flatnonzero(in_county)
    npa_id[idx] = areas.npa.lookup(found.lon[idx], found.lat[idx])
    in_npa = ~pd.isna(npa_id)
    no_point = ~in_npa
    _add(report.notes, "kept_without_a_point", int((good & no_point).sum()))
    _add(report.notes, "placeholder_points", int((good & no_point & placeholder).sum()))
    _add(report.notes, "no_coordinates", int((good & ~have & ~placeholder).sum()))
    _add(report.notes, "points_outside_the_county", int((good & have & ~in_npa & ~placeholder).sum()))
    return found.lon, found.lat, npa_id, coords


def _compare(frame, good, no_point, report_id, reported, npa_id, division_id, areas, report: LoadReport) -> None:
    """Count where the published report id date, NPA and division disagree with ours."""
    id_day = np.array([_report_id_day(v) for v in report_id.to_numpy(dtype=object)[good]], dtype=object)
    day = np.asarray(reported, dtype=object)[good]
    _add(report.notes, "report_ids_not_yyyymmdd_hhmm_nn", int((id_day == "").sum()))
    _add(report.notes, "report_id_date_agrees", int(((id_day != "") & (id_day == day)).sum()))
    _add(report.notes, "report_id_date_disagrees", int(((id_day != "") & (id_day != day)).sum()))
    located = (~no_point)[good]
    published_npa = pd.to_numeric(_column(frame, "NPA"), errors="coerce").to_numpy()[good]
    ours = np.array([np.nan if v is None else float(v) for v in npa_id[good]])
    both = located & np.isfinite(published_npa)
    _add(report.notes, "npa_disagreements", int((both & (published_npa != ours)).sum()))
    published = clean.division_code(_column(frame, "CMPD_PATROL_DIVISION"), areas.division_codes)[good]
    known = located & (published != "") & (published != "?")
    _add(report.notes, "division_disagreements", int((known & (published != division_id[good])).sum()))
    _add(report.notes, "source_division_unrecognised", int((published == "?").sum()))
    _add(report.notes, "outside_cmpd_divisions", int((located & pd.isna(division_id[good])).sum()))


def _report_id_day(report_id: str) -> str:
    """The YYYYMMDD of a report id as 'YYYY-MM-DD' ('' when the id has another form)."""
    m = REPORT_ID.match(report_id)
    return f"{m[1][:4]}-{m[1][4:6]}-{m[1][6:]}" if m else ""


def _row_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each row's stored values (signed, for PostgreSQL bigint): a reload or a sync
    updates a row only when what would be stored changed, whatever form the source came in."""
    cells = [pc.fill_null(pc.cast(table.column(c), pa.large_string()), "\x00") for c in table.column_names]
    joined = pc.binary_join_element_wise(*cells, pa.scalar("\x1f", pa.large_string()))
    hashed = pd.util.hash_pandas_object(pd.Series(joined.to_pylist(), dtype=object), index=False)
    return hashed.to_numpy().view(np.int64)


# --- files -----------------------------------------------------------------------------------------
@dataclass
class SourceRecords:
    """A file's records as the layer's text frame, each row's line (or feature position), and the
    rejects its reading already found (malformed rows or features)."""

    frame: pd.DataFrame
    lines: np.ndarray
    rejects: Rejects
    rows_read: int
    form: str                                   # 'json' (ArcGIS), 'geojson' or 'csv'
    notes: dict = field(default_factory=dict)


def read_homicides_file(path: Path) -> SourceRecords:
    """The ArcGIS JSON (or GeoJSON) answer as saved, or a CSV of the same fields; IngestError when the
    file is neither, naming what is missing or broken."""
    path = Path(path)
    if is_feature_file(path):
        f = read_feature_file(path, HOMICIDES)
        return SourceRecords(f.frame, f.lines, f.rejects(), f.rows_read, f.fmt, dict(f.notes))
    table = read_source_csv(path, HOMICIDES.required_columns)
    names = set(table.frame.columns)
    if not ({HOMICIDES.lat, HOMICIDES.lon} <= names or {HOMICIDES.x, HOMICIDES.y} <= names):
        raise IngestError(f"{path}: no coordinate columns: expected {HOMICIDES.lat} and {HOMICIDES.lon}, "
                          f"or {HOMICIDES.x} and {HOMICIDES.y}")
    rejects = Rejects()
    rejects.add_malformed(table.malformed)
    notes = {"encoding": table.encoding} if table.encoding != "utf-8" else {}
    return SourceRecords(table.frame, table.lines, rejects, len(table.frame) + len(table.malformed), "csv", notes)


def load_homicides(engine: Engine, path: Path, *, force: bool = False, tz: str | None = None) -> LoadReport:
    """Load the Homicide layer from a saved ArcGIS answer or a CSV, in one transaction."""
    timer = Timer()
    path = Path(path)
    report = start_report(engine, HOMICIDES.kind, path, file_sha256(path), force=force)
    if report.already_loaded_batch is not None:
        return report
    source = read_homicides_file(path)
    areas = area_indexes(engine)
    report.rows_read = source.rows_read
    report.notes.update({"format": source.form, **source.notes})
    rows = prepare_homicides(source.frame, source.lines, areas, report, source.rejects, tz)
    report.mark("prepare", timer)
    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        report.inserted, report.updated = upsert_rows(conn, HOMICIDES, rows, report.batch_id, tz)
        report.unchanged = rows.num_rows - report.inserted - report.updated
        store_rejects(conn, report, source.rejects)
        report.seconds = timer.elapsed
        finish_batch(conn, report)
    return report
