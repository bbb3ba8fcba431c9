"""Emerging hot spots as ArcGIS defines them: planted cubes for each of the 17 patterns, a null
cube, the space-time neighbourhood, complete time steps only, and the real incident sample."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from libpysal.weights import lat2W
from scipy.stats import norm

from geo.emerging import (MIN_STEPS, NO_PATTERN, PATTERNS, emerging_class, emerging_hotspots, npa_emerging,
                          space_time_weights, time_steps)
from geo.filters import Filter

# --- the rules, one sequence each ---------------------------------------------------------------
H, C, o = 1, -1, 0
FLAT, UP, DOWN = (0.3, 0.76), (3.1, 0.002), (-3.1, 0.002)


@pytest.mark.parametrize("expected,state,trend", [
    (NO_PATTERN, [o] * 12, FLAT),
    (NO_PATTERN, [H] * 6 + [o] * 6, FLAT),                       # hot once, not in the final step, < 90%
    ("New Hot Spot", [o] * 11 + [H], FLAT),
    ("New Hot Spot", [o, C, C] + [o] * 8 + [H], FLAT),           # never hot before: new, whatever the cold past
    ("Consecutive Hot Spot", [o] * 9 + [H] * 3, UP),
    ("Intensifying Hot Spot", [o] + [H] * 11, UP),               # 11 of 12 = 92% hot
    ("Persistent Hot Spot", [H] * 12, FLAT),
    ("Persistent Hot Spot", [H] * 11 + [o], FLAT),               # the final step need not be hot
    ("Persistent Hot Spot", [H] * 9 + [o], FLAT),                # 9 of 10 is 90%
    ("Diminishing Hot Spot", [H] * 12, DOWN),
    ("Sporadic Hot Spot", [H, o, o, H, o, H] + [o] * 5 + [H], FLAT),
    ("Oscillating Hot Spot", [H, o, C, o, H, o, o, o, o, o, o, H], FLAT),
    ("Historical Hot Spot", [H] * 11 + [o], DOWN),
    ("Historical Hot Spot", [H] * 11 + [C], UP),                 # the 90% record decides before the cold final step
    ("Sporadic Hot Spot", [H] * 8 + [o] * 2 + [H] * 2, FLAT),    # 10 of 12 = 83%: not 90%, and not a single run
    ("New Cold Spot", [o] * 11 + [C], FLAT),
    ("Consecutive Cold Spot", [o] * 10 + [C] * 2, DOWN),
    ("Intensifying Cold Spot", [C] * 12, DOWN),
    ("Persistent Cold Spot", [C] * 11 + [o], FLAT),
    ("Diminishing Cold Spot", [C] * 12, UP),
    ("Sporadic Cold Spot", [o, C, o, o, C, o, o, o, o, o, o, C], FLAT),
    ("Oscillating Cold Spot", [o, H, o, o, C, o, o, o, o, o, o, C], FLAT),
    ("Historical Cold Spot", [C] * 11 + [o], UP),
])
def test_each_rule(expected, state, trend):
    assert emerging_class(np.array(state), *trend) == expected


def test_a_trend_counts_only_below_alpha_and_too_short_series_are_refused():
    assert emerging_class(np.array([H] * 12), 1.7, 0.09, alpha=0.10) == "Intensifying Hot Spot"
    assert emerging_class(np.array([H] * 12), 1.7, 0.09, alpha=0.05) == "Persistent Hot Spot"
    with pytest.raises(ValueError, match="at least 10 time steps, got 9"):
        emerging_class(np.array([H] * 9), *FLAT)
    assert len(PATTERNS) == 17 and list(PATTERNS)[0] == NO_PATTERN


# --- the space-time neighbourhood --------------------------------------------------------------
def test_space_time_neighbours_are_the_spatial_ones_now_and_in_earlier_steps_only():
    spatial = lat2W(3, 3, rook=False)                    # 9 locations, the centre (4) touches all
    w = space_time_weights(spatial, 4, 1).sparse.toarray()
    centre_t2 = 2 * 9 + 4
    assert set(np.flatnonzero(w[centre_t2])) == set(range(9, 27))     # steps 1 and 2, all nine cells
    corner_t0 = 0
    assert set(np.flatnonzero(w[corner_t0])) == {0, 1, 3, 4}           # step 0 has no earlier step
    w2 = space_time_weights(spatial, 4, 2).sparse.toarray()
    assert set(np.flatnonzero(w2[3 * 9 + 4])) == set(range(9, 36))     # steps 1-3
    assert not w2[: 2 * 9, 3 * 9:].any()                               # nothing looks forward in time
    with pytest.raises(ValueError, match="at least 1"):
        space_time_weights(spatial, 4, 0)


def test_gi_star_of_each_bin_is_the_hand_formula_over_its_space_time_neighbours():
    rng = np.random.default_rng(4)
    counts = rng.poisson(3.0, (12, 25)).astype(float)
    spatial = lat2W(5, 5, rook=False)
    found = emerging_hotspots(counts, spatial)
    w = space_time_weights(spatial, 12, 1).sparse.toarray()
    x = counts.ravel()
    n, mean, sd = len(x), x.mean(), x.std()
    wi = w.sum(axis=1)
    hand = (w @ x - mean * wi) / (sd * np.sqrt((n * wi - wi ** 2) / (n - 1)))
    assert found.z.ravel() == pytest.approx(hand, abs=1e-12)
    # ArcGIS's Gi_Bin from the FDR q-values over all 300 bins; the state at 90% is any non-zero bin.
    from scipy.stats import false_discovery_control

    q = false_discovery_control(2 * norm.sf(np.abs(hand)), method="bh")
    level = np.select([q < 0.01, q < 0.05, q < 0.10], [3, 2, 1], 0)
    assert (found.bins.ravel() == np.sign(hand) * level).all() and (found.bins != 0).sum() > 0
    assert (found.state == np.sign(found.bins)).all()
    from geo.hotspots import mann_kendall

    assert found.table.loc[7, "trend_z"] == pytest.approx(mann_kendall(found.z[:, 7])[0])


# --- planted cubes ----------------------------------------------------------------------------
SIDE, STEPS, BACKGROUND = 20, 16, 6
CENTRE = 10 * SIDE + 10
BLOCK = [r * SIDE + c for r in range(9, 12) for c in range(9, 12)]  # the centre and its eight neighbours

# Counts above (below) the background in each cell of the 3x3 block, step by step. A bin's
# neighbourhood holds the step before it, so a raised step also raises the next one: "off"
# steps after "on" ones are planted below the background to bring the sum back to normal.
PLANTED = {
    NO_PATTERN: ([0] * 16, "................"),
    "New Hot Spot": ([0] * 15 + [8], "...............H"),
    "Consecutive Hot Spot": ([0] * 12 + [6] * 4, "............HHHH"),
    "Intensifying Hot Spot": ([5 + t for t in range(16)], "H" * 16),
    "Persistent Hot Spot": ([8, 6, 10] * 5 + [8], "H" * 16),
    "Diminishing Hot Spot": ([20 - t for t in range(16)], "H" * 16),
    "Sporadic Hot Spot": ([0, 0, 0, 0, 7, -6, 4, -2, 1, 0, 7, -6, 4, -2, 1, 6], "....H.....H....H"),
    "Oscillating Hot Spot": ([0, 0, 0, -6, 6, -4, 2, -1, 0, 7, -6, 4, -2, 1, 0, 7], "...C.....H.....H"),
    "Historical Hot Spot": ([14 - 0.5 * t for t in range(15)] + [-6], "H" * 15 + "."),
    "New Cold Spot": ([0] * 15 + [-6], "...............C"),
    "Consecutive Cold Spot": ([0] * 12 + [-5] * 4, "............CCCC"),
    "Intensifying Cold Spot": ([-4 - 2 * t / 15 for t in range(16)], "C" * 16),
    "Persistent Cold Spot": ([-5, -6, -4] * 5 + [-5], "C" * 16),
    "Diminishing Cold Spot": ([-6 + 3 * t / 15 for t in range(16)], "C" * 16),
    "Sporadic Cold Spot": ([0, 0, 0, 0, -6, 5, -3, 2, -1, 0, -6, 5, -3, 2, -1, -6], "....C.....C....C"),
    "Oscillating Cold Spot": ([0, 0, 0, 6, -6, 4, -2, 1, 0, -6, 5, -3, 2, -1, 0, -6], "...H.....C.....C"),
    "Historical Cold Spot": ([-6 + 2 * t / 14 for t in range(15)] + [4], "C" * 15 + "."),
}


def planted_cube(excess, seed: int) -> np.ndarray:
    counts = np.random.default_rng(seed).poisson(BACKGROUND, (STEPS, SIDE * SIDE)).astype(float)
    counts[:, BLOCK] = BACKGROUND + np.asarray(excess, dtype=float)[:, None]
    return counts


@pytest.mark.parametrize("pattern", list(PLANTED))
def test_a_planted_series_of_each_pattern_is_classified_as_planted(pattern):
    excess, states = PLANTED[pattern]
    lattice = lat2W(SIDE, SIDE, rook=False)
    for seed in range(3):  # the background is Poisson noise; the block follows the pattern
        found = emerging_hotspots(planted_cube(excess, seed), lattice)
        got = "".join({1: "H", -1: "C", 0: "."}[s] for s in found.state[:, CENTRE])
        assert got == states, (seed, np.round(found.z[:, CENTRE], 1))
        row = found.table.loc[CENTRE]
        assert row["pattern"] == pattern, (seed, row.to_dict())
        assert (row["hot_steps"], row["cold_steps"]) == (states.count("H"), states.count("C"))
        far = found.table.loc[[0, SIDE - 1, SIDE * (SIDE - 1), 3 * SIDE + 16]]
        assert (far["pattern"] == NO_PATTERN).all()


def test_no_pattern_on_a_null_cube():
    """Poisson counts with no structure: 20 cubes of 900 locations x 16 months."""
    side, seen = 30, Counter()
    lattice = lat2W(side, side, rook=False)
    for seed in range(20):
        counts = np.random.default_rng(100 + seed).poisson(4.0, (16, side * side)).astype(float)
        seen.update(emerging_hotspots(counts, lattice).table["pattern"])
    total = sum(seen.values())
    false_alarms = 1 - seen[NO_PATTERN] / total
    assert total == 18_000
    assert false_alarms <= 0.05    # the requirement
    assert false_alarms <= 0.001   # found: 0 of 18,000 (FDR over each cube's 14,400 bins)


def test_a_noisy_stable_hot_spot_stays_hot_and_mostly_persistent():
    """A 5x5 block at Poisson(8) on a Poisson(4) background, 40 seeds: always one of the >=90%
    patterns; persistent unless Mann-Kendall, fed autocorrelated z-scores, finds a trend."""
    lattice = lat2W(SIDE, SIDE, rook=False)
    block = [r * SIDE + c for r in range(8, 13) for c in range(8, 13)]
    seen = Counter()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        counts = rng.poisson(4.0, (STEPS, SIDE * SIDE)).astype(float)
        counts[:, block] = rng.poisson(8.0, (STEPS, len(block)))
        seen[emerging_hotspots(counts, lattice).table.loc[CENTRE, "pattern"]] += 1
    assert set(seen) <= {"Persistent Hot Spot", "Intensifying Hot Spot", "Diminishing Hot Spot"}
    assert seen["Persistent Hot Spot"] >= 28   # found 32 of 40; 6 intensifying, 2 diminishing


def test_fewer_than_ten_steps_and_bad_parameters_are_refused():
    lattice = lat2W(5, 5, rook=False)
    counts = np.ones((MIN_STEPS - 1, 25))
    with pytest.raises(ValueError, match="at least 10 complete time steps; the cube has 9"):
        emerging_hotspots(counts, lattice)
    with pytest.raises(ValueError, match="confidence must be one of"):
        emerging_hotspots(np.ones((12, 25)), lattice, confidence=0.8)
    with pytest.raises(ValueError, match="the weights have 25 locations, the cube 24"):
        emerging_hotspots(np.ones((12, 24)), lattice)


# --- time steps -------------------------------------------------------------------------------
def test_only_complete_steps_are_kept_and_the_partial_ends_are_named():
    steps, left_out = time_steps(Filter.local_days(date(2024, 1, 15), date(2024, 12, 4)), "month")
    assert [s.label for s in steps] == [f"2024-{m:02d}" for m in range(2, 12)]
    assert [(x.step.label, round(x.covered, 4)) for x in left_out] == [("2024-01", round(17 / 31, 4)),
                                                                       ("2024-12", round(3 / 31, 4))]
    # Wednesday 3 January to Tuesday 2 April 2024: Monday-Sunday weeks, partial at both ends.
    steps, left_out = time_steps(Filter.local_days(date(2024, 1, 3), date(2024, 4, 3)), "week")
    assert steps[0].start == date(2024, 1, 8) and steps[0].label == "2024-W02"
    assert all(s.start.weekday() == 0 and s.days == 7 for s in steps) and len(steps) == 12
    assert [(x.step.label, x.covered) for x in left_out] == [("2024-W01", 5 / 7), ("2024-W14", 2 / 7)]
    with pytest.raises(ValueError, match="month, week"):
        time_steps(Filter.local_days(date(2024, 1, 1), date(2024, 4, 1)), "day")


# --- from the database ------------------------------------------------------------------------
def plant_calls(engine, months: list[tuple[date, float]], seed: int = 7) -> tuple[int, list[int]]:
    """Violent calls per NPA and month (each month given with the share of it the data covers):
    Poisson(3) a month everywhere, a fixed 12/10/14 a month in one NPA and its neighbours.
    Returns the centre NPA and the cluster."""
    from geo.hotspots import queen_weights
    from geo.spatial import read_neighborhoods

    npas = read_neighborhoods(engine)
    w = queen_weights(npas)
    centre = int(np.argmax([w.cardinalities[i] for i in range(w.n)]))
    cluster = [centre, *w.neighbors[centre]]
    rng = np.random.default_rng(seed)
    ids, times, npa_ids = [], [], []
    for m, (first, share) in enumerate(months):
        days = 31 if first.month in (1, 3, 5, 7, 8, 10, 12) else 30 if first.month != 2 else 28
        counts = rng.poisson(3.0 * share, len(npas))
        counts[cluster] = round((12, 10, 14)[m % 3] * share)
        for j, k in enumerate(counts):
            span = max(1, round(days * share))
            for c in range(int(k)):
                day = (1, span)[c] if c < 2 else 1 + (c * 7) % span   # the first and last covered days first
                ids.append(f"P{m}-{j}-{c}")
                times.append(f"{first.replace(day=day)} 12:00")
                npa_ids.append(int(npas["npa_id"].iloc[j]))
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO calls (call_id, received_at, call_type, geom, npa_id, label, p_violent, row_hash, batch_id)"
            " SELECT t.id, CAST(t.at AS timestamp) AT TIME ZONE 'America/New_York', 'ASSAULT',"
            " ST_PointOnSurface(n.geom), t.npa, true, 0.9, 0, 0"
            " FROM unnest(CAST(:ids AS text[]), CAST(:times AS text[]), CAST(:npas AS int[])) AS t(id, at, npa)"
            " JOIN neighborhoods n ON n.npa_id = t.npa"), {"ids": ids, "times": times, "npas": npa_ids})
    return int(npas["npa_id"].iloc[centre]), [int(npas["npa_id"].iloc[i]) for i in cluster]


YEAR_2021 = [(date(2021, m, 1), 1.0) for m in range(1, 13)]


def test_a_stable_hot_spot_with_a_tenth_of_the_last_month_stays_persistent(engine):
    # The data ends on 3 January 2022: the last month is 3/31 (about a tenth) complete.
    centre, cluster = plant_calls(engine, [*YEAR_2021, (date(2022, 1, 1), 0.1)])
    run = npa_emerging(engine, Filter.local_days(date(2021, 1, 1), date(2022, 2, 1)), source="labelled")
    assert [s.label for s in run.cube.steps] == [f"2021-{m:02d}" for m in range(1, 13)]
    assert [(x.step.label, round(x.covered, 3)) for x in run.cube.left_out] == [("2022-01", round(3 / 31, 3))]
    assert run.cube.data_span == (date(2021, 1, 1), date(2022, 1, 3))
    patterns = run.areas.set_index("npa_id")["pattern"]
    assert patterns[centre] == "Persistent Hot Spot"
    assert (patterns[cluster] != "Historical Hot Spot").all()
    assert run.areas["total"].sum() == pytest.approx(run.cube.counts.sum())
    # Kept, that tenth of a month would sit far below the cube's mean everywhere: a fifth of the
    # map would turn into new cold spots.
    from geo.hotspots import queen_weights

    with engine.connect() as conn:
        january = dict(conn.execute(sa.text(
            "SELECT npa_id, count(*) FROM calls WHERE received_at >= '2022-01-01 05:00+00' GROUP BY 1")).all())
    kept = np.vstack([run.cube.counts, [january.get(int(n), 0) for n in run.areas["npa_id"]]])
    naive = emerging_hotspots(kept, queen_weights(run.areas)).table.set_index(run.areas["npa_id"])
    assert (run.areas["pattern"] == "New Cold Spot").sum() <= 2
    assert (naive["pattern"] == "New Cold Spot").sum() >= 90   # found 103 of the 462 NPAs


def test_a_january_run_is_refused_and_a_year_and_a_january_are_not_new(engine):
    centre, cluster = plant_calls(engine, [*YEAR_2021, (date(2022, 1, 1), 0.65)])
    with pytest.raises(ValueError, match=r"at least 10 complete months; 2022-01-01..2022-01-20 holds 0 complete "
                                         r"months .* partial ones left out: 2022-01 65% covered"):
        npa_emerging(engine, Filter.local_days(date(2022, 1, 1), date(2022, 1, 21)), source="labelled")
    run = npa_emerging(engine, Filter.local_days(date(2021, 1, 1), date(2022, 1, 21)), source="labelled")
    patterns = run.areas.set_index("npa_id")["pattern"]
    assert (patterns == "New Hot Spot").sum() == 0
    assert patterns[centre] == "Persistent Hot Spot"
    assert patterns[cluster].str.endswith("Hot Spot").all()


def test_grid_cells_and_both_origins(engine):
    import shapely

    from geo.emerging import grid_emerging
    from tests.test_metrics import add_calls

    # Two scored calls that are not violent mark the data's extent: the whole of 2021.
    rows = [(datetime(2021, 1, 1, 12), "01", "traffic", False, 0.01),
            (datetime(2021, 12, 31, 12), "01", "traffic", False, 0.01)]
    for month in range(1, 13):   # one cell's violent calls grow month after month, 20 to 31
        rows += [(datetime(2021, month, 10, 22), "01", "violent_crime", True, 0.9)] * (19 + month)
    add_calls(engine, rows)
    run = grid_emerging(engine, Filter.local_days(date(2021, 1, 1), date(2022, 1, 1)), source="labelled", cell_ft=5000)
    assert run.cube.counts.shape == (12, len(run.areas)) and run.cube.counts.sum() == 306
    cell = run.areas[run.areas.geometry.contains(shapely.Point(-80.84, 35.22))].iloc[0]
    assert cell["pattern"] == "Intensifying Hot Spot" and cell["hot_steps"] == 12 and cell["trend_z"] > 3
    others = run.areas[~run.areas.geometry.contains(shapely.Point(-80.84, 35.22))]
    assert (others["pattern"] == NO_PATTERN).mean() > 0.95
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE calls SET data_origin = 'synthetic' WHERE extract(month FROM received_at) = 3"))
    with pytest.raises(ValueError, match="both real and synthetic rows"):
        grid_emerging(engine, Filter.local_days(date(2021, 1, 1), date(2022, 1, 1)), source="labelled", cell_ft=5000)
    real = grid_emerging(engine, Filter.local_days(date(2021, 1, 1), date(2022, 1, 1)), source="labelled", cell_ft=5000,
                         origin="real")
    assert real.cube.counts.sum() == 306 - 22 and real.cube.counts[2].sum() == 0
    assert "real rows only" in real.cube.source


def test_recorded_violent_incidents_of_the_real_sample(engine, data_dir):
    from geo.emerging import default_source
    from geo.ingest.incidents import load_incidents
    from geo.taxonomy import load_taxonomy

    assert default_source(engine) == "expected"   # no incidents yet: calls
    path = data_dir / "real" / "incidents_api_sample.csv"
    load_incidents(engine, path)
    assert default_source(engine) == "incidents"
    run = npa_emerging(engine, Filter.local_days(date(2018, 1, 1), date(2026, 1, 1)), source="incidents")
    # The sample runs to 7 November 2025: November is 7/30 covered and left out.
    assert len(run.cube.steps) == 94 and run.cube.steps[-1].label == "2025-10"
    assert [(x.step.label, x.covered) for x in run.cube.left_out] == [("2025-11", 7 / 30)]
    # The cube counts every stored violent, founded report of 2018-01 .. 2025-10 on its calendar day.
    with engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT incident_report_id FROM incidents")).scalars())
    violent = load_taxonomy().violent_codes
    with open(path, newline="", encoding="utf-8-sig") as fh:
        expected = Counter(
            datetime.fromtimestamp(int(r["DATE_REPORTED"]) / 1000, timezone.utc).strftime("%Y-%m")
            for r in csv.DictReader(fh)
            if r["HIGHEST_NIBRS_CODE"] in violent and r["CLEARANCE_STATUS"] != "Unfounded"
            and r["INCIDENT_REPORT_ID"] in stored)
    per_month = dict(zip((s.label for s in run.cube.steps), run.cube.counts.sum(axis=1)))
    assert per_month == {m: float(expected.get(m, 0)) for m in per_month}
    assert sum(per_month.values()) > 200
    assert len(run.areas) == 462 and sum(run.pattern_counts().values()) == 462
    assert "recorded violent incidents" in run.cube.source
