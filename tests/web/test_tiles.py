"""Vector and heat tiles over HTTP, checked against SQL on the same served database."""

from __future__ import annotations

import gzip
import io
import time

import mapbox_vector_tile
import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from geo import tiles as gt
from geo.catalog import LAYERS
from geo.heat import HEAT_RAMP
from geo.hotspots import CLASSES, NOT_SIGNIFICANT
from geo.db import make_engine
from web import create_app

GZIP = {"Accept-Encoding": "gzip"}


@pytest.fixture(scope="module")
def db(web_url):
    engine = make_engine(web_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def centre(db) -> tuple[float, float]:
    """A place with many calls: the densest 0.01-degree square of the served calls."""
    with db.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT round(ST_X(geom)::numeric, 2) + 0.005, round(ST_Y(geom)::numeric, 2) + 0.005 FROM calls "
            "GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1")).one()
    return float(lon), float(lat)


def decode(body: bytes) -> dict:
    return mapbox_vector_tile.decode(body)


def features(resp, layer: str) -> list[dict]:
    assert resp.status_code == 200, resp.data[:300]
    assert resp.headers["Content-Type"] == gt_type()
    body = gzip.decompress(resp.data) if resp.headers.get("Content-Encoding") == "gzip" else resp.data
    return decode(body).get(layer, {"features": []})["features"]


def gt_type() -> str:
    return "application/vnd.mapbox-vector-tile"


def in_tile_count(db, z, x, y, where="TRUE", params=None) -> tuple[int, int]:
    """Calls inside the tile itself (half-open in EPSG:3857, as the aggregated tiles count them)."""
    xmin, ymin, xmax, ymax = gt.tile_bounds(z, x, y)
    with db.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE coalesce(label, false)) FROM "
            "(SELECT ST_Transform(geom, 3857) AS g, label FROM calls AS src "
            f" WHERE geom && ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326) AND {where}) s "
            "WHERE ST_X(g) >= :xmin AND ST_X(g) < :xmax AND ST_Y(g) > :ymin AND ST_Y(g) <= :ymax"),
            dict(params or {}, z=z, x=x, y=y, xmin=xmin, xmax=xmax, ymin=ymin, ymax=ymax)).one()
    return int(row[0]), int(row[1])


