"""Pages to look at rather than read: the model report and a CompStat page per division, as standalone HTML.

Each page is one HTML document with its style and SVG charts (geo/charts.py) inline: it opens
offline from a file, is served as is by the web app (web/pages.py), and `write_png` screenshots it
in headless Chromium for the CLI's `--png`. The numbers come from the library (the stored model's
metrics, geo.metrics.compstat, geo.metrics.hour_weekday); nothing here queries tables itself
beyond naming a division.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import replace
from datetime import date, timedelta
from html import escape
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import charts
from geo.charts import COMPARISON, REFERENCE, SUBJECT, Series
from geo.filters import Filter, ParameterError
from geo.taxonomy import VIOLENT_NUMBERS

TREND_WEEKS = 52
AS_OF_YEARS = (1900, 2999)
TOP_CHANGES = 10
# Window sizes of the screenshots (CSS pixels); the PNG has exactly this size.
MODEL_PNG = (1100, 2200)
COMPSTAT_PNG = (1100, 1500)

_STYLE = """<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1040px; color: #222; padding: 0 12px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.muted { color: #666; } .charts { display: flex; flex-wrap: wrap; gap: 12px; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; } .up { color: #b2182b; } .down { color: #2166ac; }
dl#violent-numbers dt { font-weight: bold; margin-top: 6px; } dl#violent-numbers dd { margin-left: 16px; }
</style>"""


def html_page(title: str, body: str) -> str:
    """A whole standalone HTML document (inline style, no script, nothing fetched) around `body`."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'{_STYLE}</head><body>\n{body}\n</body></html>\n')


def violent_numbers_html() -> str:
    """The one explanation of the three violent numbers (geo.taxonomy.VIOLENT_NUMBERS) as an HTML list."""
    items = "".join(f"<dt>{escape(name)}</dt><dd>{escape(text)}</dd>" for name, text in VIOLENT_NUMBERS)
    return f'<dl id="violent-numbers">{items}</dl>'


def recall_at_precision_words(m: dict) -> str:
    """What "R@90%P" (recall at 90% precision) means for this model, in a sentence."""
    r = m["recall_at_90_precision"]
    if r <= 0:
        return ("No cut of the probability makes 9 in 10 flagged calls turn out violent: to be that sure, the model "
                "would have to flag no call at all (recall at 90% precision is 0). Use its probabilities to rank and "
                "to count, not to decide one call on its own.")
    return (f"Flagging only the calls it is surest of, so that 9 in 10 flagged calls turn out violent, the model "
            f"would catch {r:.1%} of the violent calls (recall at 90% precision).")


def _share_points(pairs: list[list[float]]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in pairs]


def model_charts(metrics: dict) -> dict[str, str]:
    """The model report's SVG charts from stored metrics: 'reliability', and 'roc' and 'pr' when curves are stored."""
    m = metrics["model"]
    base = metrics.get("call_type_baseline")
    bins = m["calibration"]
    high = max([b["mean_predicted"] for b in bins] + [b["observed"] for b in bins] + [0.05])
    top = min(1.0, charts.nice_ticks(0.0, high)[-1])
    out = {"reliability": charts.line_chart(
        [Series("model", [(b["mean_predicted"], b["observed"]) for b in bins], SUBJECT, markers=True),
         Series("perfectly calibrated", [(0.0, 0.0), (top, top)], REFERENCE, dashed=True)],
        title="Reliability: predicted against observed", x_label="mean predicted probability (per tenth of p)",
        y_label="share of calls violent", x_range=(0.0, top), y_range=(0.0, top), chart_id="reliability")}
    if "curves" not in m:
        return out
    roc = [Series("model", _share_points(m["curves"]["roc"]), SUBJECT)]
    pr = [Series("model", _share_points(m["curves"]["pr"]), SUBJECT)]
    if base and "curves" in base:
        roc.append(Series("call type alone", _share_points(base["curves"]["roc"]), COMPARISON))
        pr.append(Series("call type alone", _share_points(base["curves"]["pr"]), COMPARISON))
    roc.append(Series("chance", [(0.0, 0.0), (1.0, 1.0)], REFERENCE, dashed=True))
    pr.append(Series("flagging at random", [(0.0, m["base_rate"]), (1.0, m["base_rate"])], REFERENCE, dashed=True))
    out["roc"] = charts.line_chart(roc, title="ROC: violent calls caught against false alarms",
                                   x_label="false positive rate", y_label="true positive rate (recall)",
                                   x_range=(0.0, 1.0), y_range=(0.0, 1.0), chart_id="roc")
    out["pr"] = charts.line_chart(pr, title="Precision and recall", x_label="recall (share of violent calls caught)",
                                  y_label="precision (flagged that are violent)", x_range=(0.0, 1.0),
                                  y_range=(0.0, 1.0), chart_id="pr")
    return out


