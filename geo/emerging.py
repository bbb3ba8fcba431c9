"""Emerging hot spots the way ArcGIS's Emerging Hot Spot Analysis defines them.

The steps (Esri, Space Time Pattern Mining: "How Emerging Hot Spot Analysis works"):

1. a space-time cube: the count at each location (NPA or grid cell) in each complete time step
   (calendar month by default, or Monday-Sunday week); an incomplete first or last step is left
   out and reported, and fewer than 10 complete steps are refused;
2. Getis-Ord Gi* for every bin of the cube, a bin's neighbours being its spatial neighbours and
   itself in the same step and in the `neighbourhood_steps` steps before it, against the mean and
   variance of the whole cube; Benjamini-Hochberg FDR over all bins; each bin a hot or cold spot
   at 90, 95 or 99% confidence, or not significant;
3. a Mann-Kendall trend test on each location's series of Gi* z-scores;
4. one of 17 patterns per location from its hot/cold bins and that trend (`emerging_class`).

The Gi* itself is geo.hotspots.gi_star, given a sparse weights matrix over the cube's bins.
docs/methods.md ("Emerging hot spots") states each choice and where ArcGIS leaves one open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geo.hotspots import CLASSES, NOT_SIGNIFICANT, Lattice, gi_star, mann_kendall, queen_weights
from geo.filters import Filter
from geo.sources import Source, check_origin, get_source
from geo.sources import default_source  # noqa: F401  (re-exported: `from geo.emerging import default_source`)
from geo.spatial import read_neighborhoods

MIN_STEPS = 10          # ArcGIS's space-time trend analysis needs at least ten time steps
CONFIDENCES = (0.90, 0.95, 0.99)
STEP_UNITS = ("month", "week")

NO_PATTERN = "No Pattern Detected"
# The 17 patterns, in our words; the rules are in emerging_class.
PATTERNS = {
    NO_PATTERN: "none of the hot or cold spot patterns below",
    "New Hot Spot": "a hot spot in the final step, never one before",
    "Consecutive Hot Spot": "one unbroken run of at least two hot steps ending at the final step, never hot before "
                            "the run, hot in under 90% of steps",
    "Intensifying Hot Spot": "hot in at least 90% of steps including the final one, Gi* z rising significantly",
    "Persistent Hot Spot": "hot in at least 90% of steps, no significant trend in Gi* z",
    "Diminishing Hot Spot": "hot in at least 90% of steps including the final one, Gi* z falling significantly",
    "Sporadic Hot Spot": "hot in the final step and on and off before, in under 90% of steps, never a cold spot",
    "Oscillating Hot Spot": "hot in the final step, a cold spot in some earlier step, hot in under 90% of steps",
    "Historical Hot Spot": "not hot in the final step, hot in at least 90% of steps, with a significant trend",
    "New Cold Spot": "a cold spot in the final step, never one before",
    "Consecutive Cold Spot": "one unbroken run of at least two cold steps ending at the final step, never cold "
                             "before the run, cold in under 90% of steps",
    "Intensifying Cold Spot": "cold in at least 90% of steps including the final one, Gi* z falling significantly",
    "Persistent Cold Spot": "cold in at least 90% of steps, no significant trend in Gi* z",
    "Diminishing Cold Spot": "cold in at least 90% of steps including the final one, Gi* z rising significantly",
    "Sporadic Cold Spot": "cold in the final step and on and off before, in under 90% of steps, never a hot spot",
    "Oscillating Cold Spot": "cold in the final step, a hot spot in some earlier step, cold in under 90% of steps",
    "Historical Cold Spot": "not cold in the final step, cold in at least 90% of steps, with a significant trend",
}


def emerging_class(state: np.ndarray, trend_z: float, trend_p: float, alpha: float = 0.10) -> str:
    """The pattern of one location from its per-step state (+1 hot, -1 cold, 0 neither; oldest
    first) and the Mann-Kendall trend (z, p) of its Gi* z-scores; a trend counts when p < alpha.

    A location that is hot (cold) in at least 90% of steps is classed by that record first:
    persistent without a trend, otherwise intensifying/diminishing when the final step is hot
    (cold), historical when it is not. Otherwise the final step decides: new, consecutive,
    oscillating (a step of the opposite kind before) or sporadic.
    """
    state = np.sign(np.asarray(state, dtype=float)).astype(int)
    n = len(state)
    if n < MIN_STEPS:
        raise ValueError(f"a pattern needs at least {MIN_STEPS} time steps, got {n}")
    trend = int(np.sign(trend_z)) if trend_p < alpha else 0
    for sign, kind in ((1, "Hot"), (-1, "Cold")):
        mine = state == sign
        if 10 * int(mine.sum()) >= 9 * n:  # at least 90% of the steps, in integers
            if trend == 0:
                return f"Persistent {kind} Spot"
            if not mine[-1]:
                return f"Historical {kind} Spot"
            return f"Intensifying {kind} Spot" if trend == sign else f"Diminishing {kind} Spot"
    final = state[-1]
    if final == 0:
        return NO_PATTERN
    kind = "Hot" if final > 0 else "Cold"
    mine = state == final
    run = n - int(np.flatnonzero(~mine).max()) - 1 if (~mine).any() else n
    if mine.sum() == 1:
        return f"New {kind} Spot"
    if run >= 2 and run == mine.sum():
        return f"Consecutive {kind} Spot"
    if (state == -final).any():
        return f"Oscillating {kind} Spot"
    return f"Sporadic {kind} Spot"


def space_time_weights(spatial, n_steps: int, neighbourhood_steps: int = 1):
    """Binary neighbours over the bins of a cube, bin t * n + i being location i in step t.

    A bin's neighbours are the spatial neighbours of its location and the location itself, in
    its own step and in each of the `neighbourhood_steps` steps before it (ArcGIS looks back in
    time only). `spatial` is a libpysal W (or Graph) over the n locations.
    """
    import scipy.sparse as sp
    from libpysal.graph import Graph

    if neighbourhood_steps < 1:
        raise ValueError(f"neighbourhood_steps must be at least 1, not {neighbourhood_steps}")
    around = (sp.csr_matrix(spatial.sparse) != 0).astype(float).tolil()
    around.setdiag(1.0)
    lags = range(min(neighbourhood_steps, n_steps - 1) + 1)
    back = sp.diags([np.ones(n_steps - k) for k in lags], [-k for k in lags], shape=(n_steps, n_steps))
    return Graph.from_sparse(sp.kron(back, around.tocsr(), format="csr"))


@dataclass
class SpaceTimeHotSpots:
    """Gi* per bin (arrays are steps x locations) and the pattern of each location."""

    z: np.ndarray
    q: np.ndarray            # Benjamini-Hochberg over all bins
    bins: np.ndarray         # ArcGIS's Gi_Bin: +3/+2/+1 hot at 99/95/90%, -1..-3 cold, 0 not significant
    state: np.ndarray        # +1 hot / -1 cold at the chosen confidence, 0 otherwise
    table: pd.DataFrame      # per location: pattern, trend_z, trend_p, hot_steps, cold_steps, final_state, ...


_BIN_OF_CLASS = {NOT_SIGNIFICANT: 0, **{hot: 3 - i for i, (_, hot, _) in enumerate(CLASSES)},
                 **{cold: i - 3 for i, (_, _, cold) in enumerate(CLASSES)}}


def emerging_hotspots(counts: np.ndarray, spatial_weights, *, neighbourhood_steps: int = 1,
                      confidence: float = 0.90) -> SpaceTimeHotSpots:
    """Space-time Gi*, FDR, Mann-Kendall and the 17 patterns for a (steps x locations) cube, oldest step first.

    `spatial_weights` (libpysal W) gives the neighbours of the locations. A bin is a hot (cold)
    spot when its FDR-corrected p is below 1 - confidence and its z is positive (negative); the
    same level decides whether a Mann-Kendall trend counts.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError(f"counts must be a steps x locations matrix, got shape {counts.shape}")
    n_steps, n = counts.shape
    if n_steps < MIN_STEPS:
        raise ValueError(f"emerging hot spots need at least {MIN_STEPS} complete time steps; the cube has {n_steps}")
    if confidence not in CONFIDENCES:
        raise ValueError(f"confidence must be one of {', '.join(map(str, CONFIDENCES))}, not {confidence}")
    if spatial_weights.n != n:
        raise ValueError(f"the weights have {spatial_weights.n} locations, the cube {n}")
    weights = space_time_weights(spatial_weights, n_steps, neighbourhood_steps)
    gi = gi_star(None, counts.ravel(), permutations=0, weights=weights)
    z = gi.z.reshape(n_steps, n)
    q = gi.q.reshape(n_steps, n)
    bins = np.vectorize(_BIN_OF_CLASS.__getitem__, otypes=[int])(gi.classes).reshape(n_steps, n)
    alpha = round(1 - confidence, 10)
    state = np.where(q < alpha, np.sign(z), 0).astype(int)
    rows = []
    for i in range(n):
        trend_z, trend_p = mann_kendall(z[:, i])
        rows.append({"pattern": emerging_class(state[:, i], trend_z, trend_p, alpha),
                     "trend_z": trend_z, "trend_p": trend_p,
                     "hot_steps": int((state[:, i] > 0).sum()), "cold_steps": int((state[:, i] < 0).sum()),
                     "final_state": gi.classes[(n_steps - 1) * n + i], "final_z": float(z[-1, i]),
                     "total": float(counts[:, i].sum())})
    return SpaceTimeHotSpots(z=z, q=q, bins=bins, state=state, table=pd.DataFrame(rows))


