"""Following an ArcGIS REST feature layer (the City of Charlotte's open-data services): `hotspots sync`.

A sync asks the layer's `/query` endpoint for every record whose date field (DATE_REPORTED for
incidents and homicides, DATE_RECEIVED for calls) is at or after the stored high-water mark less an
overlap window, ordered by that date and the object id, one page (`resultOffset`/`resultRecordCount`) at a
time. Each page becomes the same text frame a CSV export gives (geo/ingest/pages.py, which also
serves such an answer saved in a file; dates as the hub's `YYYY/MM/DD hh:mm:ss+00`), goes through
the file loaders' cleaning, rejects and area assignment (geo/ingest/points.py; for the Homicide
layer geo/ingest/homicides.py), and is merged by
row hash: new records are inserted, changed ones updated, identical ones left alone. The page's
records, its rejects, its ingest_batches row and the advanced high-water mark commit in one
transaction, so a sync killed at any point resumes from what is really stored: the next run
re-reads the overlap and skips nothing.

Rejects are keyed by the layer (a hash of its URL) and the record's object id, so a bad record
read again in the overlap window is kept once, with the reason it was first rejected for.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.ingest.batch import LoadReport, finish_batch, start_batch, store_rejects
from geo.ingest.calls import CALLS
from geo.ingest.homicides import HOMICIDES, prepare_homicides
from geo.ingest.incidents import INCIDENTS
from geo.ingest.pages import FeatureRejects, Page, PageError, read_page, source_frame
from geo.ingest.points import PointSource, area_indexes, prepare_frame, upsert_rows
from geo.refresh import Refresh, refresh_after_calls
from geo.settings import ArcGISSettings

SOURCES: dict[str, PointSource] = {"incidents": INCIDENTS, "calls": CALLS, "homicides": HOMICIDES}
# Layers whose records are cleaned by their own loader's function rather than the point loaders'
# (one victim per record, dates that are calendar dates, rows kept without a point).
PREPARERS = {"homicides": prepare_homicides}
# ArcGIS error codes (in an HTTP 200 body) and HTTP statuses worth another try: the server is
# busy or restarting. Anything else (400 "Invalid query", 498 token) will not heal by waiting.
RETRY_CODES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S = 300.0
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class FeedError(RuntimeError):
    """The layer could not be read (after retries), or answered something that is not a feature page."""


@dataclass(frozen=True)
class Feed:
    """One ArcGIS layer followed into one table."""

    kind: str                       # 'incidents', 'calls' or 'homicides'
    url: str                        # the layer's …/query endpoint
    date_field: str                 # incremental on this field (e.g. DATE_REPORTED, or an EditDate)
    oid_field: str = "OBJECTID"
    fmt: str = "json"               # 'json' (Esri JSON) or 'geojson'
    page_size: int = 1000
    overlap: timedelta = timedelta(hours=72)
    since: datetime | None = None   # first sync only: records dated on or after this instant

    @property
    def source(self) -> PointSource:
        """How the layer's fields map onto the table (the CSV layout of the same data)."""
        return SOURCES[self.kind]

    @property
    def key(self) -> str:
        """A stable id of the layer: ingest_batches.source_sha256 and the rejects' key."""
        return hashlib.sha256(f"arcgis:{self.kind}:{self.url}".encode()).hexdigest()


def query_url(url: str) -> str:
    """A layer URL (…/FeatureServer/0) or its query endpoint, as the query endpoint."""
    url = url.strip().rstrip("/")
    return url if url.endswith("/query") else url + "/query"


