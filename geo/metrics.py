"""Counts and totals: the offense history CMPD published, by year, category and area."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.filters import TABLE_COLUMNS, Filter

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


@dataclass(frozen=True)
class Period:
    """A half-open local-date range [start, end)."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def _area_expr(by: str) -> str:
    if by not in AREA_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(AREA_COLUMNS)}, not {by!r}")
    column = AREA_COLUMNS[by]
    return "'CMPD'" if column is None else f"coalesce({column}::text, '(none)')"


def period_filter(period: Period, category: str | None = None, division: str | None = None) -> tuple[str, dict]:
    """SQL condition on calls for a local-date period (and optional category/division), with its parameters."""
    clauses = ["received_at >= (CAST(:start AS timestamp) AT TIME ZONE :tz)",
               "received_at < (CAST(:end AS timestamp) AT TIME ZONE :tz)"]
    params = {"start": period.start, "end": period.end, "tz": _tz()}
    if category:
        clauses.append("category = :category")
        params["category"] = category
    if division:
        clauses.append("division_id = :division")
        params["division"] = division
    return " AND ".join(clauses), params


def _tz() -> str:
    from geo.settings import locale_settings

    return locale_settings().timezone


def call_counts(engine: Engine, period: Period, by: str = "division", *, division: str | None = None) -> pd.DataFrame:
    """Calls per area and category, each category's share of the area's calls, and violent shares.

    Columns: area, category, calls, share (of the area's calls), plus per area: total,
    labelled_violent (model label), expected_violent (sum of probabilities).
    """
    where, params = period_filter(period, None, division)
    sql = f"""
        SELECT {_area_expr(by)} AS area, coalesce(category, 'unknown') AS category, count(*) AS calls,
               count(*) FILTER (WHERE label) AS labelled_violent, coalesce(sum(p_violent), 0) AS expected_violent
        FROM calls WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2
    """
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params=params)
    if rows.empty:
        return rows.assign(share=[], total=[])
    totals = rows.groupby("area")[["calls", "labelled_violent", "expected_violent"]].transform("sum")
    rows["total"] = totals["calls"]
    rows["share"] = rows["calls"] / rows["total"]
    rows["area_labelled_violent"] = totals["labelled_violent"]
    rows["area_expected_violent"] = totals["expected_violent"].round(3)
    rows["violent_share"] = rows["area_labelled_violent"] / rows["total"]
    return rows


def period_as_filter(period: Period, *, division: str | None = None, category: str | None = None,
                     violent_only: bool = False) -> Filter:
    """The shared filter (geo.filters) of the local days [period.start, period.end), division, category, violence."""
    tz = ZoneInfo(_tz())
    return Filter(start=datetime.combine(period.start, time(0), tz), end=datetime.combine(period.end, time(0), tz),
                  division=division, category=category, violent=True if violent_only else None)


def _filter_of(flt: Filter | Period, division: str | None, category: str | None, violent_only: bool) -> Filter:
    if isinstance(flt, Period):
        return period_as_filter(flt, division=division, category=category, violent_only=violent_only)
    if division or category or violent_only:
        raise ValueError("with a Filter, give division, category and violent in the Filter itself")
    return flt


def _area_clause(where: str, params: dict, area: tuple[str, object] | None) -> tuple[str, dict]:
    """The condition narrowed to one area: area = (by, id), by one of AREA_COLUMNS other than 'city'."""
    if area is None:
        return where, params
    by, value = area
    column = AREA_COLUMNS.get(by)
    if column is None:
        raise ValueError(f"area level must be one of {', '.join(k for k, v in AREA_COLUMNS.items() if v)}, not {by!r}")
    return f"{where} AND {column} = :m_area", {**params, "m_area": value}


def data_coverage(engine: Engine, table: str = "calls", origin: str | None = None) -> tuple[date | None, date | None]:
    """First and last local dates holding any row of `table` (of one origin if given): what the data cover."""
    column = TABLE_COLUMNS[table].time
    where = "data_origin = :origin" if origin else "TRUE"
    local = column if TABLE_COLUMNS[table].time_is_date else f"({column} AT TIME ZONE :tz)::date"
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            f"SELECT min({local}), max({local})"
            f" FROM {table} WHERE {where}"), {"tz": _tz(), "origin": origin}).one())


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


