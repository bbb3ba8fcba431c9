"""The map's Gi* on violent calls per 1,000 residents: the same numbers as `hotspots hotspots --per-1000`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.web.conftest import YEAR


def test_rates_on_the_map_equal_the_clis(client, web_url, tmp_path):
    import geopandas as gpd

    from geo.cli import main

    r = client.get(f"/api/hotspots/npa?start={YEAR}-03-01&end={YEAR}-08-31&measure=violent_per_1000")
    assert r.status_code == 200, r.data[:300]
    body = r.get_json()
    assert body["measure"] == "violent_per_1000" and body["value_unit"] == "per_1000_residents"
    assert "labelled" in body["source"]
    served = {f["id"]: f["properties"] for f in body["features"]}
    assert len(served) == 462

    out = tmp_path / "rates.geojson"
    cli = CliRunner().invoke(main, ["hotspots", "--source", "labelled", "--from", f"{YEAR}-03-01", "--to",
                                    f"{YEAR}-08-31", "--per-1000", "--permutations", "0", "--out", str(out)],
                             env={"DATABASE_URL": web_url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")},
                             catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    expected = gpd.read_file(out).set_index("npa_id")
    engine = sa.create_engine(web_url)
    with engine.connect() as conn:
        population = dict(conn.execute(sa.text("SELECT npa_id, population FROM neighborhoods")).all())
    engine.dispose()
    empty = [n for n, p in population.items() if not p]
    assert empty, "the NPAs include some without residents (parks, the airport)"
    for npa_id, p in served.items():
        if not population[npa_id]:   # no rate, never infinity: null value and Gi*, left out
            assert p["value"] is None and p["gi_z"] is None and p["hotspot_class"] == "Left out: no residents"
            continue
        cli_row = expected.loc[npa_id]
        assert p["value"] == pytest.approx(cli_row["value"], rel=1e-12)
        assert p["gi_z"] == pytest.approx(cli_row["gi_z"], abs=1e-4)
        assert p["hotspot_class"] == cli_row["hotspot_class"]
    # The rate is the count the panel's counts measure gives, per 1,000 residents.
    counts = {f["id"]: f["properties"]["value"]
              for f in client.get(f"/api/hotspots/npa?start={YEAR}-03-01&end={YEAR}-08-31&measure=violent")
              .get_json()["features"]}
    some = [n for n in served if population[n] and counts[n]]
    assert len(some) > 100
    assert all(math.isclose(served[n]["value"], counts[n] * 1000 / population[n], rel_tol=1e-12) for n in some)
    assert np.isfinite([served[n]["value"] for n in some]).all()


def test_an_unknown_measure_is_named(client):
    r = client.get("/api/hotspots/npa?measure=violent_per_mile")
    assert r.status_code == 400
    body = r.get_json()
    assert body["parameter"] == "measure" and "violent_per_1000" in body["description"]


def test_the_openapi_document_lists_the_rate_measures(client):
    doc = client.get("/api").get_json()
    params = {p["name"]: p for p in doc["paths"]["/api/hotspots/{level}"]["get"]["parameters"] if "name" in p}
    assert set(params["measure"]["schema"]["enum"]) == {"violent", "calls", "expected", "violent_per_1000",
                                                       "calls_per_1000", "expected_per_1000"}


def test_the_map_runs_gi_star_on_rates_when_coloured_by_them(browser, live_server, app):  # noqa: F811
    import json
    import urllib.request

    from tests.web.test_map_page import Page

    page = Page(browser, live_server, app)
    try:
        page.open("?preset=365d&measure=violent_per_1000")
        page.page.wait_for_selector("body[data-hotspots-loaded]", timeout=60_000)
        asked = page.requested("/api/hotspots/npa")
        assert asked and asked[-1]["measure"] == ["violent_per_1000"]
        with urllib.request.urlopen(live_server + "/api/hotspots/npa?preset=365d&measure=violent_per_1000") as r:
            fc = json.loads(r.read())
        hot99 = sum(f["properties"]["hotspot_class"] == "Hot spot, 99% confidence" for f in fc["features"])
        assert hot99 > 0
        assert page.page.locator('.leaflet-hotspots-pane path[stroke="#d62f27"]').count() == hot99
        assert "per 1,000 residents" in page.page.locator("#legend").inner_text()
        assert page.errors == []
    finally:
        page.page.close()
