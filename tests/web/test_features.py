"""OGC API - Features under /ogc: every endpoint and error path, values checked against direct SQL,
paging walked to the end, RFC 7946 geometry, and GDAL's OAPIF driver reading the live server."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from geo.catalog import LAYERS
from web import create_app

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def db(web_url):
    """A read-only engine on the same database the app serves, for the expected values."""
    engine = sa.create_engine(web_url)
    yield engine
    engine.dispose()


def scalar(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def rows(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def local_path(href: str) -> str:
    """A link's path and query, to follow it with the test client."""
    parts = urlsplit(href)
    return parts.path + ("?" + parts.query if parts.query else "")


def get_json(client, url: str, status: int = 200):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True)[:500])
    return r.get_json(), r


def links_by_rel(body: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for link in body["links"]:
        out.setdefault(link["rel"], []).append(link)
    return out


def ring_area(ring) -> float:
    """Signed area (shoelace): positive for counter-clockwise rings."""
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:])) / 2


def assert_rfc7946_polygons(geometry: dict) -> None:
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for rings in polygons:
        assert ring_area(rings[0]) > 0, "exterior ring must be counter-clockwise"
        for hole in rings[1:]:
            assert ring_area(hole) < 0, "holes must be clockwise"


# --- landing, conformance, collections, queryables ------------------------------------------------


def test_landing_page_links(client):
    body, r = get_json(client, "/ogc")
    assert r.mimetype == "application/json"
    rels = links_by_rel(body)
    assert {"self", "alternate", "service-desc", "conformance", "data"} <= set(rels)
    assert rels["self"][0]["type"] == "application/json" and rels["alternate"][0]["type"] == "text/html"
    assert rels["service-desc"][0]["href"].endswith("/api")
    assert rels["service-desc"][0]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    conf, _ = get_json(client, local_path(rels["conformance"][0]["href"]))
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conf["conformsTo"]
    data, _ = get_json(client, local_path(rels["data"][0]["href"]))
    assert [c["id"] for c in data["collections"]] == list(LAYERS)
    # A trailing slash reaches the same page.
    assert client.get("/ogc/").status_code == 200


def test_collections_describe_every_layer_with_its_extent(client, db):
    body, _ = get_json(client, "/ogc/collections")
    by_id = {c["id"]: c for c in body["collections"]}
    assert list(by_id) == list(LAYERS)
    for c in body["collections"]:
        assert c["itemType"] == "feature" and c["crs"] == [CRS84]
        rels = links_by_rel(c)
        assert {link["type"] for link in rels["items"]} == {"application/geo+json", "text/html"}
        assert rels["http://www.opengis.net/def/rel/ogc/1.0/queryables"][0]["href"].endswith(f"/ogc/collections/{c['id']}/queryables")
        assert len(c["extent"]["spatial"]["bbox"][0]) == 4
    xmin, ymin, xmax, ymax = rows(db, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                                      "FROM (SELECT ST_Extent(geom) e FROM calls) x")[0]
    assert by_id["calls"]["extent"]["spatial"]["bbox"][0] == pytest.approx([xmin, ymin, xmax, ymax], abs=1e-6)
    lo, hi = rows(db, "SELECT min(received_at), max(received_at) FROM calls")[0]
    interval = by_id["calls"]["extent"]["temporal"]["interval"][0]
    assert [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in interval] == [lo, hi]
    assert "temporal" not in by_id["divisions"]["extent"]
    latest_cells = scalar(db, "SELECT max(run_id) FROM analysis_runs WHERE kind = 'calls_grid_hotspots'")
    assert by_id["hotspot_cells"]["run"] == latest_cells
    one, _ = get_json(client, "/ogc/collections/neighborhoods")
    assert one["id"] == "neighborhoods" and one["extent"] == by_id["neighborhoods"]["extent"]


def test_queryables_are_a_json_schema(client):
    r = client.get("/ogc/collections/calls/queryables")
    assert r.status_code == 200 and r.mimetype == "application/schema+json"
    schema = r.get_json()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["$id"].endswith("/ogc/collections/calls/queryables")
    assert set(schema["properties"]) == {"call_type", "priority", "npa_id", "zip", "category", "violent",
                                         "received_at_precision"}
    assert schema["properties"]["priority"]["type"] == "integer"
    assert schema["properties"]["violent"]["type"] == "boolean"
    divisions = client.get("/ogc/collections/divisions/queryables").get_json()
    assert set(divisions["properties"]) == {"division_id", "name"}


