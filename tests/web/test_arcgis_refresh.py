"""After `hotspots sync` brings new calls, they are labelled by the current model, the saved hot
spot runs are recomputed, and the map's tiles change (a copy of the served database)."""

from __future__ import annotations

import sqlalchemy as sa

from geo.catalog import data_versions
from geo.db import make_engine
from geo.ingest.arcgis import FeedClient, make_feed, refresh_after_sync, sync_feed
from geo.settings import ArcGISSettings
from tests.ingest.fake_arcgis import FakeArcGIS, FakeLayer, epoch_ms

TZ = "America/New_York"


def call(oid: int, received: str, call_type: str, lon: float, lat: float) -> dict:
    """A record of a calls-for-service layer in the project's call layout (dates in epoch ms)."""
    return {"OBJECTID": oid, "CALL_ID": f"FEED-{oid:05d}", "DATE_RECEIVED": epoch_ms(received), "CALL_TYPE": call_type,
            "PRIORITY": 1, "ADDRESS": "600 E TRADE ST", "CITY": "CHARLOTTE", "ZIP": "28202", "LATITUDE": lat,
            "LONGITUDE": lon, "CMPD_PATROL_DIVISION": None, "INCIDENT_REPORT_ID": None}


def test_new_calls_are_labelled_and_hot_spots_recomputed(writable_url):
    engine = make_engine(writable_url)
    try:
        with engine.connect() as conn:
            call_type = conn.execute(sa.text("SELECT call_type FROM calls GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar()
            points = conn.execute(sa.text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM neighborhoods ORDER BY npa_id LIMIT 3) s")).all()
            model = conn.execute(sa.text("SELECT model_version FROM model_runs WHERE is_current")).scalar()
            runs_before = conn.execute(sa.text("SELECT max(run_id) FROM analysis_runs")).scalar()
        before = data_versions(engine)
        layer = FakeLayer([call(i + 1, f"2021-12-31 0{i}:30:00", call_type, *points[i]) for i in range(3)],
                          [tuple(p) for p in points])
        with FakeArcGIS(layer) as server:
            feed = make_feed("calls", ArcGISSettings(), url=server.layer_url)
            result = sync_feed(engine, feed, FeedClient(retries=0, timeout_s=10))
        assert (result.inserted, result.updated, sum(result.rejected.values())) == (3, 0, 0)
        assert layer.requests[0]["orderByFields"] == "DATE_RECEIVED ASC,OBJECTID ASC"

        refresh = refresh_after_sync(engine, [result], TZ)
        assert (refresh.labelled, refresh.model_version) == (3, model)
        assert set(refresh.hotspot_runs) == {"calls_npa_hotspots", "calls_grid_hotspots"}
        with engine.connect() as conn:
            labelled = conn.execute(sa.text(
                "SELECT count(*) FROM calls WHERE call_id LIKE 'FEED-%' AND model_version = :m"
                " AND p_violent BETWEEN 0 AND 1 AND label IS NOT NULL"), {"m": model}).scalar()
            runs = conn.execute(sa.text(
                "SELECT kind, (params->>'calls_version')::bigint, (params->>'cell_ft')::float FROM analysis_runs"
                " WHERE run_id > :r ORDER BY run_id"), {"r": runs_before}).all()
            unlabelled = conn.execute(sa.text("SELECT count(*) FROM calls WHERE model_version IS NULL")).scalar()
        after = data_versions(engine)
        assert labelled == 3 and unlabelled == 0
        # The new runs are of the data as it is now, on the grid the map already showed (2000 ft).
        assert [(k, v) for k, v, _ in runs] == [("calls_npa_hotspots", after["calls"]), ("calls_grid_hotspots", after["calls"])]
        assert runs[1][2] == 2000.0
        # Tiles and cached map data are keyed on these versions.
        assert after["calls"] > before["calls"]
        assert after["hotspot_cells"] > before["hotspot_cells"] and after["hotspot_npas"] > before["hotspot_npas"]
        # Nothing new: nothing is relabelled or recomputed.
        with FakeArcGIS(layer) as server:
            again = sync_feed(engine, make_feed("calls", ArcGISSettings(), url=server.layer_url), FeedClient(retries=0))
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
        assert refresh_after_sync(engine, [again], TZ).hotspot_runs == {}
    finally:
        engine.dispose()
