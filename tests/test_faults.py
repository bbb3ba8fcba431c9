"""PostgreSQL stopped (immediate shutdown: a crash) in the middle of a load, a sync and a burst of requests.

Issue 7, "Faults". The module runs its own PostgreSQL+PostGIS cluster, so stopping it never touches
the session cluster other tests use; it is restarted on the same port, so every client's URL stays
valid. "Exactly as before" is compared by value: `snapshot()` takes the row count and an md5 over
the ordered rows of every table, plus the indexes and constraints (a bulk load drops and rebuilds
indexes inside its transaction).

Figures (outage length, requests and status codes during it, time to the first 200 after the
restart) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import geopandas as gpd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from geo.db import EmbeddedCluster, make_engine
from geo.ingest.arcgis import FeedClient, make_feed, read_state, sync_feed
from geo.ingest.calls import load_calls
from geo.ingest.reference import DataDir, load_reference
from geo.migrate import migrate
from geo.settings import ArcGISSettings
from geo.synth import generate
from tests.clusters import private_cluster
from tests.clusters import snapshot as database_snapshot
from tests.servers import running_server, serve_argv
from tests.ingest.fake_arcgis import FakeArcGIS, FakeLayer, Fault, epoch_ms

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "faults_template"
# The tables "exactly as before" must cover (the snapshot takes every table of the schema).
DATA_TABLES = {"calls", "incidents", "divisions", "neighborhoods", "ingest_batches", "ingest_rejects",
               "sync_state", "data_versions"}
# One Error line from click, naming the database failure, and nothing else (no traceback).
CLI_DB_ERROR = re.compile(
    r"^Error: the database connection failed \(.+\); the transaction in progress was rolled back, "
    r"nothing of it was stored\. Run the command again once the database is back\.$")


# --- the module's own cluster -------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg() -> Iterator[EmbeddedCluster]:
    """A private cluster this module may crash; destroyed at the end."""
    with private_cluster("hotspots-faults-pg-") as cluster:
        yield cluster


def _admin(pg: EmbeddedCluster) -> sa.Engine:
    """An autocommit engine on the cluster's maintenance database."""
    return sa.create_engine(make_url(pg.url()).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def template(pg, data_dir) -> str:
    """A migrated database with the real divisions, NPAs and offense counts (as conftest's template_db)."""
    admin = _admin(pg)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {TEMPLATE}")
    admin.dispose()
    engine = make_engine(make_url(pg.url()).set(database=TEMPLATE).render_as_string(hide_password=False))
    migrate(engine)
    load_reference(engine, DataDir(data_dir))
    engine.dispose()
    return TEMPLATE


@pytest.fixture
def new_database(pg, template) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases cloned from the template (URLs); all dropped after the test."""
    names: list[str] = []

    def make() -> str:
        pg.start()   # a no-op unless an earlier test failed with the server stopped
        name = f"f_{uuid.uuid4().hex[:12]}"
        admin = _admin(pg)
        with admin.connect() as conn:
            # FILE_COPY, not PostgreSQL 15's default WAL_LOG: a clone made with WAL_LOG holds the
            # template's sequence pages as full-page images, and nextval() on them writes no WAL until
            # the next checkpoint, so after a crash ingest_batches' sequence went back and handed out
            # a batch id a committed row already had (duplicate key on the re-run). FILE_COPY
            # checkpoints, and the first nextval after a checkpoint is logged.
            conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        admin.dispose()
        names.append(name)
        return make_url(pg.url()).set(database=name).render_as_string(hide_password=False)

    yield make
    pg.start()
    admin = _admin(pg)
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def crash(pg: EmbeddedCluster) -> float:
    """Stop the server the way a crash does (every process killed, no checkpoint); the time it took."""
    t0 = time.monotonic()
    pg.stop("immediate")
    assert not pg.running()
    return time.monotonic() - t0


def restart(pg: EmbeddedCluster, url: str) -> None:
    """Start the server again (crash recovery) and check it is back at the same URL."""
    pg.start()
    assert make_url(pg.url()).port == make_url(url).port, "the restarted server must keep its port"


def test_an_unknown_stop_mode_is_refused_by_name(pg):
    with pytest.raises(ValueError, match=r"stop mode 'crash': expected one of smart, fast, immediate"):
        pg.stop("crash")
    assert pg.running()


# --- comparing by value ---------------------------------------------------------------------------
def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """tests.clusters.snapshot of the database at `url`, which must hold every data table."""
    engine = sa.create_engine(url)
    try:
        out = database_snapshot(engine)
    finally:
        engine.dispose()
    assert DATA_TABLES <= set(out), f"tables missing from the schema: {DATA_TABLES - set(out)}"
    return out


def table_checksum(url: str, table: str, leave_out: set[str], order_by: str) -> tuple[int, str]:
    """(rows, md5) of a table without its load-time columns (batch ids, timestamps of the load)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            cols = [c for (c,) in conn.execute(sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = :t ORDER BY ordinal_position"), {"t": table}) if c not in leave_out]
            row = ", ".join(f'"{c}"' for c in cols)
            count, digest = conn.exec_driver_sql(
                f"SELECT count(*), md5(coalesce(string_agg(ROW({row})::text, E'\\n' ORDER BY {order_by}), ''))"
                f' FROM "{table}"').one()
    finally:
        engine.dispose()
    return int(count), digest


def scalar(url: str, sql: str, **params):
    """One value of a query, on a connection of its own."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


def cli(args: list[str], url: str, **env) -> subprocess.Popen:
    """`hotspots ARGS` as a separate process on the database at `url`."""
    return subprocess.Popen([sys.executable, "-m", "geo.cli", *args], cwd=REPO, text=True,
                            env={**os.environ, "DATABASE_URL": url, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def messages(stderr: str) -> list[str]:
    """The lines a user reads on stderr, without the progress bar's redraws."""
    out = []
    for line in stderr.split("\n"):
        text = line.split("\r")[-1].strip()   # a bar redraws itself with carriage returns
        if text and not re.match(r"^load \w+:", text):
            out.append(text)
    return out


# --- 1. a load cut off by a crash -----------------------------------------------------------------
@dataclass(frozen=True)
class CallFiles:
    """The call files the tests load."""

    small: Path     # a synthetic year of calls, with CMPD-like dirty rows
    big: Path       # the same rows COPIES times more, ids suffixed -R1 ... -Rn
    copies: int


@pytest.fixture(scope="module")
def call_files(data_dir, tmp_path_factory) -> CallFiles:
    """30,000 synthetic calls (with CMPD-like dirty rows), and a file eight times their size."""
    out = tmp_path_factory.mktemp("fault_calls")
    small = generate(data_dir, out / "synth", n_calls=30_000, days=365, seed=7).calls_csv
    header, *lines = small.read_text(encoding="utf-8").splitlines()
    copies = 8
    big = out / "calls_big.csv"
    with big.open("w", encoding="utf-8") as fh:
        fh.write(header + "\n")
        for k in range(1, copies + 1):
            for line in lines:
                call_id, sep, rest = line.partition(",")
                fh.write((f"{call_id}-R{k}{sep}{rest}" if call_id else line) + "\n")
    return CallFiles(small, big, copies)


def wait_until_copying(pg: EmbeddedCluster, dbname: str, proc: subprocess.Popen) -> int:
    """Block until the loader's COPY has sent rows into `dbname`; the rows it reports so far."""
    admin = _admin(pg)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with admin.connect() as conn:
                sent = conn.execute(sa.text(
                    "SELECT max(tuples_processed) FROM pg_stat_progress_copy WHERE datname = :d"), {"d": dbname}).scalar()
            if sent:
                return int(sent)
            assert proc.poll() is None, f"the load ended before it was seen writing: {proc.communicate()}"
            time.sleep(0.02)
        pytest.fail("the load did not start writing within 180 s")
    finally:
        admin.dispose()


def test_a_load_cut_off_by_a_crash_leaves_no_trace_and_runs_again(pg, new_database, call_files):
    url = new_database()
    first = cli(["load", "calls", str(call_files.small)], url)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    loaded = scalar(url, "SELECT count(*) FROM calls")
    rejected = scalar(url, "SELECT count(*) FROM ingest_rejects WHERE kind = 'calls'")
    assert loaded > 29_000 and rejected > 100   # the synthetic file's dirty rows are kept as rejects
    before = snapshot(url)

    t0 = time.monotonic()
    load = cli(["load", "calls", str(call_files.big)], url)
    try:
        sent = wait_until_copying(pg, make_url(url).database, load)
        writing_after = time.monotonic() - t0
        stop_took = crash(pg)
        out, err = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    # The loader stops at once, with one clear line and a failure status.
    assert load.returncode == 1, (out, err)
    assert "Traceback" not in err
    lines = messages(err)
    assert len(lines) == 1 and CLI_DB_ERROR.match(lines[0]), err

    restart(pg, url)
    after = snapshot(url)
    assert after == before, {t: (before.get(t), after.get(t)) for t in set(before) | set(after) if before.get(t) != after.get(t)}
    assert scalar(url, "SELECT count(*) FROM ingest_batches WHERE finished_at IS NULL") == 0

    # The same command again: it completes and every row is there (each copy of the file loads
    # the rows the small file loaded, and rejects the rows it rejected).
    again = cli(["load", "calls", str(call_files.big)], url)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    n = call_files.copies
    assert f"new {n * loaded:,}, changed 0, unchanged 0" in out
    assert scalar(url, "SELECT count(*) FROM calls") == (n + 1) * loaded
    assert scalar(url, "SELECT count(*) FROM calls WHERE call_id LIKE :p", p=f"%-R{n}") == loaded
    assert scalar(url, "SELECT count(*) FROM ingest_rejects WHERE kind = 'calls'") == (n + 1) * rejected
    assert scalar(url, "SELECT count(*) FROM ingest_batches WHERE kind = 'calls' AND finished_at IS NOT NULL") == 2
    assert snapshot(url)["(indexes)"] == before["(indexes)"]   # the indexes dropped for the bulk load are back
    print(f"\nmid-load: COPY seen after {writing_after:.1f} s ({sent:,} rows in its first COPY), "
          f"immediate stop took {stop_took:.2f} s; after restart {len(before)} snapshot entries identical; "
          f"re-run loaded {n * loaded:,} rows; the loader said: {lines[0]}")


# --- 2. a sync cut off by a crash in the middle of a page -----------------------------------------
PAGE = 50
PAGES = 4
FIRST = datetime(2021, 3, 1, tzinfo=timezone.utc)
CALL_TYPES = ["TRAFFIC CRASH", "ALARM - BURGLAR", "SUSPICIOUS PERSON", "DOMESTIC DISTURBANCE", "LARCENY",
              "ASSAULT - AGGRAVATED"]


@pytest.fixture(scope="module")
def npa_points(data_dir) -> list[tuple[float, float]]:
    """A point inside each of five NPAs."""
    npa = gpd.read_file(data_dir / "npa" / "npa.geojson")
    chosen = npa[npa["id"].isin(["2", "3", "9", "120", "300"])].geometry.representative_point()
    return [(p.x, p.y) for p in chosen]


def calls_layer(npa_points) -> FakeLayer:
    """PAGES pages of calls, one an hour from 1 March 2021; every 25th has no coordinates (a reject)."""
    records, points = [], []
    for i in range(PAGE * PAGES):
        point = None if i % 25 == 24 else npa_points[i % len(npa_points)]
        lon, lat = point if point else (None, None)
        when = FIRST + timedelta(hours=i)
        records.append({
            "OBJECTID": i + 1, "CALL_ID": f"FEED-{i:05d}", "DATE_RECEIVED": epoch_ms(f"{when:%Y-%m-%d %H:%M:%S}"),
            "CALL_TYPE": CALL_TYPES[i % len(CALL_TYPES)], "PRIORITY": 1 + i % 4, "ADDRESS": f"{100 + i} BLOCK OF TRADE ST",
            "CITY": "CHARLOTTE", "STATE": "NC", "ZIP": "28202", "LATITUDE": lat, "LONGITUDE": lon,
            "X_COORD": None, "Y_COORD": None, "CMPD_PATROL_DIVISION": None, "INCIDENT_REPORT_ID": None,
        })
        points.append(point)
    return FakeLayer(records, points)


def sync_state(url: str, feed_url: str) -> dict:
    """The calls feed's sync_state row."""
    engine = make_engine(url)
    try:
        return read_state(engine, make_feed("calls", ArcGISSettings(), url=feed_url))
    finally:
        engine.dispose()


def stored_ids(url: str) -> set[str]:
    """The call ids in the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {i for (i,) in conn.execute(sa.text("SELECT call_id FROM calls"))}
    finally:
        engine.dispose()


def _crash_inside_page(pg, sync, layer, lock, watch, deadline, held_out: list) -> tuple[str, str]:
    """Let page 2 arrive and its transaction (batch row written) wait on a lock on calls; crash then."""
    held = lock.connect()
    held_out.append(held)
    held.exec_driver_sql("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")   # ends with the crash
    layer.fail_from_offset = {}
    layer.release.set()
    with watch.connect() as conn:
        while not conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'cmpd-hotspots' AND wait_event_type = 'Lock'"
                " AND backend_xid IS NOT NULL")).scalar():
            conn.rollback()   # pg_stat_activity is read once per transaction
            assert sync.poll() is None, sync.communicate()
            assert time.monotonic() < deadline, "the sync did not start storing page 2"
            time.sleep(0.02)
    # 3. The crash.
    crash(pg)
    return sync.communicate(timeout=120)


@pytest.mark.parametrize("where", ["inside_a_page", "between_pages"])
def test_a_sync_cut_off_mid_page_keeps_exactly_the_committed_pages(pg, new_database, npa_points, where):
    """The crash comes while page 2 is being stored (its transaction open), or while the sync waits
    for page 2 from the server with pages 0 and 1 committed; either way exactly pages 0-1 remain."""
    url, reference_url = new_database(), new_database()
    layer = calls_layer(npa_points)
    crashed_page = 2
    layer.fail_from_offset = {crashed_page * PAGE: Fault("hang")}   # page 2 waits until released
    with FakeArcGIS(layer) as server:
        env = {"HOTSPOTS_ARCGIS_PAGE_SIZE": str(PAGE), "HOTSPOTS_ARCGIS_BACKOFF_S": "0.1"}
        sync = cli(["sync", "--layer", "calls", "--url", server.layer_url], url, **env)
        lock = sa.create_engine(url)
        watch = sa.create_engine(url)
        held: list = []        # the lock's connection, when the crash comes inside a page
        try:
            # 1. Pages 0 and 1 are committed and the sync is waiting for page 2: the state to come back to.
            deadline = time.monotonic() + 120
            while not (any(r["resultOffset"] == str(crashed_page * PAGE) for r in layer.requests)
                       and scalar(url, "SELECT count(*) FROM ingest_batches WHERE kind = 'calls_arcgis'") == crashed_page):
                assert sync.poll() is None, sync.communicate()
                assert time.monotonic() < deadline, "the sync did not reach page 2 in time"
                time.sleep(0.05)
            before = snapshot(url)
            if where == "between_pages":
                # 2. The crash while the sync waits for page 2; then page 2 arrives to a database that is gone.
                crash(pg)
                layer.fail_from_offset = {}
                layer.release.set()
                out, err = sync.communicate(timeout=120)
            else:
                out, err = _crash_inside_page(pg, sync, layer, lock, watch, deadline, held)
        finally:
            if sync.poll() is None:
                sync.kill()
                sync.communicate()
            for conn in held:
                conn.invalidate()   # its server process is gone: close it without a rollback
                conn.close()
            lock.dispose()
            watch.dispose()
        assert sync.returncode == 1, (out, err)
        assert "Traceback" not in err
        failed = [line for line in messages(err) if "sync failed" in line]
        assert len(failed) == 1 and failed[0].startswith(
            "calls: sync failed: the database connection failed ("), err
        assert failed[0].endswith("the pages stored so far are kept, the page in progress was rolled back")

        restart(pg, url)
        after = snapshot(url)
        assert after == before, {t: (before.get(t), after.get(t)) for t in set(before) | set(after) if before.get(t) != after.get(t)}
        # Exactly the committed pages: every good record up to the high-water mark, none after it.
        state = sync_state(url, server.layer_url)
        committed = layer.records[: crashed_page * PAGE]
        assert state["high_water"] == FIRST + timedelta(hours=crashed_page * PAGE - 1)
        assert (state["pages"], state["records_read"]) == (crashed_page, crashed_page * PAGE)
        expected = {r["CALL_ID"] for r, p in zip(committed, layer.points) if p is not None}
        assert stored_ids(url) == expected and len(expected) == crashed_page * (PAGE - 2)
        # The mark is the page's newest record (99, a reject without coordinates); 98 is the newest stored.
        assert scalar(url, "SELECT max(received_at) FROM calls") == state["high_water"] - timedelta(hours=1)
        assert scalar(url, "SELECT count(*) FROM ingest_rejects WHERE kind = 'calls_arcgis'") == crashed_page * 2

        # 4. The same command again completes, and matches a clean full sync of the same feed.
        again = cli(["sync", "--layer", "calls", "--url", server.layer_url], url, **env)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        feed = make_feed("calls", ArcGISSettings(HOTSPOTS_ARCGIS_PAGE_SIZE=PAGE), url=server.layer_url)
        reference = make_engine(reference_url)
        clean = sync_feed(reference, feed, FeedClient(timeout_s=10, retries=0))
        reference.dispose()
    assert (clean.pages, clean.inserted) == (PAGES, PAGES * (PAGE - 2))
    load_time = {"batch_id", "labelled_at"}
    assert table_checksum(url, "calls", load_time, "call_id") == table_checksum(reference_url, "calls", load_time, "call_id")
    reject_time = {"reject_id", "batch_id", "source_file", "rejected_at"}
    assert table_checksum(url, "ingest_rejects", reject_time, "line") == \
        table_checksum(reference_url, "ingest_rejects", reject_time, "line")
    assert len(stored_ids(url)) == PAGES * (PAGE - 2)
    state_now = sync_state(url, server.layer_url)
    assert state_now["high_water"] == sync_state(reference_url, server.layer_url)["high_water"]
    assert state_now["last_error"] is None and state_now["last_success_at"] is not None
    print(f"\nmid-sync: crashed {where.replace('_', ' ')} (page {crashed_page} of {PAGES}, {PAGE} records each); after restart "
          f"{len(expected)} calls of pages 0-{crashed_page - 1}, mark {state['high_water']:%Y-%m-%d %H:%M}, "
          f"{len(before)} snapshot entries identical; re-run equals a clean sync; the sync said: {failed[0]}")


# --- 3. a burst of requests to the real server while the database is down --------------------------
def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a WGS84 point."""
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


TILE_X, TILE_Y = _tile(-80.8431, 35.2271, 12)   # uptown Charlotte
ENDPOINTS = {
    "areas": "/api/areas/npa?preset=365d",
    "items": "/ogc/collections/calls/items?limit=50",
    "tile": f"/tiles/calls/12/{TILE_X}/{TILE_Y}.pbf",
    "health": "/health",
}
CLIENTS = 8
CLIENT_TIMEOUT_S = 10.0
OUTAGE_S = 3.0
RECOVERY_BOUND_S = 20.0


@dataclass
class Answer:
    """One request of the burst: when it ran, and what came back."""

    endpoint: str
    started: float
    ended: float
    status: int | None
    content_type: str
    body: bytes
    error: str | None = None


def _get(base: str, endpoint: str) -> Answer:
    """GET one endpoint; a refused, reset or timed-out request is an Answer with `error` set."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(base + ENDPOINTS[endpoint], timeout=CLIENT_TIMEOUT_S) as resp:
            return Answer(endpoint, started, time.monotonic(), resp.status, resp.headers.get("Content-Type", ""),
                          resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(endpoint, started, time.monotonic(), exc.code, exc.headers.get("Content-Type", ""), exc.read())
    except OSError as exc:   # refused, reset or timed out: the server itself failed the client
        return Answer(endpoint, started, time.monotonic(), None, "", b"", f"{type(exc).__name__}: {exc}")


def _children(pid: int) -> set[int]:
    """Pids whose parent is `pid` (gunicorn's workers), from /proc."""
    out = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            out.add(int(stat_file.parent.name))
    return out


@pytest.fixture
def served(new_database, call_files, tmp_path):
    """`hotspots serve` (gunicorn, 2 workers, threads) on a database holding the small calls file."""
    url = new_database()
    engine = make_engine(url)
    load_calls(engine, call_files.small)
    engine.dispose()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log, \
            running_server(serve_argv(workers=2), {"DATABASE_URL": url, "HOTSPOTS_THREADS": "4"}, stdout=log) as (base, proc):
        deadline = time.monotonic() + 90
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield url, base, proc, log_path


def test_requests_during_an_outage_get_503_and_the_server_recovers_by_itself(pg, served):
    url, base, proc, log_file = served
    for endpoint in ENDPOINTS:   # every endpoint serves data before the outage
        answer = _get(base, endpoint)
        assert answer.status == 200, (endpoint, answer.status, answer.body[:300])
    assert len(_get(base, "items").body) > 1000 and len(_get(base, "tile").body) > 100
    master, workers = proc.pid, _children(proc.pid)
    assert len(workers) == 2
    before = snapshot(url)

    answers: list[Answer] = []
    stop = threading.Event()
    names = list(ENDPOINTS)

    def client(k: int) -> None:
        i = k
        while not stop.is_set():
            answers.append(_get(base, names[i % len(names)]))
            i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        t_stop = time.monotonic()
        crash(pg)
        t_down = time.monotonic()
        time.sleep(OUTAGE_S)
        t_restart = time.monotonic()
        restart(pg, url)
        t_up = time.monotonic()
        # Every endpoint answers 200 again, from the same processes, within the bound.
        recovered: dict[str, float] = {}
        while len(recovered) < len(ENDPOINTS) and time.monotonic() < t_up + RECOVERY_BOUND_S:
            for a in list(answers):
                if a.status == 200 and a.started >= t_up and a.endpoint not in recovered:
                    recovered[a.endpoint] = a.ended - t_up
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S + 5)
    assert set(recovered) == set(ENDPOINTS), f"not answering 200 {RECOVERY_BOUND_S:.0f} s after the restart: " \
        f"{set(ENDPOINTS) - set(recovered)}"
    assert proc.poll() is None and _children(master) == workers, "the server must recover without restarting"

    # No client was refused, reset or left hanging past its timeout; nothing answered 500.
    failed = [a for a in answers if a.error]
    assert failed == [], failed[:5]
    codes = Counter(a.status for a in answers)
    assert set(codes) <= {200, 503}, codes
    for a in answers:
        if a.status != 503:
            continue
        assert a.content_type.startswith("application/json"), (a.endpoint, a.content_type)
        body = json.loads(a.body)
        if a.endpoint == "health":
            assert body["status"] == "unavailable" and body["database"], body
        else:
            assert body == {"code": "ServiceUnavailable",
                            "description": "the database is unavailable; try again shortly"}, body
    # While the server was down every endpoint said so (tiles and areas after their 1 s cache), and
    # /health answered 503 every time.
    during = [a for a in answers if a.started >= t_down and a.ended <= t_restart]
    health = [a for a in during if a.endpoint == "health"]
    assert health and all(a.status == 503 for a in health), Counter(a.status for a in health)
    assert {a.endpoint for a in during if a.status == 503} == set(ENDPOINTS)
    # After the restart, once an endpoint answered 200 it kept doing so.
    for endpoint, first_ok in recovered.items():
        late = [a for a in answers if a.endpoint == endpoint and a.started >= t_up + first_ok]
        assert all(a.status == 200 for a in late), (endpoint, Counter(a.status for a in late))
    assert "Traceback" not in log_file.read_text()
    assert snapshot(url) == before

    during_codes = Counter(a.status for a in during)
    first_ok = min(a.ended for a in answers if a.status == 200 and a.started >= t_restart) - t_restart
    by_endpoint = {e: dict(Counter(a.status for a in during if a.endpoint == e)) for e in ENDPOINTS}
    last_ok = {e: max((a.ended - t_down for a in during if a.endpoint == e and a.status == 200), default=None)
               for e in ENDPOINTS}
    print(f"\nburst outage by endpoint: {by_endpoint}; last 200 after the stop (s): {last_ok}")
    print(f"\nburst: {CLIENTS} clients, {len(answers)} requests in {answers[-1].ended - answers[0].started:.1f} s; "
          f"stop took {t_down - t_stop:.2f} s, server down {t_restart - t_down:.1f} s, restart took "
          f"{t_up - t_restart:.2f} s; "
          f"{len(during)} requests inside it: {dict(during_codes)}; all: {dict(codes)}; "
          f"first 200 {first_ok:.2f} s after the restart began; after the restart returned, every endpoint 200 "
          f"within {max(recovered.values()):.2f} s; longest request {max(a.ended - a.started for a in answers):.2f} s")
