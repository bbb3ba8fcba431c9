"""Division and Neighborhood Profile Area polygons, from any vector format and CRS GDAL reads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy.engine import Engine

from geo.ingest.batch import IngestError, LoadReport, Timer, copy_frame, file_sha256, finish_batch, previous_batch, start_batch

_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def _layer_sha(path: Path) -> str:
    """Checksum of a layer: for a shapefile, of all its parts together."""
    if path.suffix.lower() != ".shp":
        return file_sha256(path)
    parts = [path.with_suffix(s) for s in _SIDECARS if path.with_suffix(s).exists()]
    return file_sha256(path) if len(parts) == 1 else "+".join(file_sha256(p)[:16] for p in parts)


def read_layer(path: Path) -> gpd.GeoDataFrame:
    """Read a vector layer and reproject it to EPSG:4326; fail clearly if it has no CRS."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.suffix.lower() == ".shp":
        missing = [s for s in (".shx", ".dbf") if not path.with_suffix(s).exists()]
        if missing:
            raise IngestError(f"{path}: shapefile part(s) missing: {', '.join(missing)}")
    try:
        layer = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises several types; all mean "GDAL could not read it"
        raise IngestError(f"{path}: not a readable vector layer ({exc})") from exc
    if layer.crs is None:
        raise IngestError(f"{path}: the layer has no coordinate reference system (.prj missing?)")
    return layer.to_crs(4326)


def _as_multipolygon(geom: shapely.Geometry) -> shapely.MultiPolygon:
    # make_valid can return a collection holding lines or points beside the polygons: keep the polygons.
    if geom.geom_type == "MultiPolygon":
        return geom
    if geom.geom_type == "Polygon":
        return shapely.MultiPolygon([geom])
    polygons = []
    for part in shapely.get_parts(geom):
        if part.geom_type == "Polygon":
            polygons.append(part)
        elif part.geom_type == "MultiPolygon":
            polygons.extend(part.geoms)
    return shapely.MultiPolygon(polygons)


def repair_polygons(geoms: gpd.GeoSeries) -> tuple[gpd.GeoSeries, int]:
    """Make geometries valid and MultiPolygon, keeping every polygonal part; count repaired ones."""
    invalid = ~geoms.is_valid
    fixed = geoms.copy()
    if invalid.any():
        fixed[invalid] = shapely.make_valid(geoms[invalid].values)
    polys = [_as_multipolygon(g) for g in fixed]
    return gpd.GeoSeries(polys, index=geoms.index, crs=geoms.crs), int(invalid.sum())


def _replace_layer(engine: Engine, table: str, frame: gpd.GeoDataFrame, report: LoadReport, timer: Timer) -> None:
    """Replace a polygon table's content in one transaction."""
    rows = pd.DataFrame(frame.drop(columns="geometry"))
    rows["geom"] = shapely.to_wkb(shapely.set_srid(frame.geometry.values, 4326), hex=True, include_srid=True)
    with engine.begin() as conn:
        report.batch_id = start_batch(conn, report)
        before = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
        conn.exec_driver_sql(f"DELETE FROM {table}")
        copy_frame(conn, table, rows)
        report.inserted = len(rows)
        report.notes["replaced_rows"] = int(before)
        report.seconds = timer.elapsed
        finish_batch(conn, report)


