"""Point-in-polygon benchmark: assign 1M and 5M call points to the 462 NPAs, four ways, side by side.

- ours: geo.spatial.AreaIndex (grid of cells; only points in cells a boundary crosses are tested)
- shapely STRtree.query(points, predicate="within") on the same arrays
- PostGIS, best plan: NPAs as the outer side probing the points' GiST index (planner settings from
  shared/NOTES.md), timing the join only (the points are loaded and indexed beforehand)
- DuckDB spatial: ST_Within join of the same points and polygons

Points are the generated calls (geo/synth.py) of bench/load_calls.py; the 5M set repeats them with
a small jitter. Every method's answer is compared with STRtree's for every point.

Usage: python bench/assign_points.py [--sizes 1000000 5000000] [--skip-strtree-above 5000000]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo.db import EmbeddedCluster, make_engine  # noqa: E402
from geo.ingest.shapes import repair_polygons  # noqa: E402
from geo.spatial import AreaIndex  # noqa: E402


def points(n: int, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Generated call coordinates, repeated with about 30 m of jitter up to n points."""
    from geo.synth import generate

    out = REPO / "var" / "bench" / "pip_calls"
    csv = out / "calls.csv"
    if not csv.exists():
        generate(data_dir, out, start=date(2021, 1, 1), days=730, n_calls=1_000_000, seed=2264, dirty=False)
    base = pd.read_csv(csv, usecols=["LONGITUDE", "LATITUDE"])
    lon, lat = base["LONGITUDE"].to_numpy(), base["LATITUDE"].to_numpy()
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(lon), n) if n > len(lon) else np.arange(n)
    jitter = 0.0003 if n > len(lon) else 0.0
    return lon[idx] + rng.uniform(-jitter, jitter, n), lat[idx] + rng.uniform(-jitter, jitter, n)


def strtree_within(polygons: np.ndarray, ids: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    tree = shapely.STRtree(polygons)
    pt, poly = tree.query(shapely.points(lon, lat), predicate="within")
    out = np.full(len(lon), -1, dtype=np.int64)
    out[pt] = ids[poly]
    return out


def postgis(engine: sa.Engine, lon: np.ndarray, lat: np.ndarray) -> tuple[float, np.ndarray]:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_points")
        conn.exec_driver_sql("CREATE TABLE bench_points (id bigint, geom geometry(Point, 4326))")
        buf = io.StringIO()
        pd.DataFrame({"id": np.arange(len(lon)), "lon": lon, "lat": lat}).to_csv(buf, index=False, header=False)
        buf.seek(0)
        conn.exec_driver_sql("CREATE TEMP TABLE raw (id bigint, lon float8, lat float8) ON COMMIT DROP")
        conn.connection.driver_connection.cursor().copy_expert("COPY raw FROM STDIN WITH (FORMAT csv)", buf)
        conn.exec_driver_sql("INSERT INTO bench_points SELECT id, ST_SetSRID(ST_Point(lon, lat), 4326) FROM raw")
        conn.exec_driver_sql("CREATE INDEX ON bench_points USING gist (geom)")
        conn.exec_driver_sql("ANALYZE bench_points")
    with engine.connect() as conn:
        for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0",
                        "seq_page_cost = 1000"):
            conn.exec_driver_sql(f"SET {setting}")
        # Timed as the database would use it: the assignment written to a table, no transfer to Python.
        t0 = time.perf_counter()
        conn.exec_driver_sql(
            "CREATE TEMP TABLE assigned AS SELECT p.id, n.npa_id FROM neighborhoods n"
            " JOIN bench_points p ON ST_Contains(n.geom, p.geom)")
        elapsed = time.perf_counter() - t0
        rows = conn.exec_driver_sql("SELECT id, npa_id FROM assigned").all()
        conn.exec_driver_sql("DROP TABLE assigned")
    out = np.full(len(lon), -1, dtype=np.int64)
    arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
    out[arr[:, 0]] = arr[:, 1]
    return elapsed, out


