"""What an analysis counts as violence: one named source for every hot spot, density, trend, CompStat and workload.

- `incidents`: recorded violent incidents (FBI violent NIBRS codes of the taxonomy, Unfounded
  reports left out), each counting 1 on its local report date;
- `homicides`: homicide victims (CMPD's Homicide layer), each counting 1 on its report date;
- `labelled`: calls the model labelled violent (the labelled count);
- `expected`: expected violent calls, the sum of the model's probabilities.

Calls about one incident count once where the link exists: calls sharing an incident_report_id
are one unit whose value is the highest label (labelled) or probability (expected) among them,
placed and timed at that call; calls with no link count alone. Real and synthetic rows are never
added together: when a period holds both, an origin must be chosen.

`Source.units(flt)` is a SQLAlchemy Core SELECT with one row per counted unit under a `Filter`
(geom, npa_id, division_id, local_time, local_date, w): the filter's dates, area, category,
origin and box all apply; every consumer sums w over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from geo import models
from geo.filters import Filter, compile_text

ORIGINS = ("real", "synthetic")
Expr = Callable[[sa.Table], ColumnElement]


def _violent_codes() -> list[str]:
    from geo.taxonomy import load_taxonomy

    return sorted(load_taxonomy().violent_codes)


@dataclass(frozen=True)
class Source:
    """One table's rows counted as violence: which rows, what each counts for, and when it happened."""

    name: str
    table: str
    time: str           # the time column
    dated: bool         # True: the column is a calendar date already; False: a timestamptz read in local time
    where: Expr         # which rows count
    value: Expr         # what each row counts for
    scope: Expr         # rows that show the data's extent (a call not yet scored is not "no violence")
    key: Expr | None    # rows with the same key are one unit (the highest value kept); None: every row alone
    words: str

    @property
    def sa_table(self) -> sa.Table:
        """The GeoAlchemy2 table of geo.models the source counts rows of."""
        return models.metadata.tables[self.table]

    def local_time(self, tz: str) -> ColumnElement:
        """The row's local time (a timestamp without zone) in the zone `tz`."""
        column = self.sa_table.c[self.time]
        return sa.cast(column, sa.DateTime()) if self.dated else sa.func.timezone(tz, column)

    def describe(self, origin: str | None = None) -> str:
        """The source in words, for every printed output and saved run."""
        from geo.taxonomy import load_taxonomy

        words = self.words.format(codes=", ".join(sorted(load_taxonomy().violent_codes)))
        return f"{self.name}: {words}" + (f"; {origin} rows only" if origin else "")

    def units(self, flt: Filter, extra: tuple[str, ...] = (), condition: Expr | None = None,
              within: Filter | None = None) -> sa.Select:
        """A Core SELECT with one row per counted unit under the filter (its dates, area, category, origin, box).

        Columns: geom, npa_id, division_id, local_time, local_date, w (w > 0), and the table's
        columns named in `extra`. `condition`: one more condition on the source table's rows.
        `within`: a time slice of the filter (a Dask partition): only the units whose counted row
        lies in it, each unit still chosen among all the filter's rows, so that the slices of a
        filter hold every unit exactly once, as the whole filter does.
        """
        if flt.origin is not None:
            check_origin_name(flt.origin)
        t = self.sa_table
        local = self.local_time(flt.tz)
        value = sa.cast(self.value(t), sa.Float)
        # NullType: the geometry stays a geometry (GeoAlchemy2 would read it out as EWKB bytes).
        query = sa.select(sa.type_coerce(t.c.geom, sa.types.NullType()).label("geom"), t.c.npa_id, t.c.division_id, local.label("local_time"),
                          sa.cast(local, sa.Date).label("local_date"), value.label("w"),
                          *(t.c[c] for c in extra)).where(self.where(t), flt.predicate(self.table))
        if condition is not None:
            query = query.where(condition(t))
        if within is not None and self.dated:
            raise ValueError(f"{self.name} is counted by calendar date; time slices apply to timestamped sources")
        if self.key is None:
            return query if within is None else query.where(*_in_slice(t.c[self.time], within))
        key = self.key(t)
        if within is None:
            return query.ext(distinct_on(key)).order_by(key, value.desc(), t.c[self.time])
        # The units with a row in the slice, each chosen among all its rows; kept where the chosen row is in the slice.
        other = t.alias("slice_rows")
        chosen = (query.add_columns(t.c[self.time].label("unit_time"))
                  .where(key.in_(sa.select(self.key(other)).where(*_in_slice(other.c[self.time], within))))
                  .ext(distinct_on(key)).order_by(key, value.desc(), t.c[self.time]).subquery())
        return (sa.select(*(c for c in chosen.c if c.name != "unit_time"))
                .where(*_in_slice(chosen.c.unit_time, within)))

    def units_sql(self, flt: Filter, extra: tuple[str, ...] = (), condition: Expr | None = None) -> tuple[str, dict]:
        """`units` compiled once for a text query: the SELECT's SQL (to use as a subquery) and its binds."""
        return compile_text(self.units(flt, extra, condition))


