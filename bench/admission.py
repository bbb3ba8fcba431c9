"""Heavy work against light requests under gunicorn, with admission control and without it.

The issue's scenario: 32 clients downloading every call (`/export/calls.csv`), 8 asking for division
reports, while 20 clients read `/health` and a cached tile, against the app under gunicorn (2
workers x 8 threads by default) on the demo database. Three phases, each on a freshly started
server with the same settings but the admission caps:

- light alone:        the 20 light clients only (admission on), the floor;
- with admission:     light + heavy, the configured caps (the defaults, or HOTSPOTS_*_CAP in the environment);
- without admission:  light + heavy, every cap 0 (the server as it was before admission control);
- reference: with admission, as it first landed (heavy work at normal priority, Python's 5 ms
  switch interval, 20,000-row fetches per streamed export), to compare with `admission` side by
  side; nice_only, switch_only, chunk_only: `admission` without the 1 ms switch interval, without
  the lower priority, without both (HOTSPOTS_HEAVY_NICE, HOTSPOTS_SWITCH_INTERVAL_MS at 0).

Light and heavy clients run in two separate processes (so one side's reading of 80 MB bodies does
not slow the other's timing), each client on its own keep-alive connection. A light client asks
every --light-interval-ms (100 ms: 200 requests/s from 20 clients) and its latency is counted
from when the request was due, so a client stuck behind heavy work counts every request it could
not send. Heavy clients ask back to back until the phase ends; they carry their own tokens (32 + 8
distinct clients, so the kind caps, not the per-client share, are what limits them); a refused one
waits its Retry-After (at most until the phase ends) and asks again. Recorded per phase: light
p50/p95/p99/max and errors; every heavy answer (200 with the full body, or 429/503 with
Retry-After and the limit named, or a failure); the most slots held at once (pg_locks, sampled
every 50 ms) and the most downloads in progress (client side, waiting included); how long
refusals took; whether gunicorn killed a worker (WORKER TIMEOUT in its log, or a worker pid that
changed); each worker's peak RSS (VmHWM).
Written to var/bench/admission_result.json; figures in bench/RESULTS.md and RELIABILITY.md.

Usage: python bench/admission.py [--database-url URL] [--seconds 60] [--light-seconds 20] [--light-interval-ms 100]
                                 [--workers 2] [--threads 8] [--exports 32] [--reports 8] [--light 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.concurrency import CENTRE, free_port, tile_of, wait_up  # noqa: E402
from geo import db as dbmod  # noqa: E402
from geo.auth import make_entry, new_token  # noqa: E402

EXPORT = "/export/calls.csv"
CAPS = ("EXPORTS", "REPORTS", "TILES", "STATS", "INGEST")


def _tile() -> str:
    x, y = tile_of(*CENTRE, 10)
    return f"/tiles/calls/10/{x}/{y}.pbf"


def light_clients(port: int, n: int, interval_s: float, stop_at: float, out_path: str, nice: int = 0,
                  tile: str | None = None) -> None:
    """n clients alternating /health and a cached tile, each on a fixed schedule (one request every
    interval_s); (path, status, seconds from the scheduled start, seconds of the request itself) to out_path.

    Latency is counted from when the request was due, not from when a client that was stuck on its
    previous one got round to sending it: otherwise a client blocked for a minute contributes one
    slow sample instead of the minute of requests it could not make (coordinated omission).
    """
    results: list = []
    tile = tile or _tile()
    if nice:
        os.nice(nice)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        k = 0
        first = time.perf_counter() + interval_s * i / n   # spread the clients over one interval
        while time.time() < stop_at:
            path = "/health" if (k + i) % 2 == 0 else tile
            due = first + k * interval_s
            k += 1
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            end = time.perf_counter()
            results.append((path, status, end - due, end - t0))
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(out_path).write_text(json.dumps(results))


def heavy_clients(port: int, tokens: list[str], n_exports: int, divisions: list[str], stop_at: float,
                  out_path: str) -> None:
    """Export and report clients (one token each); every answer to out_path."""
    results: list = []

    def one(kind: str, path: str, token: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        t0 = time.time()
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            r = conn.getresponse()
            rec = {"kind": kind, "status": r.status, "start": t0, "retry_after": r.getheader("Retry-After")}
            if r.status == 200:
                size, tail = 0, b""
                while piece := r.read(1 << 20):
                    size += len(piece)
                    tail = (tail + piece)[-16:]
                rec.update(bytes=size, tail=tail.decode(errors="replace"))
            else:
                raw = r.read()
                try:
                    body = json.loads(raw)
                    rec.update(limit=body.get("limit"), code=body.get("code"))
                except ValueError:
                    rec.update(body=raw[:200].decode(errors="replace"))
        except (OSError, http.client.HTTPException) as exc:
            rec = {"kind": kind, "status": type(exc).__name__, "start": t0}
        finally:
            conn.close()
        rec["end"] = time.time()
        return rec

    def client(kind: str, token: str, i: int) -> None:
        while time.time() < stop_at:
            path = EXPORT if kind == "export" else f"/report/{divisions[i % len(divisions)]}?preset=365d"
            rec = one(kind, path, token)
            results.append(rec)
            if rec["status"] in (429, 503) and rec.get("retry_after"):
                time.sleep(max(0.0, min(float(rec["retry_after"]), stop_at - time.time())))

    threads = [threading.Thread(target=client, args=("export" if i < n_exports else "report", tok, i))
               for i, tok in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(out_path).write_text(json.dumps(results))


def _sample_slots(url: str, stop_at: float, out: list) -> None:
    from geo.admission import held_slots

    engine = dbmod.make_engine(url)
    with engine.connect() as conn:
        while time.time() < stop_at:
            out.append(held_slots(conn))
            conn.commit()
            time.sleep(0.05)
    engine.dispose()


def _workers(master: int) -> list[int]:
    with open(f"/proc/{master}/task/{master}/children") as fh:
        return sorted(int(p) for p in fh.read().split())


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return round(next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024, 1)


def _cpu_s(pid: int) -> float:
    # utime + stime of the whole process (all its threads), in clock ticks: fields 14 and 15 of stat.
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def run_phase(name: str, args, url: str, tokens: list[str], divisions: list[str], caps: dict[str, str],
              heavy: bool, seconds: float, work: Path) -> dict:
    """One gunicorn, warmed up; light (and heavy) clients for `seconds`; what every side saw."""
    port = free_port()
    entries = ",".join(make_entry(f"bench{i}", t).entry() for i, t in enumerate(tokens))
    env = {**os.environ, "DATABASE_URL": url, "HOTSPOTS_API_TOKENS": entries, "HOTSPOTS_THREADS": str(args.threads),
           "HOTSPOTS_REQUEST_TIMEOUT_MS": str(args.request_timeout_ms), **caps}
    log = work / f"gunicorn-{name}.log"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with log.open("wb") as out:
        server = subprocess.Popen([gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
                                   "--worker-class", "gthread", "--threads", str(args.threads), "--timeout", "120",
                                   "--log-level", "info", caps.get("APP", "web:create_app()")], env=env, cwd=REPO, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        wait_up(port)
        for _ in range(4 * args.workers):   # the tile into every worker's cache (new connections spread)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("GET", _tile())
            conn.getresponse().read()
            conn.close()
        workers = _workers(server.pid)
        cpu_before = {pid: _cpu_s(pid) for pid in workers}
        stop_at = time.time() + seconds
        ctx = mp.get_context("fork")
        light_out, heavy_out = work / f"{name}-light.json", work / f"{name}-heavy.json"
        procs = [ctx.Process(target=light_clients, args=(port, args.light, args.light_interval_ms / 1000, stop_at,
                                                         str(light_out), args.client_nice))]
        if heavy:
            procs.append(ctx.Process(target=heavy_clients, args=(port, tokens, args.exports, divisions, stop_at,
                                                                 str(heavy_out))))
        slots: list[dict] = []
        sampling = threading.Thread(target=_sample_slots, args=(url, stop_at, slots))
        t0 = time.time()
        for p in procs:
            p.start()
        sampling.start()
        for p in procs:
            p.join()
        elapsed = time.time() - t0
        sampling.join()
        workers_after = _workers(server.pid)
        cpu = {str(pid): round(_cpu_s(pid) - cpu_before.get(pid, 0.0), 1) for pid in workers_after}
        rss = {str(pid): _peak_rss_mb(pid) for pid in workers_after}
    finally:
        server.terminate()
        server.wait(60)
    text = log.read_text(errors="replace")
    light = json.loads(light_out.read_text())
    out = {"phase": name, "seconds": round(elapsed, 1), "caps": caps or "defaults",
           # Server side, sampled every 50 ms in pg_locks: the most slots and waiting places held at once.
           "most_slots_held": {kind: {"running": max((s[kind]["running"] for s in slots), default=0),
                                      "waiting": max((s[kind]["waiting"] for s in slots), default=0)}
                               for kind in ("exports", "reports")},
           "slot_samples": len(slots),
           "worker_timeouts": text.count("WORKER TIMEOUT"), "workers_replaced": workers != workers_after,
           "worker_peak_rss_mb": rss, "worker_cpu_s": cpu, "light": {}}
    for label, prefix in (("health", "/health"), ("cached_tile", "/tiles/"), ("all", "/")):
        rows = [r for r in light if r[0].startswith(prefix)]
        lat = [r[2] * 1000 for r in rows]
        service = [r[3] * 1000 for r in rows]
        out["light"][label] = {"n": len(rows), "errors": sum(r[1] != 200 for r in rows),
                               "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
                               "max_ms": round(max(lat), 1) if lat else None,
                               # the request alone, from sending it (what a closed-loop client would report)
                               "service_p95_ms": _pct(service, 95)}
    out["light"]["all"]["error_examples"] = sorted({str(r[1]) for r in light if r[1] != 200})[:5]
    out["light"]["expected_requests"] = int(args.light * seconds / (args.light_interval_ms / 1000))
    if heavy:
        out["heavy"] = summarise_heavy(json.loads(heavy_out.read_text()), args.full_size)
    return out


def summarise_heavy(rows: list[dict], full_size: int) -> dict:
    """Per kind: statuses, whole bodies, clean refusals, durations, most in progress at once."""
    out = {}
    for kind in ("export", "report"):
        mine = [r for r in rows if r["kind"] == kind]
        ok = [r for r in mine if r["status"] == 200]
        refused = [r for r in mine if r["status"] in (429, 503)]
        whole = [r for r in ok if (r["bytes"] == full_size if kind == "export" else r["tail"].rstrip().endswith("</html>"))]
        clean = [r for r in refused if r.get("retry_after") and r.get("limit")
                 and int(r["retry_after"]) == r["limit"]["retry_after_s"]]
        out[kind] = {
            "requests": len(mine),
            "statuses": dict(sorted(Counter(str(r["status"]) for r in mine).items())),
            "refusals_by_limit": dict(sorted(Counter(f"{r['status']} {r['limit']['scope']} {r['limit']['setting']}"
                                                     for r in refused if r.get("limit")).items())),
            "ok_whole": len(whole), "ok_not_whole": len(ok) - len(whole),
            "refused_clean": len(clean), "refused_unclean": len(refused) - len(clean),
            "failed": len(mine) - len(ok) - len(refused),
            "ok_p50_s": _pct([r["end"] - r["start"] for r in ok], 50),
            "ok_max_s": round(max((r["end"] - r["start"] for r in ok), default=0), 1),
            # Refusals come at once, except those that waited HOTSPOTS_QUEUE_WAIT_S for a slot first.
            "refusal_at_once_max_ms": round(max(((r["end"] - r["start"]) * 1000 for r in refused
                                                 if (r.get("limit") or {}).get("scope") != "wait"), default=0), 1),
            "refusal_after_waiting_max_s": round(max((r["end"] - r["start"] for r in refused
                                                      if (r.get("limit") or {}).get("scope") == "wait"), default=0), 1),
            # Client side: from asking to the last byte, so it includes time spent waiting for a slot.
            "most_in_progress_at_once": _max_overlap([(r["start"], r["end"]) for r in ok]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--light-seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--exports", type=int, default=32)
    ap.add_argument("--reports", type=int, default=8)
    ap.add_argument("--light", type=int, default=20)
    ap.add_argument("--light-interval-ms", type=float, default=100, help="each light client asks this often")
    ap.add_argument("--client-nice", type=int, default=0,
                    help="nice increment of the light clients' process (negative, as root: their own CPU lag on a "
                         "busy machine is not counted as the server's)")
    ap.add_argument("--request-timeout-ms", type=int, default=15000)
    ap.add_argument("--phases", default="light,admission,none",
                    help="comma-separated: light, admission, reference, nice_only, switch_only, chunk_only, none")
    args = ap.parse_args()
    url = args.database_url or dbmod.resolve_url()
    engine = dbmod.make_engine(url)
    import sqlalchemy as sa

    with engine.connect() as conn:
        divisions = [r[0] for r in conn.execute(sa.text("SELECT division_id FROM divisions ORDER BY 1"))]
        n_calls = conn.execute(sa.text("SELECT count(*) FROM calls")).scalar()
    engine.dispose()
    tokens = [new_token() for _ in range(args.exports + args.reports)]
    work = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    # The size of a whole export, to check every 200 against (the data do not change during the run).
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
                               "--workers", "1", "--log-level", "warning", "web:create_app()"],
                              env={**os.environ, "DATABASE_URL": url}, cwd=REPO)
    try:
        wait_up(port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        t0 = time.time()
        conn.request("GET", EXPORT)
        args.full_size = len(conn.getresponse().read())
        alone_s = round(time.time() - t0, 1)
        conn.close()
    finally:
        server.terminate()
        server.wait(60)
    off = {f"HOTSPOTS_{k}_CAP": "0" for k in CAPS}
    # The reference: admission as first landed (heavy work at normal priority, Python's 5 ms switch
    # interval); and each of the two later changes alone, to tell what each buys.
    as_landed = {"HOTSPOTS_HEAVY_NICE": "0", "HOTSPOTS_SWITCH_INTERVAL_MS": "0", "APP": 'web:create_app({"EXPORT_CHUNK_ROWS": 20000})'}
    phases = {"light": ({}, False, args.light_seconds), "admission": ({}, True, args.seconds),
              "reference": (as_landed, True, args.seconds),
              "nice_only": ({"HOTSPOTS_SWITCH_INTERVAL_MS": "0"}, True, args.seconds),
              "switch_only": ({"HOTSPOTS_HEAVY_NICE": "0"}, True, args.seconds),
              "chunk_only": ({"HOTSPOTS_HEAVY_NICE": "0", "HOTSPOTS_SWITCH_INTERVAL_MS": "0"}, True, args.seconds),
              "none": ({**off, **as_landed}, True, args.seconds)}
    summary = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "calls_in_database": n_calls,
               "workers": args.workers, "threads": args.threads, "export": EXPORT, "export_bytes": args.full_size,
               "export_alone_s": alone_s, "clients": {"exports": args.exports, "reports": args.reports, "light": args.light},
               "load_average_before": os.getloadavg(), "phases": []}
    for name in args.phases.split(","):
        caps, heavy, seconds = phases[name]
        print(f"phase {name} ({seconds:.0f} s) ...", flush=True)
        summary["phases"].append(run_phase(name, args, url, tokens, divisions, caps, heavy, seconds, work))
        print(json.dumps(summary["phases"][-1], indent=2), flush=True)
    summary["load_average_after"] = os.getloadavg()
    out = REPO / "var" / "bench" / "admission_result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
