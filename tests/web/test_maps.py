"""The map's JSON endpoints: every number compared with SQL written independently here, every error named."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from geo.allocate import allocate
from geo.staffing import build_plan
from geo.db import make_engine
from geo.hotspots import npa_hotspots
from geo.filters import Filter
from geo.metrics import compstat, outreach_flags
from geo.taxonomy import load_taxonomy
from web import create_app

TZ = "America/New_York"
# Local-date bounds written out in SQL here, not through geo.filters: an independent check.
IN_DATES = ("received_at >= (CAST(:s AS timestamp) AT TIME ZONE :tz)"
            " AND received_at < (CAST(:e AS timestamp) AT TIME ZONE :tz)")


@pytest.fixture(scope="module")
def db(web_url):
    engine = make_engine(web_url)
    yield engine
    engine.dispose()


def scalar(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(sa.text(sql), {"tz": TZ, **params}).scalar()


def rows(db, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(sa.text(sql), {"tz": TZ, **params}).all()


def last_day(db) -> date:
    return scalar(db, "SELECT (max(received_at) AT TIME ZONE :tz)::date FROM calls")


# --- page and assets ----------------------------------------------------------------------------
def test_page_loads_leaflet_from_the_app_only(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert '/vendor/leaflet/leaflet.js' in page and '/vendor/leaflet/leaflet.css' in page and "/static/map.js" in page
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def test_leaflet_assets_come_from_xstatic(client):
    from pathlib import Path

    from xstatic.pkg import leaflet

    r = client.get("/vendor/leaflet/leaflet.js")
    assert r.status_code == 200
    assert r.data == (Path(leaflet.BASE_DIR) / "leaflet.js").read_bytes()
    assert client.get("/vendor/leaflet/images/layers.png").status_code == 200
    assert client.get("/vendor/leaflet/../../../etc/passwd").status_code == 404
    assert client.get("/vendor/leaflet/nope.js").status_code == 404
    js = client.get("/static/map.js")
    assert js.status_code == 200 and b"/api/areas/" in js.data


# --- /api/config --------------------------------------------------------------------------------
def test_config_lists_what_the_controls_need(client, db):
    r = client.get("/api/config")
    assert r.status_code == 200
    c = r.get_json()
    assert c["basemap"] is None   # no basemap configured: never a built-in internet URL
    assert [p["id"] for p in c["presets"]] == ["7d", "28d", "365d", "ytd"]
    assert [x["id"] for x in c["categories"]] == list(load_taxonomy().categories)
    codes = [r[0] for r in rows(db, "SELECT division_id FROM divisions ORDER BY 1")]
    assert [d["id"] for d in c["divisions"]] == codes and len(codes) == 14
    assert c["divisions"][0]["name"] == scalar(db, "SELECT name FROM divisions WHERE division_id = :d", d=codes[0])
    assert c["data"]["first"] == scalar(db, "SELECT (min(received_at) AT TIME ZONE :tz)::date FROM calls").isoformat()
    assert c["data"]["last"] == last_day(db).isoformat()
    assert c["hotspot_classes"][0] == "Hot spot, 99% confidence" and len(c["hotspot_classes"]) == 7
    assert c["calls_min_zoom"] == 15 and c["timezone"] == TZ
    assert c["accuracy"] is None   # no `hotspots accuracy` run saved in the served database


def test_config_names_the_latest_accuracy_run(writable_url):
    from geo.accuracy import save_accuracy

    app = create_app({"DATABASE_URL": writable_url, "TESTING": True})
    engine = make_engine(writable_url)
    row = {"source": "incidents", "level": "npa", "hit_rate": 0.4, "pai": 2.5, "rri": 1.1, "hot_areas": 9, "areas": 462,
           "area_share": 0.16}
    run_id = save_accuracy(engine, {"train": ["2021-01-01", "2021-07-01"], "test": ["2021-07-01", "2022-01-01"],
                                    "truth": "incidents", "rows": [row]})
    engine.dispose()
    c = app.test_client().get("/api/config").get_json()
    assert c["accuracy"]["run_id"] == run_id and c["accuracy"]["test"] == ["2021-07-01", "2022-01-01"]
    assert c["accuracy"]["rows"] == [{k: v for k, v in row.items() if k != "area_share"}]


def test_config_passes_the_configured_basemap(web_url):
    app = create_app({"DATABASE_URL": web_url, "TESTING": True,
                      "BASEMAP_URL": "http://tiles.city.local/{z}/{x}/{y}.png", "BASEMAP_ATTRIBUTION": "City GIS"})
    c = app.test_client().get("/api/config").get_json()
    assert c["basemap"] == {"url": "http://tiles.city.local/{z}/{x}/{y}.png", "attribution": "City GIS"}


# --- /api/areas ---------------------------------------------------------------------------------
def test_npa_areas_match_sql_counts_and_rates(client, db):
    r = client.get("/api/areas/npa?start=2021-03-01&end=2021-05-31&category=violent_crime")
    assert r.status_code == 200 and r.mimetype == "application/json"
    fc = r.get_json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 462
    expected = {n: (c, v) for n, c, v in rows(db, (
        "SELECT npa_id, count(*), count(*) FILTER (WHERE label) FROM calls"
        f" WHERE {IN_DATES} AND category = 'violent_crime' AND npa_id IS NOT NULL GROUP BY 1"),
        s=date(2021, 3, 1), e=date(2021, 6, 1))}
    population = dict(rows(db, "SELECT npa_id, population FROM neighborhoods"))
    assert sum(c for c, _ in expected.values()) > 100
    for f in fc["features"]:
        p = f["properties"]
        calls, violent = expected.get(f["id"], (0, 0))
        assert (p["calls"], p["violent"]) == (calls, violent), f["id"]
        assert p["population"] == population[f["id"]]
        if population[f["id"]]:
            assert p["violent_per_1000"] == pytest.approx(violent / population[f["id"]] * 1000, abs=5e-4)
            assert p["calls_per_1000"] == pytest.approx(calls / population[f["id"]] * 1000, abs=5e-4)
        else:
            assert p["violent_per_1000"] is None
        assert f["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_area_geometry_is_simplified_for_the_browser(client, db):
    fc = client.get("/api/areas/division").get_json()
    sent = sum(len(ring) for f in fc["features"] for ring in _rings(f["geometry"]))
    stored = scalar(db, "SELECT sum(ST_NPoints(geom)) FROM divisions")
    assert sent < 0.25 * stored
    # Still the same shapes: every division's area within 1% of the stored one.
    import shapely.geometry

    areas = dict(rows(db, "SELECT division_id, ST_Area(geom) FROM divisions"))
    for f in fc["features"]:
        assert shapely.geometry.shape(f["geometry"]).area == pytest.approx(areas[f["id"]], rel=0.01)
    # Coordinates are rounded to 5 decimals (about a metre).
    x = fc["features"][0]["geometry"]["coordinates"]
    while isinstance(x[0], list):
        x = x[0]
    assert all(round(v, 5) == v for v in x)


def _rings(geometry):
    if geometry["type"] == "Polygon":
        return geometry["coordinates"]
    return [ring for poly in geometry["coordinates"] for ring in poly]


def test_division_areas_with_division_violent_and_probability_filters(client, db):
    fc = client.get("/api/areas/division?preset=28d&division=Central&violent=true&min_p=0.3").get_json()
    assert len(fc["features"]) == 14
    end = last_day(db) + timedelta(days=1)
    n = scalar(db, f"SELECT count(*) FROM calls WHERE {IN_DATES} AND division_id = '01' AND label AND p_violent >= 0.3",
               s=end - timedelta(days=28), e=end)
    got = {f["id"]: f["properties"] for f in fc["features"]}
    assert n > 0 and got["01"]["calls"] == n and got["01"]["violent"] == n
    assert all(p["calls"] == 0 for k, p in got.items() if k != "01")
    assert got["01"]["name"] == "Central Division" and "violent_per_1000" not in got["01"]


def test_preset_is_the_same_as_its_dates(client, db):
    end = last_day(db)
    a = client.get("/api/areas/npa?preset=7d").get_json()
    b = client.get(f"/api/areas/npa?start={end - timedelta(days=6)}&end={end}").get_json()
    assert [f["properties"]["calls"] for f in a["features"]] == [f["properties"]["calls"] for f in b["features"]]
    assert sum(f["properties"]["calls"] for f in a["features"]) > 0


def test_areas_revalidate_with_etag(client):
    r = client.get("/api/areas/division?category=traffic")
    assert r.headers["ETag"]
    again = client.get("/api/areas/division?category=traffic", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    other = client.get("/api/areas/division?category=alarms")
    assert other.headers["ETag"] != r.headers["ETag"]


def test_cached_areas_follow_new_calls(writable_url):
    """The memo is keyed on the calls' data version: a new call shows at once."""
    app = create_app({"DATABASE_URL": writable_url, "TESTING": True, "VERSION_TTL_S": 0})
    c = app.test_client()
    url = "/api/areas/division?start=2021-06-01&end=2021-06-01"
    before = {f["id"]: f["properties"]["calls"] for f in c.get(url).get_json()["features"]}
    engine = make_engine(writable_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, division_id, npa_id, label, p_violent, row_hash,"
            " batch_id, category) SELECT 'TEST-MAP-1', '2021-06-01 12:00-04', 'ASSAULT', geom, division_id, npa_id,"
            " true, 0.9, 1, batch_id, 'violent_crime' FROM calls WHERE division_id = '02' LIMIT 1"))
    engine.dispose()
    after = {f["id"]: f["properties"]["calls"] for f in c.get(url).get_json()["features"]}
    assert after["02"] == before["02"] + 1
    assert {k: v for k, v in after.items() if k != "02"} == {k: v for k, v in before.items() if k != "02"}


