"""The Dask path (geo/scale.py) gives the single-machine results on the same data, on a 2-worker LocalCluster."""

from __future__ import annotations

import uuid
import warnings
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo import hotspots, scale
from geo.classify import label_calls, train
from geo.cli import main
from geo.db import make_engine
from geo.filters import Filter

SCALE_TEMPLATE = "hotspots_scale_template"
YEAR = 2021
PERIOD = Filter.local_days(date(YEAR, 1, 1), date(YEAR + 1, 1, 1))
SPRING = Filter.local_days(date(YEAR, 3, 1), date(YEAR, 6, 1))


def _admin(server_url):
    return sa.create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def _copy(server_url, template: str) -> tuple[str, str]:
    name = f"s_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template}")
    admin.dispose()
    return name, server_url.set(database=name).render_as_string(hide_password=False)


def _drop(server_url, name: str) -> None:
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(scope="module")
def scale_template(server_url, template_db, data_dir, tmp_path_factory) -> str:
    """A year of 20k synthetic calls, loaded by the single-machine loader and labelled by label_calls."""
    from geo.demo import generate_and_load

    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {SCALE_TEMPLATE}")
        conn.exec_driver_sql(f"CREATE DATABASE {SCALE_TEMPLATE} TEMPLATE {template_db}")
    engine = make_engine(server_url.set(database=SCALE_TEMPLATE).render_as_string(hide_password=False))
    out = tmp_path_factory.mktemp("scale")
    generate_and_load(n_calls=20_000, start=PERIOD.start_date, days=365, seed=17, out=out / "data", engine=engine,
                      data_dir=data_dir, progress=False)
    train(engine, test_months=3, models_dir=out / "models")
    label_calls(engine)
    engine.dispose()
    yield SCALE_TEMPLATE
    _drop(server_url, SCALE_TEMPLATE)


