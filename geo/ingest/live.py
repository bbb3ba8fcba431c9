"""Live ingest of calls posted to the API: validate each row, assign areas, categorise, label, store.

A posted call means what the same call means in a CSV load (geo/ingest/calls.py): the same
county box and NPA test, the same city and ZIP cleaning, the same taxonomy, the same reject
reasons, and the label `hotspots label` would give it (the current model scores it before it is
stored, so it is on the map labelled at once). A batch is one transaction: an ingest_batches row
of kind 'calls_api', the good rows, and every bad row in ingest_rejects with its reason and raw
JSON, so nothing posted is lost.

A call_id that is already stored is treated like a row of a reloaded file: when the posted
fields differ from the stored call's (the row hash changed) the call is replaced and scored
again ("updated"); when they are identical nothing is written ("unchanged"). So a client may
resend a batch after a timeout without creating duplicates, and a CAD system may post a
corrected call (a new call type, a moved location) under the same id. Hashes of file-loaded
rows cover the file's columns, so a first API post of a call loaded from a file replaces it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geo import catalog
from geo.classify import ModelError, StoredModel, load_model
from geo.ingest import clean
from geo.ingest.batch import IngestError, LoadReport, Rejects, finish_batch, start_batch, store_rejects
from geo.settings import locale_settings
from geo.spatial import AreaIndex, read_divisions, read_neighborhoods
from geo.taxonomy import load_taxonomy

KIND = "calls_api"
MAX_BATCH_ROWS = 1000
# The fields a posted call may carry; others are ignored (and listed in the result's `ignored_fields`).
FIELDS = ("call_id", "received_at", "call_type", "priority", "lon", "lat", "address", "city", "zip",
          "incident_report_id")
TEXT_LIMITS = {"call_id": 64, "call_type": 200, "address": 500, "city": 100, "zip": 10, "incident_report_id": 64}
PRIORITY_RANGE = (0, 99)
# RFC 3339 date-time; the offset may be left out, meaning local time (HOTSPOTS_TIMEZONE).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?$")


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
    """One posted row on its way through validation."""

    index: int
    raw: str                              # the row's JSON as posted (for ingest_rejects.raw)
    fields: dict = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    call_id: str | None = None
    received_at: datetime | None = None
    call_type: str | None = None
    priority: int | None = None
    lon: float = math.nan
    lat: float = math.nan
    geojson: bool = False                 # posted as a Feature (coordinates come from its geometry)
    # address, city, zip, incident_report_id (None when absent)
    text: dict = field(default_factory=lambda: dict.fromkeys(("address", "city", "zip", "incident_report_id")))

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


# --- validating rows ------------------------------------------------------------------------------
def _text(row: _Row, name: str, *, required: bool = False, reason_missing: str = "missing_value") -> str | None:
    value = row.fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            row.fail(name, f"{name} is required", reason_missing)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        row.fail(name, f"{name} must be a string, not {type(value).__name__}")
        return None
    text = str(value).strip()
    if "\x00" in text:
        row.fail(name, f"{name} contains a NUL character")
        return None
    if len(text) > TEXT_LIMITS[name]:
        row.fail(name, f"{name} is {len(text)} characters long; at most {TEXT_LIMITS[name]}")
        return None
    return text


def local_instant(naive: datetime, tz: ZoneInfo) -> datetime:
    """A local wall-clock time as a UTC instant, resolved the way PostgreSQL resolves it in a file load.

    An ambiguous time (the repeated hour in November) is standard time; a time that does not
    exist (the skipped hour in March) is read with the offset in force before the change.
    """
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    chosen = first
    if first.utcoffset() != second.utcoffset():
        exists = first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == naive
        chosen = second if exists else first
    # In UTC: Python never finds a fold=1 time equal to a time in another zone (PEP 495).
    return chosen.astimezone(timezone.utc)


def _received_at(row: _Row, tz: ZoneInfo, now: datetime) -> datetime | None:
    value = row.fields.get("received_at")
    if value is None or (isinstance(value, str) and not value.strip()):
        row.fail("received_at", "received_at is required", "missing_value")
        return None
    hint = f"an RFC 3339 date-time such as 2021-06-01T14:05:00-04:00 (no offset: {tz.key} local time)"
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        row.fail("received_at", f"received_at {_raw_json(value)} is not {hint}", "bad_date")
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", text).replace("t", "T"))
    except ValueError:
        row.fail("received_at", f"received_at {text!r} is not a valid date-time ({hint})", "bad_date")
        return None
    instant = parsed if parsed.tzinfo else local_instant(parsed, tz)
    # The same plausibility window as file loads (geo.ingest.clean.parse_times).
    earliest = clean.EARLIEST_PLAUSIBLE.to_pydatetime().replace(tzinfo=tz)
    if instant < earliest or instant > now + timedelta(days=1):
        row.fail("received_at", f"received_at {text!r} is before 1990 or in the future", "implausible_date")
        return None
    return instant


def _priority(row: _Row) -> int | None:
    value = row.fields.get("priority")
    if value is None or value == "":
        return None
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
        row.fail("priority", f"priority {_raw_json(value)} is not a whole number from {lo} to {hi}")
        return None
    return whole


def _coordinate(row: _Row, name: str) -> float:
    value = row.fields.get(name)
    if value is None:
        return math.nan
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:   # a JSON integer too large for a float
        number = math.nan
    if not math.isfinite(number):
        row.fail(name, f"{name} {_raw_json(value)[:40]} is not a number (WGS84 degrees)")
        return math.nan
    return number


def _validate(rows: list[_Row], tz: ZoneInfo, now: datetime) -> None:
    """Field checks of each row, then the checks across rows (duplicates, coordinates, ZIP, city)."""
    for row in rows:
        if row.errors and not row.fields:
            continue  # not an object: nothing to check
        row.call_id = _text(row, "call_id", required=True, reason_missing="missing_id")
        row.received_at = _received_at(row, tz, now)
        row.call_type = _text(row, "call_type", required=True)
        row.priority = _priority(row)
        lon, lat = _coordinate(row, "lon"), _coordinate(row, "lat")
        if not any(e.field in ("lon", "lat", "geometry") for e in row.errors):
            if math.isnan(lon) or math.isnan(lat):
                row.fail("geometry" if row.geojson else "lon",
                         "lon and lat (or a GeoJSON Point geometry) are required", "missing_coordinates")
            elif not clean.in_box(np.array([lon]), np.array([lat]))[0]:
                box = clean.COUNTY_BOX
                row.fail("lon", f"point ({lon:.6f}, {lat:.6f}) is outside Mecklenburg County "
                                f"(lon {box[0]}..{box[2]}, lat {box[1]}..{box[3]})", "outside_county")
        row.lon, row.lat = lon, lat
        for name in ("address", "city", "zip", "incident_report_id"):
            row.text[name] = _text(row, name)
        # Errors found before the id was read (e.g. a bad GeoJSON geometry) still name the call.
        row.errors = [replace(e, call_id=row.call_id) for e in row.errors]

    # The first row with an id is the call; later rows with the same id are rejected (as in file loads).
    ids = pd.Series([r.call_id for r in rows], dtype=object)
    dup, first = clean.first_duplicates(ids, np.arange(len(rows), dtype=np.int64))
    for i in (int(k) for k in np.flatnonzero(dup)):
        # First in the list: it is the row's reject reason, as it is in file loads.
        rows[i].errors.insert(0, RowError(i, rows[i].call_id, "call_id",
                                          f"call_id {rows[i].call_id!r} repeats the call at index {int(first[i])} of this batch",
                                          "duplicate_id"))

    # City and ZIP through the file loader's cleaning: the same spellings end up in the table.
    city, _ = clean.normalise_city(pd.Series([r.text["city"] for r in rows], dtype=object))
    zips, _ = clean.clean_zip(pd.Series([r.text["zip"] for r in rows], dtype=object))
    for row, c, z in zip(rows, city, zips):
        if row.text["zip"] is not None and z == "":
            row.fail("zip", f"zip {row.text['zip']!r} is not a 5-digit (or ZIP+4) code")
        row.text["city"] = c or None
        row.text["zip"] = z or None


# --- areas and model, cached per process -----------------------------------------------------------
@dataclass
class Areas:
    """Polygon indexes of the NPAs and divisions, valid for one pair of data versions."""

    versions: tuple[int, int]
    npa: AreaIndex
    division: AreaIndex


_lock = threading.Lock()
_areas: dict[str, Areas] = {}
_models: dict[tuple[str, str, str], StoredModel] = {}


def _db_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def areas_for(engine: Engine, versions: dict[str, int]) -> Areas:
    """The area indexes for this database, rebuilt when the divisions or neighborhoods version changes."""
    key, wanted = _db_key(engine), (versions.get("divisions", 0), versions.get("neighborhoods", 0))
    with _lock:
        cached = _areas.get(key)
        if cached is not None and cached.versions == wanted:
            return cached
        npas, divisions = read_neighborhoods(engine), read_divisions(engine)
        if npas.empty or divisions.empty:
            raise IngestError("no division or NPA polygons loaded (`hotspots load shapes`): calls cannot be placed yet")
        areas = Areas(wanted, AreaIndex(npas.geometry, npas["npa_id"]), AreaIndex(divisions.geometry, divisions["division_id"]))
        _areas[key] = areas
        return areas


def current_model(engine: Engine) -> tuple[StoredModel | None, str | None]:
    """The current classifier (cached per version and checksum), or None and why there is none."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT model_version, artifact_sha256 FROM model_runs WHERE is_current")).first()
    if row is None:
        return None, "no model trained yet: the calls are stored unlabelled (`hotspots train`, then `hotspots label`)"
    key = (_db_key(engine), row[0], row[1] or "")
    with _lock:
        if key not in _models:
            try:
                _models[key] = load_model(engine, row[0])
            except ModelError as exc:
                return None, f"calls stored unlabelled: {exc}"
        return _models[key], None


