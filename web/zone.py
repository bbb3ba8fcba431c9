"""The app's time zone: read once when the app is built (TIMEZONE), in force for each of its requests.

Local days, presets, the 7x24 hours and times posted without an offset are all read in this zone.
Modules that take the zone as a parameter get `timezone()`; the rest of the library reads it through
geo.settings.locale_settings(), which the request's zone overrides (geo.settings.enter_zone).
"""

from __future__ import annotations

from flask import Flask, current_app, g

from geo.settings import checked_zone, enter_zone, leave_zone


def timezone() -> str:
    """The IANA time zone of the current app (its TIMEZONE setting)."""
    return current_app.config["TIMEZONE"]


def _enter() -> None:
    g.hotspots_zone_token = enter_zone(timezone())


def _leave(_exc: BaseException | None) -> None:
    token = g.pop("hotspots_zone_token", None)
    if token is not None:
        leave_zone(token)


def init_app(app: Flask) -> None:
    """Check the app's TIMEZONE and put it in force for every request (registered first, so it is in
    force for the other before-request hooks too)."""
    try:
        checked_zone(app.config["TIMEZONE"])
    except ValueError as exc:
        raise ValueError(f"TIMEZONE: {exc}") from None
    app.before_request(_enter)
    app.teardown_request(_leave)
