"""geo.runs: typed run specs, saving, listing and resolving analysis runs, one NoSavedRun."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from geo import catalog
from geo.filters import ParameterError
from geo.runs import (NoSavedRun, RunKind, RunSpec, current_model_version, get_run, latest_run_id, list_runs,
                      load_table, resolve_run, save_npa_results, save_run, save_table)


def test_run_kinds_are_typed_and_match_the_catalog():
    assert RunSpec("compstat").kind is RunKind.COMPSTAT
    with pytest.raises(ParameterError) as err:
        RunSpec("offense_hotspots")
    assert err.value.parameter == "kind" and "offenses_npa_hotspots" in err.value.message
    assert RunKind.npa_hotspots("homicides") is RunKind.HOMICIDES_NPA_HOTSPOTS
    # Every result layer takes exactly the kinds whose rows it draws.
    for name in catalog.result_layers():
        assert set(catalog.layer(name).run_kinds) == {k.value for k in RunKind if k.layer == name}
    assert {RunKind.CALLS_GRID_HOTSPOTS.table, RunKind.COMPSTAT.table, RunKind.ACCURACY.table} == {
        "hotspot_cell_results", "analysis_rows", None}


def test_shared_run_parameters_are_typed():
    spec = RunSpec(RunKind.CALLS_GRID_HOTSPOTS, {"period": [date(2021, 1, 1), "2022-01-01"], "cell_ft": 1500.0,
                                                 "permutations": 99, "origin": None, "calls_version": 7})
    assert json.loads(spec.params_json())["period"] == ["2021-01-01", "2022-01-01"]
    for name, value in (("cell_ft", 0), ("cell_ft", "2000"), ("years", [2021, 2019]), ("period", ["2021-01-01"]),
                        ("origin", "made-up"), ("permutations", -1), ("value_unit", "per_mile"), ("calls_version", True)):
        with pytest.raises(ParameterError) as err:
            RunSpec(RunKind.CALLS_GRID_HOTSPOTS, {name: value})
        assert err.value.parameter == name and "expected" in err.value.message


def test_a_run_is_saved_only_with_its_own_result_table(engine):
    with pytest.raises(ParameterError, match="analysis_rows"):
        save_table(engine, RunSpec(RunKind.CALLS_NPA_HOTSPOTS), pd.DataFrame({"a": [1]}))
    with pytest.raises(ParameterError, match="hotspot_npa_results"):
        save_run(engine, RunSpec(RunKind.OFFENSES_NPA_HOTSPOTS))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM analysis_runs")).scalar() == 0


def test_saved_runs_are_listed_resolved_and_refused_alike(engine):
    from geo.hotspots import offense_hotspots

    npas = catalog.layer("hotspot_npas")
    with engine.connect() as conn:
        with pytest.raises(NoSavedRun) as err:
            resolve_run(conn, npas, None)
    assert err.value.layer == "hotspot_npas" and err.value.run is None
    assert str(err.value) == "no hotspot_npas run has been saved yet; run `hotspots hotspots --save` first"

    result = offense_hotspots(engine, (2020, 2020), permutations=0)
    first = save_npa_results(engine, RunSpec(RunKind.OFFENSES_NPA_HOTSPOTS, {"years": [2020, 2020]}, "m7"), result)
    table = save_table(engine, RunSpec(RunKind.CALL_COUNTS, {"period": [date(2021, 5, 1), date(2021, 6, 1)],
                                                             "source": "labelled"}),
                       pd.DataFrame({"area": ["01", "02"], "calls": [3, 4]}))
    second = save_npa_results(engine, RunSpec(RunKind.OFFENSES_NPA_HOTSPOTS, {"years": [2021, 2021]}), result)
    accuracy = save_run(engine, RunSpec(RunKind.ACCURACY, {"train": ["2021-01-01", "2021-07-01"],
                                                           "test": ["2021-07-01", "2022-01-01"]}))
    assert first < table < second < accuracy

    with engine.connect() as conn:
        assert resolve_run(conn, npas, None) == second
        assert resolve_run(conn, npas, str(first)) == first
        assert latest_run_id(conn, [RunKind.OFFENSES_NPA_HOTSPOTS], "m7") == first
        with pytest.raises(NoSavedRun) as err:
            resolve_run(conn, npas, table)   # a saved run, but not one this layer draws
        assert err.value.run == table and err.value.saved == [second, first]
        assert str(err.value) == f"no saved hotspot_npas run {table}; saved runs: {second}, {first}"
        with pytest.raises(NoSavedRun):
            resolve_run(conn, catalog.layer("hotspot_cells"), None)
        for raw, name in ((-3, "run"), ("abc", "run")):
            with pytest.raises(ParameterError) as perr:
                resolve_run(conn, npas, raw)
            assert perr.value.parameter == name
        with pytest.raises(ParameterError, match="run applies to hotspot_cells, hotspot_npas"):
            resolve_run(conn, catalog.layer("calls"), 1)
        assert resolve_run(conn, catalog.layer("calls"), None) is None

        listed = {r.run_id: r for r in list_runs(conn)}
        assert list(listed) == [accuracy, second, table, first]
        assert (listed[first].kind, listed[first].rows, listed[first].period, listed[first].model_version) == (
            RunKind.OFFENSES_NPA_HOTSPOTS, 462, "2020", "m7")
        assert (listed[table].rows, listed[table].period, listed[table].source) == (2, "2021-05-01 to 2021-06-01",
                                                                                     "labelled")
        assert listed[accuracy].rows == 0 and listed[accuracy].period.startswith("train 2021-01-01 to 2021-07-01")
        assert [r.run_id for r in list_runs(conn, RunKind.CALL_COUNTS)] == [table]
        assert get_run(conn, table) == listed[table]
        with pytest.raises(NoSavedRun) as err:
            get_run(conn, 99_999)
        assert err.value.layer is None and err.value.saved[0] == accuracy
        assert current_model_version(conn) is None
    assert load_table(engine, table).to_dict("records") == [{"area": "01", "calls": 3}, {"area": "02", "calls": 4}]
