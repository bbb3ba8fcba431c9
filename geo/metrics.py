"""Counts and totals: the offense history CMPD published, by year, category and area."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from geo import models
from geo.filters import TABLE_COLUMNS, Filter, configured_zone

# CMPD's roll-up row: the published violent-crime total for a geography and month.
ROLLUP = "Violent Crime"
# Detail rows already counted inside other detail rows; summing them would double-count.
OVERLAPPING = {"Non-Fatal Gunshot Injury": "a subset of the Aggravated Assault rows"}


@dataclass
class OffenseTotals:
    """Offense history for one geography: totals by year and a year x category table."""

    row_type: str
    geography: str
    by_year: pd.DataFrame      # year, months, violent_crime (roll-up), detail_sum (disjoint details)
    by_category: pd.DataFrame  # index category, columns years, plus 'total'


def resolve_geography(engine: Engine, geography: str) -> tuple[str, str]:
    """Map 'CMPD', an NPA number or a hotspot name to (ROW_TYPE, GEOGRAPHY); fail listing valid values."""
    g = geography.strip()
    if g.upper() == "CMPD":
        return "CMPD Jurisdiction", "CMPD"
    if g.isdigit():
        return "Neighborhood Profile Area", str(int(g))
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(sa.text(
            "SELECT DISTINCT geography FROM offense_counts WHERE row_type = 'Violent Crime Hotspot' ORDER BY 1"))]
    for name in names:
        if name.lower() == g.lower():
            return "Violent Crime Hotspot", name
    raise ValueError(f"geography {geography!r} is not CMPD, an NPA number or a hotspot area ({', '.join(names)})")


def offense_totals(engine: Engine, geography: str = "CMPD", years: tuple[int, int] | None = None) -> OffenseTotals:
    """Violent offense totals by year and category, agreeing with CMPD's roll-up rows."""
    row_type, geo = resolve_geography(engine, geography)
    lo, hi = years or (0, 9999)
    with engine.connect() as conn:
        rows = pd.read_sql(
            sa.text(
                "SELECT calendar_year AS year, calendar_month AS month, offense_description AS category,"
                " sum(offense_count) AS n FROM offense_counts"
                " WHERE row_type = :rt AND geography = :g AND calendar_year BETWEEN :lo AND :hi"
                " GROUP BY 1, 2, 3"
            ),
            conn,
            params={"rt": row_type, "g": geo, "lo": lo, "hi": hi},
        )
    if rows.empty:
        raise ValueError(f"no offense counts for {row_type} {geo!r} in years {lo}-{hi}; load them with `hotspots load offenses`")
    rollup = rows[rows["category"] == ROLLUP]
    details = rows[rows["category"] != ROLLUP]
    disjoint = details[~details["category"].isin(list(OVERLAPPING))]
    by_year = pd.DataFrame(
        {
            "months": rows.groupby("year")["month"].nunique(),
            "violent_crime": rollup.groupby("year")["n"].sum(),
            "detail_sum": disjoint.groupby("year")["n"].sum(),
        }
    ).fillna(0).astype(int).rename_axis("year").reset_index()
    by_category = details.pivot_table(index="category", columns="year", values="n", aggfunc="sum", fill_value=0)
    by_category["total"] = by_category.sum(axis=1)
    by_category = by_category.sort_values("total", ascending=False)
    by_category.columns = [str(c) for c in by_category.columns]
    return OffenseTotals(row_type=row_type, geography=geo, by_year=by_year, by_category=by_category)


# --- calls: counts, shares, time patterns, CompStat -------------------------------------------
AREA_COLUMNS = {"city": None, "division": "division_id", "npa": "npa_id"}


def _area_expr(by: str) -> str:
    if by not in AREA_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(AREA_COLUMNS)}, not {by!r}")
    column = AREA_COLUMNS[by]
    return "'CMPD'" if column is None else f"coalesce({column}::text, '(none)')"


def _tz() -> str:
    return configured_zone()


# --- the measures layer -----------------------------------------------------------------------
# Every measure is one function of (reader, Filter, grouping). A reader runs the measure's Core
# query: `SqlReader` on one engine; geo.scale's `DaskReader` on time partitions of the filter,
# summing the partial results (every measure value below is a sum, so partitions add up).
Build = Callable[[Filter | None], sa.Select]


class SqlReader:
    """Runs a measure's query on one database engine (the reference path of the CLI, the web and the panel)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def aggregate(self, build: Build, flt: Filter, keys: Sequence[str]) -> pd.DataFrame:
        """The measure's rows for the whole filter: `build(None)` run once."""
        with self.engine.connect() as conn:
            return pd.read_sql(build(None), conn)


def reader_of(source: "Engine | SqlReader") -> "SqlReader":
    """A reader for an engine (SqlReader), or the reader itself."""
    return SqlReader(source) if isinstance(source, Engine) else source


def call_groups(t: sa.Table, tz: str) -> dict[str, ColumnElement]:
    """The calls' grouping expressions (CALL_GROUPS) over table `t`, local times in zone `tz`."""
    local = sa.func.timezone(tz, t.c.received_at)
    return {
        "city": sa.literal_column("'CMPD'"),
        "division": sa.func.coalesce(t.c.division_id, sa.literal_column("'(none)'")),
        "npa": sa.func.coalesce(sa.cast(t.c.npa_id, sa.Text), sa.literal_column("'(none)'")),
        "category": sa.func.coalesce(t.c.category, sa.literal_column("'unknown'")),
        "weekday": sa.cast(sa.extract("isodow", local), sa.Integer) - 1,
        "hour": sa.cast(sa.extract("hour", local), sa.Integer),
        "day": sa.cast(local, sa.Date),
        "month": sa.func.to_char(local, sa.literal_column("'YYYY-MM'")),
        # Calls known only by their date have no hour: a 7x24 leaves them out and counts them.
        # (1 or 0: COPY, which the Dask workers read through, writes booleans as t/f.)
        "date_only": sa.cast(t.c.received_at_precision == sa.literal_column("'date'"), sa.Integer),
    }


CALL_GROUPS = tuple(call_groups(models.calls, "UTC"))


def _positions(by: Sequence[str]) -> list[ColumnElement]:
    # GROUP BY 1, 2, ...: a constant group ('CMPD') cannot be named, and a label may shadow a column.
    return [sa.literal_column(str(i + 1)) for i in range(len(by))]


def _groups(by: Sequence[str], known: Sequence[str]) -> None:
    for g in by:
        if g not in known:
            raise ValueError(f"cannot group by {g!r}; one of {', '.join(known)}")


