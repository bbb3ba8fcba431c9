"""Health endpoint: is the database reachable, and which schema version does it hold."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from geo import db as dbmod
from geo.migrate import applied

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """200 with the schema version when the database answers, 503 naming the problem otherwise."""
    try:
        engine = dbmod.make_engine(current_app.config.get("DATABASE_URL"))
        try:
            versions = applied(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # any failure to reach the database is an outage, reported not raised
        return jsonify(status="unavailable", database=type(exc).__name__), 503
    return jsonify(status="ok", schema_version=max(versions) if versions else 0), 200
