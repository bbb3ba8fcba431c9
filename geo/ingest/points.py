"""The shared path for point records (incidents, calls): read, clean, reject, assign areas, upsert."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Iterator
from pathlib import Path

import binascii
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine
from tqdm import tqdm

from geo.catalog import data_versions
from geo.ingest import clean
from geo.ingest.batch import (
    IngestError,
    LoadReport,
    Rejects,
    Timer,
    copy_frame,
    file_sha256,
    finish_batch,
    merge_staged,
    merge_staged_keys,
    start_report,
    start_batch,
    store_rejects,
)
from geo.ingest.csvfile import iter_source_batches, nul_rows, scan_source_csv, shown_cell
from geo.ingest.jsonfile import is_feature_file, read_feature_file
from geo.settings import zone_or_configured
from geo.taxonomy import UNKNOWN, load_taxonomy
from geo.spatial import AreaIndex, read_divisions, read_neighborhoods


@dataclass(frozen=True)
class PointSource:
    """How one CSV layout maps onto one PostGIS table."""

    kind: str
    table: str
    id_column: str                         # source column holding the record id
    id_field: str                          # its table column (the primary key)
    text: dict[str, str]                   # source column -> table column, copied as text
    floats: dict[str, str] = field(default_factory=dict)
    integers: dict[str, str] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)
    required_time: str = ""                # source time column that must hold a valid time
    required_text: tuple[str, ...] = ()    # source columns that must not be empty
    lat: str | None = None
    lon: str | None = None
    x: str | None = None
    y: str | None = None
    city: str | None = None
    zip: str | None = None
    source_division: tuple[str, ...] = ()  # source columns naming a division (code or name)
    reset_on_change: tuple[str, ...] = ()  # table columns cleared when a record changes
    category_from: str | None = None       # source column categorised by geo/taxonomy.csv
    category_kind: str = "call_type"       # "call_type" or "nibrs"
    # The record's point as a geometry (the API's GeoJSON flattened to columns, or a JSON input's
    # geometry): the last fall-back when LAT/LON and State Plane X/Y are unusable.
    geometry_lon: str | None = "COORDINATES_LON"
    geometry_lat: str | None = "COORDINATES_LAT"
    origin_column: str | None = "DATA_ORIGIN"  # 'synthetic' marks generated rows; absent/empty is real
    # The source time column whose time of day a report id `YYYYMMDD-HHMM-NN` may fill (only
    # with time_from_report_id; an inference, flagged as precision 'report_id' on every row).
    report_id_time: str | None = None
    # clearance column whose 'Unfounded' (found not to be a crime) keeps a report out of crime counts
    unfounded_column: str | None = None
    # Source time columns in the order events happen (received, dispatched, ... cleared): a row whose
    # timed values go backwards is rejected as impossible. Columns absent from a file are skipped.
    time_order: tuple[str, ...] = ()
    # Source integer column -> (lowest, highest) valid value; other values are rejected.
    integer_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def precision_columns(self) -> dict[str, str]:
        """Source time column -> the table column recording how precise it is."""
        return {col: f"{dest}_precision" for col, dest in self.times.items()}

    @property
    def required_columns(self) -> list[str]:
        """Columns the header must contain."""
        cols = [self.id_column, self.required_time, *self.required_text]
        return [c for c in dict.fromkeys(cols) if c]


@dataclass(frozen=True)
class LoadOptions:
    """Choices a load makes that the data cannot make for it."""

    # Fill the unknown time of day of a calendar-date report from its report id's HHMM (an
    # inference CMPD does not document; every filled row says so in its precision column).
    time_from_report_id: bool = False
    # Local wall-clock times (no offset in the source) are read in this zone; None: the configured one.
    tz: str | None = None


def ewkb_points_hex(lon: np.ndarray, lat: np.ndarray, srid: int = 4326) -> np.ndarray:
    """Hex EWKB of 2D points with an SRID, built with numpy (PostGIS reads it in COPY)."""
    record = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("x", "<f8"), ("y", "<f8")])
    buf = np.empty(len(lon), dtype=record)
    buf["order"] = 1                # little-endian
    buf["type"] = 0x20000001        # Point, with the SRID flag set
    buf["srid"] = srid
    buf["x"] = lon
    buf["y"] = lat
    hexed = binascii.hexlify(buf.tobytes())
    return np.frombuffer(hexed, dtype=f"S{2 * record.itemsize}").astype(str)


def row_hashes(frame: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each masked row's source cells (signed, to fit PostgreSQL bigint)."""
    cells = [pc.filter(clean.arrow_text(frame[c]), pa.array(mask)) for c in frame.columns]
    joined = pc.binary_join_element_wise(*cells, pa.scalar("\x1f", pa.large_string()))
    hashed = pd.util.hash_pandas_object(pd.Series(pd.arrays.ArrowExtensionArray(joined)), index=False)
    return hashed.to_numpy().view(np.int64)


