"""Where violent crime concentrates: Getis-Ord Gi* hot and cold spots on NPAs (or any polygons).

Gi* (star: each area counts itself among its neighbours) compares the sum of values around an
area with what the whole map would give by chance. Areas are classed the way ArcGIS's Hot Spot
Analysis does: hot or cold spot at 99, 95 or 90% confidence, or not significant, after a
Benjamini-Hochberg false-discovery-rate correction over all areas, so that testing 462 NPAs
at once does not turn chance clusters into hot spots.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.stats import norm
from sqlalchemy.engine import Engine

from geo.filters import Filter
from geo.spatial import county_2264, read_neighborhoods

if TYPE_CHECKING:
    from geo.sources import Source

CLASSES = [
    (0.01, "Hot spot, 99% confidence", "Cold spot, 99% confidence"),
    (0.05, "Hot spot, 95% confidence", "Cold spot, 95% confidence"),
    (0.10, "Hot spot, 90% confidence", "Cold spot, 90% confidence"),
]
NOT_SIGNIFICANT = "Not significant"


def fdr_q(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (scipy.stats.false_discovery_control) over the finite p-values;
    NaN stays NaN (a location whose statistic is undefined is neither tested nor counted)."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = false_discovery_control(p[finite], method="bh")
    return q


def classify(z: np.ndarray, q: np.ndarray) -> np.ndarray:
    """ArcGIS-style confidence classes from z-scores and (corrected) two-sided p-values."""
    out = np.full(len(z), NOT_SIGNIFICANT, dtype=object)
    for level, hot, cold in reversed(CLASSES):  # strictest level written last wins
        sig = q < level
        out[sig & (z > 0)] = hot
        out[sig & (z < 0)] = cold
    return out


@dataclass
class GiStar:
    """Gi* results aligned with the input areas."""

    z: np.ndarray
    p: np.ndarray          # two-sided, from the normal approximation (as ArcGIS reports)
    q: np.ndarray          # FDR-corrected p
    p_sim: np.ndarray      # one-sided pseudo p from conditional permutations (esda's, folded to the observed tail)
    classes: np.ndarray


def queen_weights(areas: gpd.GeoDataFrame | gpd.GeoSeries):
    """Queen-contiguity neighbours of polygons (libpysal W), in the order given."""
    from libpysal.weights import Queen

    geoms = areas if isinstance(areas, gpd.GeoSeries) else areas.geometry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # islands simply have no neighbours but themselves
        return Queen.from_dataframe(gpd.GeoDataFrame(geometry=geoms.reset_index(drop=True)), use_index=False)


def gi_star(areas: gpd.GeoDataFrame | gpd.GeoSeries | None, values: np.ndarray, *, permutations: int = 999,
            seed: int = 0, fdr: bool = True, weights=None) -> GiStar:
    """Getis-Ord Gi* with queen-contiguity neighbours (binary weights, each area its own neighbour).

    Pass `weights` (a libpysal W) to reuse neighbours computed once, e.g. for many time steps.
    `p` is two-sided from the normal approximation of z; `p_sim` is esda's permutation pseudo p,
    which is one-sided: with P permutations and L of them at least as large as the observed Gi*,
    p_sim = (min(L, P - L) + 1) / (P + 1), the tail the observed value lies in. Doubling it gives
    a two-sided permutation p comparable with `p`.
    """
    from esda.getisord import G_Local

    w = weights if weights is not None else queen_weights(areas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = G_Local(np.asarray(values, dtype=float), w, transform="B", star=True, permutations=permutations,
                    seed=seed, n_jobs=1, keep_simulations=False)
    z = np.nan_to_num(np.asarray(g.Zs, dtype=float))
    p = 2 * norm.sf(np.abs(z))
    q = fdr_q(p) if fdr else p
    p_sim = np.asarray(g.p_sim, dtype=float) if permutations else np.full(len(z), np.nan)
    return GiStar(z=z, p=p, q=q, p_sim=p_sim, classes=classify(z, q))


COUNT = "count"
PER_1000 = "per_1000_residents"
NO_RESIDENTS = "Left out: no residents"


def npa_gi_star(npas: gpd.GeoDataFrame, values: pd.DataFrame, permutations: int, seed: int, *,
             per_1000: bool = False) -> gpd.GeoDataFrame:
    """Gi* on the NPAs' values: counts, or (`per_1000`) counts per 1,000 residents.

    Rates divide by the NPA's population, as ArcGIS's "divide by" field does. NPAs without
    residents (population 0 or unknown) have no rate: they are left out of the analysis (class
    NO_RESIDENTS, Gi* columns NaN) and their neighbours' weights are built without them.
    `attrs["left_out"]` reports how many and what they counted. `value_unit` records the measure;
    `event_count` keeps the count behind a rate.
    """
    npas = npas.merge(values, on="npa_id", how="left")
    npas["value"] = npas["value"].fillna(0.0).astype(float)
    npas["event_count"] = npas["value"]
    npas["value_unit"] = PER_1000 if per_1000 else COUNT
    analysed = np.ones(len(npas), dtype=bool)
    if per_1000:
        population = pd.to_numeric(npas["population"], errors="coerce").to_numpy(dtype=float)
        analysed = np.nan_to_num(population) > 0
        npas["value"] = np.where(analysed, npas["event_count"] * 1000.0 / np.where(analysed, population, 1.0), np.nan)
    for column in ("gi_z", "gi_p", "gi_q", "gi_p_sim"):
        npas[column] = np.nan
    npas["hotspot_class"] = NO_RESIDENTS
    kept = npas[analysed]
    result = gi_star(kept, kept["value"].to_numpy(), permutations=permutations, seed=seed)
    npas.loc[analysed, "gi_z"] = result.z
    npas.loc[analysed, "gi_p"] = result.p
    npas.loc[analysed, "gi_q"] = result.q
    npas.loc[analysed, "gi_p_sim"] = result.p_sim
    npas.loc[analysed, "hotspot_class"] = result.classes
    npas.attrs["left_out"] = {"npas_without_residents": int((~analysed).sum()),
                              "events_in_them": float(npas.loc[~analysed, "event_count"].sum())}
    return npas


def npa_rate_gi_star(engine: Engine, counts: pd.DataFrame, permutations: int = 0, seed: int = 0) -> gpd.GeoDataFrame:
    """Gi* on counts per 1,000 residents from counts per NPA (npa_id, value): the CLI's `--per-1000`, for the map.

    NPAs without residents have no rate (value and Gi* NaN, class NO_RESIDENTS), never an infinite one.
    """
    return npa_gi_star(read_neighborhoods(engine), counts[["npa_id", "value"]], permutations, seed, per_1000=True)


def offense_hotspots(engine: Engine, years: tuple[int, int], categories: list[str] | None = None, *,
                     permutations: int = 999, seed: int = 0, per_1000: bool = False) -> gpd.GeoDataFrame:
    """Gi* on CMPD's published violent offense counts per NPA (real data), for a range of years.

    Without categories the roll-up 'Violent Crime' rows are used; with categories, the sum of
    those detail rows (Non-Fatal Gunshot Injury is a subset of aggravated assault: do not combine them).
    """
    from geo.metrics import OVERLAPPING, ROLLUP

    if categories:
        overlap = set(categories) & set(OVERLAPPING)
        if overlap and len(categories) > 1:
            raise ValueError(f"{', '.join(overlap)} overlaps other categories; analyse it on its own")
    wanted = categories or [ROLLUP]
    with engine.connect() as conn:
        values = pd.read_sql(sa.text(
            "SELECT geography_id AS npa_id, sum(offense_count)::float AS value FROM offense_counts"
            " WHERE row_type = 'Neighborhood Profile Area' AND geography_id > 0"
            " AND calendar_year BETWEEN :a AND :b AND offense_description = ANY(:c) GROUP BY 1"),
            conn, params={"a": years[0], "b": years[1], "c": wanted})
    if values.empty:
        raise ValueError(f"no offense counts for {wanted} in {years[0]}-{years[1]}; load them with `hotspots load offenses`")
    return npa_gi_star(read_neighborhoods(engine), values, permutations, seed, per_1000=per_1000)


def homicide_hotspots(engine: Engine, years: tuple[int, int] | None = None, *, permutations: int = 999,
                      seed: int = 0, per_1000: bool = False) -> tuple[gpd.GeoDataFrame, dict]:
    """Gi* on the number of homicide victims per NPA (our spatial join) in calendar years `years`
    (default: every year loaded), and what was counted: years, victims, victims without a point.

    Victims published without a location have no NPA and are left out (their count is returned).
    """
    with engine.connect() as conn:
        first, last, stored = conn.execute(sa.text(
            "SELECT min(extract(year FROM date_reported))::int, max(extract(year FROM date_reported))::int, count(*)"
            " FROM homicides")).one()
        if not stored:
            raise ValueError("no homicides loaded; load them with `hotspots load homicides FILE`")
        lo, hi = years if years is not None else (first, last)
        counted = {"a": date(lo, 1, 1), "b": date(hi + 1, 1, 1)}
        values = pd.read_sql(sa.text(
            "SELECT npa_id, count(*)::float AS value FROM homicides"
            " WHERE date_reported >= :a AND date_reported < :b AND npa_id IS NOT NULL GROUP BY 1"),
            conn, params=counted)
        victims, unplaced = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE npa_id IS NULL) FROM homicides"
            " WHERE date_reported >= :a AND date_reported < :b"), counted).one()
    if not victims:
        raise ValueError(f"no homicides in {lo}-{hi}; the loaded ones span {first}-{last}")
    info = {"years": [lo, hi], "victims": int(victims), "victims_without_npa": int(unplaced)}
    return npa_gi_star(read_neighborhoods(engine), values, permutations, seed, per_1000=per_1000), info


def npa_values(engine: Engine, period: Filter, source: str | None = None, origin: str | None = None
               ) -> tuple[pd.DataFrame, "Source"]:
    """What `source` counts per NPA in the period (npa_id, value) and the source (geo.sources) it resolved to."""
    from geo.sources import resolve

    from geo.metrics import source_values

    src = resolve(engine, source, period, origin)
    values = source_values(engine, period.narrowed(origin=origin), src, ("npa",)).rename(columns={"npa": "npa_id"})
    return values, src


def npa_hotspots(engine: Engine, period: Filter, *, source: str | None = None, measure: str | None = None,
                 origin: str | None = None, permutations: int = 999, seed: int = 0,
                 per_1000: bool = False) -> gpd.GeoDataFrame:
    """Gi* over the 462 NPAs of what `source` counts in a period (geo.sources; default: recorded violent
    incidents where any exist, else expected violent calls). `measure` ('labelled' or 'expected') is
    the older name of the two call sources. `per_1000` runs Gi* on that value per 1,000 residents
    (see `npa_gi_star`). The frame's attrs name the source.
    """
    if measure is not None:
        if measure not in ("labelled", "expected"):
            raise ValueError(f"measure must be 'labelled' or 'expected', not {measure!r}")
        source = source or measure
    values, src = npa_values(engine, period, source, origin)
    result = npa_gi_star(read_neighborhoods(engine), values, permutations, seed, per_1000=per_1000)
    result.attrs.update(source=src.name, source_words=src.describe(origin))
    return result


# --- grid cells and kernel density (EPSG:2264, US feet) ---------------------------------------
@dataclass
class Grid:
    """A square grid in NC State Plane feet: cell (col, row) spans x0 + col*size .. +size."""

    x0: float
    y0: float
    size: float
    ncols: int
    nrows: int

    @classmethod
    def covering(cls, bounds: tuple[float, float, float, float], size: float) -> "Grid":
        xmin, ymin, xmax, ymax = bounds
        x0 = np.floor(xmin / size) * size
        y0 = np.floor(ymin / size) * size
        return cls(x0, y0, size, int(np.ceil((xmax - x0) / size)), int(np.ceil((ymax - y0) / size)))

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.floor((x - self.x0) / self.size).astype(np.int64), np.floor((y - self.y0) / self.size).astype(np.int64))

    def polygons(self, cols: np.ndarray, rows: np.ndarray):
        import shapely

        x = self.x0 + cols * self.size
        y = self.y0 + rows * self.size
        return shapely.box(x, y, x + self.size, y + self.size)


def source_points(engine: Engine, period: Filter, source: str | None = None, origin: str | None = None
                  ) -> tuple[pd.DataFrame, "Source"]:
    """What `source` counts in the period as points: x, y in EPSG:2264 feet, weight w, local month; and the source."""
    from geo.metrics import source_unit_points
    from geo.sources import resolve

    src = resolve(engine, source, period, origin)
    return source_unit_points(engine, period.narrowed(origin=origin), src), src


def _points_2264(engine: Engine, period: Filter, source: str | None, origin: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, "Source"]:
    """Projected coordinates (feet) and weights of what the source counts in the period, and the source."""
    rows, src = source_points(engine, period, source, origin)
    return rows["x"].to_numpy(), rows["y"].to_numpy(), rows["w"].to_numpy(dtype=float), src


@dataclass
class Lattice:
    """The grid cells inside a study area, their neighbours, and a point-to-cell lookup."""

    grid: Grid
    cols: np.ndarray
    rows: np.ndarray
    index: np.ndarray  # (nrows, ncols) -> cell position, -1 outside the study area
    weights: object    # libpysal W, queen neighbours on the lattice

    @classmethod
    def cells_over(cls, study_area, cell_ft: float) -> "Lattice":
        """The cells and point lookup only (weights None): for scanning many sizes cheaply."""
        import shapely

        grid = Grid.covering(shapely.bounds(study_area), cell_ft)
        cols, rows = np.meshgrid(np.arange(grid.ncols), np.arange(grid.nrows))
        cols, rows = cols.ravel(), rows.ravel()
        shapely.prepare(study_area)
        inside = shapely.contains_xy(study_area, grid.x0 + (cols + 0.5) * cell_ft, grid.y0 + (rows + 0.5) * cell_ft)
        cols, rows = cols[inside], rows[inside]
        index = -np.ones((grid.nrows, grid.ncols), dtype=np.int64)
        index[rows, cols] = np.arange(len(cols))
        return cls(grid, cols, rows, index, None)

    @classmethod
    def over(cls, study_area, cell_ft: float) -> "Lattice":
        from libpysal.weights import W

        cells = cls.cells_over(study_area, cell_ft)
        grid, cols, rows, index = cells.grid, cells.cols, cells.rows, cells.index
        neighbours = {}
        for i, (c, r) in enumerate(zip(cols, rows)):
            around = index[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].ravel()
            neighbours[i] = [int(j) for j in around if j >= 0 and j != i]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = W(neighbours, silence_warnings=True)
        return cls(grid, cols, rows, index, weights)

    def sums(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Sum of weights of the points falling in each cell (points outside the area are ignored)."""
        values = np.zeros(len(self.cols))
        pc, pr = self.grid.cell_of(np.asarray(x), np.asarray(y))
        ok = (pc >= 0) & (pc < self.grid.ncols) & (pr >= 0) & (pr < self.grid.nrows)
        target = self.index[pr[ok], pc[ok]]
        np.add.at(values, target[target >= 0], np.asarray(w, dtype=float)[ok][target >= 0])
        return values


