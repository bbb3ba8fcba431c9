"""Backups that restore: PostgreSQL's own dump of the database, the model files it points at, and a
manifest that proves a restore.

A backup is a directory:

    database.dump    pg_dump, custom format (compressed; pg_restore reads it)
    models/          every model file of model_runs (the database keeps only their path and SHA-256)
    manifest.json    per table: rows and a checksum, computed in the very snapshot pg_dump dumped;
                     per file: bytes and SHA-256; server, PostGIS and schema versions

The dump and the manifest read one snapshot (`pg_export_snapshot`, then `pg_dump --snapshot`), so
loads, syncs and posted calls may go on while a backup runs and the manifest still describes the
dump exactly. The directory is written under a temporary name and renamed when complete, so an
interrupted backup never looks like one.

A restore checks every file against the manifest before touching any database (a truncated or
altered file is refused, naming it), restores into an empty database in one transaction
(`pg_restore --single-transaction`), puts the model files back, and computes every table's rows
and checksum again: equal to the manifest, or the tables that differ are named.

The checksum of a table: md5 of each row's text (in fixed session settings: UTC, ISO dates,
shortest exact floats), the 128 bits of those digests summed over the rows as two exact numeric
sums, and md5 of the count and the sums. Order-free (no sort of a 10-million-row table, constant
memory) and it changes with any row's value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from geo.migrate import has_table

FORMAT = "cmpd-hotspots backup 1"
DUMP = "database.dump"
MANIFEST = "manifest.json"
MODELS = "models"
# The text a row is checksummed as must not depend on the session: fixed here for backup and restore.
ROW_TEXT_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres",
                     "extra_float_digits": "1", "bytea_output": "hex"}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
# Ordinary tables and the other relations a database of ours would hold, except those an extension
# owns (PostGIS's spatial_ref_sys, topology, tiger): the extension's own script recreates those.
_USER_RELATIONS = sa.text(
    "SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname <> ALL(:system)"
    " AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast%'"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
    "                 AND d.deptype = 'e')"
    " ORDER BY 1, 2")
PG_LIB = Path("/usr/lib/postgresql")


def _major_of(version_text: str) -> int:
    """The major version in 'pg_dump (PostgreSQL) 15.18 (Debian ...)' or a directory name like '15'."""
    m = re.search(r"(?:^|\) )(\d+)", version_text)
    return int(m.group(1)) if m else 0


class BackupError(RuntimeError):
    """A backup that cannot be made, or a directory that is not a sound backup, named with the reason."""


class RestoreMismatch(BackupError):
    """The restored database differs from the manifest: `differences` names each table."""

    def __init__(self, differences: list[str]):
        super().__init__("the restored database does not match the backup's manifest:\n  " + "\n  ".join(differences)
                         + "\nThe restored data is left as it is for inspection; drop the database before restoring again.")
        self.differences = differences


@dataclass
class BackupResult:
    """What a backup wrote."""

    path: Path
    manifest: dict
    seconds: float

    def summary_lines(self) -> list[str]:
        """A few lines for the command line."""
        m = self.manifest
        rows = sum(t["rows"] for t in m["tables"].values())
        size = sum(f["bytes"] for f in m["files"].values())
        lines = [f"backup {self.path}: {len(m['tables'])} tables, {rows:,} rows, {len(m['models'])} model file(s), "
                 f"{size / 1e6:,.1f} MB in {self.seconds:.1f} s (schema version {m['schema_version']})"]
        for missing in m["missing_models"]:
            lines.append(f"warning: model {missing['model_version']}: {missing['problem']}; it is not in the backup")
        return lines


@dataclass
class RestoreResult:
    """What a restore did."""

    tables: int
    rows: int
    models: list[str] = field(default_factory=list)
    relocated: int = 0
    seconds: float = 0.0
    schema_version: int = 0


# --- tools ------------------------------------------------------------------------------------
def _tool(name: str, server_major: int) -> Path:
    """pg_dump or pg_restore, at least as new as the server: HOTSPOTS_PG_BIN, the newest
    /usr/lib/postgresql/*/bin, or the PATH (Docker images install postgresql-client there)."""
    override = os.environ.get("HOTSPOTS_PG_BIN")
    installed = sorted(PG_LIB.glob("*/bin"), key=lambda p: _major_of(p.parent.name), reverse=True)
    path = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    found = []
    for d in [Path(override)] if override else [*installed, *path]:
        exe = d / name
        if exe.is_file() and os.access(exe, os.X_OK):
            major = _major_of(subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout)
            if major >= server_major:
                return exe
            found.append(f"{exe} ({major})")
    raise BackupError(f"no {name} of PostgreSQL {server_major} or newer (found: {', '.join(found) or 'none'}); "
                      "install postgresql-client (Debian: apt-get install postgresql-client-15) or set HOTSPOTS_PG_BIN")