# --- /api/hotspots ------------------------------------------------------------------------------
def test_hotspots_equal_the_analysis_module(client, db):
    r = client.get("/api/hotspots/npa?start=2021-01-01&end=2021-12-31")
    assert r.status_code == 200
    fc = r.get_json()
    assert len(fc["features"]) == 462 and fc["measure"] == "violent"
    assert fc["source"].startswith("labelled: calls the model labelled violent")
    reference = npa_hotspots(db, Filter.local_days(date(2021, 1, 1), date(2022, 1, 1)), source="labelled",
                             permutations=0).set_index("npa_id")
    for f in fc["features"]:
        p = f["properties"]
        ref = reference.loc[f["id"]]
        assert p["value"] == ref["value"]
        assert p["gi_z"] == pytest.approx(ref["gi_z"], abs=1e-4)
        assert p["gi_q"] == pytest.approx(ref["gi_q"], rel=1e-6, abs=1e-12)
        assert p["hotspot_class"] == ref["hotspot_class"]
    classes = [f["properties"]["hotspot_class"] for f in fc["features"]]
    assert set(classes) <= set(fc["classes"])
    assert fc["summary"] == {k: classes.count(k) for k in set(classes)}
    assert sum(v for k, v in fc["summary"].items() if k.startswith("Hot")) > 0


