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

import geopandas as gpd
import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.stats import norm
from sqlalchemy.engine import Engine

from geo.metrics import Period, _tz
from geo.spatial import read_neighborhoods

CLASSES = [
    (0.01, "Hot spot, 99% confidence", "Cold spot, 99% confidence"),
    (0.05, "Hot spot, 95% confidence", "Cold spot, 95% confidence"),
    (0.10, "Hot spot, 90% confidence", "Cold spot, 90% confidence"),
]
NOT_SIGNIFICANT = "Not significant"


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """FDR-adjusted p-values (q-values) by the Benjamini-Hochberg step-up procedure."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


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
    p_sim: np.ndarray      # pseudo p-value from conditional permutations
    classes: np.ndarray


def gi_star(areas: gpd.GeoDataFrame | gpd.GeoSeries, values: np.ndarray, *, permutations: int = 999,
            seed: int = 0, fdr: bool = True) -> GiStar:
    """Getis-Ord Gi* with queen-contiguity neighbours (binary weights, each area its own neighbour)."""
    from esda.getisord import G_Local
    from libpysal.weights import Queen

    geoms = areas if isinstance(areas, gpd.GeoSeries) else areas.geometry
    frame = gpd.GeoDataFrame(geometry=geoms.reset_index(drop=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # islands are reported below, not as warnings
        w = Queen.from_dataframe(frame, use_index=False)
        g = G_Local(np.asarray(values, dtype=float), w, transform="B", star=True, permutations=permutations,
                    seed=seed, n_jobs=1, keep_simulations=False)
    z = np.nan_to_num(np.asarray(g.Zs, dtype=float))
    p = 2 * norm.sf(np.abs(z))
    q = benjamini_hochberg(p) if fdr else p
    return GiStar(z=z, p=p, q=q, p_sim=np.asarray(g.p_sim, dtype=float), classes=classify(z, q))


def _with_gi(npas: gpd.GeoDataFrame, values: pd.DataFrame, permutations: int, seed: int) -> gpd.GeoDataFrame:
    npas = npas.merge(values, on="npa_id", how="left")
    npas["value"] = npas["value"].fillna(0.0).astype(float)
    result = gi_star(npas, npas["value"].to_numpy(), permutations=permutations, seed=seed)
    npas["gi_z"] = result.z
    npas["gi_p"] = result.p
    npas["gi_q"] = result.q
    npas["gi_p_sim"] = result.p_sim
    npas["hotspot_class"] = result.classes
    return npas


def offense_hotspots(engine: Engine, years: tuple[int, int], categories: list[str] | None = None, *,
                     permutations: int = 999, seed: int = 0) -> gpd.GeoDataFrame:
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
    return _with_gi(read_neighborhoods(engine), values, permutations, seed)


def save_npa_results(engine: Engine, kind: str, params: dict, result: gpd.GeoDataFrame,
                     model_version: str | None = None) -> int:
    """Store an NPA Gi* result under a new analysis run; returns its run_id."""
    import json

    from geo.ingest.batch import copy_frame

    with engine.begin() as conn:
        run_id = conn.execute(sa.text(
            "INSERT INTO analysis_runs (kind, params, model_version) VALUES (:k, CAST(:p AS jsonb), :m) RETURNING run_id"),
            {"k": kind, "p": json.dumps(params, default=str), "m": model_version}).scalar_one()
        rows = pd.DataFrame(result[["npa_id", "value", "gi_z", "gi_p", "gi_q", "gi_p_sim", "hotspot_class"]])
        rows.insert(0, "run_id", run_id)
        copy_frame(conn, "hotspot_npa_results", rows)
    return run_id


def npa_hotspots(engine: Engine, period: Period, *, measure: str = "labelled", permutations: int = 999,
                 seed: int = 0) -> gpd.GeoDataFrame:
    """Gi* over the 462 NPAs for violent calls in a period.

    measure 'labelled' counts calls the model labelled violent; 'expected' sums the model's
    probabilities (expected violent calls), which keeps borderline calls instead of cutting them.
    """
    if measure not in ("labelled", "expected"):
        raise ValueError(f"measure must be 'labelled' or 'expected', not {measure!r}")
    value = "count(*) FILTER (WHERE label)" if measure == "labelled" else "coalesce(sum(p_violent), 0)"
    npas = read_neighborhoods(engine)
    with engine.connect() as conn:
        counts = pd.read_sql(sa.text(
            f"SELECT npa_id, {value} AS value FROM calls"
            " WHERE received_at >= (CAST(:s AS timestamp) AT TIME ZONE :tz)"
            " AND received_at < (CAST(:e AS timestamp) AT TIME ZONE :tz) AND npa_id IS NOT NULL GROUP BY 1"),
            conn, params={"s": period.start, "e": period.end, "tz": _tz()})
    return _with_gi(npas, counts, permutations, seed)
