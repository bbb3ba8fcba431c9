"""Counts and totals: the offense history CMPD published, by year, category and area."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

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


def hour_weekday(engine: Engine, period: Period, *, division: str | None = None, category: str | None = None,
                 violent_only: bool = False) -> pd.DataFrame:
    """A 7x24 matrix of calls by local weekday (rows, Monday first) and hour (columns)."""
    where, params = period_filter(period, category, division)
    if violent_only:
        where += " AND label"
    # Calls known only by their date have no hour: left out of the matrix (never put at midnight)
    # and counted in matrix.attrs["left_out_date_only"].
    sql = f"""
        SELECT extract(isodow FROM received_at AT TIME ZONE :tz)::int - 1 AS weekday,
               extract(hour FROM received_at AT TIME ZONE :tz)::int AS hour, count(*) AS calls
        FROM calls WHERE {where} AND received_at_precision <> 'date' GROUP BY 1, 2
    """
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(sql), conn, params=params)
        left_out = conn.execute(sa.text(f"SELECT count(*) FROM calls WHERE {where} AND received_at_precision = 'date'"),
                                params).scalar_one()
    matrix = rows.pivot_table(index="weekday", columns="hour", values="calls", aggfunc="sum", fill_value=0)
    matrix = matrix.reindex(index=range(7), columns=range(24), fill_value=0).astype(int)
    matrix.index = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    matrix.attrs["left_out_date_only"] = int(left_out)
    return matrix


def compstat_windows(as_of: date) -> dict[str, tuple[Period, Period]]:
    """CompStat periods ending the day before `as_of` and the prior periods they are compared with.

    7 and 28 days against the 7/28 days before them; year to date against the same dates last
    year; the last 365 days against the 365 before.
    """
    def back(days: int) -> tuple[Period, Period]:
        current = Period(as_of - timedelta(days=days), as_of)
        return current, Period(current.start - timedelta(days=days), current.start)

    year_start = date(as_of.year, 1, 1)
    last_year = date(as_of.year - 1, 1, 1)
    try:
        same_day_last_year = as_of.replace(year=as_of.year - 1)
    except ValueError:  # 29 February
        same_day_last_year = as_of.replace(year=as_of.year - 1, day=28)
    return {
        "7 days": back(7),
        "28 days": back(28),
        "year to date": (Period(year_start, as_of), Period(last_year, same_day_last_year)),
        "365 days": back(365),
    }


def poisson_change_test(current: int, prior: int, current_days: int, prior_days: int) -> float:
    """Two-sided p-value that two Poisson counts have the same daily rate.

    Conditional test: given the total n, the current count is Binomial(n, t1 / (t1 + t2)) under
    equal rates. Small counts swing a lot; this keeps noise from being reported as change.
    """
    from scipy.stats import binomtest

    n = current + prior
    if n == 0:
        return 1.0
    return float(binomtest(current, n, current_days / (current_days + prior_days)).pvalue)


def compstat(engine: Engine, as_of: date, *, by: str = "city", category: str | None = None,
             violent_only: bool = False, alpha: float = 0.05) -> pd.DataFrame:
    """Current versus prior period counts per area for each CompStat window, with % change and p-value."""
    out = []
    with engine.connect() as conn:
        first, last = conn.execute(sa.text(
            "SELECT (min(received_at) AT TIME ZONE :tz)::date, (max(received_at) AT TIME ZONE :tz)::date FROM calls"),
            {"tz": _tz()}).one()
    for name, (current, prior) in compstat_windows(as_of).items():
        # A window the data does not cover is reported as such, not as a 100% change.
        covered = first is not None and first <= prior.start and last >= current.end - timedelta(days=1)
        counts = {}
        for label, period in (("current", current), ("prior", prior)):
            where, params = period_filter(period, category, None)
            if violent_only:
                where += " AND label"
            sql = f"SELECT {_area_expr(by)} AS area, count(*) AS n FROM calls WHERE {where} GROUP BY 1"
            with engine.connect() as conn:
                counts[label] = dict(conn.execute(sa.text(sql), params).all())
        for area in sorted(set(counts["current"]) | set(counts["prior"])):
            c, p = int(counts["current"].get(area, 0)), int(counts["prior"].get(area, 0))
            p_value = poisson_change_test(c, p, current.days, prior.days) if covered else float("nan")
            # Rates per day, so unequal windows (year to date vs a leap year) compare fairly.
            rate_c, rate_p = c / current.days, p / prior.days
            change = (rate_c - rate_p) / rate_p * 100 if rate_p and covered else float("nan")
            out.append({"window": name, "area": area, "current": c, "prior": p,
                        "current_period": f"{current.start}..{current.end - timedelta(days=1)}",
                        "prior_period": f"{prior.start}..{prior.end - timedelta(days=1)}",
                        "pct_change": round(change, 1), "p_value": round(p_value, 4),
                        "significant": bool(covered and p_value < alpha), "data_covers_both": covered})
    return pd.DataFrame(out)


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
def leading_indicators(engine: Engine, period: Period, *, min_calls: int = 200) -> pd.DataFrame:
    """Which call categories in one month go with more violent incidents in the next month, across NPAs.

    For every NPA and month, the count of calls in each category is paired with the NPA's violent
    incidents (FBI violent NIBRS codes) in the following month. Both are taken relative to the
    NPA's own monthly average, so a big NPA having more of everything does not count as a signal.
    Spearman's rank correlation per category, with Benjamini-Hochberg q-values across categories.
    This is association, not cause: it says where to look, not what would happen if calls changed.
    """
    from scipy.stats import spearmanr

    from geo.taxonomy import load_taxonomy

    params = {"s": period.start, "e": period.end, "tz": _tz(), "violent": sorted(load_taxonomy().violent_codes)}
    month = "date_trunc('month', {} AT TIME ZONE :tz)::date"
    with engine.connect() as conn:
        calls = pd.read_sql(sa.text(
            f"SELECT npa_id, {month.format('received_at')} AS month, coalesce(category, 'unknown') AS category,"
            " count(*) AS n FROM calls WHERE npa_id IS NOT NULL"
            " AND received_at >= (CAST(:s AS timestamp) AT TIME ZONE :tz)"
            " AND received_at < (CAST(:e AS timestamp) AT TIME ZONE :tz) GROUP BY 1, 2, 3"), conn, params=params)
        violent = pd.read_sql(sa.text(
            f"SELECT npa_id, {month.format('date_reported')} AS month, count(*) AS violent FROM incidents"
            " WHERE npa_id IS NOT NULL AND highest_nibrs_code = ANY(:violent)"
            " AND date_reported >= (CAST(:s AS timestamp) AT TIME ZONE :tz)"
            " AND date_reported < (CAST(:e AS timestamp) AT TIME ZONE :tz) + interval '1 month' GROUP BY 1, 2"),
            conn, params=params)
    if calls.empty:
        return pd.DataFrame(columns=["category", "rho", "p_value", "q_value", "n_pairs", "calls"])
    wide = calls.pivot_table(index=["npa_id", "month"], columns="category", values="n", aggfunc="sum", fill_value=0)
    npas = wide.index.get_level_values("npa_id").unique()
    months = sorted(calls["month"].unique())
    full = pd.MultiIndex.from_product([npas, months], names=["npa_id", "month"])
    wide = wide.reindex(full, fill_value=0)
    nxt = violent.set_index(["npa_id", "month"])["violent"]
    next_month = {m: (pd.Timestamp(m) + pd.offsets.MonthBegin(1)).date() for m in months}
    target = np.array([nxt.get((n, next_month[m]), 0) for n, m in wide.index], dtype=float)
    # Within-NPA deviations: subtract each NPA's mean over the months.
    groups = wide.index.get_level_values("npa_id")
    target_dev = target - pd.Series(target).groupby(np.asarray(groups)).transform("mean").to_numpy()
    out = []
    for category in wide.columns:
        x = wide[category].to_numpy(dtype=float)
        if x.sum() < min_calls:
            continue
        x_dev = x - pd.Series(x).groupby(np.asarray(groups)).transform("mean").to_numpy()
        rho, p = spearmanr(x_dev, target_dev)
        out.append({"category": category, "rho": float(rho), "p_value": float(p), "n_pairs": len(x), "calls": int(x.sum())})
    result = pd.DataFrame(out)
    if result.empty:
        return result
    from geo.hotspots import benjamini_hochberg

    result["q_value"] = benjamini_hochberg(result["p_value"].to_numpy())
    return result.sort_values("rho", ascending=False).reset_index(drop=True)


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
