"""Tile benchmark on 1,000,000 calls: our tiles over HTTP against the same SQL through psycopg2 and tipg.

Side by side on one database (`bench_tiles` in the var/bench cluster, copied from the `bench_score`
database that bench/classifier.py leaves: 1M generated calls scored by the classifier; migrated and
clustered in space with geo.db.cluster_points), for every tile of a set at z10, z12 and z14:

- **raw SQL**: geo.tiles.tile_sql (the exact statement the server runs) through a psycopg2
  connection with max_parallel_workers_per_gather = 0 (its best plan), no HTTP;
- **ours, uncached**: GETs from the app under gunicorn (gthread) with TILE_CACHE_MB=0, so every
  request renders (repeated --rounds times per tile, alternating with raw SQL);
- **ours, cached**: the app with its cache (the in-process LRU of gzipped tiles): one GET fills
  it, the median of the next 5 is recorded;
- **tipg**: the same table through tipg (uvicorn), raw points, TIPG_MAX_FEATURES_PER_TILE=1000000.

The order of raw SQL and ours alternates from tile to tile; a warm-up pass over every tile with
raw SQL runs first so that all sides read a warm buffer cache. Feature counts are compared too:
at z10/z12 ours are aggregated (the sum of `count` is the calls in the tile; tipg also sends the
buffer's points), at z14 ours are raw unless the tile is too dense.

Usage: python bench/tiles.py [--per-zoom 12] [--no-cluster] [--skip-tipg]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import mapbox_vector_tile
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo import tiles as gt  # noqa: E402
from geo.db import EmbeddedCluster, cluster_points, make_engine  # noqa: E402
from geo.migrate import migrate  # noqa: E402

DB = "bench_tiles"
ZOOMS = (10, 12, 14)
LIMIT_BYTES = 500 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up within {timeout} s")


def prepare(url: sa.URL, cluster_table: bool) -> sa.Engine:
    """bench_tiles: a migrated copy of bench_score (1M scored calls), clustered in space once."""
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        have = set(conn.exec_driver_sql("SELECT datname FROM pg_database").scalars())
        if DB not in have:
            if "bench_score" not in have:
                raise SystemExit("var/bench holds no bench_score database; run bench/classifier.py first")
            print("copying bench_score -> bench_tiles", flush=True)
            conn.exec_driver_sql(f"CREATE DATABASE {DB} TEMPLATE bench_score")
    admin.dispose()
    engine = make_engine(url.set(database=DB).render_as_string(hide_password=False))
    migrate(engine)
    with engine.connect() as conn:
        clustered = conn.execute(sa.text(
            "SELECT i.indisclustered FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'calls_geom_idx'")).scalar()
    if cluster_table and not clustered:
        print("clustering calls on the GiST index", flush=True)
        t0 = time.perf_counter()
        cluster_points(engine, "calls")
        print(f"  {time.perf_counter() - t0:.1f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE calls")
    return engine


def pick_tiles(engine: sa.Engine, per_zoom: int) -> dict[int, list[tuple[int, int]]]:
    """Tiles with calls at each zoom: all of them at z10, the busiest and a spread of others above."""
    out = {}
    with engine.connect() as conn:
        for z in ZOOMS:
            rows = conn.execute(sa.text(
                "SELECT tx, ty, count(*) AS n FROM ("
                " SELECT floor((ST_X(geom) + 180) / 360 * 2 ^ :z)::int AS tx,"
                "        floor((1 - ln(tan(radians(ST_Y(geom))) + 1 / cos(radians(ST_Y(geom)))) / pi()) / 2 * 2 ^ :z)::int AS ty"
                " FROM calls) t GROUP BY tx, ty ORDER BY n DESC"), {"z": z}).all()
            if len(rows) <= per_zoom:
                out[z] = [(r.tx, r.ty) for r in rows]
            else:
                step = len(rows) / per_zoom
                out[z] = [(rows[int(i * step)].tx, rows[int(i * step)].ty) for i in range(per_zoom)]
    return out


class RawSQL:
    """The server's tile statement through one psycopg2 connection with parallel workers off."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.conn = engine.raw_connection()
        cur = self.conn.cursor()
        cur.execute("SET max_parallel_workers_per_gather = 0")
        self.conn.commit()

    def tile(self, z: int, x: int, y: int) -> bytes:
        sql, params = gt.tile_sql(gt.TILE_LAYERS["calls"], z, x, y)
        compiled = sa.text(sql).compile(dialect=self.engine.dialect)
        cur = self.conn.cursor()
        cur.execute(compiled.string, compiled.construct_params(params))
        value = cur.fetchone()[0]
        self.conn.commit()
        return bytes(value) if value else b""


