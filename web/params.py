"""Request parameters the blueprints share: the common filter, integers, and known names."""

from __future__ import annotations

from flask import Flask, request

from geo.filters import Filter, ParameterError, parse_filter, parse_int
from web import database, zone


def request_filter(table: str = "calls") -> Filter:
    """The shared filter (dates, preset, division, category, violent, min_p, bbox) from the query string."""
    # The edge hands the app's zone (read once when the app was built) to the filter.
    return parse_filter(request.args, table=table, divisions=database.division_names(),
                        as_of=database.latest_call_date, tz=zone.timezone())


def int_arg(name: str, default: int | None = None, *, lo: int | None = None, hi: int | None = None,
            clamp_hi: bool = False) -> int | None:
    """An integer query parameter; 400 (ParameterError) when malformed or out of range.

    With `clamp_hi`, values above `hi` are lowered to it instead of refused (OGC `limit`).
    """
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = parse_int(name, raw)
    if lo is not None and value < lo:
        raise ParameterError(name, f"{value} is below the minimum {lo}")
    if hi is not None and value > hi:
        if clamp_hi:
            return hi
        raise ParameterError(name, f"{value} is above the maximum {hi}")
    return value


def refuse_nul_characters() -> None:
    """400 for a NUL character in any query parameter or path segment.

    PostgreSQL text cannot hold NUL (the driver raises before sending), and no name, id or
    filter value contains one, so refusing it up front names the parameter instead of failing later.
    """
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise ParameterError(name.replace("\x00", "\\x00"), "contains a NUL character")
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            raise ParameterError(name, "contains a NUL character")


def init_app(app: Flask) -> None:
    """Check every request's parameters for what no endpoint accepts (NUL characters)."""
    app.before_request(refuse_nul_characters)