# --- time steps -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeStep:
    """One step of the cube: local dates [start, end)."""

    start: date
    end: date
    unit: str

    @property
    def label(self) -> str:
        if self.unit == "month":
            return self.start.strftime("%Y-%m")
        year, week, _ = self.start.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class LeftOut:
    """A step at either end of the period that the data covers only in part."""

    step: TimeStep
    covered: float   # share of its days inside both the period and the data


def _step_start(day: date, unit: str) -> date:
    return day.replace(day=1) if unit == "month" else day - timedelta(days=day.weekday())


def _next_step(start: date, unit: str) -> date:
    return (start + timedelta(days=32)).replace(day=1) if unit == "month" else start + timedelta(days=7)


def time_steps(covered: Filter, unit: str = "month") -> tuple[list[TimeStep], list[LeftOut]]:
    """Calendar months (or Monday-Sunday weeks) inside `covered`, and the partly covered ones at its ends."""
    if unit not in STEP_UNITS:
        raise ValueError(f"the time step must be one of {', '.join(STEP_UNITS)}, not {unit!r}")
    steps, partial = [], []
    first, end = covered.start_date, covered.end_date
    start = _step_start(first, unit)
    while start < end:
        step = TimeStep(start, _next_step(start, unit), unit)
        days = (min(step.end, end) - max(step.start, first)).days
        if days == step.days:
            steps.append(step)
        else:
            partial.append(LeftOut(step, days / step.days))
        start = step.end
    return steps, partial


