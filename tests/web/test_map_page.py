"""The map page in a real headless Chromium (Debian's), served over a real socket from the test database."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import parse_qs, urlparse

import pytest

NPAS = 462


class Page:
    """A page with its console errors, uncaught exceptions and requests recorded."""

    def __init__(self, browser, base: str, app):
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.base = base
        self.errors: list[str] = []
        self.requests: list[str] = []
        def console(msg):
            if msg.type != "error":
                return
            url = (msg.location or {}).get("url", "")
            self.errors.append(f"{msg.text} ({url})")

        self.page.on("console", console)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, query: str = ""):
        self.page.goto(self.base + "/" + query)
        self.page.wait_for_selector("body[data-areas-loaded]", timeout=60_000)
        return self

    def requested(self, path: str) -> list[dict]:
        return [parse_qs(urlparse(u).query) for u in self.requests if urlparse(u).path == path]

    def url_params(self) -> dict:
        return {k: v[0] for k, v in parse_qs(urlparse(self.page.url).query, keep_blank_values=True).items()}


@pytest.fixture
def page(browser, live_server, app):
    p = Page(browser, live_server, app)
    yield p
    p.page.close()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def test_map_draws_every_layer_without_errors(page, tmp_path):
    page.open("?preset=365d")
    page.page.wait_for_selector("body[data-hotspots-loaded]", timeout=60_000)
    p = page.page
    assert p.locator(".leaflet-areas-pane path.area-npa").count() == NPAS
    assert p.locator(".leaflet-hotspots-pane path").count() == NPAS
    assert p.locator(".leaflet-divisions-pane path.division-outline").count() == 14
    # Hot spots are drawn in their class colours: as many red outlines as the API has 99% hot spots.
    fc = _get(page.base + "/api/hotspots/npa?preset=365d")
    hot99 = sum(f["properties"]["hotspot_class"] == "Hot spot, 99% confidence" for f in fc["features"])
    assert hot99 > 0
    assert p.locator('.leaflet-hotspots-pane path[stroke="#d62f27"]').count() == hot99
    legend = p.locator("#legend")
    assert legend.is_visible()
    assert legend.locator(".hotspot-class").count() == 7
    assert "Hot spot, 99% confidence" in legend.inner_text() and "Violent calls (NPAs)" in legend.inner_text()
    # The choropleth: NPAs without violent calls are pale, the others take the five classes.
    areas = _get(page.base + "/api/areas/npa?preset=365d")
    zero = sum(f["properties"]["violent"] == 0 for f in areas["features"])
    assert p.locator('.leaflet-areas-pane path[fill="#f4f4f4"]').count() == zero
    assert p.locator('.leaflet-areas-pane path[fill="#bd0026"]').count() > 0
    # Controls show the view the URL asked for, and the URL holds the whole view.
    assert p.locator("#f-preset").input_value() == "365d"
    params = page.url_params()
    assert params["preset"] == "365d" and params["level"] == "npa" and float(params["z"]) >= 9
    shot = tmp_path / "map.png"
    p.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
    assert page.errors == []


def test_filter_changes_redraw_every_layer(page):
    page.open("?preset=365d")
    p = page.page
    p.wait_for_selector("body[data-hotspots-loaded]", timeout=60_000)
    pale_before = p.locator('.leaflet-areas-pane path[fill="#f4f4f4"]').count()
    with p.expect_response(lambda r: "/api/areas/npa" in r.url and "division=01" in r.url) as areas:
        p.select_option("#f-division", "01")
    assert areas.value.ok
    p.wait_for_function("document.body.getAttribute('data-areas-loaded') !== '1'")
    p.wait_for_function("document.querySelectorAll('.leaflet-areas-pane path[fill=\"#f4f4f4\"]').length > %d" % pale_before)
    assert page.url_params()["division"] == "01"
    assert any(q.get("division") == ["01"] for q in page.requested("/api/hotspots/npa"))
    # Only Central's NPAs keep calls: everything else is drawn pale.
    fc = _get(page.base + "/api/areas/npa?preset=365d&division=01")
    zero = sum(f["properties"]["violent"] == 0 for f in fc["features"])
    p.wait_for_function("document.querySelectorAll('.leaflet-areas-pane path[fill=\"#f4f4f4\"]').length === %d" % zero)

    with p.expect_response(lambda r: "/api/areas/npa" in r.url and "category=violent_crime" in r.url):
        p.select_option("#f-category", "violent_crime")
    assert page.url_params()["category"] == "violent_crime"
    with p.expect_response(lambda r: "/api/areas/npa" in r.url and "violent=true" in r.url and "min_p=0.5" in r.url):
        p.check("#f-violent")
        p.fill("#f-min-p", "0.5")
        p.press("#f-min-p", "Tab")
    params = page.url_params()
    assert params["violent"] == "true" and params["min_p"] == "0.5"
    # Choosing dates clears the preset (the two would contradict each other).
    with p.expect_response(lambda r: "/api/areas/npa" in r.url and "start=2021-06-01" in r.url and "preset" not in r.url):
        p.fill("#f-start", "2021-06-01")
        p.press("#f-start", "Tab")
    assert page.url_params()["preset"] == "" and p.locator("#f-preset").input_value() == ""
    assert page.errors == []


def test_clicking_an_area_opens_its_panel(page):
    page.open("?preset=365d&layers=areas")
    p = page.page
    box = p.locator("#map").bounding_box()
    with p.expect_response(lambda r: "/api/panel/npa/" in r.url) as resp:
        p.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    data = resp.value.json()
    p.wait_for_selector("#panel-body table.hours")
    body = p.locator("#panel-body")
    assert body.get_attribute("data-id") == str(data["area"]["id"])
    assert page.url_params()["sel"] == f"npa:{data['area']['id']}"
    assert p.locator("#panel h2").inner_text() == data["area"]["name"]
    # The 7x24 table holds the API's numbers, and they add up to the area's total.
    counts = [int(c) for c in p.locator("#panel-body table.hours td").evaluate_all("cs => cs.map(c => c.dataset.count)")]
    assert len(counts) == 7 * 24 and sum(counts) == data["totals"]["calls"] > 0
    assert p.locator("#panel-body table.categories tr").count() == len(data["categories"]) + 1
    assert p.locator("#panel-body table.compstat tr").count() == 1 + len(data["compstat"]["windows"]) == 4
    assert f"{data['totals']['calls']:,}" in p.locator("#panel-body table.totals").inner_text()
    if data["allocation"]:
        assert data["allocation"]["reasoning"] in p.locator("#panel-body .reasoning").inner_text()
        # The queueing plan's table: a header and one row per shift, with its units.
        shifts = data["staffing"]["shifts"]
        assert p.locator("#panel-body table.staffing tr").count() == 1 + len(shifts)
        units = p.locator("#panel-body table.staffing td:nth-child(3)").all_inner_texts()
        assert units == [f"{s['units']:,}" for s in shifts]
        assert p.locator("#panel-body .needs-reasoning").count() == len(shifts)
    p.click("#panel-close")
    assert p.locator("#panel").is_hidden() and "sel" not in page.url_params()
    assert page.errors == []


def test_a_shared_url_restores_the_view(page):
    query = ("?preset=&start=2021-03-01&end=2021-04-30&division=02&category=disorder&level=division&measure=calls"
             "&layers=areas,divisions&lat=35.22&lon=-80.84&z=12&sel=division:02")
    page.open(query)
    p = page.page
    p.wait_for_selector("#panel-body table.hours")
    assert p.locator("#f-start").input_value() == "2021-03-01"
    assert p.locator("#f-division").input_value() == "02"
    assert p.locator("#f-category").input_value() == "disorder"
    assert p.locator("#f-level").input_value() == "division"
    assert p.locator("[data-layer=hotspots]").is_checked() is False
    assert p.evaluate("document.querySelector('#map') !== null")
    params = page.url_params()
    # (The panel narrows the map; Leaflet keeps the centre to within a pixel.)
    assert params["z"] == "12" and params["sel"] == "division:02"
    assert float(params["lat"]) == pytest.approx(35.22, abs=1e-3) and float(params["lon"]) == pytest.approx(-80.84, abs=1e-3)
    q = page.requested("/api/areas/division")[0]
    assert q["division"] == ["02"] and q["category"] == ["disorder"] and q["start"] == ["2021-03-01"]
    assert page.requested("/api/hotspots/npa") == []     # a layer switched off is not fetched
    assert p.locator("#panel-body").get_attribute("data-id") == "02"
    assert p.locator(".leaflet-areas-pane path.area-division").count() == 14
    assert page.errors == []


def test_calls_and_heat_layers_when_zoomed_in(page, app):
    page.open("?preset=365d&layers=calls,heat&lat=35.2271&lon=-80.8431&z=16")
    p = page.page
    p.wait_for_function("document.querySelectorAll('#notices .notice, .leaflet-calls-pane path.call').length > 0"
                        " || document.querySelectorAll('.heat-tiles img.leaflet-tile-loaded').length > 0", timeout=30_000)
    heat = [u for u in page.requests if urlparse(u).path.startswith("/heat/16/")]
    assert heat and all(parse_qs(urlparse(u).query)["preset"] == ["365d"] for u in heat)
    items = page.requested("/ogc/collections/calls/items")
    assert items and items[0]["preset"] == ["365d"] and len(items[0]["bbox"][0].split(",")) == 4
    p.wait_for_selector(".leaflet-calls-pane path.call")
    q = items[0]
    fc = _get(page.base + "/ogc/collections/calls/items?" + "&".join(f"{k}={v[0]}" for k, v in q.items()))
    assert p.locator(".leaflet-calls-pane path.call").count() == len(fc["features"]) > 0
    p.locator(".leaflet-calls-pane path.call").first.click(force=True)
    popup = p.locator(".call-popup").inner_text()
    assert "Category:" in popup and "Violent probability:" in popup and "Type:" in popup
    p.wait_for_selector(".heat-tiles img.leaflet-tile-loaded")
    assert not p.locator("#notices .notice.error").count()
    assert page.errors == []