def _in_slice(column: ColumnElement, part: Filter) -> list[ColumnElement]:
    # Anonymous binds: the slice's bounds sit beside the filter's own (f_start, f_end) in one statement.
    return [column >= sa.literal(part.start, type_=column.type), column < sa.literal(part.end, type_=column.type)]


def _incident_key(t: sa.Table) -> ColumnElement:
    return sa.func.coalesce(t.c.incident_report_id, sa.literal_column("'call '") + t.c.call_id)


def _calls(name: str, where: Expr, value: Expr, words: str) -> Source:
    return Source(name, "calls", "received_at", False, where, value, lambda t: t.c.p_violent.is_not(None),
                  _incident_key, words + "; calls about one incident counted once")


SOURCES: dict[str, Source] = {
    "incidents": Source("incidents", "incidents", "date_reported", False,
                        lambda t: sa.and_(t.c.is_crime, t.c.highest_nibrs_code.in_(_violent_codes())),
                        lambda t: sa.literal(1), lambda t: sa.true(), None,
                        "recorded violent incidents (FBI violent NIBRS codes {codes}; Unfounded reports left out), "
                        "on their local report date"),
    "homicides": Source("homicides", "homicides", "date_reported", True, lambda t: sa.true(),
                        lambda t: sa.literal(1), lambda t: sa.true(), None,
                        "homicide victims (CMPD Homicide layer), on their report date"),
    "labelled": _calls("labelled", lambda t: t.c.label.is_(True), lambda t: sa.cast(t.c.label, sa.Integer),
                       "calls the model labelled violent (labelled count), at their local received time"),
    "expected": _calls("expected", lambda t: t.c.p_violent > 0, lambda t: t.c.p_violent,
                       "expected violent calls (the sum of the model's probabilities), at their local received time"),
}
NAMES = tuple(SOURCES)


def get_source(name: str) -> Source:
    """The source called `name`; ValueError listing the valid names."""
    if name not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {name!r}")
    return SOURCES[name]


def check_origin_name(origin: str) -> None:
    """ValueError unless `origin` is 'real' or 'synthetic'."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be 'real' or 'synthetic', not {origin!r}")


def check_origin(engine: Engine, source: Source, period: Filter, origin: str | None = None) -> None:
    """Refuse to add real and synthetic rows: with both in the period, an origin must be given."""
    origin = origin or period.origin
    if origin is not None:
        check_origin_name(origin)
        return
    t = source.sa_table
    query = sa.select(t.c.data_origin).distinct().where(source.scope(t), period.without_conditions().predicate(source.table))
    with engine.connect() as conn:
        origins = conn.execute(query).scalars().all()
    if len(origins) > 1:
        raise ValueError(f"the {source.table} of {period.start_date}..{period.end_date - timedelta(days=1)} hold both "
                         "real and synthetic rows, which stand for different things; choose --origin real or --origin synthetic")


def has_violent_incidents(engine: Engine, period: Filter | None = None, origin: str | None = None) -> bool:
    """Whether any recorded violent incident is stored (in the period and of the origin, if given)."""
    src = SOURCES["incidents"]
    t = src.sa_table
    conditions = [src.where(t)]
    if origin is not None:
        check_origin_name(origin)
        conditions.append(t.c.data_origin == origin)
    if period is not None:
        conditions.append(period.without_conditions().predicate("incidents"))
    with engine.connect() as conn:
        return bool(conn.execute(sa.select(sa.exists().where(*conditions))).scalar_one())


def default_source(engine: Engine, period: Filter | None = None, origin: str | None = None) -> str:
    """Recorded violent incidents where any exist (in the period, if given), otherwise expected violent calls."""
    return "incidents" if has_violent_incidents(engine, period, origin) else "expected"


def resolve(engine: Engine, name: str | None, period: Filter, origin: str | None = None) -> Source:
    """The named source (or the default for the period), its origin checked."""
    origin = origin or period.origin
    source = get_source(name or default_source(engine, period, origin))
    check_origin(engine, source, period, origin)
    return source
