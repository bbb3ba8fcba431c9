"""Officer allocation: sums to N, respects minimums, follows workload; config is checked."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from geo.allocate import AllocationConfig, allocate, largest_remainder
from geo.metrics import Period
from tests.test_metrics import add_calls


def test_largest_remainder_sums_exactly():
    rng = np.random.default_rng(0)
    for _ in range(200):
        weights = rng.uniform(0, 10, rng.integers(1, 40))
        seats = int(rng.integers(0, 500))
        out = largest_remainder(weights, seats)
        assert out.sum() == seats and (out >= 0).all()
        assert np.all(np.abs(out - weights / weights.sum() * seats) < 1 + 1e-9)
    assert list(largest_remainder(np.array([1.0, 1.0, 2.0]), 4)) == [1, 1, 2]


def test_allocation_follows_workload_and_keeps_minimums(engine):
    rows = []
    # Division 01: 30 violent calls at night (2 officers x 120 min each); 02: 30 alarm calls by day.
    rows += [(datetime(2021, 5, 1 + i % 20, 23), "01", "violent_crime", True, 0.9) for i in range(30)]
    rows += [(datetime(2021, 5, 1 + i % 20, 10), "02", "alarms", False, 0.0) for i in range(30)]
    add_calls(engine, rows)
    config = AllocationConfig.load()
    table, reasons = allocate(engine, 120, Period(date(2021, 5, 1), date(2021, 6, 1)), config, source="labelled")
    assert table.attrs["source"].startswith("labelled: calls the model labelled violent")
    assert table["officers"].sum() == 120
    assert (table["officers"] >= config.minimum).all()
    assert len(table) == 14 * len(config.shifts)
    by = table.set_index(["division_id", "shift"])["officers"]
    # Workload: 01 night = 30 x 2 x 120 = 7,200 min; 02 day = 30 x 15 = 450 min; everything else 0.
    spare = 120 - config.minimum * len(table)
    assert by[("01", "night")] == config.minimum + round(spare * 7200 / 7650)
    assert by[("02", "day")] == config.minimum + spare - round(spare * 7200 / 7650)
    assert "two-officer cars" in reasons["01"] and "false-alarm" in reasons["02"]
    with pytest.raises(ValueError, match="below the minimum"):
        allocate(engine, 10, Period(date(2021, 5, 1), date(2021, 6, 1)), config)
    # Expected violent calls (the default): 27 of the 30 (p 0.9) take two officers, 3 one.
    from geo.allocate import workload

    work = workload(engine, Period(date(2021, 5, 1), date(2021, 6, 1)), config).set_index(["division_id", "shift"])
    assert work.loc[("01", "night"), "violent"] == pytest.approx(27.0)
    assert work.loc[("01", "night"), "officer_minutes"] == pytest.approx((3 * 1 + 27 * 2) * 120)
    assert work.attrs["source"].startswith("expected: expected violent calls")
    with pytest.raises(ValueError, match="source must be one of labelled, expected, not 'incidents'"):
        workload(engine, Period(date(2021, 5, 1), date(2021, 6, 1)), config, "incidents")


def test_workload_counts_calls_about_one_incident_once(engine):
    import sqlalchemy as sa

    from geo.allocate import workload

    add_calls(engine, [(datetime(2021, 5, 3, 23), "01", "violent_crime", True, 0.9) for _ in range(5)])
    with engine.begin() as conn:   # the five calls are about one incident
        conn.execute(sa.text("UPDATE calls SET incident_report_id = 'R1'"))
    config = AllocationConfig.load()
    for source in ("labelled", "expected"):
        work = workload(engine, Period(date(2021, 5, 1), date(2021, 6, 1)), config, source).set_index(["division_id", "shift"])
        row = work.loc[("01", "night")]
        assert row["calls"] == 5 and row["violent"] == pytest.approx(1.0 if source == "labelled" else 0.9)


def test_config_must_cover_the_day(tmp_path):
    text = (AllocationConfig.load.__globals__["ALLOCATION_TOML"]).read_text().replace("night = [22, 6]", "night = [22, 5]")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ValueError, match="exactly once"):
        AllocationConfig.load(bad)


def test_shifts_option_parses_and_checks_cover():
    from geo.allocate import parse_shifts

    assert parse_shifts("early=5-13,late=13-21,overnight=21-5") == {"early": (5, 13), "late": (13, 21), "overnight": (21, 5)}
    for bad in ("day=6-14,night=14-5", "day=six-14", "=0-24"):
        with pytest.raises(ValueError):
            parse_shifts(bad)


def test_allocate_command_with_two_shifts(engine):
    from click.testing import CliRunner

    from geo.cli import main

    add_calls(engine, [(datetime(2021, 5, 3, 10), "01", "traffic", False, 0.0)] * 10)
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(main, ["allocate", "--officers", "80", "--from", "2021-05-01", "--to", "2021-05-31",
                                       "--shifts", "days=7-19,nights=19-7"], env=env)
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[1:] == ["days", "nights", "total"]
    total = next(line for line in rows if line.startswith("total"))
    assert total.split()[-1] == "80"
    assert rows[-1].startswith("source of the violent (two-officer) calls: expected: expected violent calls")
    bad = CliRunner().invoke(main, ["allocate", "--officers", "80", "--shifts", "days=7-19"], env=env)
    assert bad.exit_code == 2 and "--shifts" in bad.output
