"""Full analysis recompute on 1,000,000 labelled calls: assignment, aggregation, Gi* on NPAs and the grid.

Uses the `bench_score` database that bench/classifier.py leaves in var/bench (1M generated calls
scored by the classifier). Each step is timed; the target is the whole recompute under 60 s.

Usage: python bench/recompute.py
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo.db import EmbeddedCluster, make_engine  # noqa: E402
from geo.hotspots import grid_hotspots, npa_hotspots  # noqa: E402
from geo.filters import Filter  # noqa: E402
from geo.metrics import call_counts, compstat, hour_weekday  # noqa: E402
from geo.spatial import AreaIndex, read_divisions, read_neighborhoods  # noqa: E402


def main() -> None:
    cluster = EmbeddedCluster(REPO / "var" / "bench" / "pg")
    url = make_url(cluster.up())
    engine = make_engine(url.set(database="bench_score").render_as_string(hide_password=False))
    with engine.connect() as conn:
        n, first, last = conn.execute(sa.text(
            "SELECT count(*), min(received_at)::date, max(received_at)::date FROM calls WHERE p_violent IS NOT NULL")).one()
    if n < 1_000_000:
        raise SystemExit(f"bench_score holds {n} labelled calls; run bench/classifier.py first")
    period = Filter.local_days(first, last)
    steps = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        steps[name] = round(time.perf_counter() - t0, 2)
        return out

    calls = timed("read 1M call points from PostGIS", lambda: pd.read_sql(
        "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM calls", engine))
    npas, divisions = read_neighborhoods(engine), read_divisions(engine)
    timed("assign to 462 NPAs and 14 divisions (index build + lookup)", lambda: (
        AreaIndex(npas.geometry, npas["npa_id"]).lookup(calls["lon"], calls["lat"]),
        AreaIndex(divisions.geometry, divisions["division_id"]).lookup(calls["lon"], calls["lat"])))
    timed("counts and shares per NPA and category", lambda: call_counts(engine, period, "npa"))
    timed("counts and shares per division and category", lambda: call_counts(engine, period, "division"))
    timed("7x24 matrix", lambda: hour_weekday(engine, period))
    timed("CompStat, 4 windows", lambda: compstat(engine, period.end_date, by="division"))
    timed("Gi* on NPAs, labelled, 999 permutations", lambda: npa_hotspots(engine, period))
    timed("Gi* on NPAs, expected counts, 999 permutations", lambda: npa_hotspots(engine, period, measure="expected"))
    grid = timed("Gi* on 1,000 ft grid cells, 999 permutations",
                 lambda: grid_hotspots(engine, period, cell_ft=1000))
    total = round(sum(steps.values()), 2)
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "calls": int(n), "grid_cells": len(grid),
              "steps_s": steps, "total_s": total}
    print(json.dumps(result, indent=2))
    (REPO / "var" / "bench" / "recompute_result.json").write_text(json.dumps(result, indent=2))
    engine.dispose()
    cluster.down()


if __name__ == "__main__":
    main()
