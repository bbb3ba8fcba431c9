"""`hotspots report`: a standalone division map that opens offline, with the division's NPAs and its numbers."""

from __future__ import annotations

import json
import re
from datetime import date
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo.cli import main
from geo.demo import generate_and_load
from geo.report import MIN_OVERLAP, division_npas
from tests.clusters import cloned_database


@pytest.fixture(scope="module")
def report_db(server_url, template_db, data_dir, tmp_path_factory):
    """A database with 90 days of synthetic calls, labelled by a fixed rule (the model has its own tests)."""
    with cloned_database(server_url, template_db, "r_") as (name, engine):
        url = server_url.set(database=name).render_as_string(hide_password=False)
        _load_report_data(engine, data_dir, tmp_path_factory.mktemp("r") / "d")
        yield url, engine


def _load_report_data(engine, data_dir, out) -> None:
    generate_and_load(n_calls=12_000, start=date(2021, 3, 1), days=90, seed=3, out=out,
                      engine=engine, data_dir=data_dir, progress=False)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET label = (category = 'violent_crime'),"
                             " p_violent = CASE WHEN category = 'violent_crime' THEN 0.9 ELSE 0.05 END"))


class References(HTMLParser):
    """Every src/href attribute of every tag (script bodies are data, not tags)."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.script_src = 0

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append((tag, k, v))
                if tag == "script" and k == "src":
                    self.script_src += 1


@pytest.fixture(scope="module")
def central(report_db, tmp_path_factory):
    url, engine = report_db
    out = tmp_path_factory.mktemp("report") / "central.html"
    result = CliRunner().invoke(main, ["report", "--division", "Central", "--start", "2021-03-01", "--end", "2021-05-29",
                                       "--out", str(out)], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return out, result.output, engine


def test_report_has_no_external_references(central):
    out, _, _ = central
    text = out.read_text()
    parser = References()
    parser.feed(text)
    external = [r for r in parser.refs if r[2].lower().startswith(("http:", "https:", "//"))]
    assert external == []
    assert parser.script_src == 0      # Leaflet and folium's code are inline
    assert "url(http" not in text and "cdn.jsdelivr" not in text and "code.jquery" not in text
    assert "L.map(" in text and "Leaflet" in text   # the inlined library and folium's map script


def test_report_lists_the_division_npas_and_numbers(central):
    out, output, engine = central
    text = out.read_text()
    npas = division_npas(engine, "01")
    with engine.connect() as conn:
        shares = dict(conn.execute(sa.text(
            "SELECT n.npa_id, ST_Area(ST_Intersection(n.geom, d.geom)) / ST_Area(n.geom) FROM neighborhoods n"
            " JOIN divisions d ON ST_Intersects(n.geom, d.geom) WHERE d.division_id = '01'")).all())
        violent = conn.execute(sa.text(
            "SELECT count(*) FROM calls WHERE division_id = '01' AND label"
            " AND received_at >= '2021-03-01 00:00-05' AND received_at < '2021-05-30 00:00-04'")).scalar()
        per_npa = dict(conn.execute(sa.text(
            "SELECT npa_id, count(*) FROM calls WHERE label AND received_at >= '2021-03-01 00:00-05'"
            " AND received_at < '2021-05-30 00:00-04' GROUP BY 1")).all())
    assert set(npas) == {n for n, s in shares.items() if s >= MIN_OVERLAP} and len(npas) >= 5
    # The map's features (folium embeds the GeoJSON in the page).
    features = {p["npa"]: p for p in map(json.loads, re.findall(r'"properties": (\{[^{}]*\})', text)) if "npa" in p}
    assert set(features) == set(npas)
    for npa in npas:
        assert f"<td>NPA {npa}</td>" in text
        assert features[npa]["violent"] == per_npa.get(npa, 0)
    outside = [n for n, s in shares.items() if s < 0.05][:3]
    assert outside and not any(f"<td>NPA {n}</td>" in text for n in outside)
    assert f"{violent:,} labelled violent" in text
    assert "Central Division: violent calls 2021-03-01 to 2021-05-29" in text
    assert f"{len(npas)} NPAs" in output


def test_report_opens_offline_in_chromium(central):
    from playwright.sync_api import sync_playwright

    out, _, engine = central
    requested, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def only_files(route):
            requested.append(route.request.url)
            route.continue_() if route.request.url.startswith("file:") else route.abort()

        page.route("**/*", only_files)
        page.goto(out.as_uri())
        page.wait_for_selector("path.leaflet-interactive")
        paths = page.locator("path.leaflet-interactive").count()
        rows = page.locator("table.summary tbody tr").count()
        browser.close()
    assert errors == []
    assert [u for u in requested if not u.startswith("file:")] == []
    npas = len(division_npas(engine, "01"))
    assert rows == npas and paths == npas + 1   # the NPAs and the division outline


def test_report_names_a_bad_option(report_db, tmp_path):
    url, _ = report_db
    r = CliRunner().invoke(main, ["report", "--division", "Atlantis", "--out", str(tmp_path / "x.html")],
                           env={"DATABASE_URL": url})
    assert r.exit_code == 2 and "--division" in r.output and "Atlantis" in r.output
    r = CliRunner().invoke(main, ["report", "--division", "01", "--start", "2021-02-30", "--out", str(tmp_path / "x.html")],
                           env={"DATABASE_URL": url})
    assert r.exit_code == 2 and "--start" in r.output
    assert not (tmp_path / "x.html").exists()
