"""Division and Neighborhood Profile Area polygons, from any vector format and CRS GDAL reads."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy.engine import Engine

from geo.ingest.batch import IngestError, LoadReport, Timer, copy_frame, file_sha256, finish_batch, start_batch, start_report
from geo.settings import data_settings

# The served region: west, south, east, north (WGS84 degrees), as HOTSPOTS_REGION_BBOX gives it.
Region = tuple[float, float, float, float]

_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")



def _layer_sha(path: Path) -> str:
    """Checksum of a layer: for a shapefile, of all its parts together."""
    if path.suffix.lower() != ".shp":
        return file_sha256(path)
    parts = [path.with_suffix(s) for s in _SIDECARS if path.with_suffix(s).exists()]
    return file_sha256(path) if len(parts) == 1 else "+".join(file_sha256(p)[:16] for p in parts)


def _crs_name(crs) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg} ({crs.name})" if epsg else crs.name


def _read_layer(path: Path) -> tuple[gpd.GeoDataFrame, str]:
    """The layer in EPSG:4326 and the name of the CRS it was read in."""
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
    if len(layer) == 0:
        # Loading it would replace the current polygons with nothing.
        raise IngestError(f"{path}: the layer has no features")
    return layer.to_crs(4326), _crs_name(layer.crs)


def _listed(labels, limit: int = 10) -> str:
    labels = [str(x) for x in labels]
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def _feature_labels(values: pd.Series, field: str) -> list[str]:
    """How messages name each feature: by its code field, else by its position (from 1)."""
    return [f"{field} {v}" if isinstance(v, str) and v else f"feature {i}" for i, v in enumerate(values, start=1)]


def _text_field(layer: gpd.GeoDataFrame, field: str) -> pd.Series:
    """A field as stripped text; a missing value (null) is '' rather than 'None'."""
    raw = layer[field]
    return raw.astype(str).str.strip().where(raw.notna(), "")


def _check_unique(path: Path, values: pd.Series, field: str, what: str) -> None:
    """Refuse empty or repeated values of a field that identifies a feature."""
    empty = (values == "").to_numpy()
    repeated = sorted(set(values[values.duplicated() & ~empty]))
    problems = []
    if empty.any():
        problems.append(f"feature(s) {_listed(np.flatnonzero(empty) + 1)} (counting from 1) have none")
    if repeated:
        problems.append(f"{_listed(repr(v) for v in repeated)} {'appears' if len(repeated) == 1 else 'appear'} more than once")
    if problems:
        raise IngestError(f"{path}: {field} must be a unique, non-empty {what} per feature; " + "; ".join(problems))


def _polygons(path: Path, layer: gpd.GeoDataFrame, labels: list[str], crs_name: str, report: LoadReport,
              region: Region | None) -> gpd.GeoSeries:
    """Valid 2D MultiPolygons in EPSG:4326, repairs counted in the report; IngestError naming the
    features that have no polygon, or when the layer does not lie in `region` (west, south, east, north;
    None: HOTSPOTS_REGION_BBOX)."""
    labels = np.array(labels, dtype=object)
    missing = layer.geometry.isna().to_numpy()
    if missing.any():
        raise IngestError(
            f"{path}: {_listed(labels[missing])} {'has' if missing.sum() == 1 else 'have'} no geometry (a truncated "
            ".shp, or coordinates GDAL could not read); every feature needs a polygon"
        )
    # Z and M values (common in ArcGIS exports) have no place in the 2D table columns.
    flat = gpd.GeoSeries(shapely.force_2d(layer.geometry.values), index=layer.index, crs=layer.crs)
    geoms, repaired = repair_polygons(flat)
    empty = geoms.is_empty.to_numpy()
    if empty.any():
        kinds = [f"{label} ({'empty ' if g.is_empty else ''}{g.geom_type})" for label, g in zip(labels[empty], flat[empty])]
        raise IngestError(
            f"{path}: feature(s) without any polygon area: {_listed(kinds)}; expected Polygon or MultiPolygon features"
        )
    minx, miny, maxx, maxy = geoms.total_bounds
    # A layer that lands outside the served region once reprojected is labelled with a CRS its
    # coordinates are not in (e.g. State Plane feet in a file whose .prj says EPSG:4326).
    try:
        west, south, east, north = region or data_settings().region_box
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    if not (np.isfinite([minx, miny, maxx, maxy]).all() and minx >= west and maxx <= east and miny >= south and maxy <= north):
        read_as = f"read as {crs_name}" + ("" if crs_name.startswith("EPSG:4326 ") else " and reprojected to EPSG:4326")
        raise IngestError(
            f"{path}: the layer's coordinates, {read_as}, span longitude {minx:.4f} to {maxx:.4f} and latitude "
            f"{miny:.4f} to {maxy:.4f}: not the served region (longitude {west} to {east}, latitude {south} to "
            f"{north}, HOTSPOTS_REGION_BBOX). Is {crs_name} really the coordinate system of the data (a shapefile's .prj)?"
        )
    report.fixes = Counter({"invalid_geometry_repaired": repaired}) if repaired else Counter()
    return geoms


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
    engine: Engine, path: Path, *, code_field: str = "DIVISION", name_field: str = "DNAME", force: bool = False,
    region: Region | None = None,
) -> LoadReport:
    """Load CMPD patrol divisions (code and name fields configurable) replacing the current ones."""
    timer = Timer()
    path = Path(path)
    report = start_report(engine, "divisions", path, _layer_sha(path), force=force)
    if report.already_loaded_batch is not None:
        return report
    layer, crs_name = _read_layer(path)
    missing = [f for f in (code_field, name_field) if f not in layer.columns]
    if missing:
        fields = ", ".join(layer.columns.drop("geometry")) or "none"
        raise IngestError(f"{path}: field(s) {', '.join(missing)} not found; fields are {fields}")
    report.rows_read = len(layer)
    codes = _text_field(layer, code_field)
    codes = codes.where(~codes.str.isdigit(), codes.str.zfill(2))
    _check_unique(path, codes, code_field, "division code")
    names = _text_field(layer, name_field)
    _check_unique(path, names, name_field, "division name")   # divisions.name is UNIQUE NOT NULL
    geoms = _polygons(path, layer, _feature_labels(codes, code_field), crs_name, report, region)
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
    try:
        table = pd.read_csv(population_csv, dtype=str, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise IngestError(f"{population_csv}: not a readable CSV ({exc})") from exc
    if "id" not in table.columns:
        raise IngestError(f"{population_csv}: expected an `id` column and y_YYYY columns, found {list(table.columns)}")
    years = sorted((c for c in table.columns if re.fullmatch(r"y_\d{4}", c)), key=lambda c: int(c[2:]))
    long = table.melt(id_vars="id", value_vars=years, var_name="year", value_name="population")
    long["population"] = pd.to_numeric(long["population"], errors="coerce")
    long = long.dropna(subset=["population"])
    long["year"] = long["year"].str[2:].astype(int)
    # An id that is not an NPA number matches no polygon (the report counts NPAs left without population).
    long["id"] = pd.to_numeric(long["id"], errors="coerce")
    long = long[long["id"].notna() & (long["id"] == long["id"].round())]
    latest = long.sort_values("year").groupby("id").tail(1)
    return pd.DataFrame(
        {
            "npa_id": latest["id"].astype(int).to_numpy(),
            "population": latest["population"].round().astype(int).to_numpy(),
            "population_year": latest["year"].to_numpy(),
        }
    )


def load_neighborhoods(
    engine: Engine, path: Path, population_csv: Path | None = None, *, id_field: str = "id", force: bool = False,
    region: Region | None = None,
) -> LoadReport:
    """Load NPA polygons (and population from npa_metrics/population.csv) replacing the current ones."""
    timer = Timer()
    path = Path(path)
    sha = _layer_sha(path) + (("+" + file_sha256(population_csv)[:16]) if population_csv else "")
    report = start_report(engine, "neighborhoods", path, sha, force=force)
    if report.already_loaded_batch is not None:
        return report
    layer, crs_name = _read_layer(path)
    if id_field not in layer.columns:
        fields = ", ".join(layer.columns.drop("geometry")) or "none"
        raise IngestError(f"{path}: field {id_field!r} not found; fields are {fields}")
    report.rows_read = len(layer)
    ids = pd.to_numeric(layer[id_field], errors="coerce")
    whole = ids.notna() & (ids == ids.round()) & ids.abs().lt(2**31)
    _check_unique(path, ids.where(whole).map(lambda v: "" if pd.isna(v) else str(int(v))), id_field, "whole NPA number")
    geoms = _polygons(path, layer, [f"{id_field} {int(v)}" for v in ids], crs_name, report, region)
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
