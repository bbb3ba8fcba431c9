"""The side panel's response times (geo/police.py) and its what-if control, on the demo data: the JSON
against SQL written out here, and the control in a real headless Chromium against the API's own answer."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.web.conftest import YEAR
from tests.web.test_map_page import Page
from tests.web.test_maps import IN_DATES, db, rows, scalar  # noqa: F401  (db: the module fixture)


def test_division_panel_response_times_match_sql(client, db):
    r = client.get(f"/api/panel/division/Central?start={YEAR}-04-01&end={YEAR}-09-30")
    assert r.status_code == 200
    resp = r.get_json()["response"]
    params = dict(s=f"{YEAR}-04-01", e=f"{YEAR}-10-01")
    where = f"{IN_DATES} AND division_id = '01'"
    # The loader refuses CAD times out of order, so a loaded call is usable where both ends are real instants.
    usable = "received_at_precision = 'time' AND onscene_at_precision = 'time'"
    expected = {str(p): (n, med, p90) for p, n, med, p90 in rows(
        db, f"SELECT priority, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM onscene_at - received_at) / 60),"
            f" percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM onscene_at - received_at) / 60)"
            f" FROM calls WHERE {where} AND {usable} GROUP BY 1", **params)}
    got = {p["priority"]: p["response"] for p in resp["by_priority"] if p["response"]["n"]}
    assert set(got) == set(expected) and len(got) >= 3
    for priority, (n, med, p90) in expected.items():
        assert got[priority]["n"] == n
        assert got[priority]["median_min"] == pytest.approx(med, abs=0.006)
        assert got[priority]["p90_min"] == pytest.approx(p90, abs=0.006)
    assert resp["calls"] == scalar(db, f"SELECT count(*) FROM calls WHERE {where}", **params)
    assert resp["measured"] + sum(resp["left_out"].values()) == resp["calls"]
    # The demo's Priority 1 calls in Central: within CMPD's published range of division averages (5-8.5 min).
    assert 4.0 < got["1"]["median_min"] < 9.0


@pytest.fixture
def page(browser, live_server, app):
    p = Page(browser, live_server, app)
    yield p
    p.page.close()


def test_panel_shows_response_times_and_runs_a_whatif(page):
    page.open(f"?preset=&start={YEAR}-03-01&end={YEAR}-03-31&level=division&layers=divisions&sel=division:01")
    p = page.page
    p.wait_for_selector("#response table.response", timeout=120_000)
    panel = json.loads(urllib.request.urlopen(
        page.base + f"/api/panel/division/01?start={YEAR}-03-01&end={YEAR}-03-31").read())
    shown = [r for r in panel["response"]["by_priority"]]
    assert p.locator("#response table.response tr").count() == 1 + len(shown)
    p1 = next(r for r in shown if r["priority"] == "1")["response"]
    assert p.locator('#response tr[data-priority="1"] td:nth-child(2)').inner_text() == f"{p1['median_min']:.1f}".rstrip("0").rstrip(".")
    # What-if: 4 officers from Central's night shift to division 02's night shift.
    p.wait_for_selector("#whatif-run", timeout=120_000)
    p.fill("#whatif-k", "4")
    p.select_option("#whatif-from-shift", "night")
    p.select_option("#whatif-to-division", "02")
    p.select_option("#whatif-to-shift", "night")
    with p.expect_response(lambda r: "/api/staffing/whatif" in r.url, timeout=120_000) as resp:
        p.click("#whatif-run")
    assert resp.value.status == 200
    assert "move=4%3A01%2Fnight-%3E02%2Fnight" in resp.value.url or "move=4:01/night->02/night" in resp.value.url
    body = resp.value.json()
    p.wait_for_selector("#whatif-result table.whatif", timeout=60_000)
    s = body["summary"]
    cells = p.locator('#whatif-result tr[data-measure="p1_mean_wait_min"] td').all_inner_texts()
    # The page's number format: at most two decimals, no trailing zeros; n/a where the wait has no bound.
    shown = [("n/a" if v is None else f"{v:,.2f}".rstrip("0").rstrip("."))
             for v in (s["p1_mean_wait_min_before"], s["p1_mean_wait_min_after"])]
    assert cells[1:] == shown and cells[0] == "P1 mean wait, min (queueing)"
    assert p.locator('#whatif-result tr[data-measure="sim_p1_response_p90_min"]').count() == 1
    assert page.errors == []


def test_saved_response_times_are_an_ogc_collection_on_the_divisions(writable_url):
    from click.testing import CliRunner

    from geo.cli import main
    from web import create_app

    import sqlalchemy as sa

    engine = sa.create_engine(writable_url)
    with engine.begin() as conn:   # the template saved one run: without it the collection is a 404 naming the command
        conn.execute(sa.text("DELETE FROM analysis_runs WHERE kind = 'response_times'"))
    engine.dispose()
    # VERSION_TTL_S 0: the app re-reads data_versions on every request, so the saved run shows at once.
    client = create_app({"DATABASE_URL": writable_url, "TESTING": True, "VERSION_TTL_S": 0}).test_client()
    missing = client.get("/ogc/collections/response_times/items")
    assert missing.status_code == 404 and "hotspots stats response --by division,priority --save" in \
        missing.get_json()["description"]
    args = ["stats", "response", "--from", f"{YEAR}-03-01", "--to", f"{YEAR}-03-31", "--by", "division,priority"]
    saved = CliRunner().invoke(main, args + ["--save"], env={"DATABASE_URL": writable_url})
    assert saved.exit_code == 0, saved.output
    assert "saved as analysis run" in saved.output
    rows = json.loads(CliRunner().invoke(main, args + ["--format", "json"], env={"DATABASE_URL": writable_url}).output)
    want = {(r["interval"], r["division"], r["priority"]): r for r in rows if r["division"] != "(none)"}
    r = client.get("/ogc/collections/response_times/items?limit=1000&interval=response&priority=1")
    assert r.status_code == 200, r.get_data(as_text=True)
    features = r.get_json()["features"]
    assert len(features) == sum(1 for k in want if k[0] == "response" and k[2] == "1") >= 12
    for f in features:
        props = f["properties"]
        row = want[("response", props["division_id"], "1")]
        assert (props["n"], props["median_min"], props["p90_min"]) == (row["n"], row["median_min"], row["p90_min"])
        assert f["geometry"]["type"] == "MultiPolygon"
    queryables = client.get("/ogc/collections/response_times/queryables").get_json()["properties"]
    assert {"interval", "division_id", "priority"} <= set(queryables)
