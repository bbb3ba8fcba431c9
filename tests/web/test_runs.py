"""One answer per question across OGC items, tiles and exports: a missing run, an unknown layer, a bbox."""

from __future__ import annotations

import csv
import io
import json

import sqlalchemy as sa

from geo import tiles as gt
from web import create_app

MISSING = 99_999


def _three(layer: str, query: str = "") -> dict[str, str]:
    """The same layer asked for through items, a tile and an export."""
    tail = f"?{query}" if query else ""
    return {"items": f"/ogc/collections/{layer}/items{tail}",
            "tile": f"/tiles/{layer}/3/2/3.pbf{tail}",
            "export": f"/export/{layer}.csv{tail}"}


def _errors(client, urls: dict[str, str]) -> dict[str, tuple[int, dict]]:
    out = {}
    for route, url in urls.items():
        r = client.get(url)
        assert r.mimetype == "application/json", (route, r.status_code, r.get_data(as_text=True)[:200])
        out[route] = (r.status_code, r.get_json())
    return out


def test_a_run_that_is_not_saved_is_one_404_everywhere(client, web_url):
    engine = sa.create_engine(web_url)
    with engine.connect() as conn:
        saved = conn.execute(sa.text("SELECT run_id FROM analysis_runs WHERE kind = 'calls_grid_hotspots'"
                                     " ORDER BY run_id DESC")).scalars().all()
    engine.dispose()
    answers = _errors(client, _three("hotspot_cells", f"run={MISSING}"))
    bodies = [body for _, body in answers.values()]
    assert {status for status, _ in answers.values()} == {404}
    assert all(b == bodies[0] for b in bodies), answers     # the very same document from all three routes
    body = bodies[0]
    assert body["code"] == "NotFound" and body["parameter"] == "run"
    assert body["layer"] == "hotspot_cells" and body["run"] == MISSING
    assert f"no saved hotspot_cells run {MISSING}" in body["description"]
    assert saved and str(saved[0]) in body["description"]   # the saved runs are listed to choose from
    # A single feature of a run that is not saved answers the same.
    r = client.get(f"/ogc/collections/hotspot_cells/items/1_1?run={MISSING}")
    assert r.status_code == 404 and r.get_json() == body


def test_a_layer_with_no_saved_run_is_one_404_everywhere(writable_url):
    engine = sa.create_engine(writable_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM analysis_runs WHERE kind = 'calls_grid_hotspots'"))
    engine.dispose()
    client = create_app({"DATABASE_URL": writable_url, "TESTING": True}).test_client()
    answers = _errors(client, _three("hotspot_cells"))
    bodies = [body for _, body in answers.values()]
    assert {status for status, _ in answers.values()} == {404}
    assert all(b == bodies[0] for b in bodies), answers
    assert bodies[0]["parameter"] == "run" and bodies[0]["layer"] == "hotspot_cells" and bodies[0]["run"] is None
    assert "no hotspot_cells run has been saved yet" in bodies[0]["description"]
    assert "hotspots hotspots --grid-ft" in bodies[0]["description"]
    # The collection itself is still listed and described, with no run.
    r = client.get("/ogc/collections/hotspot_cells")
    assert r.status_code == 200 and r.get_json()["run"] is None
    assert client.get("/ogc/collections/hotspot_npas").get_json()["run"] is not None


def test_an_unknown_layer_is_named_the_same_way_everywhere(client):
    answers = _errors(client, _three("roads"))
    assert {status for status, _ in answers.values()} == {404}
    descriptions = {body["description"] for _, body in answers.values()}
    assert len(descriptions) == 1 and descriptions.pop().startswith("unknown layer 'roads'; one of calls, ")
    assert {body["layer"] for _, body in answers.values()} == {"roads"}
    # Each names the path parameter its API description gives the layer.
    assert {route: body["parameter"] for route, (_, body) in answers.items()} == {
        "items": "collectionId", "tile": "layer", "export": "layer"}
    assert client.get("/tiles/roads.json").get_json()["description"] == answers["tile"][1]["description"]


def _bbox_where_envelopes_and_outlines_differ(engine) -> tuple[str, set[int], set[int]]:
    """A small box at the corner of an NPA's bounding box that its outline does not reach."""
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT ST_XMin(geom), ST_YMin(geom) FROM neighborhoods n"
            " WHERE NOT ST_Intersects(geom, ST_MakeEnvelope(ST_XMin(geom), ST_YMin(geom),"
            "                                               ST_XMin(geom) + 0.001, ST_YMin(geom) + 0.001, 4326))"
            " ORDER BY npa_id LIMIT 1")).one()
        box = (row[0], row[1], row[0] + 0.001, row[1] + 0.001)
        env = "ST_MakeEnvelope(:a, :b, :c, :d, 4326)"
        values = dict(zip("abcd", box))
        intersecting = set(conn.execute(sa.text(
            f"SELECT npa_id FROM neighborhoods WHERE ST_Intersects(geom, {env})"), values).scalars())
        overlapping = set(conn.execute(sa.text(
            f"SELECT npa_id FROM neighborhoods WHERE geom && {env}"), values).scalars())
    return ",".join(repr(v) for v in box), intersecting, overlapping


