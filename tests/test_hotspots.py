"""Gi*: a planted cluster is found, a shuffled layout is not, FDR and classes behave."""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from geo.hotspots import NOT_SIGNIFICANT, classify, fdr_q, gi_star, npa_hotspots
from geo.filters import Filter


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
    assert fdr_q(p) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 1, 500) ** 3
    assert fdr_q(many) == pytest.approx(false_discovery_control(many, method="bh"))
    # An undefined statistic (NaN p) is left out of the correction and stays NaN.
    with_nan = fdr_q(np.array([0.01, np.nan, 0.04, 0.03, 0.5]))
    assert np.isnan(with_nan[1]) and with_nan[[0, 2, 3, 4]] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    classes = classify(np.array([3.0, -2.0, 1.8, 0.1]), np.array([0.001, 0.03, 0.08, 0.9]))
    assert list(classes) == ["Hot spot, 99% confidence", "Cold spot, 95% confidence", "Hot spot, 90% confidence",
                             NOT_SIGNIFICANT]


def test_npa_hotspots_on_labelled_calls(engine, tmp_path, data_dir):
    import sqlalchemy as sa

    from geo.demo import generate_and_load
    from geo.taxonomy import load_taxonomy

    generate_and_load(n_calls=20_000, start=date(2021, 1, 1), days=120, seed=4, out=tmp_path / "d", engine=engine,
                      data_dir=data_dir, progress=False, dirty=False)
    with engine.begin() as conn:  # stand-in labels: the true outcome, so the test needs no model
        conn.execute(sa.text(
            "UPDATE calls c SET label = (i.highest_nibrs_code = ANY(CAST(:violent AS text[]))), p_violent = 0.5"
            " FROM incidents i WHERE i.incident_report_id = c.incident_report_id"),
            {"violent": sorted(load_taxonomy().violent_codes)})
    result = npa_hotspots(engine, Filter.local_days(date(2021, 1, 1), date(2021, 5, 1)), source="labelled", permutations=99)
    assert result.attrs["source"] == "labelled"
    assert len(result) == 462
    hot = result[result["hotspot_class"].str.startswith("Hot")]
    assert len(hot) > 0
    # Hot NPAs have far more violent calls than the rest.
    assert hot["value"].mean() > 3 * result["value"].mean()
    expected = npa_hotspots(engine, Filter.local_days(date(2021, 1, 1), date(2021, 5, 1)), measure="expected", permutations=99)
    assert expected["value"].sum() > 0


def test_offense_hotspots_on_real_counts_and_saved_runs(engine):
    import sqlalchemy as sa

    from geo.hotspots import offense_hotspots
    from geo.runs import RunKind, RunSpec, save_npa_results

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
    run_id = save_npa_results(engine, RunSpec(RunKind.OFFENSES_NPA_HOTSPOTS, {"years": [2019, 2021]}), result)
    with engine.connect() as conn:
        n, n_hot, kind = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE hotspot_class LIKE 'Hot%'), max(r.kind)"
            " FROM hotspot_npa_results h JOIN analysis_runs r USING (run_id) WHERE run_id = :r"), {"r": run_id}).one()
    assert (n, n_hot, kind) == (462, len(hot), "offenses_npa_hotspots")


def test_grid_gi_star_finds_a_planted_point_cluster():
    from shapely.geometry import box as sbox

    from geo.hotspots import grid_gi_star

    rng = np.random.default_rng(2)
    area = sbox(0, 0, 40_000, 40_000)  # 40,000 ft square, 1,000 ft cells
    x = rng.uniform(0, 40_000, 3_000)
    y = rng.uniform(0, 40_000, 3_000)
    cx = rng.normal(20_500, 900, 400)
    cy = rng.normal(20_500, 900, 400)
    result = grid_gi_star(np.r_[x, cx], np.r_[y, cy], np.ones(3_400), area, 1000, permutations=99)
    assert len(result) == 1600 and result["value"].sum() == 3_400
    centre = result[(result["col"] == 20) & (result["row"] == 20)].iloc[0]
    assert centre["hotspot_class"] == "Hot spot, 99% confidence"
    hot = result[result["hotspot_class"].str.startswith("Hot")]
    assert ((hot["col"] - 20).abs().max() <= 4) and ((hot["row"] - 20).abs().max() <= 4)
    # The same number of points spread evenly: no hot cells.
    flat = grid_gi_star(rng.uniform(0, 40_000, 3_400), rng.uniform(0, 40_000, 3_400), np.ones(3_400), area, 1000,
                        permutations=99)
    assert (flat["hotspot_class"] != "Not significant").sum() <= 3


