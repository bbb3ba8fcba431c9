"""The data's newest complete periods: what an analysis covers when no dates are given.

Analyses default to a window counted back from the newest stored row, never to a calendar window
(1 January to today) that may hold nothing: the demo data and the real samples end years ago.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.filters import TABLE_COLUMNS, Filter

# The time column each point table is dated by (fixed names, never user input).
DATED_TABLES = {"calls": "received_at", "incidents": "date_reported"}
# What a default window is, per kind: the newest 28 days (four of each weekday), the newest
# complete calendar month, or the newest twelve complete months.
KINDS = ("28d", "month", "12 months")


@dataclass(frozen=True)
class DataSpan:
    """The first and last local dates of the stored rows of some tables (None when they hold no rows)."""

    tables: tuple[str, ...]
    first: date | None
    last: date | None

    def describe(self) -> str:
        """'the stored calls span 2021-01-01 to 2021-12-31' or 'no calls are stored'."""
        what = " and ".join(self.tables)
        if self.last is None:
            return f"no {what} are stored"
        return f"the stored {what} span {self.first} to {self.last}"


@dataclass(frozen=True)
class DefaultPeriod:
    """A chosen window [first, last] (local dates, both included) and the words that say why."""

    first: date
    last: date
    reason: str

    def describe(self) -> str:
        """One line naming the period and why it was chosen."""
        return f"period: {self.first} to {self.last} ({self.reason}; --from/--to choose another)"

    def as_filter(self, tz: str | None = None, **conditions) -> Filter:
        """The window as the one selection type: the local days first..last in `tz`, with any other conditions."""
        return Filter.local_days(self.first, self.last + timedelta(days=1), tz=tz, **conditions)


def data_span(engine: Engine, tz: str, tables: tuple[str, ...] = ("calls",)) -> DataSpan:
    """First and last local dates over the rows of `tables` (calls, incidents)."""
    unknown = set(tables) - set(DATED_TABLES)
    if unknown:
        raise ValueError(f"no dated table {sorted(unknown)}; one of {', '.join(DATED_TABLES)}")
    firsts, lasts = [], []
    with engine.connect() as conn:
        for table in tables:
            column = DATED_TABLES[table]
            first, last = conn.execute(sa.text(
                f"SELECT (min({column}) AT TIME ZONE :tz)::date, (max({column}) AT TIME ZONE :tz)::date FROM {table}"),
                {"tz": tz}).one()
            if last is not None:
                firsts.append(first)
                lasts.append(last)
    return DataSpan(tuple(tables), min(firsts) if firsts else None, max(lasts) if lasts else None)


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def newest_complete(span: DataSpan, kind: str) -> DefaultPeriod | None:
    """The newest complete window of `kind` (see KINDS) the span holds; None when it holds no rows.

    A month counts as complete when the data reach its last day; when the span is shorter than one
    window, the whole span is taken and said so.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown period kind {kind!r}; one of {', '.join(KINDS)}")
    if span.last is None:
        return None
    what = " and ".join(span.tables)
    last = span.last
    if kind == "28d":
        first, reason = last - timedelta(days=27), f"the newest 28 days of the stored {what}"
    else:
        if _month_end(last) != last:   # the newest month is still filling: end at the month before
            last = last.replace(day=1) - timedelta(days=1)
        months = 1 if kind == "month" else 12
        first = last.replace(day=1)
        for _ in range(months - 1):
            first = (first - timedelta(days=1)).replace(day=1)
        reason = (f"the newest complete month of the stored {what}" if months == 1 else
                  f"the newest 12 complete months of the stored {what}")
    if last < span.first:   # not one complete month stored: the whole span
        return DefaultPeriod(span.first, span.last, f"all the stored {what}, less than a complete month")
    if first < span.first:
        return DefaultPeriod(span.first, last, f"all the stored {what} up to {last}, less than {kind}")
    return DefaultPeriod(first, last, reason)


def count_rows(engine: Engine, flt: Filter, table: str = "calls") -> int:
    """Rows of `table` (calls, incidents) that the filter selects (its local days and conditions)."""
    if table not in DATED_TABLES:
        raise ValueError(f"no dated table {table!r}; one of {', '.join(DATED_TABLES)}")
    t = TABLE_COLUMNS[table].table
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(flt.predicate(table))).scalar_one())
