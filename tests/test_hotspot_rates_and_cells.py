"""NPA Gi* on rates per 1,000 residents, grid cell size chosen from the data, and what gi_p_sim is."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from geo.hotspots import (NO_RESIDENTS, PER_1000, band_moran_z, choose_cell_size, gi_star, grid_gi_star,
                          npa_gi_star, resolve_cell_size)

SIDE = 20  # a 20 x 20 map of square "NPAs"


def squares(population: np.ndarray) -> gpd.GeoDataFrame:
    cells = [box(x, y, x + 1, y + 1) for y in range(SIDE) for x in range(SIDE)]
    return gpd.GeoDataFrame({"npa_id": np.arange(1, SIDE * SIDE + 1), "population": population},
                            geometry=cells, crs=3857)


def block(x0: int, y0: int, size: int) -> np.ndarray:
    return np.array([y * SIDE + x for y in range(y0, y0 + size) for x in range(x0, x0 + size)])


def counts_frame(counts: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"npa_id": np.arange(1, SIDE * SIDE + 1), "value": counts.astype(float)})


def significant_hot(frame: gpd.GeoDataFrame, where: np.ndarray | None = None) -> int:
    hot = (frame["gi_z"] > 0) & (frame["gi_q"] < 0.05)
    return int(hot.iloc[where].sum() if where is not None else hot.sum())


def test_high_rates_in_small_populations_are_found_with_rates_not_counts():
    rng = np.random.default_rng(11)
    population = rng.integers(3_000, 6_000, SIDE * SIDE).astype(float)
    small = block(8, 8, 4)
    population[small] = 300
    rate = np.full(SIDE * SIDE, 5.0)            # violent events per 1,000 residents
    rate[small] = 40.0
    counts = rng.poisson(rate * population / 1000.0)
    npas = squares(population)
    by_count = npa_gi_star(npas, counts_frame(counts), 0, 0)
    by_rate = npa_gi_star(npas, counts_frame(counts), 0, 0, per_1000=True)
    assert set(by_rate["value_unit"]) == {PER_1000} and set(by_count["value_unit"]) == {"count"}
    np.testing.assert_allclose(by_rate["value"], counts * 1000.0 / population)
    np.testing.assert_array_equal(by_rate["event_count"], counts)
    # The 16 small NPAs: 12 or more hot with rates (their rate is 8x the rest); none with counts
    # (12 events each against about 22 elsewhere).
    assert significant_hot(by_rate, small) >= 12
    assert significant_hot(by_count, small) == 0
    outside = np.setdiff1d(np.arange(SIDE * SIDE), block(7, 7, 6))
    assert significant_hot(by_rate, outside) == 0


def test_a_population_proportional_null_is_hot_by_count_and_flat_by_rate():
    rng = np.random.default_rng(12)
    population = rng.integers(800, 1_200, SIDE * SIDE).astype(float)
    dense = block(4, 4, 6)
    population[dense] = rng.integers(10_000, 12_000, len(dense))
    counts = rng.poisson(6.0 * population / 1000.0)   # one rate everywhere: only people differ
    npas = squares(population)
    by_count = npa_gi_star(npas, counts_frame(counts), 0, 0)
    by_rate = npa_gi_star(npas, counts_frame(counts), 0, 0, per_1000=True)
    assert significant_hot(by_count, dense) >= 30     # the populous block "is" a hot spot by count
    assert significant_hot(by_rate) == 0              # no rate is raised anywhere: nothing at FDR 5%
    assert int((by_rate["gi_q"] < 0.05).sum()) == 0


def test_npas_without_residents_are_left_out_and_counted():
    rng = np.random.default_rng(13)
    population = rng.integers(1_000, 3_000, SIDE * SIDE).astype(float)
    empty = np.array([5 * SIDE + 5, 5 * SIDE + 6, 12 * SIDE + 3])
    population[empty] = [0, np.nan, 0]                 # no residents, and an unknown population
    counts = rng.poisson(np.nan_to_num(population) / 200.0).astype(float)
    counts[empty] = [7, 2, 4]                          # a park or a mall: events, nobody living there
    npas = squares(population)
    result = npa_gi_star(npas, counts_frame(counts), 0, 0, per_1000=True)
    assert result.attrs["left_out"] == {"npas_without_residents": 3, "events_in_them": 13.0}
    left = result.iloc[empty]
    assert set(left["hotspot_class"]) == {NO_RESIDENTS}
    assert left[["value", "gi_z", "gi_p", "gi_q"]].isna().all().all()
    assert result.drop(index=result.index[empty])["gi_z"].notna().all()
    # Gi* of a neighbour of the empty NPA at (5, 5), by hand: binary weights over its queen
    # neighbours that have residents, itself included; mean and spread over the 397 analysed NPAs.
    kept = np.ones(SIDE * SIDE, dtype=bool)
    kept[empty] = False
    x = np.where(kept, counts * 1000.0 / np.where(kept, population, 1), np.nan)
    i = 4 * SIDE + 5
    around = [(4 + dy) * SIDE + 5 + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    around = [j for j in around if kept[j]]
    n = kept.sum()
    mean, sd = np.nanmean(x), np.sqrt(np.nansum(x ** 2) / n - np.nanmean(x) ** 2)
    wi = len(around)
    z = (x[around].sum() - mean * wi) / (sd * np.sqrt((n * wi - wi ** 2) / (n - 1)))
    assert wi == 7 and result["gi_z"].iloc[i] == pytest.approx(z, rel=1e-10)


def test_gi_p_is_two_sided_normal_and_p_sim_is_esda_one_sided():
    from esda.getisord import G_Local
    from scipy.stats import norm

    from geo.hotspots import queen_weights

    rng = np.random.default_rng(14)
    values = rng.poisson(3.0, SIDE * SIDE).astype(float)
    values[block(3, 3, 4)] += 5           # a hot block, so both tails occur
    values[block(13, 13, 4)] = 0          # and a cold one
    npas = squares(np.ones(SIDE * SIDE))
    result = gi_star(npas.geometry, values, permutations=499, seed=7)
    np.testing.assert_allclose(result.p, 2 * norm.sf(np.abs(result.z)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # esda's notice that its default alternative will change
        g = G_Local(values, queen_weights(npas.geometry), transform="B", star=True, permutations=499, seed=7,
                    n_jobs=1, keep_simulations=True)
    larger = (g.rGs >= g.Gs[:, None]).sum(axis=1)          # permutations at least as large as observed
    by_hand = (np.minimum(larger, 499 - larger) + 1) / 500  # the observed value's own tail
    np.testing.assert_allclose(result.p_sim, by_hand, rtol=1e-6)
    hot = result.z > 3
    assert hot.sum() >= 4 and (result.p_sim[hot] <= 0.02).all()
    cold = result.z < -2
    assert cold.sum() >= 4 and (result.p_sim[cold] <= 0.05).all()
    # One-sided: at most 1/2 (the smaller tail), never the doubled two-sided value.
    assert result.p_sim.max() <= 0.5 + 1e-9


# --- grid cell size from the data --------------------------------------------------------------
AREA = box(0, 0, 100_000, 100_000)


def clustered(sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2,000 random points plus 3,000 in 15 Gaussian clusters of standard deviation `sd` feet."""
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(10_000, 90_000, 15), rng.uniform(10_000, 90_000, 15)
    k = rng.integers(0, 15, 3_000)
    x = np.r_[rng.uniform(0, 100_000, 2_000), cx[k] + rng.normal(0, sd, 3_000)]
    y = np.r_[rng.uniform(0, 100_000, 2_000), cy[k] + rng.normal(0, sd, 3_000)]
    inside = (x > 0) & (x < 100_000) & (y > 0) & (y < 100_000)
    return x[inside], y[inside]


