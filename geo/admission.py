"""Admission control for heavy work: per kind, a few slots shared by every server process, a bounded
wait for one, and a per-client share; past those, a refusal at once instead of a queue of threads.

The slots are PostgreSQL session advisory locks, so they hold across gunicorn workers, and across
servers on one database: slot `s` of kind `k` is the lock (key(k, "run"), s). A request takes, on a
connection of its own that it keeps until the work is done:

1. one of the client's `per_client` locks (key(k, "client", client), 0..per_client-1), else 429;
2. one of the kind's `cap` running slots, else one of its `queue` waiting places
   (key(k, "queue"), 0..queue-1) and a retry every `poll_s` until a running slot frees, for at most
   `queue_wait_s`; no waiting place, or the wait ran out: 503.

Besides, each process lets at most `local_slots` heavy requests (running or waiting) hold one of its
threads, so a worker always has threads left for /health, the map page, static files and cached
tiles; past that, 503 too. Every refusal carries the setting that refused it and a Retry-After.

A lock belongs to its connection: when a worker dies, PostgreSQL drops its connections and with them
its slots, so nothing leaks. This module knows nothing of HTTP; web/admission.py is the Flask side.

While admitted work runs, its thread, and the PostgreSQL backends of the connections that thread
checks out, run at a lower OS priority (`nice`), so light requests of the same machine get the CPUs
first (bench/RESULTS.md). Linux lets any process lower its own threads' priority, but only root
(or a raised RLIMIT_NICE) may raise it again, and only the backends' owner may touch them at all:
each step is taken only when it can be undone, or its effect dropped (a lowered backend whose
priority cannot be restored is closed instead of serving a light request), and skipped otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry

from geo.settings import AdmissionSettings

# The kinds of heavy work and what each covers (README: Configuration; docs/methods.md).
KINDS: dict[str, str] = {
    "exports": "downloads of a layer (/export/LAYER.EXT)",
    "reports": "standalone HTML division reports (/report/DIVISION)",
    "tiles": "vector and heat tiles below the heavy zoom that are not in the tile cache",
    "stats": "statistics over a period that are not cached (/api/areas, /api/hotspots, /api/panel, /heat.json)",
    "ingest": "live-ingest batches (POST /api/calls)",
}
# Retry-After before a kind has a measured duration in this process (seconds).
FIRST_RETRY_S = {"exports": 30, "reports": 10, "tiles": 1, "stats": 3, "ingest": 2}
MAX_RETRY_S = 300
_KEY_PREFIX = "cmpd-hotspots/admission/"
# The two-key form of the advisory lock functions: pg_locks shows (classid, objid) with objsubid 2.
_TRY = sa.text("SELECT s FROM generate_series(0, :n - 1) AS s WHERE pg_try_advisory_lock(:k, s) LIMIT 1")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:k, :s)")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """One kind's limits: running slots across all processes (0: no admission for the kind), waiting
    places, and slots plus waiting places one client may hold (0: no per-client share)."""

    cap: int
    queue: int = 0
    per_client: int = 0


def limits_from_settings(s: AdmissionSettings) -> dict[str, Limit]:
    """The configured limit of every kind."""
    return {kind: Limit(getattr(s, f"{kind}_cap"), getattr(s, f"{kind}_queue"), getattr(s, f"{kind}_per_client"))
            for kind in KINDS}


def setting_name(kind: str, part: str) -> str:
    """The environment variable of one limit, e.g. HOTSPOTS_EXPORTS_CAP."""
    return f"HOTSPOTS_{kind.upper()}_{part.upper()}"


def lock_key(kind: str, role: str, client: str = "") -> int:
    """The first advisory-lock key of a kind's running slots, waiting places or one client's share.

    A 31-bit CRC of a name no other lock of the project uses, so pg_locks.classid shows it as is.
    """
    name = f"{_KEY_PREFIX}{kind}/{role}" + (f"/{client}" if client else "")
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class Refused(Exception):
    """A heavy request not admitted: which limit refused it, the HTTP status to answer and when to retry."""

    STATUS = {"client": 429, "kind": 503, "wait": 503, "worker": 503}

    def __init__(self, kind: str, scope: str, setting: str, value: int | float, retry_after_s: int, message: str):
        super().__init__(message)
        self.kind = kind
        self.scope = scope
        self.setting = setting
        self.value = value
        self.retry_after_s = retry_after_s
        self.message = message

    @property
    def status(self) -> int:
        """429 when the client is over its share, 503 when the server is at capacity."""
        return self.STATUS[self.scope]

    def as_dict(self) -> dict:
        """The limit, as the JSON body names it."""
        return {"kind": self.kind, "scope": self.scope, "setting": self.setting, "value": self.value,
                "retry_after_s": self.retry_after_s}


class Ticket:
    """An admitted request's hold on its slot (and client share); `release()` gives them back, once."""

    def __init__(self, admission: "Admission | None", kind: str, conn: Connection | None,
                 locks: list[tuple[int, int]], waited_s: float = 0.0, restore: "Callable[[], None] | None" = None):
        self._admission = admission
        self._restore = restore
        self.kind = kind
        self._conn = conn
        self._locks = locks
        self.waited_s = waited_s
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self.released = False

    def release(self) -> None:
        """Unlock the slot and the client share and return the connection; safe to call again."""
        with self._lock:
            if self.released:
                return
            self.released = True
        if self._restore is not None:
            self._restore()
        if self._admission is not None:
            self._admission._release(self, time.monotonic() - self._t0)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def admission_engine(url: str | sa.URL, pool_size: int) -> Engine:
    """An engine for the lock connections: autocommit (no transaction is held open while the work
    runs), one pooled connection per heavy thread, named after the process in pg_stat_activity."""
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=pool_size, max_overflow=2,
                            pool_pre_ping=True, use_native_hstore=False,
                            connect_args={"application_name": f"cmpd-hotspots admission {os.getpid()}",
                                          # a lock query never waits: a stuck server must not hang admission
                                          "options": "-c statement_timeout=5000"})