def hour_weekday(engine: Engine, flt: Filter | Period, *, division: str | None = None, category: str | None = None,
                 violent_only: bool = False, area: tuple[str, object] | None = None) -> WeekHourMatrix:
    """The 7x24 matrix of calls under a filter (or a Period with division/category/violent), optionally in one area.

    Calls known only by their date (received_at_precision 'date') have no hour: they are left out
    of every cell (never put at midnight) and counted in `left_out_date_only`. Open filter ends,
    and ends beyond the data, are closed at the local days the calls cover.
    """
    flt = _filter_of(flt, division, category, violent_only)
    where, params = _area_clause(*flt.where("calls"), area)
    tz, precision = _tz(), TABLE_COLUMNS["calls"].precision
    sql = f"""
        SELECT extract(isodow FROM received_at AT TIME ZONE :tz)::int - 1 AS weekday,
               extract(hour FROM received_at AT TIME ZONE :tz)::int AS hour, count(*) AS calls
        FROM calls WHERE {where} AND {precision} <> 'date' GROUP BY 1, 2
    """
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params={**params, "tz": tz})
        left_out = conn.execute(sa.text(f"SELECT count(*) FROM calls WHERE {where} AND {precision} = 'date'"),
                                params).scalar_one()
    totals = rows.pivot_table(index="weekday", columns="hour", values="calls", aggfunc="sum", fill_value=0)
    totals = totals.reindex(index=range(7), columns=range(24), fill_value=0).astype(int)
    totals.index = list(WEEKDAYS)
    totals.columns = list(range(24))
    first, last = data_coverage(engine, "calls", flt.origin)
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


def _weeks_back(period: Period) -> Period:
    # 52 weeks (364 days) back: the same weeks, Monday to Sunday, a year earlier.
    return Period(period.start - timedelta(days=364), period.end - timedelta(days=364))


