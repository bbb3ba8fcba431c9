"""Exports of every call: geo.export (streamed, chunked) against PostgreSQL's COPY and geopandas in memory.

Each variant runs in its own Python process (so its peak resident memory is its own), on the
same database and the same rows: the whole `calls` table with the catalog's public columns.
Sides alternate; medians of --runs runs.

- ours:<fmt>            geo.export.write_export (what /export/calls.<fmt> and `hotspots export` run)
- ref:copy-csv          COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER) into a file: the floor for CSV
- ref:geopandas-<fmt>   geopandas.read_postgis of the whole layer, then to_file (pyogrio): the
                        in-memory way (zip: shapefile zipped like ours, at the same compression level)

Usage: python bench/exports.py [--database-url URL] [--runs 3]   (default: the demo database)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAIRS = [("csv", "ref:copy-csv"), ("geojson", "ref:geopandas-geojson"), ("gpkg", "ref:geopandas-gpkg"),
         ("zip", "ref:geopandas-zip")]


def _columns() -> str:
    from geo.catalog import LAYERS

    return ", ".join(p.sql if p.sql == p.name else f"{p.sql} AS {p.name}" for p in LAYERS["calls"].public)


def run_one(variant: str, url: str, out_dir: Path) -> dict:
    """Run one variant in this process; returns rows, seconds, output bytes and peak RSS (MB)."""
    import sqlalchemy as sa

    from geo.db import make_engine

    engine = make_engine(url)
    # Every library either side may use is imported before the baseline, so growth is data, not code.
    import geopandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyogrio  # noqa: F401

    import geo.export  # noqa: F401
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if variant.startswith("ours:"):
        from geo.export import write_export
        from geo.filters import Filter

        ext = variant.split(":")[1]
        out = out_dir / f"calls.{ext}"
        rows = write_export(engine, "calls", ext, Filter(), out).rows
    elif variant == "ref:copy-csv":
        out = out_dir / "calls.csv"
        raw = engine.raw_connection()
        with open(out, "wb") as f:
            raw.cursor().copy_expert(
                f"COPY (SELECT {_columns()}, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM calls) TO STDOUT (FORMAT csv, HEADER)", f)
        raw.close()
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar()
    else:
        import geopandas as gpd

        ext = variant.split("-")[1]
        frame = gpd.read_postgis(f"SELECT {_columns()}, geom FROM calls", engine, geom_col="geom")
        rows = len(frame)
        if ext == "zip":
            shp = out_dir / "calls.shp"
            frame.to_file(shp, engine="pyogrio")
            out = out_dir / "calls.zip"
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                for suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                    if shp.with_suffix(suffix).exists():
                        zf.write(shp.with_suffix(suffix), f"calls{suffix}")
        else:
            out = out_dir / f"calls.{ext}"
            frame.to_file(out, engine="pyogrio", driver="GeoJSON" if ext == "geojson" else "GPKG")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "rows": rows, "seconds": round(seconds, 2), "bytes": out.stat().st_size,
            "peak_rss_mb": round(peak / 1024), "rss_growth_mb": round((peak - base_rss) / 1024)}


def _spawn(variant: str, url: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        proc = subprocess.run([sys.executable, __file__, "--one", variant, "--database-url", url, "--out", tmp],
                              capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.database_url, Path(args.out))))
        return
    from geo.db import resolve_url

    url = args.database_url or resolve_url()
    results: dict[str, list[dict]] = {}
    for i in range(args.runs):
        for ours, ref in PAIRS:
            order = (f"ours:{ours}", ref) if i % 2 == 0 else (ref, f"ours:{ours}")
            for variant in order:
                r = _spawn(variant, url)
                results.setdefault(variant, []).append(r)
                print(json.dumps(r), flush=True)
    print("\n| date | format | rows | ours (median s) | reference | reference (median s) | ratio (ref / ours) "
          "| ours peak RSS | reference peak RSS | runs ours / ref (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = []
    for ours, ref in PAIRS:
        a, b = results[f"ours:{ours}"], results[ref]
        ta, tb = statistics.median(r["seconds"] for r in a), statistics.median(r["seconds"] for r in b)
        ma, mb = statistics.median(r["peak_rss_mb"] for r in a), statistics.median(r["peak_rss_mb"] for r in b)
        summary.append({"format": ours, "rows": a[0]["rows"], "ours_s": ta, "ref": ref, "ref_s": tb,
                        "ours_peak_rss_mb": ma, "ref_peak_rss_mb": mb, "runs": results})
        print(f"| {date.today()} | {ours} | {a[0]['rows']:,} | {ta:.2f} | {ref} | {tb:.2f} | {tb / ta:.2f} | {ma:.0f} MB "
              f"| {mb:.0f} MB | {', '.join(str(r['seconds']) for r in a)} / {', '.join(str(r['seconds']) for r in b)} |")
    out = REPO / "var" / "bench" / "exports.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
