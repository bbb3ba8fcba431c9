"""The saved emerging hot spot run served: OGC collection and items, a vector tile, and the map's layer in Chromium."""

from __future__ import annotations

import gzip
from datetime import date

import mapbox_vector_tile
import pytest
import sqlalchemy as sa

from geo import tiles as gt
from geo.emerging import PATTERNS, npa_emerging, save_npa_emerging
from geo.filters import Filter
from tests.web.conftest import YEAR, LiveServer
from tests.web.test_map_page import NPAS, Page
from web import create_app


@pytest.fixture
def saved(writable_url):
    """The served database with the emerging hot spots of the synthetic year saved: (app, run, computed areas)."""
    engine = sa.create_engine(writable_url)
    run = npa_emerging(engine, Filter.local_days(date(YEAR, 1, 1), date(YEAR + 1, 1, 1)), source="labelled")
    run_id = save_npa_emerging(engine, run)
    engine.dispose()
    return create_app({"DATABASE_URL": writable_url, "TESTING": True}), run_id, run.areas.set_index("npa_id")


def test_the_ogc_collection_and_a_tile_serve_the_saved_run(saved):
    app, run_id, areas = saved
    client = app.test_client()
    coll = client.get("/ogc/collections/emerging_npas").get_json()
    assert coll["run"] == run_id
    items = client.get("/ogc/collections/emerging_npas/items?f=json&limit=1000").get_json()
    assert items["numberMatched"] == len(items["features"]) == NPAS
    by_id = {f["id"]: f["properties"] for f in items["features"]}
    for npa_id, p in by_id.items():
        assert p["pattern"] == areas.loc[npa_id, "pattern"]
        assert p["trend_z"] == pytest.approx(areas.loc[npa_id, "trend_z"], abs=1e-12)
        assert p["hot_share"] == pytest.approx(areas.loc[npa_id, "hot_steps"] / 12)
        assert (p["steps"], p["time_step"], p["source"], p["first_step"], p["last_step"]) == (
            12, "month", "labelled", f"{YEAR}-01", f"{YEAR}-12")
    hot = [i for i, p in by_id.items() if p["pattern"].endswith("Hot Spot")]
    assert hot, "the synthetic year has violent clusters: some NPA must come out a hot spot pattern"
    one = client.get(f"/ogc/collections/emerging_npas/items?f=json&pattern={by_id[hot[0]]['pattern'].replace(' ', '%20')}"
                     ).get_json()
    assert {f["properties"]["pattern"] for f in one["features"]} == {by_id[hot[0]]["pattern"]}
    # A tile over central Charlotte carries the same patterns.
    z = 11
    x, y = gt.lonlat_to_tile(-80.843, 35.227, z)
    r = client.get(f"/tiles/emerging_npas/{z}/{x}/{y}.pbf")
    assert r.status_code == 200, r.data[:300]
    body = gzip.decompress(r.data) if r.headers.get("Content-Encoding") == "gzip" else r.data
    feats = mapbox_vector_tile.decode(body)["emerging_npas"]["features"]
    assert len(feats) > 10
    for f in feats:
        assert f["properties"]["pattern"] == areas.loc[f["properties"]["npa_id"], "pattern"]
        assert f["properties"]["source"] == "labelled"
    assert set(f["properties"]["pattern"] for f in feats) <= set(PATTERNS)
    # A run that is not saved is the shared 404 naming run.
    missing = client.get(f"/tiles/emerging_npas/{z}/{x}/{y}.pbf?run={run_id + 1000}")
    assert missing.status_code == 404 and missing.get_json()["parameter"] == "run"


def test_the_map_draws_the_layer_styled_by_pattern(saved, browser):  # noqa: F811
    app, run_id, areas = saved
    with LiveServer(app) as server:
        page = Page(browser, server.url, app)
        try:
            page.open("?emerging=1")
            page.page.wait_for_selector("body[data-emerging-loaded]", timeout=60_000)
            p = page.page
            assert p.get_attribute("body", "data-emerging-loaded") == str(NPAS)
            assert p.locator(".leaflet-emerging-pane path.emerging-npa").count() == NPAS
            legend = p.locator("#emerging-legend .emerging-pattern")
            assert legend.count() == 17
            assert [legend.nth(i).get_attribute("data-pattern") for i in range(17)] == list(PATTERNS)
            counts = areas["pattern"].value_counts()
            for i, name in enumerate(PATTERNS):
                assert legend.nth(i).inner_text().strip() == f"{name} ({counts.get(name, 0)})"
            # Hot patterns are drawn in reds: as many persistent-red fills as the run has persistent hot spots.
            persistent = int(counts.get("Persistent Hot Spot", 0))
            assert p.locator('.leaflet-emerging-pane path[fill="#cb181d"]').count() == persistent
            assert p.locator('.leaflet-emerging-pane path[fill="#bdbdbd"]').count() == int(counts.get(
                "No Pattern Detected", 0))
            assert "left out: none" in p.locator("#emerging-about").inner_text()
            # Unticked, the layer leaves the map and the URL.
            p.locator("#emerging-toggle").uncheck()
            assert p.locator(".leaflet-emerging-pane path").count() == 0
            assert "emerging" not in page.url_params()
            assert page.errors == []
        finally:
            page.page.close()
