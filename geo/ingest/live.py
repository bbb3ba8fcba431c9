"""Live ingest of calls posted to the API: a posted batch is loaded as a page of a calls CSV.

What is particular to a JSON body is done here: the body's shape (`{"calls": [...]}`, a bare
array, a GeoJSON FeatureCollection), the size limits, text PostgreSQL cannot store, and the
schema of a posted call (each field's JSON type, length, the priority's range, the ZIP's form,
received_at as an RFC 3339 date-time or full-date). A row that breaks it is rejected naming the
field (`bad_value`, `bad_date`, `malformed_row`). Every other row becomes the row a calls CSV
(geo/ingest/calls.py) holds, with the columns of `COLUMNS` in that order, and goes through the
file loader's own path (geo/ingest/points.py `prepare_frame` and `merge_rows`): the same
cleaning, reject reasons, DST handling (PostgreSQL reads local times in HOTSPOTS_TIMEZONE),
calendar dates, areas, taxonomy and row hash, so a call posted and the same call loaded from such
a CSV are the same stored row and the second is "unchanged". The one difference: a posted
date-time is an instant even at midnight (RFC 3339 says so), a full-date is a calendar date.

A batch is one transaction: an ingest_batches row of kind 'calls_api', the new and changed
calls, their labels (geo.classify.label_selected with the current model, as `hotspots label`
writes them), and every bad row in ingest_rejects with its reason and raw JSON, so nothing posted
is lost. A call_id already stored is treated like a row of a reloaded file: replaced and scored
again when its row hash changed ("updated"), left alone when identical ("unchanged"), so a client
may resend a batch after a timeout and a CAD system may post a corrected call under the same id.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo.ingest import clean
from geo.ingest.batch import IngestError, LoadReport, finish_batch, start_batch, store_rejects
from geo.ingest.calls import CALLS
from geo.ingest.pages import FeatureRejects
from geo.ingest.points import area_indexes, merge_rows, prepare_frame
from geo.refresh import current_model, label_batch
from geo.settings import zone_or_configured

KIND = "calls_api"
MAX_BATCH_ROWS = 1000
# The fields a posted call may carry and the calls-CSV columns they become, in the order of the
# CSV row a posted call is (its row hash covers these cells). Other fields are ignored (and
# listed in the result's `ignored_fields`).
COLUMNS = {"call_id": "CALL_ID", "received_at": "DATE_RECEIVED", "call_type": "CALL_TYPE", "priority": "PRIORITY",
           "address": "ADDRESS", "city": "CITY", "zip": "ZIP", "lat": "LATITUDE", "lon": "LONGITUDE",
           "incident_report_id": "INCIDENT_REPORT_ID"}
FIELDS = tuple(COLUMNS)
TEXT_LIMITS = {"call_id": 64, "call_type": 200, "address": 500, "city": 100, "zip": 10, "incident_report_id": 64}
PRIORITY_RANGE = (0, 99)
# RFC 3339 date-time (the offset may be left out, meaning local time in HOTSPOTS_TIMEZONE) or full-date.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?)?$")
# A posted DATE_RECEIVED column holds instants: a date-time is one even at midnight; only a
# full-date (judged per value, as bare dates are) is a calendar date.
_INSTANTS = clean.TimeOfDay(values=1, timed=1)


class BatchError(ValueError):
    """A problem with the whole request (not JSON, wrong shape, too many rows): nothing was stored."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class RowError:
    """Why one posted row was not stored: its position, id, the field at fault and what would be valid."""

    index: int
    call_id: str | None
    field: str
    message: str
    reason: str           # the ingest_rejects reason code (as in file loads: bad_date, outside_county, ...)

    def as_dict(self) -> dict:
        """JSON form for the response."""
        return {"index": self.index, "call_id": self.call_id, "field": self.field, "message": self.message,
                "reason": self.reason}


@dataclass(frozen=True)
class StoredCall:
    """A posted call as it is now in the calls table."""

    index: int
    call_id: str
    status: str           # created | updated | unchanged
    division_id: str | None
    npa_id: int | None
    category: str | None
    p_violent: float | None
    violent: bool | None
    model_version: str | None

    def as_dict(self) -> dict:
        """JSON form for the response."""
        return {"index": self.index, "call_id": self.call_id, "status": self.status, "division_id": self.division_id,
                "npa_id": self.npa_id, "category": self.category, "p_violent": self.p_violent,
                "violent": self.violent, "model_version": self.model_version}


