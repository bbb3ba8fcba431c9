"""The model report and the CompStat page per division: served, written by the CLI, drawn in headless Chromium."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from markupsafe import escape
from PIL import Image

from geo.cli import main
from geo.db import make_engine
from geo.filters import Filter
from geo.metrics import compstat, data_coverage, hour_weekday, report_end
from geo.pages import COMPSTAT_PNG, MODEL_PNG, TREND_WEEKS, resolve_division
from geo.taxonomy import VIOLENT_NUMBERS
from tests.web.conftest import YEAR


@pytest.fixture(scope="module")
def engine(web_url):
    e = make_engine(web_url)
    yield e
    e.dispose()


def _open(browser, url: str):
    """The page at `url`, with console errors and requests to other hosts recorded (and refused)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    host = url.split("/", 3)[2]

    def same_host(route):
        if route.request.url.split("/", 3)[2] == host:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", same_host)
    page.goto(url)
    return page, errors, outside


def _metrics(engine) -> dict:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT metrics FROM model_runs WHERE is_current")).scalar_one()


def test_model_report_draws_the_stored_curves_in_chromium(browser, live_server, engine):
    metrics = _metrics(engine)
    page, errors, outside = _open(browser, live_server + "/reports/model")
    try:
        roc = {s.get_attribute("data-series"): int(s.get_attribute("data-points"))
               for s in page.locator("#roc polyline.series").all()}
        pr_model = int(page.locator('#pr polyline[data-series="model"]').get_attribute("data-points"))
        dots = page.locator("#reliability circle").count()
        labels = page.locator("#roc text.axis-label").all_text_contents()
        effects = page.locator("#effects li").all_inner_texts()
        headline = page.locator("#headline").inner_text()
        numbers = page.locator("#violent-numbers dt").all_inner_texts()
        box = page.locator("#roc").bounding_box()
    finally:
        page.close()
    assert errors == [] and outside == []
    assert roc == {"model": len(metrics["model"]["curves"]["roc"]),
                   "call type alone": len(metrics["call_type_baseline"]["curves"]["roc"]), "chance": 2}
    assert pr_model == len(metrics["model"]["curves"]["pr"])
    assert dots == len(metrics["model"]["calibration"])
    assert labels == ["false positive rate", "true positive rate (recall)"]
    assert box["width"] > 300 and box["height"] > 200   # drawn, not collapsed
    # Effects in words with probabilities, never odds ratios.
    assert len(effects) == 10
    assert all((" raises it from " in e or " lowers it from " in e) and e.endswith("%") for e in effects)
    assert f"{metrics['model']['roc_auc']:.0%} of the time" in headline
    assert "R@90%P" not in headline and "9 in 10 flagged calls" in headline
    assert numbers == [name for name, _ in VIOLENT_NUMBERS]


def test_compstat_page_matches_the_library_in_chromium(browser, live_server, engine):
    code, name = resolve_division(engine, "01")
    page, errors, outside = _open(browser, live_server + f"/reports/compstat/{name}")
    try:
        title = page.locator("h1").inner_text()
        cell = page.locator('#hours rect[data-day="Fri"][data-hour="22"]').get_attribute("data-value")
        cells = page.locator("#hours rect.cell").count()
        now_points = int(page.locator("#trend polyline.series").first.get_attribute("data-points"))
        four = page.locator('#windows tr[data-window="28 days"] td').all_inner_texts()
        changes = page.locator("#top-changes tr[data-npa] td:nth-child(4)").all_inner_texts()
        numbers = page.locator("#violent-numbers dt").count()
    finally:
        page.close()
    assert errors == [] and outside == []
    assert title == f"CompStat: {name} ({code})"
    # The same library calls with the page's defaults: as of the day after the newest call.
    last = data_coverage(engine, "calls")[1]
    end = report_end(last + timedelta(days=1)) + timedelta(days=1)
    start = end - timedelta(days=7 * TREND_WEEKS)
    matrix = hour_weekday(engine, Filter.local_days(start, end, division=code))
    assert cell == f"{matrix.mean.loc['Fri', 22]:.2f}" and cells == 7 * 24
    table = compstat(engine, last + timedelta(days=1), by="division", flt=Filter(), source="incidents")
    row = table[(table["area"] == code) & (table["window"] == "28 days")].iloc[0]
    assert four[1:3] == [f"{row.current:,}", f"{row.prior:,}"]
    # One point per week inside the data (the demo year), none before it.
    first = data_coverage(engine, "incidents")[0]
    assert now_points == sum(1 for i in range(TREND_WEEKS) if start + timedelta(days=7 * i) >= first)
    deltas = [abs(int(c.replace(",", ""))) for c in changes]
    assert 0 < len(deltas) <= 10 and deltas == sorted(deltas, reverse=True)
    assert numbers == 3


def test_pages_refuse_unknown_divisions_and_options(client):
    resp = client.get("/reports/compstat/Centrall")
    assert resp.status_code == 404 and resp.json["parameter"] == "division"
    assert "Central" in resp.json["description"]   # the valid names are listed
    resp = client.get("/reports/compstat/01?as_of=2021-13-01")
    assert resp.status_code == 400 and resp.json["parameter"] == "as_of"
    resp = client.get("/reports/compstat/01?source=violent")
    assert resp.status_code == 400 and resp.json["parameter"] == "source"
    resp = client.get("/reports/model?version=lr-nope")
    assert resp.status_code == 404 and resp.json["parameter"] == "version"


