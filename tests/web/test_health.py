"""The app factory and the health endpoint against the real test database."""

from geo.migrate import discover
from web import create_app


def test_health_reports_schema_version(engine):
    app = create_app({"DATABASE_URL": engine.url.render_as_string(hide_password=False)})
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "schema_version": max(m.version for m in discover())}


def test_health_reports_an_outage_without_details():
    app = create_app({"DATABASE_URL": "postgresql+psycopg2://nobody:secret@127.0.0.1:1/none"})
    response = app.test_client().get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and "secret" not in response.get_data(as_text=True)


def test_two_servers_started_as_one_user_share_no_control_socket(engine, tmp_path):
    """`hotspots serve` runs gunicorn without its per-user control socket (~/.gunicorn/gunicorn.ctl),
    so stopping one server can never delete another's; both answer, and one keeps answering alone."""
    import urllib.request
    from pathlib import Path

    from tests.servers import running_server, serve_argv

    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTSPOTS_THREADS": "2",
           "HOME": str(tmp_path)}   # where gunicorn would put its default control socket
    with running_server(serve_argv(workers=1), env) as (first, proc):
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--no-control-socket" in cmdline and any(arg.endswith(b"gunicorn") for arg in cmdline)
        with running_server(serve_argv(workers=1), env) as (second, _):
            for base in (first, second):
                with urllib.request.urlopen(base + "/health", timeout=10) as r:
                    assert r.status == 200
        with urllib.request.urlopen(first + "/health", timeout=10) as r:   # the other one stopped
            assert r.status == 200
    assert not (tmp_path / ".gunicorn").exists()
