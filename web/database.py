"""The app's database engine, the layer versions that key its caches, and small cached lookups."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from flask import Flask, current_app
from sqlalchemy.engine import Engine

from geo import catalog
from geo import db as dbmod
from geo.catalog import Layer
from geo.runs import NoSavedRun, resolve_run


class _State:
    """Per-app state: one engine (a connection pool per worker) and the version snapshot."""

    def __init__(self, app: Flask):
        self.app = app
        self.lock = threading.Lock()
        self._engine: Engine | None = None
        self._versions: dict[str, int] = {}
        self._versions_at = 0.0
        self._memo: dict[tuple, tuple[tuple, Any]] = {}

    def engine(self) -> Engine:
        if self._engine is None:
            with self.lock:
                if self._engine is None:
                    url = self.app.config.get("DATABASE_URL") or dbmod.resolve_url()
                    self._engine = dbmod.make_engine(url, statement_timeout_ms=self.app.config["REQUEST_TIMEOUT_MS"])
        return self._engine


def init_app(app: Flask) -> None:
    """Attach the lazily created engine and caches to `app`."""
    app.extensions["hotspots_db"] = _State(app)


def _state() -> _State:
    return current_app.extensions["hotspots_db"]


def engine() -> Engine:
    """The app's engine; queries carry the request statement timeout."""
    return _state().engine()


def versions(refresh: bool = False) -> dict[str, int]:
    """Current data_versions, re-read at most every VERSION_TTL_S seconds per worker."""
    st = _state()
    now = time.monotonic()
    if refresh or now - st._versions_at > current_app.config["VERSION_TTL_S"] or not st._versions:
        st._versions = catalog.data_versions(st.engine())
        st._versions_at = now
    return st._versions


def memo(key: tuple, layers: tuple[str, ...], compute: Callable[[], Any]) -> Any:
    """`compute()` cached under `key` until one of `layers` changes version."""
    st = _state()
    v = versions()
    stamp = tuple(v.get(layer, 0) for layer in layers)
    hit = st._memo.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = compute()
    if len(st._memo) > 512:
        st._memo.clear()
    st._memo[key] = (stamp, value)
    return value


def division_names() -> dict[str, str]:
    """Accepted division spellings -> code (cached until divisions change)."""
    return memo(("divisions",), ("divisions",), lambda: catalog.division_names(engine()))


def latest_call_date():
    """Local date (in the app's TIMEZONE) of the newest call (cached until calls change)."""
    tz = current_app.config["TIMEZONE"]
    return memo(("latest_call_date", tz), ("calls",), lambda: catalog.latest_call_date(engine(), tz))


def analysis_run(lyr: Layer, raw: str | None) -> int | None:
    """The run a result layer serves for a request's `run` (geo.runs.resolve_run), cached until its data changes.

    None for data layers; NoSavedRun (404) for a run that is not saved, ParameterError for a malformed one.
    """
    if not lyr.run_kinds:
        return None
    given = (raw or "").strip()

    def compute():
        try:
            with engine().connect() as conn:
                return resolve_run(conn, lyr, given or None)
        except NoSavedRun as exc:
            return exc   # remembered too, so repeating a missing run costs no query

    found = memo(("analysis_run", lyr.id, given), (lyr.version_layer,), compute)
    if isinstance(found, NoSavedRun):
        raise found.with_traceback(None)
    return found