def test_the_map_page_explains_the_three_violent_numbers(client):
    html = client.get("/").get_data(as_text=True)
    for name, text in VIOLENT_NUMBERS:
        assert f"<dt>{escape(name)}</dt><dd>{escape(text)}</dd>" in html
    assert 'href="/reports/model"' in html


def _cli(web_url: str, *args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env={"DATABASE_URL": web_url})


def _not_blank(path, size: tuple[int, int], colour: str) -> None:
    img = Image.open(path)
    assert img.format == "PNG" and img.size == size
    rgb = img.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20)
    assert len(colours) > 20   # text and charts, not one flat colour
    want = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    # The subject's line is drawn: pixels of its exact colour (antialiasing leaves the line's core intact).
    assert sum(n for n, c in colours if c == want) > 50


def test_cli_writes_the_model_report_as_html_and_png(web_url, tmp_path):
    from geo.charts import SUBJECT

    html, png = tmp_path / "model.html", tmp_path / "model.png"
    out = _cli(web_url, "model", "report", "--html", str(html), "--png", str(png))
    assert out.exit_code == 0, out.output
    text = html.read_text()
    assert 'id="roc"' in text and 'id="pr"' in text and 'id="reliability"' in text
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    _not_blank(png, MODEL_PNG, SUBJECT)
    # Without the options the command prints as before, with the explanation of the violent numbers.
    printed = _cli(web_url, "model", "report")
    assert printed.exit_code == 0 and "Strongest effects" in printed.output
    effects = [line for line in printed.output.splitlines() if " it from " in line]
    assert len(effects) == 12 and all(line.rstrip().endswith("%") for line in effects)   # --top 12, no odds ratios
    assert "R@90%P: Flagging only the calls it is surest of" in printed.output or "R@90%P: No cut" in printed.output
    assert all(f"{name}: {text}" in printed.output for name, text in VIOLENT_NUMBERS)


def test_cli_writes_a_division_compstat_page(web_url, tmp_path):
    from geo.charts import SUBJECT

    html, png = tmp_path / "central.html", tmp_path / "central.png"
    out = _cli(web_url, "stats", "compstat", "--division", "central", "--as-of", f"{YEAR}-12-01",
               "--html", str(html), "--png", str(png))
    assert out.exit_code == 0, out.output
    text = html.read_text()
    assert "Report week ending 2021-11-28" in text and 'id="hours"' in text
    _not_blank(png, COMPSTAT_PNG, SUBJECT)
    missing = _cli(web_url, "stats", "compstat", "--html", str(html))
    assert missing.exit_code == 2 and "--division" in missing.output
    alone = _cli(web_url, "stats", "compstat", "--division", "01")
    assert alone.exit_code == 2 and "only with --html or --png" in alone.output
    typo = _cli(web_url, "stats", "compstat", "--division", "Centrall", "--html", str(html))
    assert typo.exit_code == 2 and "unknown division 'Centrall'" in typo.output


def test_summary_explains_the_three_violent_numbers(web_url):
    out = _cli(web_url, "summary")
    assert out.exit_code == 0
    for name, text in VIOLENT_NUMBERS:
        assert f"  {name}: {text}" in out.output


def test_compstat_page_of_an_origin_subset_counts_that_origin_only(engine):
    # A page for synthetic rows only counts the same windows as the library with that origin.
    from geo.pages import compstat_page

    html = compstat_page(engine, "01", origin="synthetic", source="calls")
    last = data_coverage(engine, "calls", "synthetic")[1]
    table = compstat(engine, last + timedelta(days=1), by="division", flt=replace(Filter(), origin="synthetic"))
    row = table[(table["area"] == "01") & (table["window"] == "week")].iloc[0]
    assert f'<tr data-window="week"><td>week ({row.current_period} against {row.prior_period})</td>' \
           f"<td>{row.current:,}</td><td>{row.prior:,}</td>" in html


def test_compstat_page_refuses_a_report_date_outside_the_calendar_it_can_count(client):
    resp = client.get("/reports/compstat/01?as_of=0001-01-07")
    assert resp.status_code == 400 and resp.json["parameter"] == "as_of"
    assert "outside the years 1900-2999" in resp.json["description"]


def test_the_map_panel_shades_its_7x24_like_the_compstat_page_and_links_it(browser, live_server):
    from geo.charts import heat_colours

    page, errors, outside = _open(browser, live_server + "/?preset=365d&level=division&layers=areas&sel=division:02")
    try:
        page.wait_for_selector("#panel-body table.hours")
        cells = page.locator("#panel-body table.hours td").evaluate_all(
            "cs => cs.map(c => [c.dataset.mean, getComputedStyle(c).backgroundColor])")
        link = page.locator("#compstat-page").get_attribute("href")
    finally:
        page.close()
    assert errors == [] and outside == []
    import pandas as pd

    means = pd.DataFrame([[float(m) if m else float("nan") for m, _ in cells[24 * d:24 * d + 24]] for d in range(7)])
    fills = [c or "#dddddd" for row in heat_colours(means) for c in row]
    want = [f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in fills]
    shown = [bg for _, bg in cells]
    assert shown == want and len(set(shown)) > 5
    assert link == "reports/compstat/02"