@pytest.mark.parametrize("seed", [1, 2])
def test_cell_size_follows_the_cluster_scale(seed):
    sizes = {}
    for sd, (lo, hi) in {1_000: (1_200, 1_900), 2_000: (2_700, 3_900), 4_000: (5_200, 8_000)}.items():
        choice = choose_cell_size(*clustered(sd, seed), AREA)
        assert choice.rule == "autocorrelation_peak", choice.reason
        assert lo <= choice.cell_ft <= hi, (sd, choice.cell_ft, choice.reason)
        sizes[sd] = choice.cell_ft
        # The peak the rule reports is a real peak of the scanned z-scores.
        dist, z = zip(*choice.bands)
        k = int(np.argmin(np.abs(np.array(dist) - choice.cell_ft * np.sqrt(2))))
        assert z[k] >= 1.96 and z[k] > z[k - 1] and z[k] > z[k + 1]
    assert sizes[1_000] < sizes[2_000] < sizes[4_000]


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_random_points_fall_back_to_the_nearest_neighbour_size(seed):
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 100_000, 3_000), rng.uniform(0, 100_000, 3_000)
    choice = choose_cell_size(x, y, AREA)
    assert choice.rule == "nearest_neighbour", choice.reason
    d = cdist(np.c_[x, y], np.c_[x, y])
    np.fill_diagonal(d, np.inf)
    mean_nn = d.min(axis=1).mean()
    assert choice.mean_nn_ft == pytest.approx(mean_nn)
    assert choice.cell_ft == round(2 * mean_nn, -1)
    # Under complete spatial randomness the mean nearest-neighbour distance is about 0.5 / sqrt(density).
    assert mean_nn == pytest.approx(0.5 / np.sqrt(3_000 / 1e10), rel=0.06)


