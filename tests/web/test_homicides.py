"""The homicide layer served: OGC items (paged, filtered, null geometries), vector tiles, exports read
back with GDAL, and the map page's layer in Chromium, all against SQL on the served database."""

from __future__ import annotations

import csv
import gzip
import io
import json
from urllib.parse import urlsplit

import mapbox_vector_tile
import pyogrio
import pytest
import sqlalchemy as sa

from geo import tiles as gt

VICTIMS, UNPLACED = 933, 5


@pytest.fixture(scope="module")
def db(web_url):
    engine = sa.create_engine(web_url)
    yield engine
    engine.dispose()


def sql(db, query: str, **params):
    with db.connect() as conn:
        return conn.execute(sa.text(query), params).all()


def get(client, url: str, status: int = 200):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True)[:500])
    return r


def test_collection_pages_through_every_victim_with_null_geometries(client, db):
    coll = get(client, "/ogc/collections/homicides").get_json()
    # The interval runs from the first reported date's local midnight (EST: 05:00 UTC).
    assert coll["extent"]["temporal"]["interval"][0][0] == "2015-01-01T05:00:00Z"
    url, seen, null = "/ogc/collections/homicides/items?limit=400", [], 0
    while url:
        page = get(client, url).get_json()
        assert page["numberMatched"] == VICTIMS
        seen += [f["id"] for f in page["features"]]
        null += sum(f["geometry"] is None for f in page["features"])
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        url = (urlsplit(nxt[0]).path + "?" + urlsplit(nxt[0]).query) if nxt else None
    assert len(seen) == len(set(seen)) == VICTIMS and null == UNPLACED
    assert sorted(seen) == [r[0] for r in sql(db, "SELECT objectid FROM homicides ORDER BY 1")]
    one = get(client, "/ogc/collections/homicides/items/15").get_json()
    assert one["geometry"] is None and one["properties"]["date_reported"] == "2025-05-03"
    first = get(client, "/ogc/collections/homicides/items/1").get_json()
    assert first["geometry"]["type"] == "Point" and first["properties"]["crime_report_id"] == "20250624-1928-00"
    assert "<td>none</td>" in get(client, "/ogc/collections/homicides/items?f=html&limit=50").get_data(as_text=True)


def test_date_division_and_property_filters_match_sql(client, db):
    def matched(query: str) -> int:
        return get(client, "/ogc/collections/homicides/items?limit=1&" + query).get_json()["numberMatched"]

    # Calendar dates: a day is in when it falls in the local period, whatever the time zone.
    year = sql(db, "SELECT count(*) FROM homicides WHERE date_reported BETWEEN '2020-01-01' AND '2020-12-31'")[0][0]
    assert year == 118 and matched("start=2020-01-01&end=2020-12-31") == year
    assert matched("datetime=2020-01-01/2020-12-31") == year
    day = sql(db, "SELECT count(*) FROM homicides WHERE date_reported = '2025-05-31'")[0][0]
    assert day == 2 and matched("datetime=2025-05-31") == day
    # A window that cuts the day (an instant, or a few hours) holds no date-only record: its time is
    # unknown, and it is never placed at midnight (or anywhere else) inside that day.
    assert matched("datetime=2025-05-31T23:30:00-04:00") == 0
    # Noon on the 30th to noon on 1 June: only the 31st lies wholly inside.
    assert matched("datetime=2025-05-30T12:00:00-04:00/2025-06-01T12:00:00-04:00") == day
    central = sql(db, "SELECT count(*) FROM homicides WHERE division_id = '01'")[0][0]
    assert central > 0 and matched("division=Central") == central
    npa, n = sql(db, "SELECT npa_id, count(*) FROM homicides GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")[0]
    assert matched(f"npa_id={npa}") == n
    assert matched("intimate_partner=true") == 66
    assert matched("bbox=-81.1,34.9,-80.4,35.6") == VICTIMS - UNPLACED
    for parameter, value in (("category", "violent_crime"), ("violent", "true"), ("min_p", "0.5")):
        body = get(client, f"/ogc/collections/homicides/items?{parameter}={value}", 400).get_json()
        assert body["parameter"] == parameter


def tile_features(client, z: int, x: int, y: int) -> list[dict]:
    r = client.get(f"/tiles/homicides/{z}/{x}/{y}.pbf", headers={"Accept-Encoding": "gzip"})
    if r.status_code == 204:
        return []
    assert r.status_code == 200
    body = gzip.decompress(r.data) if r.headers.get("Content-Encoding") == "gzip" else r.data
    return mapbox_vector_tile.decode(body).get("homicides", {"features": []})["features"]


