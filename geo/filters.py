"""The one selection type: every time, area, category, violence, probability, origin and bbox predicate.

`Filter` is what the OGC items, the tiles, the exports, the map's panel, the CLI, the analyses and
the Dask path select rows by. Its predicates are SQLAlchemy Core expressions over the tables of
`geo.models` (`Filter.predicate`), values always bound; a text template (the MVT tile SQL, a tuned
analysis query) gets the same predicate compiled once (`Filter.where`), never a second hand-written
WHERE. A local-date range (the analyses' period) is a Filter made by `Filter.local_days`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from datetime import date, datetime, time, timedelta
from typing import Callable, Mapping
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import psycopg2 as _psycopg2  # noqa: F401  (registers the dialect module)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from geo import models
from geo.taxonomy import load_taxonomy

# Relative windows a supervisor picks on the map: days back from the "as of" date (inclusive).
PRESETS = {"7d": 7, "28d": 28, "365d": 365, "ytd": None}
TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f"}
# Parameters a filter reads; anything else in a request is the caller's business.
FILTER_PARAMETERS = ("start", "end", "preset", "datetime", "division", "category", "violent", "min_p", "bbox", "origin")
# Where a row came from: a published file or feed, or the demo generator (never added silently).
ORIGINS = ("real", "synthetic")
# Compiles a Core predicate for a text template: SQLAlchemy's own named binds (:name), as sa.text reads them.
_TEXT_DIALECT = postgresql.psycopg2.dialect(paramstyle="named")
# Compiles a Core statement for psycopg2 itself (COPY through the raw cursor): its pyformat binds.
_DRIVER_DIALECT = postgresql.psycopg2.dialect()


class ParameterError(ValueError):
    """A request parameter that cannot be used: names the parameter and what would be valid."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def configured_zone() -> str:
    """The configured local time zone: the default of library callers that give none."""
    from geo.settings import locale_settings

    return locale_settings().timezone


def _calls_violent(t: FromClause) -> ColumnElement:
    return sa.func.coalesce(t.c["label"], sa.false())


def _incidents_violent(t: FromClause) -> ColumnElement:
    # A violent code on an Unfounded report is not a violent crime (is_crime is false there).
    return sa.func.coalesce(sa.and_(t.c["category"] == sa.literal_column("'violent_crime'"), t.c["is_crime"]), sa.false())


@lru_cache(maxsize=4096)
def _compiled_where(flt: "Filter", table: str, alias: str) -> tuple[str, dict]:
    # Compiling costs about 2 ms, a tile's whole budget at close zoom: a map pans with one filter, so
    # its predicate is compiled once (a Filter hashes on its meaning; `given` is left out).
    cols = TABLE_COLUMNS[table]
    sql, params = compile_text(flt.predicate(table, cols.table.alias(alias) if alias else bare_columns(table)))
    return f"({sql})", params   # parenthesised: a template may AND it with its own conditions


@lru_cache(maxsize=None)
def violent_sql(table: str, alias: str) -> str:
    """SQL text of "the row is violent" on `alias` (no binds), for a template's select list."""
    cols = TABLE_COLUMNS[table]
    return compile_text(cols.violent(cols.table.alias(alias)))[0]


@dataclass(frozen=True)
class Columns:
    """Where a table keeps the filtered fields (None: the filter does not apply to it)."""

    table: sa.Table
    time: str
    division: str | None = "division_id"
    npa: str | None = "npa_id"
    category: str | None = "category"
    violent: Callable[[FromClause], ColumnElement] | None = None   # the row is violent (never NULL)
    probability: str | None = None
    geom: str = "geom"
    origin: str | None = "data_origin"
    time_is_date: bool = False       # `time` is a calendar date (compared with the filter's local dates)
    precision: str | None = None     # column saying whether `time` is an instant or a calendar date only


TABLE_COLUMNS = {
    "calls": Columns(models.calls, time="received_at", violent=_calls_violent, probability="p_violent",
                     precision="received_at_precision"),
    "incidents": Columns(models.incidents, time="date_reported", violent=_incidents_violent,
                         precision="date_reported_precision"),
    # Every homicide is a violent crime and has no taxonomy category: those filters are refused.
    "homicides": Columns(models.homicides, time="date_reported", category=None, time_is_date=True),
}


def _midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz))


