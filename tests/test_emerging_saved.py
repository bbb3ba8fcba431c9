"""Saved emerging hot spot runs: stored through geo.runs, read back equal, served as the emerging_npas layer."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geo import catalog
from geo.emerging import PATTERNS, npa_emerging, save_npa_emerging
from geo.filters import Filter
from geo.runs import NoSavedRun, RunKind, list_runs, resolve_run
from tests.test_emerging import YEAR_2021, plant_calls


def _stored(engine, run_id: int) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text("SELECT * FROM emerging_npa_results WHERE run_id = :r ORDER BY npa_id"), conn,
                           params={"r": run_id}).set_index("npa_id")


def test_a_saved_run_round_trips_with_its_settings(engine):
    centre, cluster = plant_calls(engine, [*YEAR_2021, (date(2022, 1, 1), 0.1)])
    period = Filter.local_days(date(2021, 1, 1), date(2022, 2, 1))
    with engine.connect() as conn, pytest.raises(NoSavedRun, match="hotspots emerging --save"):
        resolve_run(conn, catalog.layer("emerging_npas"), None)
    run = npa_emerging(engine, period, source="labelled", neighbourhood_steps=2)
    run_id = save_npa_emerging(engine, run)

    stored = _stored(engine, run_id)
    computed = run.areas.set_index("npa_id").sort_index()
    assert len(stored) == 462 and list(stored.index) == list(computed.index)
    assert (stored["pattern"] == computed["pattern"]).all()
    # Two earlier steps in each neighbourhood: the first steps see less of the past, and the centre's
    # Gi* z climbs over them (intensifying rather than persistent), but it is hot throughout.
    assert stored.loc[centre, "pattern"] in ("Persistent Hot Spot", "Intensifying Hot Spot")
    assert stored.loc[centre, "hot_steps"] == 12
    np.testing.assert_allclose(stored["trend_z"], computed["trend_z"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(stored["trend_p"], computed["trend_p"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(stored["final_z"], computed["final_z"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(stored["total"], computed["total"], rtol=0, atol=1e-9)
    assert (stored["hot_steps"] == computed["hot_steps"]).all() and (stored["cold_steps"] == computed["cold_steps"]).all()
    assert (stored["steps"] == 12).all()
    np.testing.assert_allclose(stored["hot_share"], computed["hot_steps"] / 12)
    np.testing.assert_allclose(stored["cold_share"], computed["cold_steps"] / 12)
    assert stored.loc[centre, "hot_share"] == pytest.approx(run.bins.state[:, list(computed.index).index(centre)]
                                                            .clip(0).mean())

    with engine.connect() as conn:
        saved = list_runs(conn, RunKind.EMERGING_NPA_HOTSPOTS)
        assert resolve_run(conn, catalog.layer("emerging_npas"), None) == run_id
    assert len(saved) == 1 and saved[0].rows == 462 and saved[0].source == "labelled"
    p = saved[0].params
    assert p["period"] == ["2021-01-01", "2022-01-01"] and saved[0].period == "2021-01-01 to 2022-01-01"
    assert (p["unit"], p["neighbourhood_steps"], p["confidence"], p["steps"]) == ("month", 2, 0.9, 12)
    assert (p["first_step"], p["last_step"]) == ("2021-01", "2021-12")
    assert p["left_out"] == [{"step": "2022-01", "start": "2022-01-01", "end": "2022-02-01", "covered": round(3 / 31, 4)}]
    assert p["left_out_words"] == "2022-01 (10% covered)"
    assert "labelled" in p["source_words"]
    # Each feature of the served layer names the run's source, period, steps and what was left out.
    lyr = catalog.layer("emerging_npas")
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT * FROM {lyr.source.from_sql} WHERE npa_id = :n"),
                           {"n": centre, **lyr.source.binds(run_id)}).mappings().one()
    assert (row["pattern"], row["source"], row["time_step"], row["neighbourhood_steps"]) == (
        stored.loc[centre, "pattern"], "labelled", "month", 2)
    assert (row["period_start"], row["period_end"], row["left_out"]) == ("2021-01-01", "2022-01-01", "2022-01 (10% covered)")


def test_only_the_17_patterns_are_stored_and_grid_runs_are_refused(engine):
    from geo.emerging import grid_emerging

    plant_calls(engine, YEAR_2021)
    with engine.begin() as conn:
        run_id = conn.execute(sa.text("INSERT INTO analysis_runs (kind) VALUES ('emerging_npa_hotspots') RETURNING run_id")
                              ).scalar()
    with pytest.raises(sa.exc.IntegrityError, match="pattern_check"), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO emerging_npa_results VALUES (:r, 1, 'Warm Spot', 0, 1, 0, 0, 12, 0, 0, 0, 0)"),
                     {"r": run_id})
    with engine.begin() as conn:
        for name in PATTERNS:   # every one of the 17 names is accepted
            conn.execute(sa.text("INSERT INTO emerging_npa_results VALUES (:r, :n, :p, 0, 1, 0, 0, 12, 0, 0, 0, 0)"),
                         {"r": run_id, "n": list(PATTERNS).index(name), "p": name})
    grid = grid_emerging(engine, Filter.local_days(date(2021, 1, 1), date(2022, 1, 1)), source="labelled", cell_ft=20000)
    with pytest.raises(ValueError, match="only NPA emerging hot spots are saved"):
        save_npa_emerging(engine, grid)


def test_the_cli_saves_what_it_prints(engine, tmp_path):
    from geo.cli import main

    centre, _ = plant_calls(engine, YEAR_2021)
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTSPOTS_VAR_DIR": str(tmp_path / "var")}
    out = CliRunner().invoke(main, ["emerging", "--from", "2021-01-01", "--to", "2021-12-31", "--source", "labelled",
                                    "--save"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    with engine.connect() as conn:
        run_id = conn.execute(sa.text("SELECT max(run_id) FROM analysis_runs WHERE kind = 'emerging_npa_hotspots'")
                              ).scalar()
    assert f"saved as analysis run {run_id} (layer emerging_npas)" in out.output
    stored = _stored(engine, run_id)
    counts = stored["pattern"].value_counts()
    for name in PATTERNS:   # the printed table and the stored rows agree, pattern by pattern
        line = next(x for x in out.output.splitlines() if x.startswith(name + " "))
        assert int(line[len(name):].split()[0]) == counts.get(name, 0)
    assert stored.loc[centre, "pattern"] == "Persistent Hot Spot"
    refused = CliRunner().invoke(main, ["emerging", "--grid-ft", "5000", "--save"], env=env)
    assert refused.exit_code == 2 and "--save" in refused.output and "only NPA" in refused.output