@pytest.fixture(scope="module")
def scale_engine(server_url, scale_template):
    """Read-only copy of the labelled database."""
    name, url = _copy(server_url, scale_template)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    _drop(server_url, name)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 single-threaded workers (threads of this process: quick to start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with scale.dask_client(workers=2, processes=False) as c:
            assert len(c.scheduler_info()["workers"]) == 2
            yield c


def test_split_time_covers_the_range_without_gaps():
    start = datetime(2021, 1, 1, 5, tzinfo=timezone.utc)
    end = datetime(2022, 1, 1, 5, 0, 0, 7, tzinfo=timezone.utc)
    slices = scale.split_time(start, end, 7)
    assert len(slices) == 7
    assert slices[0].start == start and slices[-1].end == end
    assert all(a.end == b.start for a, b in zip(slices[:-1], slices[1:]))
    lengths = [(s.end - s.start).total_seconds() for s in slices]
    assert max(lengths) - min(lengths) < 1e-3
    # A range shorter than the number of parts yields only non-empty slices.
    tiny = scale.split_time(start, start + timedelta(microseconds=3), 10)
    assert [s.end - s.start for s in tiny] == [timedelta(microseconds=1)] * 3


def test_assignment_matches_the_loader(scale_engine, client):
    assigned = scale.assign_areas(scale_engine, client, partitions=6)
    assert assigned.npartitions == 6
    got = assigned.compute()
    stored = pd.read_sql("SELECT call_id, npa_id, division_id FROM calls", scale_engine)
    # Every stored call, once (the generator's dirty rows were rejected at load).
    assert len(got) == len(stored) > 19_000
    assert got["call_id"].is_unique
    merged = stored.merge(got, on="call_id", suffixes=("_single", "_dask"), validate="one_to_one")
    assert len(merged) == len(stored)
    assert (merged["npa_id_single"].astype("Int64") == merged["npa_id_dask"]).all()
    assert (merged["division_id_single"] == merged["division_id_dask"]).all()
    # Counts per NPA: the same, and spread over many NPAs (not a degenerate all-one answer).
    per_npa = {int(k): int(v) for k, v in got.groupby("npa_id").size().items()}
    assert per_npa == {int(k): int(v) for k, v in stored.groupby("npa_id").size().items()}
    assert len(per_npa) > 300


@pytest.mark.parametrize("period", [PERIOD, SPRING], ids=["year", "spring"])
def test_npa_gi_star_inputs_and_classes_match(scale_engine, client, period):
    single = hotspots.npa_hotspots(scale_engine, period, source="labelled", permutations=99, seed=3)
    dask = scale.npa_hotspots(scale_engine, client, period, permutations=99, seed=3, partitions=5)
    assert list(single["npa_id"]) == list(dask["npa_id"])
    # Labelled counts are whole numbers: exactly equal.
    assert np.array_equal(single["value"].to_numpy(), dask["value"].to_numpy())
    # Not a near-empty answer (the default place-free model's F1 cut labels 67 calls in spring).
    assert single["value"].sum() > 50
    np.testing.assert_allclose(dask["gi_z"], single["gi_z"], atol=1e-9)
    np.testing.assert_allclose(dask["gi_p_sim"], single["gi_p_sim"], atol=0)
    assert list(single["hotspot_class"]) == list(dask["hotspot_class"])
    assert (single["hotspot_class"] != hotspots.NOT_SIGNIFICANT).any()


def test_calls_about_one_incident_count_once_on_dask_as_in_sql(server_url, scale_template, client):
    """Two labelled calls about one incident, months apart (so in different time slices), are one unit on
    both paths: the Dask partitions agree with the SQL source and the NPA gains exactly one."""
    name, url = _copy(server_url, scale_template)
    engine = make_engine(url)
    try:
        before = hotspots.npa_values(engine, PERIOD, "labelled")[0].set_index("npa_id")["value"]
        with engine.begin() as conn:
            npa = conn.execute(sa.text(
                "INSERT INTO calls (call_id, received_at, call_type, geom, division_id, npa_id, p_violent, label,"
                " model_version, row_hash, batch_id, category, received_at_precision, data_origin, incident_report_id)"
                " SELECT 'TWIN-' || v.n, v.t, c.call_type, c.geom, c.division_id, c.npa_id, 0.9, true, c.model_version,"
                " -v.n, c.batch_id, c.category, 'time', c.data_origin, 'INC-TWIN'"
                " FROM (SELECT * FROM calls WHERE npa_id IS NOT NULL ORDER BY call_id LIMIT 1) c,"
                " (VALUES (1, timestamptz '2021-01-10 12:00-05'), (2, timestamptz '2021-11-10 12:00-05')) v(n, t)"
                " RETURNING npa_id")).scalars().all()
        assert len(npa) == 2 and npa[0] == npa[1]
        single = hotspots.npa_values(engine, PERIOD, "labelled")[0].set_index("npa_id")["value"]
        dask = scale.npa_values(engine, client, PERIOD, measure="labelled", partitions=6).set_index("npa_id")["value"]
        assert single[npa[0]] == before.get(npa[0], 0.0) + 1
        assert dask.to_dict() == single.to_dict()
    finally:
        engine.dispose()
        _drop(server_url, name)


def test_call_measures_on_dask_equal_sql(scale_engine, client):
    """The measures layer's call counts (the 7x24, counts by division and category) read on Dask partitions
    are the single-machine numbers: the reader is swapped, the measure is the same."""
    from geo.metrics import call_measures

    by = ("division", "category", "date_only", "weekday", "hour")
    single = call_measures(scale_engine, SPRING, by)
    dask = call_measures(scale.DaskReader(scale_engine, client, partitions=5), SPRING, by)
    assert single["calls"].sum() > 1000
    keys = list(by)
    merged = single.merge(dask, on=keys, how="outer", suffixes=("", "_dask"), indicator=True)
    assert (merged["_merge"] == "both").all()
    for c in ("calls", "labelled_violent", "real", "synthetic"):
        assert (merged[c] == merged[f"{c}_dask"]).all()
    np.testing.assert_allclose(merged["expected_violent_dask"], merged["expected_violent"], rtol=1e-5)


def test_npa_expected_counts_match(scale_engine, client):
    single = hotspots.npa_hotspots(scale_engine, PERIOD, measure="expected", permutations=0)
    dask = scale.npa_hotspots(scale_engine, client, PERIOD, measure="expected", permutations=0, partitions=4)
    # PostgreSQL sums a real column in single precision; the workers sum in double.
    np.testing.assert_allclose(dask["value"], single["value"], rtol=1e-5)
    # Not a near-empty answer (the default place-free model's F1 cut labels 67 calls in spring).
    assert single["value"].sum() > 50
    assert list(single["hotspot_class"]) == list(dask["hotspot_class"])


@pytest.mark.parametrize("measure", ["labelled", "expected"])
def test_grid_cell_counts_match(scale_engine, client, measure):
    single = hotspots.grid_hotspots(scale_engine, PERIOD, cell_ft=2000.0, measure=measure, permutations=0)
    dask = scale.grid_hotspots(scale_engine, client, PERIOD, cell_ft=2000.0, measure=measure, permutations=0,
                               partitions=7)
    assert list(zip(single["col"], single["row"])) == list(zip(dask["col"], dask["row"]))
    if measure == "labelled":
        assert np.array_equal(single["value"].to_numpy(), dask["value"].to_numpy())
    else:
        # p_violent is a float4 column: summed in float4 by one path and float8 by the other, sums agree
        # to its precision (about 1e-7 relative), as the NPA test above allows.
        np.testing.assert_allclose(dask["value"], single["value"], rtol=1e-6, atol=1e-9)
    assert (single["value"] > 0).sum() > 200
    assert list(single["hotspot_class"]) == list(dask["hotspot_class"])
    assert single.geometry.geom_equals_exact(dask.geometry, tolerance=1e-9).all()


def test_labelling_on_dask_matches_label_calls(server_url, scale_template, client):
    name, url = _copy(server_url, scale_template)
    engine = make_engine(url)
    try:
        reference = pd.read_sql("SELECT call_id, p_violent, label, model_version FROM calls ORDER BY call_id", engine)
        assert reference["p_violent"].notna().all()
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE calls SET p_violent = NULL, label = NULL, model_version = NULL, labelled_at = NULL"))
        result = scale.label_calls(engine, client, partitions=6)
        assert result.partitions == 6
        assert result.labelled == len(reference)
        assert result.violent == int(reference["label"].sum())
        got = pd.read_sql("SELECT call_id, p_violent, label, model_version, labelled_at FROM calls ORDER BY call_id", engine)
        assert got["labelled_at"].notna().all()
        assert list(got["call_id"]) == list(reference["call_id"])
        np.testing.assert_allclose(got["p_violent"], reference["p_violent"], atol=1e-6)
        assert (got["label"] == reference["label"]).all()
        assert (got["model_version"] == reference["model_version"]).all()
        # Nothing left to do: every call carries the current model's version, with or without relabel.
        assert scale.label_calls(engine, client, partitions=3).labelled == 0
        assert scale.label_calls(engine, client, relabel=True, partitions=3).labelled == 0
    finally:
        engine.dispose()
        _drop(server_url, name)


def test_cli_dask_matches_local(server_url, scale_template, client, tmp_path):
    name, url = _copy(server_url, scale_template)
    try:
        env = {"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")}

        def run(*args):
            result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        common = ["hotspots", "--from", "2021-01-01", "--to", "2021-12-31", "--permutations", "99", "--source", "labelled"]
        local = run(*common)
        on_dask = run(*common, "--scheduler", client.scheduler.address)
        assert "hottest NPAs" in local
        assert on_dask == local
        grid_local = run(*common, "--grid-ft", "2000")
        grid_dask = run(*common, "--grid-ft", "2000", "--engine", "dask", "--scheduler", client.scheduler.address)
        assert grid_dask == grid_local and "cells" in grid_local
        # The cell size chosen from the data needs every point on one machine: refused on Dask, by name.
        refused = CliRunner().invoke(main, [*common, "--grid-ft", "auto", "--engine", "dask", "--scheduler",
                                            client.scheduler.address], env=env)
        assert refused.exit_code == 2 and "'auto' is not available on Dask" in refused.output
        auto = run(*common, "--grid-ft", "auto")
        assert "grid cells: " in auto and ("(autocorrelation_peak: " in auto or "(nearest_neighbour: " in auto)
        rates_local = run(*common, "--per-1000")
        rates_dask = run(*common, "--per-1000", "--scheduler", client.scheduler.address)
        assert rates_dask == rates_local and "per 1,000 residents" in rates_local

        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE calls SET p_violent = NULL, label = NULL, model_version = NULL"
                                 " WHERE received_at < '2021-07-01'"))
            todo = conn.execute(sa.text("SELECT count(*) FROM calls WHERE model_version IS NULL")).scalar_one()
        out = run("label", "--scheduler", client.scheduler.address, "--chunk", "5000")
        assert f"labelled {todo:,} calls" in out and "on 2 workers" in out
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM calls WHERE model_version IS NULL")).scalar_one() == 0
        engine.dispose()
    finally:
        _drop(server_url, name)


def test_cli_rejects_dask_for_offense_counts(server_url, scale_template, client, tmp_path):
    name, url = _copy(server_url, scale_template)
    try:
        result = CliRunner().invoke(main, ["hotspots", "--source", "offenses", "--scheduler", client.scheduler.address],
                                    env={"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path / "var")})
        assert result.exit_code == 2
        assert "--engine" in result.output and "offense counts" in result.output
    finally:
        _drop(server_url, name)
