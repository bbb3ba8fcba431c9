"""`/report/<division>`: the standalone HTML division report of `hotspots report`, built per request.

The same geo.report functions as the command line; a report scans the period's calls and runs Gi*
over every NPA, so each request holds a `reports` slot (web/admission.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from geo import report
from geo.filters import ParameterError
from web import database, zone
from web.admission import heavy
from web.errors import ApiError

bp = Blueprint("reports", __name__)

PARAMETERS = ("start", "end", "preset")


@bp.get("/report/<division>")
def division_report(division: str):
    """One division's report (NPAs by violent calls, hot spots, summary table) for `start`/`end` or `preset`."""
    engine = database.engine()
    args = {name: request.args.get(name) for name in PARAMETERS}
    try:
        flt = report.division_filter(engine, division, **args, tz=zone.timezone())
    except ParameterError as exc:
        if exc.parameter == "division":
            raise ApiError(404, f"{exc.message}; /api/config lists the divisions", "division") from None
        raise
    return _render(flt)


@heavy("reports")
def _render(flt) -> Response:
    # Only a valid request takes a slot: a bad division or date is refused before any waiting.
    html = report.render_html(report.build_report(database.engine(), flt))
    resp = Response(html, content_type="text/html; charset=utf-8")
    resp.headers["Cache-Control"] = "no-store"
    return resp