class Admission:
    """The admission controller of one process (thread-safe); every process on the database shares its slots."""

    def __init__(self, engine: Engine, limits: dict[str, Limit], *, queue_wait_s: float = 10.0,
                 local_slots: int = 6, poll_s: float = 0.1, nice: int = 0):
        unknown = sorted(set(limits) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind(s) of heavy work {unknown}: expected {', '.join(KINDS)}")
        self.engine = engine
        self.limits = {kind: limits.get(kind, Limit(0)) for kind in KINDS}
        self.queue_wait_s = float(queue_wait_s)
        self.local_slots = int(local_slots)
        self.poll_s = float(poll_s)
        self.nice = int(nice)
        self._local = threading.BoundedSemaphore(self.local_slots)
        self._stats_lock = threading.Lock()
        self._mean_s: dict[str, float] = {}

    # -- taking and giving back --------------------------------------------------------------
    def acquire(self, kind: str, client: str) -> Ticket:
        """A slot of `kind` for `client` (a token name or an address), waiting for one at most
        `queue_wait_s`; `Refused` naming the limit otherwise. Release the ticket when the work ends."""
        limit = self.limits[kind]
        if limit.cap == 0:
            return Ticket(None, kind, None, [])
        if not self._local.acquire(blocking=False):
            raise Refused(kind, "worker", "HOTSPOTS_HEAVY_THREADS", self.local_slots, self.retry_after(kind),
                          f"this server process is already running or holding {self.local_slots} heavy requests "
                          f"(HOTSPOTS_HEAVY_THREADS); its other threads are kept for light requests")
        conn = None
        locks: list[tuple[int, int]] = []
        try:
            conn = self.engine.connect()
            if limit.per_client:
                key = lock_key(kind, "client", client)
                slot = self._try(conn, key, limit.per_client)
                if slot is None:
                    raise Refused(kind, "client", setting_name(kind, "per_client"), limit.per_client,
                                  self.retry_after(kind),
                                  f"this client already has {limit.per_client} {kind} request(s) running or waiting "
                                  f"({setting_name(kind, 'per_client')}={limit.per_client}); wait for them to finish")
                locks.append((key, slot))
            run = lock_key(kind, "run")
            slot = self._try(conn, run, limit.cap)
            waited = 0.0
            if slot is None:
                slot, waited = self._wait(conn, kind, limit, run)
            locks.append((run, slot))
            return Ticket(self, kind, conn, locks, waited, lower_thread(self.nice))
        except BaseException:
            self._unlock(conn, locks)
            self._local.release()
            raise

    def _wait(self, conn: Connection, kind: str, limit: Limit, run: int) -> tuple[int, float]:
        """A running slot after waiting in one of the kind's waiting places; Refused when none is free."""
        full = (f"all {limit.cap} {kind} slots are busy ({setting_name(kind, 'cap')}={limit.cap}) and "
                f"{limit.queue} request(s) already wait for one ({setting_name(kind, 'queue')}={limit.queue})")
        queue = lock_key(kind, "queue")
        place = self._try(conn, queue, limit.queue) if limit.queue else None
        if place is None:
            raise Refused(kind, "kind", setting_name(kind, "cap"), limit.cap, self.retry_after(kind), full)
        t0 = time.monotonic()
        try:
            while True:
                slot = self._try(conn, run, limit.cap)
                if slot is not None:
                    return slot, time.monotonic() - t0
                if time.monotonic() - t0 + self.poll_s > self.queue_wait_s:
                    raise Refused(kind, "wait", "HOTSPOTS_QUEUE_WAIT_S", self.queue_wait_s, self.retry_after(kind),
                                  f"no {kind} slot freed within {self.queue_wait_s:g} s (HOTSPOTS_QUEUE_WAIT_S; "
                                  f"{setting_name(kind, 'cap')}={limit.cap})")
                time.sleep(self.poll_s)
        finally:
            self._unlock(conn, [(queue, place)], close=False)

    @staticmethod
    def _try(conn: Connection, key: int, n: int) -> int | None:
        # generate_series is scanned in order and LIMIT stops at the first lock taken, so one
        # statement takes at most one of the n locks.
        return conn.execute(_TRY, {"k": key, "n": n}).scalar()

    @staticmethod
    def _unlock(conn: Connection | None, locks: list[tuple[int, int]], close: bool = True) -> None:
        if conn is None:
            return
        try:
            for key, slot in locks:
                conn.execute(_UNLOCK, {"k": key, "s": slot})
        except sa.exc.DBAPIError:
            # The connection is gone (and its locks with it in PostgreSQL): never pool it again.
            conn.invalidate()
        if close:
            conn.close()

    def _release(self, ticket: Ticket, held_s: float) -> None:
        self._unlock(ticket._conn, ticket._locks)
        self._local.release()
        with self._stats_lock:
            mean = self._mean_s.get(ticket.kind)
            # A moving mean of recent durations: what the next Retry-After says.
            self._mean_s[ticket.kind] = held_s if mean is None else 0.8 * mean + 0.2 * held_s

    def retry_after(self, kind: str) -> int:
        """Seconds a refused client should wait: the recent mean duration of the kind here, 1 to 300."""
        with self._stats_lock:
            mean = self._mean_s.get(kind)
        if mean is None:
            return FIRST_RETRY_S[kind]
        return min(MAX_RETRY_S, max(1, math.ceil(mean)))

    # -- looking -------------------------------------------------------------------------------
    def held(self, conn: Connection | None = None) -> dict[str, dict[str, int]]:
        """Running slots and waiting places taken now, per kind, by every process on the database."""
        return held_slots(conn or self.engine)


def held_slots(bind: Engine | Connection) -> dict[str, dict[str, int]]:
    """Admission slots held in the database now: {kind: {"running": n, "waiting": n}}."""
    keys = {lock_key(kind, role): (kind, name) for kind in KINDS for role, name in (("run", "running"),
                                                                                    ("queue", "waiting"))}
    sql = sa.text("SELECT classid::bigint AS k, count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
                  " AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database"
                  " WHERE datname = current_database()) AND classid::bigint = ANY(:keys) GROUP BY 1")

    def run(conn: Connection):
        return conn.execute(sql, {"keys": list(keys)}).all()

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            rows = run(conn)
    else:
        rows = run(bind)
    out = {kind: {"running": 0, "waiting": 0} for kind in KINDS}
    for key, n in rows:
        kind, name = keys[int(key)]
        out[kind][name] = int(n)
    return out


# -- priority of heavy work ----------------------------------------------------------------------
# Native ids of the threads running admitted heavy work now, and the nice value their backends get.
_HEAVY_THREADS: dict[int, int] = {}
_WARNED: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    # Said once per process: a deployment that cannot renice says so in its log, then runs as before.
    if what not in _WARNED:
        _WARNED.add(what)
        log.warning(message)


def may_raise_priority(nice: int) -> bool:
    """Whether this process may bring a thread or process back from a higher nice value to `nice`
    (root, or an RLIMIT_NICE that allows it; a plain user in docker compose may not)."""
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or 20 - nice <= soft


def lower_thread(nice: int) -> Callable[[], None] | None:
    """Run the calling thread, and the backends of the connections it checks out, at `nice` until the
    returned function is called (None: nothing to undo, `nice` is 0)."""
    if nice <= 0:
        return None
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    # A pool thread left at a low priority would serve every later light request slowly: lower it
    # only when it can be brought back.
    lowered = before < nice and may_raise_priority(before)
    if before < nice and not lowered:
        _warn_once("thread", f"heavy work runs at the server threads' normal priority: this process may not raise "
                             f"a thread's priority back (not root, RLIMIT_NICE {resource.getrlimit(resource.RLIMIT_NICE)[0]})")
    if lowered:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError as exc:
            lowered = False
            _warn_once("thread", f"heavy work runs at normal priority: renicing its thread failed ({exc})")
    _HEAVY_THREADS[tid] = nice

    def restore() -> None:
        _HEAVY_THREADS.pop(tid, None)
        if lowered:
            os.setpriority(os.PRIO_PROCESS, tid, before)

    return restore


def lower_backends(engine: Engine) -> None:
    """Have `engine`'s connections run their PostgreSQL backend at the heavy nice value while a heavy
    thread holds them (once per engine; a no-op where the backends are not this machine's to renice)."""
    if not sa.event.contains(engine, "checkout", _on_checkout):
        sa.event.listen(engine, "checkout", _on_checkout)


def _local_backend(dbapi_conn, pid: int) -> bool:
    # The pid means a process here only when the server is on this machine (a socket directory or a
    # loopback address) and in this pid namespace (a database container's pids are not ours).
    host = dbapi_conn.info.host or ""
    if not (host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")):
        return False
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip().startswith("postgres")
    except OSError:
        return False


def _on_checkout(dbapi_conn, record: ConnectionPoolEntry, proxy) -> None:
    want = _HEAVY_THREADS.get(threading.get_native_id(), 0)
    info = record.info
    if want == info.get("hotspots_nice", 0) or info.get("hotspots_nice_off"):
        return
    pid = info.get("hotspots_backend")
    if pid is None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = info["hotspots_backend"] = cur.fetchone()[0]
        if not dbapi_conn.autocommit:
            dbapi_conn.rollback()   # no transaction left open by this look-up
        if not _local_backend(dbapi_conn, pid):
            info["hotspots_nice_off"] = True
            return
    have = info.get("hotspots_nice", 0)
    if want < have and not may_raise_priority(want):
        # Lowered for heavy work and not ours to raise again: a fresh backend for this light thread.
        raise sa.exc.DisconnectionError("backend left at a low priority by heavy work; replaced")
    try:
        os.setpriority(os.PRIO_PROCESS, pid, want)
    except OSError as exc:
        info["hotspots_nice_off"] = True
        _warn_once("backend", f"heavy work's PostgreSQL backends run at normal priority: renicing one failed ({exc})")
        return
    info["hotspots_nice"] = want