# Cell size from the data, after ArcGIS's Optimized Hot Spot Analysis (docs/methods.md, "Grid cell size").
MIN_POINTS_FOR_AUTO = 30      # ArcGIS's minimum number of features for Gi*
SCAN_MAX_CELLS = 40_000       # the scanning lattice is coarsened to stay under this many cells
SCAN_BANDS = 20               # distance bands of 1..20 scanning cells
PEAK_Z = 1.96                 # a peak counts when clustering is significant there (p < 0.05)


@dataclass
class CellSize:
    """The grid cell side chosen for a Gi* run and why."""

    cell_ft: float
    rule: str                  # 'fixed', 'autocorrelation_peak' or 'nearest_neighbour'
    reason: str
    mean_nn_ft: float | None = None   # average nearest-neighbour distance of the distinct point locations
    scan_cell_ft: float | None = None
    bands: list[tuple[float, float]] | None = None   # (distance band in feet, Moran's I z) scanned

    def as_params(self) -> dict:
        return {"cell_ft": self.cell_ft, "cell_rule": self.rule, "cell_reason": self.reason,
                **({"mean_nn_ft": round(self.mean_nn_ft, 1)} if self.mean_nn_ft is not None else {})}


def mean_nearest_neighbour_ft(x: np.ndarray, y: np.ndarray) -> float:
    """Average distance from each distinct point location to the nearest other one (feet)."""
    from scipy.spatial import cKDTree

    points = np.unique(np.c_[np.asarray(x, dtype=float), np.asarray(y, dtype=float)], axis=0)
    if len(points) < 2:
        raise ValueError("need at least two distinct point locations to measure nearest-neighbour distances")
    return float(cKDTree(points).query(points, k=2)[0][:, 1].mean())


