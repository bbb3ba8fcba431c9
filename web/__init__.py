"""The Flask application factory: settings, database, error handlers and one blueprint per feature.

Nothing happens at import time; `create_app()` builds an app from the environment (geo.settings)
and `test_config` overrides. Under gunicorn: `gunicorn 'web:create_app()'`.
"""

from __future__ import annotations

from flask import Flask

from geo.settings import locale_settings, server_settings


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app. `test_config` overrides settings (e.g. DATABASE_URL, API_TOKENS, TIMEZONE) for tests.

    Settings are read from the environment here, once, and reach the library through the app's config.
    """
    app = Flask(__name__, instance_relative_config=False)
    s = server_settings()
    app.config.from_mapping(
        DATABASE_URL=None,                      # None: geo.db.resolve_url() (DATABASE_URL or embedded cluster)
        BASEMAP_URL=s.basemap_url,
        BASEMAP_ATTRIBUTION=s.basemap_attribution,
        API_TOKENS=s.api_tokens,
        REQUIRE_READ_TOKEN=s.require_read_token,
        REQUEST_TIMEOUT_MS=s.request_timeout_ms,
        TILE_CACHE_MB=s.tile_cache_mb,
        MAX_CONTENT_LENGTH=s.max_body_bytes,    # Flask answers 413 above this
        ITEMS_MAX_LIMIT=s.items_max_limit,
        # Local days, presets and 7x24 hours of this app's requests (geo.settings.enter_zone per request).
        TIMEZONE=locale_settings().timezone,
        VERSION_TTL_S=1.0,                      # how long a worker trusts its copy of data_versions
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    if test_config:
        app.config.update(test_config)

    from web import admission, auth, database, errors, params, zone

    zone.init_app(app)   # first: every later hook and view runs in the app's time zone
    database.init_app(app)
    admission.init_app(app)  # caps on heavy work (exports, reports, low-zoom tiles, statistics, ingest)
    errors.init_app(app)
    params.init_app(app)  # NUL characters in parameters: 400 before any blueprint runs
    auth.init_app(app)   # token hashes; the read-token hook when REQUIRE_READ_TOKEN

    # Every blueprint, named: a missing module fails the app's start, never serves without it.
    from web import exports, features, health, ingest_api, maps, openapi, pages, reports, staffing, tiles

    for module in (health, maps, features, tiles, exports, reports, pages, ingest_api, staffing, openapi):
        app.register_blueprint(module.bp)
    return app