def duckdb_join(npa: gpd.GeoDataFrame, lon: np.ndarray, lat: np.ndarray) -> tuple[float, np.ndarray]:
    import duckdb
    import duckdb_extension_spatial

    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_spatial.__file__), "**", "spatial.duckdb_extension"),
                    recursive=True)[0]
    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    polys = pd.DataFrame({"npa_id": npa["npa_id"].to_numpy(), "wkb": shapely.to_wkb(npa.geometry.values)})
    pts = pd.DataFrame({"id": np.arange(len(lon)), "lon": lon, "lat": lat})
    con.register("polys_df", polys)
    con.register("pts_df", pts)
    con.execute("CREATE TABLE polys AS SELECT npa_id, ST_GeomFromWKB(wkb) AS geom FROM polys_df")
    con.execute("CREATE TABLE pts AS SELECT id, ST_Point(lon, lat) AS geom FROM pts_df")
    t0 = time.perf_counter()
    rows = con.execute("SELECT p.id, n.npa_id FROM pts p JOIN polys n ON ST_Within(p.geom, n.geom)").fetchnumpy()
    elapsed = time.perf_counter() - t0
    out = np.full(len(lon), -1, dtype=np.int64)
    out[rows["id"]] = rows["npa_id"]
    return elapsed, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    args = parser.parse_args()
    data_dir = Path(os.environ.get("HOTSPOTS_DATA_DIR", REPO.parent / "shared" / "cmpd"))
    npa = gpd.read_file(data_dir / "npa" / "npa.geojson")
    npa["npa_id"] = npa["id"].astype(int)
    npa["geometry"], _ = repair_polygons(npa.geometry)
    polygons, ids = npa.geometry.to_numpy(), npa["npa_id"].to_numpy()

    cluster = EmbeddedCluster(REPO / "var" / "bench" / "pg")
    url = make_url(cluster.up())
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS bench_pip WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE bench_pip")
    engine = make_engine(url.set(database="bench_pip").render_as_string(hide_password=False))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.exec_driver_sql("CREATE TABLE neighborhoods (npa_id integer, geom geometry(MultiPolygon, 4326))")
        for i, g in zip(ids, shapely.to_wkt(polygons)):
            conn.execute(sa.text("INSERT INTO neighborhoods VALUES (:i, ST_Multi(ST_GeomFromText(:g, 4326)))"), {"i": int(i), "g": g})
        conn.exec_driver_sql("CREATE INDEX ON neighborhoods USING gist (geom)")

    results = []
    for n in args.sizes:
        lon, lat = points(n, data_dir)
        t0 = time.perf_counter()
        # A finer grid than the loader's default: fewer points need an exact test on big batches.
        index = AreaIndex(polygons, ids, cells=4096)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = index.lookup(lon, lat)
        ours_s = time.perf_counter() - t0
        ours_ids = np.where(pd.isna(ours), -1, ours).astype(np.int64)
        t0 = time.perf_counter()
        reference = strtree_within(polygons, ids, lon, lat)
        strtree_s = time.perf_counter() - t0
        pg_s, pg = postgis(engine, lon, lat)
        duck_s, duck = duckdb_join(npa, lon, lat)
        # Points on a shared boundary are within no polygon for STRtree; ours gives them to the first.
        on_edge = reference < 0
        row = {
            "points": n,
            "ours_s": round(ours_s, 3), "ours_build_s": round(build, 3),
            "strtree_s": round(strtree_s, 3), "postgis_s": round(pg_s, 3), "duckdb_s": round(duck_s, 3),
            "ours_points_per_s": round(n / ours_s), "strtree_points_per_s": round(n / strtree_s),
            "postgis_points_per_s": round(n / pg_s), "duckdb_points_per_s": round(n / duck_s),
            "speedup_vs_best_db": round(min(pg_s, duck_s) / ours_s, 2),
            "speedup_vs_best_db_incl_build": round(min(pg_s, duck_s) / (ours_s + build), 2),
            "differs_from_strtree": int((ours_ids[~on_edge] != reference[~on_edge]).sum()),
            "strtree_unassigned": int(on_edge.sum()),
            "ours_unassigned": int((ours_ids < 0).sum()),
            "postgis_differs_from_strtree": int((pg != reference).sum()),
            "duckdb_differs_from_strtree": int((duck != reference).sum()),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "results": results}
    (REPO / "var" / "bench" / "assign_points_result.json").write_text(json.dumps(out, indent=2))
    engine.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS bench_pip WITH (FORCE)")
    admin.dispose()
    cluster.down()


if __name__ == "__main__":
    main()
