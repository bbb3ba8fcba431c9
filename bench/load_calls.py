"""Loader benchmark: 1,000,000 generated calls loaded end to end, against psql \\copy of the same rows.

Both run side by side on the same PostgreSQL server (a private cluster under var/bench), on the
same file, alternating order, each into a freshly created database, and the medians are compared.
The reference is `psql -c "\\copy bare_calls FROM file CSV HEADER"` into a table with the file's
columns and natural types and no indexes, keys or geometry: the floor of getting those bytes into
PostgreSQL. Our path additionally parses and validates every cell, repairs and rejects rows,
assigns each point to a division and an NPA, builds PostGIS points, hashes rows for idempotent
reloads, and builds the primary key, GiST and time indexes, all in one transaction.

Usage: python bench/load_calls.py [--rows 1000000] [--repeat 3] [--csv FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo.db import EmbeddedCluster, make_engine  # noqa: E402
from geo.ingest.calls import load_calls  # noqa: E402
from geo.ingest.reference import DataDir, load_reference  # noqa: E402
from geo.migrate import migrate  # noqa: E402

BARE = """
CREATE TABLE bare_calls (
    call_id text, date_received timestamptz, call_type text, priority smallint, address text,
    city text, state text, zip text, latitude float8, longitude float8, x_coord float8, y_coord float8,
    cmpd_patrol_division text, incident_report_id text, data_origin text
)"""


def generated_csv(rows: int, out: Path, data_dir: Path) -> Path:
    """Clean generated calls (no dirty rows, so both paths load exactly the same rows)."""
    from geo.synth import generate

    marker = out / "params.json"
    params = {"rows": rows, "seed": 2264, "dirty": False}
    if not (marker.exists() and json.loads(marker.read_text()) == params and (out / "calls.csv").exists()):
        out.mkdir(parents=True, exist_ok=True)
        days = max(30, round(365 * rows / 500_000))
        generate(data_dir, out, start=date(2021, 1, 1), days=days, n_calls=rows, seed=2264, dirty=False, progress=True)
        marker.write_text(json.dumps(params))
    return out / "calls.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--csv", type=Path, help="use this calls CSV instead of generating one")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()

    data_dir = Path(os.environ.get("HOTSPOTS_DATA_DIR", REPO.parent / "shared" / "cmpd"))
    DataDir(data_dir).require()
    work = REPO / "var" / "bench"
    csv_path = args.csv or generated_csv(args.rows, work / f"calls_{args.rows}", data_dir)
    with open(csv_path, "rb") as fh:
        n_rows = sum(1 for _ in fh) - 1

    cluster = EmbeddedCluster(work / "pg")
    url = make_url(cluster.up())
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS bench_template")
        conn.exec_driver_sql("CREATE DATABASE bench_template")
    template = make_engine(url.set(database="bench_template").render_as_string(hide_password=False))
    migrate(template)
    load_reference(template, DataDir(data_dir))
    template.dispose()

    def fresh(name: str) -> sa.Engine:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE bench_template")
            conn.exec_driver_sql("CHECKPOINT")
        return make_engine(url.set(database=name).render_as_string(hide_password=False))

    def run_copy() -> float:
        engine = fresh("bench_copy")
        with engine.begin() as conn:
            conn.exec_driver_sql(BARE)
        engine.dispose()
        env = dict(os.environ, PGPASSWORD=url.password)
        t0 = time.perf_counter()
        subprocess.run(
            ["psql", "-X", "-q", "-h", url.host, "-p", str(url.port), "-U", url.username, "-d", "bench_copy",
             "-c", f"\\copy bare_calls FROM '{csv_path}' WITH (FORMAT csv, HEADER true)"],
            env=env, check=True,
        )
        return time.perf_counter() - t0

    def run_ours() -> tuple[float, dict]:
        engine = fresh("bench_ours")
        t0 = time.perf_counter()
        # The load alone, as before loads labelled their calls (geo.refresh): no model here anyway.
        report = load_calls(engine, csv_path, label=False)
        elapsed = time.perf_counter() - t0
        assert report.rows_loaded + report.rows_rejected == n_rows, report.as_dict()
        engine.dispose()
        return elapsed, {"timings": report.timings, "copy_in_postgres_s": report.notes.get("copy_seconds_in_postgres"),
                         "loaded": report.rows_loaded, "rejected": report.rows_rejected}

    copies, ours, details = [], [], []
    for i in range(args.repeat):
        order = (run_copy, run_ours) if i % 2 == 0 else (run_ours, run_copy)
        for fn in order:
            if fn is run_copy:
                copies.append(run_copy())
            else:
                t, d = run_ours()
                ours.append(t)
                details.append(d)
        print(f"run {i + 1}: psql \\copy {copies[-1]:.2f} s, hotspots load calls {ours[-1]:.2f} s", flush=True)

    copy_s, ours_s = statistics.median(copies), statistics.median(ours)
    median_detail = details[ours.index(sorted(ours)[len(ours) // 2])]
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "rows": n_rows,
        "copy_s": round(copy_s, 2),
        "ours_s": round(ours_s, 2),
        "copy_rows_per_s": round(n_rows / copy_s),
        "ours_rows_per_s": round(n_rows / ours_s),
        "ratio": round(copy_s / ours_s, 3),
        "all_copy_s": [round(c, 2) for c in copies],
        "all_ours_s": [round(o, 2) for o in ours],
        "stages_s": median_detail["timings"],
        "copy_in_postgres_s": median_detail["copy_in_postgres_s"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    (work / "load_calls_result.json").write_text(json.dumps(result, indent=2))
    with admin.connect() as conn:
        for name in ("bench_copy", "bench_ours", "bench_template"):
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()
    cluster.down()


if __name__ == "__main__":
    main()
