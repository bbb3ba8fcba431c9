"""Heavy requests through geo.admission: who the client is, when the slot is given back, and the refusal.

`@heavy("exports")` guards a whole view; a streamed response keeps its slot until the last byte is
sent (or the client goes away). `admitted("tiles", fn)` guards only the expensive part of a view,
so a cached tile or a memoised statistic never waits for a slot. A refusal is the JSON error
document with `limit` naming the setting that refused it, and `Retry-After`: 429 when the client
is over its share, 503 when the server is at capacity. /health, the map page and static files are
never guarded, and geo.admission keeps threads of every worker free for them.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable, Iterable, Iterator, TypeVar

from flask import Flask, current_app, g, request

from geo import admission as ga
from geo.auth import verify
from geo.settings import admission_settings
from web import database
from web.errors import ApiError

T = TypeVar("T")


class _State:
    def __init__(self, app: Flask):
        s = admission_settings()
        limits = ga.limits_from_settings(s)
        limits.update(app.config.get("ADMISSION_LIMITS") or {})
        self.app = app
        self.limits = limits
        self.queue_wait_s = float(app.config.get("ADMISSION_QUEUE_WAIT_S", s.queue_wait_s))
        self.local_slots = int(app.config.get("ADMISSION_HEAVY_THREADS") or s.heavy_threads_per_worker)
        self.heavy_tile_zoom = int(app.config.get("HEAVY_TILE_ZOOM", s.heavy_tile_zoom))
        self.nice = int(app.config.get("ADMISSION_HEAVY_NICE", s.heavy_nice))
        self._lock = threading.Lock()
        self._admission: ga.Admission | None = None

    def admission(self) -> ga.Admission:
        if self._admission is None:
            with self._lock:
                if self._admission is None:
                    engine = database.engine()
                    if self.nice:
                        ga.lower_backends(engine)
                    self._admission = ga.Admission(ga.admission_engine(engine.url, self.local_slots), self.limits,
                                                   queue_wait_s=self.queue_wait_s, local_slots=self.local_slots,
                                                   nice=self.nice)
        return self._admission


def init_app(app: Flask) -> None:
    """Read the limits (settings, overridden by ADMISSION_LIMITS etc. in the app config)."""
    app.extensions["hotspots_admission"] = _State(app)
    interval_ms = admission_settings().switch_interval_ms
    if interval_ms:
        # Process-wide: a thread running an export or a report hands the interpreter lock to a
        # waiting light request's thread after this long, instead of Python's 5 ms (bench/RESULTS.md).
        sys.setswitchinterval(interval_ms / 1000)


def _state() -> _State:
    return current_app.extensions["hotspots_admission"]


def controller() -> ga.Admission:
    """This process's admission controller."""
    return _state().admission()


def heavy_tile(z: int) -> bool:
    """Whether an uncached tile at zoom `z` is heavy work (below HOTSPOTS_HEAVY_TILE_ZOOM)."""
    return z < _state().heavy_tile_zoom


def client_key() -> str:
    """Who holds the slot: the name of a valid token when the request carries one, else its address.

    An unknown token counts as its address, so made-up tokens do not buy extra shares.
    """
    entry = g.get("api_token")
    if entry is None:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            check = verify(header[7:].strip(), current_app.extensions.get("hotspots_tokens") or [])
            entry = check.entry if check.ok else None
    if entry is not None:
        return f"token:{entry.name}"
    return f"addr:{request.remote_addr or '-'}"


def _acquire(kind: str) -> ga.Ticket:
    try:
        return controller().acquire(kind, client_key())
    except ga.Refused as exc:
        raise ApiError(exc.status, exc.message, None, {"Retry-After": str(exc.retry_after_s)},
                       extra={"limit": exc.as_dict()}) from None


def heavy(kind: str) -> Callable:
    """Decorate a view whose whole work (and streamed body) is heavy work of `kind`."""
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            ticket = _acquire(kind)
            g.admission_ticket = ticket
            try:
                resp = current_app.make_response(view(*args, **kwargs))
            except BaseException:
                ticket.release()
                raise
            if not resp.is_streamed:
                ticket.release()
                return resp
            # A streamed body keeps the slot until its last piece is out, or until the WSGI server
            # closes it (the client went away): whichever comes first gives the slot back.
            resp.response = _releasing(resp.response, ticket.release)
            resp.call_on_close(ticket.release)
            return resp
        return wrapper
    return decorate


def _releasing(body: Iterable[bytes], release: Callable[[], None]) -> Iterator[bytes]:
    try:
        yield from body
    finally:
        release()


def admitted(kind: str, compute: Callable[[], T]) -> T:
    """`compute()` under a slot of `kind` (or directly inside a request that already holds one)."""
    if g.get("admission_ticket") is not None:
        return compute()
    ticket = _acquire(kind)
    g.admission_ticket = ticket
    try:
        return compute()
    finally:
        g.admission_ticket = None
        ticket.release()


# Requests missing the same memo key at once compute it once: the others wait for it on one of these
# (striped by key, so their number stays fixed) instead of each taking a slot to compute it again,
# e.g. the six heat tiles a browser asks for at a new zoom, all needing that zoom's legend maximum.
_FLIGHTS = [threading.Lock() for _ in range(64)]


def memo_admitted(kind: str, key: tuple, layers: tuple[str, ...], compute: Callable[[], Any]) -> Any:
    """database.memo, with the computation (not the cache hit) under a slot of `kind`, once per key."""
    def one_flight() -> Any:
        with _FLIGHTS[hash(key) % len(_FLIGHTS)]:
            # Computed by another request while this one waited: a memo hit now.
            return database.memo(key, layers, lambda: admitted(kind, compute))

    return database.memo(key, layers, one_flight)