def test_hotspots_of_all_calls_in_a_division(client, db):
    fc = client.get("/api/hotspots/npa?preset=365d&measure=calls&division=01").get_json()
    counts = dict(rows(db, "SELECT npa_id, count(*) FROM calls WHERE division_id = '01' GROUP BY 1"))
    values = {f["id"]: f["properties"]["value"] for f in fc["features"]}
    assert {k: v for k, v in values.items() if v} == {k: float(v) for k, v in counts.items() if k is not None}


# --- /api/panel ---------------------------------------------------------------------------------
def test_division_panel_matches_sql(client, db):
    r = client.get("/api/panel/division/Central?start=2021-04-01&end=2021-09-30&officers=200")
    assert r.status_code == 200
    d = r.get_json()
    assert d["area"]["id"] == "01" and d["area"]["name"] == "Central Division"
    assert d["period"] == ["2021-04-01", "2021-09-30"]
    params = dict(s=date(2021, 4, 1), e=date(2021, 10, 1))
    where = f"{IN_DATES} AND division_id = '01'"
    t = d["totals"]
    assert t["calls"] == scalar(db, f"SELECT count(*) FROM calls WHERE {where}", **params)
    assert t["violent"] == scalar(db, f"SELECT count(*) FROM calls WHERE {where} AND label", **params)
    assert t["expected_violent"] == pytest.approx(scalar(db, f"SELECT sum(p_violent) FROM calls WHERE {where}", **params), abs=0.01)
    # Categories: counts from SQL, shares that add up to one.
    cats = dict(rows(db, f"SELECT category, count(*) FROM calls WHERE {where} GROUP BY 1", **params))
    assert {c["category"]: c["calls"] for c in d["categories"]} == cats
    assert sum(c["share"] for c in d["categories"]) == pytest.approx(1, abs=1e-3)
    assert [c["calls"] for c in d["categories"]] == sorted(cats.values(), reverse=True)
    # 7x24: Monday first, local hours, and one cell checked against SQL.
    hw = d["hour_weekday"]
    assert hw["weekdays"][0] == "Mon" and len(hw["counts"]) == 7 and all(len(r) == 24 for r in hw["counts"])
    date_only = scalar(db, f"SELECT count(*) FROM calls WHERE {where} AND received_at_precision = 'date'", **params)
    assert sum(map(sum, hw["counts"])) == t["calls"] - date_only and hw["left_out_date_only"] == date_only
    friday_22 = scalar(db, f"SELECT count(*) FROM calls WHERE {where} AND extract(isodow FROM received_at AT TIME ZONE :tz) = 5"
                           " AND extract(hour FROM received_at AT TIME ZONE :tz) = 22 AND received_at_precision <> 'date'",
                       **params)
    assert hw["counts"][4][22] == friday_22
    # Shaded by the mean per occurrence: 1 April - 30 September 2021 is 26 weeks and a Thursday.
    assert hw["statistic"] == "mean per occurrence"
    assert [row[12] for row in hw["occurrences"]] == [26, 26, 26, 27, 26, 26, 26]
    assert hw["mean"][4][22] == pytest.approx(friday_22 / 26, abs=5e-4)
    assert hw["mean"][3][22] == pytest.approx(hw["counts"][3][22] / 27, abs=5e-4)
    assert hw["max_mean"] == max(max(row) for row in hw["mean"])


