"""Vectorised cleaning of source columns: ids, dates, coordinates, city names, ZIP codes."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geo.spatial import state_plane_to_lonlat

# Mecklenburg County's municipalities, the values CITY may take once cleaned.
PLACES = ("CHARLOTTE", "CORNELIUS", "DAVIDSON", "HUNTERSVILLE", "MATTHEWS", "MINT HILL", "PINEVILLE")
_CITY_ALIASES = {"CLT": "CHARLOTTE"}

# A generous box around Mecklenburg County (lon/lat); the exact test is against the NPA polygons.
COUNTY_BOX = (-81.10, 34.95, -80.50, 35.56)

EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01")


def strip(series: pd.Series) -> pd.Series:
    """Text with surrounding white space removed; None becomes ''."""
    return series.fillna("").astype(str).str.strip()


def arrow_text(values: pd.Series) -> pa.ChunkedArray | pa.Array:
    """A text column as an Arrow array, white space trimmed, missing as ''."""
    if values.dtype == object:
        arr = pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
    else:
        arr = pc.cast(pa.array(values), pa.large_string())
    return pc.utf8_trim_whitespace(pc.fill_null(arr, ""))


def empty_to_null(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """'' becomes NULL (for COPY, where an unquoted empty field is NULL)."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_WHOLE = r"^[+-]?\d{1,9}(?:\.0*)?$"


def arrow_number(values: pd.Series, whole: bool = False) -> pa.ChunkedArray:
    """Numbers parsed from text; anything that is not a number (or, with whole=True, not a
    whole number that fits an int32) becomes NULL instead of failing the file."""
    text = arrow_text(values)
    ok = pc.match_substring_regex(text, _WHOLE if whole else _NUMBER)
    kept = pc.if_else(ok, text, pa.scalar(None, text.type))
    if whole:
        return pc.cast(pc.cast(kept, pa.float64()), pa.int64())
    return pc.cast(kept, pa.float64())


def normalise_city(values: pd.Series) -> tuple[pd.Series, int]:
    """Upper-case, drop ', NC', map known misspellings to a Mecklenburg place; count changed cells."""
    raw = strip(values)
    codes, uniques = pd.factorize(raw)
    mapping = {}
    for u in uniques:
        key = re.sub(r"\s+", " ", re.sub(r",?\s*N\.?\s*C\.?$", "", u.upper())).strip()
        key = _CITY_ALIASES.get(key, key)
        if key and key not in PLACES:
            close = difflib.get_close_matches(key, PLACES, n=1, cutoff=0.8)
            if close:
                key = close[0]
        mapping[u] = key
    # Map the few distinct values, then expand by code: far cheaper than mapping every row.
    mapped = np.array([mapping[u] for u in uniques] + [""], dtype=object)
    cleaned = pd.Series(mapped[codes], index=raw.index, dtype=object)
    changed = int((cleaned != raw).sum())
    return cleaned, changed


def clean_zip(values: pd.Series) -> tuple[pd.Series, int]:
    """Five-digit ZIP or '' ; returns how many non-empty cells were not a ZIP code.

    ZIP+4 (`28202-1234`, `282021234`) keeps its five digits; a ZIP written as a number by a
    spreadsheet round trip (`28239.0`) is that ZIP.
    """
    raw = strip(values)
    codes, uniques = pd.factorize(raw)
    found = pd.Series(uniques, dtype=object).str.extract(r"^(\d{5})(?:\.0+|-?\d{4})?$", expand=False).fillna("")
    mapped = np.array(list(found) + [""], dtype=object)
    zip5 = pd.Series(mapped[codes], index=raw.index, dtype=object)
    not_zip = int(((raw != "") & (zip5 == "")).sum())
    return zip5, not_zip


@dataclass
class ParsedTimes:
    """Timestamps as text PostgreSQL reads exactly, plus which cells failed and why."""

    text: pd.Series        # '' where empty; '...+00' for UTC values; local wall time otherwise
    bad: np.ndarray        # non-empty but not a date
    implausible: np.ndarray  # a date, but before 1990 or in the future
    bare: np.ndarray = None    # a valid date written without any time of day (`2021-12-27`)
    day: pd.Series = None      # the calendar date as written ('YYYY-MM-DD'), '' where not valid
    epoch_ms: int = 0          # cells that were epoch milliseconds (the ArcGIS API's dates)


