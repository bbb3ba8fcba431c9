"""A standalone HTML report of one division for e-mail: its NPAs by violent calls, hot spots and a table.

Drawn with folium, but self-contained: Leaflet's JS and CSS are inlined from the xstatic-leaflet
package and folium's CDN links (jQuery, Bootstrap, Font Awesome, ...) are dropped, so the file
opens offline, e.g. on a patrol laptop or behind a mail gateway that strips remote content.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo import panel
from geo.catalog import division_names, latest_call_date
from geo.filters import Filter, parse_filter
from geo.settings import zone_or_configured

COLOURS = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"]
ZERO = "#f4f4f4"
# Division lines do not follow NPA edges: an NPA belongs to the report when this share of it lies inside.
MIN_OVERLAP = 0.2
HOT = {"Hot spot, 99% confidence": "#d62f27", "Hot spot, 95% confidence": "#ed7551", "Hot spot, 90% confidence": "#fab984"}
_EXTERNAL_TAG = re.compile(r"<(script|link)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//[^>]*>(\s*</script>)?", re.I)


@dataclass
class DivisionReport:
    """What the report shows: the division, the period, and one row per NPA."""

    division_id: str
    name: str
    period: tuple[date, date]        # first and last local day
    npas: pd.DataFrame               # npa_id, in_division (area share), population, calls, violent, violent_per_1000, hotspot_class, gi_z, geometry
    division_geometry: str           # GeoJSON text
    totals: dict


def division_filter(engine: Engine, division: str, start: str | None = None, end: str | None = None,
                    preset: str | None = None, tz: str | None = None) -> Filter:
    """The shared filter for a division and period (ParameterError naming a bad option); presets end on
    the newest call's local date in `tz` (None: the configured zone)."""
    tz = zone_or_configured(tz)
    args = {k: v for k, v in {"division": division, "start": start, "end": end, "preset": preset}.items() if v}
    return parse_filter(args, divisions=division_names(engine), as_of=lambda: latest_call_date(engine, tz))


def division_npas(engine: Engine, division_id: str, min_overlap: float = MIN_OVERLAP) -> dict[int, float]:
    """NPAs with at least `min_overlap` of their area inside the division -> that share."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT npa_id, share FROM (SELECT n.npa_id,"
            "  ST_Area(ST_Intersection(n.geom, d.geom)) / nullif(ST_Area(n.geom), 0) AS share"
            "  FROM neighborhoods n JOIN divisions d ON ST_Intersects(n.geom, d.geom) WHERE d.division_id = :d) t"
            " WHERE share >= :m"), {"d": division_id, "m": min_overlap}).all()
    return {int(r.npa_id): round(float(r.share), 3) for r in rows}


def build_report(engine: Engine, flt: Filter, min_overlap: float = MIN_OVERLAP) -> DivisionReport:
    """Counts, rates and city-wide Gi* classes for the NPAs of the filter's division."""
    if flt.division is None:
        raise ValueError("the report needs a division")
    first, last = panel.data_range(engine)
    period = panel.analysis_period(flt, (first, last))
    city = replace(flt, division=None, bbox=None, given={})
    overlap = division_npas(engine, flt.division, min_overlap)
    shapes = [s for s in panel.area_shapes(engine, "npa") if s["id"] in overlap]
    counts = panel.area_counts(engine, "npa", city)
    # Hot spots are found over all 462 NPAs: Gi* needs the whole map to say what is unusual.
    weights, ids = panel.npa_weights(engine)
    gi = panel.npa_gi_star(engine, city, weights, ids, "violent").set_index("npa_id")
    rows = []
    for s in shapes:
        calls, violent, _ = counts.get(s["id"], (0, 0, 0.0))
        rows.append({"npa_id": s["id"], "in_division": overlap[s["id"]], "population": s["population"],
                     "calls": calls, "violent": violent,
                     "violent_per_1000": panel.per_1000(violent, s["population"]),
                     "hotspot_class": gi.at[s["id"], "hotspot_class"], "gi_z": round(float(gi.at[s["id"], "gi_z"]), 2),
                     "geometry": s["geometry"]})
    npas = pd.DataFrame(rows).sort_values(["violent", "npa_id"], ascending=[False, True]).reset_index(drop=True)
    with engine.connect() as conn:
        name, geometry = conn.execute(sa.text(
            "SELECT name, ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, :tol), 5) FROM divisions WHERE division_id = :d"),
            {"d": flt.division, "tol": panel.SIMPLIFY_DEG}).one()
    totals = panel.area_totals(engine, "division", flt.division, flt)
    return DivisionReport(flt.division, name, (period.start_date, period.end_date - timedelta(days=1)), npas, geometry, totals)