def make_feed(kind: str, settings: ArcGISSettings, *, url: str | None = None, fmt: str = "json",
              date_field: str | None = None, oid_field: str = "OBJECTID", since: str | None = None) -> Feed:
    """A Feed from settings and overrides; ValueError naming the setting when something is off."""
    if kind not in SOURCES:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(SOURCES)}")
    url = url or getattr(settings, f"{kind}_url")
    if not url:
        raise ValueError(f"no URL for the {kind} layer: set HOTSPOTS_ARCGIS_{kind.upper()}_URL or pass --url")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL of an ArcGIS layer")
    if fmt not in ("json", "geojson"):
        raise ValueError(f"format {fmt!r}: expected json or geojson")
    date_field = (date_field or SOURCES[kind].required_time).upper()
    for name, value in (("date field", date_field), ("object id field", oid_field)):
        # Both go into the remote where/orderBy clauses: only plain field names.
        if not _FIELD.match(value):
            raise ValueError(f"{name} {value!r} is not a field name (letters, digits, underscore)")
    start = since if since is not None else settings.since
    since_at = None
    if start:
        try:
            since_at = datetime.fromisoformat(start)
        except ValueError:
            raise ValueError(f"since {start!r} is not a date (YYYY-MM-DD)") from None
        since_at = since_at if since_at.tzinfo else since_at.replace(tzinfo=timezone.utc)
    if settings.page_size < 1:
        raise ValueError("HOTSPOTS_ARCGIS_PAGE_SIZE must be at least 1")
    return Feed(kind, query_url(url), date_field, oid_field.upper(), fmt, settings.page_size,
                timedelta(hours=settings.overlap_hours), since_at)


# --- HTTP ------------------------------------------------------------------------------------------
class FeedClient:
    """GETs JSON from an ArcGIS endpoint, retrying with exponential back-off on transient failures."""

    def __init__(self, *, timeout_s: float = 60.0, retries: int = 5, backoff_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None):
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.log = log
        self.waits: list[float] = []   # every back-off slept, for the report

    @classmethod
    def from_settings(cls, settings: ArcGISSettings, **kwargs) -> "FeedClient":
        """A client with the configured timeout, retries and back-off."""
        return cls(timeout_s=settings.timeout_s, retries=settings.retries, backoff_s=settings.backoff_s, **kwargs)

    def get_json(self, url: str, params: dict[str, Any]) -> dict:
        """The JSON object at url?params; FeedError once retries are spent or on a permanent error."""
        full = url + "?" + urlencode(params)
        for attempt in range(self.retries + 1):
            try:
                return self._once(full)
            except _Transient as exc:
                if attempt == self.retries:
                    raise FeedError(f"{url}: {exc} (gave up after {attempt + 1} attempts)") from None
                wait = min(self.backoff_s * 2 ** attempt, MAX_BACKOFF_S)
                if self.log:
                    self.log(f"  {exc}; retrying in {wait:g} s")
                self.waits.append(wait)
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, full: str) -> dict:
        request = Request(full, headers={"User-Agent": "cmpd-hotspots sync", "Accept": "application/json"})
        try:
            with urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except HTTPError as exc:
            if exc.code in RETRY_CODES:
                raise _Transient(f"HTTP {exc.code}") from None
            raise FeedError(f"{full.split('?')[0]}: HTTP {exc.code} {exc.reason}") from None
        except (TimeoutError, URLError, ConnectionError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"no answer ({reason or type(exc).__name__})") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise _Transient("the answer is not JSON (cut off?)") from None
        if not isinstance(data, dict):
            raise FeedError(f"{full.split('?')[0]}: expected a JSON object, got {type(data).__name__}")
        error = data.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            details = "; ".join(str(d) for d in (error.get("details") or [])) if isinstance(error, dict) else ""
            text = f"ArcGIS error {code}: {message}" + (f" ({details})" if details else "")
            if code in RETRY_CODES:
                raise _Transient(text)
            raise FeedError(f"{full.split('?')[0]}: {text}")
        return data


class _Transient(Exception):
    """A failure worth retrying."""


# --- pages -----------------------------------------------------------------------------------------
def parse_page(data: dict, fmt: str, offset: int) -> Page:
    """A Page from an Esri JSON or GeoJSON answer (geo/ingest/pages.py); FeedError when it is none."""
    try:
        return read_page(data, fmt, offset)
    except PageError as exc:
        raise FeedError(str(exc)) from None


def page_frame(feed: Feed, page: Page) -> tuple[pd.DataFrame, np.ndarray]:
    """The page as the text frame the CSV loaders read, and each row's object id (its 'line')."""
    frame = source_frame(feed.source, page)
    oids = []
    for i, r in enumerate(page.records):
        oid = r.get("__OID__", r.get(feed.oid_field))
        try:
            oids.append(int(oid))
        except (TypeError, ValueError):
            raise FeedError(f"record {page.offset + i} has no object id ({feed.oid_field}); "
                            "the sync keys records and rejects on it") from None
    return frame, np.array(oids, dtype=np.int64)