def load_divisions(
    engine: Engine, path: Path, *, code_field: str = "DIVISION", name_field: str = "DNAME", force: bool = False
) -> LoadReport:
    """Load CMPD patrol divisions (code and name fields configurable) replacing the current ones."""
    timer = Timer()
    path = Path(path)
    report = LoadReport(kind="divisions", source_file=str(path), sha256=_layer_sha(path))
    if not force and (prior := previous_batch(engine, "divisions", report.sha256)) is not None:
        report.already_loaded_batch = prior
        return report
    layer = read_layer(path)
    missing = [f for f in (code_field, name_field) if f not in layer.columns]
    if missing:
        raise IngestError(f"{path}: field(s) {', '.join(missing)} not found; fields are {', '.join(layer.columns.drop('geometry'))}")
    report.rows_read = len(layer)
    codes = layer[code_field].astype(str).str.strip()
    codes = codes.where(~codes.str.isdigit(), codes.str.zfill(2))
    if codes.duplicated().any() or (codes == "").any():
        raise IngestError(f"{path}: {code_field} must be a unique, non-empty code per division; got {sorted(codes)}")
    names = layer[name_field].astype(str).str.strip()
    geoms, repaired = repair_polygons(layer.geometry)
    report.fixes = Counter({"invalid_geometry_repaired": repaired}) if repaired else Counter()
    frame = gpd.GeoDataFrame(
        {
            "division_id": codes.to_numpy(),
            "name": names.to_numpy(),
            "short_name": names.str.replace(r"\s+Division$", "", regex=True).to_numpy(),
            "source_file": str(path),
        },
        geometry=geoms.to_numpy(), crs=4326,
    ).sort_values("division_id")
    _replace_layer(engine, "divisions", frame, report, timer)
    return report


def latest_population(population_csv: Path) -> pd.DataFrame:
    """Per NPA, the latest year's population that has a value: columns npa_id, population, population_year."""
    table = pd.read_csv(population_csv, dtype=str, encoding="utf-8-sig")
    if "id" not in table.columns:
        raise IngestError(f"{population_csv}: expected an `id` column and y_YYYY columns, found {list(table.columns)}")
    years = sorted((c for c in table.columns if c.startswith("y_")), key=lambda c: int(c[2:]))
    long = table.melt(id_vars="id", value_vars=years, var_name="year", value_name="population")
    long["population"] = pd.to_numeric(long["population"], errors="coerce")
    long = long.dropna(subset=["population"])
    long["year"] = long["year"].str[2:].astype(int)
    latest = long.sort_values("year").groupby("id").tail(1)
    return pd.DataFrame(
        {
            "npa_id": latest["id"].astype(int).to_numpy(),
            "population": latest["population"].round().astype(int).to_numpy(),
            "population_year": latest["year"].to_numpy(),
        }
    )


def load_neighborhoods(
    engine: Engine, path: Path, population_csv: Path | None = None, *, id_field: str = "id", force: bool = False
) -> LoadReport:
    """Load NPA polygons (and population from npa_metrics/population.csv) replacing the current ones."""
    timer = Timer()
    path = Path(path)
    sha = _layer_sha(path) + (("+" + file_sha256(population_csv)[:16]) if population_csv else "")
    report = LoadReport(kind="neighborhoods", source_file=str(path), sha256=sha)
    if not force and (prior := previous_batch(engine, "neighborhoods", sha)) is not None:
        report.already_loaded_batch = prior
        return report
    layer = read_layer(path)
    if id_field not in layer.columns:
        raise IngestError(f"{path}: field {id_field!r} not found; fields are {', '.join(layer.columns.drop('geometry'))}")
    report.rows_read = len(layer)
    ids = pd.to_numeric(layer[id_field], errors="coerce")
    if ids.isna().any() or ids.duplicated().any():
        raise IngestError(f"{path}: {id_field} must be a unique NPA number per feature")
    geoms, repaired = repair_polygons(layer.geometry)
    report.fixes = Counter({"invalid_geometry_repaired": repaired}) if repaired else Counter()
    frame = gpd.GeoDataFrame({"npa_id": ids.astype(int).to_numpy(), "source_file": str(path)}, geometry=geoms.to_numpy(), crs=4326)
    if population_csv is not None:
        pop = latest_population(Path(population_csv))
        frame = frame.merge(pop, on="npa_id", how="left")
        report.notes["npas_without_population"] = int(frame["population"].isna().sum())
    else:
        frame["population"] = pd.NA
        frame["population_year"] = pd.NA
    frame["population"] = frame["population"].astype("Int64")
    frame["population_year"] = frame["population_year"].astype("Int64")
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=4326).sort_values("npa_id")
    _replace_layer(engine, "neighborhoods", frame[["npa_id", "population", "population_year", "source_file", "geometry"]], report, timer)
    return report