def test_tiles_hold_the_placed_victims(client, db):
    z = 9
    x, y = gt.lonlat_to_tile(-80.843, 35.227, z)
    xmin, ymin, xmax, ymax = gt.tile_bounds(z, x, y)
    inside = sql(db, "SELECT count(*) FROM homicides WHERE geom && ST_Transform(ST_MakeEnvelope(:a, :b, :c, :d, 3857), 4326)",
                 a=xmin, b=ymin, c=xmax, d=ymax)[0][0]
    feats = tile_features(client, z, x, y)
    assert inside > 0 and len(feats) >= inside     # the buffer may add a few from the next tile
    props = {f["properties"]["objectid"]: f["properties"] for f in feats}
    assert props[1]["date_reported"] == "2025-06-24" and props[1]["crime_report_id"] == "20250624-1928-00"
    # The tiles over the county hold every placed victim, and none of those without a place.
    west, south, east, north = gt.MECKLENBURG_BOUNDS
    (x0, y0), (x1, y1) = gt.lonlat_to_tile(west, north, z), gt.lonlat_to_tile(east, south, z)
    drawn = {f["properties"]["objectid"] for tx in range(x0, x1 + 1) for ty in range(y0, y1 + 1)
             for f in tile_features(client, z, tx, ty)}
    placed = {r[0] for r in sql(db, "SELECT objectid FROM homicides WHERE geom IS NOT NULL")}
    assert len(placed) == VICTIMS - UNPLACED and drawn == placed
    # Where the placeholder point is (Alabama) there is nothing.
    assert tile_features(client, z, *gt.lonlat_to_tile(-85.568, 33.568, z)) == []
    zc = 16
    xc, yc = gt.lonlat_to_tile(-80.75251, 35.246702, zc)
    assert 1 in {f["properties"]["objectid"] for f in tile_features(client, zc, xc, yc)}


def test_exports_round_trip(client, db, tmp_path):
    expected = {oid: (d.isoformat(), age) for oid, d, age in sql(db, "SELECT objectid, date_reported, age FROM homicides")}
    body = get(client, "/export/homicides.geojson").get_data()
    fc = json.loads(body)
    assert len(fc["features"]) == VICTIMS and sum(f["geometry"] is None for f in fc["features"]) == UNPLACED
    assert {f["id"]: (f["properties"]["date_reported"], f["properties"]["age"]) for f in fc["features"]} == expected
    text = get(client, "/export/homicides.csv").get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == VICTIMS and sum(r["lon"] == "" and r["lat"] == "" for r in table) == UNPLACED
    assert {int(r["objectid"]): r["date_reported"] for r in table} == {k: v[0] for k, v in expected.items()}
    for ext, date_field, id_field in (("gpkg", "date_reported", "objectid"), ("zip", "date_rptd", "objectid")):
        path = tmp_path / f"homicides.{ext}"
        path.write_bytes(get(client, f"/export/homicides.{ext}").get_data())
        source = f"/vsizip/{path}/homicides.shp" if ext == "zip" else str(path)
        df = pyogrio.read_dataframe(source)
        assert len(df) == VICTIMS and int(df.geometry.isna().sum() + df.geometry.is_empty.sum()) == UNPLACED
        got = {int(i): d for i, d in zip(df[id_field], df[date_field])}
        # A date field in both (dBase D, GeoPackage DATE), read back as the same calendar dates.
        assert {k: str(v)[:10] for k, v in got.items()} == {k: v[0] for k, v in expected.items()}
        info = pyogrio.read_info(source)
        assert dict(zip(info["fields"], info["dtypes"]))[date_field].startswith("datetime64")


def test_cli_export_takes_the_homicide_filters(web_url, db, tmp_path):
    from click.testing import CliRunner

    from geo.cli import main

    out = tmp_path / "central.geojson"
    run = CliRunner().invoke(main, ["export", "homicides", "--out", str(out), "--division", "Central", "--start",
                                    "2019-01-01", "--end", "2021-12-31"], env={"DATABASE_URL": web_url})
    assert run.exit_code == 0, run.output
    expected = {r[0] for r in sql(db, "SELECT objectid FROM homicides WHERE division_id = '01'"
                                      " AND date_reported BETWEEN '2019-01-01' AND '2021-12-31'")}
    assert expected and {f["id"] for f in json.loads(out.read_text())["features"]} == expected
    assert f"wrote {len(expected)} homicides rows" in run.output
    refused = CliRunner().invoke(main, ["export", "homicides", "--out", str(out), "--violent", "true"],
                                 env={"DATABASE_URL": web_url})
    assert refused.exit_code == 2 and "homicides are all violent crimes" in refused.output


def test_map_page_draws_the_victims(browser_page, live_server):
    p = browser_page
    p.goto(live_server + "/?layers=homicides&start=2015-01-01&end=2025-12-31&lat=35.25&lon=-80.83&z=10")
    p.wait_for_selector("body[data-homicides-drawn]", timeout=60_000)
    assert p.locator("body").get_attribute("data-homicides-drawn") == str(VICTIMS - UNPLACED)
    assert p.locator(".leaflet-homicides-pane path.homicide").count() == VICTIMS - UNPLACED
    notice = p.locator('#notices [data-key="homicides"]').inner_text()
    assert f"{VICTIMS} homicide victims in this period" in notice and f"{UNPLACED} published without a location" in notice
    p.locator(".leaflet-homicides-pane path.homicide").first.click(force=True)
    assert "Homicide, reported" in p.locator(".homicide-popup").inner_text()
    assert "Homicide victims (CMPD, real)" in p.locator("#legend").inner_text()
    # The period filter applies: one year draws that year's placed victims.
    with p.expect_response(lambda r: "/ogc/collections/homicides/items" in r.url and "start=2020-01-01" in r.url):
        p.fill("#f-start", "2020-01-01")
        p.press("#f-start", "Tab")
        p.fill("#f-end", "2020-12-31")
        p.press("#f-end", "Tab")
    p.wait_for_function("document.body.getAttribute('data-homicides-drawn') === '118'")


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        browser.close()
        assert errors == []