@dataclass
class _Parts:
    """Everything the output rows are built from, aligned on the source rows."""

    frame: pd.DataFrame
    good: np.ndarray
    times: dict[str, pd.Series]
    npa_id: np.ndarray
    division_id: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    precisions: dict[str, np.ndarray]
    origin: np.ndarray


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _build_rows(source: PointSource, parts: _Parts, report: LoadReport) -> pa.Table:
    """The table rows (as Arrow) for the good source rows of one chunk; repairs are counted."""
    frame, good = parts.frame, parts.good
    keep = pa.array(good)
    m = int(good.sum())
    # Hashing is the costliest step and runs in numpy/Arrow code that releases the GIL.
    hasher = ThreadPoolExecutor(max_workers=1)
    hashes = hasher.submit(row_hashes, frame, good)

    def kept(col: str) -> pa.Array:
        return pc.filter(clean.arrow_text(frame[col]), keep)

    columns: dict[str, pa.Array] = {source.id_field: kept(source.id_column)}
    for col, dest in source.text.items():
        columns[dest] = kept(col) if col in frame.columns else pa.nulls(m, pa.large_string())
    for col, dest in source.floats.items():
        columns[dest] = pc.filter(clean.arrow_number(frame[col]), keep) if col in frame.columns else pa.nulls(m, pa.float64())
    for col, dest in source.integers.items():
        if col not in frame.columns:
            columns[dest] = pa.nulls(m, pa.int64())
            continue
        values = pc.filter(clean.arrow_number(frame[col], whole=True), keep)
        report.fixes[f"{col.lower()}_not_a_number_cleared"] += _count(pc.and_(pc.is_null(values), pc.not_equal(kept(col), "")))
        columns[dest] = values
    for dest, values in parts.times.items():
        columns[dest] = pa.array(values.to_numpy(dtype=object)[good], type=pa.large_string())
    for dest, values in parts.precisions.items():
        columns[f"{dest}_precision"] = pa.array(values[good], type=pa.large_string())
    columns["data_origin"] = pa.array(parts.origin[good], type=pa.large_string())
    if source.city and source.city in frame.columns:
        city, _ = clean.normalise_city(frame[source.city])
        columns[source.text[source.city]] = pc.filter(clean.arrow_text(city), keep)
        report.fixes["city_name_normalised"] += _count(pc.not_equal(columns[source.text[source.city]], kept(source.city)))
    if source.zip and source.zip in frame.columns:
        zips, _ = clean.clean_zip(frame[source.zip])
        zips = pc.filter(clean.arrow_text(zips), keep)
        columns[source.text[source.zip]] = zips
        report.fixes["zip_not_a_zip_cleared"] += _count(pc.and_(pc.equal(zips, ""), pc.not_equal(kept(source.zip), "")))
        _add(report.notes, "zip_missing", _count(pc.equal(zips, "")))
    # Empty text and times are NULL in the tables, not ''.
    for dest in [*source.text.values(), *parts.times]:
        columns[dest] = clean.empty_to_null(columns[dest])
    columns["npa_id"] = pa.array(parts.npa_id[good], type=pa.int64())
    columns["division_id"] = pa.array(parts.division_id[good], type=pa.large_string())
    columns["geom"] = pa.array(ewkb_points_hex(parts.lon[good], parts.lat[good]), type=pa.string())
    if source.category_from and source.category_from in frame.columns:
        taxonomy = load_taxonomy()
        values = frame[source.category_from][good]
        if source.category_kind == "nibrs":
            category, is_crime = taxonomy.categorise_codes(values)
            _add(report.notes, "not_crimes_by_code", int((~is_crime).sum()))
            if source.unfounded_column and source.unfounded_column in frame.columns:
                # Unfounded: investigated and found not to be a crime. Kept and served, never counted as one.
                unfounded = (clean.strip(frame[source.unfounded_column][good]).str.upper() == "UNFOUNDED").to_numpy()
                _add(report.notes, "unfounded_reports", int(unfounded.sum()))
                is_crime = is_crime & ~unfounded
            columns["is_crime"] = pa.array(is_crime)
        else:
            category = taxonomy.categorise_call_types(values)
        columns["category"] = pa.array(category, type=pa.large_string())
        unknown = (category == UNKNOWN) & (clean.strip(values).to_numpy(dtype=object) != "")
        _add(report.notes, f"unknown_{source.category_kind}_values", int(unknown.sum()))
    # The hash covers the source cells, so a reload updates a record only when its source changed.
    columns["row_hash"] = pa.array(hashes.result())
    hasher.shutdown()
    return pa.table(columns)