# --- items: values against SQL -------------------------------------------------------------------


def test_default_page_is_geojson_in_id_order(client, db):
    body, r = get_json(client, "/ogc/collections/calls/items")
    assert r.mimetype == "application/geo+json"
    assert body["type"] == "FeatureCollection" and "crs" not in body
    assert body["numberMatched"] == scalar(db, "SELECT count(*) FROM calls")
    assert body["numberReturned"] == len(body["features"]) == 100
    datetime.fromisoformat(body["timeStamp"].replace("Z", "+00:00"))
    expected = [r[0] for r in rows(db, "SELECT call_id FROM calls ORDER BY call_id LIMIT 100")]
    assert [f["id"] for f in body["features"]] == expected
    rels = links_by_rel(body)
    assert "next" in rels and "prev" not in rels and rels["collection"][0]["href"].endswith("/ogc/collections/calls")
    assert rels["self"][0]["type"] == "application/geo+json"
    for f in body["features"]:
        assert set(f) == {"type", "id", "geometry", "properties"}
        assert "address" not in f["properties"]  # private in the catalog
        assert f["geometry"]["type"] == "Point"
    # Deep unfiltered pages take another plan (offset on the key's index): same order, same rows.
    deep, _ = get_json(client, "/ogc/collections/calls/items?offset=25000&limit=300")
    assert [f["id"] for f in deep["features"]] == [
        r[0] for r in rows(db, "SELECT call_id FROM calls ORDER BY call_id OFFSET 25000 LIMIT 300")]
    assert deep["features"][0]["properties"]["call_id"] == deep["features"][0]["id"]
    # Coordinates carry at most 6 decimals.
    coords = re.findall(r'"coordinates":\[(-?[\d.]+),(-?[\d.]+)\]', r.get_data(as_text=True))
    assert len(coords) == 100 and all(len(c.split(".")[-1]) <= 6 for pair in coords for c in pair)


def test_bbox_datetime_division_match_sql(client, db):
    division, name = rows(db, "SELECT division_id, name FROM divisions d ORDER BY "
                              "(SELECT count(*) FROM calls c WHERE c.division_id = d.division_id) DESC LIMIT 1")[0]
    box = (-80.95, 35.10, -80.70, 35.35)
    url = (f"/ogc/collections/calls/items?bbox={','.join(map(str, box))}&datetime=2021-03-01/2021-06-30"
           f"&division={name}&limit=10000")
    body, _ = get_json(client, url)
    # Exact intersection: && alone compares float4-rounded boxes and admits points just outside.
    expected = rows(db, "SELECT call_id FROM calls WHERE ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326)) "
                        "AND received_at >= timestamptz '2021-03-01 00:00 America/New_York' "
                        "AND received_at < timestamptz '2021-07-01 00:00 America/New_York' "
                        "AND division_id = :div ORDER BY call_id",
                    a=box[0], b=box[1], c=box[2], d=box[3], div=division)
    assert 0 < len(expected) < 10000
    assert body["numberMatched"] == len(expected) == body["numberReturned"]
    assert [f["id"] for f in body["features"]] == [r[0] for r in expected]
    for f in body["features"]:
        x, y = f["geometry"]["coordinates"]
        assert box[0] <= x <= box[2] and box[1] <= y <= box[3]
        assert f["properties"]["division_id"] == division


def test_property_filters_match_sql(client, db):
    call_type, zip_code, npa = rows(db, "SELECT call_type, zip, npa_id FROM calls WHERE zip IS NOT NULL "
                                        "AND npa_id IS NOT NULL ORDER BY call_id LIMIT 1")[0]
    cases = [
        (f"call_type={call_type}", "call_type = :v", call_type),
        (f"zip={zip_code}", "zip = :v", zip_code),
        (f"npa_id={npa}", "npa_id = :v", npa),
        ("priority=1", "priority = :v", 1),
        ("violent=true", "label = :v", True),
        ("category=violent_crime", "category = :v", "violent_crime"),
    ]
    for query, where, value in cases:
        body, _ = get_json(client, f"/ogc/collections/calls/items?{query}&limit=5")
        assert body["numberMatched"] == scalar(db, f"SELECT count(*) FROM calls WHERE {where}", v=value) > 0, query
    body, _ = get_json(client, "/ogc/collections/calls/items?violent=true&min_p=0.9&priority=1&limit=10000")
    n = scalar(db, "SELECT count(*) FROM calls WHERE label AND p_violent >= 0.9 AND priority = 1")
    assert body["numberMatched"] == body["numberReturned"] == n
    assert all(f["properties"]["violent"] and f["properties"]["p_violent"] >= 0.9 for f in body["features"])
    # Incidents: their own queryables, and `violent` means the violent-crime category there.
    nibrs = scalar(db, "SELECT highest_nibrs_code FROM incidents ORDER BY incident_report_id LIMIT 1")
    body, _ = get_json(client, f"/ogc/collections/incidents/items?highest_nibrs_code={nibrs}&violent=false&limit=1")
    assert body["numberMatched"] == scalar(db, "SELECT count(*) FROM incidents WHERE highest_nibrs_code = :c "
                                               "AND category IS DISTINCT FROM 'violent_crime'", c=nibrs)


