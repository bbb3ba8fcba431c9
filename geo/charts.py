"""Charts as inline SVG text: lines on numeric axes and the 7x24 heat matrix, for the HTML pages.

Hand-made SVG (no script, no font or style fetched) so a page opens offline, prints, and renders
the same in a browser and in a headless screenshot. Every drawn series and cell carries its values
in data- attributes, so a test in the browser reads what is shown, not what was meant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

import numpy as np
import pandas as pd

# Colour-blind-safe pairs (Okabe-Ito): the subject in vermillion, comparisons in blue and grey.
SUBJECT = "#d55e00"
COMPARISON = "#0072b2"
REFERENCE = "#999999"
# Sequential white -> dark red for the heat matrix (cells interpolated between these).
HEAT = ("#fff5f0", "#fcbba1", "#fb6a4a", "#cb181d", "#67000d")
NO_VALUE = "#ddd"   # a cell the period never holds (NaN)
MARGIN = {"left": 56, "right": 16, "top": 28, "bottom": 44}


@dataclass(frozen=True)
class Series:
    """One line of a chart: its name (the legend), points (x, y), colour, and how it is drawn."""

    name: str
    points: Sequence[tuple[float, float]]
    colour: str = SUBJECT
    dashed: bool = False
    markers: bool = False


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 10) for i in range(int(math.ceil((hi - first) / step)) + 1)]


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
               x_ticks: Sequence[tuple[float, str]] | None = None, y_format: str = "{:g}",
               width: int = 420, height: int = 300, chart_id: str = "") -> str:
    """An SVG line chart: each series a polyline (with dots if `markers`), axes with ticks and labels, a legend.

    Ranges default to the data's (y from 0); `x_ticks` replaces the numeric x ticks with labelled
    positions (e.g. week starts).
    """
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_lo, x_hi = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if y_range is None:
        ticks = nice_ticks(0.0, max(ys) if ys and max(ys) > 0 else 1.0)
        y_lo, y_hi = ticks[0], ticks[-1]
    else:
        y_lo, y_hi = y_range
        ticks = nice_ticks(y_lo, y_hi)
        ticks = [t for t in ticks if y_lo - 1e-9 <= t <= y_hi + 1e-9]
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_hi = y_hi if y_hi > y_lo else y_lo + 1
    left, top = MARGIN["left"], MARGIN["top"]
    plot_w, plot_h = width - left - MARGIN["right"], height - top - MARGIN["bottom"]

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           f'<text x="{left}" y="16" class="chart-title" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>']
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{py(t) + 4:.1f}" font-size="10" text-anchor="end">'
                   f'{escape(y_format.format(t))}</text>')
    for x, label in (x_ticks if x_ticks is not None else [(t, _num(t)) for t in nice_ticks(x_lo, x_hi)
                                                            if x_lo - 1e-9 <= t <= x_hi + 1e-9]):
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" stroke="#666"/>'
                   f'<text x="{px(x):.1f}" y="{top + plot_h + 15}" font-size="10" text-anchor="middle">'
                   f'{escape(label)}</text>')
    out.append(f'<text class="axis-label x" x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="11" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text class="axis-label y" x="12" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')
    for i, s in enumerate(series):
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        out.append(f'<polyline class="series" data-series="{escape(s.name)}" data-points="{len(s.points)}" '
                   f'points="{coords}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}/>')
        if s.markers:
            out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{s.colour}"/>' for x, y in s.points)
        ly = top + 12 + 14 * i
        out.append(f'<line x1="{left + 8}" x2="{left + 26}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s.colour}" '
                   f'stroke-width="2"{dash}/><text x="{left + 30}" y="{ly}" font-size="10">{escape(s.name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _heat_colour(share: float) -> str:
    """The colour at `share` (0..1) along HEAT, interpolated in RGB."""
    share = min(max(share, 0.0), 1.0) * (len(HEAT) - 1)
    i = min(int(share), len(HEAT) - 2)
    a, b = (tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in (HEAT[i], HEAT[i + 1]))
    f = share - i
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b))


def heat_colours(values: pd.DataFrame) -> list[list[str | None]]:
    """The heat matrix's fill of each cell (None where the value is NaN), darkest at the table's maximum.

    The map panel's 7x24 table is shaded with these, so it matches the pages' heat matrix.
    """
    finite = values.to_numpy(dtype=float)
    high = float(np.nanmax(finite)) if np.isfinite(finite).any() else 0.0
    return [[None if not math.isfinite(v) else _heat_colour(v / high if high > 0 else 0.0) for v in row]
            for row in finite]


def heat_matrix(values: pd.DataFrame, *, title: str, value_label: str, decimals: int = 2,
                cell: int = 22, chart_id: str = "") -> str:
    """An SVG heat matrix of a weekday x hour table (rows as given, columns hours 0-23); NaN cells are hatched grey."""
    left, top = 40, 34
    rows, cols = list(values.index), list(values.columns)
    width, height = left + cell * len(cols) + 12, top + cell * len(rows) + 40
    finite = values.to_numpy(dtype=float)
    high = float(np.nanmax(finite)) if np.isfinite(finite).any() else 0.0
    fills = heat_colours(values)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heat" id="{escape(chart_id)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           f'<text x="{left}" y="16" class="chart-title" font-size="13" font-weight="bold">{escape(title)}</text>']
    for j, hour in enumerate(cols):
        if j % 3 == 0:
            out.append(f'<text x="{left + cell * j + cell / 2:.1f}" y="{top - 4}" font-size="10" '
                       f'text-anchor="middle">{escape(str(hour))}</text>')
    for i, day in enumerate(rows):
        out.append(f'<text x="{left - 4}" y="{top + cell * i + cell / 2 + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{escape(str(day))}</text>')
        for j, hour in enumerate(cols):
            v = float(values.iloc[i, j])
            shown = "n/a" if not math.isfinite(v) else f"{v:.{decimals}f}"
            fill = fills[i][j] or NO_VALUE
            out.append(f'<rect class="cell" data-day="{escape(str(day))}" data-hour="{escape(str(hour))}" '
                       f'data-value="{shown}" x="{left + cell * j}" y="{top + cell * i}" width="{cell - 1}" '
                       f'height="{cell - 1}" fill="{fill}"><title>{escape(str(day))} {hour}h: {shown} '
                       f'{escape(value_label)}</title></rect>')
    out.append(f'<text class="axis-label x" x="{left}" y="{height - 10}" font-size="11">hour of day (local time); '
               f'darkest = {high:.{decimals}f} {escape(value_label)}</text>')
    out.append("</svg>")
    return "".join(out)