def load_points(
    engine: Engine, source: PointSource, path: Path, *, force: bool = False, progress: bool = False,
    options: LoadOptions = LoadOptions(),
) -> LoadReport:
    """Load one file of point records in a single transaction and return the counts.

    A CSV is read twice: a first pass reads the id column (duplicates, line numbers, malformed
    rows); the second streams the file in record batches that are cleaned, assigned to areas and
    sent to PostgreSQL while the next batch is being prepared. A JSON file (an ArcGIS query
    answer or a GeoJSON FeatureCollection, told by its content) is read whole and goes the same
    way from its features (`load_frame`).
    """
    timer = Timer()
    path = Path(path)
    report = start_report(engine, source.kind, path, file_sha256(path), force=force)
    if report.already_loaded_batch is not None:
        return report
    areas = area_indexes(engine)
    if is_feature_file(path):
        features = read_feature_file(path, source)
        report.rows_read = features.rows_read
        report.notes.update(features.notes)
        return load_frame(engine, source, features.frame, features.lines, features.rejects(), areas, report, timer,
                          progress=progress, options=options)
    scan = scan_source_csv(path, source.required_columns, source.id_column, also=list(source.times))
    time_columns = {col: clean.time_of_day(values) for col, values in scan.columns.items()}
    report.rows_read = len(scan.ids) + len(scan.malformed)
    if scan.encoding != "utf-8":
        report.notes["encoding"] = scan.encoding
    rejects = Rejects()
    rejects.add_malformed(scan.malformed)
    # The first row carrying an id is the record; later rows with the same id are rejected.
    ids = clean.strip(scan.ids)
    dup, first_line = clean.first_duplicates(ids.where(ids != "", None), scan.lines)
    report.mark("scan", timer)

    bar = tqdm(total=len(ids), desc=f"load {source.kind}", unit="row", unit_scale=True, disable=not progress, leave=False)

    def chunks() -> Iterator[pa.Table]:
        start = 0
        for frame in iter_source_batches(path, scan):
            stop = start + len(frame)
            frame.index = pd.RangeIndex(len(frame))
            yield _prepare_batch(source, frame, scan.lines[start:stop], dup[start:stop], first_line[start:stop],
                                 areas, report, rejects, check_nul=scan.has_nul, time_columns=time_columns,
                                 options=options)
            bar.update(len(frame))
            start = stop
        if start != len(ids):
            raise IngestError(f"{path}: the file changed while it was being loaded ({start} rows, expected {len(ids)})")

    try:
        _write(engine, source, report, chunks(), rejects, timer, options.tz)
    finally:
        bar.close()   # cleared before any error is printed, so the error stands on its own line
    report.fixes = +report.fixes  # drop zero counts
    return report


# Rows per batch of a file read whole (about the rows of a CSV's 16 MB record batch).
FRAME_BATCH_ROWS = 100_000


def load_frame(
    engine: Engine, source: PointSource, frame: pd.DataFrame, lines: np.ndarray, rejects: Rejects, areas: _Areas,
    report: LoadReport, timer: Timer, *, progress: bool = False, options: LoadOptions = LoadOptions(),
) -> LoadReport:
    """Load source text rows already in memory (a JSON file's features) the way a CSV's batches are loaded.

    `lines` gives each row's position for its reject; `rejects` may already hold rows set aside
    while reading (and says what raw text a reject keeps). One transaction, as for a CSV.
    """
    # As for a CSV, calendar dates are judged per column over the whole file, not per batch.
    time_columns = {col: clean.time_of_day(frame[col]) for col in source.times if col in frame.columns}
    ids = clean.strip(frame[source.id_column])
    dup, first_line = clean.first_duplicates(ids.where(ids != "", None), lines)
    report.mark("scan", timer)
    bar = tqdm(total=len(frame), desc=f"load {source.kind}", unit="row", unit_scale=True, disable=not progress,
               leave=False)

    def chunks() -> Iterator[pa.Table]:
        for start in range(0, len(frame), FRAME_BATCH_ROWS):
            part = slice(start, start + FRAME_BATCH_ROWS)
            yield _prepare_batch(source, frame.iloc[part].reset_index(drop=True), lines[part], dup[part],
                                 first_line[part], areas, report, rejects, time_columns=time_columns, options=options)
            bar.update(len(lines[part]))

    try:
        _write(engine, source, report, chunks(), rejects, timer, options.tz)
    finally:
        bar.close()
    report.fixes = +report.fixes
    return report


