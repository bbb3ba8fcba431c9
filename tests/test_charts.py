"""The SVG charts of the pages (geo/charts.py): ticks, what each series carries, the heat scale."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from geo.charts import HEAT, NO_VALUE, Series, heat_colours, heat_matrix, line_chart, nice_ticks


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 37) == [0, 10, 20, 30, 40]
    assert nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]   # an empty range still draws an axis


def test_line_chart_draws_every_point_inside_the_plot():
    svg = line_chart([Series("now", [(0, 0), (1, 5), (2, 3)]), Series("before", [(0, 1), (2, 2)], dashed=True)],
                     title="t & <x>", x_label="week", y_label="count", chart_id="c")
    assert 'data-series="now" data-points="3"' in svg and 'data-series="before" data-points="2"' in svg
    assert "t &amp; &lt;x&gt;" in svg and "<x>" not in svg   # text escaped
    plot = re.search(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', svg).groups()
    left, top, width, height = map(float, plot)
    points = re.search(r'data-series="now"[^>]*points="([^"]+)"', svg).group(1).split()
    xy = [tuple(map(float, p.split(","))) for p in points]
    assert xy[0] == (left, top + height)   # (0, 0) at the bottom left corner
    assert all(left <= x <= left + width and top <= y <= top + height for x, y in xy)
    # y runs from 0 to the round tick above the highest value (5 -> 5), so (1, 5) is at the top
    assert xy[1][1] == top


def test_heat_colours_run_from_white_to_the_darkest_at_the_maximum():
    values = pd.DataFrame([[0.0, 1.0, 2.0], [4.0, math.nan, 3.0]])
    fills = heat_colours(values)
    assert fills[0][0] == HEAT[0] and fills[1][0] == HEAT[-1] and fills[1][1] is None
    assert fills[0][2] == HEAT[2]   # half the maximum: the middle colour of the ramp
    svg = heat_matrix(values, title="m", value_label="calls", chart_id="h")
    assert svg.count('class="cell"') == 6 and f'fill="{NO_VALUE}"' in svg and 'data-value="n/a"' in svg
    assert heat_colours(pd.DataFrame(np.zeros((2, 2)))) == [[HEAT[0]] * 2] * 2