def test_datetime_instant_and_open_intervals(client, db):
    call_id, at = rows(db, "SELECT call_id, received_at FROM calls ORDER BY call_id LIMIT 1 OFFSET 777")[0]
    stamp = at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    body, _ = get_json(client, f"/ogc/collections/calls/items?datetime={stamp}")
    assert call_id in [f["id"] for f in body["features"]]
    assert body["numberMatched"] == scalar(db, "SELECT count(*) FROM calls WHERE received_at = :t", t=at)
    body, _ = get_json(client, "/ogc/collections/calls/items?datetime=../2021-01-31&limit=1")
    assert body["numberMatched"] == scalar(
        db, "SELECT count(*) FROM calls WHERE received_at < timestamptz '2021-02-01 00:00 America/New_York'")
    body, _ = get_json(client, "/ogc/collections/calls/items?datetime=2021-12-01T00:00:00Z/..&limit=1")
    assert body["numberMatched"] == scalar(db, "SELECT count(*) FROM calls WHERE received_at >= '2021-12-01T00:00:00Z'")


def test_single_item_values_match_sql(client, db):
    cid, at, p, label, x, y, priority = rows(
        db, "SELECT call_id, received_at, p_violent, label, ST_X(geom), ST_Y(geom), priority "
            "FROM calls ORDER BY call_id LIMIT 1 OFFSET 123")[0]
    feat, r = get_json(client, f"/ogc/collections/calls/items/{cid}")
    assert r.mimetype == "application/geo+json" and feat["type"] == "Feature" and feat["id"] == cid
    props = feat["properties"]
    assert datetime.fromisoformat(props["received_at"]) == at and props["received_at"].endswith("+00:00")
    assert props["p_violent"] == pytest.approx(p, rel=1e-6) and props["violent"] is label
    assert props["priority"] == priority and "address" not in props
    assert feat["geometry"]["coordinates"] == pytest.approx([round(x, 6), round(y, 6)], abs=1e-9)
    rels = links_by_rel(feat)
    assert rels["self"][0]["type"] == "application/geo+json" and "collection" in rels

    npa, population = rows(db, "SELECT npa_id, population FROM neighborhoods ORDER BY npa_id LIMIT 1")[0]
    feat, _ = get_json(client, f"/ogc/collections/neighborhoods/items/{npa}")
    assert feat["id"] == npa and feat["properties"]["population"] == population
    assert_rfc7946_polygons(feat["geometry"])

    col, row_, gi_z = rows(db, "SELECT col, \"row\", gi_z FROM hotspot_cell_results WHERE run_id = "
                               "(SELECT max(run_id) FROM analysis_runs WHERE kind = 'calls_grid_hotspots') "
                               "ORDER BY gi_z DESC LIMIT 1")[0]
    feat, _ = get_json(client, f"/ogc/collections/hotspot_cells/items/{col}_{row_}")
    assert feat["properties"]["gi_z"] == pytest.approx(gi_z) and feat["properties"]["col"] == col


def test_polygons_follow_the_right_hand_rule(client, db):
    # The stored outlines are clockwise (shapefile order); the service must flip them.
    assert scalar(db, "SELECT count(*) FROM neighborhoods WHERE NOT ST_IsPolygonCCW(geom)") > 0
    for collection in ("divisions", "neighborhoods", "hotspot_npas"):
        body, r = get_json(client, f"/ogc/collections/{collection}/items?limit=1000")
        assert body["numberReturned"] == body["numberMatched"] > 0
        assert '"crs"' not in r.get_data(as_text=True)
        for f in body["features"]:
            assert_rfc7946_polygons(f["geometry"])
    body, _ = get_json(client, "/ogc/collections/hotspot_cells/items?limit=50")
    assert all(f["geometry"]["type"] == "Polygon" for f in body["features"])
    for f in body["features"]:
        assert_rfc7946_polygons(f["geometry"])