@dataclass
class IngestResult:
    """What one POST stored, and why the other rows were not."""

    batch_id: int
    received: int
    stored: list[StoredCall]
    errors: list[RowError]
    model_version: str | None
    labelled: int
    note: str | None = None
    ignored_fields: list[str] = field(default_factory=list)

    def ids(self, status: str) -> list[str]:
        """Call ids stored with this status."""
        return [s.call_id for s in self.stored if s.status == status]

    @property
    def rejected(self) -> int:
        return len({e.index for e in self.errors})

    def as_dict(self) -> dict:
        """JSON form for the response."""
        body = {
            "batch_id": self.batch_id, "received": self.received,
            "created": self.ids("created"), "updated": self.ids("updated"), "unchanged": self.ids("unchanged"),
            "rejected": self.rejected, "model_version": self.model_version, "labelled": self.labelled,
            "calls": [s.as_dict() for s in self.stored], "errors": [e.as_dict() for e in self.errors],
        }
        if self.note:
            body["note"] = self.note
        if self.ignored_fields:
            body["ignored_fields"] = self.ignored_fields
        return body


@dataclass
class _Row:
    """One posted row on its way to a CSV row."""

    index: int
    raw: str                              # the row's JSON as posted (for ingest_rejects.raw)
    fields: dict = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    call_id: str | None = None
    geojson: bool = False                 # posted as a Feature (coordinates come from its geometry)
    cells: dict = field(default_factory=dict)   # CSV column -> text ('' when absent)

    def fail(self, field_name: str, message: str, reason: str = "bad_value") -> None:
        self.errors.append(RowError(self.index, self.call_id, field_name, message, reason))


# --- parsing the body -----------------------------------------------------------------------------
def _raw_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_storable(payload: Any) -> None:
    """BatchError when a string (key or value) holds what PostgreSQL text and jsonb cannot: NUL, lone surrogates.

    Every row's raw JSON and the batch report are stored, so such a body would fail on the
    insert; it is refused whole, before anything is written. Iterative: nesting is as deep as
    the JSON parser allowed.
    """
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            raise BatchError("body", "a string in the body holds a NUL character (\\u0000) or an unpaired surrogate "
                                     "(\\ud800-\\udfff), which cannot be stored; remove it")


def rows_of(payload: Any, max_rows: int = MAX_BATCH_ROWS) -> list[_Row]:
    """The posted rows of `{"calls": [...]}`, a bare array, or a GeoJSON FeatureCollection; BatchError otherwise."""
    _check_storable(payload)
    geojson = isinstance(payload, dict) and payload.get("type") == "FeatureCollection"
    if geojson:
        member, items = "features", payload.get("features")
    elif isinstance(payload, dict) and "calls" in payload:
        member, items = "calls", payload["calls"]
    elif isinstance(payload, list):
        member, items = "calls", payload
    else:
        raise BatchError("body", 'expected {"calls": [...]}, a JSON array of calls, or a GeoJSON FeatureCollection')
    if not isinstance(items, list):
        raise BatchError(member, f"{member} must be a JSON array")
    if not items:
        raise BatchError(member, "the batch holds no calls")
    if len(items) > max_rows:
        raise BatchError(member, f"{len(items)} calls in one request; at most {max_rows} (send smaller batches)")
    rows = []
    for index, item in enumerate(items):
        row = _Row(index, _raw_json(item), geojson=geojson)
        if geojson:
            _feature_fields(row, item)
        elif isinstance(item, dict):
            row.fields = dict(item)
        else:
            row.fail("", f"a call must be a JSON object, not {type(item).__name__}", "malformed_row")
        rows.append(row)
    return rows


def _feature_fields(row: _Row, item: Any) -> None:
    """A GeoJSON Feature's properties, its id as call_id when the properties lack one, and its Point."""
    if not isinstance(item, dict) or item.get("type") != "Feature":
        row.fail("", "each member of features must be a GeoJSON Feature", "malformed_row")
        return
    props = item.get("properties") or {}
    if not isinstance(props, dict):
        row.fail("properties", "properties must be a JSON object", "malformed_row")
        return
    row.fields = {k: v for k, v in props.items() if k not in ("lon", "lat")}
    if row.fields.get("call_id") is None and item.get("id") is not None:
        row.fields["call_id"] = item["id"] if isinstance(item["id"], str) else str(item["id"])
    geometry = item.get("geometry")
    if geometry is None:
        return  # reported as missing coordinates
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if not isinstance(geometry, dict) or geometry.get("type") != "Point" or not isinstance(coords, list) or len(coords) < 2:
        row.fields["lon"] = row.fields["lat"] = None
        row.fail("geometry", "geometry must be a GeoJSON Point [lon, lat] in WGS84", "bad_value")
        return
    row.fields["lon"], row.fields["lat"] = coords[0], coords[1]


