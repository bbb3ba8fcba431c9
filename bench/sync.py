"""Sync benchmark: `hotspots sync` from an ArcGIS feature layer against loading the same calls from a file.

The same N generated calls (geo/synth.py, clean rows) are stored two ways, each into its own fresh
database in the var/bench cluster:

- **file**: `geo.ingest.calls.load_calls` of the calls CSV (the bulk loader: one transaction);
- **sync**: `geo.ingest.arcgis.sync_feed` (what `hotspots sync --layer calls` runs) reading the
  same rows from a local ArcGIS REST layer (tests/ingest/fake_arcgis.py) in pages of
  `--page-size` (ArcGIS servers commonly cap maxRecordCount at 1,000-2,000), f=json, each page
  cleaned, assigned and committed with its high-water mark.

The fake server runs in its own process, sorted once, so its share of the time is the JSON
encoding of each page; it still shares the machine's cores with PostgreSQL and the client. Both
sides must store the same calls (checked: count and an md5 over id, time, type, areas and point).

Usage: python bench/sync.py [--calls 200000] [--page-size 2000] [--format json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from geo.db import EmbeddedCluster  # noqa: E402
from geo.ingest.arcgis import FeedClient, make_feed, sync_feed  # noqa: E402
from geo.ingest.calls import load_calls  # noqa: E402
from geo.settings import ArcGISSettings, locale_settings  # noqa: E402
from geo.synth import generate  # noqa: E402
from tests.ingest.fake_arcgis import FakeArcGIS, FakeLayer  # noqa: E402

from bench.common import reference_database  # noqa: E402

CHECKSUM = ("SELECT count(*), md5(string_agg(concat_ws('|', call_id, received_at, call_type, division_id, npa_id,"
            " round(ST_X(geom)::numeric, 6), round(ST_Y(geom)::numeric, 6)), ',' ORDER BY call_id)) FROM calls")


class SortedLayer(FakeLayer):
    """The fake layer with its rows sorted once per where/order (the generated rows never change)."""

    def query(self, params: dict[str, str]) -> dict:
        key = (params.get("where", "1=1"), params.get("orderByFields", ""))
        cache = self.__dict__.setdefault("_sorted", {})
        if key not in cache:
            # The whole answer at once, from an uncapped copy of the layer; pages are slices of it.
            whole = FakeLayer(self.records, self.points, max_record_count=len(self.records))
            cache[key] = whole.query(dict(params, resultOffset="0", resultRecordCount=str(len(self.records))))
        body = cache[key]
        offset = int(params.get("resultOffset", 0))
        count = min(int(params.get("resultRecordCount", self.max_record_count)), self.max_record_count)
        features = body["features"]
        page = dict(body, features=features[offset:offset + count])
        page.pop("exceededTransferLimit", None)
        if offset + count < len(features):
            page["exceededTransferLimit"] = True
        return page


def layer_from_csv(path: Path, same_rows: Path, page_size: int) -> SortedLayer:
    """The calls CSV as ArcGIS records (dates as UTC epoch milliseconds, WGS84 points); the rows it
    holds are also written to `same_rows` for the file side. Local times that DST makes ambiguous
    or non-existent are left out of both, so both sides read the same instants."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    local = pd.to_datetime(frame["DATE_RECEIVED"]).dt.tz_localize(locale_settings().timezone, ambiguous="NaT",
                                                                 nonexistent="NaT")
    frame = frame[local.notna()]
    frame.to_csv(same_rows, index=False)
    since_epoch = local[local.notna()].dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")
    epoch = (since_epoch // pd.Timedelta(milliseconds=1)).to_numpy()   # whatever pandas' time unit
    records, points = [], []
    for i, (row, ms) in enumerate(zip(frame.to_dict("records"), epoch)):
        rec = {k: (v if v != "" else None) for k, v in row.items()}
        rec["OBJECTID"] = i + 1
        rec["DATE_RECEIVED"] = int(ms)
        lon, lat = rec["LONGITUDE"], rec["LATITUDE"]
        points.append((float(lon), float(lat)) if lon and lat else None)
        records.append(rec)
    return SortedLayer(records, points, max_record_count=page_size)


def serve(layer: SortedLayer, queue) -> None:
    """Run the fake server in this (child) process until it is terminated."""
    with FakeArcGIS(layer) as server:
        queue.put(server.layer_url)
        while True:
            time.sleep(3600)


def checksum(engine: sa.Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        n, digest = conn.execute(sa.text(CHECKSUM)).one()
    return int(n), digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--format", choices=("json", "geojson"), default="json")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("HOTSPOTS_DATA_DIR", REPO.parent / "shared" / "cmpd"))
    work = REPO / "var" / "bench"
    cluster = EmbeddedCluster(work / "pg")
    cluster.up()

    out = work / f"sync_{args.calls}"
    if not (out / "calls.csv").exists():
        print(f"generating {args.calls:,} calls", flush=True)
        generate(data_dir, out, start=date(2021, 1, 1), days=365, n_calls=args.calls, seed=77, dirty=False)
    csv = out / "calls_feed.csv"
    layer = layer_from_csv(out / "calls.csv", csv, args.page_size)
    print(f"{len(layer.records):,} records in the feed", flush=True)

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    server = ctx.Process(target=serve, args=(layer, queue), daemon=True)
    server.start()
    layer_url = queue.get(timeout=60)
    try:
        file_engine = reference_database(cluster, "bench_sync_file", data_dir)
        t0 = time.perf_counter()
        report = load_calls(file_engine, csv, label=False)   # the sync's pages are not labelled either
        file_s = time.perf_counter() - t0
        print(f"file: {report.rows_loaded:,} calls in {file_s:.1f} s", flush=True)

        feed_engine = reference_database(cluster, "bench_sync_feed", data_dir)
        feed = make_feed("calls", ArcGISSettings(HOTSPOTS_ARCGIS_PAGE_SIZE=args.page_size), url=layer_url,
                         fmt=args.format)
        t0 = time.perf_counter()
        result = sync_feed(feed_engine, feed, FeedClient(timeout_s=120, retries=0))
        sync_s = time.perf_counter() - t0
        print(f"sync: {result.inserted:,} calls in {result.pages} pages, {sync_s:.1f} s", flush=True)
        same = checksum(file_engine) == checksum(feed_engine)
        n = checksum(feed_engine)[0]
    finally:
        server.terminate()
        server.join(10)
    summary = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "calls": n, "page_size": args.page_size, "format": args.format, "pages": result.pages,
        "file_s": round(file_s, 2), "file_calls_per_s": round(report.rows_loaded / file_s),
        "sync_s": round(sync_s, 2), "sync_calls_per_s": round(result.inserted / sync_s),
        "sync_ms_per_page": round(sync_s / max(result.pages, 1) * 1000, 1),
        "ratio_file_over_sync": round(file_s / sync_s, 3),
        "same_calls": same,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(summary, indent=2))
    (work / "sync_result.json").write_text(json.dumps(summary, indent=2))
    file_engine.dispose()
    feed_engine.dispose()
    if not same:
        raise SystemExit("the two paths stored different calls")


if __name__ == "__main__":
    main()
