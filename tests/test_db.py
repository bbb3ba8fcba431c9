"""The embedded cluster, migrations from empty, and models that match the migrated schema."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from geoalchemy2 import Geometry

from geo import migrate as migrate_mod
from geo.db import DatabaseNotConfigured, EmbeddedCluster, resolve_url
from geo.migrate import MigrationError, migrate, pending
from geo.models import metadata
from geo.settings import DatabaseSettings


def test_embedded_cluster_lifecycle_reuses_data():
    root = Path(tempfile.mkdtemp(prefix="hotspots-cluster-"))
    root.chmod(root.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
    cluster = EmbeddedCluster(root / "pg")
    try:
        assert cluster.status().initialised is False
        url = cluster.up()
        status = cluster.status()
        assert status.running and status.postgis_version and status.postgis_version.startswith("3.")
        assert "***" in status.url and "***" not in url
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        engine.dispose()
        cluster.down()
        assert cluster.status().running is False
        # Later commands find the stopped cluster and say how to start it.
        with pytest.raises(DatabaseNotConfigured, match="hotspots db up"):
            resolve_url(DatabaseSettings(HOTSPOTS_VAR_DIR=root))
        assert cluster.up() == url or cluster.running()
        assert resolve_url(DatabaseSettings(HOTSPOTS_VAR_DIR=root)) == cluster.url()
        engine = sa.create_engine(cluster.url())
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT v FROM kept").scalar() == 42
        engine.dispose()
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_database_url_wins_over_embedded(tmp_path):
    url = resolve_url(DatabaseSettings(DATABASE_URL="postgres://u:p@db:5432/x", HOTSPOTS_VAR_DIR=tmp_path))
    assert url == "postgresql+psycopg2://u:p@db:5432/x"
    with pytest.raises(DatabaseNotConfigured, match="DATABASE_URL is not set"):
        resolve_url(DatabaseSettings(HOTSPOTS_VAR_DIR=tmp_path))


def test_migrations_from_empty_are_recorded_and_idempotent(empty_engine):
    applied = migrate(empty_engine)
    assert [m.name for m in applied] == [m.name for m in migrate_mod.discover()]
    assert migrate(empty_engine) == [] and pending(empty_engine) == []
    with empty_engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_migrations ORDER BY 1")).scalars().all()
        tables = set(conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
        gist = set(conn.execute(sa.text(
            "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING gist%'")).scalars())
    assert versions == [m.version for m in migrate_mod.discover()]
    assert {"divisions", "neighborhoods", "incidents", "calls", "offense_counts", "call_counts",
            "ingest_rejects", "ingest_batches", "model_runs"} <= tables
    assert {"divisions", "neighborhoods", "incidents", "calls"} <= gist


def test_an_edited_migration_is_refused(empty_engine, tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "001_one.sql").write_text("CREATE TABLE one (v int);")
    migrate(empty_engine, d)
    (d / "001_one.sql").write_text("CREATE TABLE one (v bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(empty_engine, d)


def test_migrations_are_package_data_and_a_missing_folder_is_named(tmp_path):
    # The default folder is the package's own (importlib.resources), not a path beside a checkout.
    assert str(migrate_mod.MIGRATIONS_DIR).endswith("geo/sql/migrations")
    assert [m.path.name for m in migrate_mod.discover()][0] == "001_core.sql"
    with pytest.raises(MigrationError, match=f"no migrations folder at {tmp_path / 'nope'}"):
        migrate_mod.discover(tmp_path / "nope")
    assert migrate_mod.discover(str(tmp_path)) == []


def test_a_failing_migration_applies_nothing(empty_engine, tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "001_ok.sql").write_text("CREATE TABLE ok (v int);")
    (d / "002_broken.sql").write_text("CREATE TABLE broken (v nosuchtype);")
    with pytest.raises(MigrationError, match="002_broken.sql failed"):
        migrate(empty_engine, d)
    with empty_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('public.ok')")).scalar() is None


def test_models_match_the_migrated_schema(engine):
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        db_cols = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(db_cols) == {c.name for c in table.columns}, table.name
        for col in table.columns:
            got = db_cols[col.name]
            assert got["nullable"] == col.nullable, f"{table.name}.{col.name} nullability"
            if isinstance(col.type, Geometry):
                with engine.connect() as conn:
                    gtype, srid = conn.execute(sa.text(
                        "SELECT type, srid FROM geometry_columns WHERE f_table_name = :t AND f_geometry_column = :c"),
                        {"t": table.name, "c": col.name}).one()
                assert (gtype, srid) == (col.type.geometry_type, 4326)
            else:
                assert got["type"]._type_affinity == col.type._type_affinity, f"{table.name}.{col.name} type"
        pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert pk == [c.name for c in table.primary_key.columns], table.name


def test_var_and_data_dirs_are_the_checkouts_from_any_directory(tmp_path, monkeypatch):
    """Run from elsewhere, the CLI finds the checkout's var/ (never a second, empty cluster)."""
    from geo.settings import DataSettings, checkout_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOTSPOTS_VAR_DIR", raising=False)
    monkeypatch.delenv("HOTSPOTS_DATA_DIR", raising=False)
    root = Path(__file__).resolve().parent.parent
    assert checkout_root() == root
    assert DatabaseSettings().embedded_dir == root / "var" / "pg"
    shared = root.parent / "shared" / "cmpd"
    assert DataSettings().data_dir == (shared if (shared / "README.md").is_file() else root / "data" / "shapes")
    monkeypatch.setenv("HOTSPOTS_VAR_DIR", str(tmp_path / "v"))
    assert DatabaseSettings().embedded_dir == tmp_path / "v" / "pg"
