"""An app built with another TIMEZONE (create_app's test_config) reads local days, presets and the
7x24 hours of its requests in that zone; the default app and the library outside requests keep theirs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geo.db import make_engine
from geo.settings import locale_settings
from web import create_app

PANEL = "/api/panel/division/Central?start=2021-04-01&end=2021-09-30&officers=200"
IN_DAYS = ("division_id = '01' AND received_at >= (CAST('2021-04-01' AS timestamp) AT TIME ZONE :tz)"
           " AND received_at < (CAST('2021-10-01' AS timestamp) AT TIME ZONE :tz)")


def _sql(url: str, tz: str) -> tuple[int, int]:
    """Calls of Central in the local days 1 April - 30 September, and those on Fridays at 22h, in `tz`."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            calls = conn.execute(sa.text(f"SELECT count(*) FROM calls WHERE {IN_DAYS}"), {"tz": tz}).scalar()
            friday_22 = conn.execute(sa.text(
                f"SELECT count(*) FROM calls WHERE {IN_DAYS} AND received_at_precision <> 'date'"
                " AND extract(isodow FROM received_at AT TIME ZONE :tz) = 5"
                " AND extract(hour FROM received_at AT TIME ZONE :tz) = 22"), {"tz": tz}).scalar()
    finally:
        engine.dispose()
    return calls, friday_22


def test_an_app_of_another_time_zone_counts_its_own_local_days_and_hours(web_url):
    home = create_app({"DATABASE_URL": web_url, "TESTING": True})
    tokyo = create_app({"DATABASE_URL": web_url, "TESTING": True, "TIMEZONE": "Asia/Tokyo"})
    assert home.config["TIMEZONE"] == "America/New_York"
    results = {}
    for tz, app in (("America/New_York", home), ("Asia/Tokyo", tokyo)):
        client = app.test_client()
        assert client.get("/api/config").get_json()["timezone"] == tz
        d = client.get(PANEL).get_json()
        calls, friday_22 = _sql(web_url, tz)
        assert d["totals"]["calls"] == calls
        assert d["hour_weekday"]["counts"][4][22] == friday_22
        results[tz] = (calls, friday_22, d["hour_weekday"]["counts"])
        # The zone is the request's only: outside it the library reads the environment's.
        assert locale_settings().timezone == "America/New_York"
    # 13 hours apart: other day boundaries, other hours of the week.
    assert results["America/New_York"][0] != results["Asia/Tokyo"][0]
    assert results["America/New_York"][2] != results["Asia/Tokyo"][2]


def test_an_unknown_time_zone_stops_the_app_from_being_built(web_url):
    with pytest.raises(ValueError, match="TIMEZONE: time zone 'Mars/Olympus' is unknown"):
        create_app({"DATABASE_URL": web_url, "TIMEZONE": "Mars/Olympus"})