def call_measures(reader: "Engine | SqlReader", flt: Filter, by: Sequence[str] = (),
                  area: tuple[str, object] | None = None) -> pd.DataFrame:
    """Calls under the filter per group: calls, labelled_violent, expected_violent, real, synthetic.

    `by`: any of CALL_GROUPS (city, division, npa as text with '(none)', category with 'unknown',
    weekday 0=Monday, hour, day, month in local time, date_only); `area`: (level, id) of one
    division or NPA. The one count behind the CLI's counts and shares, the 7x24, the map's areas
    and the side panel.
    """
    _groups(by, CALL_GROUPS)
    t = models.calls

    def build(part: Filter | None) -> sa.Select:
        f = part or flt
        groups = call_groups(t, f.tz)
        columns = [groups[g].label(g) for g in by]
        return (sa.select(*columns, sa.func.count().label("calls"),
                          sa.func.count().filter(t.c.label).label("labelled_violent"),
                          sa.func.coalesce(sa.func.sum(t.c.p_violent), 0).label("expected_violent"),
                          sa.func.count().filter(t.c.data_origin == "real").label("real"),
                          sa.func.count().filter(t.c.data_origin == "synthetic").label("synthetic"))
                .where(f.predicate("calls"), *area_condition(t, area)).group_by(*_positions(by)))

    rows = reader_of(reader).aggregate(build, flt, list(by))
    for c in ("calls", "labelled_violent", "real", "synthetic"):
        rows[c] = rows[c].astype("int64")
    rows["expected_violent"] = rows["expected_violent"].astype(float)
    return rows.sort_values(list(by), ignore_index=True) if by else rows


def threshold_counts(reader: "Engine | SqlReader", flt: Filter, thresholds: Sequence[float],
                     by: Sequence[str] = ("npa",)) -> pd.DataFrame:
    """Scored calls under the filter per group whose p_violent reaches each threshold: columns t0, t1, ...

    Calls without a score are left out; `by` as in call_measures. The inputs of the NPA Gi* at
    every probability cut (geo.hotspots.threshold_stability).
    """
    _groups(by, CALL_GROUPS)
    t = models.calls
    cuts = [float(x) for x in thresholds]

    def build(part: Filter | None) -> sa.Select:
        f = part or flt
        groups = call_groups(t, f.tz)
        counts = [sa.func.count().filter(t.c.p_violent >= sa.bindparam(f"cut_{i}", x, type_=sa.Float)).label(f"t{i}")
                  for i, x in enumerate(cuts)]
        return (sa.select(*[groups[g].label(g) for g in by], *counts)
                .where(t.c.p_violent.is_not(None), f.predicate("calls")).group_by(*_positions(by)))

    rows = reader_of(reader).aggregate(build, flt, list(by))
    for i in range(len(cuts)):
        rows[f"t{i}"] = rows[f"t{i}"].astype("int64")
    return rows.sort_values(list(by), ignore_index=True) if by else rows


def local_hour_of_week(t: sa.Table, tz: str) -> ColumnElement:
    """A call's local hour of the week in `tz` as a Core expression (Monday 00-01 = 0)."""
    local = sa.func.timezone(tz, t.c.received_at)
    return (sa.cast(sa.extract("isodow", local), sa.Integer) - 1) * 24 + sa.cast(sa.extract("hour", local), sa.Integer)


def workload_cells(reader: "Engine | SqlReader", flt: Filter) -> pd.DataFrame:
    """Calls with a division under the filter per division_id, local hour of week, category and date_only:
    calls, violent (model label), p1, priority_known. The call side of geo.staffing's load."""
    t = models.calls
    keys = ["division_id", "hour_of_week", "category", "date_only"]

    def build(part: Filter | None) -> sa.Select:
        f = part or flt
        groups = call_groups(t, f.tz)
        return (sa.select(t.c.division_id.label("division_id"), local_hour_of_week(t, f.tz).label("hour_of_week"),
                          groups["category"].label("category"), groups["date_only"].label("date_only"),
                          sa.func.count().label("calls"), sa.func.count().filter(t.c.label).label("violent"),
                          sa.func.count().filter(t.c.priority == 1).label("p1"),
                          sa.func.count(t.c.priority).label("priority_known"))
                .where(t.c.division_id.is_not(None), f.predicate("calls")).group_by(*_positions(keys)))

    rows = reader_of(reader).aggregate(build, flt, keys)
    for c in ("hour_of_week", "date_only", "calls", "violent", "p1", "priority_known"):
        rows[c] = rows[c].astype("int64")
    return rows.sort_values(keys, ignore_index=True)


def source_unit_points(engine: Engine, flt: Filter, source) -> pd.DataFrame:
    """What a source (geo.sources) counts under the filter as points: x, y in EPSG:2264 feet, weight w, local month.

    Row by row (the Gi* on grid cells and the density surfaces bin them themselves); units without a
    location are left out.
    """
    u = source.units(flt).subquery()
    projected = (sa.select(sa.func.ST_Transform(u.c.geom, 2264).label("g"), u.c.w,
                           sa.func.to_char(u.c.local_time, sa.literal_column("'YYYY-MM'")).label("month"))
                 .where(u.c.geom.is_not(None)).subquery())
    query = sa.select(sa.func.ST_X(projected.c.g).label("x"), sa.func.ST_Y(projected.c.g).label("y"),
                      projected.c.w, projected.c.month)
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


UNIT_GROUPS = ("npa", "division", "day", "hour", "category")


def source_values(reader: "Engine | SqlReader", flt: Filter, source, by: Sequence[str] = ("npa",),
                  condition=None) -> pd.DataFrame:
    """What a source (geo.sources) counts under the filter per group (npa, division, day, hour, category): `value`.

    Calls about one incident count once, as the source says; rows without the group's area are
    left out. The Gi* inputs on NPAs, CompStat's daily counts by source and the workload's violent part.
    """
    _groups(by, UNIT_GROUPS)
    extra = ("category",) if "category" in by else ()

    def build(part: Filter | None) -> sa.Select:
        u = source.units(flt, extra=extra, condition=condition, within=part).subquery()
        groups = {"npa": u.c.npa_id, "division": u.c.division_id, "day": u.c.local_date,
                  "hour": sa.cast(sa.extract("hour", u.c.local_time), sa.Integer),
                  "category": sa.func.coalesce(u.c.category, sa.literal_column("'unknown'")) if extra else None}
        columns = [groups[g].label(g) for g in by]
        areas = [groups[g].is_not(None) for g in by if g in ("npa", "division")]
        return sa.select(*columns, sa.func.sum(u.c.w).label("value")).where(*areas).group_by(*_positions(by))

    rows = reader_of(reader).aggregate(build, flt, list(by))
    rows["value"] = rows["value"].astype(float)
    return rows.sort_values(list(by), ignore_index=True) if by else rows