@dataclass
class _Areas:
    """The polygon indexes every batch is assigned against."""

    npa: AreaIndex
    division: AreaIndex
    division_codes: dict[str, str]  # short name -> code


def _prepare_batch(
    source: PointSource, frame: pd.DataFrame, lines: np.ndarray, dup: np.ndarray, first_line: np.ndarray,
    areas: _Areas, report: LoadReport, rejects: Rejects, *, check_nul: bool = True,
    time_columns: dict[str, clean.TimeOfDay] | None = None, options: LoadOptions = LoadOptions(),
) -> pa.Table:
    """Validate, repair and assign one batch; rejected rows go to `rejects`, the rest come back as rows.

    `check_nul` looks for NUL characters in every cell (a file's scan says whether it has any).
    `time_columns` is the whole file's verdict on each time column (calendar dates or instants);
    without it the batch itself is judged (a sync page, a posted batch).
    """
    n = len(frame)
    alive = np.ones(n, dtype=bool)

    reject = partial(rejects.set_aside, frame, lines, alive)

    if check_nul:
        # PostgreSQL text cannot hold NUL: such a row is damaged, not a value to clean.
        nul, nul_details = nul_rows(frame)
        reject(nul, "malformed_row", nul_details)
    ids = clean.strip(frame[source.id_column])
    reject((ids == "").to_numpy(), "missing_id", f"{source.id_column} is empty")
    reject(dup, "duplicate_id", lambda mask: [f"{source.id_column} repeats the row at line {fl}" for fl in first_line[mask]])

    times: dict[str, pd.Series] = {}
    precisions: dict[str, np.ndarray] = {}
    judged: dict[str, tuple] = {}
    for col, dest in source.times.items():
        if col not in frame.columns:
            continue
        parsed = clean.parse_times(frame[col])
        raw = frame[col].to_numpy(dtype=object)
        reject(parsed.bad, "bad_date", lambda mask, raw=raw, col=col: [f"{col} {str(v).strip()!r} is not a date" for v in raw[mask]])
        reject(parsed.implausible, "implausible_date",
               lambda mask, raw=raw, col=col: [f"{col} {str(v).strip()!r} is before 1990 or in the future" for v in raw[mask]])
        # Calendar dates are judged per column over the whole file (or sync page), bare dates per value.
        column = (time_columns or {}).get(col) or clean.time_of_day(frame[col])
        times[dest], precisions[dest] = clean.as_calendar_dates(parsed, column)
        if options.time_from_report_id and col == source.report_id_time:
            times[dest], precisions[dest] = _time_from_report_id(frame[source.id_column], times[dest], precisions[dest],
                                                                 parsed.day)
        judged[col] = (dest, column, parsed.epoch_ms)
    if source.required_time:
        empty_time = (times[source.times[source.required_time]] == "").to_numpy()
        reject(empty_time, "missing_value", f"{source.required_time} is empty")
    for col in source.required_text:
        reject((clean.strip(frame[col]) == "").to_numpy(), "missing_value", f"{col} is empty")
    backwards, order_details = _time_order_violations(source, frame, times, precisions)
    reject(backwards, "impossible_time_order", lambda mask: order_details[mask].tolist())
    for col, (lo, hi) in source.integer_ranges.items():
        if col in frame.columns:
            number = pd.to_numeric(clean.strip(frame[col]), errors="coerce").to_numpy(dtype=float)
            reject(~np.isnan(number) & ((number < lo) | (number > hi)), "bad_value",
                   lambda mask, col=col, lo=lo, hi=hi: [f"{col} {shown_cell(v)} is not a whole number from {lo} to {hi}"
                                                      for v in frame[col].to_numpy(dtype=object)[mask]])

    origin = np.full(n, "real", dtype=object)
    if source.origin_column and source.origin_column in frame.columns:
        given = clean.strip(frame[source.origin_column]).str.lower()
        reject((~given.isin(["", "real", "synthetic"])).to_numpy(), "bad_value",
               lambda mask: [f"{source.origin_column} {shown_cell(v)} is not 'real' or 'synthetic'"
                             for v in frame[source.origin_column].to_numpy(dtype=object)[mask]])
        origin[(given == "synthetic").to_numpy()] = "synthetic"

    coord_sources = (source.lat, source.lon, source.x, source.y, source.geometry_lon, source.geometry_lat)
    coords = clean.coordinates(*(frame[c] if c and c in frame.columns else None for c in coord_sources))
    report.fixes["coordinates_from_state_plane"] += coords.from_state_plane
    report.fixes["coordinates_from_geometry"] += coords.from_geometry
    report.fixes["coordinates_swapped"] += coords.swapped
    report.fixes["latitude_longitude_unusable"] += coords.unusable_lat_lon
    report.fixes["placeholder_point_unknown"] += coords.placeholders
    have_xy = np.isfinite(coords.lon) & np.isfinite(coords.lat)
    coord_columns = [c for c in coord_sources if c and c in frame.columns]

    def no_coordinates(mask: np.ndarray) -> list[str]:
        cells = [(c, frame[c].to_numpy(dtype=object)[mask]) for c in coord_columns]
        return [
            "no usable coordinates (" + ", ".join(f"{c}={shown_cell(values[i])}" for c, values in cells)
            + "): expected latitude/longitude in degrees or State Plane X/Y in feet"
            for i in range(int(mask.sum()))
        ]

    reject(~have_xy, "missing_coordinates", no_coordinates)
    in_box = clean.in_box(coords.lon, coords.lat)
    reject(~in_box, "outside_county", lambda mask: [f"point ({a:.6f}, {b:.6f}) is outside Mecklenburg County"
                                                    for a, b in zip(coords.lon[mask], coords.lat[mask])])

    # Areas are assigned only for points that are still candidates.
    npa_id = np.full(n, None, dtype=object)
    division_id = np.full(n, None, dtype=object)
    cand = np.flatnonzero(alive)
    npa_id[cand] = areas.npa.lookup(coords.lon[cand], coords.lat[cand])
    no_npa = alive & pd.isna(npa_id)
    reject(no_npa, "outside_county", lambda mask: [f"point ({a:.6f}, {b:.6f}) is in no Neighborhood Profile Area"
                                                   for a, b in zip(coords.lon[mask], coords.lat[mask])])
    cand = np.flatnonzero(alive)
    division_id[cand] = areas.division.lookup(coords.lon[cand], coords.lat[cand])

    good = alive
    if source.source_division:
        src = np.full(n, "", dtype=object)
        for col in source.source_division:  # the first column that names a division wins
            if col in frame.columns:
                code = clean.division_code(frame[col], areas.division_codes)
                src = np.where(src == "", code, src)
        src_good = src[good]
        known = (src_good != "") & (src_good != "?")
        _add(report.notes, "division_disagreements", int((known & (src_good != division_id[good])).sum()))
        _add(report.notes, "source_division_unrecognised", int((src_good == "?").sum()))
    _add(report.notes, "outside_cmpd_divisions", int(pd.isna(division_id[good]).sum()))
    for col, (dest, column, epoch_ms) in judged.items():
        _note_times(report, col, column, precisions[dest][good], epoch_ms)
    return _build_rows(source, _Parts(frame, good, times, npa_id, division_id, coords.lon, coords.lat, precisions,
                                      origin), report)


