"""A slow query under gunicorn is cut by the statement timeout and does not hold the other requests.

The "slow query" is made certain rather than hoped for: a test connection holds an ACCESS EXCLUSIVE
lock on `incidents`, so every request reading incidents waits in PostgreSQL for as long as the lock
is held (statement_timeout counts lock waits). Requests for calls, tiles and statistics do not touch
that table and must be served meanwhile; the stuck ones must come back as 503 once the timeout
passes, freeing their worker threads, while the lock is still held.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from tests.servers import gunicorn_argv, running_server

TIMEOUT_MS = 3000
THREADS = 4


def _get(url: str) -> tuple[int, dict | None, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            body = resp.read()
            kind = resp.headers.get("Content-Type", "")
            return resp.status, (json.loads(body) if "json" in kind else None), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


@pytest.fixture
def gunicorn_url(writable_url):
    """The app under gunicorn (1 worker x 4 threads) with a 3 s statement timeout."""
    env = {"DATABASE_URL": writable_url, "HOTSPOTS_REQUEST_TIMEOUT_MS": str(TIMEOUT_MS), "HOTSPOTS_API_TOKENS": None}
    argv = gunicorn_argv(workers=1, threads=THREADS, extra=("--timeout", "120", "--log-level", "warning"))
    with running_server(argv, env, timeout_s=60) as (url, _):
        yield url


def _lock_waiters(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query ILIKE '%incidents%'")).scalar()


def _wait_for_waiters(engine, n: int) -> None:
    deadline = time.monotonic() + 30
    while _lock_waiters(engine) < n:
        assert time.monotonic() < deadline, f"expected {n} requests waiting on the incidents lock"
        time.sleep(0.05)


FAST = ["/ogc/collections/calls/items?limit=20&datetime=2021-03-01/2021-03-31",
        "/tiles/calls/12/1128/1621.pbf",
        "/api/areas/npa?start=2021-06-01&end=2021-06-30",
        "/ogc/collections/divisions/items?limit=5",
        "/api/config"]
SLOW = "/ogc/collections/incidents/items?limit=10"


def test_a_stuck_query_is_cut_and_does_not_hold_the_others(gunicorn_url, writable_url):
    watcher = sa.create_engine(writable_url, poolclass=sa.pool.NullPool)
    assert _get(gunicorn_url + SLOW)[0] == 200           # incidents are served when nothing holds them
    locker = sa.create_engine(writable_url).connect()
    locker.exec_driver_sql("BEGIN")
    locker.exec_driver_sql("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
    slow_results: list = []

    def slow():
        slow_results.append(_get(gunicorn_url + SLOW))

    try:
        # Phase 1: two of the four worker threads stuck on the lock; the rest of the app is served
        # while they are still waiting (checked in the database at each answer, not by the clock).
        stuck = [threading.Thread(target=slow) for _ in range(2)]
        for t in stuck:
            t.start()
        _wait_for_waiters(watcher, 2)
        fast_statuses, waiting_at_answer = [], []
        for path in FAST:
            status, _, _ = _get(gunicorn_url + path)
            fast_statuses.append(status)
            waiting_at_answer.append(_lock_waiters(watcher))
        assert fast_statuses == [200] * len(FAST)
        assert waiting_at_answer[0] == 2 and not slow_results   # served while both were still stuck
        for t in stuck:
            t.join(60)

        # Phase 2: every worker thread stuck; the timeout frees them and queued requests go through,
        # with the lock still held.
        stuck = [threading.Thread(target=slow) for _ in range(THREADS)]
        for t in stuck:
            t.start()
        _wait_for_waiters(watcher, THREADS)
        queued = [_get(gunicorn_url + p)[0] for p in FAST]
        for t in stuck:
            t.join(60)
        assert queued == [200] * len(FAST)
        assert locker.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE relation = 'incidents'::regclass"
                                      " AND mode = 'AccessExclusiveLock' AND granted").scalar() == 1
        assert len(slow_results) == 2 + THREADS
        for status, body, headers in slow_results:
            assert status == 503
            assert body["code"] == "ServiceUnavailable"
            assert f"{TIMEOUT_MS} ms limit" in body["description"]
            assert headers["Retry-After"] == "5"
        assert _lock_waiters(watcher) == 0                     # the cut statements are gone from the server
    finally:
        locker.exec_driver_sql("ROLLBACK")
        locker.close()
    status, body, _ = _get(gunicorn_url + SLOW)               # the pool's connections are fine afterwards
    assert status == 200 and body["numberReturned"] == 10
    watcher.dispose()