def call_counts(engine: "Engine | SqlReader", flt: Filter, by: str = "division") -> pd.DataFrame:
    """Calls per area and category, each category's share of the area's calls, and violent shares.

    Columns: area, category, calls, share (of the area's calls), plus per area: total,
    labelled_violent (model label), expected_violent (sum of probabilities).
    """
    if by not in AREA_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(AREA_COLUMNS)}, not {by!r}")
    rows = call_measures(engine, flt, (by, "category")).rename(columns={by: "area"})
    rows = rows[["area", "category", "calls", "labelled_violent", "expected_violent"]]
    if rows.empty:
        return rows.assign(share=[], total=[])
    totals = rows.groupby("area")[["calls", "labelled_violent", "expected_violent"]].transform("sum")
    rows["total"] = totals["calls"]
    rows["share"] = rows["calls"] / rows["total"]
    rows["area_labelled_violent"] = totals["labelled_violent"]
    rows["area_expected_violent"] = totals["expected_violent"].round(3)
    rows["violent_share"] = rows["area_labelled_violent"] / rows["total"]
    return rows


def area_condition(t: sa.Table, area: tuple[str, object] | None) -> list[ColumnElement]:
    """One area as a condition beside the filter's own: area = (by, id), by 'division' or 'npa'."""
    if area is None:
        return []
    by, value = area
    if not AREA_COLUMNS.get(by):
        raise ValueError(f"area level must be one of {', '.join(k for k, v in AREA_COLUMNS.items() if v)}, not {by!r}")
    column = t.c[AREA_COLUMNS[by]]
    return [column == sa.bindparam("m_area", int(value) if by == "npa" else str(value), type_=column.type)]


def data_coverage(engine: Engine, table: str = "calls", origin: str | None = None, tz: str | None = None
                  ) -> tuple[date | None, date | None]:
    """First and last local dates holding any row of `table` (of one origin if given): what the data cover."""
    column = TABLE_COLUMNS[table].time
    where = "data_origin = :origin" if origin else "TRUE"
    local = column if TABLE_COLUMNS[table].time_is_date else f"({column} AT TIME ZONE :tz)::date"
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            f"SELECT min({local}), max({local})"
            f" FROM {table} WHERE {where}"), {"tz": tz or _tz(), "origin": origin}).one())


# --- the 7x24 matrix -----------------------------------------------------------------------------
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class WeekHourMatrix:
    """Calls per local weekday (rows, Monday first) and hour of day (columns) over a period.

    `totals` are counts; `occurrences` how often each weekday-hour occurs in the period (a 30-day
    period holds some weekdays five times and others four; daylight saving removes one 02h and
    doubles one 01h a year); `mean` is the count per occurrence, the number to compare cells by.
    """

    totals: pd.DataFrame
    occurrences: pd.DataFrame
    left_out_date_only: int   # calls known only by their date: no hour, so in no cell
    start: datetime           # the hours counted: [start, end), the filter's bounds within the data
    end: datetime

    @property
    def mean(self) -> pd.DataFrame:
        """Calls per occurrence of each weekday-hour (NaN where the period holds none)."""
        return self.totals / self.occurrences.where(self.occurrences > 0)

    def to_frame(self) -> pd.DataFrame:
        """One row per weekday-hour: weekday, hour, calls, occurrences, mean_per_occurrence."""
        mean = self.mean
        return pd.DataFrame([{"weekday": d, "hour": h, "calls": int(self.totals.loc[d, h]),
                              "occurrences": int(self.occurrences.loc[d, h]),
                              "mean_per_occurrence": float(mean.loc[d, h])}
                             for d in WEEKDAYS for h in range(24)])


def hour_occurrences(start: datetime, end: datetime, tz: str) -> pd.DataFrame:
    """How many times each local weekday-hour begins in [start, end): a 7x24 table of counts.

    Counted on the clock hours themselves (in UTC, then read locally), so the hour skipped when
    clocks spring forward is not counted and the hour repeated when they fall back counts twice.
    """
    lo = pd.Timestamp(start).tz_convert("UTC").ceil("h")
    hi = pd.Timestamp(end).tz_convert("UTC")
    hours = pd.date_range(lo, hi, freq="h", inclusive="left").tz_convert(tz) if lo < hi else pd.DatetimeIndex([], tz=tz)
    table = pd.crosstab(np.asarray(hours.day_of_week), np.asarray(hours.hour)) if len(hours) else pd.DataFrame()
    table = table.reindex(index=range(7), columns=range(24), fill_value=0).astype(int)
    table.index = list(WEEKDAYS)
    table.columns = list(range(24))
    return table


def hour_weekday(engine: "Engine | SqlReader", flt: Filter, *, area: tuple[str, object] | None = None) -> WeekHourMatrix:
    """The 7x24 matrix of calls under a filter, optionally in one area.

    Calls known only by their date (received_at_precision 'date') have no hour: they are left out
    of every cell (never put at midnight) and counted in `left_out_date_only`. Open filter ends,
    and ends beyond the data, are closed at the local days the calls cover.
    """
    tz = flt.tz
    counted = call_measures(engine, flt, ("date_only", "weekday", "hour"), area)
    dated = counted["date_only"].astype(bool)
    left_out = counted.loc[dated, "calls"].sum()
    rows = counted[~dated]
    totals = rows.pivot_table(index="weekday", columns="hour", values="calls", aggfunc="sum", fill_value=0)
    totals = totals.reindex(index=range(7), columns=range(24), fill_value=0).astype(int)
    totals.index = list(WEEKDAYS)
    totals.columns = list(range(24))
    first, last = data_coverage(reader_of(engine).engine, "calls", flt.origin, tz)
    zone = ZoneInfo(tz)
    lo = datetime.combine(first, time(0), zone) if first else datetime.now(zone)
    hi = datetime.combine(last + timedelta(days=1), time(0), zone) if last else lo
    start = max(flt.start, lo) if flt.start else lo
    end = min(flt.end, hi) if flt.end else hi
    end = max(end, start)
    return WeekHourMatrix(totals=totals, occurrences=hour_occurrences(start, end, tz), left_out_date_only=int(left_out),
                          start=start, end=end)


