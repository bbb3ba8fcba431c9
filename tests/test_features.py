"""geo.features without HTTP: which parameters an items request may carry, typed property filters,
and the SQL each layer's features are built with (catalog identifiers only, private columns never)."""

from __future__ import annotations

import pytest

from geo import features as gf
from geo.catalog import LAYERS, layer
from geo.filters import ParameterError, parse_filter


@pytest.mark.parametrize("name", list(LAYERS))
def test_feature_sql_leaves_private_columns_out(name):
    lyr = layer(name)
    sql = gf._feature_sql(lyr)
    for p in lyr.properties:
        assert (f"'{p.name}'," in sql) is (not p.private)
    assert ("ST_ForcePolygonCCW" in sql) is lyr.geometry_type.endswith("Polygon")


@pytest.mark.parametrize("name, args, parameter", [
    ("calls", {"city": "CHARLOTTE"}, "city"),
    ("calls", {"address": "1 Main St"}, "address"),
    ("calls", {"run": "1"}, "run"),
    ("divisions", {"division": "01"}, "division"),
    ("divisions", {"datetime": "2021-01-01"}, "datetime"),
    ("hotspot_npas", {"gi_z": "2"}, "gi_z"),
])
def test_parameters_outside_the_collection_are_refused(name, args, parameter):
    with pytest.raises(ParameterError) as err:
        gf.check_parameters(layer(name), args)
    assert err.value.parameter == parameter


def test_standard_and_filter_parameters_pass():
    gf.check_parameters(layer("calls"), {"f": "json", "limit": "5", "offset": "0", "bbox": "-81,35,-80,36",
                                         "datetime": "2021-01-01", "division": "01", "priority": "1",
                                         "category": "violent_crime", "violent": "true", "min_p": "0.5"})
    gf.check_parameters(layer("hotspot_cells"), {"run": "3", "hotspot_class": "Not significant", "bbox": "-81,35,-80,36"})


def test_selection_types_values_and_binds_them():
    lyr = layer("calls")
    args = {"priority": "2", "zip": "28202", "category": "violent_crime", "bbox": "-81,35,-80,36"}
    filt = parse_filter(args, table="calls")
    sel = gf.parse_selection(lyr, args, filt)
    assert sel.properties == (("priority", 2), ("zip", "28202"))   # category is read by the shared filter
    sql, params = sel.where(lyr)
    assert "28202" not in sql and params["q_0"] == 2 and params["q_1"] == "28202"
    assert "ST_Intersects(geom" in sql and params["f_category"] == "violent_crime"
    other = gf.parse_selection(lyr, {**args, "priority": "3"}, filt)
    assert other.key() != sel.key()
    with pytest.raises(ParameterError) as err:
        gf.parse_selection(layer("neighborhoods"), {"npa_id": "twelve"}, None)
    assert err.value.parameter == "npa_id"
    with pytest.raises(ParameterError) as err:
        gf.parse_selection(lyr, {"crs": "EPSG:3857"}, None)
    assert err.value.parameter == "crs"


def test_queryables_schema_lists_typed_properties():
    schema = gf.queryables_schema(layer("incidents"), "http://x/q")
    assert schema["$id"] == "http://x/q" and schema["additionalProperties"] is False
    assert schema["properties"]["npa_id"]["type"] == "integer"
    assert {"highest_nibrs_code", "clearance_status", "zip", "npa_id", "category",
            "date_reported_precision"} == set(schema["properties"])