def test_kernel_density_mass_and_peak():
    from geo.hotspots import kernel_density

    rng = np.random.default_rng(3)
    x = rng.normal(25_000, 500, 2_000)
    y = rng.normal(25_000, 500, 2_000)
    d = kernel_density(x, y, None, (0, 0, 50_000, 50_000), bandwidth_ft=1500, cell_ft=250)
    # Density in events per square mile integrates back to the number of events.
    cell_sq_mi = (250 / 5280) ** 2
    assert d.values.sum() * cell_sq_mi == pytest.approx(2_000, rel=1e-3)
    peak_row, peak_col = np.unravel_index(np.argmax(d.values), d.values.shape)
    assert abs(d.grid.x0 + (peak_col + 0.5) * 250 - 25_000) <= 500
    assert abs(d.grid.y0 + (peak_row + 0.5) * 250 - 25_000) <= 500
    # Weights scale the surface.
    half = kernel_density(x, y, np.full(2_000, 0.5), (0, 0, 50_000, 50_000), bandwidth_ft=1500, cell_ft=250)
    assert half.values.sum() == pytest.approx(d.values.sum() / 2)


def test_grid_hotspots_over_the_county_are_saved_with_geometry(engine):
    import sqlalchemy as sa

    from geo.hotspots import grid_hotspots
    from geo.runs import RunKind, RunSpec, save_cell_results
    from tests.test_metrics import add_calls

    # 40 violent calls at one corner of uptown (add_calls puts every call at -80.84, 35.22).
    add_calls(engine, [(datetime_(2021, 5, 1 + i % 20, 22), "01", "violent_crime", True, 0.9) for i in range(40)])
    result = grid_hotspots(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)), cell_ft=5000, source="labelled",
                           permutations=99)
    assert result.crs.to_epsg() == 4326 and result["value"].sum() == 40
    hot = result[result["hotspot_class"].str.startswith("Hot")]
    assert len(hot) >= 1 and hot.geometry.union_all().contains(__import__("shapely").Point(-80.84, 35.22))
    run_id = save_cell_results(engine, RunSpec(RunKind.CALLS_GRID_HOTSPOTS, {"cell_ft": 5000}), result, 5000)
    with engine.connect() as conn:
        n, valid, cells_ft = conn.execute(sa.text(
            "SELECT count(*), bool_and(ST_IsValid(geom)), max(cell_ft) FROM hotspot_cell_results WHERE run_id = :r"),
            {"r": run_id}).one()
    assert (n, valid, cells_ft) == (len(result), True, 5000)


def datetime_(*args):
    from datetime import datetime

    return datetime(*args)


def test_mann_kendall_on_planted_trends():
    from geo.hotspots import mann_kendall

    rising = np.array([1, 2, 2, 4, 5, 7, 8, 9, 11, 12, 14, 15], dtype=float)
    z, p = mann_kendall(rising)
    assert z > 3 and p < 0.01
    z, p = mann_kendall(rising[::-1])
    assert z < -3 and p < 0.01
    z, p = mann_kendall(np.array([5, 6, 5, 4, 6, 5, 5, 6, 4, 5, 6, 5], dtype=float))
    assert p > 0.3
    assert mann_kendall(np.full(12, 3.0)) == (0.0, 1.0)


def test_threshold_stability(engine):
    import sqlalchemy as sa

    from geo.hotspots import threshold_stability
    from tests.test_metrics import add_calls

    # Many high-probability calls in NPA 3's area (the default call point lies in it), spread elsewhere low ones.
    add_calls(engine, [(datetime_(2021, 5, 2, 22), "01", "violent_crime", True, 0.95)] * 120)
    with engine.begin() as conn:
        point_npa = conn.execute(sa.text(
            "SELECT npa_id FROM neighborhoods WHERE ST_Contains(geom, ST_SetSRID(ST_Point(-80.84, 35.22), 4326))")).scalar()
        conn.execute(sa.text("UPDATE calls SET npa_id = :n"), {"n": point_npa})
        others = [r[0] for r in conn.execute(sa.text("SELECT npa_id FROM neighborhoods ORDER BY npa_id"))]
        for i, npa in enumerate(others):
            conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, call_type, geom, npa_id, p_violent, row_hash, batch_id)"
                " VALUES (:id, '2021-05-03 12:00-04', 'X', ST_SetSRID(ST_Point(-80.84, 35.22), 4326), :n, 0.15, 0, 0)"),
                {"id": f"S{i}", "n": npa})
    result = threshold_stability(engine, Filter.local_days(date(2021, 5, 1), date(2021, 6, 1)))
    row = result.set_index("npa_id").loc[point_npa]
    assert row["stability"] == 1.0 and row["hot_at"] == "0.1,0.2,0.3,0.4,0.5,0.6"
    assert (result["stability"] > 0).sum() <= 10  # only the cluster and its neighbours