def test_band_moran_z_matches_esda():
    from esda.moran import Moran
    from libpysal.weights import DistanceBand

    from geo.hotspots import Lattice

    rng = np.random.default_rng(6)
    lattice = Lattice.cells_over(box(0, 0, 15, 12), 1.0)
    values = rng.poisson(2.0, len(lattice.cols)).astype(float) + (lattice.cols < 5) * 2.0
    ours = band_moran_z(values, lattice.index, 3)
    centres = np.c_[lattice.cols + 0.5, lattice.rows + 0.5]
    for k in (1, 2, 3):
        w = DistanceBand(centres, threshold=k + 1e-9, binary=True, silence_warnings=True)
        assert ours[k - 1] == pytest.approx(Moran(values, w, transformation="B", permutations=0).z_norm, rel=1e-9)


def test_fixed_and_auto_cell_sizes_on_the_grid():
    x, y = clustered(2_000, 1)
    auto = grid_gi_star(x, y, np.ones(len(x)), AREA, "auto", permutations=0)
    choice = auto.attrs["cell_size"]
    assert choice.rule == "autocorrelation_peak" and auto.attrs["grid"].size == choice.cell_ft
    assert auto["value"].sum() == len(x)
    fixed = grid_gi_star(x, y, np.ones(len(x)), AREA, 2500, permutations=0)
    assert fixed.attrs["cell_size"].rule == "fixed" and len(fixed) == 40 * 40
    for bad in ("big", -5, 0):
        with pytest.raises(ValueError, match="cell size"):
            resolve_cell_size(bad, x, y, AREA)
    with pytest.raises(ValueError, match="at least 30 points"):
        choose_cell_size(x[:10], y[:10], AREA)