def _a_year_back(day: date, feb29: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:   # 29 February in a year after which there is none
        return feb29


def _same_dates_a_year_back(period: Period) -> Period:
    # The same calendar dates a year earlier; 29 February begins a period on 1 March and ends one on 28 February.
    start = _a_year_back(period.start, date(period.start.year - 1, 3, 1))
    last = period.end - timedelta(days=1)
    last = _a_year_back(last, date(last.year - 1, 2, 28))
    return Period(start, max(start, last + timedelta(days=1)))


def _just_before(period: Period) -> Period:
    return Period(period.start - timedelta(days=period.days), period.start)


def _window_rules(as_of: date, compare: str) -> dict[str, tuple[Period, object]]:
    if compare not in COMPARISONS:
        raise ValueError(f"compare must be one of {', '.join(COMPARISONS)}, not {compare!r}")
    last = report_end(as_of)
    end = last + timedelta(days=1)
    week = Period(end - timedelta(days=7), end)
    four = Period(end - timedelta(days=28), end)
    ytd = Period(date(last.year, 1, 1), end)
    back = _weeks_back if compare == "year" else _just_before
    # Year to date is always against the same dates a year earlier: the days before 1 January are
    # last year's end, no like-for-like comparison.
    return {"week": (week, back), "28 days": (four, back), "year to date": (ytd, _same_dates_a_year_back)}


def compstat_windows(as_of: date, compare: str = "year") -> dict[str, tuple[Period, Period]]:
    """The report's (current, comparison) periods for a report date: week, 28 days, year to date.

    All three end on the Sunday of the last complete week before `as_of`. `compare='year'`: the
    week and 28 days against the same weeks 52 weeks earlier, the year to date against the same
    calendar dates a year earlier (29 February against 28 February); `compare='previous'`: the
    week and 28 days against the ones just before them.
    """
    return {name: (current, rule(current)) for name, (current, rule) in _window_rules(as_of, compare).items()}


def _overlaps(a: Period, b: Period) -> bool:
    return a.start < b.end and b.start < a.end


def history_pairs(current: Period, comparison: Period, rule, first: date,
                  max_pairs: int = HISTORY_PAIRS, max_days: int = HISTORY_DAYS) -> list[tuple[Period, Period]]:
    """Earlier (block, comparison) pairs of the window's length, compared by the same rule, within the data.

    Blocks step back from the window one length at a time; a pair is kept only if neither period
    touches a period already used (the window, its comparison or an earlier pair), so every day
    counts in at most one pair and the pairs' deviations are independent under the model.
    """
    used = [current, comparison]
    pairs: list[tuple[Period, Period]] = []
    length = current.days
    j = 1
    while len(pairs) < max_pairs:
        block = Period(current.start - timedelta(days=j * length), current.start - timedelta(days=(j - 1) * length))
        other = rule(block)
        if min(block.start, other.start) < first or (current.start - block.start).days > max_days:
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

    def total(period: Period) -> np.ndarray:
        # Sum over [start, end) by cumulative sums; days outside the frame hold no counts.
        if not len(days):
            return np.zeros(len(areas))
        a = int(np.clip((pd.Timestamp(period.start) - days[0]).days, 0, len(days)))
        b = int(np.clip((pd.Timestamp(period.end) - days[0]).days, 0, len(days)))
        return cum[b] - cum[a]

    out = []
    for name, (current, rule) in _window_rules(as_of, compare).items():
        prior = rule(current)
        covered = (first is not None and last is not None and first <= prior.start and first <= current.start
                   and last >= current.end - timedelta(days=1) and last >= prior.end - timedelta(days=1))
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
                        "current_period": f"{current.start}..{current.end - timedelta(days=1)}",
                        "prior_period": f"{prior.start}..{prior.end - timedelta(days=1)}",
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
    if source is not None:
        where, params = flt.where(source.table)
        units, unit_params = source.units(Period(start, end), condition=where)
        sql = f"SELECT {_area_expr(by)} AS area, local_date AS day, sum(w) AS n FROM ({units}) u GROUP BY 1, 2"
        params = {**params, **unit_params}
    else:
        cols = TABLE_COLUMNS[table]
        where, params = flt.where(table)
        sql = f"""
            SELECT {_area_expr(by)} AS area, ({cols.time} AT TIME ZONE :tz)::date AS day, count(*) AS n
            FROM {table} WHERE {where}
              AND {cols.time} >= (CAST(:d_start AS timestamp) AT TIME ZONE :tz)
              AND {cols.time} < (CAST(:d_end AS timestamp) AT TIME ZONE :tz)
            GROUP BY 1, 2
        """
        params = {**params, "tz": _tz(), "d_start": start, "d_end": end}
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params=params)
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

    flt = replace(flt or Filter(), start=None, end=None, given={})
    src = get_source(source) if source is not None else None
    table = src.table if src is not None else table
    if areas is None and by != "city":
        areas = level_areas(engine, by)
    coverage = data_coverage(engine, table, flt.origin)
    rules = _window_rules(as_of, compare)
    starts = [min(c.start, rule(c).start) for c, rule in rules.values()]
    if coverage[0] is not None:
        for current, rule in rules.values():
            starts += [o.start for _, o in history_pairs(current, rule(current), rule, coverage[0])]
    end = max(c.end for c, _ in rules.values())
    if src is not None:
        check_origin(engine, src, Period(min(starts), end), flt.origin)
    daily = daily_counts(engine, flt, by, min(starts), end, table, src)
    result = compstat_table(daily, as_of, coverage, compare=compare, alpha=alpha, areas=areas)
    result.attrs["source"] = src.describe(flt.origin) if src is not None else f"{table}: every row under the filter"
    return result


def npa_rates(engine: Engine, period: Period) -> pd.DataFrame:
    """Calls and violent calls per NPA with rates per 1,000 residents (NPA population, latest year)."""
    where, params = period_filter(period)
    sql = f"""
        SELECT n.npa_id, n.population, n.population_year,
               coalesce(c.calls, 0) AS calls, coalesce(c.labelled_violent, 0) AS labelled_violent,
               coalesce(c.expected_violent, 0) AS expected_violent
        FROM neighborhoods n
        LEFT JOIN (SELECT npa_id, count(*) AS calls, count(*) FILTER (WHERE label) AS labelled_violent,
                          sum(p_violent) AS expected_violent
                   FROM calls WHERE {where} GROUP BY 1) c USING (npa_id)
        ORDER BY n.npa_id
    """
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params=params)
    # NPAs with no residents (parks, the airport) get no rate rather than a division by zero.
    per_1000 = 1000.0 / rows["population"].where(rows["population"] > 0)
    rows["calls_per_1000"] = (rows["calls"] * per_1000).round(2)
    rows["violent_per_1000"] = (rows["labelled_violent"] * per_1000).round(3)
    rows["expected_violent_per_1000"] = (rows["expected_violent"] * per_1000).round(3)
    return rows