def model_page(engine: Engine, version: str | None = None, top: int = 10) -> str:
    """The model report as a standalone HTML page: headline in words, reliability, ROC and PR charts, effects."""
    from geo.accuracy import latest_accuracy, report_lines
    from geo.classify import load_model, probability_effects, threshold_lines

    stored = load_model(engine, version)
    metrics = stored.metrics
    m = metrics["model"]
    base = metrics.get("call_type_baseline")
    c = m["confusion"]
    drawn = model_charts(metrics)
    parts = [f"<h1>Violent-call model {escape(stored.version)}</h1>",
             f'<p class="muted">Trained on {stored.params.get("train_rows", 0):,} calls; tested on '
             f'{m["n"]:,} calls of later months ({m["positives"]:,} violent, {m["base_rate"]:.2%}). '
             f'Features: {escape(", ".join(stored.params.get("features", [])))}.</p>',
             "<h2>How good is it?</h2><ul id=\"headline\">",
             f"<li>Given one violent and one non-violent call, the model gives the violent one the higher probability "
             f"{m['roc_auc']:.0%} of the time (ROC-AUC {m['roc_auc']:.3f}; 50% is a coin toss"
             + (f", call type alone scores {base['roc_auc']:.0%}" if base else "") + ").</li>",
             f"<li>{escape(recall_at_precision_words(m))}</li>",
             f"<li>At its threshold ({m['threshold']:.3f}) it flags {c['tp'] + c['fp']:,} calls: {c['tp']:,} "
             f"turn out violent, {c['fp']:,} are false alarms, and it misses {c['fn']:,} violent calls.</li>",
             f"<li>Its probabilities add up to {m['expected_vs_observed'][0]:,.0f} expected violent calls against "
             f"{m['expected_vs_observed'][1]:,} observed: the reliability chart shows how close each band is.</li></ul>"]
    if "curves" not in m:
        parts.append('<p class="muted" id="no-curves">This model was trained before the curves were stored: run '
                     "<code>hotspots train</code> again to see its ROC and PR curves.</p>")
    parts.append('<div class="charts">' + "".join(drawn.values()) + "</div>")
    parts.append('<p class="muted">Reliability: each dot is a tenth of the probability range; on the dashed line '
                 "the calls given p turn out violent p of the time. ROC and PR curves: the further up (and, for "
                 "ROC, to the left) the better; the blue line is the same recipe with the call type only.</p>")
    effects = probability_effects(stored, top)
    parts.append("<h2>What moves the probability</h2><p>For a call that is otherwise average (the held-out share of "
                 f"violent calls, {m['base_rate']:.1%}), each of these alone would move the model's probability:</p>"
                 '<ul id="effects">')
    for e in effects.itertuples():
        verb = "raises" if e.to_p > e.from_p else "lowers"
        parts.append(f'<li data-to="{e.to_p:.4f}">{escape(e.text)} {verb} it from {e.from_p:.1%} to {e.to_p:.1%}</li>')
    parts.append("</ul>")
    lines = threshold_lines(metrics)
    if lines:
        parts.append("<h2>Thresholds</h2><ul>" + "".join(f"<li>{escape(line.strip())}</li>" for line in lines) + "</ul>")
    parts.append("<h2>Three violent numbers</h2>" + violent_numbers_html())
    parts.append("<h2>The map's accuracy</h2><pre>" + escape("\n".join(report_lines(latest_accuracy(engine))))
                 + "</pre>")
    return html_page(f"Model {stored.version}", "\n".join(parts))


