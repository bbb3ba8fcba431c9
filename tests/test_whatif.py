"""What-if on the staffing plan (geo/whatif.py, `hotspots whatif`): values before and after."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geo.queueing import mean_wait
from geo.simulate import SimulationConfig, assumed_calls
from geo.staffing import StaffingConfig, hourly_load, plan, shift_of_hour
from geo.whatif import Move, parse_moves, whatif
from tests.test_simulate import generated_calls

DIVISIONS = ["01", "02", "03"]


@pytest.fixture(scope="module")
def inputs():
    config = StaffingConfig.load()
    frame, counts = generated_calls(np.random.default_rng(5), weeks=8)
    load = hourly_load(counts, DIVISIONS, np.full(7, 8), config)
    calls, _ = assumed_calls(frame, DIVISIONS, config, SimulationConfig.load())
    return config, load, calls


def _expected_wait(load, config, division: str, shift: str, units: int) -> float:
    """Call-weighted M/M/c mean wait over the shift's hours, straight from the formula."""
    hours = load.loc[division][shift_of_hour(config) == shift]
    lam = hours["calls_per_hour"].to_numpy()
    w = mean_wait(units, hours["offered"].to_numpy(), hours["service_min"].to_numpy())
    return float((lam * np.where(lam > 0, w, 0)).sum() / lam.sum())


def test_parse_moves():
    assert parse_moves("2:01/night->05/night; 4 : 02/day -> 02/evening") == [
        Move(2, ("01", "night"), ("05", "night")), Move(4, ("02", "day"), ("02", "evening"))]
    assert parse_moves("") == []
    with pytest.raises(ValueError, match="is not OFFICERS:DIVISION/SHIFT->DIVISION/SHIFT"):
        parse_moves("2 from 01 to 05")


def test_moving_officers_changes_waits_by_the_formulas(inputs):
    config, load, calls = inputs
    # 4 officers = 2 unit-posts (1.617 officers per post): from 03's evening to 02's night.
    result = whatif(load, config, moves=parse_moves("4:03/evening->02/night"), calls=calls, divisions=DIVISIONS)
    t = result.table.set_index(["division", "shift"])
    source, target = t.loc[("03", "evening")], t.loc[("02", "night")]
    assert source["units_after"] == source["units_before"] - 2 and target["units_after"] == target["units_before"] + 2
    assert result.summary["units_after"] == result.summary["units_before"]
    assert source["mean_wait_min_after"] == pytest.approx(
        _expected_wait(load, config, "03", "evening", int(source["units_after"])))
    assert target["mean_wait_min_after"] == pytest.approx(
        _expected_wait(load, config, "02", "night", int(target["units_after"])))
    assert source["mean_wait_min_after"] > source["mean_wait_min_before"]
    assert target["mean_wait_min_after"] < target["mean_wait_min_before"]
    unchanged = t.drop(index=[("03", "evening"), ("02", "night")])
    assert (unchanged["units_after"] == unchanged["units_before"]).all()
    assert (unchanged["mean_wait_min_after"] == unchanged["mean_wait_min_before"]).all()
    # City-wide expected wait: call-weighted over division-shifts.
    w = t["calls_per_hour"].to_numpy()
    assert result.summary["mean_wait_min_after"] == pytest.approx((t["mean_wait_min_after"] * w).sum() / w.sum())
    # Simulated: 02's nights wait no more than before, 03's evenings no less.
    assert target["sim_share_waiting_after"] <= target["sim_share_waiting_before"]
    assert source["sim_share_waiting_after"] >= source["sim_share_waiting_before"]
    assert {"sim_p1_response_p90_min_before", "sim_p1_response_p90_min_after"} <= set(result.summary)
    assert result.notes == ["4 officer(s) = 2 unit-post(s) from 03/evening to 02/night (0.8 officer(s) left over)"]
    body = result.to_json()
    assert len(body["rows"]) == 9 and body["summary"]["units_before"] == result.summary["units_before"]


def test_a_stricter_target_needs_more_units(inputs):
    config, load, _ = inputs
    result = whatif(load, config, targets="p1_wait_min=0.2")
    t = result.table
    assert (t["units_after"] >= t["units_before"]).all() and (t["units_after"] > t["units_before"]).any()
    assert result.summary["officers_after"] > result.summary["officers_before"]
    assert (t["p1_mean_wait_min_after"] <= 0.2 + 1e-9).all()
    stricter = plan(load, StaffingConfig(**{**vars(config), "targets": type(config.targets)(0.2, 0.2, 0.6)}))
    assert t["units_after"].tolist() == stricter["units"].tolist()
    assert "sim_share_waiting_before" not in result.summary    # no calls given: formulas only


def test_bad_what_ifs_are_refused(inputs):
    config, load, _ = inputs
    with pytest.raises(ValueError, match="needs a move or a changed target"):
        whatif(load, config)
    with pytest.raises(ValueError, match="staffs no unit-post: one post every day takes 1.62 officers"):
        whatif(load, config, moves=parse_moves("1:01/day->02/day"))
    with pytest.raises(ValueError, match="09/day is not a division/shift of the plan"):
        whatif(load, config, moves=parse_moves("2:09/day->02/day"))
    with pytest.raises(ValueError, match="fewer than the 61 moved"):
        whatif(load, config, moves=parse_moves("99:02/day->01/day"))
    with pytest.raises(ValueError, match="target 'speed' is not one of"):
        whatif(load, config, targets="speed=3")
    assert not math.isnan(whatif(load, config, targets="p_wait=0.1").summary["p_wait_after"])


def test_whatif_command(engine):
    import json
    from datetime import datetime

    from click.testing import CliRunner

    from geo.cli import main
    from tests.test_metrics import add_calls

    rows = [(datetime(2021, 5, 3 + day, hour, 10 + 20 * k), "01", "traffic", False, 0.0)
            for day in range(7) for hour in range(14, 22) for k in range(2)]
    add_calls(engine, rows)
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    args = ["whatif", "--from", "2021-05-03", "--to", "2021-05-09"]
    result = CliRunner().invoke(main, args + ["--move", "4:01/evening->02/day"], env=env)
    assert result.exit_code == 0, result.output
    assert "4 officer(s) = 2 unit-post(s) from 01/evening to 02/day" in result.output
    assert "P1 response p90, min (sim)" in result.output and "01       evening" in result.output
    js = CliRunner().invoke(main, args + ["--move", "4:01/evening->02/day", "--json", "--no-simulate"], env=env)
    body = json.loads(js.output)
    row = next(r for r in body["rows"] if r["division"] == "01" and r["shift"] == "evening")
    assert row["units_after"] == row["units_before"] - 2 and "sim_share_waiting_before" not in row
    assert body["summary"]["sources"]["calls"] == f"{len(rows):,}"
    bad = CliRunner().invoke(main, args + ["--move", "4:01/evening->99/day"], env=env)
    assert bad.exit_code == 2 and "99/day is not a division/shift of the plan" in bad.output
    bad = CliRunner().invoke(main, args, env=env)
    assert bad.exit_code == 2 and "needs a move or a changed target" in bad.output