# --- CompStat ------------------------------------------------------------------------------------
# The CompStat report (NYPD practice): the report week (Monday-Sunday), the 28 days and the year to
# date ending with it, each against the same period a year earlier. Methods: docs/methods.md.
COMPARISONS = {"year": "the same period a year earlier", "previous": "the period just before (back to back)"}
HISTORY_PAIRS = 26   # at most this many earlier pairs estimate an area's dispersion
HISTORY_DAYS = 6 * 365   # and none starts more than six years before the window


def report_end(as_of: date) -> date:
    """The last day of the report week: the Sunday of the last complete Monday-Sunday week before `as_of`."""
    day = as_of - timedelta(days=1)
    return day - timedelta(days=day.isoweekday() % 7)


def _weeks_back(period: Filter) -> Filter:
    # 52 weeks (364 days) back: the same weeks, Monday to Sunday, a year earlier.
    return period.with_days(period.start_date - timedelta(days=364), period.end_date - timedelta(days=364))


def _a_year_back(day: date, feb29: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:   # 29 February in a year after which there is none
        return feb29


def _same_dates_a_year_back(period: Filter) -> Filter:
    # The same calendar dates a year earlier; 29 February begins a period on 1 March and ends one on 28 February.
    first = period.start_date
    start = _a_year_back(first, date(first.year - 1, 3, 1))
    last = period.end_date - timedelta(days=1)
    last = _a_year_back(last, date(last.year - 1, 2, 28))
    return period.with_days(start, max(start, last + timedelta(days=1)))


def _just_before(period: Filter) -> Filter:
    return period.with_days(period.start_date - timedelta(days=period.days), period.start_date)


def _window_rules(as_of: date, compare: str, tz: str | None = None) -> dict[str, tuple[Filter, object]]:
    if compare not in COMPARISONS:
        raise ValueError(f"compare must be one of {', '.join(COMPARISONS)}, not {compare!r}")
    last = report_end(as_of)
    end = last + timedelta(days=1)
    week = Filter.local_days(end - timedelta(days=7), end, tz=tz)
    four = Filter.local_days(end - timedelta(days=28), end, tz=tz)
    ytd = Filter.local_days(date(last.year, 1, 1), end, tz=tz)
    back = _weeks_back if compare == "year" else _just_before
    # Year to date is always against the same dates a year earlier: the days before 1 January are
    # last year's end, no like-for-like comparison.
    return {"week": (week, back), "28 days": (four, back), "year to date": (ytd, _same_dates_a_year_back)}


def compstat_windows(as_of: date, compare: str = "year", tz: str | None = None) -> dict[str, tuple[Filter, Filter]]:
    """The report's (current, comparison) periods for a report date: week, 28 days, year to date.

    All three end on the Sunday of the last complete week before `as_of`. `compare='year'`: the
    week and 28 days against the same weeks 52 weeks earlier, the year to date against the same
    calendar dates a year earlier (29 February against 28 February); `compare='previous'`: the
    week and 28 days against the ones just before them.
    """
    return {name: (current, rule(current)) for name, (current, rule) in _window_rules(as_of, compare, tz).items()}


def _overlaps(a: Filter, b: Filter) -> bool:
    return a.start < b.end and b.start < a.end


def history_pairs(current: Filter, comparison: Filter, rule, first: date,
                  max_pairs: int = HISTORY_PAIRS, max_days: int = HISTORY_DAYS) -> list[tuple[Filter, Filter]]:
    """Earlier (block, comparison) pairs of the window's length, compared by the same rule, within the data.

    Blocks step back from the window one length at a time; a pair is kept only if neither period
    touches a period already used (the window, its comparison or an earlier pair), so every day
    counts in at most one pair and the pairs' deviations are independent under the model.
    """
    used = [current, comparison]
    pairs: list[tuple[Filter, Filter]] = []
    length = current.days
    begin = current.start_date
    j = 1
    while len(pairs) < max_pairs:
        block = current.with_days(begin - timedelta(days=j * length), begin - timedelta(days=(j - 1) * length))
        other = rule(block)
        if min(block.start_date, other.start_date) < first or (begin - block.start_date).days > max_days:
            break
        if other.days > 0 and not any(_overlaps(x, u) for x in (block, other) for u in used):
            pairs.append((block, other))
            used += [block, other]
        j += 1
    return pairs


def history_dispersion(block: np.ndarray, other: np.ndarray, block_days: np.ndarray,
                       other_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each area's dispersion phi and its degrees of freedom from its earlier pairs of counts.

    block, other: (pairs, areas) counts; *_days: (pairs,) their lengths. Conditional on a pair's
    total n, the block's count is (quasi-)binomial with mean n*pi and variance phi*n*pi*(1-pi),
    pi = r*t/(r*t + u) for the area's usual rate ratio r (fitted: pooled rates). phi is the
    Pearson chi-square over the pairs with n > 0 divided by their number less one (McCullagh and
    Nelder 1989, quasi-likelihood), floored at 1 (Poisson). df < 1: not estimable (phi NaN).
    """
    block, other = np.asarray(block, dtype=float), np.asarray(other, dtype=float)
    t = np.asarray(block_days, dtype=float)[:, None]
    u = np.asarray(other_days, dtype=float)[:, None]
    n = block + other
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (block.sum(axis=0) / t.sum()) / (other.sum(axis=0) / u.sum())   # inf when no comparison counts
        pi = np.where(np.isinf(ratio), 1.0, ratio * t / (ratio * t + u))
        pi = np.nan_to_num(pi, nan=0.5)
        var = n * pi * (1 - pi)
        resid2 = np.where(var > 0, (block - n * pi) ** 2 / var, 0.0)
    df = (n > 0).sum(axis=0) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(df >= 1, np.maximum(1.0, resid2.sum(axis=0) / np.maximum(df, 1)), np.nan)
    return phi, df


def overdispersed_change_test(current, prior, current_days: float, prior_days: float, phi, df) -> np.ndarray:
    """Two-sided p-values that current and prior counts share one daily rate, allowing overdispersion phi.

    Given n = current + prior, current has mean n*p0 (p0 = t1/(t1+t0)) and variance phi*n*p0*(1-p0)
    under equal rates; the continuity-corrected score z is referred to Student's t with the
    dispersion's degrees of freedom (quasi-Poisson inference). n = 0: p = 1; phi unknown: NaN.
    """
    from scipy.stats import t as student

    c, p = np.asarray(current, dtype=float), np.asarray(prior, dtype=float)
    phi, df = np.asarray(phi, dtype=float), np.asarray(df, dtype=float)
    n = c + p
    p0 = current_days / (current_days + prior_days)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.maximum(np.abs(c - n * p0) - 0.5, 0.0) / np.sqrt(phi * n * p0 * (1 - p0))
        out = 2 * student.sf(z, np.where(df >= 1, df, np.nan))
    out = np.where(n == 0, 1.0, out)
    return np.where(np.isnan(phi) & (n > 0), np.nan, np.minimum(out, 1.0))


def _count(x: float) -> int | float:
    """A window's total: whole for counted rows, to 3 decimals for expected violent calls (sums of probabilities)."""
    return int(x) if float(x).is_integer() else round(float(x), 3)


def compstat_table(daily: pd.DataFrame, as_of: date, coverage: tuple[date | None, date | None], *,
                   compare: str = "year", alpha: float = 0.05, areas: list | None = None) -> pd.DataFrame:
    """CompStat from daily counts: rows of window x area with counts, % change, dispersion, p, q, significance.

    daily: one row per local date (missing dates are zero), one column per area. coverage: the
    first and last dates the data cover (a window outside them is reported, not tested). q-values:
    Benjamini-Hochberg across the areas of each window; significant: q < alpha. `areas`: areas
    to report (and test) even without a single count, beside those in `daily`.
    """
    from scipy.stats import false_discovery_control

    first, last = coverage
    if areas is not None:
        daily = daily.reindex(columns=list(areas) + [a for a in daily.columns if a not in set(areas)], fill_value=0)
    areas = list(daily.columns)
    if daily.empty:
        counts_by_day = np.zeros((0, len(areas)))
        days = pd.DatetimeIndex([])
    else:
        index = pd.DatetimeIndex(pd.to_datetime(daily.index))
        full = pd.date_range(index.min(), index.max(), freq="D")
        counts_by_day = daily.set_axis(index).reindex(full, fill_value=0).to_numpy(dtype=float)
        days = full
    cum = np.vstack([np.zeros((1, len(areas))), np.cumsum(counts_by_day, axis=0)])

    def total(period: Filter) -> np.ndarray:
        # Sum over [start, end) by cumulative sums; days outside the frame hold no counts.
        if not len(days):
            return np.zeros(len(areas))
        a = int(np.clip((pd.Timestamp(period.start_date) - days[0]).days, 0, len(days)))
        b = int(np.clip((pd.Timestamp(period.end_date) - days[0]).days, 0, len(days)))
        return cum[b] - cum[a]

    out = []
    for name, (current, rule) in _window_rules(as_of, compare).items():
        prior = rule(current)
        covered = (first is not None and last is not None and first <= prior.start_date and first <= current.start_date
                   and last >= current.end_date - timedelta(days=1) and last >= prior.end_date - timedelta(days=1))
        c, p = total(current), total(prior)
        pairs = history_pairs(current, prior, rule, first) if covered else []
        if pairs:
            phi, df = history_dispersion(np.array([total(b) for b, _ in pairs]), np.array([total(o) for _, o in pairs]),
                                         np.array([b.days for b, _ in pairs]), np.array([o.days for _, o in pairs]))
        else:
            phi, df = np.full(len(areas), np.nan), np.full(len(areas), -1)
        if covered:
            p_values = overdispersed_change_test(c, p, current.days, prior.days, phi, df)
        else:
            p_values = np.full(len(areas), np.nan)
        q_values = np.full(len(areas), np.nan)
        tested = np.isfinite(p_values)
        if tested.any():
            q_values[tested] = false_discovery_control(p_values[tested], method="bh")
        for i, area in enumerate(areas):
            rate_c, rate_p = c[i] / current.days, p[i] / prior.days
            change = (rate_c - rate_p) / rate_p * 100 if covered and rate_p else float("nan")
            if not covered:
                note = "data do not cover both periods"
            elif not np.isfinite(p_values[i]):
                note = f"history too short to estimate the dispersion ({len(pairs)} earlier pairs)"
            else:
                note = ""
            out.append({"window": name, "area": area, "current": _count(c[i]), "prior": _count(p[i]),
                        "current_period": f"{current.start_date}..{current.end_date - timedelta(days=1)}",
                        "prior_period": f"{prior.start_date}..{prior.end_date - timedelta(days=1)}",
                        "current_days": current.days, "prior_days": prior.days, "compare": compare,
                        "pct_change": round(change, 1), "dispersion": round(float(phi[i]), 3),
                        "history_pairs": int(max(df[i] + 1, 0)) if covered else 0,
                        "p_value": float(p_values[i]), "q_value": float(q_values[i]),
                        "significant": bool(np.isfinite(q_values[i]) and q_values[i] < alpha),
                        "data_covers_both": covered, "note": note})
    return pd.DataFrame(out)


def daily_counts(engine: Engine, flt: Filter, by: str, start: date, end: date, table: str = "calls",
                 source=None) -> pd.DataFrame:
    """Rows of `table` under the filter per local date in [start, end) (rows) and area (columns);
    with a `source` (geo.sources.Source), what it counts (calls about one incident once) instead."""
    days = flt.with_days(start, end)
    if source is not None:
        rows = source_values(engine, days, source, ("day",) if by == "city" else (by, "day"))
        rows = rows.rename(columns={"value": "n", by: "area"}).assign(**({"area": "CMPD"} if by == "city" else {}))
        if by == "npa":
            rows["area"] = rows["area"].astype(int).astype(str)
        return _wide_days(rows)
    if table == "calls":
        rows = call_measures(engine, days, (by, "day")).rename(columns={by: "area", "calls": "n"})
        return _wide_days(rows)
    else:
        cols = TABLE_COLUMNS[table]
        where, params = days.where(table)
        day = cols.time if cols.time_is_date else f"({cols.time} AT TIME ZONE :tz)::date"
        sql = f"SELECT {_area_expr(by)} AS area, {day} AS day, count(*) AS n FROM {table} WHERE {where} GROUP BY 1, 2"
        params = {**params, "tz": flt.tz}
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params=params)
    return _wide_days(rows)


def _wide_days(rows: pd.DataFrame) -> pd.DataFrame:
    """Counts per (area, day) rows as one row per day and one column per area."""
    if rows.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([]))
    wide = rows.pivot_table(index="day", columns="area", values="n", aggfunc="sum", fill_value=0)
    wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index))
    return wide.sort_index(axis=1)


