"""Single machine versus a 2-worker Dask LocalCluster on N generated calls: the heavy analysis steps.

Steps, each run both ways on the same database and checked to give the same answer:
- assign every call to its NPA and division (geo.spatial.AreaIndex; counts per NPA compared)
- Gi* on the 462 NPAs, labelled violent calls, 999 permutations (per-NPA values compared)
- Gi* on 1,000 ft grid cells, 99 permutations (per-cell values compared)
- labelling every call with the current model, written back to PostGIS (violent count and sum of p compared)

Data: the `bench_score` database of var/bench (1M generated, labelled calls, bench/classifier.py)
is copied to `bench_dask_<N>` and its calls repeated under new ids up to N rows (same points and
times: the density of a region N/1M times Charlotte's). The GiST index on calls.geom is dropped
in the copy: nothing measured here uses it, and it would slow the bulk copies and relabels.

Memory: resident set size sampled every 50 ms with psutil: this process for the single-machine
path; the worker processes (summed) and this process (the client) for Dask. PostgreSQL's own
processes are not counted in either.

Usage: python bench/dask_scale.py [--calls 10000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo import hotspots, scale  # noqa: E402
from geo.classify import label_calls  # noqa: E402
from geo.db import read_query_frame  # noqa: E402
from geo.db import EmbeddedCluster, make_engine  # noqa: E402
from geo.filters import Filter  # noqa: E402
from geo.spatial import AreaIndex, read_divisions, read_neighborhoods  # noqa: E402

BASE = "bench_score"
COLUMNS = ("received_at, call_type, priority, address, city, zip, division_source, incident_report_id, geom,"
           " division_id, npa_id, p_violent, label, model_version, labelled_at, row_hash, batch_id")


class PeakRss:
    """Peak resident memory of a set of processes (summed), sampled in a background thread."""

    def __init__(self, pids: list[int]):
        self.procs = [psutil.Process(p) for p in pids]
        self.start = self._now()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _now(self) -> int:
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._now())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def build_database(admin_url, n_calls: int) -> str:
    """bench_dask_<N>: a copy of bench_score with its calls repeated up to n_calls rows."""
    name = f"bench_dask_{n_calls}"
    admin = sa.create_engine(admin_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
        if not exists:
            conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {BASE}")
    admin.dispose()
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, statement_timeout_ms=0)
    with engine.begin() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar_one()
        base = conn.execute(sa.text("SELECT count(*) FROM calls WHERE call_id NOT LIKE '%%~%%'")).scalar_one()
    if have < n_calls:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX IF EXISTS calls_geom_idx")
        copies = math.ceil(n_calls / base)
        for k in range(have // base, copies):
            rows = min(base, n_calls - k * base)
            with engine.begin() as conn:
                conn.execute(sa.text(
                    f"INSERT INTO calls (call_id, {COLUMNS}) SELECT call_id || '~' || :k, {COLUMNS} FROM calls"
                    " WHERE call_id NOT LIKE '%~%' ORDER BY call_id LIMIT :rows"), {"k": k, "rows": rows})
            print(f"  copy {k}: {k * base + rows:,} calls", flush=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE calls")
        print(f"  built {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    with engine.begin() as conn:
        # Two names for the same stored model, so each path relabels every call (relabel = version differs).
        conn.execute(sa.text(
            "INSERT INTO model_runs (model_version, algorithm, params, metrics, threshold, artifact_path, artifact_sha256)"
            " SELECT v, algorithm, params, metrics, threshold, artifact_path, artifact_sha256"
            " FROM model_runs, unnest(ARRAY['bench-single', 'bench-dask']) AS v WHERE is_current"
            " ON CONFLICT (model_version) DO NOTHING"))
    engine.dispose()
    return url


def assign_single(engine) -> dict[int, int]:
    """All call points through this process, both AreaIndexes; calls per NPA."""
    with engine.connect() as conn:
        rows = read_query_frame(conn, "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM calls", {})
    npas, divisions = read_neighborhoods(engine), read_divisions(engine)
    lon, lat = rows["lon"].to_numpy(), rows["lat"].to_numpy()
    npa = AreaIndex(npas.geometry, npas["npa_id"]).lookup(lon, lat)
    AreaIndex(divisions.geometry, divisions["division_id"]).lookup(lon, lat)
    ids, counts = np.unique(npa[npa != None].astype(np.int64), return_counts=True)  # noqa: E711
    return dict(zip(ids.tolist(), counts.tolist()))


def assign_dask(engine, client) -> dict[int, int]:
    """The same on the workers; only the per-NPA counts come back."""
    counts = client.compute(scale.assign_areas(engine, client).groupby("npa_id").size(split_out=1)).result()
    return {int(k): int(v) for k, v in counts.items()}


def label_totals(engine, version: str) -> tuple[int, int, float]:
    with engine.connect() as conn:
        n, violent, p = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE label), sum(p_violent::float8) FROM calls WHERE model_version = :v"),
            {"v": version}).one()
    return int(n), int(violent), float(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-label", action="store_true", help="Only the read-and-aggregate steps (labelling is slow).")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    cluster = EmbeddedCluster(REPO / "var" / "bench" / "pg")
    server = make_url(cluster.up())
    print(f"database with {args.calls:,} calls", flush=True)
    url = build_database(server, args.calls)
    engine = make_engine(url, statement_timeout_ms=0)
    with engine.connect() as conn:
        n, first, last = conn.execute(sa.text(
            "SELECT count(*), min(received_at)::date, max(received_at)::date FROM calls")).one()
    period = Filter.local_days(first, last)
    me = psutil.Process()
    results: dict[str, dict] = {}

    def timed(step: str, path: str, fn, pids: list[int]):
        with PeakRss(pids) as mem:
            t0 = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t0
        results.setdefault(step, {})[path] = {
            "seconds": round(seconds, 2), "calls_per_s": round(n / seconds),
            "peak_rss_mb": round(mem.peak / 2**20), "rss_growth_mb": round((mem.peak - mem.start) / 2**20)}
        print(f"  {step:8} {path:7} {seconds:7.1f} s  {n / seconds:>10,.0f} calls/s  peak {mem.peak / 2**20:,.0f} MB",
              flush=True)
        return out

    print("single machine", flush=True)
    single = {
        "assign": timed("assign", "single", lambda: assign_single(engine), [me.pid]),
        "npa": timed("npa_gi", "single", lambda: hotspots.npa_hotspots(engine, period), [me.pid]),
        "grid": timed("grid_gi", "single", lambda: hotspots.grid_hotspots(engine, period, cell_ft=1000, permutations=99),
                      [me.pid]),
    }
    if not args.no_label:
        timed("label", "single", lambda: label_calls(engine, relabel=True, version="bench-single"), [me.pid])
        single_labels = label_totals(engine, "bench-single")

    print(f"Dask LocalCluster, {args.workers} worker processes x 1 thread", flush=True)
    t0 = time.perf_counter()
    with scale.dask_client(workers=args.workers, processes=True) as client:
        startup = round(time.perf_counter() - t0, 1)
        workers = list(client.run(lambda: __import__("os").getpid()).values())
        dask = {
            "assign": timed("assign", "dask", lambda: assign_dask(engine, client), workers),
            "npa": timed("npa_gi", "dask", lambda: scale.npa_hotspots(engine, client, period), workers),
            "grid": timed("grid_gi", "dask", lambda: scale.grid_hotspots(engine, client, period, cell_ft=1000,
                                                                          permutations=99), workers),
        }
        if not args.no_label:
            timed("label", "dask", lambda: scale.label_calls(engine, client, relabel=True, version="bench-dask"),
                  workers)
        client_peak = round(me.memory_info().rss / 2**20)

    same = {
        "assign": single["assign"] == dask["assign"],
        "npa_values": bool(np.array_equal(single["npa"]["value"].to_numpy(), dask["npa"]["value"].to_numpy())),
        "npa_classes": list(single["npa"]["hotspot_class"]) == list(dask["npa"]["hotspot_class"]),
        "grid_values": bool(np.array_equal(single["grid"]["value"].to_numpy(), dask["grid"]["value"].to_numpy())),
        "grid_classes": list(single["grid"]["hotspot_class"]) == list(dask["grid"]["hotspot_class"]),
    }
    if not args.no_label:
        a, b = single_labels, label_totals(engine, "bench-dask")
        # Rows labelled and labelled violent must match exactly; the sum of millions of float4 p's to 1e-6 relative.
        same["label"] = a[:2] == b[:2] and abs(a[2] - b[2]) <= 1e-6 * max(a[2], 1.0)
        same["label_totals"] = {"single": a, "dask": b}
    print(json.dumps(same), flush=True)
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "calls": int(n), "workers": args.workers,
           "cluster_startup_s": startup, "client_rss_mb": client_peak, "steps": results, "same_results": same}
    path = REPO / "var" / "bench" / f"dask_scale_{n}{'_no_label' if args.no_label else ''}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str))
    engine.dispose()


if __name__ == "__main__":
    main()