# --- what is counted --------------------------------------------------------------------------
# What is counted: geo.sources (incidents, homicides, labelled or expected calls; one count per incident).
_source = get_source


@dataclass
class Cube:
    """Counts per complete time step (rows, oldest first) and location (columns)."""

    counts: np.ndarray
    steps: list[TimeStep]
    left_out: list[LeftOut]
    source: str                       # what was counted, in words
    data_span: tuple[date, date]      # first and last local date of the source's rows
    origin: str | None = None

    def describe_left_out(self) -> str:
        """One line naming the partial steps left out and how complete each was."""
        if not self.left_out:
            return "none (the period starts and ends on step boundaries inside the data)"
        return "; ".join(f"{x.step.label} ({x.covered:.0%} covered)" for x in self.left_out)


def _steps_for(engine: Engine, source: Source, period: Filter, unit: str, origin: str | None
               ) -> tuple[list[TimeStep], list[LeftOut], tuple[date, date]]:
    """The complete steps of `period` that the source's data covers, refusing fewer than MIN_STEPS."""
    t = source.sa_table
    local = sa.cast(source.local_time(period.tz), sa.Date)
    conditions = [source.scope(t)] + ([t.c.data_origin == origin] if origin is not None else [])
    with engine.connect() as conn:
        first, last = conn.execute(sa.select(sa.func.min(local), sa.func.max(local)).where(*conditions)).one()
        if first is None:
            raise ValueError(f"no {source.table} to count{' of origin ' + origin if origin else ''}"
                             f"{'; label the calls first (`hotspots label`)' if source.table == 'calls' else ''}")
    check_origin(engine, source, period, origin)
    lo, hi = max(period.start_date, first), min(period.end_date, last + timedelta(days=1))
    span = (first, last)
    if hi <= lo:
        raise ValueError(f"the {source.table} span {first}..{last}, "
                         f"outside {period.start_date}..{period.end_date - timedelta(days=1)}")
    covered = period.with_days(lo, hi)
    steps, left_out = time_steps(covered, unit)
    if len(steps) < MIN_STEPS:
        partial = "; ".join(f"{x.step.label} {x.covered:.0%} covered" for x in left_out)
        raise ValueError(
            f"emerging hot spots need at least {MIN_STEPS} complete {unit}s; {period.start_date}.."
            f"{period.end_date - timedelta(days=1)} holds {len(steps)} complete {unit}"
            f"{'' if len(steps) == 1 else 's'} of {source.table} data (which span {first}..{last})"
            + (f", and partial ones left out: {partial}" if partial else ""))
    return steps, left_out, span