AREA_TABLES = {"division": ("divisions", "division_id"), "npa": ("neighborhoods", "npa_id")}


def level_areas(engine: Engine, by: str) -> list[str]:
    """Every area id of a level ('division' or 'npa') as text, as `_area_expr` writes them."""
    table, column = AREA_TABLES[by]
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(f"SELECT {column}::text FROM {table} ORDER BY {column}"))]


def compstat(engine: Engine, as_of: date, *, by: str = "city", flt: Filter | None = None, compare: str = "year",
             alpha: float = 0.05, table: str = "calls", areas: list | None = None,
             source: str | None = None) -> pd.DataFrame:
    """The CompStat report for `as_of`: week, 28 days and year to date per area (see compstat_table).

    The filter's dates are replaced by the windows; its other conditions (category, violent,
    probability, division, origin, box) apply. Every division or NPA is reported and tested, with
    or without calls (`areas` overrides the list). The one CompStat of the CLI and the map's panel.
    Without `source` the rows of `table` are counted; with one (geo.sources: incidents, homicides,
    labelled, expected) what it counts, and attrs['source'] names it.
    """
    from geo.sources import check_origin, get_source

    flt = (flt or Filter()).without_dates()
    src = get_source(source) if source is not None else None
    table = src.table if src is not None else table
    if areas is None and by != "city":
        areas = level_areas(engine, by)
    coverage = data_coverage(engine, table, flt.origin, flt.tz)
    rules = _window_rules(as_of, compare, flt.tz)
    starts = [min(c.start_date, rule(c).start_date) for c, rule in rules.values()]
    if coverage[0] is not None:
        for current, rule in rules.values():
            starts += [o.start_date for _, o in history_pairs(current, rule(current), rule, coverage[0])]
    end = max(c.end_date for c, _ in rules.values())
    if src is not None:
        check_origin(engine, src, flt.with_days(min(starts), end), flt.origin)
    daily = daily_counts(engine, flt, by, min(starts), end, table, src)
    result = compstat_table(daily, as_of, coverage, compare=compare, alpha=alpha, areas=areas)
    result.attrs["source"] = src.describe(flt.origin) if src is not None else f"{table}: every row under the filter"
    return result