def _instants(text: pd.Series, precision: np.ndarray) -> np.ndarray:
    """UTC nanoseconds of timed values (NaT-like minimum where empty, a calendar date, or a local time the
    clocks skip or repeat): text with an offset is an instant, text without one local wall time."""
    out = np.full(len(text), np.iinfo(np.int64).min, dtype=np.int64)
    timed = (precision == "time") & (text != "").to_numpy()
    if not timed.any():
        return out
    values = text[timed]
    offset = values.str.contains(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", regex=True).to_numpy()
    when = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if offset.any():
        given = values[offset].str.replace(r"([+-]\d{2})$", r"\1:00", regex=True)
        when[offset] = pd.to_datetime(given, format="ISO8601", utc=True, errors="coerce")
    if (~offset).any():
        local = pd.to_datetime(values[~offset], format="ISO8601", errors="coerce")
        when[~offset] = local.dt.tz_localize(zone_or_configured(None), ambiguous="NaT",
                                             nonexistent="NaT").dt.tz_convert("UTC")
    ns = when.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out[timed] = np.where(when.isna().to_numpy(), np.iinfo(np.int64).min, ns)
    return out


def _time_order_violations(source: PointSource, frame: pd.DataFrame, times: dict[str, pd.Series],
                           precisions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose timed values in source.time_order go backwards (cleared before received, ...), with the
    reason per row. Calendar dates and empty values are not compared."""
    n = len(frame)
    bad = np.zeros(n, dtype=bool)
    details = np.full(n, "", dtype=object)
    missing = np.iinfo(np.int64).min
    latest = np.full(n, missing, dtype=np.int64)
    latest_col = np.full(n, "", dtype=object)
    for col in source.time_order:
        dest = source.times[col]
        if dest not in times:
            continue
        at = _instants(times[dest], precisions[dest])
        have = at != missing
        earlier = have & (latest != missing) & (at < latest) & ~bad
        if earlier.any():
            raw = frame[col].to_numpy(dtype=object)
            for i in np.flatnonzero(earlier):
                before = frame[latest_col[i]].to_numpy(dtype=object)[i]
                details[i] = (f"{col} {str(raw[i]).strip()!r} is before {latest_col[i]} {str(before).strip()!r}: "
                              f"CAD times must follow {' <= '.join(c for c in source.time_order)}")
            bad |= earlier
        later = have & (at >= latest)
        latest = np.where(later, at, latest)
        latest_col = np.where(later, col, latest_col)
    return bad, details


def _add(counter: dict, key: str, value: int) -> None:
    counter[key] = counter.get(key, 0) + value


_REPORT_ID = r"^(\d{8})-(\d{2})(\d{2})-\d+$"


def _time_from_report_id(ids: pd.Series, text: pd.Series, precision: np.ndarray,
                         day: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Date-only values whose report id `YYYYMMDD-HHMM-NN` names the same day take HHMM as local time."""
    parts = clean.strip(ids).str.extract(_REPORT_ID)
    same_day = (parts[0] == day.str.replace("-", "", regex=False)).fillna(False).to_numpy(dtype=bool)
    hh = pd.to_numeric(parts[1], errors="coerce").to_numpy()
    mm = pd.to_numeric(parts[2], errors="coerce").to_numpy()
    valid_time = (hh >= 0) & (hh <= 23) & (mm >= 0) & (mm <= 59)
    is_date = precision == "date"
    fill = is_date & same_day & valid_time
    filled = day + " " + parts[1].fillna("00") + ":" + parts[2].fillna("00") + ":00"
    precision = np.where(fill, "report_id", precision).astype(object)
    return text.where(~fill, filled), precision


def _note_times(report: LoadReport, col: str, column: clean.TimeOfDay, kept: np.ndarray, epoch_ms: int) -> None:
    """What the load found in a time column, for the report: calendar dates or instants, and how
    many of the rows kept are dates, timed, or timed from their report id."""
    seen = report.notes.setdefault("times", {}).setdefault(col, {"read_as": "", "date": 0, "time": 0, "report_id": 0})
    seen["read_as"] = ("calendar dates in HOTSPOTS_TIMEZONE (no time of day)" if column.calendar_dates
                       else "instants (bare dates in it read as calendar dates)")
    for kind in ("date", "time", "report_id"):
        seen[kind] += int((kept == kind).sum())
    if epoch_ms:
        seen["epoch_ms"] = seen.get("epoch_ms", 0) + epoch_ms


# A batch at least this large relative to the table is loaded with its secondary indexes dropped
# and rebuilt afterwards (in the same transaction): one sorted index build beats a million
# incremental GiST inserts.
BULK_FRACTION = 0.5


def _write(
    engine: Engine, source: PointSource, report: LoadReport, chunks: Iterator[pa.Table], rejects: Rejects, timer: Timer,
    tz: str | None = None,
) -> None:
    """Upsert the clean rows and store the rejects, all in one transaction (local times read in `tz`)."""
    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        conn.exec_driver_sql("SELECT set_config('TimeZone', %s, true)", (zone_or_configured(tz),))
        # Writers to the same table queue here, so the emptiness check below stays true.
        conn.exec_driver_sql(f"LOCK TABLE {source.table} IN SHARE ROW EXCLUSIVE MODE")
        existing = conn.exec_driver_sql(f"SELECT count(*) FROM {source.table}").scalar_one()
        incoming = int(report.rows_read)
        rebuild = _drop_secondary_indexes(conn, source.table) if incoming >= BULK_FRACTION * existing else []
        if existing == 0:
            # Nothing to conflict with (ids are unique within the batch): COPY straight into the table.
            # TRUNCATE of the (empty) table in this transaction lets PostgreSQL with wal_level=minimal
            # skip WAL for the new data and index builds; it is still crash-safe (synced at commit).
            conn.exec_driver_sql(f"TRUNCATE {source.table}")
            # The ids are unique within the batch, so the key can be built once, sorted, at the end.
            rebuild += _drop_primary_key(conn, source.table)
            target = source.table
        else:
            target = "stage_points"
        rows, cols = 0, None
        copy_seconds = []

        def timed_copy(chunk: pa.Table) -> None:
            t0 = time.perf_counter()
            copy_frame(conn, target, chunk)
            copy_seconds.append(time.perf_counter() - t0)

        with ThreadPoolExecutor(max_workers=1) as copier:
            pending = None
            for chunk in chunks:  # built in this thread while the previous chunk is being copied
                chunk = chunk.append_column("batch_id", pa.array(np.full(chunk.num_rows, report.batch_id, dtype=np.int64)))
                if cols is None:
                    cols = chunk.column_names
                    if target == "stage_points":
                        conn.exec_driver_sql(
                            f"CREATE TEMP TABLE stage_points ON COMMIT DROP AS SELECT {', '.join(cols)} "
                            f"FROM {source.table} WITH NO DATA"
                        )
                if pending is not None:
                    pending.result()
                pending = copier.submit(timed_copy, chunk)
                rows += chunk.num_rows
            if pending is not None:
                pending.result()
        report.mark("prepare_and_copy_rows", timer)
        # Of which PostgreSQL spent this long receiving rows (overlapping the building of the next chunk).
        report.notes["copy_seconds_in_postgres"] = round(sum(copy_seconds), 2)
        if target == source.table:
            report.inserted, report.updated = rows, 0
        elif cols is not None:
            report.inserted, report.updated = _upsert(conn, source, cols)
        report.unchanged = rows - report.inserted - report.updated
        report.mark("merge_rows", timer)
        for statement in rebuild:
            conn.exec_driver_sql(statement)
        if rebuild:
            conn.exec_driver_sql(f"ANALYZE {source.table}")
            report.mark("rebuild_indexes", timer)
        store_rejects(conn, report, rejects)
        report.seconds = timer.elapsed
        finish_batch(conn, report)


def _drop_secondary_indexes(conn, table: str) -> list[str]:
    """Drop every index but the primary key; return the statements that recreate them."""
    rows = conn.exec_driver_sql(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i"
        " JOIN pg_class c ON c.relname = i.indexname"
        " JOIN pg_index x ON x.indexrelid = c.oid"
        " WHERE i.schemaname = current_schema() AND i.tablename = %s AND NOT x.indisprimary",
        (table,),
    ).all()
    for name, _ in rows:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
    return [definition for _, definition in rows]


def _drop_primary_key(conn, table: str) -> list[str]:
    """Drop the table's primary key constraint; return the statement that adds it back."""
    name, definition = conn.exec_driver_sql(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (table,),
    ).one()
    conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    return [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}']


def _upsert(conn, source: PointSource, cols: list[str]) -> tuple[int, int]:
    """Merge the staged rows: new ids inserted, changed rows updated, identical ones left alone."""
    _refuse_origin_clash(conn, source)
    return merge_staged(conn, source.table, "stage_points", source.id_field, cols, **_merge_rule(source))


def _refuse_origin_clash(conn, source: PointSource) -> None:
    """IngestError, refusing the whole batch, when a staged row's id is stored with the other origin (a
    generated record with a real report's id, or the reverse): real and synthetic records never replace each other."""
    clash = conn.exec_driver_sql(
        f"SELECT count(*), min(s.{source.id_field}), min(t.data_origin) FROM stage_points s"
        f" JOIN {source.table} t USING ({source.id_field}) WHERE t.data_origin <> s.data_origin").one()
    if clash[0]:
        raise IngestError(
            f"{clash[0]:,} {source.kind} carry ids already stored as {clash[2]} records (e.g. {clash[1]!r}) but are "
            f"{'synthetic' if clash[2] == 'real' else 'real'} here; nothing was loaded: real and synthetic records "
            "must not replace each other (give generated records ids of their own)")


def _merge_rule(source: PointSource) -> dict:
    """When a staged row replaces a stored one (its row hash changed) and what that clears."""
    return {"changed_if": "t.row_hash IS DISTINCT FROM EXCLUDED.row_hash",
            "also_set": [f"{c} = NULL" for c in source.reset_on_change]}


# --- records that arrive in memory (the ArcGIS feed, posted calls) rather than as a file -----------
_AREA_CACHE: dict[tuple, _Areas] = {}
_AREA_CACHE_SIZE = 4
_area_lock = threading.Lock()


def area_indexes(engine: Engine) -> _Areas:
    """The NPA and division indexes records are assigned against; IngestError when none are loaded.

    Built once per database and kept while the divisions' and neighborhoods' data versions stay
    (every write to those tables bumps them): building takes about half a second, which a posted
    batch of calls should not pay each time.
    """
    versions = data_versions(engine)
    key = (engine.url.render_as_string(hide_password=True), versions.get("divisions"), versions.get("neighborhoods"))
    with _area_lock:
        if key in _AREA_CACHE:
            return _AREA_CACHE[key]
    npas, divisions = read_neighborhoods(engine), read_divisions(engine)
    if npas.empty or divisions.empty:
        raise IngestError("no division or NPA polygons loaded: run `hotspots load shapes` first "
                          "(calls and incidents are assigned to them)")
    areas = _Areas(
        npa=AreaIndex(npas.geometry, npas["npa_id"]),
        division=AreaIndex(divisions.geometry, divisions["division_id"]),
        division_codes=dict(zip(divisions["short_name"], divisions["division_id"])),
    )
    with _area_lock:
        _AREA_CACHE[key] = areas
        while len(_AREA_CACHE) > _AREA_CACHE_SIZE:
            del _AREA_CACHE[next(iter(_AREA_CACHE))]
    return areas


def prepare_frame(source: PointSource, frame: pd.DataFrame, lines: np.ndarray, areas: _Areas, report: LoadReport,
                  rejects: Rejects, options: LoadOptions = LoadOptions(),
                  time_columns: dict[str, clean.TimeOfDay] | None = None) -> pa.Table:
    """Clean, reject and assign a frame of source text columns exactly as a batch of a CSV file is
    (its time columns judged on the frame itself, a sync page per page, unless `time_columns`
    gives the verdict)."""
    frame = frame.reset_index(drop=True)
    ids = clean.strip(frame[source.id_column])
    dup, first_line = clean.first_duplicates(ids.where(ids != "", None), lines)
    rows = _prepare_batch(source, frame, lines, dup, first_line, areas, report, rejects, options=options,
                          time_columns=time_columns)
    report.fixes = +report.fixes
    return rows


def upsert_rows(conn, source: PointSource, rows: pa.Table, batch_id: int, tz: str | None = None) -> tuple[int, int]:
    """Stage prepared rows and merge them into the table by row hash: (inserted, updated); local times
    without an offset are read in `tz` (None: the configured zone)."""
    merged = merge_rows(conn, source, rows, batch_id, tz)
    inserted = sum(merged.values())
    return inserted, len(merged) - inserted


def merge_rows(conn, source: PointSource, rows: pa.Table, batch_id: int, tz: str | None = None) -> dict:
    """upsert_rows, saying which rows: id -> True (inserted) or False (updated); unchanged ids are absent."""
    if rows.num_rows == 0:
        return {}
    rows = rows.append_column("batch_id", pa.array(np.full(rows.num_rows, batch_id, dtype=np.int64)))
    cols = rows.column_names
    # Times without an offset are local wall time, read in the configured zone (as in file loads).
    conn.exec_driver_sql("SELECT set_config('TimeZone', %s, true)", (zone_or_configured(tz),))
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE stage_points ON COMMIT DROP AS SELECT {', '.join(cols)} FROM {source.table} WITH NO DATA"
    )
    copy_frame(conn, "stage_points", rows)
    # Nothing new or changed: no INSERT statement, so the table's data version (tile caches) stays put.
    changed = conn.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM stage_points s LEFT JOIN {source.table} t USING ({source.id_field})"
        f" WHERE t.row_hash IS DISTINCT FROM s.row_hash)"
    ).scalar_one()
    if not changed:
        return {}
    _refuse_origin_clash(conn, source)
    return merge_staged_keys(conn, source.table, "stage_points", source.id_field, cols, **_merge_rule(source))
