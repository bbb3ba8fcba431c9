"""docker-compose.yml and the Dockerfile, checked without Docker (not available on these machines):
the services the issue asks for, named volumes, every variable documented, every command real."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import click
import pytest
import yaml

from geo.cli import main as cli

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _commands(service: dict) -> list[list[str]]:
    """The programs a service runs: its command, with `sh -c "a && exec b"` split into a and b."""
    cmd = service.get("command")
    if cmd is None:
        return []
    if cmd[:2] == ["sh", "-c"]:
        parts = [shlex.split(p) for p in cmd[2].split("&&")]
        return [p[1:] if p and p[0] == "exec" else p for p in parts]
    return [cmd]


def _check_hotspots(args: list[str]) -> None:
    """Resolve `hotspots a b --opt v` through the click group and parse its options for real."""
    group: click.Command = cli
    ctx = click.Context(cli, info_name="hotspots")
    rest = list(args)
    while isinstance(group, click.Group) and rest and not rest[0].startswith("-"):
        sub = group.get_command(ctx, rest[0])
        assert sub is not None, f"hotspots has no command {' '.join(args)!r}"
        group, rest = sub, rest[1:]
        ctx = click.Context(group, info_name=group.name, parent=ctx)
    group.make_context(group.name, rest, parent=ctx)   # raises on unknown options or bad values


def test_the_services_the_deployment_needs():
    assert {"db", "app", "sync", "dask-scheduler", "dask-worker"} <= set(SERVICES)
    assert SERVICES["db"]["image"].startswith("postgis/postgis:")
    assert SERVICES["dask-scheduler"]["profiles"] == ["dask"] and SERVICES["dask-worker"]["profiles"] == ["dask"]
    assert "gunicorn" in SERVICES["app"]["command"][2] and "web:create_app()" in SERVICES["app"]["command"][2]
    assert SERVICES["sync"]["command"][:2] == ["hotspots", "sync"]
    for name in ("app", "sync", "dask-worker"):
        env = SERVICES[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in env["DATABASE_URL"], name


def test_backups_are_scheduled_into_a_named_volume():
    backup = SERVICES["backup"]
    assert backup["command"][:3] == ["hotspots", "db", "backup"] and "--every" in backup["command"]
    out = backup["command"][backup["command"].index("--out") + 1]
    assert f"backups:{out}" in backup["volumes"]
    # The model files the database points at are in appvar, mounted where the app writes them.
    assert "appvar:/var/lib/hotspots" in backup["volumes"]
    assert backup["environment"]["HOTSPOTS_VAR_DIR"] == "/var/lib/hotspots"
    assert "postgresql-client" in (REPO / "Dockerfile").read_text()


def test_data_lives_in_named_volumes():
    declared = set(COMPOSE["volumes"])
    assert {"pgdata", "appvar"} <= declared
    used = set()
    for service in SERVICES.values():
        for v in service.get("volumes", []):
            source = v.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                used.add(source)
    assert used == declared
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["db"]["volumes"]


def test_every_command_exists_in_the_project():
    bin_dir = Path(sys.executable).parent
    seen = set()
    for name, service in SERVICES.items():
        for args in _commands(service):
            program = args[0]
            seen.add(program)
            if program == "hotspots":
                _check_hotspots(args[1:])
            elif program == "gunicorn":
                assert (bin_dir / "gunicorn").exists()
                module, _, factory = args[-1].partition(":")
                assert factory == "create_app()"
                mod = __import__(module)
                assert callable(getattr(mod, "create_app"))
            elif program == "dask":
                assert (bin_dir / "dask").exists() or shutil.which("dask"), "dask CLI not installed"
                assert args[1] in ("scheduler", "worker"), name
            else:
                pytest.fail(f"service {name} runs {program!r}, which the project does not provide")
    assert {"hotspots", "gunicorn", "dask"} <= seen


def test_every_variable_is_documented():
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    readme = (REPO / "README.md").read_text()
    undocumented = sorted(v for v in used if f"`{v}`" not in readme)
    assert not undocumented, f"not in README.md: {undocumented}"


def test_health_check_and_image():
    from web import create_app

    app = create_app({"DATABASE_URL": "postgresql+psycopg2://x@127.0.0.1:1/x"})
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert "/health" in rules and "/health" in " ".join(SERVICES["app"]["healthcheck"]["test"])
    dockerfile = (REPO / "Dockerfile").read_text()
    for part in ("geo", "web"):
        assert re.search(rf"^COPY {part} \./{part}$", dockerfile, re.M), part
    # A regular (non-editable) install: the package, SQL included, is complete without the checkout.
    assert re.search(r"^RUN pip install --no-cache-dir \. ", dockerfile, re.M)
    assert "pip install -e" not in dockerfile and "COPY sql" not in dockerfile
    assert "web:create_app()" in dockerfile