def test_polygon_bbox_uses_the_outline(client, db):
    box = (-80.86, 35.21, -80.83, 35.24)
    body, _ = get_json(client, f"/ogc/collections/neighborhoods/items?bbox={','.join(map(str, box))}&limit=1000")
    expected = [r[0] for r in rows(db, "SELECT npa_id FROM neighborhoods WHERE "
                                       "ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326)) ORDER BY npa_id",
                                   a=box[0], b=box[1], c=box[2], d=box[3])]
    assert [f["id"] for f in body["features"]] == expected and body["numberMatched"] == len(expected) > 1
    body, _ = get_json(client, "/ogc/collections/divisions/items?name=Central Division")
    assert [f["properties"]["name"] for f in body["features"]] == ["Central Division"]


def test_result_layers_serve_the_latest_or_named_run(client, db):
    latest = scalar(db, "SELECT max(run_id) FROM analysis_runs WHERE kind IN ('calls_npa_hotspots', 'offenses_npa_hotspots')")
    body, _ = get_json(client, "/ogc/collections/hotspot_npas/items?limit=10")
    assert body["numberMatched"] == scalar(db, "SELECT count(*) FROM hotspot_npa_results WHERE run_id = :r", r=latest)
    assert {f["properties"]["run_id"] for f in body["features"]} == {latest}
    assert all(parse_qs(urlsplit(link["href"]).query)["run"] == [str(latest)] for link in body["links"]
               if link["rel"] in ("self", "next"))
    named, _ = get_json(client, f"/ogc/collections/hotspot_npas/items?limit=10&run={latest}")
    assert named["features"] == body["features"]
    hot = scalar(db, "SELECT hotspot_class FROM hotspot_npa_results WHERE run_id = :r ORDER BY gi_z DESC LIMIT 1", r=latest)
    body, _ = get_json(client, f"/ogc/collections/hotspot_npas/items?hotspot_class={hot}&limit=500")
    assert body["numberMatched"] == scalar(db, "SELECT count(*) FROM hotspot_npa_results WHERE run_id = :r "
                                               "AND hotspot_class = :c", r=latest, c=hot) > 0


# --- paging and limits ---------------------------------------------------------------------------


def walk(client, url: str) -> tuple[list, list[dict]]:
    """Follow next links to the end: every feature id, and every page body."""
    ids, pages = [], []
    while url:
        body, _ = get_json(client, url)
        pages.append(body)
        ids.extend(f["id"] for f in body["features"])
        nxt = links_by_rel(body).get("next")
        url = local_path(nxt[0]["href"]) if nxt else None
        assert len(pages) < 200
    return ids, pages


def test_paging_walks_every_feature_once(client, db):
    ids, pages = walk(client, "/ogc/collections/calls/items?datetime=2021-07-01/2021-07-10&violent=false&limit=97")
    expected = [r[0] for r in rows(db, "SELECT call_id FROM calls WHERE received_at >= timestamptz "
                                       "'2021-07-01 00:00 America/New_York' AND received_at < timestamptz "
                                       "'2021-07-11 00:00 America/New_York' AND NOT coalesce(label, false) "
                                       "ORDER BY call_id")]
    assert len(pages) > 3 and len(ids) == len(set(ids))
    assert ids == expected
    assert all(p["numberMatched"] == len(expected) for p in pages)
    assert "prev" not in links_by_rel(pages[0]) and all("prev" in links_by_rel(p) for p in pages[1:])
    # prev goes back exactly one page.
    prev, _ = get_json(client, local_path(links_by_rel(pages[2])["prev"][0]["href"]))
    assert [f["id"] for f in prev["features"]] == [f["id"] for f in pages[1]["features"]]

    cells, pages = walk(client, "/ogc/collections/hotspot_cells/items?limit=1000")
    n = scalar(db, "SELECT count(*) FROM hotspot_cell_results WHERE run_id = "
                   "(SELECT max(run_id) FROM analysis_runs WHERE kind = 'calls_grid_hotspots')")
    assert len(cells) == len(set(cells)) == n