# Epoch milliseconds, as the ArcGIS REST API and CSVs flattened from it write dates: 12 or 13
# digits cover 1973..2286 (a 10-digit number could be seconds, and is left to fail as a date).
_EPOCH_MS = r"^-?\d{12,13}(?:\.0+)?$"
DAY_MS = 86_400_000


def epoch_ms_as_text(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Cells holding epoch milliseconds rewritten as the UTC text ArcGIS hub exports carry
    (`YYYY/MM/DD hh:mm:ss+00`); other cells unchanged. Returns the text and the converted mask."""
    is_ms = raw.str.match(_EPOCH_MS).to_numpy(dtype=bool)
    if not is_ms.any():
        return raw, is_ms
    ms = pd.to_numeric(raw[is_ms].str.replace(r"\.0+$", "", regex=True), errors="coerce")
    when = pd.to_datetime(ms, unit="ms", utc=True, errors="coerce")
    text = raw.copy()
    text[is_ms] = when.dt.strftime("%Y/%m/%d %H:%M:%S+00").fillna(raw[is_ms])
    return text, is_ms


# A time of day that is midnight as written: `00:00`, `00:00:00`, `00:00:00.000` (any offset after
# it), or `12:00 AM`. A CMPD export writes every calendar date that way.
_MIDNIGHT = re.compile(r"(?:^|[ T])0?0:00(?::00(?:\.0+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
                       r"|\s12:00(?::00)?\s*[Aa][Mm]$")
_HAS_TIME = r"\d:\d{2}"
_BARE_DATE = r"^(?:\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}/\d{1,2}/\d{4})$"


@dataclass
class TimeOfDay:
    """Whether a column's cells carry a time of day: how many have one that is not midnight."""

    values: int    # non-empty cells
    timed: int     # cells with a time of day other than midnight

    @property
    def calendar_dates(self) -> bool:
        """No cell carries a time of day: the column holds calendar dates, not instants."""
        return self.values > 0 and self.timed == 0


def time_of_day(values: pd.Series) -> TimeOfDay:
    """Judge a date column by its cells (epoch ms included): cheap, for a file's first pass.

    A column in which no value has a time other than midnight (CMPD's `YYYY/MM/DD 00:00:00+00`,
    epoch ms at 00:00 UTC, bare dates) holds calendar dates. One real time anywhere makes it a
    column of instants, in which only bare dates are dates (judged per value).
    """
    raw, _ = epoch_ms_as_text(strip(values))
    nonempty = raw != ""
    has_time = raw.str.contains(_HAS_TIME, regex=True)
    midnight = raw.str.contains(_MIDNIGHT, regex=True)
    return TimeOfDay(values=int(nonempty.sum()), timed=int((nonempty & has_time & ~midnight).sum()))


def as_calendar_dates(parsed: ParsedTimes, column: TimeOfDay) -> tuple[pd.Series, np.ndarray]:
    """The text to store and each value's precision ('time', 'date', or None where empty).

    A date is stored at local midnight of its calendar day (read in HOTSPOTS_TIMEZONE by the
    load's session), never as the instant its UTC midnight would be: 2021/12/27 00:00:00+00 is
    27 December in Charlotte, not 19:00 on the 26th.
    """
    valid = (parsed.text != "").to_numpy()
    as_date = valid & (parsed.bare | column.calendar_dates)
    text = parsed.text.where(~as_date, parsed.day + " 00:00:00")
    precision = np.where(valid, np.where(as_date, "date", "time"), None).astype(object)
    return text, precision


_ISO = re.compile(
    r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_US_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y")


_UTC_SUFFIXES = ["", "+00", "+0000", "+00:00", "Z"]


def _digits(text: pa.Array, start: int, stop: int) -> pa.Array:
    """The integer written at [start, stop) of each string, or -1 where it is not all digits."""
    part = pc.utf8_slice_codeunits(text, start, stop)
    return pc.cast(pc.if_else(pc.utf8_is_digit(part), part, "-1"), pa.int64())


# Years nanoseconds cannot hold (0001, 4227) are implausible anyway: clamped into range, not a crash.
_NS_EARLIEST = pa.scalar(datetime(1678, 1, 1), pa.timestamp("s"))
_NS_LATEST = pa.scalar(datetime(2261, 12, 31), pa.timestamp("s"))


def _ns(values: pd.Series) -> pd.Series:
    """Naive timestamps as datetime64[ns] (for the plausibility check), clamped to what it can hold."""
    return values.clip(lower=pd.Timestamp(_NS_EARLIEST.as_py()), upper=pd.Timestamp(_NS_LATEST.as_py())).astype(
        "datetime64[ns]")


def _fast_times(raw: pd.Series) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """Vectorised path for the two forms exports use almost always (ISO local, ArcGIS UTC).

    A value is accepted when its parsed month and day equal the digits written, which rejects
    impossible dates (Arrow's parser rolls 2021-02-30 over to March). Returns the valid rows, their text for
    PostgreSQL and their wall-clock value (for plausibility checks).
    """
    arr = pa.array(raw.to_numpy(dtype=object), type=pa.string())
    head = pc.replace_substring(pc.replace_substring(pc.utf8_slice_codeunits(arr, 0, 19), "/", "-"), "T", " ")
    tail = pc.utf8_slice_codeunits(arr, 19, 32)
    parsed = pc.strptime(head, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    same = pc.and_(pc.equal(pc.month(parsed), _digits(head, 5, 7)), pc.equal(pc.day(parsed), _digits(head, 8, 10)))
    shaped = pc.equal(pc.utf8_length(head), 19)
    valid = pc.and_(pc.and_(pc.fill_null(same, False), shaped), pc.is_in(tail, value_set=pa.array(_UTC_SUFFIXES)))
    utc = pc.not_equal(tail, "")
    text = pc.if_else(utc, pc.binary_join_element_wise(head, "+00", ""), head)
    valid_np = np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
    inside = pc.max_element_wise(pc.min_element_wise(parsed, _NS_LATEST, skip_nulls=False), _NS_EARLIEST, skip_nulls=False)
    when = np.asarray(pc.cast(inside, pa.timestamp("ns")).to_numpy(zero_copy_only=False), dtype="datetime64[ns]")
    return valid_np, pd.Series(text.to_numpy(zero_copy_only=False), index=raw.index, dtype=object), when


def parse_times(values: pd.Series, now: pd.Timestamp | None = None) -> ParsedTimes:
    """Parse ISO (`2021-03-14 22:17:00`), ArcGIS (`2021/03/14 22:17:00+00`), US (`3/14/2021 10:17 PM`)
    and epoch-millisecond (`1615760220000`, the ArcGIS API's own form, UTC) times.

    Values with an offset are instants (ArcGIS hub exports are UTC); values without one are local
    wall time, which PostgreSQL localises with the session time zone during the load.
    """
    raw, is_ms = epoch_ms_as_text(strip(values))
    n = len(raw)
    empty = (raw == "").to_numpy()
    fast_valid, fast_text, fast_when = _fast_times(raw)
    text = fast_text.where(fast_valid, "")
    ok = fast_valid.copy()
    when = pd.Series(np.where(fast_valid, fast_when, np.datetime64("NaT")), index=raw.index, dtype="datetime64[ns]")

    # Everything else (rare in practice) goes through the slower, more forgiving parsers.
    slow = ~fast_valid & ~empty
    iso_mask = np.zeros(n, dtype=bool)
    if slow.any():
        iso_mask[slow] = raw[slow].str.match(_ISO).to_numpy()
    if iso_mask.any():
        iso = raw[iso_mask].str.replace("/", "-", regex=False)
        # An offset only counts after a time of day ('2021-03-14' ends in '-14', which is the day).
        has_offset = iso.str.contains(r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", regex=True)
        iso = iso.where(~has_offset, iso.str.replace(r"\s+(?=(?:Z|[+-]\d{2}(?::?\d{2})?)$)", "", regex=True))
        # Pad a bare '+00' to '+00:00' so pandas and PostgreSQL read it the same way.
        padded = iso.where(~has_offset, iso.str.replace(r"([+-]\d{2})$", r"\1:00", regex=True))
        local = padded[~has_offset]
        parsed_local = pd.to_datetime(local, format="ISO8601", errors="coerce")
        parsed_off = pd.to_datetime(padded[has_offset], format="ISO8601", errors="coerce", utc=True)
        good_local = parsed_local.notna()
        # PostgreSQL takes offsets up to 15:59 (real ones reach 14:00); beyond that the value is no date it can store.
        offset_hours = pd.to_numeric(padded[has_offset].str.extract(r"[+-](\d{2}):?\d{0,2}$", expand=False),
                                     errors="coerce")
        good_off = parsed_off.notna() & ~(offset_hours > 15)
        text.loc[local.index[good_local]] = local[good_local].str.replace("T", " ", regex=False)
        text.loc[parsed_off.index[good_off]] = padded[has_offset][good_off].str.replace("T", " ", regex=False)
        when.loc[parsed_local.index[good_local]] = _ns(parsed_local[good_local])
        when.loc[parsed_off.index[good_off]] = _ns(parsed_off[good_off].dt.tz_localize(None))
        ok[raw.index.get_indexer(local.index[good_local])] = True
        ok[raw.index.get_indexer(parsed_off.index[good_off])] = True

    rest = slow & ~ok & ~iso_mask
    for fmt in _US_FORMATS:
        if not rest.any():
            break
        parsed = pd.to_datetime(raw[rest], format=fmt, errors="coerce")
        good = parsed.notna()
        idx = parsed.index[good]
        text.loc[idx] = parsed[good].dt.strftime("%Y-%m-%d %H:%M:%S")
        when.loc[idx] = _ns(parsed[good])
        pos = raw.index.get_indexer(idx)
        ok[pos] = True
        rest[pos] = False

    bad = ~ok & ~empty
    now = now or pd.Timestamp.now()
    w = when.to_numpy()
    implausible = ok & ((w < EARLIEST_PLAUSIBLE.to_datetime64()) | (w > (now + pd.Timedelta(days=1)).to_datetime64()))
    text = text.where(~implausible, "")
    valid = (text != "").to_numpy()
    bare = valid & raw.str.match(_BARE_DATE).to_numpy(dtype=bool)
    # The calendar date as written (for a value with an offset, the date in that offset).
    written = text.str.slice(0, 10)
    padded = written.str.match(r"^\d{4}-\d{2}-\d{2}$").to_numpy(dtype=bool)
    day = pd.Series(np.where(padded, written, when.dt.strftime("%Y-%m-%d").fillna("")), index=raw.index, dtype=object)
    day = day.where(valid, "")
    return ParsedTimes(text=text, bad=bad, implausible=implausible, bare=bare, day=day, epoch_ms=int(is_ms.sum()))


@dataclass
class Coordinates:
    """WGS84 lon/lat per row (NaN where unknown) and counts of what was repaired."""

    lon: np.ndarray
    lat: np.ndarray
    from_state_plane: int
    swapped: int
    from_geometry: int = 0
    unusable_lat_lon: int = 0   # latitude/longitude present but junk, replaced from X/Y or geometry
    placeholders: int = 0       # the State Plane origin standing for "no location": unknown


def _to_float(values: pd.Series) -> np.ndarray:
    # A writable float array, NaN where the cell is not a number.
    return np.array(pc.fill_null(arrow_number(values), np.nan).to_numpy(zero_copy_only=False), dtype=float)


# Where State Plane (0, 0) lands in lon/lat, in Alabama: CMPD's records without a location carry
# it (the homicide layer's five unplaced victims). It means "unknown", never a point.
PLACEHOLDER_LONLAT = (-85.5683, 33.5682)
_PLACEHOLDER_TOLERANCE_DEG = 0.01


def is_placeholder(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """True where a point is the State Plane origin placeholder."""
    return ((np.abs(lon - PLACEHOLDER_LONLAT[0]) < _PLACEHOLDER_TOLERANCE_DEG)
            & (np.abs(lat - PLACEHOLDER_LONLAT[1]) < _PLACEHOLDER_TOLERANCE_DEG))


def _usable(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A point worth trusting: finite, in the county's box, not degenerate (latitude = longitude,
    a junk latitude CMPD publishes) and not the placeholder."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(lon) & np.isfinite(lat) & in_box(lon, lat) & (lon != lat) & ~is_placeholder(lon, lat))


def coordinates(lat: pd.Series | None, lon: pd.Series | None, x: pd.Series | None, y: pd.Series | None,
                geometry_lon: pd.Series | None = None, geometry_lat: pd.Series | None = None) -> Coordinates:
    """Lon/lat from LATITUDE/LONGITUDE (repaired when swapped), else State Plane X/Y (EPSG:2264), else
    the record's geometry.

    Latitude/longitude that are junk (out of the county's range, or latitude = longitude) fall
    back to X/Y, then to the geometry; when neither gives a usable point the values are kept as
    given, so the row is rejected naming them. The State Plane origin placeholder is unknown.
    """
    n = len(next(s for s in (lat, lon, x, y, geometry_lon, geometry_lat) if s is not None))
    la = _to_float(lat) if lat is not None else np.full(n, np.nan)
    lo = _to_float(lon) if lon is not None else np.full(n, np.nan)
    # 0 is how many exports spell "unknown".
    la[la == 0] = np.nan
    lo[lo == 0] = np.nan
    swapped = (la < -60) & (lo > 20) & (lo < 50)  # e.g. lat=-80.8, lon=35.2
    la[swapped], lo[swapped] = lo[swapped].copy(), la[swapped].copy()
    placeholders = is_placeholder(lo, la)
    la[placeholders] = lo[placeholders] = np.nan
    given = np.isfinite(la) & np.isfinite(lo)
    ok = _usable(lo, la)
    from_sp = np.zeros(n, dtype=bool)
    if x is not None and y is not None:
        xs = _to_float(x)
        ys = _to_float(y)
        try_sp = ~ok & np.isfinite(xs) & np.isfinite(ys) & (xs != 0) & (ys != 0)
        if try_sp.any():
            plo, pla = state_plane_to_lonlat(xs[try_sp], ys[try_sp])
            # Taken when it is a usable point, or when latitude/longitude gave nothing at all.
            take = _usable(plo, pla) | ~given[try_sp]
            idx = np.flatnonzero(try_sp)[take]
            lo[idx], la[idx] = plo[take], pla[take]
            from_sp[idx] = True
            ok = _usable(lo, la)
    from_geom = np.zeros(n, dtype=bool)
    if geometry_lon is not None and geometry_lat is not None:
        glo, gla = _to_float(geometry_lon), _to_float(geometry_lat)
        geom_ok = _usable(glo, gla)
        placeholders |= ~ok & is_placeholder(glo, gla) & ~np.isfinite(lo)
        take = ~ok & geom_ok
        lo[take], la[take] = glo[take], gla[take]
        from_geom = take
        from_sp &= ~take
    return Coordinates(lon=lo, lat=la, from_state_plane=int(from_sp.sum()), swapped=int(swapped.sum()),
                       from_geometry=int(from_geom.sum()), unusable_lat_lon=int((given & (from_sp | from_geom)).sum()),
                       placeholders=int(placeholders.sum()))


def in_box(lon: np.ndarray, lat: np.ndarray, box: tuple[float, float, float, float] = COUNTY_BOX) -> np.ndarray:
    """True where the point lies in the lon/lat box."""
    return (lon >= box[0]) & (lat >= box[1]) & (lon <= box[2]) & (lat <= box[3])


def first_duplicates(ids: pd.Series, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask of repeated ids (every occurrence after the first) and the first occurrence's line.

    Null ids (rows already rejected) take no part: a later copy of a rejected row can still load.
    """
    valid = ids.notna().to_numpy()
    dup = np.zeros(len(ids), dtype=bool)
    first_line = np.full(len(ids), -1, dtype=np.int64)
    sub = ids[valid]
    dup[valid] = sub.duplicated(keep="first").to_numpy()
    if dup.any():  # the line lookup costs a group-by: only when there is something to report
        first_line[valid] = pd.Series(lines[valid]).groupby(sub.to_numpy()).transform("min").to_numpy(dtype=np.int64)
    return dup, first_line


def division_code(values: pd.Series, short_names: dict[str, str]) -> np.ndarray:
    """A source division given as code ('1', '01') or name ('North Tryon', 'NORTH TRYON DIVISION') -> code.

    '' where the cell is empty, '?' where it names no known division.
    """
    codes_of_rows, uniques = pd.factorize(strip(values))
    by_name = {name.upper(): code for name, code in short_names.items()}
    by_name.update({f"{name.upper()} DIVISION": code for name, code in short_names.items()})
    codes = set(short_names.values())
    mapped = []
    for u in uniques:
        if u == "":
            mapped.append("")
        elif u.isdigit() and u.zfill(2) in codes:
            mapped.append(u.zfill(2))
        else:
            mapped.append(by_name.get(re.sub(r"\s+", " ", u.upper()), "?"))
    return np.array(mapped + [""], dtype=object)[codes_of_rows]