def npa_rates(engine: Engine, period: Filter) -> pd.DataFrame:
    """Calls and violent calls per NPA with rates per 1,000 residents (NPA population, latest year)."""
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text("SELECT npa_id, population, population_year FROM neighborhoods ORDER BY npa_id"), conn)
    counted = call_measures(engine, period, ("npa",))
    counted = counted[counted["npa"] != "(none)"].assign(npa_id=lambda d: d["npa"].astype(int))
    rows = rows.merge(counted[["npa_id", "calls", "labelled_violent", "expected_violent"]], on="npa_id", how="left")
    rows[["calls", "labelled_violent"]] = rows[["calls", "labelled_violent"]].fillna(0).astype("int64")
    rows["expected_violent"] = rows["expected_violent"].fillna(0.0)
    # NPAs with no residents (parks, the airport) get no rate rather than a division by zero.
    per_1000 = 1000.0 / rows["population"].where(rows["population"] > 0)
    rows["calls_per_1000"] = (rows["calls"] * per_1000).round(2)
    rows["violent_per_1000"] = (rows["labelled_violent"] * per_1000).round(3)
    rows["expected_violent_per_1000"] = (rows["expected_violent"] * per_1000).round(3)
    return rows


def clearance_rates(engine: Engine, period: Filter, by: str = "division") -> pd.DataFrame:
    """Share of crime incidents (not 800-series reports, not Unfounded) cleared, per area and category.

    As the FBI counts clearances (UCR/NIBRS): cleared by arrest (including an arrest by another
    agency) or by exceptional means. CMPD writes that in CLEARANCE_STATUS ('Cleared by Arrest',
    'Exceptionally Cleared', 'Cleared by Arrest by Another Agency'); older exports wrote
    'Closed/Cleared' with the kind in CLEARANCE_DETAIL_STATUS. Unfounded reports are not crimes and
    are outside the denominator (is_crime). Reports in the period are counted by DATE_REPORTED.
    """
    if by not in AREA_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(AREA_COLUMNS)}, not {by!r}")
    rows = incident_measures(engine, period, (by, "category")).rename(columns={by: "area"})
    rows = rows[["area", "category", "incidents", "cleared"]]
    rows["clearance_rate"] = (rows["cleared"] / rows["incidents"]).round(4)
    return rows


# As the FBI counts clearances: CLEARANCE_STATUS, or older exports' 'Closed/Cleared' with the kind in the detail.
CLEARED_STATUSES = ("Cleared by Arrest", "Exceptionally Cleared", "Cleared by Arrest by Another Agency")
INCIDENT_GROUPS = ("city", "division", "npa", "category")


def _incident_groups(t: sa.Table) -> dict[str, ColumnElement]:
    return {
        "city": sa.literal_column("'CMPD'"),
        "division": sa.func.coalesce(t.c.division_id, sa.literal_column("'(none)'")),
        "npa": sa.func.coalesce(sa.cast(t.c.npa_id, sa.Text), sa.literal_column("'(none)'")),
        "category": sa.func.coalesce(t.c.category, sa.literal_column("'unknown'")),
    }


def incident_measures(reader: "Engine | SqlReader", flt: Filter, by: Sequence[str] = ()) -> pd.DataFrame:
    """Crime incidents (not Unfounded, not 800-series) under the filter per group: incidents, cleared.

    `by`: any of INCIDENT_GROUPS (city, division and npa as text with '(none)', category with
    'unknown'); the filter reads incidents by DATE_REPORTED. Clearance rates are built on it.
    """
    _groups(by, INCIDENT_GROUPS)
    t = models.incidents

    def build(part: Filter | None) -> sa.Select:
        f = part or flt
        groups = _incident_groups(t)
        cleared = sa.or_(t.c.clearance_status.in_(CLEARED_STATUSES),
                         sa.and_(t.c.clearance_status.ilike("closed/cleared"),
                                 t.c.clearance_detail_status.in_(CLEARED_STATUSES[:2])))
        return (sa.select(*[groups[g].label(g) for g in by], sa.func.count().label("incidents"),
                          sa.func.count().filter(cleared).label("cleared"))
                .where(t.c.is_crime, f.predicate("incidents")).group_by(*_positions(by)))

    rows = reader_of(reader).aggregate(build, flt, list(by))
    for c in ("incidents", "cleared"):
        rows[c] = rows[c].astype("int64")
    return rows.sort_values(list(by), ignore_index=True) if by else rows


