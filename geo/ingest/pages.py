"""An ArcGIS REST query answer (Esri JSON) or a GeoJSON FeatureCollection as the text frame a CSV gives.

Both ways such an answer arrives go through here: `hotspots sync` reads it page by page from a
layer (geo/ingest/arcgis.py), `hotspots load incidents|calls FILE.json` reads one saved in a file
(geo/ingest/jsonfile.py). Attribute names are upper-cased, epoch-millisecond dates become the
hub's `YYYY/MM/DD hh:mm:ss+00` text, and the feature's geometry fills coordinate fields the
attributes leave empty, so the frame goes through the CSV loaders' cleaning unchanged and the
same record hashes the same whichever way it came.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from geo.ingest.batch import Rejects

if TYPE_CHECKING:   # points.py imports the file reader that imports this module
    from geo.ingest.points import PointSource

# Spatial references whose x/y are NC State Plane feet (EPSG:2264 and Esri's 102719 for the same).
STATE_PLANE_WKIDS = frozenset({2264, 102719})
LONLAT_WKIDS = frozenset({4326})


class PageError(ValueError):
    """The answer is not a feature page the loaders can read; the message says what is wrong."""


@dataclass
class Page:
    """One query answer, as records of upper-case attributes plus their point."""

    offset: int
    records: list[dict[str, Any]]        # attributes, upper-case names
    points: list[tuple[float, float] | None]
    state_plane: bool                    # points are EPSG:2264 feet, not lon/lat
    more: bool                           # the server says records remain (exceededTransferLimit)
    raw: list[str]                       # each record's JSON as received (for ingest_rejects.raw)
    malformed: dict[int, str] = field(default_factory=dict)   # position -> why that entry is no feature


def read_page(data: dict, fmt: str, offset: int = 0) -> Page:
    """A Page from an Esri JSON (`fmt='json'`) or GeoJSON answer; PageError when it holds no feature list.

    An entry of the features array that is not a feature (not an object, or its attributes are
    not an object) becomes an empty record listed in `malformed`.
    """
    features = data.get("features")
    if not isinstance(features, list):
        raise PageError("the GeoJSON answer has no features array" if fmt == "geojson" else
                        "the Esri JSON answer has no features array (is this a feature layer's /query?)")
    if fmt == "geojson":
        wkid, key = _geojson_srid(data), "properties"
        more = data.get("exceededTransferLimit") or (_dict(data.get("properties")) or {}).get("exceededTransferLimit")
    else:
        sr = _dict(data.get("spatialReference")) or {}
        wkid, key = sr.get("latestWkid") or sr.get("wkid"), "attributes"
        more = data.get("exceededTransferLimit")
    if wkid not in (None, *LONLAT_WKIDS, *STATE_PLANE_WKIDS):
        raise PageError(f"points come in spatial reference {wkid}; expected 4326 (longitude/latitude; "
                        "the sync asks for outSR=4326) or NC State Plane feet (2264, 102719)")
    oid_name = str(data.get("objectIdFieldName") or "").upper()
    page = Page(offset, [], [], wkid in STATE_PLANE_WKIDS, bool(more), [])
    for position, f in enumerate(features):
        page.raw.append(json.dumps(f, separators=(",", ":"), default=str))
        feature = _dict(f)
        values = (feature or {}).get(key) or {}
        if feature is None or not isinstance(values, dict):
            what = type(f).__name__ if feature is None else f"its {key} are a {type(values).__name__}"
            page.malformed[position] = f"not a feature: {what}, expected a JSON object with {key}"
            page.records.append({})
            page.points.append(None)
            continue
        record = {str(k).upper(): v for k, v in values.items()}
        if fmt == "geojson" and feature.get("id") is not None:
            record.setdefault("__OID__", feature["id"])
        elif oid_name and oid_name in record:
            record.setdefault("__OID__", record[oid_name])
        page.records.append(record)
        geom = _dict(feature.get("geometry")) or {}
        xy = geom.get("coordinates", [])[:2] if fmt == "geojson" and isinstance(geom.get("coordinates"), list) else \
            [geom.get("x"), geom.get("y")]
        page.points.append(tuple(xy) if len(xy) == 2 and all(_number(v) for v in xy) else None)
    return page


def _dict(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_CRS_CODE = re.compile(r"(\d+)\s*$")


def _geojson_srid(data: dict) -> int | None:
    """The EPSG code of a GeoJSON 2008 `crs` member (None when absent: RFC 7946 GeoJSON is WGS84)."""
    crs = _dict(data.get("crs"))
    if crs is None:
        return None
    name = str((_dict(crs.get("properties")) or {}).get("name") or "")
    if name.upper().endswith("CRS84"):
        return 4326
    m = _CRS_CODE.search(name)
    if not m:
        raise PageError(f"points come in spatial reference {name or crs!r}, which names no EPSG code; "
                        "expected 4326 (longitude/latitude) or NC State Plane feet (2264, 102719)")
    return int(m.group(1))


def _columns(source: PointSource) -> list[str]:
    """The layout's columns in a fixed order: the row hash of a record must not depend on the answer's field order."""
    names = [source.id_column, *source.text, *source.floats, *source.integers, *source.times, *source.required_text,
             *(c for c in (source.lat, source.lon, source.x, source.y) if c)]
    return list(dict.fromkeys(names))


def _cell(value: Any, is_time: bool) -> str:
    """A field value as the text a CSV export holds (dates: epoch milliseconds -> the hub's UTC form)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if is_time and isinstance(value, (int, float)) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value / 1000, timezone.utc).strftime("%Y/%m/%d %H:%M:%S+00")
        except (OverflowError, OSError, ValueError):
            return str(value)   # rejected as bad_date, with the value shown
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))   # 123.0 in JSON is the 123 a CSV export writes
    return str(value)


