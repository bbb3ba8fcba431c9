"""Gi*: a planted cluster is found, a shuffled layout is not, FDR and classes behave."""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from geo.hotspots import NOT_SIGNIFICANT, benjamini_hochberg, classify, gi_star, npa_hotspots
from geo.metrics import Period


@pytest.fixture(scope="module")
def grid():
    cells = [box(x, y, x + 1, y + 1) for y in range(20) for x in range(20)]
    return gpd.GeoSeries(cells, crs=3857)


def planted(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # A 5x5 block of moderately raised counts: no single cell is an outlier, the cluster is.
    values = rng.poisson(2.0, 400).astype(float)
    block = np.array([y * 20 + x for y in range(7, 12) for x in range(7, 12)])
    values[block] = rng.poisson(5.5, len(block))
    return values, block


def test_planted_cluster_is_a_hot_spot(grid):
    values, block = planted()
    result = gi_star(grid, values, permutations=199, seed=3)
    centre = 9 * 20 + 9
    assert result.classes[centre] == "Hot spot, 99% confidence"
    hot = {i for i, c in enumerate(result.classes) if c.startswith("Hot")}
    inner = {y * 20 + x for y in range(8, 11) for x in range(8, 11)}
    assert inner <= hot
    # Hot cells sit on or next to the block, nowhere else.
    rows, cols = np.divmod(np.array(sorted(hot)), 20)
    assert rows.min() >= 6 and rows.max() <= 12 and cols.min() >= 6 and cols.max() <= 12


def test_shuffled_layout_has_no_hot_spots(grid):
    values, _ = planted()
    shuffled = np.random.default_rng(5).permutation(values)
    result = gi_star(grid, shuffled, permutations=199, seed=3)
    assert sum(c != NOT_SIGNIFICANT for c in result.classes) <= 2


def test_fdr_and_classes():
    from scipy.stats import false_discovery_control

    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 1, 500) ** 3
    assert benjamini_hochberg(many) == pytest.approx(false_discovery_control(many, method="bh"))
    classes = classify(np.array([3.0, -2.0, 1.8, 0.1]), np.array([0.001, 0.03, 0.08, 0.9]))
    assert list(classes) == ["Hot spot, 99% confidence", "Cold spot, 95% confidence", "Hot spot, 90% confidence",
                             NOT_SIGNIFICANT]


def test_npa_hotspots_on_labelled_calls(engine, tmp_path, data_dir):
    import sqlalchemy as sa

    from geo.demo import generate_and_load

    generate_and_load(n_calls=20_000, start=date(2021, 1, 1), days=120, seed=4, out=tmp_path / "d", engine=engine,
                      data_dir=data_dir, progress=False, dirty=False)
    with engine.begin() as conn:  # stand-in labels: the true outcome, so the test needs no model
        conn.execute(sa.text(
            "UPDATE calls c SET label = (i.highest_nibrs_code IN ('09A','11A','120','13A')), p_violent = 0.5"
            " FROM incidents i WHERE i.incident_report_id = c.incident_report_id"))
    result = npa_hotspots(engine, Period(date(2021, 1, 1), date(2021, 5, 1)), permutations=99)
    assert len(result) == 462
    hot = result[result["hotspot_class"].str.startswith("Hot")]
    assert len(hot) > 0
    # Hot NPAs have far more violent calls than the rest.
    assert hot["value"].mean() > 3 * result["value"].mean()
    expected = npa_hotspots(engine, Period(date(2021, 1, 1), date(2021, 5, 1)), measure="expected", permutations=99)
    assert expected["value"].sum() > 0


def test_offense_hotspots_on_real_counts_and_saved_runs(engine):
    import sqlalchemy as sa

    from geo.hotspots import offense_hotspots, save_npa_results

    result = offense_hotspots(engine, (2019, 2021), permutations=99)
    with engine.connect() as conn:
        published = conn.execute(sa.text(
            "SELECT sum(offense_count) FROM offense_counts WHERE row_type = 'Neighborhood Profile Area'"
            " AND geography_id > 0 AND calendar_year BETWEEN 2019 AND 2021 AND offense_description = 'Violent Crime'")).scalar()
    # Every published NPA count is used once (the roll-up, not the overlapping details).
    assert result["value"].sum() == published
    hot = result[result["hotspot_class"].str.startswith("Hot")]
    assert len(hot) >= 5 and hot["value"].mean() > 2 * result["value"].mean()
    with pytest.raises(ValueError, match="overlaps"):
        offense_hotspots(engine, (2019, 2021), ["Non-Fatal Gunshot Injury", "Aggravated Assault-Gun"])
    run_id = save_npa_results(engine, "offense_hotspots", {"years": [2019, 2021]}, result)
    with engine.connect() as conn:
        n, n_hot, kind = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE hotspot_class LIKE 'Hot%'), max(r.kind)"
            " FROM hotspot_npa_results h JOIN analysis_runs r USING (run_id) WHERE run_id = :r"), {"r": run_id}).one()
    assert (n, n_hot, kind) == (462, len(hot), "offense_hotspots")
