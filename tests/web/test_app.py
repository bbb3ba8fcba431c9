"""App-wide behaviour: JSON errors, the shared filter parser, data versions bumped by writes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from geo.catalog import data_versions
from geo.filters import ParameterError, parse_bbox, parse_datetime_param, parse_filter


def test_unknown_route_is_a_json_404(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404
    assert r.get_json()["code"] == "NotFound"


@pytest.mark.parametrize("args, parameter", [
    ({"bbox": "1,2,3"}, "bbox"),
    ({"bbox": "-80,36,-81,35"}, "bbox"),
    ({"bbox": "-80,95,-79,96"}, "bbox"),
    ({"bbox": "a,b,c,d"}, "bbox"),
    ({"start": "2021-13-01"}, "start"),
    ({"start": "2021-02-01", "end": "2021-01-01"}, "start"),
    ({"datetime": "2021-01-01/2021-02-01/2021-03-01"}, "datetime"),
    ({"datetime": "../.."}, "datetime"),
    ({"preset": "9d"}, "preset"),
    ({"division": "Atlantis"}, "division"),
    ({"category": "jaywalking"}, "category"),
    ({"violent": "maybe"}, "violent"),
    ({"min_p": "1.5"}, "min_p"),
    ({"min_p": "nan"}, "min_p"),
])
def test_bad_filters_name_the_parameter(args, parameter):
    with pytest.raises(ParameterError) as err:
        parse_filter(args, divisions={"01": "01", "central": "01"})
    assert err.value.parameter == parameter


def test_filter_sql_binds_every_value():
    f = parse_filter({"start": "2021-03-01", "end": "2021-03-31", "division": "Central", "category": "violent_crime",
                      "violent": "true", "min_p": "0.4", "bbox": "-81,35,-80,36"},
                     divisions={"01": "01", "central": "01"})
    sql, params = f.where("calls", "c")
    assert "Central" not in sql and "0.4" not in sql and "violent_crime" not in sql
    assert params["f_division"] == "01" and params["f_min_p"] == 0.4 and params["f_category"] == "violent_crime"
    # An inclusive end date covers its whole local day: [Mar 1 00:00 EST, Apr 1 00:00 EDT).
    assert params["f_start"].astimezone(timezone.utc) == datetime(2021, 3, 1, 5, tzinfo=timezone.utc)
    assert params["f_end"].astimezone(timezone.utc) == datetime(2021, 4, 1, 4, tzinfo=timezone.utc)
    assert "c.label" in sql and "ST_Intersects(c.geom" in sql


def test_presets_anchor_on_the_latest_data():
    from datetime import date

    f = parse_filter({"preset": "28d"}, as_of=lambda: date(2021, 12, 31))
    assert f.local_period() == (date(2021, 12, 4), date(2022, 1, 1))
    f = parse_filter({"preset": "ytd", "end": "2021-06-30"})
    assert f.local_period() == (date(2021, 1, 1), date(2021, 7, 1))


def test_ogc_datetime_forms():
    lo, hi = parse_datetime_param("2021-05-01T12:00:00Z")
    assert (hi - lo).total_seconds() < 1e-3
    lo, hi = parse_datetime_param("../2021-05-01T00:00:00Z")
    assert lo is None and hi > datetime(2021, 5, 1, tzinfo=timezone.utc)
    lo, hi = parse_datetime_param("2021-05-01/..")
    assert hi is None and lo.date().isoformat() == "2021-05-01"
    assert parse_bbox("-81,35,0,-80,36,100") == (-81, 35, -80, 36)


def test_writes_bump_the_layer_version(engine):
    before = data_versions(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM calls WHERE false"))
    after = data_versions(engine)
    assert after["calls"] == before["calls"] + 1 and after["incidents"] == before["incidents"]


def test_server_errors_hide_the_trace(web_url):
    from web import create_app

    app = create_app({"DATABASE_URL": web_url})

    @app.get("/_boom")
    def _boom():
        raise RuntimeError("secret internals")

    r = app.test_client().get("/_boom")
    assert r.status_code == 500
    assert "secret" not in r.get_data(as_text=True) and "Traceback" not in r.get_data(as_text=True)
    assert r.get_json()["code"] == "ServerError"


def test_slow_queries_are_cut_by_the_statement_timeout(web_url):
    from web import create_app, database

    app = create_app({"DATABASE_URL": web_url, "REQUEST_TIMEOUT_MS": 10})
    with app.app_context():
        with database.engine().connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "10ms"
            with pytest.raises(sa.exc.OperationalError) as err:
                conn.exec_driver_sql("SELECT pg_sleep(0.2)")
            assert err.value.orig.pgcode == "57014"
    client = app.test_client()
    for _ in range(2):   # the pool stays usable after a cancelled statement
        r = client.get("/api/areas/npa?preset=365d")
        assert r.status_code == 503
        body = r.get_json()
        assert "10 ms limit" in body["description"] and "Traceback" not in r.get_data(as_text=True)
        assert r.headers["Retry-After"] == "5"
    ok = create_app({"DATABASE_URL": web_url}).test_client().get("/api/areas/npa?preset=365d")
    assert ok.status_code == 200 and len(ok.get_json()["features"]) == 462


class _DriverError:
    """What psycopg2 puts on a DBAPIError's `orig`: the SQLSTATE and the server's message."""

    def __init__(self, pgcode: str, pgerror: str):
        self.pgcode, self.pgerror = pgcode, pgerror

    def __str__(self) -> str:
        return self.pgerror


@pytest.mark.parametrize("pgcode, message, cancelled", [
    ("57014", "canceling statement due to statement timeout", True),
    ("57014", "canceling statement due to user request", True),
    # Seen in CI: the timeout landed inside GEOS, and PostGIS reported it as an internal error.
    ("XX000", "lwgeom_pointonsurface: GEOS Error: InterruptedException: Interrupted!", True),
    ("XX000", "lwgeom_intersection_prec: GEOS Error: TopologyException: side location conflict", False),
    ("22023", "invalid parameter: Interrupted", False),
])
def test_a_cancel_inside_postgis_is_a_timeout_not_a_server_error(web_url, pgcode, message, cancelled):
    from web import create_app

    app = create_app({"DATABASE_URL": web_url, "REQUEST_TIMEOUT_MS": 1234})

    @app.get("/_cancelled")
    def _cancelled():
        raise sa.exc.InternalError("SELECT ...", {}, _DriverError(pgcode, message))

    r = app.test_client().get("/_cancelled")
    if cancelled:
        assert (r.status_code, r.headers["Retry-After"]) == (503, "5")
        assert "1234 ms limit" in r.get_json()["description"]
    else:
        assert r.status_code == 500 and r.get_json()["code"] == "ServerError"
        assert message not in r.get_data(as_text=True)


def test_a_window_that_cuts_a_day_holds_a_date_only_row_only_for_whole_days():
    """OGC datetime of a few hours: a row known by its date alone is not placed at midnight."""
    from datetime import date, datetime, timezone

    from geo.filters import Filter

    tz_noon = datetime(2021, 5, 1, 16, tzinfo=timezone.utc)          # 12:00 EDT on 1 May
    f = Filter(start=tz_noon, end=datetime(2021, 5, 3, 16, tzinfo=timezone.utc))
    assert not f.aligned_to_days() and f.whole_days() == (date(2021, 5, 2), date(2021, 5, 3))
    where, params = f.where("calls")
    assert "received_at_precision <> 'date'" in where and "received_at_precision = 'date'" in where
    assert params["f_day_start"].isoformat() == "2021-05-02T00:00:00-04:00"
    assert params["f_day_end"].isoformat() == "2021-05-03T00:00:00-04:00"
    whole = Filter(start=datetime(2021, 5, 1, 4, tzinfo=timezone.utc), end=datetime(2021, 5, 3, 4, tzinfo=timezone.utc))
    assert whole.aligned_to_days() and "precision" not in whole.where("incidents")[0]