def _libpq(url: sa.URL) -> tuple[str, dict]:
    """A libpq connection URI without the password, and an environment carrying it (never on the command line)."""
    env = {**os.environ}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    uri = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _run(args: list[str], env: dict, what: str) -> None:
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-8:])
        raise BackupError(f"{what} failed (exit {res.returncode}):\n{tail}")


# --- digests ----------------------------------------------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _set_row_text(conn: Connection) -> None:
    for key, value in ROW_TEXT_SETTINGS.items():
        conn.execute(sa.text("SELECT set_config(:k, :v, true)"), {"k": key, "v": value})


def user_relations(conn: Connection) -> list[tuple[str, str, str]]:
    """(schema, name, relkind) of every relation a restore would bring, extension members left out."""
    return [tuple(r) for r in conn.execute(_USER_RELATIONS, {"system": list(_SYSTEM_SCHEMAS)})]


def table_digests(conn: Connection) -> dict[str, dict]:
    """Rows and checksum of every table (schema.name), in the connection's current transaction."""
    _set_row_text(conn)
    out = {}
    for schema, name, kind in user_relations(conn):
        if kind not in ("r", "p"):
            continue
        qualified = f"{_quote(schema)}.{_quote(name)}"
        # Both halves of each row's md5 as 64-bit integers, summed exactly (numeric never overflows).
        count, high, low = conn.execute(sa.text(
            "SELECT count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0),"
            " coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)"
            f" FROM (SELECT md5(t::text) AS h FROM ONLY {qualified} t) s")).one()
        digest = hashlib.md5(f"{count}:{high}:{low}".encode()).hexdigest()
        out[f"{schema}.{name}"] = {"rows": int(count), "checksum": digest}
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- backup -----------------------------------------------------------------------------------
def backup(url: str, out: Path, *, echo: Callable[[str], None] = lambda _: None) -> BackupResult:
    """Dump the database at `url` with its model files and a manifest into the new directory `out`."""
    t0 = time.monotonic()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} already exists and is not an empty directory; give a new directory to --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / MODELS).mkdir(parents=True)
    sa_url = make_url(url)
    engine = sa.create_engine(sa_url, use_native_hstore=False)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
            server = int(conn.exec_driver_sql("SHOW server_version_num").scalar())
            uri, env = _libpq(sa_url)
            pg_dump = _tool("pg_dump", server // 10000)
            echo(f"dumping {sa_url.render_as_string(hide_password=True)} with {pg_dump} (snapshot {snapshot})")
            dump = subprocess.Popen([str(pg_dump), "--format=custom", "--no-password", f"--snapshot={snapshot}",
                                     f"--file={work / DUMP}", f"--dbname={uri}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            try:
                # The manifest is read in the same snapshot while pg_dump writes it out.
                tables = table_digests(conn)
                info = _database_info(conn, server)
                models = _model_rows(conn)
            finally:
                _, err = dump.communicate()
            conn.exec_driver_sql("COMMIT")
        if dump.returncode != 0:
            tail = "\n".join(err.strip().splitlines()[-8:])
            raise BackupError(f"pg_dump failed (exit {dump.returncode}):\n{tail}")
        echo(f"dumped {len(tables)} tables ({sum(t['rows'] for t in tables.values()):,} rows)")
        kept, missing = _copy_models(models, work / MODELS)
        files = {DUMP: {"bytes": (work / DUMP).stat().st_size, "sha256": _sha256(work / DUMP)}}
        for m in kept:
            p = work / MODELS / m["file"]
            files[f"{MODELS}/{m['file']}"] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        manifest = {"format": FORMAT, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "source": sa_url.render_as_string(hide_password=True), **info,
                    "pg_dump": subprocess.run([str(pg_dump), "--version"], capture_output=True, text=True).stdout.strip(),
                    "snapshot": snapshot, "row_text_settings": ROW_TEXT_SETTINGS,
                    "tables": tables, "models": kept, "missing_models": missing, "files": files}
        # Written last: a directory with a manifest is a finished backup.
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        engine.dispose()
    return BackupResult(out, manifest, time.monotonic() - t0)


def _database_info(conn: Connection, server: int) -> dict:
    postgis = conn.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")).scalar()
    version = (conn.execute(sa.text("SELECT coalesce(max(version), 0) FROM schema_migrations")).scalar()
               if has_table(conn, "schema_migrations") else 0)
    return {"database": conn.execute(sa.text("SELECT current_database()")).scalar(), "server_version_num": server,
            "postgis": postgis, "schema_version": int(version)}


def _model_rows(conn: Connection) -> list[dict]:
    if not has_table(conn, "model_runs"):
        return []
    return [dict(r._mapping) for r in conn.execute(sa.text(
        "SELECT model_version, artifact_path, artifact_sha256 FROM model_runs ORDER BY model_version"))]


def _copy_models(models: list[dict], into: Path) -> tuple[list[dict], list[dict]]:
    """Copy each model file that still matches its checksum; list the others with the problem."""
    kept, missing = [], []
    for m in models:
        src = Path(m["artifact_path"])
        if not src.is_file():
            missing.append({**m, "problem": f"{src} does not exist"})
            continue
        name = f"{m['model_version']}{src.suffix}"
        shutil.copyfile(src, into / name)
        sha = _sha256(into / name)
        if sha != m["artifact_sha256"]:
            (into / name).unlink()
            missing.append({**m, "problem": f"{src} no longer matches its SHA-256 in model_runs"})
            continue
        kept.append({**m, "file": name})
    return kept, missing


# --- restore ----------------------------------------------------------------------------------
def read_backup(directory: Path) -> dict:
    """The manifest of a complete, unaltered backup; BackupError naming the first problem otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} has no {MANIFEST}: not a backup, or an unfinished one")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} is not valid JSON ({exc}); the manifest is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: format {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                          f"expected {FORMAT!r}")
    for key in ("tables", "files", "models"):
        if not isinstance(manifest.get(key), (dict, list)):
            raise BackupError(f"{path}: the manifest has no {key!r}; it is damaged")
    if DUMP not in manifest["files"]:
        raise BackupError(f"{path}: the manifest lists no {DUMP}; it is damaged")
    for name, expected in manifest["files"].items():
        p = directory / name
        if not p.is_file():
            raise BackupError(f"{p} is missing (the manifest lists it)")
        size = p.stat().st_size
        if size != expected["bytes"]:
            cut = " (truncated?)" if size < expected["bytes"] else ""
            raise BackupError(f"{p}: {size:,} bytes, the manifest says {expected['bytes']:,}{cut}; refusing to restore it")
        if _sha256(p) != expected["sha256"]:
            raise BackupError(f"{p}: its SHA-256 differs from the manifest's: the file was changed after the backup; "
                              "refusing to restore it")
    return manifest


def restore(directory: Path, url: str, *, models_dir: Path | None = None,
            echo: Callable[[str], None] = lambda _: None) -> RestoreResult:
    """Restore the backup in `directory` into the empty database at `url` and prove it against the manifest.

    Model files go back to their recorded paths, or into `models_dir` (model_runs then points there).
    RestoreMismatch names every table whose rows or checksum differ.
    """
    t0 = time.monotonic()
    directory = Path(directory)
    manifest = read_backup(directory)
    echo(f"backup of {manifest['source']} taken {manifest['created_at']}: every file matches the manifest")
    destinations = _model_destinations(directory, manifest, models_dir)
    sa_url = make_url(url)
    engine = sa.create_engine(sa_url, use_native_hstore=False)
    try:
        with engine.connect() as conn:
            present = user_relations(conn)
            server = int(conn.exec_driver_sql("SHOW server_version_num").scalar())
        if present:
            names = ", ".join(f"{s}.{n}" for s, n, _ in present[:8]) + (" ..." if len(present) > 8 else "")
            raise BackupError(f"the database {sa_url.render_as_string(hide_password=True)} is not empty "
                              f"({len(present)} relations: {names}); restore needs an empty database")
        # pg_restore must read the dump's archive version and speak to this server.
        pg_restore = _tool("pg_restore", max(_major_of(manifest.get("pg_dump", "")), server // 10000))
        uri, env = _libpq(sa_url)
        echo(f"restoring into {sa_url.render_as_string(hide_password=True)} with {pg_restore}")
        # One transaction: a restore that fails leaves the database as empty as it was.
        _run([str(pg_restore), "--single-transaction", "--exit-on-error", "--no-owner", "--no-password",
              f"--dbname={uri}", str(directory / DUMP)], env, "pg_restore (nothing was restored)")
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            restored = table_digests(conn)
            conn.exec_driver_sql("COMMIT")
        differences = compare(manifest["tables"], restored)
        if differences:
            raise RestoreMismatch(differences)
        echo(f"verified {len(restored)} tables against the manifest: rows and checksums equal")
        names = _put_models(directory, destinations)
        relocated = _repoint_models(engine, destinations)
    finally:
        engine.dispose()
    return RestoreResult(len(restored), sum(t["rows"] for t in restored.values()), names, relocated,
                         time.monotonic() - t0, int(manifest.get("schema_version", 0)))


def compare(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """One line per table whose presence, rows or checksum differ."""
    out = []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name), actual.get(name)
        if a is None:
            out.append(f"{name}: in the manifest, missing from the restored database")
        elif e is None:
            out.append(f"{name}: in the restored database, not in the manifest")
        elif e["rows"] != a["rows"]:
            out.append(f"{name}: {a['rows']:,} rows restored, the manifest says {e['rows']:,}")
        elif e["checksum"] != a["checksum"]:
            out.append(f"{name}: {a['rows']:,} rows as expected but their checksum differs "
                       f"({a['checksum']} restored, {e['checksum']} in the manifest)")
    return out


def _model_destinations(directory: Path, manifest: dict, models_dir: Path | None) -> list[tuple[dict, Path, Path]]:
    """(model, file in the backup, where it goes), checked before any database is touched."""
    out = []
    for m in manifest["models"]:
        src = directory / MODELS / m["file"]
        dest = (Path(models_dir) / m["file"]).resolve() if models_dir else Path(m["artifact_path"])
        if dest.exists() and _sha256(dest) != m["artifact_sha256"]:
            raise BackupError(f"model {m['model_version']}: {dest} exists with other contents; "
                              "move it away or restore the models elsewhere with --models-dir")
        out.append((m, src, dest))
    return out


def _put_models(directory: Path, destinations: list[tuple[dict, Path, Path]]) -> list[str]:
    names = []
    for m, src, dest in destinations:
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        names.append(m["model_version"])
    return names


def _repoint_models(engine: sa.Engine, destinations: list[tuple[dict, Path, Path]]) -> int:
    moved = [(m["model_version"], str(dest)) for m, _, dest in destinations if str(dest) != m["artifact_path"]]
    if moved:
        with engine.begin() as conn:
            for version, path in moved:
                conn.execute(sa.text("UPDATE model_runs SET artifact_path = :p WHERE model_version = :v"),
                             {"p": path, "v": version})
    return len(moved)


# --- scheduled ----------------------------------------------------------------------------------
def backup_name(now: datetime | None = None) -> str:
    """The folder name of a scheduled backup: its UTC time, sortable."""
    return (now or datetime.now(timezone.utc)).strftime("hotspots-%Y%m%dT%H%M%SZ")


def prune(parent: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` finished backups under `parent`; returns the deleted ones."""
    done = sorted(p for p in Path(parent).glob("hotspots-*") if (p / MANIFEST).is_file())
    gone = done[:-keep] if keep > 0 else []
    for p in gone:
        shutil.rmtree(p)
    return gone