def _features(rows: list[_Row], npa: np.ndarray, division: np.ndarray, tz: ZoneInfo) -> pd.DataFrame:
    """The inputs of geo.classify.make_features, as geo.classify.read_calls gives them for stored calls."""
    local = [r.received_at.astimezone(tz) for r in rows]
    return pd.DataFrame({
        "call_type": [r.call_type for r in rows],
        "priority": pd.array([r.priority for r in rows], dtype="Int64"),
        "hour": [t.hour for t in local],
        "weekday": [t.weekday() for t in local],   # Monday = 0, as isodow - 1
        "npa_id": pd.array(list(npa), dtype="Int64"),
        "division_id": pd.Series(list(division), dtype=object),
    })


def row_hash(row: _Row) -> int:
    """A signed 64-bit hash of the cleaned fields: a resend of the same call is recognised as unchanged."""
    canonical = json.dumps([row.call_id, row.received_at.astimezone(timezone.utc).isoformat(), row.call_type,
                            row.priority, round(row.lon, 9), round(row.lat, 9), row.text], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big", signed=True)


# --- storing ---------------------------------------------------------------------------------------
_UPSERT = """
INSERT INTO calls AS t (call_id, received_at, call_type, priority, address, city, zip, incident_report_id, geom,
                        division_id, npa_id, category, p_violent, label, model_version, labelled_at, row_hash, batch_id)
SELECT s.call_id, s.received_at, s.call_type, s.priority, s.address, s.city, s.zip, s.incident_report_id,
       ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326), s.division_id, s.npa_id, s.category, s.p_violent, s.label,
       s.model_version, CASE WHEN s.model_version IS NULL THEN NULL ELSE now() END, s.row_hash, :batch_id
FROM unnest(CAST(:call_id AS text[]), CAST(:received_at AS timestamptz[]), CAST(:call_type AS text[]),
            CAST(:priority AS smallint[]), CAST(:address AS text[]), CAST(:city AS text[]), CAST(:zip AS text[]),
            CAST(:incident_report_id AS text[]), CAST(:lon AS float8[]), CAST(:lat AS float8[]),
            CAST(:division_id AS text[]), CAST(:npa_id AS integer[]), CAST(:category AS text[]),
            CAST(:p_violent AS real[]), CAST(:label AS boolean[]), CAST(:model_version AS text[]),
            CAST(:row_hash AS bigint[]))
     AS s(call_id, received_at, call_type, priority, address, city, zip, incident_report_id, lon, lat,
          division_id, npa_id, category, p_violent, label, model_version, row_hash)
ON CONFLICT (call_id) DO UPDATE SET
    received_at = EXCLUDED.received_at, call_type = EXCLUDED.call_type, priority = EXCLUDED.priority,
    address = EXCLUDED.address, city = EXCLUDED.city, zip = EXCLUDED.zip,
    incident_report_id = EXCLUDED.incident_report_id, geom = EXCLUDED.geom, division_source = NULL,
    division_id = EXCLUDED.division_id, npa_id = EXCLUDED.npa_id, category = EXCLUDED.category,
    p_violent = EXCLUDED.p_violent, label = EXCLUDED.label, model_version = EXCLUDED.model_version,
    labelled_at = EXCLUDED.labelled_at, row_hash = EXCLUDED.row_hash, batch_id = EXCLUDED.batch_id
WHERE t.row_hash IS DISTINCT FROM EXCLUDED.row_hash
RETURNING t.call_id, (t.xmax = 0) AS inserted
"""


def _none_if_nan(values: np.ndarray) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


def ingest_calls(engine: Engine, payload: Any, *, body_sha256: str, source: str, max_rows: int = MAX_BATCH_ROWS,
                 now: datetime | None = None) -> IngestResult:
    """Validate, place, categorise, label and store a posted batch of calls in one transaction.

    `body_sha256` identifies the request body (ingest_batches/ingest_rejects, as a file's checksum
    does); `source` says where it came from (e.g. the token's name), never the token.
    """
    tz = ZoneInfo(locale_settings().timezone)
    now = now or datetime.now(timezone.utc)
    rows = rows_of(payload, max_rows)
    _validate(rows, tz, now)
    versions = catalog.data_versions(engine)
    areas = areas_for(engine, versions)
    placed = [r for r in rows if not r.errors]
    lon = np.array([r.lon for r in placed], dtype=float)
    lat = np.array([r.lat for r in placed], dtype=float)
    npa = areas.npa.lookup(lon, lat)
    division = areas.division.lookup(lon, lat)
    for r, n in zip(placed, npa):
        if n is None:
            r.fail("lon", f"point ({r.lon:.6f}, {r.lat:.6f}) is in no Neighborhood Profile Area", "outside_county")
    keep = np.array([not r.errors for r in placed], dtype=bool)
    good = [r for r, k in zip(placed, keep) if k]
    npa, division = npa[keep], division[keep]

    categories = load_taxonomy().categorise_call_types(pd.Series([r.call_type for r in good], dtype=object))
    model, note = current_model(engine) if good else (None, None)
    p = label = None
    if model is not None and good:
        p = model.score(_features(good, npa, division, tz))
        label = p >= model.threshold   # compared before rounding to real, as geo.classify.label_calls does
        p = p.astype(np.float32)

    ignored = sorted({k for r in rows for k in r.fields if k not in FIELDS and k != "type"})
    report = LoadReport(kind=KIND, source_file=source, sha256=body_sha256, rows_read=len(rows))
    rejects = Rejects()
    bad = [r for r in rows if r.errors]
    for r in bad:
        rejects.add(np.array([r.index]), [r.raw], r.errors[0].reason,
                    "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in r.errors))

    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        status: dict[str, str] = {}
        if good:
            params = {
                "batch_id": report.batch_id,
                "call_id": [r.call_id for r in good], "received_at": [r.received_at for r in good],
                "call_type": [r.call_type for r in good], "priority": [r.priority for r in good],
                "address": [r.text["address"] for r in good], "city": [r.text["city"] for r in good],
                "zip": [r.text["zip"] for r in good], "incident_report_id": [r.text["incident_report_id"] for r in good],
                "lon": [r.lon for r in good], "lat": [r.lat for r in good],
                "division_id": _none_if_nan(division), "npa_id": [int(n) for n in npa],
                "category": [str(c) for c in categories],
                "p_violent": [float(v) for v in p] if p is not None else [None] * len(good),
                "label": [bool(v) for v in label] if label is not None else [None] * len(good),
                "model_version": [model.version if model is not None else None] * len(good),
                "row_hash": [row_hash(r) for r in good],
            }
            for call_id, inserted in conn.execute(sa.text(_UPSERT), params):
                status[call_id] = "created" if inserted else "updated"
        report.inserted = sum(1 for s in status.values() if s == "created")
        report.updated = len(status) - report.inserted
        report.unchanged = len(good) - len(status)
        stored = _stored(conn, good, status)
        store_rejects(conn, report, rejects)
        labelled = sum(1 for s in stored if s.status != "unchanged" and s.model_version is not None)
        report.notes = {"model_version": model.version if model is not None else None, "labelled": labelled}
        if ignored:
            report.notes["ignored_fields"] = ignored
        finish_batch(conn, report)
    errors = sorted((e for r in bad for e in r.errors), key=lambda e: e.index)
    return IngestResult(report.batch_id, len(rows), stored, errors, model.version if model is not None else None,
                        labelled, note, ignored)


def _stored(conn: Connection, good: list[_Row], status: dict[str, str]) -> list[StoredCall]:
    """The stored state of every accepted row (unchanged rows keep what was stored before)."""
    if not good:
        return []
    found = {
        r.call_id: r for r in conn.execute(sa.text(
            "SELECT call_id, division_id, npa_id, category, p_violent, label, model_version FROM calls"
            " WHERE call_id = ANY(:ids)"), {"ids": [r.call_id for r in good]}).mappings()
    }
    out = []
    for r in good:
        s = found[r.call_id]
        out.append(StoredCall(r.index, r.call_id, status.get(r.call_id, "unchanged"), s["division_id"], s["npa_id"],
                              s["category"], None if s["p_violent"] is None else float(s["p_violent"]), s["label"],
                              s["model_version"]))
    return out
