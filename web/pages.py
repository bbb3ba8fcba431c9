"""`/reports/model` and `/reports/compstat/<division>`: the library's standalone pages (geo/pages.py), served as is.

The same functions write `hotspots model report --html` and `hotspots stats compstat --html`;
the pages carry their style and SVG charts inline, so a saved copy opens offline.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, request

from geo import pages
from geo.classify import ModelError
from geo.filters import ParameterError
from web import database
from web.admission import heavy
from web.errors import ApiError

bp = Blueprint("pages", __name__)

SOURCES = ("incidents", "homicides", "labelled", "expected", "calls")


def _html(text: str) -> Response:
    resp = Response(text, content_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/reports/model")
def model_report():
    """The current model's report (or `version`'s): reliability, ROC and PR charts, effects in words."""
    try:
        return _html(pages.model_page(database.engine(), request.args.get("version") or None))
    except ModelError as exc:
        raise ApiError(404, str(exc), "version") from None


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = (request.args.get(name) or "").strip().lower() or None
    if value is not None and value not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}, not {value!r}", name)
    return value


@bp.get("/reports/compstat/<division>")
def compstat_report(division: str):
    """One division's CompStat page; `as_of` (YYYY-MM-DD), `source`, `origin`, `compare` as the CLI's options."""
    engine = database.engine()
    try:
        code, _ = pages.resolve_division(engine, division)
    except ParameterError as exc:
        raise ApiError(404, exc.message, "division") from None
    text = request.args.get("as_of")
    try:
        as_of = date.fromisoformat(text) if text else None
    except ValueError:
        raise ApiError(400, f"as_of must be a date, YYYY-MM-DD, not {text!r}", "as_of") from None
    return _render(code, as_of, _choice("source", SOURCES), _choice("origin", ("real", "synthetic")),
                   _choice("compare", ("year", "previous")) or "year")


@heavy("reports")
def _render(code: str, as_of, source, origin, compare) -> Response:
    # Only a valid request takes a slot: a bad division or option is refused before any waiting.
    try:
        return _html(pages.compstat_page(database.engine(), code, as_of=as_of, source=source, origin=origin,
                                         compare=compare))
    except ParameterError as exc:
        raise ApiError(400, exc.message, exc.parameter) from None
    except ValueError as exc:   # e.g. both origins stored and none chosen (geo.sources.check_origin)
        raise ApiError(400, str(exc), "origin") from None