def test_limit_above_the_cap_is_clamped(client, db, web_url):
    small = create_app({"DATABASE_URL": web_url, "TESTING": True, "ITEMS_MAX_LIMIT": 1000}).test_client()
    body, _ = get_json(small, "/ogc/collections/calls/items?limit=5000")
    assert body["numberReturned"] == 1000 == len(body["features"])
    assert parse_qs(urlsplit(links_by_rel(body)["next"][0]["href"]).query)["limit"] == ["1000"]
    body, _ = get_json(client, "/ogc/collections/calls/items?limit=25000&offset=30")
    assert body["numberReturned"] == 10000
    assert body["features"][0]["id"] == scalar(db, "SELECT call_id FROM calls ORDER BY call_id OFFSET 30 LIMIT 1")
    body, _ = get_json(client, "/ogc/collections/divisions/items?offset=100")
    assert body["numberReturned"] == 0 and body["features"] == [] and "next" not in links_by_rel(body)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("collection, query, parameter", [
    ("calls", "bbox=1,2,3", "bbox"),
    ("calls", "bbox=-80,36,-81,35", "bbox"),
    ("divisions", "bbox=a,b,c,d", "bbox"),
    ("calls", "limit=0", "limit"),
    ("calls", "limit=-1", "limit"),
    ("calls", "limit=abc", "limit"),
    ("calls", "limit=2.5", "limit"),
    ("calls", "offset=-1", "offset"),
    ("calls", "datetime=2021-13-45", "datetime"),
    ("calls", "datetime=2021-02-01/2021-01-01", "datetime"),
    ("calls", "datetime=../..", "datetime"),
    ("calls", "foo=1", "foo"),
    ("calls", "city=CHARLOTTE", "city"),
    ("calls", "address=1%20Main%20St", "address"),
    ("calls", "priority=abc", "priority"),
    ("neighborhoods", "npa_id=1.5", "npa_id"),
    ("calls", "division=Atlantis", "division"),
    ("calls", "category=jaywalking", "category"),
    ("calls", "violent=maybe", "violent"),
    ("calls", "min_p=2", "min_p"),
    ("incidents", "min_p=0.5", "min_p"),
    ("hotspot_cells", "run=abc", "run"),
    ("hotspot_npas", "run=-3", "run"),
    ("calls", "run=1", "run"),
    ("divisions", "datetime=2021-01-01", "datetime"),
    ("neighborhoods", "division=Central", "division"),
    ("calls", "crs=http://www.opengis.net/def/crs/EPSG/0/3857", "crs"),
    ("calls", "bbox-crs=http://www.opengis.net/def/crs/EPSG/0/4326&bbox=35,-81,36,-80", "bbox-crs"),
    ("calls", "f=xml", "f"),
])
def test_bad_parameters_are_400_naming_them(client, collection, query, parameter):
    r = client.get(f"/ogc/collections/{collection}/items?{query}")
    assert r.status_code == 400 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["code"] == "InvalidParameterValue" and body["parameter"] == parameter
    assert "Traceback" not in r.get_data(as_text=True)


@pytest.mark.parametrize("url, parameter", [
    ("/ogc/collections/nope", "collectionId"),
    ("/ogc/collections/nope/items", "collectionId"),
    ("/ogc/collections/nope/queryables", "collectionId"),
    ("/ogc/collections/nope/items/1", "collectionId"),
    ("/ogc/collections/calls/items/NOPE-1", "featureId"),
    ("/ogc/collections/neighborhoods/items/abc", "featureId"),
    ("/ogc/collections/neighborhoods/items/99999999", "featureId"),
    ("/ogc/collections/hotspot_cells/items/x_y", "featureId"),
])
def test_unknown_collection_or_feature_is_404(client, url, parameter):
    r = client.get(url)
    assert r.status_code == 404 and r.mimetype == "application/json"
    assert r.get_json()["code"] == "NotFound" and r.get_json()["parameter"] == parameter


def test_single_item_rejects_other_parameters(client):
    r = client.get("/ogc/collections/divisions/items/01?limit=3")
    assert r.status_code == 400 and r.get_json()["parameter"] == "limit"
    r = client.get("/ogc/collections/hotspot_npas/items/1?run=99999")
    assert r.status_code == 404 and r.get_json()["parameter"] == "run"   # one answer for a missing run (test_runs)


# --- HTML ----------------------------------------------------------------------------------------