# --- a posted call as a CSV row ------------------------------------------------------------------
def _text(row: _Row, name: str) -> str:
    """A text field's cell: '' when absent or blank (the shared cleaning rejects a missing required one)."""
    value = row.fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        row.fail(name, f"{name} must be a string, not {type(value).__name__}")
        return ""
    text = str(value).strip()
    if len(text) > TEXT_LIMITS[name]:
        row.fail(name, f"{name} is {len(text)} characters long; at most {TEXT_LIMITS[name]}")
        return ""
    return text


def _received_at(row: _Row, tz: str) -> str:
    value = row.fields.get("received_at")
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    hint = (f"an RFC 3339 date-time such as 2021-06-01T14:05:00-04:00 (no offset: {tz} "
            "local time) or a date such as 2021-06-01")
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        row.fail("received_at", f"received_at {_raw_json(value)[:60]} is not {hint}", "bad_date")
        return ""
    text = value.strip()
    # RFC 3339 allows t and z in lower case; the shared date parser reads them in upper case.
    return text[:10] + text[10:].replace("t", "T").replace("z", "Z")


def _priority(row: _Row) -> str:
    value = row.fields.get("priority")
    if value is None or value == "":
        return ""
    whole = None
    if isinstance(value, bool):
        whole = None
    elif isinstance(value, int):
        whole = value
    elif isinstance(value, float) and value.is_integer():
        whole = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,4}\s*", value):
        whole = int(value)
    lo, hi = PRIORITY_RANGE
    if whole is None or not lo <= whole <= hi:
        row.fail("priority", f"priority {_raw_json(value)[:40]} is not a whole number from {lo} to {hi}")
        return ""
    return str(whole)


def _coordinate(row: _Row, name: str) -> str:
    value = row.fields.get(name)
    if value is None:
        return ""
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:   # a JSON integer too large for a float
        number = math.nan
    if not math.isfinite(number):
        row.fail(name, f"{name} {_raw_json(value)[:40]} is not a number (WGS84 degrees)")
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _zip(row: _Row) -> str:
    text = _text(row, "zip")
    if text and clean.clean_zip(pd.Series([text], dtype=object))[0].iloc[0] == "":
        row.fail("zip", f"zip {text!r} is not a 5-digit (or ZIP+4) code")
        return ""
    return text


def _to_cells(row: _Row, tz: str) -> None:
    """The row's cells as a calls CSV holds them; a field that breaks a posted call's schema is an error."""
    if row.errors and not row.fields:
        return  # not an object: nothing to read
    row.call_id = _text(row, "call_id") or None
    cells = {"call_id": row.call_id or "", "received_at": _received_at(row, tz), "call_type": _text(row, "call_type"),
             "priority": _priority(row), "lon": _coordinate(row, "lon"), "lat": _coordinate(row, "lat")}
    for name in ("address", "city", "incident_report_id"):
        cells[name] = _text(row, name)
    cells["zip"] = _zip(row)
    row.cells = {COLUMNS[name]: cells[name] for name in COLUMNS}
    # Errors found before the id was read (e.g. a bad GeoJSON geometry) still name the call.
    row.errors = [replace(e, call_id=row.call_id) for e in row.errors]


def posted_frame(rows: list[_Row]) -> pd.DataFrame:
    """The rows as the text frame a calls CSV with the columns of COLUMNS gives."""
    return pd.DataFrame([r.cells for r in rows], columns=list(COLUMNS.values()), dtype=object)


# --- rejects named in the posted fields -----------------------------------------------------------------
_FIELD_OF_COLUMN = {column: name for name, column in COLUMNS.items()}
_COLUMN_WORD = re.compile(r"(?<![^\s(,])(" + "|".join(COLUMNS.values()) + r")(?=[ =])")
_REASON_FIELD = {"missing_id": "call_id", "duplicate_id": "call_id", "bad_date": "received_at",
                 "implausible_date": "received_at", "outside_county": "lon"}


def _field_words(detail: str) -> str:
    """A file loader's reject detail in the posted fields' names (DATE_RECEIVED -> received_at)."""
    return _COLUMN_WORD.sub(lambda m: _FIELD_OF_COLUMN[m.group(1)], detail)


