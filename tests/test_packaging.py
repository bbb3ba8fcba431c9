"""A wheel built from the source tree is complete: it holds every migration, tile template, web
template and static file, and, installed into a fresh venv with no checkout on its path, it
migrates an empty database and serves a vector tile, the map page and its script."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from geo import tiles as gt
from geo.ingest.reference import DataDir
from geo.migrate import discover

REPO = Path(__file__).resolve().parent.parent
# Uptown Charlotte at z12: a tile holding some of the patrol divisions, not all of them.
Z = 12
X, Y = gt.lonlat_to_tile(-80.843, 35.227, Z)


def _files(root: Path, folder: str) -> set[str]:
    """Files under REPO/folder as wheel paths (forward slashes), compiled bytecode left out."""
    return {p.relative_to(root).as_posix() for p in (root / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _docker_context(dest: Path) -> None:
    """Copy what the Dockerfile copies into the image, so this wheel is the one the image installs."""
    dest.mkdir()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        for name in line.split()[1:-1]:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dest / name)


def _clean_env() -> dict[str, str]:
    """The environment without anything that would put this checkout or the test venv on the path."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("HOTSPOTS_")}


def _run(what: str, args: list, cwd: Path, timeout: int = 300) -> str:
    """Run a command in the clean environment; its output, or a failure naming `what` with stderr."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from the Docker build context (build isolation: setuptools from PyPI)."""
    root = tmp_path_factory.mktemp("wheel")
    _docker_context(root / "src")
    _run("pip wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                       "-q", "-w", root / "dist", root / "src"], cwd=root)
    (built,) = (root / "dist").glob("cmpd_hotspots-*.whl")
    return built


def test_the_wheel_holds_every_sql_file_template_and_static_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sql = _files(REPO, "geo/sql")
    migrations = {n for n in sql if n.startswith("geo/sql/migrations/")}
    # Every migration discover() finds in the source tree, so a new migration is covered by itself.
    assert {f"geo/sql/migrations/{m.name}.sql" for m in discover()} == migrations
    assert {n for n in names if n.startswith("geo/sql/migrations/")} == migrations
    tiles = {n for n in sql if n.startswith("geo/sql/tiles/")}
    assert {n for n in names if n.startswith("geo/sql/tiles/")} == tiles
    assert {"geo/sql/tiles/features.sql", "geo/sql/tiles/points_grid.sql"} <= names
    for folder in ("web/templates", "web/static"):
        assert _files(REPO, folder) and _files(REPO, folder) <= names, folder
    # More generally: nothing of the two packages is left behind (modules, CSV and TOML data).
    missing = sorted((_files(REPO, "geo") | _files(REPO, "web")) - names)
    assert missing == []


def test_an_installed_wheel_migrates_and_serves_a_tile(wheel, empty_engine, data_dir, tmp_path):
    venv = tmp_path / "venv"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _run("python -m venv", [sys.executable, "-m", "venv", venv], cwd=outside)
    python = venv / "bin" / "python"
    # Install before the dependencies are visible, so pip sees (and touches) only the new venv.
    _run("pip install WHEEL", [python, "-m", "pip", "install", "--no-deps", "--no-index",
                               "--disable-pip-version-check", "-q", wheel], cwd=outside)
    # The dependencies come from this interpreter's site-packages (nothing is downloaded). A path line
    # in a .pth file adds the folder without running the .pth files inside it, so the editable
    # install of the checkout that folder may hold stays inactive.
    new_site = _run("sysconfig", [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    cwd=outside).strip()
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(new_site) / "project-dependencies.pth").write_text("".join(f"{d}\n" for d in deps))

    url = empty_engine.url.render_as_string(hide_password=False)
    shapefile = DataDir(data_dir).path("divisions")
    (outside / "serve_one_tile.py").write_text(CHILD)
    printed = _run("serve_one_tile.py", [python, "serve_one_tile.py", url, shapefile, Z, X, Y], cwd=outside)
    out = json.loads(printed.splitlines()[-1])

    # What ran was the installed package, not this checkout.
    prefix = str(venv.resolve())
    for key in ("geo", "web", "migrations_dir", "tiles_dir"):
        assert out[key].startswith(prefix + os.sep), (key, out[key])
        assert not out[key].startswith(str(REPO) + os.sep), (key, out[key])
    # Every migration of the source tree was applied from the wheel, and /health reports the last one.
    names = [m.name for m in discover()]
    assert out["applied"] == names
    assert out["health"] == {"status": "ok", "schema_version": max(m.version for m in discover())}
    with empty_engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT name FROM schema_migrations ORDER BY version")).scalars().all()
        everything = conn.execute(sa.text("SELECT count(*) FROM divisions")).scalar()
        # The divisions the tile must hold: those meeting the tile's envelope plus its 64-unit buffer.
        expected = sorted(conn.execute(sa.text(
            "SELECT division_id FROM divisions WHERE ST_Intersects(ST_Transform(geom, 3857),"
            " ST_TileEnvelope(:z, :x, :y, margin => :m))"), {"z": Z, "x": X, "y": Y, "m": gt.BUFFER / gt.EXTENT}
        ).scalars())
    assert recorded == names
    assert out["loaded"] == everything and everything >= 10
    assert 0 < len(expected) < everything
    assert out["tile_status"] == 200 and out["tile_type"] == "application/vnd.mapbox-vector-tile"
    assert out["layers"] == {"divisions": expected}
    # The map page's template and its script came out of the wheel too.
    assert out["page_status"] == 200 and out["page_title"] == "CMPD hot spots"
    assert out["script_status"] == 200
    assert out["script_sha256"] == hashlib.sha256((REPO / "web/static/map.js").read_bytes()).hexdigest()


# Run by the new venv's python from a folder outside the checkout: migrate, load, serve.
CHILD = r'''
import hashlib, json, re, sys
from pathlib import Path

import mapbox_vector_tile

import geo, web
from geo import tiles
from geo.db import make_engine
from geo.ingest.shapes import load_divisions
from geo.migrate import MIGRATIONS_DIR, migrate
from web import create_app

url, shapefile = sys.argv[1], Path(sys.argv[2])
z, x, y = (int(v) for v in sys.argv[3:6])
engine = make_engine(url)
applied = [m.name for m in migrate(engine)]
report = load_divisions(engine, shapefile)
client = create_app({"DATABASE_URL": url, "TESTING": True}).test_client()
tile = client.get(f"/tiles/divisions/{z}/{x}/{y}.pbf")   # no Accept-Encoding: an uncompressed body
layers = mapbox_vector_tile.decode(tile.data)
page = client.get("/")
script = client.get("/static/map.js")
title = re.search(r"<title>(.*?)</title>", page.get_data(as_text=True))
print(json.dumps({
    "geo": str(Path(geo.__file__).resolve()),
    "web": str(Path(web.__file__).resolve()),
    "migrations_dir": str(Path(str(MIGRATIONS_DIR)).resolve()),
    "tiles_dir": str(Path(str(tiles.SQL_DIR)).resolve()),
    "applied": applied,
    "loaded": report.inserted + report.updated + report.unchanged,
    "health": client.get("/health").get_json(),
    "tile_status": tile.status_code,
    "tile_type": tile.mimetype,
    "layers": {name: sorted(str(f["properties"]["division_id"]) for f in layer["features"])
               for name, layer in layers.items()},
    "page_status": page.status_code,
    "page_title": title.group(1) if title else None,
    "script_status": script.status_code,
    "script_sha256": hashlib.sha256(script.data).hexdigest(),
}))
'''