def test_one_bbox_selects_the_same_polygons_in_items_and_exports(client, web_url):
    engine = sa.create_engine(web_url)
    bbox, intersecting, overlapping = _bbox_where_envelopes_and_outlines_differ(engine)
    engine.dispose()
    assert intersecting < overlapping   # the box tells the two predicates apart
    for layer in ("neighborhoods", "hotspot_npas"):
        items = client.get(f"/ogc/collections/{layer}/items?limit=1000&bbox={bbox}").get_json()
        from_items = {f["properties"]["npa_id"] for f in items["features"]}
        text = client.get(f"/export/{layer}.csv?bbox={bbox}").get_data(as_text=True)
        from_csv = {int(r["npa_id"]) for r in csv.DictReader(io.StringIO(text))}
        doc = json.loads(client.get(f"/export/{layer}.geojson?bbox={bbox}").get_data())
        from_geojson = {f["properties"]["npa_id"] for f in doc["features"]}
        assert from_items == from_csv == from_geojson == intersecting, layer


def test_tile_layers_are_views_of_the_catalog():
    from geo import catalog

    assert set(gt.TILE_LAYERS) == set(catalog.LAYERS)
    assert all(gt.tile_layer(name).layer is catalog.layer(name) for name in catalog.LAYERS)


def _second_npa_run(engine) -> tuple[int, int, dict[int, float]]:
    """A second hotspot_npas run beside the latest saved one, on three NPAs with values of its own."""
    with engine.begin() as conn:
        first = conn.execute(sa.text(
            "SELECT run_id FROM analysis_runs WHERE run_id IN (SELECT run_id FROM hotspot_npa_results)"
            " ORDER BY created_at DESC, run_id DESC LIMIT 1")).scalar_one()
        second = conn.execute(sa.text("INSERT INTO analysis_runs (kind, params) SELECT kind, params"
                                      " FROM analysis_runs WHERE run_id = :r RETURNING run_id"), {"r": first}).scalar_one()
        npas = conn.execute(sa.text("SELECT npa_id FROM hotspot_npa_results WHERE run_id = :r ORDER BY npa_id LIMIT 3"),
                            {"r": first}).scalars().all()
        values = {int(n): 1000.0 + i for i, n in enumerate(npas)}
        for npa, value in values.items():
            conn.execute(sa.text(
                "INSERT INTO hotspot_npa_results (run_id, npa_id, value, gi_z, gi_p, gi_q, hotspot_class)"
                " VALUES (:r, :n, :v, 0, 1, 1, 'Not Significant')"), {"r": second, "n": npa, "v": value})
    return first, second, values


def test_each_route_serves_the_asked_runs_rows_only_when_two_runs_exist(writable_url):
    import mapbox_vector_tile

    engine = sa.create_engine(writable_url)
    first, second, values = _second_npa_run(engine)
    with engine.connect() as conn:
        first_rows = conn.execute(sa.text("SELECT count(*) FROM hotspot_npa_results WHERE run_id = :r"),
                                  {"r": first}).scalar_one()
    engine.dispose()
    assert first_rows > len(values)   # the runs differ in size: a mix would show
    client = create_app({"DATABASE_URL": writable_url, "TESTING": True}).test_client()
    for run, expected in ((second, values), (first, None)):
        items = client.get(f"/ogc/collections/hotspot_npas/items?limit=1000&run={run}").get_json()
        from_items = {f["properties"]["npa_id"]: f["properties"]["value"] for f in items["features"]}
        assert {f["properties"]["run_id"] for f in items["features"]} == {run}
        text = client.get(f"/export/hotspot_npas.csv?run={run}").get_data(as_text=True)
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {int(r["run_id"]) for r in rows} == {run}
        tile = client.get(f"/tiles/hotspot_npas/3/2/3.pbf?run={run}")
        assert tile.status_code == 200
        features = mapbox_vector_tile.decode(tile.data)["hotspot_npas"]["features"]
        assert {f["properties"]["run_id"] for f in features} == {run}
        if expected is not None:
            assert from_items == expected
            assert {int(r["npa_id"]): float(r["value"]) for r in rows} == expected
            assert {f["properties"]["npa_id"]: f["properties"]["value"] for f in features} == expected
        else:
            assert len(from_items) == len(rows) == first_rows and not set(values.values()) & set(from_items.values())
    # Without `run` the latest run (the second) is served.
    latest = client.get("/ogc/collections/hotspot_npas/items?limit=1000").get_json()
    assert {f["properties"]["npa_id"] for f in latest["features"]} == set(values)
