"""Request parameters the blueprints share: the common filter, integers, and known names."""

from __future__ import annotations

from flask import request

from geo.filters import Filter, ParameterError, parse_filter
from web import database


def request_filter(table: str = "calls") -> Filter:
    """The shared filter (dates, preset, division, category, violent, min_p, bbox) from the query string."""
    return parse_filter(request.args, table=table, divisions=database.division_names(),
                        as_of=database.latest_call_date)


def int_arg(name: str, default: int | None = None, *, lo: int | None = None, hi: int | None = None,
            clamp_hi: bool = False) -> int | None:
    """An integer query parameter; 400 (ParameterError) when malformed or out of range.

    With `clamp_hi`, values above `hi` are lowered to it instead of refused (OGC `limit`).
    """
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ParameterError(name, f"{raw!r} is not an integer") from None
    if lo is not None and value < lo:
        raise ParameterError(name, f"{value} is below the minimum {lo}")
    if hi is not None and value > hi:
        if clamp_hi:
            return hi
        raise ParameterError(name, f"{value} is above the maximum {hi}")
    return value