def _instant(value: Any) -> datetime | None:
    """A date field's value (epoch ms, or text read as UTC when it carries no offset) as an instant."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / 1000, timezone.utc) if math.isfinite(value) else None
        except (OverflowError, OSError, ValueError):
            return None
    parsed = pd.to_datetime(str(value), errors="coerce", utc=True)
    return None if pd.isna(parsed) else parsed.to_pydatetime()


def page_high_water(feed: Feed, page: Page) -> datetime | None:
    """The newest date-field value on the page (records without one do not move the mark)."""
    found = [t for t in (_instant(r.get(feed.date_field)) for r in page.records) if t is not None]
    # A date in the future (a typo upstream) must not push the mark past records still to come.
    now = datetime.now(timezone.utc) + timedelta(days=1)
    found = [t for t in found if t <= now]
    return max(found) if found else None


# --- syncing -------------------------------------------------------------------------------------
@dataclass
class SyncResult:
    """What one sync of one layer read and stored."""

    kind: str
    url: str
    where: str
    pages: int = 0
    records_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: Counter = field(default_factory=Counter)
    high_water: datetime | None = None
    retries: int = 0
    seconds: float = 0.0
    batches: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the table gained or changed rows."""
        return bool(self.inserted or self.updated)

    def summary_lines(self) -> list[str]:
        """Human-readable summary for the CLI."""
        mark = self.high_water.isoformat() if self.high_water else "none"
        lines = [f"{self.kind}: {self.url}", f"  where {self.where}: {self.pages} page(s), {self.records_read:,} records "
                 f"in {self.seconds:.1f} s" + (f", {self.retries} retries" if self.retries else ""),
                 f"  new {self.inserted:,}, changed {self.updated:,}, unchanged {self.unchanged:,}, "
                 f"rejected {sum(self.rejected.values()):,}; high-water mark {mark}"]
        lines += [f"    rejected {reason}: {n:,}" for reason, n in sorted(self.rejected.items())]
        return lines