def test_division_panel_compstat_outreach_and_allocation(client, db):
    d = client.get("/api/panel/division/02?start=2021-04-01&end=2021-09-30&officers=200").get_json()
    cs = d["compstat"]
    # Report date 1 October 2021 (a Friday): the report week ends on Sunday 26 September.
    assert (cs["as_of"], cs["report_end"], cs["compare"]) == ("2021-10-01", "2021-09-26", "year")
    windows = {w["window"]: w for w in cs["windows"]}
    assert list(windows) == ["week", "28 days", "year to date"]
    assert windows["week"]["current_period"] == ["2021-09-20", "2021-09-26"]
    assert windows["week"]["prior_period"] == ["2020-09-21", "2020-09-27"]
    # 2020 is not in the data: no comparison with a year earlier is invented.
    assert all(w["data_covers_both"] is False and w["pct_change"] is None and w["p_value"] is None
               and not w["significant"] for w in windows.values())
    # Back to back (an option): the 28 days against the 28 before, tested.
    b2b = client.get("/api/panel/division/02?start=2021-04-01&end=2021-09-30&officers=200&compare=previous").get_json()
    w = {w["window"]: w for w in b2b["compstat"]["windows"]}["28 days"]
    current = scalar(db, f"SELECT count(*) FROM calls WHERE {IN_DATES} AND division_id = '02'",
                     s=date(2021, 8, 30), e=date(2021, 9, 27))
    prior = scalar(db, f"SELECT count(*) FROM calls WHERE {IN_DATES} AND division_id = '02'",
                   s=date(2021, 8, 2), e=date(2021, 8, 30))
    assert (w["current"], w["prior"]) == (current, prior) and w["data_covers_both"]
    assert w["pct_change"] == pytest.approx((current - prior) / prior * 100, abs=0.05)
    assert w["history_pairs"] == 3 and w["dispersion"] >= 1 and w["significant"] == (w["q_value"] < 0.05)
    # One CompStat: the panel's numbers are the library's for that division (FDR across all 14).
    table = compstat(db, date(2021, 10, 1), by="division", flt=Filter(), compare="previous")
    mine = table[(table["area"] == "02") & (table["window"] == "28 days")].iloc[0]
    assert len(table[table["window"] == "28 days"]) == 14
    assert (w["p_value"], w["q_value"]) == (round(mine["p_value"], 4), round(mine["q_value"], 4))

    period = Filter.local_days(date(2021, 4, 1), date(2021, 10, 1))
    flags = outreach_flags(db, period, "division")
    mine = flags[flags["area"] == "02"]
    assert sorted(f["category"] for f in d["outreach"]["flags"]) == sorted(mine["category"])

    table, reasons = allocate(db, 200, period)
    ours = table[table["division_id"] == "02"]
    al = d["allocation"]
    assert al["officers"] == int(ours["officers"].sum()) and al["officers_citywide"] == 200
    assert {s["shift"]: s["officers"] for s in al["shifts"]} == dict(zip(ours["shift"], ours["officers"]))
    assert al["reasoning"] == reasons["02"]
    # The queueing plan for the same 200 officers: the library's rows for division 02.
    plan = build_plan(db, period, officers=200)
    mine = plan[plan["division"] == "02"].set_index("shift")
    st = d["staffing"]
    assert st["officers_citywide"] == int(plan["officers"].sum()) <= 200 and st["officers_given"] == 200
    assert {s["shift"]: (s["units"], s["officers"]) for s in st["shifts"]} == {
        k: (int(r.units), int(r.officers)) for k, r in mine.iterrows()}
    assert [s["p_wait"] for s in st["shifts"]] == [round(v, 4) for v in mine["p_wait"]]
    # The demo's calls carry CAD times (issue 15): the plan measures its service times from them.
    assert st["service_times"] == "measured service times" == ", ".join(sorted(set(mine["service_times"]))) \
        + " service times"


