"""Reading a saved ArcGIS query answer (`f=json`) or GeoJSON FeatureCollection as a point-record source.

The file is read whole, checked, and turned into the text frame a CSV of the layer gives by the
same conversion the sync uses (geo/ingest/pages.py). A row's "line" is the feature's 1-based
position in the file's `features` array; its raw text is the feature's JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from geo.ingest.batch import IngestError
from geo.ingest.pages import FeatureRejects, PageError, read_page, source_frame

if TYPE_CHECKING:   # points.py dispatches JSON files here
    from geo.ingest.points import PointSource

JSON_SUFFIXES = (".json", ".geojson", ".pjson")
NOT_FEATURES = "not an ArcGIS query answer or GeoJSON FeatureCollection"
PARTIAL_PAGE = ("the answer says the layer holds more records (exceededTransferLimit): this file is one page; "
                "query with resultOffset for the rest")


def is_feature_file(path: Path) -> bool:
    """Whether `path` is to be read as JSON: by its name, or because its text starts with '{' or '['."""
    path = Path(path)
    if path.suffix.lower() in JSON_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        head = fh.read(4096)
    # A CSV's first line is a header of names; no header starts with a bracket.
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"[")


@dataclass
class FeatureFile:
    """A feature file read as source text columns, aligned with each row's feature position and JSON."""

    frame: pd.DataFrame          # the layout's columns as text (as a CSV of the layer holds them)
    lines: np.ndarray            # each row's 1-based position in the features array
    raw: list[str]               # each row's feature JSON
    rows_read: int               # entries of the features array, malformed ones included
    fmt: str                     # 'json' (Esri) or 'geojson'
    malformed: list[tuple[int, str, str]] = field(default_factory=list)   # (position, raw, detail)
    notes: dict[str, str] = field(default_factory=dict)

    def rejects(self) -> FeatureRejects:
        """Rejects keyed by feature position, holding the entries that are not features."""
        raw = dict(zip(self.lines.tolist(), self.raw))
        raw.update({line: text for line, text, _ in self.malformed})
        rejects = FeatureRejects(raw, "at feature")
        rejects.add_malformed(self.malformed)
        return rejects


def read_feature_file(path: Path, source: PointSource) -> FeatureFile:
    """Read a feature file for `source`; IngestError naming the problem when it is not one or lacks fields."""
    path = Path(path)
    data = _parse(path)
    if not isinstance(data, dict):
        raise IngestError(f"{path}: {NOT_FEATURES}: the file holds a JSON {_kind(data)}, not an object")
    if "error" in data and "features" not in data:
        error = data["error"] if isinstance(data["error"], dict) else {"message": data["error"]}
        raise IngestError(f"{path}: an ArcGIS error answer, not features (code {error.get('code')}: "
                          f"{error.get('message', '')})")
    features = data.get("features")
    if not isinstance(features, list):
        found = ", ".join(list(map(str, data))[:12]) or "none"
        raise IngestError(f"{path}: {NOT_FEATURES}: no 'features' array (top-level keys: {found})")
    fmt = _format(path, data, features)
    try:
        page = read_page(data, fmt)
    except PageError as exc:
        raise IngestError(f"{path}: {exc}") from None
    _check_fields(path, source, data, fmt, page.records)
    frame = source_frame(source, page)
    keep = np.array([i not in page.malformed for i in range(len(features))], dtype=bool)
    lines = np.flatnonzero(keep).astype(np.int64) + 1
    out = FeatureFile(
        frame=frame[keep].reset_index(drop=True), lines=lines, raw=[page.raw[i - 1] for i in lines],
        rows_read=len(features), fmt=fmt,
        malformed=[(i + 1, page.raw[i], f"feature {i + 1} is {detail}") for i, detail in sorted(page.malformed.items())],
    )
    if page.more:
        out.notes["partial_page"] = PARTIAL_PAGE
    return out


def _parse(path: Path) -> object:
    """The file's JSON value; IngestError saying why it is not JSON."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    data = path.read_bytes()
    if data.startswith(b"\x1f\x8b"):
        raise IngestError(f"{path}: the file is gzip-compressed, not JSON; decompress it first (gunzip)")
    if not data.strip():
        raise IngestError(f"{path}: the file is empty")
    try:
        # Bytes: json detects UTF-8/16/32 and skips a byte-order mark.
        return json.loads(data)
    except json.JSONDecodeError as exc:
        # An unterminated string runs to the end of the text, as does an error at its very end.
        cut = exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")
        raise IngestError(f"{path}: not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}"
                          + ("; the file ends early: cut off?" if cut else "") + ")") from None
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not JSON text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                          "is not UTF-8)") from None
    except RecursionError:
        raise IngestError(f"{path}: the JSON is nested too deeply to be a feature file") from None


def _kind(value: object) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def _format(path: Path, data: dict, features: list) -> str:
    """'geojson' or 'json' (Esri), from the answer's own members, else from what its features hold."""
    if data.get("type") == "FeatureCollection":
        return "geojson"
    if any(k in data for k in ("fields", "spatialReference", "geometryType", "objectIdFieldName")):
        return "json"
    for f in features:
        if isinstance(f, dict) and "attributes" in f:
            return "json"
        if isinstance(f, dict) and ("properties" in f or f.get("type") == "Feature"):
            return "geojson"
    what = "its features array is empty" if not features else "its features hold neither 'attributes' nor 'properties'"
    raise IngestError(f"{path}: {NOT_FEATURES}: {what} and nothing else says which it is")


def _check_fields(path: Path, source: PointSource, data: dict, fmt: str, records: list[dict]) -> None:
    """IngestError naming the required fields no feature carries (and, for Esri JSON, `fields` lacks)."""
    declared = [str(f.get("name", "")).upper() for f in data.get("fields") or [] if isinstance(f, dict)]
    duplicated = sorted({n for n in declared if declared.count(n) > 1})
    if duplicated:
        raise IngestError(f"{path}: duplicate field name(s) in 'fields': {', '.join(duplicated)}")
    present = set(declared).union(*(r.keys() for r in records)) - {"__OID__"}
    missing = [c for c in source.required_columns if c not in present]
    if missing:
        where = ("the answer's 'fields' and every feature's attributes" if fmt == "json"
                 else "every feature's properties")
        found = ", ".join(sorted(present)) or "none" + (" (the file holds no features)" if not records else "")
        raise IngestError(f"{path}: missing field(s) {', '.join(missing)}: absent from {where}; found {found}. "
                          f"Expected at least: {', '.join(source.required_columns)}")