def _describe(source: Source, origin: str | None) -> str:
    return source.describe(origin)


def _step_index(steps: list[TimeStep]) -> dict[date, int]:
    return {s.start: i for i, s in enumerate(steps)}


def npa_cube(engine: Engine, period: Filter, source: str = "incidents", *, unit: str = "month",
             origin: str | None = None) -> tuple[gpd.GeoDataFrame, Cube]:
    """The NPAs (in npa_id order) and the cube of what `source` counts per NPA and complete step."""
    src = _source(source)
    steps, left_out, span = _steps_for(engine, src, period, unit, origin)
    npas = read_neighborhoods(engine)
    units, params = src.units_sql(period.with_days(steps[0].start, steps[-1].end).narrowed(origin=origin))
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(
            "SELECT npa_id, date_trunc(:unit, local_time)::date AS step, sum(w) AS value"
            f" FROM ({units}) u WHERE npa_id IS NOT NULL GROUP BY 1, 2"), conn, params={**params, "unit": unit})
    counts = np.zeros((len(steps), len(npas)))
    where = _step_index(steps)
    column = {int(n): j for j, n in enumerate(npas["npa_id"])}
    for r in rows.itertuples():
        if int(r.npa_id) in column:
            counts[where[r.step], column[int(r.npa_id)]] += float(r.value)
    return npas, Cube(counts, steps, left_out, _describe(src, origin), span, origin)


def grid_cube(engine: Engine, period: Filter, source: str = "incidents", *, cell_ft: float = 1000.0,
              unit: str = "month", origin: str | None = None) -> tuple[Lattice, Cube]:
    """Square cells of `cell_ft` feet (EPSG:2264) over the county and the cube of what `source` counts per cell."""
    import shapely

    src = _source(source)
    steps, left_out, span = _steps_for(engine, src, period, unit, origin)
    county = shapely.union_all(read_neighborhoods(engine).to_crs(2264).geometry.to_numpy())
    lattice = Lattice.over(county, cell_ft)
    units, params = src.units_sql(period.with_days(steps[0].start, steps[-1].end).narrowed(origin=origin))
    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(
            "SELECT ST_X(g) AS x, ST_Y(g) AS y, w, step FROM ("
            "  SELECT ST_Transform(geom, 2264) AS g, w, date_trunc(:unit, local_time)::date AS step"
            f"  FROM ({units}) u WHERE geom IS NOT NULL) t"), conn, params={**params, "unit": unit})
    counts = np.vstack([lattice.sums(*(rows.loc[rows["step"] == s.start, c].to_numpy() for c in ("x", "y", "w")))
                        for s in steps])
    return lattice, Cube(counts, steps, left_out, _describe(src, origin), span, origin)


@dataclass
class EmergingRun:
    """Emerging hot spots over NPAs or grid cells: the areas with their pattern, the cube, the bins."""

    areas: gpd.GeoDataFrame
    cube: Cube
    bins: SpaceTimeHotSpots
    unit: str
    neighbourhood_steps: int
    confidence: float
    source: str = ""          # geo.sources name of what was counted (incidents, homicides, labelled, expected)

    def pattern_counts(self) -> dict[str, int]:
        """Locations per pattern, all 17 named (zeros included), in PATTERNS order."""
        got = self.areas["pattern"].value_counts()
        return {name: int(got.get(name, 0)) for name in PATTERNS}