class _PostedRejects(FeatureRejects):
    """Rejects keyed by the row's index in the batch, keeping its JSON; details name the posted fields."""

    def __init__(self, rows: list[_Row]):
        super().__init__({r.index: r.raw for r in rows}, "at index")

    def frame(self) -> pd.DataFrame:
        out = super().frame()
        if len(out):
            out["detail"] = out["detail"].map(_field_words)
        return out


def _row_error(row: _Row, reason: str, detail: str) -> RowError:
    """The response's error for a row the shared cleaning rejected."""
    if reason == "missing_coordinates":
        name = "geometry" if row.geojson else "lon"
    else:
        first = detail.split(" ", 1)[0]
        name = _REASON_FIELD.get(reason) or (first if first in COLUMNS else "")
    return RowError(row.index, row.call_id, name, detail, reason)


# --- storing ---------------------------------------------------------------------------------------
def ingest_calls(engine: Engine, payload: Any, *, body_sha256: str, source: str,
                 max_rows: int = MAX_BATCH_ROWS, tz: str | None = None) -> IngestResult:
    """Check, clean, place, categorise, store and label a posted batch of calls in one transaction.

    `body_sha256` identifies the request body (ingest_batches/ingest_rejects, as a file's checksum
    does); `source` says where it came from (e.g. the token's name), never the token. Times without an
    offset are local times in `tz` (None: the configured zone).
    """
    tz = zone_or_configured(tz)
    rows = rows_of(payload, max_rows)
    for row in rows:
        _to_cells(row, tz)
    areas = area_indexes(engine)
    report = LoadReport(kind=KIND, source_file=source, sha256=body_sha256, rows_read=len(rows))
    rejects = _PostedRejects(rows)
    for r in (r for r in rows if r.errors):
        rejects.add(np.array([r.index]), [r.raw], r.errors[0].reason,
                    "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in r.errors))
    candidates = [r for r in rows if not r.errors]
    prepared = prepare_frame(CALLS, posted_frame(candidates), np.array([r.index for r in candidates], dtype=np.int64),
                             areas, report, rejects, time_columns={"DATE_RECEIVED": _INSTANTS})
    rejected = rejects.frame()
    shared = rejected[~rejected["line"].isin([r.index for r in rows if r.errors])]
    by_index = {r.index: r for r in rows}
    errors = [e for r in rows for e in r.errors]
    errors += [_row_error(by_index[int(line)], reason, detail)
               for line, reason, detail in zip(shared["line"], shared["reason"], shared["detail"])]
    errors.sort(key=lambda e: e.index)
    turned_down = set(shared["line"].tolist())
    accepted = [r for r in candidates if r.index not in turned_down]
    model, note = current_model(engine) if accepted else (None, None)
    ignored = sorted({k for r in rows for k in r.fields if k not in FIELDS and k != "type"})

    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        try:
            merged = merge_rows(conn, CALLS, prepared, report.batch_id, tz)
        except IngestError as exc:   # a posted call_id is a synthetic call's: the client's problem, not the server's
            raise BatchError("features" if rows[0].geojson else "calls", str(exc)) from None
        report.inserted = sum(merged.values())
        report.updated = len(merged) - report.inserted
        report.unchanged = prepared.num_rows - len(merged)
        labelled = 0
        if model is not None and merged:
            labelled = label_batch(conn, model, report.batch_id, tz)
        status = {call_id: "created" if inserted else "updated" for call_id, inserted in merged.items()}
        stored = _stored(conn, accepted, status)
        store_rejects(conn, report, rejects)
        report.notes.update({"model_version": model.version if model is not None else None, "labelled": labelled})
        if ignored:
            report.notes["ignored_fields"] = ignored
        finish_batch(conn, report)
    return IngestResult(report.batch_id, len(rows), stored, errors, model.version if model is not None else None,
                        labelled, note, ignored)


def _stored(conn: Connection, accepted: list[_Row], status: dict[str, str]) -> list[StoredCall]:
    """The stored state of every accepted row (unchanged rows keep what was stored before)."""
    if not accepted:
        return []
    found = {
        r.call_id: r for r in conn.execute(sa.text(
            "SELECT call_id, division_id, npa_id, category, p_violent, label, model_version FROM calls"
            " WHERE call_id = ANY(:ids)"), {"ids": [r.call_id for r in accepted]}).mappings()
    }
    out = []
    for r in accepted:
        s = found[r.call_id]
        out.append(StoredCall(r.index, r.call_id, status.get(r.call_id, "unchanged"), s["division_id"], s["npa_id"],
                              s["category"], None if s["p_violent"] is None else float(s["p_violent"]), s["label"],
                              s["model_version"]))
    return out