def clearance_rates(engine: Engine, period: Period, by: str = "division") -> pd.DataFrame:
    """Share of crime incidents (not 800-series reports, not Unfounded) cleared, per area and category.

    As the FBI counts clearances (UCR/NIBRS): cleared by arrest (including an arrest by another
    agency) or by exceptional means. CMPD writes that in CLEARANCE_STATUS ('Cleared by Arrest',
    'Exceptionally Cleared', 'Cleared by Arrest by Another Agency'); older exports wrote
    'Closed/Cleared' with the kind in CLEARANCE_DETAIL_STATUS. Unfounded reports are not crimes and
    are outside the denominator (is_crime). Reports in the period are counted by DATE_REPORTED.
    """
    sql = f"""
        SELECT {_area_expr(by)} AS area, coalesce(category, 'unknown') AS category, count(*) AS incidents,
               count(*) FILTER (WHERE clearance_status IN ('Cleared by Arrest', 'Exceptionally Cleared',
                                                           'Cleared by Arrest by Another Agency')
                                   OR (clearance_status ILIKE 'closed/cleared'
                                       AND clearance_detail_status IN ('Cleared by Arrest', 'Exceptionally Cleared')))
                   AS cleared
        FROM incidents
        WHERE is_crime AND date_reported >= (CAST(:start AS timestamp) AT TIME ZONE :tz)
          AND date_reported < (CAST(:end AS timestamp) AT TIME ZONE :tz)
        GROUP BY 1, 2 ORDER BY 1, 2
    """
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params={"start": period.start, "end": period.end, "tz": _tz()})
    rows["clearance_rate"] = (rows["cleared"] / rows["incidents"]).round(4)
    return rows


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


def complete_months(period: Period, **coverages: tuple[date | None, date | None]) -> tuple[list[date], list[str]]:
    """Calendar months inside the period that every source (name=(first, last)) covers whole, and those left out."""
    first = _month_add(date(period.start.year, period.start.month, 1), 0)
    months, left_out = [], []
    m = first
    while m < period.end:
        nxt = _month_add(m, 1)
        reasons = []
        if m < period.start or nxt > period.end:
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


# Violent incidents are dated by when they happened where CMPD gives it (DATE_INCIDENT_BEGAN, not
# after the report), else by the report date.
OCCURRED = ("CASE WHEN date_incident_began IS NOT NULL AND date_incident_began <= date_reported"
            " THEN date_incident_began ELSE date_reported END")


def indicator_panel(engine: Engine, period: Period, flt: Filter | None = None) -> IndicatorPanel:
    """Counts per NPA and complete month of calls per category and of violent incidents (FBI violent codes, not unfounded).

    A month is complete when the period holds all of it and both the calls and the incidents
    cover it from its first to its last day (incidents by report date: what has been reported);
    a half-finished last month is left out and listed. `flt` narrows the calls (dates ignored).
    """
    from geo.taxonomy import load_taxonomy

    tz = _tz()
    flt = replace(flt or Filter(), start=None, end=None, given={})
    calls_cover = data_coverage(engine, "calls", flt.origin)
    incidents_cover = data_coverage(engine, "incidents", flt.origin)
    months, left_out = complete_months(period, calls=calls_cover, incidents=incidents_cover)
    empty = IndicatorPanel(months, np.array([], dtype=int), {}, np.zeros((0, len(months))), left_out,
                           {"occurrence": 0, "report": 0})
    if not months:
        return empty
    lo, hi = months[0], _month_add(months[-1], 1)
    where, params = flt.where("calls")
    params = {**params, "s": lo, "e": hi, "tz": tz, "violent": sorted(load_taxonomy().violent_codes)}
    origin = "AND data_origin = :f_origin" if flt.origin else ""
    with engine.connect() as conn:
        calls = pd.read_sql(sa.text(
            "SELECT npa_id, date_trunc('month', received_at AT TIME ZONE :tz)::date AS month,"
            " coalesce(category, 'unknown') AS category, count(*) AS n FROM calls"
            f" WHERE npa_id IS NOT NULL AND {where}"
            " AND received_at >= (CAST(:s AS timestamp) AT TIME ZONE :tz)"
            " AND received_at < (CAST(:e AS timestamp) AT TIME ZONE :tz) GROUP BY 1, 2, 3"), conn, params=params)
        violent = pd.read_sql(sa.text(
            f"SELECT npa_id, date_trunc('month', {OCCURRED} AT TIME ZONE :tz)::date AS month,"
            " count(*) FILTER (WHERE date_incident_began IS NOT NULL AND date_incident_began <= date_reported) AS by_occurrence,"
            " count(*) AS violent FROM incidents"
            " WHERE npa_id IS NOT NULL AND highest_nibrs_code = ANY(:violent) AND is_crime IS NOT FALSE"
            f" {origin} AND {OCCURRED} >= (CAST(:s AS timestamp) AT TIME ZONE :tz)"
            f" AND {OCCURRED} < (CAST(:e AS timestamp) AT TIME ZONE :tz) GROUP BY 1, 2"), conn, params=params)
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