def npa_emerging(engine: Engine, period: Filter, *, source: str = "incidents", unit: str = "month",
                 neighbourhood_steps: int = 1, confidence: float = 0.90, origin: str | None = None) -> EmergingRun:
    """Emerging hot spots over the 462 NPAs (queen contiguity), complete months (or weeks) of `period`."""
    npas, cube = npa_cube(engine, period, source, unit=unit, origin=origin)
    found = emerging_hotspots(cube.counts, queen_weights(npas), neighbourhood_steps=neighbourhood_steps,
                              confidence=confidence)
    areas = gpd.GeoDataFrame(pd.concat([npas[["npa_id", "geom"]].reset_index(drop=True), found.table], axis=1),
                             geometry="geom", crs=npas.crs)
    return EmergingRun(areas, cube, found, unit, neighbourhood_steps, confidence, source)


def grid_emerging(engine: Engine, period: Filter, *, source: str = "incidents", cell_ft: float = 1000.0,
                  unit: str = "month", neighbourhood_steps: int = 1, confidence: float = 0.90,
                  origin: str | None = None) -> EmergingRun:
    """Emerging hot spots over square cells (queen neighbours on the lattice); cells returned in EPSG:4326."""
    lattice, cube = grid_cube(engine, period, source, cell_ft=cell_ft, unit=unit, origin=origin)
    found = emerging_hotspots(cube.counts, lattice.weights, neighbourhood_steps=neighbourhood_steps,
                              confidence=confidence)
    cells = gpd.GeoDataFrame({"col": lattice.cols, "row": lattice.rows},
                             geometry=lattice.grid.polygons(lattice.cols, lattice.rows), crs=2264)
    areas = gpd.GeoDataFrame(pd.concat([cells, found.table], axis=1), geometry="geometry", crs=2264).to_crs(4326)
    return EmergingRun(areas, cube, found, unit, neighbourhood_steps, confidence, source)


# --- saved runs -------------------------------------------------------------------------------
MODEL_SOURCES = ("labelled", "expected")   # counts that depend on the classifier: the run records its version


def emerging_run_params(run: EmergingRun) -> dict:
    """What a saved run records besides its rows: source, periods, time step, neighbourhood, confidence, left out."""
    cube = run.cube
    return {
        "source": run.source, "source_words": cube.source, "origin": cube.origin,
        # The analysed complete steps [first day, day after the last]; partial ones are in left_out.
        "period": [cube.steps[0].start, cube.steps[-1].end],
        "first_step": cube.steps[0].label, "last_step": cube.steps[-1].label, "steps": len(cube.steps),
        "unit": run.unit, "neighbourhood_steps": run.neighbourhood_steps, "confidence": run.confidence,
        "left_out": [{"step": x.step.label, "start": x.step.start, "end": x.step.end, "covered": round(x.covered, 4)}
                     for x in cube.left_out],
        "left_out_words": cube.describe_left_out(),
        "data_span": list(cube.data_span),
    }


def save_npa_emerging(engine: Engine, run: EmergingRun, model_version: str | None = None) -> int:
    """Store an NPA emerging hot spot run (geo.runs, kind emerging_npa_hotspots); returns its run_id.

    `model_version` is recorded for the model's sources (labelled, expected calls); by default the
    current classifier's.
    """
    from geo.runs import RunKind, RunSpec, current_model_version, save_emerging_results

    if "npa_id" not in run.areas:
        raise ValueError("only NPA emerging hot spots are saved; this run is over grid cells")
    if run.source in MODEL_SOURCES and model_version is None:
        model_version = current_model_version(engine)
    steps = len(run.cube.steps)
    rows = pd.DataFrame(run.areas.drop(columns=run.areas.geometry.name)).assign(
        steps=steps, hot_share=lambda f: f["hot_steps"] / steps, cold_share=lambda f: f["cold_steps"] / steps)
    spec = RunSpec(RunKind.EMERGING_NPA_HOTSPOTS, emerging_run_params(run),
                   model_version if run.source in MODEL_SOURCES else None)
    return save_emerging_results(engine, spec, rows)