def test_html_by_accept_header_and_f(client, db):
    for url in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/calls",
                "/ogc/collections/calls/queryables"):
        r = client.get(url, headers={"Accept": BROWSER})
        assert r.status_code == 200 and r.mimetype == "text/html", url
        html = r.get_data(as_text=True)
        assert "<script" not in html and "<link" not in html  # no external CSS or JS
    page = client.get("/ogc/collections", headers={"Accept": BROWSER}).get_data(as_text=True)
    assert all(f"/ogc/collections/{name}?f=html" in page for name in LAYERS)
    r = client.get("/ogc/collections/calls/items?limit=7&division=01", headers={"Accept": BROWSER})
    html = r.get_data(as_text=True)
    assert r.mimetype == "text/html" and html.count("<tr><td><a href=") == 7
    first = scalar(db, "SELECT call_id FROM calls WHERE division_id = '01' ORDER BY call_id LIMIT 1")
    assert first in html and "address" not in html
    r = client.get(f"/ogc/collections/calls/items/{first}?f=html")
    assert r.mimetype == "text/html" and first in r.get_data(as_text=True)
    # f=json wins over a browser's Accept header; a client that does not say gets JSON.
    assert client.get("/ogc/collections?f=json", headers={"Accept": BROWSER}).mimetype == "application/json"
    assert client.get("/ogc/collections/calls/items?limit=1", headers={"Accept": "*/*"}).mimetype == "application/geo+json"


# --- GDAL's OGC API - Features client ------------------------------------------------------------


def test_gdal_reads_the_service(live_server, db):
    import pyogrio
    from pyproj import CRS

    url = "OAPIF:" + live_server + "/ogc"
    layers = pyogrio.list_layers(url)
    assert [str(name) for name in layers[:, 0]] == list(LAYERS)
    # use_arrow: GDAL's HTTP reads then run without holding the GIL the in-process server needs.
    divisions = pyogrio.read_dataframe(url, layer="divisions", use_arrow=True)
    assert CRS.from_epsg(4326).equals(divisions.crs, ignore_axis_order=True)
    expected = dict(rows(db, "SELECT division_id, name FROM divisions"))
    assert dict(zip(divisions["division_id"], divisions["name"])) == expected
    npas = pyogrio.read_dataframe(url, layer="neighborhoods", use_arrow=True, PAGE_SIZE=100)
    assert sorted(npas["npa_id"]) == [r[0] for r in rows(db, "SELECT npa_id FROM neighborhoods ORDER BY npa_id")]
    population = dict(rows(db, "SELECT npa_id, population FROM neighborhoods"))
    assert all(population[n] == p or (population[n] is None and p != p) for n, p in zip(npas["npa_id"], npas["population"]))
    # GDAL sends its spatial filter as bbox; pages of 500 follow the next links.
    box = (-80.86, 35.20, -80.82, 35.24)
    calls = pyogrio.read_dataframe(url, layer="calls", bbox=box, use_arrow=True, PAGE_SIZE=500)
    truth = {r[0]: r[1] for r in rows(db, "SELECT call_id, p_violent FROM calls WHERE "
                                          "ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326))",
                                      a=box[0], b=box[1], c=box[2], d=box[3])}
    assert len(truth) > 500 and sorted(calls["call_id"]) == sorted(truth)
    assert all(abs(truth[c] - p) < 1e-6 for c, p in zip(calls["call_id"], calls["p_violent"]))
    assert CRS.from_epsg(4326).equals(calls.crs, ignore_axis_order=True)
    assert str(calls["received_at"].dtype).startswith("datetime64")


def test_origin_filter_and_property(client, db):
    """Every row says where it came from; origin=real|synthetic selects, anything else is refused."""
    synthetic = scalar(db, "SELECT count(*) FROM calls WHERE data_origin = 'synthetic'")
    assert synthetic == scalar(db, "SELECT count(*) FROM calls") > 0   # the web fixture's calls are generated
    body, _ = get_json(client, "/ogc/collections/calls/items?origin=synthetic&limit=5")
    assert body["numberMatched"] == synthetic
    assert {f["properties"]["data_origin"] for f in body["features"]} == {"synthetic"}
    body, _ = get_json(client, "/ogc/collections/calls/items?origin=real")
    assert body["numberMatched"] == 0 and body["features"] == []
    r = client.get("/ogc/collections/calls/items?origin=fake")
    assert r.status_code == 400 and "origin" in r.get_data(as_text=True)
    assert "real" in r.get_data(as_text=True) and "synthetic" in r.get_data(as_text=True)
