"""`hotspots db backup` / `db restore` (geo/backup.py): a demo database (synthetic calls and incidents,
a trained model, saved hot spots, rejects, sync state) backed up, restored into a fresh cluster and
compared table by table; truncated, altered and incomplete backups refused; scheduled backups kept."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo import backup as gb
from geo.cli import main as cli
from geo.db import make_engine
from tests.clusters import cloned_database, private_cluster, snapshot

REPO = Path(__file__).resolve().parent.parent


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(server_url, template_db, data_dir, tmp_path_factory):
    """A database as `hotspots demo` leaves it, smaller: 20k calls with incidents and rejects, a model
    (its file under a temporary var/models), labels, a saved Gi* run and a sync_state row."""
    from geo.classify import label_calls, train
    from geo.demo import generate_and_load
    from geo.hotspots import npa_hotspots
    from geo.filters import Filter
    from geo.runs import RunKind, RunSpec, save_npa_results

    work = tmp_path_factory.mktemp("demo")
    with cloned_database(server_url, template_db, prefix="bk_") as (_, engine):
        generate_and_load(n_calls=20_000, start=date(2021, 1, 1), days=365, seed=11, out=work / "data",
                          engine=engine, data_dir=data_dir, progress=False)
        model = train(engine, test_months=3, models_dir=work / "models")
        label_calls(engine)
        period = Filter.local_days(date(2021, 1, 1), date(2022, 1, 1))
        save_npa_results(engine, RunSpec(RunKind.CALLS_NPA_HOTSPOTS, {"period": [period.start_date, period.end_date]}, model.version),
                         npa_hotspots(engine, period, permutations=99))
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sync_state (kind, url, date_field, high_water, pages, records_read)"
                                 " VALUES ('incidents', 'https://example.invalid/FeatureServer/0/query', 'DATE_REPORTED',"
                                 " '2021-12-30 10:00+00', 12, 11800)"))
        yield engine, Path(model.path)


def _backup(url: str, out: Path):
    return CliRunner().invoke(cli, ["db", "backup", "--out", str(out)], env={"DATABASE_URL": url})


def _restore(url: str, directory: Path, *extra: str):
    return CliRunner().invoke(cli, ["db", "restore", str(directory), *extra], env={"DATABASE_URL": url})


def test_a_backup_restores_into_a_fresh_cluster_equal_table_by_table(demo, tmp_path):
    engine, model_path = demo
    before = snapshot(engine)
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar()
                  for t in ("calls", "incidents", "ingest_rejects", "model_runs", "analysis_runs", "sync_state")}
    assert min(counts.values()) >= 1 and counts["calls"] > 15_000 and counts["ingest_rejects"] > 10

    result = _backup(_url(engine), tmp_path / "b1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert manifest["tables"]["public.calls"]["rows"] == counts["calls"]
    assert {m["model_version"] for m in manifest["models"]} and manifest["missing_models"] == []
    assert "public.spatial_ref_sys" not in manifest["tables"]          # PostGIS's own, recreated by the extension
    assert sorted(p.name for p in (tmp_path / "b1").iterdir()) == ["database.dump", "manifest.json", "models"]

    # The machine is lost: a new cluster, and the model file gone from var/models.
    model_sha = _sha(model_path)
    saved = model_path.read_bytes()
    model_path.unlink()
    try:
        with private_cluster("hotspots-restore-") as fresh:
            result = _restore(fresh.url(), tmp_path / "b1")
            assert result.exit_code == 0, result.output
            assert "rows and checksums equal the manifest" in result.output
            restored = make_engine(fresh.url())
            after = snapshot(restored)
            assert after == before            # every table by count and md5 of its rows, indexes, constraints
            # ... and the manifest covered the same tables.
            assert set(after) - {"(indexes)", "(constraints)"} == {t.split(".", 1)[1] for t in manifest["tables"]}
            assert len(manifest["tables"]) >= 16
            with restored.connect() as conn:
                # The sequences went along: the next batch id follows the restored ones.
                last = conn.execute(sa.text("SELECT max(batch_id) FROM ingest_batches")).scalar()
                nxt = conn.execute(sa.text("SELECT nextval(pg_get_serial_sequence('ingest_batches', 'batch_id'))")).scalar()
                assert nxt > last
            # The model file is back where model_runs says, and loads (its checksum is checked on load).
            from geo.classify import load_model

            assert _sha(model_path) == model_sha
            assert load_model(restored).version == manifest["models"][0]["model_version"]
            restored.dispose()
    finally:
        if not model_path.exists():
            model_path.write_bytes(saved)


def test_a_truncated_changed_or_unfinished_backup_is_refused(demo, empty_engine, tmp_path):
    engine, _ = demo
    good = tmp_path / "good"
    assert _backup(_url(engine), good).exit_code == 0
    target = _url(empty_engine)

    def variant(name: str, change) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        change(d)
        return d

    def truncate(d):
        dump = d / "database.dump"
        dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])

    def flip(d):
        dump = d / "database.dump"
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))

    def model(d):
        f = next((d / "models").iterdir())
        f.write_bytes(f.read_bytes() + b"x")

    cases = {
        "truncated": (truncate, "database.dump: ", "the manifest says", "(truncated?)"),
        "altered": (flip, "database.dump: its SHA-256 differs", "changed after the backup"),
        "model": (model, "models/", "the manifest says"),
        "unfinished": (lambda d: (d / "manifest.json").unlink(), "has no manifest.json", "unfinished"),
        "damaged": (lambda d: (d / "manifest.json").write_text('{"format": "cmpd-hot'), "not valid JSON"),
    }
    for name, (change, *words) in cases.items():
        result = _restore(target, variant(name, change))
        assert result.exit_code == 1, (name, result.output)
        assert all(w in result.output for w in words), (name, result.output)
        with empty_engine.connect() as conn:   # refused before the database was touched
            assert gb.user_relations(conn) == [], name

    # A manifest whose numbers were changed: the restore runs, then names the table and exits 1.
    def recount(d):
        m = json.loads((d / "manifest.json").read_text())
        m["tables"]["public.calls"]["rows"] += 1
        m["tables"]["public.incidents"]["checksum"] = "0" * 32
        (d / "manifest.json").write_text(json.dumps(m))

    result = _restore(target, variant("recounted", recount))
    assert result.exit_code == 1
    assert "public.calls: " in result.output and "rows restored, the manifest says" in result.output
    assert "public.incidents: " in result.output and "checksum differs" in result.output
    assert "public.divisions" not in result.output

    # A database that is not empty is never restored into.
    result = _restore(_url(engine), good)
    assert result.exit_code == 1 and "is not empty" in result.output and "public.calls" in result.output


def test_the_manifest_and_the_dump_share_one_snapshot_while_writes_go_on(demo, server_url, tmp_path):
    """Rows posted during the backup are in neither or both: the restored database equals the manifest."""
    engine, _ = demo
    stop = threading.Event()
    written = []

    def writer():
        with engine.connect() as conn:
            i = 0
            while not stop.is_set():
                conn.execute(sa.text("INSERT INTO sync_state (kind, url, date_field) VALUES ('calls', :u, 'DATE_RECEIVED')"),
                             {"u": f"https://example.invalid/{i}"})
                conn.commit()
                written.append(i)
                i += 1
                time.sleep(0.005)

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(written) < 5:     # writes before the snapshot ...
            time.sleep(0.01)
        result = _backup(_url(engine), tmp_path / "live")
        before = len(written)
        while len(written) < before + 5:   # ... and after it
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "live" / "manifest.json").read_text())["tables"]["public.sync_state"]["rows"]
    assert 1 < rows < 1 + len(written)       # writes went on before, during and after the snapshot
    with cloned_database(server_url, "template0", prefix="rs_") as (_, target):
        result = _restore(_url(target), tmp_path / "live", "--models-dir", str(tmp_path / "models"))
        assert result.exit_code == 0, result.output
        with target.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM sync_state")).scalar() == rows
            paths = conn.execute(sa.text("SELECT artifact_path FROM model_runs")).scalars().all()
        # --models-dir: the files are there and model_runs points at them.
        assert paths and all(Path(p).parent == (tmp_path / "models").resolve() and Path(p).is_file() for p in paths)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sync_state WHERE kind = 'calls'"))


def test_scheduled_backups_keep_the_newest(demo, tmp_path):
    """`db backup --every` (the compose `backup` service): a new directory per run, the oldest pruned,
    and SIGTERM stops it between runs with nothing half-written left."""
    engine, _ = demo
    out = tmp_path / "scheduled"
    proc = subprocess.Popen([sys.executable, "-m", "geo.cli", "db", "backup", "--out", str(out), "--every", "1s",
                             "--keep", "2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DATABASE_URL": _url(engine), "PYTHONPATH": str(REPO)})
    lines = []
    try:
        deadline = time.monotonic() + 60
        while sum(line.startswith("backup ") for line in lines) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        while not lines[-1].startswith("next backup"):
            lines.append(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "backups stopped" in rest
    kept = sorted(p.name for p in out.iterdir())
    assert len(kept) == 2 and all(n.startswith("hotspots-") for n in kept), kept
    assert sum("removed the old backup" in line for line in lines + rest.splitlines()) >= 1
    for name in kept:
        gb.read_backup(out / name)          # complete and unaltered