# --- leading indicators and outreach ---------------------------------------------------------
@dataclass
class IndicatorPanel:
    """NPA x complete-month counts: calls per category (by date received), violent incidents (by occurrence)."""

    months: list[date]              # first days of the complete months, consecutive
    npas: np.ndarray                # NPA ids, the rows
    calls: dict[str, np.ndarray]    # category -> (npas, months) counts
    violent: np.ndarray             # (npas, months) violent incidents
    left_out_months: list[str]      # months in the period the data do not cover whole (YYYY-MM: why)
    violent_dated: dict[str, int]   # violent incidents dated by 'occurrence' (DATE_INCIDENT_BEGAN) or 'report'


def _month_add(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def complete_months(period: Filter, **coverages: tuple[date | None, date | None]) -> tuple[list[date], list[str]]:
    """Calendar months inside the period that every source (name=(first, last)) covers whole, and those left out."""
    begin, end = period.start_date, period.end_date
    first = _month_add(date(begin.year, begin.month, 1), 0)
    months, left_out = [], []
    m = first
    while m < end:
        nxt = _month_add(m, 1)
        reasons = []
        if m < begin or nxt > end:
            reasons.append("the period holds part of it")
        for name, (lo, hi) in coverages.items():
            if lo is None or hi is None:
                reasons.append(f"no {name}")
            elif lo > m or hi < nxt - timedelta(days=1):
                reasons.append(f"{name} cover {lo}..{hi}")
        if reasons:
            left_out.append(f"{m:%Y-%m}: {'; '.join(reasons)}")
        else:
            months.append(m)
        m = nxt
    # Coverage is one span per source, so the complete months are consecutive.
    return months, left_out


def violent_incident_months(reader: "Engine | SqlReader", flt: Filter) -> pd.DataFrame:
    """Violent incidents (FBI violent codes, not unfounded) with an NPA per npa_id and local month of occurrence.

    Columns npa_id, month (first day), violent, by_occurrence. An incident is dated by when it happened
    where CMPD gives it (DATE_INCIDENT_BEGAN, not after the report), else by its report date; only the
    filter's dates (read on that date), zone and origin apply.
    """
    from geo.taxonomy import load_taxonomy

    t = models.incidents
    began = sa.and_(t.c.date_incident_began.is_not(None), t.c.date_incident_began <= t.c.date_reported)
    occurred = sa.case((began, t.c.date_incident_began), else_=t.c.date_reported)
    codes = sorted(load_taxonomy().violent_codes)

    def build(part: Filter | None) -> sa.Select:
        f = part or flt
        month = sa.cast(sa.func.date_trunc("month", sa.func.timezone(f.tz, occurred)), sa.Date)
        conditions = [t.c.npa_id.is_not(None), t.c.highest_nibrs_code.in_(codes), t.c.is_crime.is_not(sa.false()),
                      occurred >= f.start, occurred < f.end]
        if flt.origin:
            conditions.append(t.c.data_origin == flt.origin)
        return (sa.select(t.c.npa_id, month.label("month"), sa.func.count().filter(began).label("by_occurrence"),
                          sa.func.count().label("violent"))
                .where(*conditions).group_by(*_positions(("npa_id", "month"))))

    return reader_of(reader).aggregate(build, flt, ["npa_id", "month"])


def indicator_panel(engine: Engine, period: Filter, flt: Filter | None = None) -> IndicatorPanel:
    """Counts per NPA and complete month of calls per category and of violent incidents (FBI violent codes, not unfounded).

    A month is complete when the period holds all of it and both the calls and the incidents
    cover it from its first to its last day (incidents by report date: what has been reported);
    a half-finished last month is left out and listed. `flt` narrows the calls (dates ignored).
    """
    tz = period.tz
    flt = (flt or Filter(tz=tz)).without_dates()
    calls_cover = data_coverage(engine, "calls", flt.origin, tz)
    incidents_cover = data_coverage(engine, "incidents", flt.origin, tz)
    months, left_out = complete_months(period, calls=calls_cover, incidents=incidents_cover)
    empty = IndicatorPanel(months, np.array([], dtype=int), {}, np.zeros((0, len(months))), left_out,
                           {"occurrence": 0, "report": 0})
    if not months:
        return empty
    lo, hi = months[0], _month_add(months[-1], 1)
    calls = call_measures(engine, flt.with_days(lo, hi), ("npa", "month", "category"))
    calls = calls[calls["npa"].astype(str) != "(none)"]
    calls = pd.DataFrame({"npa_id": calls["npa"].astype(int), "month": calls["month"], "category": calls["category"],
                          "n": calls["calls"]})
    violent = violent_incident_months(engine, Filter.local_days(lo, hi, tz=tz, origin=flt.origin))
    npas = np.array(sorted(set(calls["npa_id"]) | set(violent["npa_id"])), dtype=int)
    if not len(npas):
        return empty
    row = {int(n): i for i, n in enumerate(npas)}
    col = {m: j for j, m in enumerate(months)}

    def grid(frame: pd.DataFrame, value: str) -> np.ndarray:
        out = np.zeros((len(npas), len(months)))
        for n, m, v in zip(frame["npa_id"], frame["month"], frame[value]):
            out[row[int(n)], col[pd.Timestamp(m).date()]] += v
        return out

    by_category = {str(c): grid(rows, "n") for c, rows in calls.groupby("category")}
    occurrence = int(violent["by_occurrence"].sum())
    return IndicatorPanel(months, npas, by_category, grid(violent, "violent"), left_out,
                          {"occurrence": occurrence, "report": int(violent["violent"].sum()) - occurrence})


def _relative(a: np.ndarray) -> np.ndarray:
    # Each NPA's counts as a share of its own monthly mean: a city-wide summer peak multiplies every
    # NPA's counts, so on this scale it is the same for all and the month effects take it out.
    mean = a.mean(axis=1, keepdims=True)
    return np.divide(a, mean, out=np.zeros_like(a), where=mean > 0)


def _two_way_demean(a: np.ndarray) -> np.ndarray:
    # NPA and month fixed effects on a balanced panel: subtract row and column means, add the grand mean.
    return a - a.mean(axis=1, keepdims=True) - a.mean(axis=0, keepdims=True) + a.mean()


def indicator_test(calls: dict[str, np.ndarray], violent: np.ndarray, *, permutations: int = 999, seed: int = 0,
                   min_calls: int = 200) -> pd.DataFrame:
    """Does a category's calls in month t go with violent incidents in month t+1, beyond what is expected?

    Per category, on the NPA x month panel with every count relative to the NPA's own monthly mean:
    violent[t+1] = NPA effect + month effect + beta * calls[t] + delta * violent[t] + error (two-way
    fixed effects by demeaning, Frisch-Waugh). beta: the relative change in next month's violence
    that goes with a relative change in this month's calls.
    Inference: the NPA-clustered t of beta, referred to its distribution when the categories'
    whole NPA series are permuted across NPAs (the same permutations for every category), which
    keeps each series' time dependence; two-sided p = (1 + #|t*| >= |t|) / (1 + permutations).
    q: Benjamini-Hochberg across the categories tested.
    """
    from scipy.stats import false_discovery_control

    columns = ["category", "beta", "partial_r", "t", "p_value", "q_value", "significant", "npas", "months", "calls"]
    violent = np.asarray(violent, dtype=float)
    n, months = violent.shape
    if n < 3 or months < 4:
        return pd.DataFrame(columns=columns)
    relative = _relative(violent)
    ty, tl = _two_way_demean(relative[:, 1:]), _two_way_demean(relative[:, :-1])
    s_lag = float((tl ** 2).sum())
    c_y = float((ty * tl).sum()) / s_lag if s_lag else 0.0
    ey = ty - c_y * tl                       # the target with its own lag partialled out
    lag_ey, lag2, eyy = (tl * ey).sum(axis=1), (tl ** 2).sum(axis=1), float((ey ** 2).sum())
    rng = np.random.default_rng(seed)
    perms = np.vstack([np.arange(n)] + [rng.permutation(n) for _ in range(permutations)])
    rows = np.arange(n)[None, :]
    out = []
    for category, x in sorted(calls.items()):
        x = np.asarray(x, dtype=float)
        if x.sum() < min_calls:
            continue
        tx = _two_way_demean(_relative(x[:, :-1]))
        # Cross-products of every NPA's target with every NPA's calls series: a permutation is then
        # a pick of one entry per row, so 999 permutations cost no more regressions.
        g, h, x2 = ey @ tx.T, tl @ tx.T, (tx ** 2).sum(axis=1)
        gp, hp, x2p = g[rows, perms], h[rows, perms], x2[perms]
        a = hp.sum(axis=1)
        c = a / s_lag if s_lag else np.zeros_like(a)
        sxy, sxx = gp.sum(axis=1), x2p.sum(axis=1) - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = sxy / sxx
            score = (gp - c[:, None] * lag_ey) - beta[:, None] * (x2p - 2 * c[:, None] * hp + c[:, None] ** 2 * lag2)
            t = beta / np.sqrt((score ** 2).sum(axis=1) / sxx ** 2)
        if not np.isfinite(t[0]):
            continue
        p = (1 + np.sum(np.abs(t[1:]) >= abs(t[0]) - 1e-12)) / (1 + permutations)
        out.append({"category": category, "beta": float(beta[0]), "partial_r": float(sxy[0] / np.sqrt(sxx[0] * eyy)),
                    "t": float(t[0]), "p_value": float(p), "npas": n, "months": months - 1, "calls": int(x.sum())})
    if not out:
        return pd.DataFrame(columns=columns)
    result = pd.DataFrame(out)
    result["q_value"] = false_discovery_control(result["p_value"].to_numpy(), method="bh")
    result["significant"] = result["q_value"] < 0.05
    return result[columns].sort_values(["q_value", "t"], ascending=[True, False]).reset_index(drop=True)


def leading_indicators(engine: Engine, period: Filter, *, min_calls: int = 200, permutations: int = 999,
                       seed: int = 0, flt: Filter | None = None) -> pd.DataFrame:
    """Which call categories in one month go with more violent incidents the next month, within NPAs.

    indicator_panel (complete months, occurrence dates) then indicator_test. attrs: months used,
    months left out and why, how the violent incidents were dated. Association, not cause: it
    says where to look, not what would happen if calls changed.
    """
    panel = indicator_panel(engine, period, flt)
    result = indicator_test(panel.calls, panel.violent, permutations=permutations, seed=seed, min_calls=min_calls)
    result.attrs = {"months": [f"{m:%Y-%m}" for m in panel.months], "left_out_months": panel.left_out_months,
                    "violent_dated": panel.violent_dated, "permutations": permutations, "seed": seed}
    return result


# Categories that are candidates for a non-police (or co-responder) response.
OUTREACH_CATEGORIES = ("mental_health_welfare", "domestic_violence", "disorder")


def outreach_flags(engine: Engine, flt: Filter, by: str = "npa", *, ratio: float = 1.25,
                   min_calls: int = 50) -> pd.DataFrame:
    """Areas where mental health, welfare, domestic or disorder calls dominate the workload, under the whole filter.

    An area is flagged for a category when that category's share of the area's calls is at least
    `ratio` times the city's share and the area has at least `min_calls` such calls.
    """
    rows = call_counts(engine, flt, by)
    if rows.empty:
        return rows
    columns = ["area", "category", "calls", "total", "share", "city_share", "ratio_to_city"]
    city = rows.groupby("category")["calls"].sum() / rows["calls"].sum()
    rows = rows[rows["category"].isin(OUTREACH_CATEGORIES)].copy()
    if rows.empty:   # a filter without outreach calls (violent calls only, one other category)
        return pd.DataFrame(columns=columns)
    rows["city_share"] = rows["category"].map(city)
    rows["ratio_to_city"] = (rows["share"] / rows["city_share"]).round(2)
    flagged = rows[(rows["ratio_to_city"] >= ratio) & (rows["calls"] >= min_calls)]
    return flagged[columns].sort_values(["ratio_to_city", "calls"], ascending=False).reset_index(drop=True)


def monthly_trend(engine: "Engine | SqlReader", flt: Filter, by: str = "city") -> pd.DataFrame:
    """Calls, labelled-violent and expected-violent calls per local calendar month and area under the filter."""
    if by not in AREA_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(AREA_COLUMNS)}, not {by!r}")
    rows = call_measures(engine, flt, (by, "month")).rename(columns={by: "area"})
    rows["expected_violent"] = rows["expected_violent"].round(2)
    return rows[["area", "month", "calls", "labelled_violent", "expected_violent"]]