def source_frame(source: PointSource, page: Page) -> pd.DataFrame:
    """The page's records as the text frame the CSV loaders read (the layout's columns, one row per record)."""
    cols = _columns(source)
    times = set(source.times)
    rows = [[_cell(r.get(c), c in times) for c in cols] for r in page.records]
    frame = pd.DataFrame(rows, columns=cols, dtype=object)
    # The layer's geometry stands in for coordinate fields the attributes leave empty.
    lon_lat = (source.lon, source.lat) if not page.state_plane else (source.x, source.y)
    texts = [np.array([("" if p is None else repr(float(p[axis]))) for p in page.points], dtype=object)
             for axis in (0, 1)]
    if all(lon_lat) and len(frame):
        for axis, col in enumerate(lon_lat):
            empty = frame[col].str.strip().isin(["", "0", "0.0"])
            frame.loc[empty, col] = texts[axis][empty.to_numpy()]
    # And, as the source's geometry columns, for latitude/longitude that are there but junk
    # (clean.coordinates falls back to X/Y, then to these).
    geometry = (source.geometry_lon, source.geometry_lat)
    if all(geometry) and not page.state_plane:
        for axis, col in enumerate(geometry):
            frame[col] = texts[axis]
    return frame


class FeatureRejects(Rejects):
    """Rejects whose 'line' names a feature (its object id, or its position in a file) and whose
    raw text is the feature's JSON."""

    def __init__(self, raw_by_line: dict[int, str], line_words: str):
        super().__init__()
        self.raw_by_line = raw_by_line
        self.line_words = line_words   # replaces "at line" in details, e.g. "with OBJECTID", "at feature"

    def frame(self) -> pd.DataFrame:
        """All rejects with the feature's JSON as raw text and their 'line' named as what it is."""
        out = super().frame().copy()
        if len(out):
            out["raw"] = [self.raw_by_line.get(int(line), raw) for line, raw in zip(out["line"], out["raw"])]
            out["detail"] = out["detail"].str.replace(" at line ", f" {self.line_words} ", regex=False)
        return out
