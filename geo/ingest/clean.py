"""Vectorised cleaning of source columns: ids, dates, coordinates, city names, ZIP codes."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def normalise_city(values: pd.Series) -> tuple[pd.Series, int]:
    """Upper-case, drop ', NC', map known misspellings to a Mecklenburg place; count changed cells."""
    raw = strip(values)
    uniques = raw.unique()
    mapping = {}
    for u in uniques:
        key = re.sub(r"\s+", " ", re.sub(r",?\s*N\.?\s*C\.?$", "", u.upper())).strip()
        key = _CITY_ALIASES.get(key, key)
        if key and key not in PLACES:
            close = difflib.get_close_matches(key, PLACES, n=1, cutoff=0.8)
            if close:
                key = close[0]
        mapping[u] = key
    cleaned = raw.map(mapping)
    changed = int((cleaned != raw).sum())
    return cleaned, changed


def clean_zip(values: pd.Series) -> tuple[pd.Series, int]:
    """Five-digit ZIP or '' ; returns how many non-empty cells were not a ZIP code."""
    raw = strip(values)
    zip5 = raw.str.extract(r"^(\d{5})(?:-?\d{4})?$", expand=False).fillna("")
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


def parse_times(values: pd.Series, now: pd.Timestamp | None = None) -> ParsedTimes:
    """Parse ISO (`2021-03-14 22:17:00`), ArcGIS (`2021/03/14 22:17:00+00`) and US (`3/14/2021 10:17 PM`) times.

    Values with an offset are instants (ArcGIS hub exports are UTC); values without one are local
    wall time, which PostgreSQL localises with the session time zone during the load.
    """
    raw = strip(values)
    n = len(raw)
    text = pd.Series([""] * n, index=raw.index, dtype=object)
    ok = np.zeros(n, dtype=bool)
    empty = (raw == "").to_numpy()
    when = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")

    iso_mask = raw.str.match(_ISO).to_numpy() & ~empty
    if iso_mask.any():
        iso = raw[iso_mask].str.replace("/", "-", regex=False).str.replace(r"\s+(?=[Z+-]\d{0,2}$)", "", regex=True)
        has_offset = iso.str.contains(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", regex=True)
        # Pad a bare '+00' to '+00:00' so pandas and PostgreSQL read it the same way.
        padded = iso.str.replace(r"([+-]\d{2})$", r"\1:00", regex=True)
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

    rest = ~ok & ~empty & ~iso_mask
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
    return np.array(pd.to_numeric(strip(values), errors="coerce"), dtype=float)  # a writable copy


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
    first_line[valid] = pd.Series(lines[valid]).groupby(sub.to_numpy()).transform("min").to_numpy(dtype=np.int64)
    return dup, first_line


def division_code(values: pd.Series, short_names: dict[str, str]) -> pd.Series:
    """A source division given as code ('1', '01') or name ('North Tryon', 'NORTH TRYON DIVISION') -> code."""
    raw = strip(values)
    by_name = {name.upper(): code for name, code in short_names.items()}
    by_name.update({f"{name.upper()} DIVISION": code for name, code in short_names.items()})
    codes = set(short_names.values())
    mapping = {}
    for u in raw.unique():
        if u == "":
            mapping[u] = ""
        elif u.isdigit() and u.zfill(2) in codes:
            mapping[u] = u.zfill(2)
        else:
            mapping[u] = by_name.get(re.sub(r"\s+", " ", u.upper()), "?")
    return raw.map(mapping)
