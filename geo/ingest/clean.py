"""Vectorised cleaning of source columns: ids, dates, coordinates, city names, ZIP codes."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

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
# Same box in EPSG:2264 feet, to tell State Plane X/Y from junk before projecting.
STATE_PLANE_BOX = (1_350_000.0, 440_000.0, 1_560_000.0, 660_000.0)

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
    """Five-digit ZIP or '' ; returns how many non-empty cells were not a ZIP code."""
    raw = strip(values)
    codes, uniques = pd.factorize(raw)
    found = pd.Series(uniques, dtype=object).str.extract(r"^(\d{5})(?:-?\d{4})?$", expand=False).fillna("")
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


_ISO = re.compile(
    r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_US_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y")


_UTC_SUFFIXES = ["", "+00", "+0000", "+00:00", "Z"]


def _digits(text: pa.Array, start: int, stop: int) -> pa.Array:
    """The integer written at [start, stop) of each string, or -1 where it is not all digits."""
    part = pc.utf8_slice_codeunits(text, start, stop)
    return pc.cast(pc.if_else(pc.utf8_is_digit(part), part, "-1"), pa.int64())


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
    when = np.asarray(pc.cast(parsed, pa.timestamp("ns")).to_numpy(zero_copy_only=False), dtype="datetime64[ns]")
    return valid_np, pd.Series(text.to_numpy(zero_copy_only=False), index=raw.index, dtype=object), when


def parse_times(values: pd.Series, now: pd.Timestamp | None = None) -> ParsedTimes:
    """Parse ISO (`2021-03-14 22:17:00`), ArcGIS (`2021/03/14 22:17:00+00`) and US (`3/14/2021 10:17 PM`) times.

    Values with an offset are instants (ArcGIS hub exports are UTC); values without one are local
    wall time, which PostgreSQL localises with the session time zone during the load.
    """
    raw = strip(values)
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
        good_off = parsed_off.notna()
        text.loc[local.index[good_local]] = local[good_local].str.replace("T", " ", regex=False)
        text.loc[parsed_off.index[good_off]] = padded[has_offset][good_off].str.replace("T", " ", regex=False)
        when.loc[parsed_local.index[good_local]] = parsed_local[good_local].astype("datetime64[ns]")
        when.loc[parsed_off.index[good_off]] = parsed_off[good_off].dt.tz_localize(None).astype("datetime64[ns]")
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
        when.loc[idx] = parsed[good].astype("datetime64[ns]")
        pos = raw.index.get_indexer(idx)
        ok[pos] = True
        rest[pos] = False

    bad = ~ok & ~empty
    now = now or pd.Timestamp.now()
    w = when.to_numpy()
    implausible = ok & ((w < EARLIEST_PLAUSIBLE.to_datetime64()) | (w > (now + pd.Timedelta(days=1)).to_datetime64()))
    text = text.where(~implausible, "")
    return ParsedTimes(text=text, bad=bad, implausible=implausible)


@dataclass
class Coordinates:
    """WGS84 lon/lat per row (NaN where unknown) and counts of what was repaired."""

    lon: np.ndarray
    lat: np.ndarray
    from_state_plane: int
    swapped: int


def _to_float(values: pd.Series) -> np.ndarray:
    # A writable float array, NaN where the cell is not a number.
    return np.array(pc.fill_null(arrow_number(values), np.nan).to_numpy(zero_copy_only=False), dtype=float)


def coordinates(lat: pd.Series | None, lon: pd.Series | None, x: pd.Series | None, y: pd.Series | None) -> Coordinates:
    """Lon/lat from LATITUDE/LONGITUDE, repaired when swapped, else from State Plane X/Y (EPSG:2264)."""
    n = len(next(s for s in (lat, lon, x, y) if s is not None))
    la = _to_float(lat) if lat is not None else np.full(n, np.nan)
    lo = _to_float(lon) if lon is not None else np.full(n, np.nan)
    # 0 is how many exports spell "unknown".
    la[la == 0] = np.nan
    lo[lo == 0] = np.nan
    swapped = (la < -60) & (lo > 20) & (lo < 50)  # e.g. lat=-80.8, lon=35.2
    la[swapped], lo[swapped] = lo[swapped].copy(), la[swapped].copy()
    have = np.isfinite(la) & np.isfinite(lo)
    from_sp = 0
    if x is not None and y is not None:
        xs = _to_float(x)
        ys = _to_float(y)
        use = ~have & np.isfinite(xs) & np.isfinite(ys) & (xs != 0) & (ys != 0)
        if use.any():
            plo, pla = state_plane_to_lonlat(xs[use], ys[use])
            lo[use], la[use] = plo, pla
            from_sp = int(use.sum())
    return Coordinates(lon=lo, lat=la, from_state_plane=from_sp, swapped=int(swapped.sum()))


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
