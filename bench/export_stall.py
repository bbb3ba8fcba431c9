"""How long a streamed export keeps the other threads of its process from running.

A ticker thread sleeps 1 ms in a loop while the main thread streams every call as CSV through
geo.export.Export (as /export/calls.csv does); the ticker's longest gaps are the times a light
request's thread in the same server worker could not run (interpreter lock held, or no CPU).
Figures in bench/RESULTS.md ("Where a light request's time goes").

Usage: python bench/export_stall.py [--switch-ms 5] [--chunk-rows 20000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geo import catalog, export  # noqa: E402
from geo import db as dbmod  # noqa: E402
from geo.filters import Filter  # noqa: E402


def stalls(url: str, switch_ms: float, chunk_rows: int) -> dict:
    """Stream one full CSV export of the calls; the ticker's gaps (ms) and the export's size and time."""
    sys.setswitchinterval(switch_ms / 1000)
    engine = dbmod.make_engine(url)
    gaps: list[float] = []
    done = threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = threading.Thread(target=ticker)
    t.start()
    t0 = time.perf_counter()
    job = export.Export(engine, catalog.layer("calls"), export.export_format("csv"), Filter(), None,
                        chunk_rows=chunk_rows).open()
    try:
        size = sum(len(c) for c in job.chunks())
    finally:
        job.close()
        done.set()
        t.join()
        engine.dispose()
    g = np.array(gaps) * 1000
    return {"switch_ms": switch_ms, "chunk_rows": chunk_rows, "mb": round(size / 1e6, 1),
            "seconds": round(time.perf_counter() - t0, 1), "gap_p50_ms": round(float(np.percentile(g, 50)), 1),
            "gap_p99_ms": round(float(np.percentile(g, 99)), 1), "gap_max_ms": round(float(g.max()), 1),
            "gaps_over_20_ms": int((g > 20).sum()), "gaps_over_50_ms": int((g > 50).sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--switch-ms", type=float, default=5.0)
    ap.add_argument("--chunk-rows", type=int, default=export.CHUNK_ROWS)
    args = ap.parse_args()
    print(stalls(args.database_url or dbmod.resolve_url(), args.switch_ms, args.chunk_rows))


if __name__ == "__main__":
    main()