def test_aggregated_tile_counts_equal_sql(client, db, centre):
    z = 11
    x, y = gt.lonlat_to_tile(*centre, z)
    feats = features(client.get(f"/tiles/calls/{z}/{x}/{y}.pbf"), "calls")
    total, violent = in_tile_count(db, z, x, y)
    assert total > 1000
    assert sum(f["properties"]["count"] for f in feats) == total
    assert sum(f["properties"]["violent"] for f in feats) == violent
    # one feature per occupied 64-unit cell, at the cell's centre, never a raw call
    assert len(feats) <= (gt.EXTENT // gt.CELL) ** 2
    for f in feats[:50]:
        cx, cy = f["geometry"]["coordinates"]
        assert (cx - gt.CELL // 2) % gt.CELL == 0 and (cy - gt.CELL // 2) % gt.CELL == 0
        assert "call_id" not in f["properties"] and 0 <= f["properties"]["mean_p"] <= 1


def test_filters_change_the_tile_as_sql_does(client, db, centre):
    z = 11
    x, y = gt.lonlat_to_tile(*centre, z)
    args = "start=2021-03-01&end=2021-03-31&category=violent_crime"
    feats = features(client.get(f"/tiles/calls/{z}/{x}/{y}.pbf?{args}"), "calls")
    total, _ = in_tile_count(db, z, x, y, "received_at >= :a AND received_at < :b AND category = 'violent_crime'",
                             {"a": "2021-03-01T00:00:00-05:00", "b": "2021-04-01T00:00:00-04:00"})
    unfiltered, _ = in_tile_count(db, z, x, y)
    assert 0 < total < unfiltered
    assert sum(f["properties"]["count"] for f in feats) == total
    violent = features(client.get(f"/tiles/calls/{z}/{x}/{y}.pbf?violent=true"), "calls")
    assert sum(f["properties"]["count"] for f in violent) == in_tile_count(db, z, x, y)[1]


def test_raw_points_match_the_calls_in_the_buffered_envelope(client, db, centre):
    z = 16
    x, y = gt.lonlat_to_tile(*centre, z)
    feats = features(client.get(f"/tiles/calls/{z}/{x}/{y}.pbf", headers=GZIP), "calls")
    with db.connect() as conn:
        # exact test in EPSG:3857 (&& alone compares float4 boxes, a little larger than the envelope)
        ids = set(conn.execute(sa.text(
            "SELECT call_id FROM calls WHERE ST_Intersects(ST_Transform(geom, 3857), ST_TileEnvelope(:z, :x, :y, margin => :m))"),
            {"z": z, "x": x, "y": y, "m": gt.BUFFER / gt.EXTENT}).scalars())
        sample = conn.execute(sa.text(
            "SELECT call_id, call_type, category, label FROM calls WHERE call_id = ANY(:ids)"), {"ids": list(ids)[:20]}).all()
    assert 0 < len(ids) <= gt.MAX_RAW_FEATURES
    assert sorted(f["properties"]["call_id"] for f in feats) == sorted(ids)
    by_id = {f["properties"]["call_id"]: f["properties"] for f in feats}
    for call_id, call_type, category, label in sample:
        p = by_id[call_id]
        assert (p["call_type"], p.get("category"), p.get("violent")) == (call_type, category, label)
    public = {p.name for p in LAYERS["calls"].public}
    for f in feats:
        assert "address" not in f["properties"]
        assert set(f["properties"]) <= public
        assert f["properties"]["received_at"].endswith("Z")


def test_gzip_etag_304_and_cache_headers(client, centre):
    x, y = gt.lonlat_to_tile(*centre, 13)
    url = f"/tiles/calls/13/{x}/{y}.pbf"
    zipped = client.get(url, headers=GZIP)
    assert zipped.status_code == 200 and zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"] and "max-age" in zipped.headers["Cache-Control"]
    plain = client.get(url)
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(zipped.data) == plain.data and len(zipped.data) < len(plain.data)
    etag = zipped.headers["ETag"]
    again = client.get(url, headers={"If-None-Match": etag, **GZIP})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    other = client.get(url + "?violent=true", headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag


def test_empty_tile_is_204(client):
    x, y = gt.lonlat_to_tile(-150.0, -40.0, 10)   # the South Pacific
    r = client.get(f"/tiles/calls/10/{x}/{y}.pbf")
    assert r.status_code == 204 and r.data == b"" and r.headers["ETag"]
    r = client.get(f"/tiles/neighborhoods/10/{x}/{y}.pbf")
    assert r.status_code == 204


@pytest.mark.parametrize("url, parameter", [
    ("/tiles/calls/23/0/0.pbf", "z"),
    ("/tiles/calls/-1/0/0.pbf", "z"),
    ("/tiles/calls/zz/0/0.pbf", "z"),
    ("/tiles/calls/3/8/0.pbf", "x"),
    ("/tiles/calls/3/0/8.pbf", "y"),
    ("/tiles/calls/3/0/-1.pbf", "y"),
    ("/tiles/calls/3/0/0.pbf?division=Atlantis", "division"),
    ("/tiles/incidents/3/0/0.pbf?min_p=0.5", "min_p"),
    ("/tiles/hotspot_cells/3/0/0.pbf?run=x", "run"),
    ("/heat/23/0/0.png", "z"),
    ("/heat/2/4/0.png", "x"),
    ("/heat/2/0/0.png?start=2021-99-01", "start"),
])
def test_bad_requests_name_the_parameter(client, url, parameter):
    r = client.get(url)
    assert r.status_code == 400
    body = r.get_json()
    assert body["parameter"] == parameter and body["code"] == "InvalidParameterValue"
    assert "Traceback" not in r.get_data(as_text=True)


def test_polygon_layers_and_hot_spot_runs(client, db, centre):
    z = 10
    x, y = gt.lonlat_to_tile(*centre, z)
    with db.connect() as conn:
        expected = set(conn.execute(sa.text(
            "SELECT npa_id FROM neighborhoods WHERE ST_Intersects(geom, ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326))"),
            {"z": z, "x": x, "y": y}).scalars())
        runs = conn.execute(sa.text("SELECT kind, max(run_id) FROM analysis_runs GROUP BY kind")).all()
    npas = features(client.get(f"/tiles/neighborhoods/{z}/{x}/{y}.pbf"), "neighborhoods")
    got = {f["properties"]["npa_id"] for f in npas}
    assert expected <= got and len(expected) > 20
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in npas)
    divisions = features(client.get(f"/tiles/divisions/{z}/{x}/{y}.pbf"), "divisions")
    assert {"division_id", "name", "short_name"} <= set(divisions[0]["properties"])

    latest = dict(runs)["calls_grid_hotspots"]
    cells = features(client.get(f"/tiles/hotspot_cells/{z + 2}/{x * 4 + 1}/{y * 4 + 1}.pbf"), "hotspot_cells")
    assert cells and {f["properties"]["run_id"] for f in cells} == {latest}
    known = {NOT_SIGNIFICANT} | {c for _, hot, cold in CLASSES for c in (hot, cold)}
    assert {f["properties"]["hotspot_class"] for f in cells} <= known
    same = features(client.get(f"/tiles/hotspot_cells/{z + 2}/{x * 4 + 1}/{y * 4 + 1}.pbf?run={latest}"), "hotspot_cells")
    assert len(same) == len(cells)
    npa_run = dict(runs)["calls_npa_hotspots"]
    hot = features(client.get(f"/tiles/hotspot_npas/{z}/{x}/{y}.pbf?run={npa_run}"), "hotspot_npas")
    assert {f["properties"]["npa_id"] for f in hot} == got and "gi_z" in hot[0]["properties"]


def test_tilejson_documents_layers_filters_and_rule(client):
    doc = client.get("/tiles/calls.json?violent=true&division=Central").get_json()
    assert doc["tilejson"] == "3.0.0"
    url = doc["tiles"][0]
    assert url.startswith("http://localhost/tiles/calls/{z}/{x}/{y}.pbf?")
    assert "violent=true" in url and "division=Central" in url
    west, south, east, north = doc["bounds"]
    assert -81.1 < west < -81.0 and 35.5 < north < 35.6 and -80.6 < east and south < 35.05
    (layer,) = doc["vector_layers"]
    assert layer["id"] == "calls" and {"count", "violent", "mean_p", "call_id", "p_violent"} <= set(layer["fields"])
    assert "address" not in layer["fields"]
    assert doc["aggregation"]["raw_min_zoom"] == gt.RAW_MIN_ZOOM
    inc = client.get("/tiles/incidents.json").get_json()
    assert "mean_p" not in inc["vector_layers"][0]["fields"] and "?" not in inc["tiles"][0]
    heat = client.get("/heat.json?violent=true&z=12").get_json()
    assert heat["tiles"][0].endswith("/heat/{z}/{x}/{y}.png?violent=true")
    assert heat["legend"]["max_density_per_km2"] > 0 and len(heat["legend"]["stops"]) == len(HEAT_RAMP)


def _png(resp) -> np.ndarray:
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(resp.data))
    assert img.size == (256, 256) and img.mode == "RGBA"
    return np.asarray(img)


def test_heat_tiles(client, db):
    with db.connect() as conn:
        lon, lat = conn.execute(sa.text(
            "SELECT ST_X(geom), ST_Y(geom) FROM calls WHERE label ORDER BY call_id LIMIT 1")).one()
    z = 13
    x, y = gt.lonlat_to_tile(lon, lat, z)
    img = _png(client.get(f"/heat/{z}/{x}/{y}.png"))
    # the pixel of the violent call is coloured, and far corners of the tile may not be
    xmin, ymin, xmax, ymax = gt.tile_bounds(z, x, y)
    mx = lon * gt.WORLD / 180
    my = np.log(np.tan(np.radians(90 + lat) / 2)) * gt.WORLD / np.pi
    px, py = int((mx - xmin) / (xmax - xmin) * 256), int((ymax - my) / (ymax - ymin) * 256)
    assert img[py, px, 3] > 0
    assert img[..., 3].min() == 0 or img[..., 3].max() > 0
    empty = _png(client.get("/heat/10/100/100.png"))
    assert empty[..., 3].max() == 0
    none_violent = _png(client.get(f"/heat/{z}/{x}/{y}.png?violent=false"))
    assert none_violent[..., 3].max() == 0
    r = client.get(f"/heat/{z}/{x}/{y}.png")
    assert client.get(f"/heat/{z}/{x}/{y}.png", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304


def test_a_new_call_changes_the_tile_and_its_etag(writable_url):
    app = create_app({"DATABASE_URL": writable_url, "TESTING": True, "VERSION_TTL_S": 0.2})
    client = app.test_client()
    engine = make_engine(writable_url)
    lon, lat = -80.8431, 35.2271
    z = 12
    x, y = gt.lonlat_to_tile(lon, lat, z)
    url = f"/tiles/calls/{z}/{x}/{y}.pbf"
    first = client.get(url)
    before = sum(f["properties"]["count"] for f in decode(first.data)["calls"]["features"])
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    heat_first = client.get(f"/heat/{z}/{x}/{y}.png")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, category, p_violent, label, row_hash, batch_id) "
            "SELECT 'T-' || g, '2021-06-01T12:00:00Z', 'ASSAULT', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), "
            "'violent_crime', 0.9, true, g, 0 FROM generate_series(1, 5) g"), {"lon": lon, "lat": lat})
    time.sleep(0.3)
    after = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != first.headers["ETag"]
    assert sum(f["properties"]["count"] for f in decode(after.data)["calls"]["features"]) == before + 5
    heat_after = client.get(f"/heat/{z}/{x}/{y}.png")
    assert heat_after.headers["ETag"] != heat_first.headers["ETag"] and heat_after.data != heat_first.data
    engine.dispose()


def test_tile_cache_serves_repeats_and_is_bounded(web_url, centre):
    app = create_app({"DATABASE_URL": web_url, "TESTING": True, "TILE_CACHE_MB": 1})
    client = app.test_client()
    urls = [f"/tiles/calls/14/{x}/{y}.pbf" for x, y in
            [(gt.lonlat_to_tile(*centre, 14)[0] + dx, gt.lonlat_to_tile(*centre, 14)[1] + dy)
             for dx in range(-2, 3) for dy in range(-2, 3)]]
    bodies = [client.get(u, headers=GZIP).data for u in urls]
    cache = app.extensions["tile_cache"]
    assert 0 < cache.size_bytes <= 1024 * 1024 and cache.misses == len(urls)
    assert client.get(urls[-1], headers=GZIP).data == bodies[-1]
    assert cache.hits == 1
