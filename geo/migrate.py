"""Ordered SQL migrations, recorded in a version table and applied once.

The migrations ship inside the package (geo/sql/migrations) and are read with importlib.resources,
so an installed wheel migrates a database as well as a checkout does.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR: Traversable = resources.files("geo") / "sql" / "migrations"
# A folder of migrations: the packaged one, a Traversable, or a plain path (tests pass a temp dir).
Folder = Traversable | str | os.PathLike
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same for every process migrating this database.
_ADVISORY_LOCK_KEY = 72_640_2264


class MigrationError(RuntimeError):
    """A migration file is misnamed, was edited after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version number, name and checksum."""

    version: int
    name: str
    path: Traversable

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Folder = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations in version order; file names must look like `001_core.sql`.

    `directory` defaults to the packaged migrations; any folder (a path or a Traversable) works.
    """
    if isinstance(directory, (str, os.PathLike)):
        directory = Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"no migrations folder at {directory}")
    found = []
    for path in sorted((p for p in directory.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files must be named NNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), path.name.removesuffix(".sql"), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}: {versions}")
    return found


def applied(engine: Engine) -> dict[int, str]:
    """Version -> checksum of the migrations recorded in schema_migrations."""
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT to_regclass('public.schema_migrations')")).scalar():
            return {}
        rows = conn.execute(sa.text("SELECT version, sha256 FROM schema_migrations"))
        return {int(v): s for v, s in rows}


def migrate(engine: Engine, directory: Folder = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations in one transaction (a failure applies none); return those applied."""
    done: list[Migration] = []
    with engine.begin() as conn:
        # Serialise concurrent `db migrate` runs (e.g. two containers starting at once).
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        recorded = {int(v): s for v, s in conn.execute(sa.text("SELECT version, sha256 FROM schema_migrations"))}
        for migration in discover(directory):
            if migration.version in recorded:
                if recorded[migration.version] != migration.sha256:
                    raise MigrationError(
                        f"{migration.path.name} was changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(migration.sql)
                    conn.execute(
                        sa.text("INSERT INTO schema_migrations (version, name, sha256) VALUES (:v, :n, :s)"),
                        {"v": migration.version, "n": migration.name, "s": migration.sha256},
                    )
            except sa.exc.DBAPIError as exc:
                raise MigrationError(f"{migration.path.name} failed: {exc.orig}") from exc
            done.append(migration)
    return done


def pending(engine: Engine, directory: Folder = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations not yet applied."""
    have = applied(engine)
    return [m for m in discover(directory) if m.version not in have]


def has_table(conn: Connection | Engine, table: str) -> bool:
    """Whether the public schema holds `table` (a migration that adds it may not have run yet)."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return has_table(c, table)
    return bool(conn.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"public.{table}"}).scalar())