def _decode(body: bytes, layer: str) -> list[dict]:
    if not body:
        return []
    return mapbox_vector_tile.decode(body).get(layer, {"features": []})["features"]


class Http:
    """A keep-alive HTTP/1.1 client that times the request and the reading of the body as sent.

    requests would add its own per-request overhead and gunzip the body inside the timed call;
    here the body is read as it comes over the wire (gzip where the server sends it) and is
    decompressed afterwards, outside the timing, for the checks.
    """

    def __init__(self, base: str):
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)

    def get(self, path: str) -> tuple[float, int, dict, bytes]:
        """(milliseconds, status, headers, decoded body)."""
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                self.conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
                resp = self.conn.getresponse()
                wire = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                # The server closed an idle keep-alive connection (gunicorn after 2 s, e.g. while
                # tipg renders): reconnect and time the retry alone, as a browser would.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
                if attempt == 2:
                    raise
        ms = (time.perf_counter() - t0) * 1000
        headers = {k.lower(): v for k, v in resp.getheaders()}
        body = gzip.decompress(wire) if headers.get("content-encoding") == "gzip" else wire
        headers["wire-bytes"] = len(wire)
        return ms, resp.status, headers, body


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-zoom", type=int, default=12, help="tiles per zoom (z10 has fewer with calls)")
    parser.add_argument("--no-cluster", action="store_true", help="do not CLUSTER the table in space")
    parser.add_argument("--skip-tipg", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="uncached and raw SQL samples per tile")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()

    work = REPO / "var" / "bench"
    cluster = EmbeddedCluster(work / "pg")
    url = make_url(cluster.up())
    engine = prepare(url, not args.no_cluster)
    with engine.connect() as conn:
        n_calls = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar()
    tiles = pick_tiles(engine, args.per_zoom)
    db_url = url.set(database=DB).render_as_string(hide_password=False)

    procs = []

    def gunicorn(cache_mb: int) -> str:
        port = _free_port()
        env = dict(os.environ, DATABASE_URL=db_url, HOTSPOTS_TILE_CACHE_MB=str(cache_mb),
                   HOTSPOTS_REQUEST_TIMEOUT_MS="120000")
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", "4", "--timeout", "300", "web:create_app()"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        return f"http://127.0.0.1:{port}"

    # Uncached: a server with no tile cache, so every request renders (and can be repeated).
    uncached = gunicorn(0)
    ours = gunicorn(1024)
    tipg = None
    if not args.skip_tipg:
        tport = _free_port()
        tenv = dict(os.environ, DATABASE_URL=db_url.replace("postgresql+psycopg2://", "postgresql://"),
                    TIPG_DB_SCHEMAS='["public"]', TIPG_MAX_FEATURES_PER_TILE="1000000", TIPG_TILE_BUFFER="64")
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "uvicorn"), "tipg.main:app", "--port", str(tport), "--log-level", "warning"],
            cwd=work, env=tenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        tipg = f"http://127.0.0.1:{tport}"
    try:
        _wait(uncached + "/health")
        _wait(ours + "/health")
        if tipg:
            _wait(tipg + "/collections")
        raw = RawSQL(engine)
        ours_http, cached_http = Http(uncached), Http(ours)
        tipg_http = Http(tipg) if tipg else None
        print("warm-up: every tile once through raw SQL and once through each server", flush=True)
        for z, zt in tiles.items():
            for x, y in zt:
                raw.tile(z, x, y)
                ours_http.get(f"/tiles/calls/{z}/{x}/{y}.pbf")
        if tipg_http:
            tipg_http.get("/collections/public.calls/tiles/WebMercatorQuad/14/4512/6477")
        rows = []
        for z, zt in tiles.items():
            for i, (x, y) in enumerate(zt):
                rec = {"z": z, "x": x, "y": y, "raw_ms": [], "ours_ms": []}

                def run_raw():
                    t0 = time.perf_counter()
                    body = raw.tile(z, x, y)
                    rec["raw_ms"].append((time.perf_counter() - t0) * 1000)
                    rec["raw_bytes"] = len(body)

                def run_ours():
                    ms, status, headers, body = ours_http.get(f"/tiles/calls/{z}/{x}/{y}.pbf")
                    rec["ours_ms"].append(ms)
                    assert status in (200, 204), body[:200]
                    rec["ours_bytes"] = len(body)
                    rec["ours_gzip_bytes"] = headers["wire-bytes"]
                    feats = _decode(body, "calls")
                    rec["ours_features"] = len(feats)
                    rec["ours_aggregated"] = bool(feats) and "count" in feats[0]["properties"]
                    rec["ours_calls"] = sum(f["properties"].get("count", 1) for f in feats)

                for round_ in range(args.rounds):
                    for fn in ((run_raw, run_ours) if (i + round_) % 2 == 0 else (run_ours, run_raw)):
                        fn()
                # cached: the first GET fills the cache, the next ones are hits
                first = cached_http.get(f"/tiles/calls/{z}/{x}/{y}.pbf")[3]
                hits = []
                for _ in range(5):
                    ms, _, _, body = cached_http.get(f"/tiles/calls/{z}/{x}/{y}.pbf")
                    hits.append(ms)
                    assert body == first and len(body) == rec["ours_bytes"]
                rec["cached_ms"] = statistics.median(hits)
                if tipg_http:
                    ms, status, _, body = tipg_http.get(f"/collections/public.calls/tiles/WebMercatorQuad/{z}/{x}/{y}")
                    rec["tipg_ms"] = ms
                    assert status == 200, body[:200]
                    rec["tipg_bytes"] = len(body)
                    rec["tipg_features"] = len(_decode(body, "default"))
                rows.append(rec)
                print(json.dumps({k: ([round(v, 1) for v in val] if isinstance(val, list) else
                                      round(val, 1) if isinstance(val, float) else val)
                                  for k, val in rec.items()}), flush=True)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)

    summary = []
    for z in ZOOMS:
        zr = [r for r in rows if r["z"] == z]
        s = {"z": z, "tiles": len(zr)}
        for k in ("raw_ms", "ours_ms", "cached_ms", "tipg_ms"):
            if k in zr[0]:
                # every sample of the zoom (raw and uncached: rounds x tiles)
                samples = [v for r in zr for v in (r[k] if isinstance(r[k], list) else [r[k]])]
                s[k.replace("_ms", "_p50")] = round(statistics.median(samples), 2)
                s[k.replace("_ms", "_p95")] = round(_pct(samples, 0.95), 2)
        s["uncached_over_raw_p50"] = round(s["ours_p50"] / s["raw_p50"], 3)
        if "tipg_p50" in s:
            s["tipg_over_cached_p50"] = round(s["tipg_p50"] / s["cached_p50"], 1)
            s["tipg_over_cached_min"] = round(min(r["tipg_ms"] / r["cached_ms"] for r in zr), 1)
            s["tipg_over_cached_p50_tilewise"] = round(statistics.median(r["tipg_ms"] / r["cached_ms"] for r in zr), 1)
            s["tipg_max_kb"] = round(max(r["tipg_bytes"] for r in zr) / 1024, 1)
            s["tipg_features_max"] = max(r["tipg_features"] for r in zr)
        s["ours_max_kb"] = round(max(r["ours_bytes"] for r in zr) / 1024, 1)
        s["ours_gzip_max_kb"] = round(max(r["ours_gzip_bytes"] for r in zr) / 1024, 1)
        s["ours_p50_kb"] = round(statistics.median(r["ours_bytes"] for r in zr) / 1024, 1)
        s["ours_features_max"] = max(r["ours_features"] for r in zr)
        s["raw_point_tiles"] = sum(1 for r in zr if r["ours_features"] and not r["ours_aggregated"])
        s["ours_calls_sum"] = sum(r["ours_calls"] for r in zr)
        if "tipg_features" in zr[0]:
            s["tipg_features_sum"] = sum(r["tipg_features"] for r in zr)
        summary.append(s)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "calls": n_calls,
        "clustered": not args.no_cluster,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "summary": summary,
        "tiles": rows,
        "all_under_500kB": all(r["ours_bytes"] <= LIMIT_BYTES for r in rows),
    }
    print(json.dumps(summary, indent=2))
    (work / "tiles_result.json").write_text(json.dumps(result, indent=2))
    engine.dispose()


if __name__ == "__main__":
    main()
