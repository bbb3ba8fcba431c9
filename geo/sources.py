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

`Source.units` gives the SQL of a relation with one row per counted unit (geom, npa_id,
division_id, local_time, local_date, w); every consumer sums w over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

ORIGINS = ("real", "synthetic")


@dataclass(frozen=True)
class Source:
    """One table's rows counted as violence: which rows, what each counts for, and when it happened."""

    name: str
    table: str
    time: str           # the time column
    dated: bool         # True: the column is a calendar date already; False: a timestamptz read in local time
    where: str          # which rows count
    value: str          # what each row counts for
    scope: str          # rows that show the data's extent (a call not yet scored is not "no violence")
    key: str | None     # rows with the same key are one unit (the highest value kept); None: every row alone
    words: str

    def local_time(self) -> str:
        return f"{self.time}::timestamp" if self.dated else f"({self.time} AT TIME ZONE :tz)"

    def in_period(self) -> str:
        """SQL condition: the row's local date is in [:p_start, :p_end)."""
        if self.dated:
            return f"{self.time} >= :p_start AND {self.time} < :p_end"
        return (f"{self.time} >= (CAST(:p_start AS timestamp) AT TIME ZONE :tz)"
                f" AND {self.time} < (CAST(:p_end AS timestamp) AT TIME ZONE :tz)")

    def describe(self, origin: str | None = None) -> str:
        """The source in words, for every printed output and saved run."""
        from geo.taxonomy import load_taxonomy

        words = self.words.format(codes=", ".join(sorted(load_taxonomy().violent_codes)))
        return f"{self.name}: {words}" + (f"; {origin} rows only" if origin else "")

    def units(self, period, origin: str | None = None, condition: str = "TRUE", extra: tuple[str, ...] = ()
              ) -> tuple[str, dict]:
        """SQL (a SELECT to use as a subquery) with one row per counted unit in the period, and its parameters.

        Columns: geom, npa_id, division_id, local_time, local_date, w (w > 0), and the table's
        columns named in `extra`. `condition` is an extra SQL condition on the source table's rows
        (its parameters are the caller's).
        """
        params = base_params(origin)
        params.update(p_start=period.start, p_end=period.end)
        picked = f"{self.where} AND {self.in_period()} AND ({condition})" + (
            " AND data_origin = :origin" if origin else "")
        columns = (f"geom, npa_id, division_id, {self.local_time()} AS local_time,"
                   f" ({self.local_time()})::date AS local_date, ({self.value})::float AS w"
                   + "".join(f", {c}" for c in extra))
        if self.key is None:
            return f"SELECT {columns} FROM {self.table} WHERE {picked}", params
        return (f"SELECT DISTINCT ON ({self.key}) {columns} FROM {self.table} WHERE {picked}"
                f" ORDER BY {self.key}, ({self.value}) DESC, {self.time}"), params


def _calls(name: str, where: str, value: str, words: str) -> Source:
    return Source(name, "calls", "received_at", False, where, value, "p_violent IS NOT NULL",
                  "coalesce(incident_report_id, 'call ' || call_id)", words + "; calls about one incident counted once")


SOURCES: dict[str, Source] = {
    "incidents": Source("incidents", "incidents", "date_reported", False,
                        "is_crime AND highest_nibrs_code = ANY(:violent)", "1", "TRUE", None,
                        "recorded violent incidents (FBI violent NIBRS codes {codes}; Unfounded reports left out), "
                        "on their local report date"),
    "homicides": Source("homicides", "homicides", "date_reported", True, "TRUE", "1", "TRUE", None,
                        "homicide victims (CMPD Homicide layer), on their report date"),
    "labelled": _calls("labelled", "label", "label::int",
                       "calls the model labelled violent (labelled count), at their local received time"),
    "expected": _calls("expected", "p_violent > 0", "p_violent",
                       "expected violent calls (the sum of the model's probabilities), at their local received time"),
}
NAMES = tuple(SOURCES)


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {name!r}")
    return SOURCES[name]


def base_params(origin: str | None = None) -> dict:
    """The time zone, the violent codes and the origin every source's SQL may bind."""
    from geo.settings import locale_settings
    from geo.taxonomy import load_taxonomy

    params = {"tz": locale_settings().timezone, "violent": sorted(load_taxonomy().violent_codes)}
    if origin is not None:
        if origin not in ORIGINS:
            raise ValueError(f"origin must be 'real' or 'synthetic', not {origin!r}")
        params["origin"] = origin
    return params


def check_origin(engine: Engine, source: Source, period, origin: str | None) -> None:
    """Refuse to add real and synthetic rows: with both in the period, an origin must be given."""
    if origin is not None:
        base_params(origin)
        return
    params = {**base_params(), "p_start": period.start, "p_end": period.end}
    with engine.connect() as conn:
        origins = conn.execute(sa.text(
            f"SELECT DISTINCT data_origin FROM {source.table} WHERE {source.scope} AND {source.in_period()}"),
            params).scalars().all()
    if len(origins) > 1:
        raise ValueError(f"the {source.table} of {period.start}..{period.end - timedelta(days=1)} hold both real and "
                         "synthetic rows, which stand for different things; choose --origin real or --origin synthetic")


def has_violent_incidents(engine: Engine, period=None, origin: str | None = None) -> bool:
    src = SOURCES["incidents"]
    params = base_params(origin)
    where = src.where + (" AND data_origin = :origin" if origin else "")
    if period is not None:
        where += f" AND {src.in_period()}"
        params.update(p_start=period.start, p_end=period.end)
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM incidents WHERE {where})"), params).scalar_one())


def default_source(engine: Engine, period=None, origin: str | None = None) -> str:
    """Recorded violent incidents where any exist (in the period, if given), otherwise expected violent calls."""
    return "incidents" if has_violent_incidents(engine, period, origin) else "expected"


def resolve(engine: Engine, name: str | None, period, origin: str | None = None) -> Source:
    """The named source (or the default for the period), its origin checked."""
    source = get_source(name or default_source(engine, period, origin))
    check_origin(engine, source, period, origin)
    return source
