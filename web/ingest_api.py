"""POST /api/calls: live calls from a CAD feed, stored, placed and labelled at once (geo/ingest/live.py).

The blueprint checks the token, the content type, the size and that the body is JSON; everything
about the calls themselves is geo.ingest.live's business. 201 when at least one new call was
created, 200 otherwise (all rows updates, resends or rejects); per-row problems are listed in
`errors` and kept in ingest_rejects.
"""

from __future__ import annotations

import hashlib
import json
import logging

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from geo.ingest import live
from geo.ingest.batch import IngestError
from web import admission, auth, database, zone
from web.errors import ApiError

bp = Blueprint("ingest_api", __name__)
log = logging.getLogger("web.ingest")

CONTENT_TYPES = ("application/json", "application/geo+json")


@bp.post("/api/calls")
def post_calls():
    """Store a batch of calls for service; see the OpenAPI document at /api for the body."""
    holder = auth.require_token()
    if request.mimetype not in CONTENT_TYPES:
        raise ApiError(415, f"send the calls as {' or '.join(CONTENT_TYPES)} (got {request.mimetype or 'no type'!r})",
                       "Content-Type")
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    try:
        body = request.get_data(cache=False)
        # A chunked body (no Content-Length) is cut at the limit by Werkzeug's stream rather than
        # refused; a body that fills the limit exactly is taken as cut, not parsed as truncated JSON.
        if limit is not None and request.content_length is None and len(body) >= limit:
            raise RequestEntityTooLarge()
    except RequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {limit:,} bytes; send the calls in smaller batches", "body") from None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError; nesting depth a RecursionError
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, f"the body is not valid JSON{where}", "body") from None
    try:
        # The batch is checked and stored under an ingest slot; the token holder is the client.
        result = admission.admitted("ingest", lambda: live.ingest_calls(
            database.engine(), payload, body_sha256=hashlib.sha256(body).hexdigest(),
            source=f"POST /api/calls ({holder.name})",
            max_rows=int(current_app.config.get("INGEST_MAX_ROWS", live.MAX_BATCH_ROWS)), tz=zone.timezone(),
        ))
    except live.BatchError as exc:
        raise ApiError(400, exc.message, exc.parameter) from None
    except IngestError as exc:
        log.error("cannot ingest calls: %s", exc)
        raise ApiError(503, str(exc), None, {"Retry-After": "60"}) from None
    created = len(result.ids("created"))
    log.info("batch %s from %s: %s received, %s created, %s updated, %s unchanged, %s rejected",
             result.batch_id, holder.name, result.received, created, len(result.ids("updated")),
             len(result.ids("unchanged")), result.rejected)
    resp = jsonify(result.as_dict())
    resp.status_code = 201 if created else 200
    return resp