def test_real_offense_rates_per_1000_residents(engine):
    """CMPD's published NPA violent-crime counts divided by the NPAs' real populations."""
    import sqlalchemy as sa

    from geo.hotspots import offense_hotspots
    from geo.runs import RunKind, RunSpec, save_npa_results

    counts = offense_hotspots(engine, (2019, 2021), permutations=0)
    rates = offense_hotspots(engine, (2019, 2021), permutations=0, per_1000=True)
    with engine.connect() as conn:
        no_residents = conn.execute(sa.text(
            "SELECT count(*) FROM neighborhoods WHERE coalesce(population, 0) <= 0")).scalar_one()
    left = rates.attrs["left_out"]
    assert left["npas_without_residents"] == no_residents
    assert left["events_in_them"] == counts.loc[rates["hotspot_class"] == NO_RESIDENTS, "value"].sum()
    analysed = rates[rates["hotspot_class"] != NO_RESIDENTS]
    np.testing.assert_allclose(analysed["value"], analysed["event_count"] * 1000.0 / analysed["population"])
    assert len(analysed) == 462 - no_residents
    run_id = save_npa_results(engine, RunSpec(RunKind.OFFENSES_NPA_HOTSPOTS, {"value_unit": PER_1000}), rates)
    with engine.connect() as conn:
        n, units, total, params = conn.execute(sa.text(
            "SELECT count(*), array_agg(DISTINCT value_unit), sum(event_count), max(r.params::text)"
            " FROM hotspot_npa_results h JOIN analysis_runs r USING (run_id) WHERE run_id = :r"), {"r": run_id}).one()
    assert (n, units) == (462 - no_residents, [PER_1000])
    assert total == pytest.approx(analysed["event_count"].sum())
    assert f'"npas_without_residents": {no_residents}' in params


def test_cell_size_of_real_homicide_points(data_dir):
    """CMPD's real homicide points: clustering rises to a city-wide scale (fewer than 30 cells), so
    no valid peak counts and the nearest-neighbour size is used."""
    import json

    import shapely

    layer = json.loads((data_dir / "real" / "homicides_arcgis.json").read_text())
    lonlat = [(f["geometry"]["x"], f["geometry"]["y"]) for f in layer["features"]
              if (f.get("geometry") or {}).get("x") is not None]
    points = gpd.GeoSeries(gpd.points_from_xy(*zip(*lonlat)), crs=4326).to_crs(2264)
    county = shapely.union_all(gpd.read_file(data_dir / "npa" / "npa.geojson").to_crs(2264).geometry.to_numpy())
    x, y = points.x.to_numpy(), points.y.to_numpy()
    inside = shapely.contains_xy(county, x, y)
    choice = choose_cell_size(x[inside], y[inside], county)
    assert inside.sum() >= 900
    assert choice.rule == "nearest_neighbour", choice.reason
    assert choice.cell_ft == round(2 * choice.mean_nn_ft, -1) and 2_000 <= choice.cell_ft <= 4_000
    dist, z = map(np.array, zip(*choice.bands))
    top = dist[np.argmax(z)]
    assert z.max() > 1.96 and top / np.sqrt(2) > np.sqrt(county.area / 30)   # the peak is city-wide


def test_cli_rates_and_cell_size_options(engine, tmp_path):
    import sqlalchemy as sa
    from click.testing import CliRunner

    from geo.cli import main

    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTSPOTS_VAR_DIR": str(tmp_path / "v")}

    def run(*args):
        return CliRunner().invoke(main, ["hotspots", *args], env=env, catch_exceptions=False)

    out = run("--source", "offenses", "--years", "2019-2021", "--per-1000", "--permutations", "0", "--save")
    assert out.exit_code == 0, out.output
    assert "value: violent per 1,000 residents; 2 NPAs without residents left out (47 violent in them)" in out.output
    assert "Left out: no residents" in out.output and "/1,000)" in out.output
    with engine.connect() as conn:
        unit, n, params = conn.execute(sa.text(
            "SELECT max(value_unit), count(*), max(r.params->>'value_unit') FROM hotspot_npa_results"
            " JOIN analysis_runs r USING (run_id) WHERE run_id = (SELECT max(run_id) FROM analysis_runs)")).one()
    assert (unit, n, params) == (PER_1000, 460, PER_1000)
    for args, hint in ((["--grid-ft", "auto", "--per-1000"], "--per-1000"), (["--grid-ft", "-3"], "--grid-ft"),
                       (["--grid-ft", "wide"], "--grid-ft")):
        bad = run(*args)
        assert bad.exit_code == 2 and hint in bad.output, bad.output