def leading_indicators(engine: Engine, period: Period, *, min_calls: int = 200, permutations: int = 999,
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


def outreach_flags(engine: Engine, period: Period, by: str = "npa", *, ratio: float = 1.25,
                   min_calls: int = 50) -> pd.DataFrame:
    """Areas where mental health, welfare, domestic or disorder calls dominate the workload.

    An area is flagged for a category when that category's share of the area's calls is at least
    `ratio` times the city's share and the area has at least `min_calls` such calls.
    """
    rows = call_counts(engine, period, by)
    if rows.empty:
        return rows
    city = rows.groupby("category")["calls"].sum() / rows["calls"].sum()
    rows = rows[rows["category"].isin(OUTREACH_CATEGORIES)].copy()
    if rows.empty:   # none of the outreach categories in the period (an empty map would not divide)
        return rows.assign(city_share=[], ratio_to_city=[])[["area", "category", "calls", "total", "share",
                                                             "city_share", "ratio_to_city"]]
    rows["city_share"] = rows["category"].map(city)
    rows["ratio_to_city"] = (rows["share"] / rows["city_share"]).round(2)
    flagged = rows[(rows["ratio_to_city"] >= ratio) & (rows["calls"] >= min_calls)]
    return flagged[["area", "category", "calls", "total", "share", "city_share", "ratio_to_city"]] \
        .sort_values(["ratio_to_city", "calls"], ascending=False).reset_index(drop=True)


# --- persisted results ------------------------------------------------------------------------
def save_table(engine: Engine, kind: str, params: dict, table: pd.DataFrame, model_version: str | None = None) -> int:
    """Store a result table (one JSON object per row) under a new analysis run; returns its run_id."""
    import json

    from geo.hotspots import _start_run
    from geo.ingest.batch import copy_frame

    frame = table.reset_index() if table.index.name or not isinstance(table.index, pd.RangeIndex) else table
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    with engine.begin() as conn:
        run_id = _start_run(conn, kind, params, model_version)
        if records:
            copy_frame(conn, "analysis_rows", pd.DataFrame({
                "run_id": run_id, "row_no": range(len(records)), "data": [json.dumps(r) for r in records]}))
    return run_id


def load_table(engine: Engine, run_id: int) -> pd.DataFrame:
    """A stored result table, rows in their original order."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT data FROM analysis_rows WHERE run_id = :r ORDER BY row_no"), {"r": run_id})
        return pd.DataFrame([r[0] for r in rows])


def monthly_trend(engine: Engine, period: Period, by: str = "city", *, category: str | None = None) -> pd.DataFrame:
    """Calls, labelled-violent and expected-violent calls per local calendar month and area."""
    where, params = period_filter(period, category, None)
    sql = f"""
        SELECT {_area_expr(by)} AS area, to_char(received_at AT TIME ZONE :tz, 'YYYY-MM') AS month,
               count(*) AS calls, count(*) FILTER (WHERE label) AS labelled_violent,
               round(coalesce(sum(p_violent), 0)::numeric, 2)::float AS expected_violent
        FROM calls WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2
    """
    with engine.connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)