# --- CompStat per division -------------------------------------------------------------------------
def resolve_division(engine: Engine, division: str) -> tuple[str, str]:
    """A division's code and name from its code, name or short name (any case); ParameterError lists the valid ones."""
    from geo.catalog import division_names

    names = division_names(engine)
    code = names.get(str(division).strip().lower())
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT division_id, coalesce(short_name, name) FROM divisions"
                                    " ORDER BY division_id")).all()
    if code is None:
        raise ParameterError("division", f"unknown division {division!r}; use a code or name: "
                                         + ", ".join(f"{c} {n}" for c, n in rows))
    return code, dict(rows)[code]


def _weekly(daily: pd.DataFrame, column: str, start: date, weeks: int, first: date | None) -> list[tuple[float, float]]:
    """(week index, count) for the `weeks` weeks from `start`, only those wholly inside the data (from `first`)."""
    series = daily[column] if column in daily.columns else pd.Series(dtype=float)
    out = []
    for i in range(weeks):
        lo = start + timedelta(days=7 * i)
        if first is None or lo < first:
            continue
        mask = (series.index >= pd.Timestamp(lo)) & (series.index < pd.Timestamp(lo + timedelta(days=7)))
        out.append((float(i), float(series[mask].sum())))
    return out


def compstat_page(engine: Engine, division: str, *, as_of: date | None = None, source: str | None = None,
                  origin: str | None = None, compare: str = "year") -> str:
    """A division's CompStat page: the windows' table, weekly trend against a year earlier, the 7x24 matrix, top changes.

    `as_of` defaults to the day after the newest call, so the report week is the newest complete
    one; `source` to recorded violent incidents where any exist (else expected violent calls).
    """
    from geo.metrics import (
        compstat,
        compstat_windows,
        daily_counts,
        data_coverage,
        hour_weekday,
        report_end,
    )
    from geo.sources import default_source, get_source

    code, name = resolve_division(engine, division)
    first, last = data_coverage(engine, "calls", origin)
    if last is None:
        raise ParameterError("origin" if origin else "division",
                             f"no {origin + ' ' if origin else ''}calls are loaded: nothing to report")
    as_of = as_of or last + timedelta(days=1)
    if not AS_OF_YEARS[0] <= as_of.year <= AS_OF_YEARS[1]:
        # The windows and a year of history before them must stay inside the calendar.
        raise ParameterError("as_of", f"{as_of} is outside the years {AS_OF_YEARS[0]}-{AS_OF_YEARS[1]}")
    if source is None:
        windows = [p for pair in compstat_windows(as_of, compare).values() for p in pair]
        source = default_source(engine, Filter.local_days(min(p.start_date for p in windows), max(p.end_date for p in windows)),
                                origin)
    counted = None if source == "calls" else source
    base = Filter(origin=origin)
    table = compstat(engine, as_of, by="division", flt=base, compare=compare, source=counted)
    words = table.attrs["source"]
    mine = table[table["area"] == code]
    by_npa = compstat(engine, as_of, by="npa", flt=replace(base, division=code), compare=compare, source=counted)

    end = report_end(as_of) + timedelta(days=1)
    start = end - timedelta(days=7 * TREND_WEEKS)
    src = get_source(counted) if counted else None
    src_first = data_coverage(engine, src.table if src else "calls", origin)[0]
    daily = daily_counts(engine, replace(base, division=code), "division", start - timedelta(days=364), end,
                         source=src)
    now = _weekly(daily, code, start, TREND_WEEKS, src_first)
    before = _weekly(daily, code, start - timedelta(days=364), TREND_WEEKS, src_first)
    ticks = [(float(i), f"{start + timedelta(days=7 * i):%d %b}") for i in range(0, TREND_WEEKS, 13)]
    trend = charts.line_chart(
        [Series(f"weeks to {end - timedelta(days=1):%d %b %Y}", now, SUBJECT),
         Series("same weeks a year earlier", before, COMPARISON, dashed=True)],
        title=f"Weekly {words.split(':')[0]} in {name}", x_label="week starting (Monday)", y_label="per week",
        x_range=(0.0, TREND_WEEKS - 1.0), x_ticks=ticks, width=1000, height=300, chart_id="trend")

    flt = Filter.local_days(start, end, division=code, origin=origin)
    matrix = hour_weekday(engine, flt)
    heat = charts.heat_matrix(matrix.mean, title=f"Calls per occurrence of each weekday-hour, {start:%d %b %Y} to "
                                                 f"{end - timedelta(days=1):%d %b %Y}",
                              value_label="calls per occurrence", chart_id="hours")

    parts = [f"<h1>CompStat: {escape(name)} ({escape(code)})</h1>",
             f'<p class="muted">Report week ending {end - timedelta(days=1)}; counting {escape(words)}.</p>',
             '<h2>The windows</h2><table id="windows"><tr><th>Window</th><th>Now</th><th>Before</th><th>Change</th>'
             "<th>q</th><th>Note</th></tr>"]
    for r in mine.itertuples():
        change = "n/a" if r.pct_change != r.pct_change else f"{r.pct_change:+.1f}%"
        cls = ' class="up"' if r.significant and r.pct_change > 0 else (' class="down"' if r.significant else "")
        q = "n/a" if r.q_value != r.q_value else f"{r.q_value:.3f}"
        note = r.note or ("significant" if r.significant else "within noise")
        parts.append(f'<tr data-window="{escape(r.window)}"><td>{escape(r.window)} ({escape(r.current_period)} against '
                     f"{escape(r.prior_period)})</td><td>{r.current:,}</td><td>{r.prior:,}</td><td{cls}>{change}</td>"
                     f"<td>{q}</td><td>{escape(note)}</td></tr>")
    parts.append("</table>")
    parts.append('<p class="muted">Significant: q &lt; 0.05 after the Benjamini-Hochberg correction across divisions '
                 "(quasi-Poisson test, dispersion from the division's own history; docs/methods.md).</p>")
    parts.append("<h2>Trend</h2>" + trend)
    if not before:
        parts.append('<p class="muted">The data do not reach back a year before these weeks: no year-earlier line.</p>')
    parts.append("<h2>When calls come in</h2>" + heat)
    if matrix.left_out_date_only:
        parts.append(f'<p class="muted">{matrix.left_out_date_only:,} calls known only by their date are left out.</p>')
    four = by_npa[(by_npa["window"] == "28 days") & ((by_npa["current"] > 0) | (by_npa["prior"] > 0))].copy()
    four["delta"] = four["current"] - four["prior"]
    four = four.reindex(four["delta"].abs().sort_values(ascending=False, kind="stable").index).head(TOP_CHANGES)
    parts.append("<h2>Top changes: NPAs, 28 days</h2><table id=\"top-changes\"><tr><th>NPA</th><th>Now</th>"
                 "<th>Before</th><th>Difference</th><th>Note</th></tr>")
    for r in four.itertuples():
        cls = ' class="up"' if r.delta > 0 else ' class="down"'
        note = r.note or ("significant" if r.significant else "within noise")
        parts.append(f'<tr data-npa="{escape(str(r.area))}"><td>{escape(str(r.area))}</td><td>{r.current:,}</td>'
                     f"<td>{r.prior:,}</td><td{cls}>{r.delta:+,}</td><td>{escape(note)}</td></tr>")
    parts.append("</table>")
    if four.empty:
        parts.append('<p class="muted">No NPA of this division has any count in these 28 days or the year before.</p>')
    parts.append("<h2>Three violent numbers</h2>" + violent_numbers_html())
    return html_page(f"CompStat {name}", "\n".join(parts))


# --- pictures of the pages ------------------------------------------------------------------------
def write_png(html: str, out: Path, size: tuple[int, int], browser: str = "chromium", timeout: float = 120) -> Path:
    """Screenshot a page (HTML text) in headless Chromium into `out`, a PNG of exactly `size` (width, height) pixels."""
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="hotspots-png-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html, encoding="utf-8")
        # A profile of its own: no first-run work, no network, no clash with another Chromium.
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--no-first-run", f"--user-data-dir={Path(tmp) / 'profile'}", "--force-device-scale-factor=1",
                   f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", page.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise RuntimeError(f"--png needs Chromium: {browser!r} is not installed (apt-get install chromium)") from None
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"Chromium could not write {out}: {done.stderr.strip()[-400:]}")
    return out

