"""Health endpoint: is the database reachable, and which schema version does it hold."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify

from web import database

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """200 with the schema version when the database answers, 503 naming the problem otherwise."""
    try:
        with database.engine().connect() as conn:
            version = conn.execute(sa.text("SELECT coalesce(max(version), 0) FROM schema_migrations")).scalar()
    except Exception as exc:  # any failure to reach the database is an outage, reported not raised
        return jsonify(status="unavailable", database=type(exc).__name__), 503
    return jsonify(status="ok", schema_version=int(version)), 200
