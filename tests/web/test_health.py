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