def band_moran_z(values: np.ndarray, index: np.ndarray, max_band: int) -> np.ndarray:
    """Global Moran's I z-scores (normality assumption) of lattice cell values for distance bands of
    1..max_band cells: binary weights between cells whose centres are at most k cells apart.

    `index` maps (row, col) to the cell's position in `values`, -1 outside the study area.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    z = v - v.mean()
    m2 = float(z @ z)
    nrows, ncols = index.shape
    cross = 0.0                      # sum of w_ij z_i z_j over the band so far (both orders)
    s0 = 0.0
    degree = np.zeros(n)
    offsets = [(dr, dc) for dr in range(-max_band, max_band + 1) for dc in range(-max_band, max_band + 1)
               if (dr, dc) != (0, 0) and dr * dr + dc * dc <= max_band * max_band]
    by_band = {}
    for dr, dc in offsets:
        by_band.setdefault(int(np.ceil(np.sqrt(dr * dr + dc * dc) - 1e-9)), []).append((dr, dc))
    out = np.full(max_band, np.nan)
    expected = -1.0 / (n - 1)
    for k in range(1, max_band + 1):
        for dr, dc in by_band.get(k, []):
            a = index[max(0, -dr):nrows - max(0, dr), max(0, -dc):ncols - max(0, dc)]
            b = index[max(0, dr):nrows + min(0, dr), max(0, dc):ncols + min(0, dc)]
            ok = (a >= 0) & (b >= 0)
            i, j = a[ok], b[ok]
            cross += float(z[i] @ z[j])
            s0 += len(i)
            np.add.at(degree, i, 1.0)
        if s0 == 0 or m2 == 0:
            continue
        moran = n / s0 * cross / m2
        s1, s2 = 2.0 * s0, float(np.sum((2.0 * degree) ** 2))   # symmetric binary weights
        variance = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n * n - 1) * s0 * s0) - expected ** 2
        out[k - 1] = (moran - expected) / np.sqrt(variance)
    return out


def choose_cell_size(x: np.ndarray, y: np.ndarray, study_area, w: np.ndarray | None = None, *,
                     max_cells: int = SCAN_MAX_CELLS, bands: int = SCAN_BANDS) -> CellSize:
    """A grid cell side for Gi* of these points, from the data (after ArcGIS Optimized Hot Spot Analysis).

    1. The mean nearest-neighbour distance d of the distinct locations gives a scanning lattice
       of cells 2d wide (about one point per cell if the points were random), coarsened so it has
       at most `max_cells` cells in the study area.
    2. Incremental spatial autocorrelation: global Moran's I z of the cell counts for distance
       bands of 1, 2, ... `bands` scanning cells. The first valid peak (z >= 1.96 that rises from
       the band before and drops at the band after) is the scale at which the points cluster
       most distinctly; the cell side is the peak distance / sqrt(2), so that a cell's queen
       neighbours (the Gi* neighbourhood) all lie within the peak distance.
       Only peaks whose cell leaves at least MIN_POINTS_FOR_AUTO (30) cells in the study area
       count: ArcGIS does not trust Gi* on fewer than 30 features.
    3. No valid peak (no significant clustering, clustering strongest at the shortest band, or
       only at a city-wide scale): the cell side is 2d.
    """
    import shapely

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < MIN_POINTS_FOR_AUTO:
        raise ValueError(f"--grid-ft auto needs at least {MIN_POINTS_FOR_AUTO} points, got {len(x)}; "
                         "give a cell size in feet")
    d = mean_nearest_neighbour_ft(x, y)
    scan = max(2.0 * d, float(np.sqrt(shapely.area(study_area) / max_cells)))
    lattice = Lattice.cells_over(study_area, scan)
    values = lattice.sums(x, y, np.ones(len(x)) if w is None else w)
    z = band_moran_z(values, lattice.index, bands)
    distances = scan * np.arange(1, bands + 1)
    scanned = [(float(dist), float(zk)) for dist, zk in zip(distances, z)]
    largest = np.sqrt(shapely.area(study_area) / MIN_POINTS_FOR_AUTO)   # cell side leaving 30 cells
    for k in range(1, bands - 1):
        if distances[k] / np.sqrt(2) > largest:
            break
        if z[k] >= PEAK_Z and z[k] > z[k - 1] and z[k] > z[k + 1]:
            size = float(np.round(distances[k] / np.sqrt(2), -1))
            return CellSize(size, "autocorrelation_peak",
                            f"Moran's I z peaks at {z[k]:.1f} at a {distances[k]:,.0f} ft band "
                            f"(scanned {bands} bands of {scan:,.0f} ft cells); cell = band / sqrt(2)",
                            d, scan, scanned)
    size = float(np.round(2.0 * d, -1))
    return CellSize(size, "nearest_neighbour",
                    f"no significant peak of Moran's I z at a band leaving {MIN_POINTS_FOR_AUTO} or more cells "
                    f"({bands} bands of {scan:,.0f} ft scanned); "
                    f"cell = 2 x mean nearest-neighbour distance {d:,.0f} ft", d, scan, scanned)


def grid_gi_star(x: np.ndarray, y: np.ndarray, w: np.ndarray, study_area, cell_ft: float = 1000.0, *,
                 permutations: int = 999, seed: int = 0) -> gpd.GeoDataFrame:
    """Gi* over square cells of `cell_ft` feet covering the study area (cells whose centre is inside).

    `cell_ft="auto"` chooses the size from the points (`choose_cell_size`); `attrs["cell_size"]`
    holds the CellSize used either way. Neighbours are the 8 surrounding cells (queen contiguity
    on the lattice) plus the cell itself. Empty cells inside the study area count as zeros: where
    nothing happens is part of the map.
    """
    choice = resolve_cell_size(cell_ft, x, y, study_area, w)
    cell_ft = choice.cell_ft
    lattice = Lattice.over(study_area, cell_ft)
    values = lattice.sums(x, y, w)
    result = gi_star(None, values, permutations=permutations, seed=seed, weights=lattice.weights)
    grid, cols, rows = lattice.grid, lattice.cols, lattice.rows
    z, p, q = result.z, result.p, result.q
    frame = gpd.GeoDataFrame({
        "col": cols, "row": rows, "value": values, "gi_z": z, "gi_p": p, "gi_q": q,
        "gi_p_sim": result.p_sim, "hotspot_class": result.classes,
    }, geometry=grid.polygons(cols, rows), crs=2264)
    frame.attrs["grid"] = grid
    frame.attrs["cell_size"] = choice
    return frame


def resolve_cell_size(cell_ft: float | str, x: np.ndarray, y: np.ndarray, study_area,
                      w: np.ndarray | None = None) -> CellSize:
    """A fixed cell size (a positive number of feet) or 'auto' (chosen from the points)."""
    if isinstance(cell_ft, str) and cell_ft.strip().lower() == "auto":
        return choose_cell_size(x, y, study_area, w)
    try:
        size = float(cell_ft)
    except (TypeError, ValueError):
        raise ValueError(f"cell size must be 'auto' or a number of feet, not {cell_ft!r}") from None
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"cell size must be a positive number of feet, not {cell_ft!r}")
    return CellSize(size, "fixed", f"{size:g} ft given")


def grid_hotspots(engine: Engine, period: Filter, *, cell_ft: float | str = "auto", source: str | None = None,
                  measure: str | None = None, origin: str | None = None, permutations: int = 999,
                  seed: int = 0) -> gpd.GeoDataFrame:
    """Gi* of what `source` counts (geo.sources) over square cells covering Mecklenburg County; cells
    returned in EPSG:4326.

    `cell_ft` 'auto' (default) chooses the cell size from the points; attrs["cell_size"] says which
    and why, attrs["source"] what was counted.
    """
    x, y, w, src = _points_2264(engine, period, source or measure, origin)
    frame = grid_gi_star(x, y, w, county_2264(engine), cell_ft, permutations=permutations, seed=seed)
    out = frame.to_crs(4326)
    out.attrs.update(frame.attrs)
    out.attrs.update(source=src.name, source_words=src.describe(origin))
    return out


# Kernel density: quartic (biweight) kernel, the one ArcGIS and CrimeStat use for crime maps.
DEFAULT_BANDWIDTH_FT = 1500.0  # about a quarter mile: a few blocks, the scale of patrol hot spots
DEFAULT_KDE_CELL_FT = 250.0


@dataclass
class Density:
    """A density raster in EPSG:2264: values are events per square mile, row 0 at the south edge."""

    grid: Grid
    values: np.ndarray
    bandwidth_ft: float
    source: str = ""       # what was counted, in words (geo.sources)


def kernel_density(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, bounds: tuple[float, float, float, float], *,
                   bandwidth_ft: float = DEFAULT_BANDWIDTH_FT, cell_ft: float = DEFAULT_KDE_CELL_FT) -> Density:
    """Quartic-kernel density of weighted points on a `cell_ft` grid, in events per square mile.

    Points are binned to the grid, then convolved with the kernel sampled on the same grid (FFT),
    so the cost depends on the grid, not on the number of points.
    """
    from scipy.signal import fftconvolve

    grid = Grid.covering(bounds, cell_ft)
    counts = np.zeros((grid.nrows, grid.ncols))
    c, r = grid.cell_of(np.asarray(x), np.asarray(y))
    ok = (c >= 0) & (c < grid.ncols) & (r >= 0) & (r < grid.nrows)
    weights = np.ones(len(c)) if w is None else np.asarray(w, dtype=float)
    np.add.at(counts, (r[ok], c[ok]), weights[ok])
    k = int(np.ceil(bandwidth_ft / cell_ft))
    offsets = np.arange(-k, k + 1) * cell_ft
    dx, dy = np.meshgrid(offsets, offsets)
    u2 = (dx ** 2 + dy ** 2) / bandwidth_ft ** 2
    kernel = np.where(u2 < 1, (1 - u2) ** 2, 0.0)
    kernel /= kernel.sum() * cell_ft ** 2          # integrates to 1 over the plane (per square foot)
    density = fftconvolve(counts, kernel, mode="same")
    density = np.clip(density, 0, None) * 5280.0 ** 2  # per square mile
    return Density(grid, density, bandwidth_ft)


# --- trend test (emerging hot spots: geo/emerging.py) ------------------------------------------
def mann_kendall(series: np.ndarray) -> tuple[float, float]:
    """Mann-Kendall trend test: (z, two-sided p). Ties corrected; no trend gives z near 0."""
    x = np.asarray(series, dtype=float)
    n = len(x)
    if n < 3:
        return 0.0, 1.0
    diffs = np.sign(x[None, :] - x[:, None])
    s = float(np.triu(diffs, k=1).sum())
    _, counts = np.unique(x, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - np.sum(counts * (counts - 1) * (2 * counts + 5))) / 18.0
    if var <= 0:
        return 0.0, 1.0
    z = (s - np.sign(s)) / np.sqrt(var)  # continuity correction
    return float(z), float(2 * norm.sf(abs(z)))


def threshold_stability(engine: Engine, period: Filter, thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
                        ) -> gpd.GeoDataFrame:
    """Which NPAs stay hot spots whatever probability cut turns the classifier's output into labels.

    For each threshold, calls with p_violent >= threshold count as violent and Gi* runs on the
    NPAs; `stability` is the share of thresholds at which the NPA is a hot spot (95% or more,
    FDR-corrected). NPAs hot at every threshold do not depend on where the line is drawn.
    """
    npas = read_neighborhoods(engine)
    from geo.metrics import threshold_counts

    counts = threshold_counts(engine, period, thresholds, ("npa",))
    counts = counts[counts["npa"].astype(str) != "(none)"]
    counts = counts.assign(npa_id=counts["npa"].astype(int)).drop(columns="npa")
    merged = npas[["npa_id"]].merge(counts, on="npa_id", how="left").fillna(0)
    hot = np.zeros((len(thresholds), len(npas)), dtype=bool)
    for i in range(len(thresholds)):
        result = gi_star(npas, merged[f"t{i}"].to_numpy(dtype=float), permutations=0)
        hot[i] = (result.z > 0) & (result.q < 0.05)
    out = npas.copy()
    out["hot_at"] = [",".join(f"{t:g}" for t, h in zip(thresholds, hot[:, j]) if h) for j in range(len(npas))]
    out["stability"] = hot.mean(axis=0)
    return out
