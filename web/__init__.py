"""The Flask application factory; blueprints are registered here, nothing runs at import time."""

from __future__ import annotations

from flask import Flask


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app. `test_config` overrides settings (e.g. DATABASE_URL) for tests."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_mapping(DATABASE_URL=None)
    if test_config:
        app.config.update(test_config)

    from web import health

    app.register_blueprint(health.bp)
    return app