def test_panel_outreach_and_allocation_honour_the_whole_filter(client, db):
    """A condition beyond the dates (here: calls not labelled violent) changes the panel's outreach and
    allocation exactly as it changes the library's, which the CLI prints: one measure, one filter."""
    period = Filter.local_days(date(2021, 4, 1), date(2021, 10, 1))
    narrowed = period.narrowed(violent=False)
    flags = outreach_flags(db, narrowed, "division")
    assert len(flags) > 0
    area = str(flags.iloc[0]["area"])
    url = f"/api/panel/division/{area}?start=2021-04-01&end=2021-09-30&officers=200"
    whole, filtered = client.get(url).get_json(), client.get(url + "&violent=false").get_json()
    mine = flags[flags["area"] == area].sort_values("category")
    got = sorted(filtered["outreach"]["flags"], key=lambda f: f["category"])
    assert [(f["category"], f["calls"], f["share"]) for f in got] == [
        (r.category, int(r.calls), round(float(r.share), 4)) for r in mine.itertuples()]
    unfiltered = outreach_flags(db, period, "division")
    before = unfiltered[unfiltered["area"] == area].set_index("category")["share"].round(4).to_dict()
    assert {f["category"]: f["share"] for f in got} != before   # the filter really changed the numbers
    table, reasons = allocate(db, 200, narrowed)
    ours = table[table["division_id"] == area]
    al = filtered["allocation"]
    assert {s["shift"]: s["workload_hours"] for s in al["shifts"]} == dict(zip(ours["shift"], ours["workload_hours"]))
    assert al["reasoning"] == reasons[area]
    assert al["shifts"] != whole["allocation"]["shifts"]


def test_npa_panel_rates_and_division(client, db):
    npa, population = rows(db, "SELECT npa_id, population FROM neighborhoods WHERE population > 1000 ORDER BY npa_id LIMIT 1")[0]
    d = client.get(f"/api/panel/npa/{npa}?start=2021-01-01&end=2021-12-31&violent=true").get_json()
    violent = scalar(db, f"SELECT count(*) FROM calls WHERE {IN_DATES} AND npa_id = :n AND label",
                     s=date(2021, 1, 1), e=date(2022, 1, 1), n=npa)
    assert d["totals"]["calls"] == d["totals"]["violent"] == violent
    assert d["totals"]["violent_per_1000"] == pytest.approx(violent / population * 1000, abs=5e-4)
    assert d["area"]["population"] == population
    division = scalar(db, "SELECT d.division_id FROM divisions d JOIN neighborhoods n"
                          " ON ST_Contains(d.geom, ST_PointOnSurface(n.geom)) WHERE n.npa_id = :n", n=npa)
    assert d["area"]["division_id"] == division and d["allocation"]["division_id"] == division


# --- errors -------------------------------------------------------------------------------------
ENDPOINTS = ["/api/areas/npa", "/api/areas/division", "/api/hotspots/npa", "/api/panel/division/01", "/api/panel/npa/2"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("query, parameter", [
    ("start=2021-02-30", "start"), ("end=yesterday", "end"), ("preset=3d", "preset"),
    ("start=2021-05-01&end=2021-04-01", "start"), ("division=Atlantis", "division"), ("category=jaywalking", "category"),
    ("violent=perhaps", "violent"), ("min_p=2", "min_p"), ("bbox=1,2,3", "bbox"),
])
def test_bad_filters_are_400_naming_the_parameter(client, endpoint, query, parameter):
    r = client.get(f"{endpoint}?{query}")
    assert r.status_code == 400, r.data
    body = r.get_json()
    assert body["parameter"] == parameter and body["code"] == "InvalidParameterValue"
    assert "Traceback" not in r.get_data(as_text=True)


@pytest.mark.parametrize("url, status, parameter", [
    ("/api/areas/county", 404, "level"),
    ("/api/hotspots/county", 404, "level"),
    ("/api/hotspots/division", 404, "level"),
    ("/api/panel/county/1", 404, "level"),
    ("/api/panel/division/Atlantis", 404, "id"),
    ("/api/panel/npa/999999", 404, "id"),
    ("/api/panel/npa/two", 400, "id"),
    ("/api/panel/division/01?officers=10", 400, "officers"),
    ("/api/panel/division/01?officers=many", 400, "officers"),
    ("/api/panel/division/01?compare=month", 400, "compare"),
    ("/api/hotspots/npa?measure=arrests", 400, "measure"),
])
def test_unknown_levels_ids_and_options_are_named(client, url, status, parameter):
    r = client.get(url)
    assert r.status_code == status, r.data
    assert r.get_json()["parameter"] == parameter
    assert r.get_json()["description"]