def read_state(engine: Engine, feed: Feed) -> dict | None:
    """The layer's sync_state row (high_water, pages, …), or None before its first sync."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM sync_state WHERE kind = :k AND url = :u"),
                           {"k": feed.kind, "u": feed.url}).mappings().first()
    return dict(row) if row else None


def where_clause(feed: Feed, high_water: datetime | None, full: bool = False) -> str:
    """The remote filter: records dated at or after the mark less the overlap (or since), else all."""
    start = None if full else (high_water - feed.overlap if high_water is not None else feed.since)
    if start is None:
        return "1=1"
    # ArcGIS reads TIMESTAMP literals in the layer's time zone, which for hosted layers is UTC.
    # Records without a date are read every time: they are rejected (once, by object id), and a
    # resumed sync must log the same rejects as an uninterrupted one.
    f = feed.date_field
    return f"{f} >= TIMESTAMP '{start.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}' OR {f} IS NULL"


def sync_feed(engine: Engine, feed: Feed, client: FeedClient, *, full: bool = False,
              log: Callable[[str], None] | None = None) -> SyncResult:
    """Read the layer from its high-water mark (less the overlap) and store it page by page."""
    t0 = time.perf_counter()
    areas = area_indexes(engine)
    with engine.connect() as lock_conn:
        # One sync per layer at a time; a second one would only duplicate requests.
        got = lock_conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": feed.key}).scalar()
        lock_conn.commit()   # the lock is the session's; no transaction stays open meanwhile
        if not got:
            raise FeedError(f"another `hotspots sync` of {feed.url} is running")
        try:
            with engine.begin() as conn:
                state = conn.execute(sa.text(
                    "INSERT INTO sync_state AS s (kind, url, date_field, run_started_at) VALUES (:k, :u, :d, now())"
                    " ON CONFLICT (kind, url) DO UPDATE SET run_started_at = now(), updated_at = now(),"
                    " date_field = EXCLUDED.date_field,"
                    # A different date field makes the old mark meaningless.
                    " high_water = CASE WHEN s.date_field = EXCLUDED.date_field THEN s.high_water END"
                    " RETURNING high_water"), {"k": feed.kind, "u": feed.url, "d": feed.date_field}).one()
            result = SyncResult(feed.kind, feed.url, where_clause(feed, state.high_water, full), high_water=state.high_water)
            retries_before = len(client.waits)
            try:
                _sync_pages(engine, feed, client, areas, result, log)
            except Exception as exc:
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE sync_state SET last_error = :e, updated_at = now()"
                                         " WHERE kind = :k AND url = :u"),
                                 {"e": str(exc)[:2000], "k": feed.kind, "u": feed.url})
                raise
            finally:
                result.retries = len(client.waits) - retries_before
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE sync_state SET last_success_at = now(), last_error = NULL, updated_at = now()"
                                     " WHERE kind = :k AND url = :u"), {"k": feed.kind, "u": feed.url})
        finally:
            lock_conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": feed.key})
            lock_conn.commit()
    result.seconds = time.perf_counter() - t0
    return result


def _sync_pages(engine: Engine, feed: Feed, client: FeedClient, areas, result: SyncResult,
                log: Callable[[str], None] | None) -> None:
    offset = 0
    while True:
        params = {
            "where": result.where, "outFields": "*", "orderByFields": f"{feed.date_field} ASC,{feed.oid_field} ASC",
            "resultOffset": offset, "resultRecordCount": feed.page_size, "returnGeometry": "true",
            "outSR": 4326, "f": feed.fmt,
        }
        page = parse_page(client.get_json(feed.url, params), feed.fmt, offset)
        if not page.records:
            return
        report = store_page(engine, feed, page, areas, result.where)
        result.pages += 1
        result.records_read += len(page.records)
        result.inserted += report.inserted
        result.updated += report.updated
        result.unchanged += report.unchanged
        result.rejected.update(report.rejected)
        result.batches.append(report.batch_id)
        mark = page_high_water(feed, page)
        if mark is not None and (result.high_water is None or mark > result.high_water):
            result.high_water = mark
        if log:
            log(f"  page at offset {offset}: {len(page.records)} records, new {report.inserted}, "
                f"changed {report.updated}, rejected {report.rows_rejected}")
        offset += len(page.records)
        # Servers cap a page at their maxRecordCount and flag the rest; a short, unflagged page is the last.
        if not page.more and len(page.records) < feed.page_size:
            return


def store_page(engine: Engine, feed: Feed, page: Page, areas, where: str) -> LoadReport:
    """Clean, reject and merge one page and advance the mark, all in one transaction."""
    frame, oids = page_frame(feed, page)
    report = LoadReport(kind=f"{feed.kind}_arcgis", source_file=f"{feed.url} where {where} offset {page.offset}",
                        sha256=feed.key, rows_read=len(frame))
    # Rejects are keyed by the record's object id and keep the record's JSON.
    rejects = FeatureRejects(dict(zip(oids.tolist(), page.raw)), "with OBJECTID")
    prepare = PREPARERS.get(feed.kind)
    if prepare is not None:
        rows = prepare(frame, oids, areas, report, rejects)
    else:
        rows = prepare_frame(feed.source, frame, oids, areas, report, rejects)
    mark = page_high_water(feed, page)
    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        report.inserted, report.updated = upsert_rows(conn, feed.source, rows, report.batch_id)
        report.unchanged = rows.num_rows - report.inserted - report.updated
        store_rejects(conn, report, rejects)
        conn.execute(sa.text(
            "UPDATE sync_state SET high_water = GREATEST(high_water, :hw), pages = pages + 1,"
            " records_read = records_read + :n, updated_at = now() WHERE kind = :k AND url = :u"),
            {"hw": mark, "n": len(frame), "k": feed.kind, "u": feed.url})
        finish_batch(conn, report)
    return report


# --- after new data ------------------------------------------------------------------------------
def refresh_after_sync(engine: Engine, results: list[SyncResult], tz: str) -> Refresh:
    """geo.refresh.refresh_after_calls when the sync brought new or changed calls (`tz`: the local days
    of the hot spots' period). Incidents only change tiles (labels and hot spots come from calls)."""
    if not any(r.kind == "calls" and r.changed for r in results):
        return Refresh()
    return refresh_after_calls(engine, tz)


def parse_interval(text: str) -> float:
    """Seconds in '90', '30s', '5m', '1h' or '1d'; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise ValueError(f"{text!r} is not an interval such as 30s, 5m, 1h")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds <= 0:
        raise ValueError("the interval must be longer than zero")
    return seconds