def _colour(value: float, breaks: list[float]) -> str:
    if value <= 0:
        return ZERO
    for colour, b in zip(COLOURS, breaks):
        if value <= b:
            return colour
    return COLOURS[-1]


def _breaks(values: pd.Series) -> list[float]:
    v = values[values > 0].sort_values().to_numpy()
    if not len(v):
        return []
    out: list[float] = []
    for i in range(1, len(COLOURS) + 1):
        b = float(v[min(len(v) - 1, -(-i * len(v) // len(COLOURS)) - 1)])
        if not out or b > out[-1]:
            out.append(b)
    return out


def render_html(report: DivisionReport) -> str:
    """The report as one self-contained HTML document (no network needed to open it)."""
    import json

    import folium

    # No tiles (offline), hence no attribution control either.
    m = folium.Map(tiles=None, height="62%", prefer_canvas=False, control_scale=True, zoom_control=True,
                   attribution_control=False)
    # Instance attributes shadow folium's CDN lists; Leaflet is inlined below instead.
    m.default_js, m.default_css = [], []
    division = {"type": "Feature", "geometry": json.loads(report.division_geometry),
                "properties": {"name": report.name}}
    breaks = _breaks(report.npas["violent"])
    features = []
    for r in report.npas.itertuples(index=False):
        features.append({"type": "Feature", "geometry": json.loads(r.geometry), "properties": {
            "npa": int(r.npa_id), "calls": int(r.calls), "violent": int(r.violent),
            "per_1000": "n/a" if r.violent_per_1000 is None else f"{r.violent_per_1000:.2f}",
            "hot_spot": r.hotspot_class, "fill": _colour(r.violent, breaks), "edge": HOT.get(r.hotspot_class)}})
    folium.GeoJson(
        {"type": "FeatureCollection", "features": features}, name="NPAs",
        style_function=lambda f: {"fillColor": f["properties"]["fill"], "fillOpacity": 0.75,
                                  "color": f["properties"]["edge"] or "#555",
                                  "weight": 4 if f["properties"]["edge"] else 0.7},
        tooltip=folium.GeoJsonTooltip(fields=["npa", "calls", "violent", "per_1000", "hot_spot"],
                                      aliases=["NPA", "Calls", "Violent calls", "Violent per 1,000", "Gi*"]),
    ).add_to(m)
    folium.GeoJson(division, name="Division", style_function=lambda f: {"fill": False, "color": "#1f3b5a", "weight": 3,
                                                                       "dashArray": "6 3"}).add_to(m)
    xs, ys = _bounds(division["geometry"])
    m.fit_bounds([[min(ys), min(xs)], [max(ys), max(xs)]])
    root = m.get_root()
    root.header.add_child(folium.Element(f"<title>{html.escape(report.name)} - violent calls</title>"), name="title")
    root.header.add_child(folium.Element(_STYLE), name="report_style")
    document = root.render()
    # Title above the map, legend and table below it (folium puts added elements before the map).
    document = document.replace("<body>", "<body>\n" + _title(report), 1)
    document = document.replace("</body>", _legend(breaks) + _summary(report) + "\n</body>", 1)
    return make_standalone(document)


def _bounds(geometry: dict) -> tuple[list[float], list[float]]:
    coords: list = []

    def walk(c):
        if isinstance(c[0], (int, float)):
            coords.append(c)
        else:
            for x in c:
                walk(x)

    walk(geometry["coordinates"])
    return [c[0] for c in coords], [c[1] for c in coords]


def make_standalone(document: str) -> str:
    """Drop every remote script and stylesheet and inline Leaflet's JS and CSS from xstatic-leaflet."""
    from xstatic.pkg import leaflet

    base = Path(leaflet.BASE_DIR)
    document = _EXTERNAL_TAG.sub("", document)
    # The CSS's url(images/...) would point next to the e-mailed file; nothing here uses those icons.
    css = re.sub(r"url\((['\"]?)images/[^)]*\)", "none", (base / "leaflet.css").read_text())
    # "</script" inside the inlined library would end the element early; escape it.
    js = (base / "leaflet.js").read_text().replace("</script", "<\\/script")
    inline = f"<style>\n{css}\n</style>\n<script>\n{js}\n</script>\n"
    return document.replace("<head>", "<head>\n" + inline, 1)


_STYLE = """<style>
body { font: 13px/1.4 system-ui, sans-serif; color: #222; }
.report { padding: 8px 16px; }
.report h1 { font-size: 18px; margin: 4px 0; }
.report table { border-collapse: collapse; }
.report td, .report th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
.report td:first-child, .report th:first-child { text-align: left; }
.report tr.hot td { font-weight: 600; }
.legend-box { margin: 6px 0; }
.legend-box i { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 10px; border: 1px solid #999; }
</style>"""


def _legend(breaks: list[float]) -> str:
    items = [f'<i style="background:{ZERO}"></i>none']
    lo = 0.0
    for colour, b in zip(COLOURS, breaks):
        items.append(f'<i style="background:{colour}"></i>{lo:g}&ndash;{b:g}')
        lo = b
    hot = "".join(f'<i style="border:2px solid {c};background:none"></i>{html.escape(k)}' for k, c in HOT.items())
    return f'<div class="report legend-box">Violent calls per NPA: {"".join(items)}<br>Outline: {hot}</div>'


def _title(report: DivisionReport) -> str:
    return (f'<div class="report"><h1>{html.escape(report.name)}: violent calls {report.period[0]} to '
            f'{report.period[1]}</h1></div>')


def _summary(report: DivisionReport) -> str:
    t = report.totals
    hot = report.npas[report.npas["hotspot_class"].str.startswith("Hot")]
    rows = []
    for r in report.npas.itertuples(index=False):
        rate = "n/a" if r.violent_per_1000 is None else f"{r.violent_per_1000:.2f}"
        cls = ' class="hot"' if r.hotspot_class.startswith("Hot") else ""
        rows.append(f"<tr{cls}><td>NPA {int(r.npa_id)}</td><td>{'' if r.population is None else f'{int(r.population):,}'}</td>"
                    f"<td>{r.in_division:.0%}</td><td>{int(r.calls):,}</td><td>{int(r.violent):,}</td><td>{rate}</td><td>{r.gi_z:+.2f}</td>"
                    f"<td>{html.escape(r.hotspot_class)}</td></tr>")
    return (
        f"<div class=\"report\"><p>{t['calls']:,} calls, {t['violent']:,} labelled violent by the model "
        f"({0 if not t['calls'] else t['violent'] / t['calls']:.1%}) in the division. {len(report.npas)} NPAs lie at "
        f"least {MIN_OVERLAP:.0%} inside it (their counts cover the whole NPA), "
        f"{len(hot)} of them hot spots (Gi* over all NPAs, FDR-corrected).</p>"
        "<table class=\"summary\"><thead><tr><th>NPA</th><th>Population</th><th>In division</th><th>Calls</th><th>Violent</th>"
        "<th>Violent per 1,000</th><th>Gi* z</th><th>Hot spot class</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
        "<p>Demo data are synthetic calls generated in CMPD's layout. Violent = the classifier's label.</p></div>"
    )


def write_report(engine: Engine, flt: Filter, out: Path) -> DivisionReport:
    """Build the division report and write it to `out` (HTML)."""
    report = build_report(engine, flt)
    Path(out).write_text(render_html(report), encoding="utf-8")
    return report
