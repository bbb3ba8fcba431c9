"""Concurrent clients against the server under gunicorn: tiles, OGC items and map statistics mixed.

Starts `gunicorn 'web:create_app()'` on a free local port against a database (default: the demo
database; `--database-url` for another, e.g. the 1M-call bench database), then runs N client
threads for D seconds, each with its own keep-alive connection, picking requests from a fixed mix.
Records requests, errors (anything but 200/204/304, or a failed connection), and latency
percentiles per kind in var/bench/concurrency_result.json. Figures go to bench/RESULTS.md.

With `--stuck-clients N`, a separate connection holds an exclusive lock on `incidents` for the
whole run (as a CLUSTER, VACUUM FULL or an analyst's forgotten transaction would) and N more
clients ask for incidents items back to back: each of their requests waits in PostgreSQL until
the statement timeout (`--request-timeout-ms`) cuts it. They are reported apart ("stuck"); the
errors and percentiles of the mix show whether they held the other requests up.

Usage: python bench/concurrency.py [--clients 50] [--seconds 30] [--workers 2] [--database-url URL]
                                   [--stuck-clients 0] [--request-timeout-ms 15000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo import db as dbmod  # noqa: E402

# Charlotte's centre and the web-mercator tile covering a lon/lat at zoom z.
CENTRE = (-80.84, 35.23)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a point."""
    import math

    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def request_mix(rng: random.Random, divisions: list[str], months: list[str]) -> tuple[str, str]:
    """One (kind, path) drawn from the mix: 50% tiles, 25% items, 25% statistics."""
    r = rng.random()
    lon = CENTRE[0] + rng.uniform(-0.15, 0.15)
    lat = CENTRE[1] + rng.uniform(-0.12, 0.12)
    month = rng.choice(months)
    if r < 0.5:
        z = rng.choice([10, 12, 13, 14])
        x, y = tile_of(lon, lat, z)
        layer = rng.choice(["calls", "calls", "hotspot_cells", "neighborhoods"])
        q = f"?preset=28d&end={month}-28" if layer == "calls" and rng.random() < 0.5 else ""
        return "tile", f"/tiles/{layer}/{z}/{x}/{y}.pbf{q}"
    if r < 0.75:
        d = 0.01
        return "items", (f"/ogc/collections/calls/items?limit=100&bbox={lon - d:.4f},{lat - d:.4f},{lon + d:.4f},{lat + d:.4f}"
                         f"&datetime={month}-01/{month}-28")
    if rng.random() < 0.5:
        return "stats", f"/api/panel/division/{rng.choice(divisions)}?preset=28d&end={month}-28"
    return "stats", f"/api/areas/npa?start={month}-01&end={month}-28&violent=true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not come up")


STUCK_PATH = "/ogc/collections/incidents/items?limit=100"


def client(port: int, seed: int, stop_at: float, divisions: list[str], months: list[str], out: list,
           stuck: bool = False) -> None:
    """One client: keep-alive connection, requests back to back until stop_at."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.time() < stop_at:
        kind, path = ("stuck", STUCK_PATH) if stuck else request_mix(rng, divisions, months)
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            status = f"{type(exc).__name__}"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out.append((kind, status, time.perf_counter() - t0, path))
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--database-url")
    ap.add_argument("--stuck-clients", type=int, default=0)
    ap.add_argument("--request-timeout-ms", type=int, default=15000)
    args = ap.parse_args()
    url = args.database_url or dbmod.resolve_url()
    engine = dbmod.make_engine(url)
    import sqlalchemy as sa

    with engine.connect() as conn:
        divisions = [r[0] for r in conn.execute(sa.text("SELECT division_id FROM divisions ORDER BY 1"))]
        months = [r[0] for r in conn.execute(sa.text(
            "SELECT DISTINCT to_char(received_at AT TIME ZONE 'America/New_York', 'YYYY-MM') FROM calls ORDER BY 1"))]
        n_calls = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar()
    engine.dispose()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "HOTSPOTS_REQUEST_TIMEOUT_MS": str(args.request_timeout_ms)}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    server = subprocess.Popen([gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
                               "--worker-class", "gthread", "--threads", str(args.threads), "--log-level", "warning",
                               "web:create_app()"], env=env, cwd=REPO)
    try:
        wait_up(port)
        locker = None
        if args.stuck_clients:
            locker = dbmod.make_engine(url).connect()
            locker.exec_driver_sql("BEGIN")
            locker.exec_driver_sql("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        results: list = []
        stop_at = time.time() + args.seconds
        threads = [threading.Thread(target=client, args=(port, i, stop_at, divisions, months, results))
                   for i in range(args.clients)]
        threads += [threading.Thread(target=client, args=(port, 10_000 + i, stop_at, divisions, months, results, True))
                    for i in range(args.stuck_clients)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        if locker is not None:
            locker.exec_driver_sql("ROLLBACK")
            locker.close()
    finally:
        server.terminate()
        server.wait(30)
    ok = {200, 204, 304}
    stuck = [r for r in results if r[0] == "stuck"]
    results = [r for r in results if r[0] != "stuck"]
    errors = [r for r in results if r[1] not in ok]
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calls_in_database": n_calls,
        "clients": args.clients, "seconds": round(elapsed, 1), "workers": args.workers, "threads": args.threads,
        "requests": len(results), "requests_per_s": round(len(results) / elapsed, 1), "errors": len(errors),
        "error_examples": [f"{s} {p}" for _, s, _, p in errors[:10]],
        "by_kind": {},
        "request_timeout_ms": args.request_timeout_ms,
    }
    if args.stuck_clients:
        lat = np.array([r[2] for r in stuck]) * 1000
        summary["stuck"] = {"clients": args.stuck_clients, "requests": len(stuck),
                            "statuses": dict(sorted(Counter(str(r[1]) for r in stuck).items())),
                            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                            "max_ms": round(float(lat.max()), 1) if len(lat) else None}
    for kind in ("tile", "items", "stats"):
        lat = np.array([r[2] for r in results if r[0] == kind]) * 1000
        if len(lat):
            summary["by_kind"][kind] = {"n": int(len(lat)), "p50_ms": round(float(np.percentile(lat, 50)), 1),
                                        "p95_ms": round(float(np.percentile(lat, 95)), 1),
                                        "max_ms": round(float(lat.max()), 1)}
    lat = np.array([r[2] for r in results]) * 1000
    summary["all"] = {"p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1)}
    out = REPO / "var" / "bench" / ("concurrency_stuck_result.json" if args.stuck_clients else "concurrency_result.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
