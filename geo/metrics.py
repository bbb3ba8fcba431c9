"""Counts and totals: the offense history CMPD published, by year, category and area."""

from __future__ import annotations

from dataclasses import dataclass

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
