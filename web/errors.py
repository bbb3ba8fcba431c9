"""JSON errors for every failure: the bad parameter named, never a stack trace in a response."""

from __future__ import annotations

import logging
import uuid

import sqlalchemy.exc
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from geo.catalog import UnknownLayer
from geo.filters import ParameterError
from geo.runs import NoSavedRun

log = logging.getLogger("web")

# OGC API exception codes by status (the `code` member of the error document).
CODES = {400: "InvalidParameterValue", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
         405: "MethodNotAllowed", 406: "NotAcceptable", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
         429: "TooManyRequests", 500: "ServerError", 503: "ServiceUnavailable"}


class ApiError(Exception):
    """An error a blueprint raises on purpose: status, message and (optionally) the parameter at fault,
    headers, and `extra` members of the body (e.g. the `limit` of a refused heavy request)."""

    def __init__(self, status: int, description: str, parameter: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameter = parameter
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(status: int, description: str, parameter: str | None = None, headers: dict | None = None,
                   extra: dict | None = None):
    """The JSON error document every endpoint uses."""
    body = {"code": CODES.get(status, "Error"), "description": description}
    if parameter:
        body["parameter"] = parameter
    body.update(extra or {})
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _statement_timeout(exc: Exception) -> bool:
    """The statement was cancelled (the timeout, or a cancel request). A cancel that lands inside a
    GEOS or liblwgeom call reaches us from PostGIS as an internal error (SQLSTATE XX000, e.g.
    "lwgeom_pointonsurface: GEOS Error: InterruptedException: Interrupted!"), not as 57014."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code == "57014":
        return True
    return code == "XX000" and "interrupt" in (getattr(orig, "pgerror", None) or str(orig)).lower()


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(ParameterError)
    def _bad_parameter(exc: ParameterError):
        return error_response(400, str(exc), exc.parameter)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.description, exc.parameter, exc.headers, exc.extra)

    @app.errorhandler(UnknownLayer)
    def _unknown_layer(exc: UnknownLayer):
        # Tiles, exports and the panel name a layer in the path: not there is 404, as for OGC collections.
        return error_response(404, str(exc), "layer", extra={"layer": exc.name})

    @app.errorhandler(NoSavedRun)
    def _no_saved_run(exc: NoSavedRun):
        # One answer for items, tiles and exports: the run asked for (or any run of the layer) is not saved.
        return error_response(404, str(exc), "run", extra={"layer": exc.layer, "run": exc.run})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        headers = {}
        valid = getattr(exc, "valid_methods", None)
        if valid:
            headers["Allow"] = ", ".join(valid)
        return error_response(exc.code or 500, exc.description or exc.name, None, headers)

    @app.errorhandler(sqlalchemy.exc.DBAPIError)
    def _database(exc: sqlalchemy.exc.DBAPIError):
        if _statement_timeout(exc):
            ms = app.config["REQUEST_TIMEOUT_MS"]
            return error_response(503, f"the query took longer than the {ms} ms limit; narrow the filter "
                                       "(dates, bbox, division)", None, {"Retry-After": "5"})
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) or exc.connection_invalidated:
            log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
            return error_response(503, "the database is unavailable; try again shortly", None, {"Retry-After": "5"})
        return _unexpected(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error (ref %s)", ref)
        return error_response(500, f"internal error (reference {ref}; details are in the server log)")