def compile_text(predicate: sa.ClauseElement) -> tuple[str, dict]:
    """A Core predicate as SQL text with SQLAlchemy's named binds, and their values, for a text template."""
    # render_postcompile: expanding binds (IN lists) become plain named binds a text statement can hold.
    compiled = predicate.compile(dialect=_TEXT_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


def compile_driver(clause: sa.ClauseElement) -> tuple[str, dict]:
    """A Core statement or predicate compiled for psycopg2's own cursor (mogrify, COPY): SQL and binds."""
    compiled = clause.compile(dialect=_DRIVER_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


@dataclass(frozen=True)
class Filter:
    """A selection: half-open UTC-aware time bounds, area, category, violence, probability, bbox, origin.

    `tz` is the local zone its dates are read in (given by whoever builds it from settings; the
    configured zone by default).
    """

    start: datetime | None = None
    end: datetime | None = None
    division: str | None = None
    category: str | None = None
    violent: bool | None = None
    min_p: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    # How the request named it (for echoing back, e.g. in links and the map's URL).
    given: dict = field(default_factory=dict, compare=False)
    origin: str | None = None   # 'real' or 'synthetic' rows only
    npa: int | None = None
    tz: str = field(default_factory=configured_zone)

    @classmethod
    def local_days(cls, first: date, end: date, *, tz: str | None = None, **conditions) -> "Filter":
        """The local days [first, end) (what an analysis period is), with any other conditions."""
        tz = tz or configured_zone()
        if end < first:
            raise ValueError(f"a period ends ({end}) before it starts ({first})")
        return cls(start=_midnight(first, tz), end=_midnight(end, tz), tz=tz, **conditions)

    def with_days(self, first: date, end: date) -> "Filter":
        """The same conditions over the local days [first, end)."""
        return replace(self, start=_midnight(first, self.tz), end=_midnight(end, self.tz), given={})

    def without_conditions(self) -> "Filter":
        """The same time bounds (and zone) with no other condition."""
        return Filter(start=self.start, end=self.end, tz=self.tz)

    def narrowed(self, **conditions) -> "Filter":
        """The filter with more conditions (origin=..., npa=..., division=...); None values leave one as it is."""
        return replace(self, given={}, **{k: v for k, v in conditions.items() if v is not None})

    def without_dates(self) -> "Filter":
        """The same conditions with no time bounds (the caller brings its own windows)."""
        return replace(self, start=None, end=None, given={})

    @property
    def start_date(self) -> date:
        """The first local day (the filter must have a start)."""
        lo, _ = self.local_period()
        if lo is None:
            raise ValueError("the filter has no start date")
        return lo

    @property
    def end_date(self) -> date:
        """The local day after the last (half-open end; the filter must have an end)."""
        _, hi = self.local_period()
        if hi is None:
            raise ValueError("the filter has no end date")
        return hi

    @property
    def days(self) -> int:
        """How many local days the filter spans."""
        return (self.end_date - self.start_date).days

    def predicate(self, table: str = "calls", source: FromClause | None = None) -> ColumnElement:
        """The filter as a SQLAlchemy Core condition on `table` (or `source`, an alias of it); TRUE when nothing is filtered.

        Its values are bound under fixed names (f_start, f_division, ...): the same filter always
        compiles to the same text, which keeps the tile statements' parse cache small.
        """
        cols = TABLE_COLUMNS[table]
        t = cols.table if source is None else source
        clauses: list[ColumnElement] = []
        when = t.c[cols.time]
        if cols.time_is_date:
            # A calendar date is in the filter when its whole local day is: [first, last) days.
            first, last = self.whole_days()
            if first is not None:
                clauses.append(when >= _bind("f_start", first, when))
            if last is not None:
                clauses.append(when < _bind("f_end", last, when))
        elif cols.precision and not self.aligned_to_days():
            # A window that cuts a day (an OGC datetime of a few hours): a row known only by its date
            # is in it when its whole day is, never as if it happened at midnight.
            precision = t.c[cols.precision]
            timed, dated = [precision.op("<>")(_DATE_ONLY)], [precision == _DATE_ONLY]
            first, last = self.whole_days()
            if self.start is not None:
                timed.append(when >= _bind("f_start", self.start, when))
                dated.append(when >= _bind("f_day_start", _midnight(first, self.tz), when))
            if self.end is not None:
                timed.append(when < _bind("f_end", self.end, when))
                dated.append(when < _bind("f_day_end", _midnight(last, self.tz), when))
            clauses.append(sa.or_(sa.and_(*timed), sa.and_(*dated)))
        else:
            if self.start is not None:
                clauses.append(when >= _bind("f_start", self.start, when))
            if self.end is not None:
                clauses.append(when < _bind("f_end", self.end, when))
        for name, value in (("division", self.division), ("npa", self.npa), ("category", self.category),
                            ("origin", self.origin)):
            column = getattr(cols, name)
            if value is not None and column:
                clauses.append(t.c[column] == _bind(f"f_{name}", value, t.c[column]))
        if self.violent is not None:
            if cols.violent is None:
                raise ParameterError("violent", f"{table} are all violent crimes; violent applies to calls and incidents")
            violent = cols.violent(t)
            clauses.append(violent if self.violent else sa.not_(violent))
        if self.min_p is not None:
            if cols.probability is None:
                raise ParameterError("min_p", f"{table} have no model probability; min_p applies to calls")
            column = t.c[cols.probability]
            clauses.append(column >= _bind("f_min_p", self.min_p, column))
        if self.bbox is not None:
            clauses.append(bbox_predicate(t.c[cols.geom], self.bbox))
        return sa.and_(sa.true(), *clauses)

    def where(self, table: str = "calls", alias: str = "") -> tuple[str, dict]:
        """The Core predicate compiled once for a text template: SQL (its table named `alias`, or the table) and binds."""
        sql, params = _compiled_where(self, table, alias)
        return sql, dict(params)

    def key(self) -> str:
        """A short stable digest of the filter's meaning, for cache keys and ETags."""
        d = asdict(self)
        d.pop("given")
        return hashlib.sha256(json.dumps(d, default=str, sort_keys=True).encode()).hexdigest()[:16]

    def without_bbox(self) -> "Filter":
        """The same filter with no bounding box (tiles bring their own envelope)."""
        return replace(self, bbox=None, given=dict(self.given))

    def aligned_to_days(self) -> bool:
        """Whether both bounds (where given) are local midnights: the window is whole days."""
        tz = ZoneInfo(self.tz)
        return all(t is None or t.astimezone(tz).timetz().replace(tzinfo=None) == time(0) for t in (self.start, self.end))

    def whole_days(self) -> tuple[date | None, date | None]:
        """The local days [first, last) that lie wholly inside the filter's time bounds."""
        tz = ZoneInfo(self.tz)
        first = last = None
        if self.start is not None:
            s = self.start.astimezone(tz)
            first = s.date() if s.timetz().replace(tzinfo=None) == time(0) else s.date() + timedelta(days=1)
        if self.end is not None:
            last = self.end.astimezone(tz).date()
        return first, last

    def local_period(self) -> tuple[date | None, date | None]:
        """The filter's time bounds as local dates [start, end) (None where open)."""
        tz = ZoneInfo(self.tz)
        lo = self.start.astimezone(tz).date() if self.start else None
        hi = None
        if self.end:
            e = self.end.astimezone(tz)
            hi = e.date() if e.timetz().replace(tzinfo=None) == time(0) else e.date() + timedelta(days=1)
        return lo, hi


def bbox_predicate(geom: ColumnElement, bbox: tuple[float, float, float, float], prefix: str = "f") -> ColumnElement:
    """The one bbox test: geometries meeting the WGS84 box (minlon, minlat, maxlon, maxlat), bound as {prefix}_xmin..."""
    # ST_Intersects uses the GiST index (its && step) and then tests exactly: && alone lets in
    # points a few metres outside the box (index boxes are rounded to float4).
    corners = [sa.bindparam(f"{prefix}_{n}", float(v), type_=sa.Float)
               for n, v in zip(("xmin", "ymin", "xmax", "ymax"), bbox)]
    return sa.func.ST_Intersects(geom, sa.func.ST_MakeEnvelope(*corners, sa.literal_column("4326")))


def _bind(name: str, value, column: ColumnElement) -> sa.BindParameter:
    return sa.bindparam(name, value, type_=column.type)


# Compared as written (not bound): the precision vocabulary is the schema's, not a request's.
_DATE_ONLY = sa.literal_column("'date'")


class _Bare:
    """A table's columns unqualified (`received_at`, not `calls.received_at`): for a template whose FROM has no alias."""

    def __init__(self, table: sa.Table):
        self.c = {c.name: sa.column(c.name, c.type) for c in table.c}


def bare_columns(table: str) -> _Bare:
    """The filtered table's columns unqualified, a `source` for `Filter.predicate` (FROM the table or a subquery of it)."""
    return _Bare(TABLE_COLUMNS[table].table)


def _get(args: Mapping, name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def parse_bool(name: str, value: str) -> bool:
    """'true'/'false' (and 1/0, yes/no) as a boolean, else a ParameterError naming `name`."""
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise ParameterError(name, f"{value!r} is not a boolean; use true or false")


# ASCII only: Python's int() and float() also read other scripts' digits ('١٢') and '1_000',
# which no client means and no cache key should tell apart from '12'.
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.ASCII | re.IGNORECASE)
# PostgreSQL bigint: larger integers cannot be bound as LIMIT, OFFSET or an id.
INT64_MAX = 2**63 - 1


def parse_int(name: str, value: str) -> int:
    """An integer in ASCII digits within the bigint range, else a ParameterError naming `name`."""
    text = str(value).strip()
    if not _INT.fullmatch(text):
        raise ParameterError(name, f"{value!r} is not an integer")
    x = int(text)
    if not -INT64_MAX - 1 <= x <= INT64_MAX:
        raise ParameterError(name, f"{text} is outside the 64-bit integer range")
    return x


def parse_float(name: str, value: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number within [lo, hi], else a ParameterError naming `name`."""
    if not isinstance(value, (int, float)) and not _NUMBER.fullmatch(str(value).strip()):
        raise ParameterError(name, f"{value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise ParameterError(name, f"{value!r} is not a finite number")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise ParameterError(name, f"{value} is outside [{lo}, {hi}]")
    return x


def parse_bbox(value: str, name: str = "bbox") -> tuple[float, float, float, float]:
    """'minlon,minlat,maxlon,maxlat' (or the 6-number 3D form) in WGS84 degrees."""
    parts = [s for s in value.split(",")]
    if len(parts) not in (4, 6):
        raise ParameterError(name, f"expected 4 (or 6) comma-separated numbers minlon,minlat,maxlon,maxlat; got {len(parts)}")
    nums = [parse_float(name, s) for s in parts]
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    xmin, ymin, xmax, ymax = nums
    for x in (xmin, xmax):
        if not -180 <= x <= 180:
            raise ParameterError(name, f"longitude {x} is outside [-180, 180]")
    for y in (ymin, ymax):
        if not -90 <= y <= 90:
            raise ParameterError(name, f"latitude {y} is outside [-90, 90]")
    if ymin > ymax:
        raise ParameterError(name, f"minimum latitude {ymin} is above maximum {ymax}")
    if xmin > xmax:
        raise ParameterError(name, f"minimum longitude {xmin} is east of maximum {xmax} (boxes across the antimeridian are not supported)")
    return xmin, ymin, xmax, ymax


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)


def parse_instant(name: str, value: str, *, end_of_day: bool = False, tz: str | None = None) -> datetime:
    """An RFC 3339 date-time (offset or Z; none means local time) or a local date, as an aware datetime.

    A bare date means local midnight, or the following local midnight when `end_of_day` (so an
    inclusive end date covers its whole day). `tz`: the local zone (the configured one if None).
    """
    tz = ZoneInfo(tz or configured_zone())
    v = value.strip()
    try:
        if _DATE.match(v):
            d = date.fromisoformat(v)
            if not 1900 <= d.year <= 2200:   # checked before the next day is taken: 9999-12-31 has none
                raise ParameterError(name, f"{value!r} is outside the years 1900-2200")
            if end_of_day:
                d += timedelta(days=1)
            return datetime.combine(d, time(0), tz)
        dt = datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ParameterError(name, f"{value!r} is not a date (YYYY-MM-DD) or RFC 3339 date-time") from None
    if not 1900 <= dt.year <= 2200:
        raise ParameterError(name, f"{value!r} is outside the years 1900-2200")
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def parse_datetime_param(value: str, name: str = "datetime", tz: str | None = None
                         ) -> tuple[datetime | None, datetime | None]:
    """OGC API `datetime`: an instant, or an interval 'a/b' with '..' or '' for an open end.

    An instant matches that moment only (a date: that whole local day). Returns half-open bounds.
    """
    v = value.strip()
    if "/" not in v:
        if _DATE.match(v):
            return parse_instant(name, v, tz=tz), parse_instant(name, v, end_of_day=True, tz=tz)
        t = parse_instant(name, v, tz=tz)
        return t, t + timedelta(microseconds=1)
    if v.count("/") != 1:
        raise ParameterError(name, f"{value!r} has more than one '/'; use START/END with '..' for an open end")
    a, b = (s.strip() for s in v.split("/"))
    if a in ("", "..") and b in ("", ".."):
        raise ParameterError(name, "an interval needs at least one end")
    lo = None if a in ("", "..") else parse_instant(name, a, tz=tz)
    hi = None if b in ("", "..") else parse_instant(name, b, end_of_day=True, tz=tz)
    if hi is not None and not _DATE.match(b):
        hi = hi + timedelta(microseconds=1)   # an end instant is inclusive in OGC API
    if lo is not None and hi is not None and lo >= hi:
        raise ParameterError(name, f"interval {value!r} ends before it starts")
    return lo, hi


def parse_filter(
    args: Mapping,
    *,
    table: str = "calls",
    divisions: Mapping[str, str] | None = None,
    as_of: Callable[[], date | None] | None = None,
    tz: str | None = None,
) -> Filter:
    """Read the shared filter parameters from a request-like mapping; ParameterError on bad input.

    `divisions` maps every accepted spelling (code, name, short name; lower case) to a division
    code. `as_of` gives the latest local date with data, the anchor of presets when no `end` is given.
    `tz`: the local zone dates are read in (the caller's setting; the configured zone if None).
    """
    zone = tz or configured_zone()
    cols = TABLE_COLUMNS[table]
    given = {k: _get(args, k) for k in FILTER_PARAMETERS if _get(args, k) is not None}
    start = end = None
    if "datetime" in given and ("start" in given or "end" in given or "preset" in given):
        raise ParameterError("datetime", "give either datetime or start/end/preset, not both")
    if "datetime" in given:
        start, end = parse_datetime_param(given["datetime"], tz=zone)
    if "end" in given:
        end = parse_instant("end", given["end"], end_of_day=True, tz=zone)
    if "start" in given:
        start = parse_instant("start", given["start"], tz=zone)
    if "preset" in given:
        preset = given["preset"].lower()
        if preset not in PRESETS:
            raise ParameterError("preset", f"{given['preset']!r} is not one of {', '.join(PRESETS)}")
        if "start" in given:
            raise ParameterError("preset", "give either preset or start, not both")
        tz = ZoneInfo(zone)
        if end is None:
            last = as_of() if as_of else None
            last = last or datetime.now(tz).date()
            end = datetime.combine(last + timedelta(days=1), time(0), tz)
        last_day = (end.astimezone(tz) - timedelta(microseconds=1)).date()
        days = PRESETS[preset]
        first = date(last_day.year, 1, 1) if days is None else last_day - timedelta(days=days - 1)
        start = datetime.combine(first, time(0), tz)
    if start is not None and end is not None and start >= end:
        raise ParameterError("start", f"start {given.get('start') or start.date()} is not before end {given.get('end') or end.date()}")

    division = None
    if "division" in given:
        key = given["division"].lower()
        if divisions is None or key not in divisions:
            valid = sorted(set(divisions.values())) if divisions else []
            raise ParameterError("division", f"unknown division {given['division']!r}; use a code or name ({', '.join(valid)})")
        division = divisions[key]

    category = None
    if "category" in given and cols.category is None:
        raise ParameterError("category", f"{table} have no taxonomy category; category applies to calls and incidents")
    if "violent" in given and cols.violent is None:
        raise ParameterError("violent", f"{table} are all violent crimes; violent applies to calls and incidents")
    if "category" in given:
        categories = load_taxonomy().categories
        category = given["category"].lower()
        if category not in categories:
            raise ParameterError("category", f"unknown category {given['category']!r}; one of {', '.join(categories)}")

    violent = parse_bool("violent", given["violent"]) if "violent" in given else None
    min_p = None
    if "min_p" in given:
        if cols.probability is None:
            raise ParameterError("min_p", f"{table} have no model probability; min_p applies to calls")
        min_p = parse_float("min_p", given["min_p"], 0.0, 1.0)
    bbox = parse_bbox(given["bbox"]) if "bbox" in given else None
    origin = None
    if "origin" in given:
        origin = given["origin"].lower()
        if origin not in ORIGINS:
            raise ParameterError("origin", f"unknown origin {given['origin']!r}; one of {', '.join(ORIGINS)}")
    return Filter(start, end, division, category, violent, min_p, bbox, given, origin, tz=zone)
