"""Division and NPA polygons: the shared real files, other formats and CRSs, repair not drop."""

from __future__ import annotations

import geopandas as gpd
import pytest
import sqlalchemy as sa
from shapely.geometry import Polygon

from geo.ingest.batch import IngestError
from geo.ingest.shapes import latest_population, load_divisions, load_neighborhoods


def test_shared_divisions_loaded_valid_in_wgs84(engine, data_dir):
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT division_id, name, short_name, ST_IsValid(geom) AS valid, ST_SRID(geom) AS srid,"
            " ST_Area(ST_Transform(geom, 2264)) AS area FROM divisions ORDER BY 1")).all()
    source = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp")
    assert [r.division_id for r in rows] == sorted(source["DIVISION"])
    assert {r.name for r in rows} == set(source["DNAME"])
    assert all(r.valid and r.srid == 4326 for r in rows)
    central = next(r for r in rows if r.division_id == "01")
    assert central.name == "Central Division" and central.short_name == "Central"
    # Areas survive the round trip through EPSG:4326 (and the repair of 3 invalid rings) within 0.5%.
    by_code = dict(zip(source["DIVISION"], source.geometry.make_valid().area))
    for r in rows:
        assert r.area == pytest.approx(by_code[r.division_id], rel=5e-3)


def test_shared_npas_with_latest_population(engine, data_dir):
    pop = latest_population(data_dir / "npa_metrics" / "population.csv")
    with engine.connect() as conn:
        n, valid, p3, y3 = conn.execute(sa.text(
            "SELECT count(*), bool_and(ST_IsValid(geom)),"
            " max(population) FILTER (WHERE npa_id = 3), max(population_year) FILTER (WHERE npa_id = 3) FROM neighborhoods")).one()
    assert n == 462 and valid
    # npa_metrics/population.csv: NPA 3 has 12121 residents in y_2020, its latest year.
    assert (p3, y3) == (12121, 2020)
    assert len(pop) == 462


def test_divisions_from_geopackage_and_geojson_in_other_crs(engine, tmp_path, data_dir):
    source = gpd.read_file(data_dir / "divisions" / "CMPD_Police_Divisions.shp")
    source["geometry"] = source.geometry.make_valid()
    gpkg = tmp_path / "div.gpkg"
    source.to_crs(32617).to_file(gpkg, driver="GPKG")          # UTM 17N metres
    geojson = tmp_path / "div.geojson"
    source.to_crs(4326).to_file(geojson, driver="GeoJSON")
    areas = {}
    for path in (gpkg, geojson):
        report = load_divisions(engine, path, force=True)
        assert report.inserted == 14
        with engine.connect() as conn:
            areas[path.suffix] = dict(conn.execute(sa.text(
                "SELECT division_id, ST_Area(ST_Transform(geom, 2264)) FROM divisions")).all())
    for code, area in areas[".gpkg"].items():
        assert area == pytest.approx(areas[".geojson"][code], rel=1e-6)


def test_invalid_polygon_is_repaired_not_dropped(engine, tmp_path):
    bowtie = Polygon([(-80.90, 35.20), (-80.80, 35.30), (-80.80, 35.20), (-80.90, 35.30), (-80.90, 35.20)])
    square = Polygon([(-80.7, 35.1), (-80.6, 35.1), (-80.6, 35.2), (-80.7, 35.2)])
    layer = gpd.GeoDataFrame({"DIVISION": ["1", "2"], "DNAME": ["Bow Division", "Box Division"]},
                             geometry=[bowtie, square], crs=4326)
    path = tmp_path / "bad.geojson"
    layer.to_file(path, driver="GeoJSON")
    report = load_divisions(engine, path)
    assert report.fixes["invalid_geometry_repaired"] == 1 and report.inserted == 2
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT division_id, ST_IsValid(geom), ST_NumGeometries(geom), ST_Area(geom) FROM divisions ORDER BY 1")).all()
    # The bow-tie becomes two triangles, each 0.0025 square degrees.
    assert rows[0][:3] == ("01", True, 2) and rows[0][3] == pytest.approx(0.005)
    assert rows[1][:3] == ("02", True, 1)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_layer_without_crs_or_missing_field_is_refused(engine, tmp_path):
    layer = gpd.GeoDataFrame({"DIVISION": ["1"], "DNAME": ["X"]},
                             geometry=[Polygon([(0, 0), (1, 0), (1, 1)])], crs=None)
    path = tmp_path / "nocrs.shp"
    layer.to_file(path)
    with pytest.raises(IngestError, match="no coordinate reference system"):
        load_divisions(engine, path)
    with_crs = tmp_path / "withcrs.shp"
    layer.set_crs(4326).to_file(with_crs)
    with pytest.raises(IngestError, match="field\\(s\\) NAME not found"):
        load_divisions(engine, with_crs, name_field="NAME")
    path.with_suffix(".dbf").unlink()
    with pytest.raises(IngestError, match="part\\(s\\) missing: .dbf"):
        load_divisions(engine, path)


def test_reloading_the_same_layers_changes_nothing(engine, data_dir):
    before = _geoms(engine)
    assert load_divisions(engine, data_dir / "divisions" / "CMPD_Police_Divisions.shp").already_loaded_batch
    report = load_neighborhoods(engine, data_dir / "npa" / "npa.geojson", data_dir / "npa_metrics" / "population.csv")
    assert report.already_loaded_batch
    load_divisions(engine, data_dir / "divisions" / "CMPD_Police_Divisions.shp", force=True)
    assert _geoms(engine) == before


def _geoms(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT 'd' || division_id, md5(ST_AsEWKB(geom)::text) FROM divisions UNION ALL "
            "SELECT 'n' || npa_id, md5(ST_AsEWKB(geom)::text) || coalesce(population, -1) FROM neighborhoods ORDER BY 1")).all()
