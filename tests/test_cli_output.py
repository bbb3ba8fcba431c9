"""The command line's reusable output: defaults to the data's newest complete period, refusals of
empty periods, filters checked as the web checks them, and --format csv|json values."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime

import pytest
from click.testing import CliRunner

from geo.cli import main
from geo.cli.table import Column, count, plural, print_table
from geo.periods import DataSpan, count_rows, newest_complete
from tests.test_metrics import add_calls

# Demo-like data stored in 2021: March and April complete, May only begun (3-4 May).
CALLS = [
    *[(datetime(2021, 3, d, 10), "01", "traffic", False, 0.1) for d in range(1, 32)],
    *[(datetime(2021, 4, d, 10), "01", "traffic", False, 0.1) for d in range(1, 31)],
    (datetime(2021, 4, 12, 23), "01", "violent_crime", True, 0.8),
    (datetime(2021, 4, 13, 1), "02", "property", False, 0.05),
    (datetime(2021, 5, 3, 10), "02", "property", False, 0.05),
    (datetime(2021, 5, 4, 9), "02", "property", False, 0.05),
]


@pytest.fixture
def run(engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)
    add_calls(engine, CALLS)

    def invoke(*args):
        # result.stdout holds the data (csv, json), result.stderr the explaining lines.
        return CliRunner().invoke(main, list(args), env={"DATABASE_URL": url, "HOTSPOTS_VAR_DIR": str(tmp_path)})

    return invoke


def test_newest_complete_windows_count_back_from_the_newest_data():
    span = DataSpan(("calls",), date(2021, 1, 5), date(2022, 1, 3))
    assert (newest_complete(span, "month").first, newest_complete(span, "month").last) == (date(2021, 12, 1),
                                                                                          date(2021, 12, 31))
    year = newest_complete(span, "12 months")
    assert (year.first, year.last) == (date(2021, 1, 5), date(2021, 12, 31))   # cut at the first stored day
    days = newest_complete(span, "28d")
    assert (days.first, days.last) == (date(2021, 12, 7), date(2022, 1, 3))
    ends_on_month_end = newest_complete(DataSpan(("calls",), date(2021, 1, 1), date(2021, 12, 31)), "month")
    assert ends_on_month_end.first == date(2021, 12, 1)
    assert newest_complete(DataSpan(("calls",), None, None), "month") is None
    with pytest.raises(ValueError, match="unknown period kind 'week'"):
        newest_complete(span, "week")


def test_a_default_period_is_a_filter_of_its_local_days(engine):
    add_calls(engine, CALLS)
    chosen = newest_complete(DataSpan(("calls",), date(2021, 3, 1), date(2021, 5, 4)), "month")
    april = chosen.as_filter("America/New_York")
    assert (april.start_date, april.end_date, april.days, april.tz) == (date(2021, 4, 1), date(2021, 5, 1), 30,
                                                                        "America/New_York")
    # 30 traffic calls, one violent call (12 April 23:00) and one property call in April; two in May.
    assert count_rows(engine, april) == 32
    assert count_rows(engine, chosen.as_filter("America/New_York", division="02")) == 1
    assert count_rows(engine, april.with_days(date(2021, 5, 1), date(2021, 6, 1))) == 2
    with pytest.raises(ValueError, match="no dated table 'homicides'"):
        count_rows(engine, april, "homicides")


def test_counts_say_their_noun_in_the_right_number():
    assert [plural(1, "NPA"), plural(2, "NPA"), plural(4903.0, "call")] == ["1 NPA", "2 NPAs", "4,903 calls"]
    assert [count(4903.0), count(4.5), count(12)] == ["4,903", "4.5", "12"]


def test_printer_formats(capsys):
    rows = [{"area": "01", "calls": 1234, "share": 0.5}, {"area": "02", "calls": 7, "share": float("nan")}]
    cols = [Column("area", width=4, align="<"), Column("calls", width=6, spec=","), Column("share", width=6, spec=".1%")]
    print_table(rows, cols, "table")
    assert capsys.readouterr().out.splitlines() == ["area  calls  share", "01    1,234  50.0%", "02        7    n/a"]
    print_table(rows, cols, "json")
    assert json.loads(capsys.readouterr().out)[1] == {"area": "02", "calls": 7, "share": None}
    print_table(rows, cols, "csv")
    assert capsys.readouterr().out.splitlines() == ["area,calls,share", "01,1234,0.5", "02,7,"]


def test_stats_calls_defaults_to_the_newest_complete_month_and_names_divisions(run):
    out = run("stats", "calls")
    assert out.exit_code == 0, out.output + out.stderr
    lines = out.output.splitlines()
    assert lines[0].startswith("period: 2021-04-01 to 2021-04-30 (the newest complete month of the stored calls")
    assert "division 01 Central: 31 calls, 1 labelled violent (3.2%), expected violent 3.8" in lines
    assert "division 02 Metro: 1 call, 0 labelled violent (0.0%), expected violent 0.1" in lines
    data = list(csv.DictReader(io.StringIO(run("stats", "calls", "--format", "csv").stdout)))
    assert [(r["area"], r["name"], r["category"], r["calls"]) for r in data] == [
        ("01", "Central", "traffic", "30"), ("01", "Central", "violent_crime", "1"), ("02", "Metro", "property", "1")]
    assert float(data[0]["share"]) == pytest.approx(30 / 31)
    js = run("stats", "calls", "--format", "json", "--division", "central", "--from", "2021-03-01", "--to", "2021-03-31")
    assert js.exit_code == 0 and js.stderr == ""       # dates given: no period line
    assert json.loads(js.stdout) == [{"area": "01", "name": "Central", "category": "traffic", "calls": 31, "share": 1.0,
                                      "total": 31, "area_labelled_violent": 0, "area_expected_violent": 3.1,
                                      "violent_share": 0.0}]


def test_tables_are_cut_to_the_top_areas_with_a_line_saying_how_many_were_left_out(run):
    out = run("stats", "calls", "--by", "division", "--top", "1", "--from", "2021-03-01", "--to", "2021-05-31")
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1] == "... 1 division with fewer calls left out (--top 0 shows all)"
    assert [line.split(":")[0] for line in out.output.splitlines() if line.startswith("division ")] == ["division 01 Central"]


def test_filters_are_checked_like_the_web(run):
    bad = run("stats", "calls", "--division", "Centrall")
    assert bad.exit_code == 2 and "--division" in bad.stderr and "unknown division 'Centrall'" in bad.stderr
    assert "01" in bad.stderr and "02" in bad.stderr
    bad = run("stats", "hours", "--category", "violent")
    assert bad.exit_code == 2 and "unknown category 'violent'" in bad.stderr and "violent_crime" in bad.stderr
    bad = run("stats", "monthly", "--category", "Violent")
    assert bad.exit_code == 2 and "--category" in bad.stderr
    good = run("stats", "hours", "--division", "METRO", "--totals", "--format", "json")
    assert good.exit_code == 0, good.stderr
    cells = {(c["weekday"], c["hour"]): c["calls"] for c in json.loads(good.stdout) if c["calls"]}
    # The newest 28 days (7 April - 4 May), division 02 only: 13 April 01h, 3 May 10h, 4 May 09h.
    assert cells == {("Tue", 1): 1, ("Mon", 10): 1, ("Tue", 9): 1}


def test_empty_periods_are_refused_with_the_period_and_what_is_stored(run):
    for args in (["stats", "calls"], ["stats", "hours"], ["stats", "monthly"], ["allocate", "--officers", "200"]):
        out = run(*args, "--from", "2024-01-01", "--to", "2024-01-31")
        assert out.exit_code == 1, (args, out.output)
        assert "from 2024-01-01 to 2024-01-31" in out.stderr, args
        assert "the stored calls span 2021-03-01 to 2021-05-04" in out.stderr, args
    out = run("stats", "hours", "--category", "property", "--from", "2021-03-01", "--to", "2021-03-31")
    assert out.exit_code == 1 and "(category property)" in out.stderr
    # Calls, but none of the outreach categories: an answer, not a refusal (nor a crash).
    out = run("stats", "outreach", "--by", "division")
    assert out.exit_code == 0 and out.stdout.splitlines()[-1] == "no area stands out"
    assert run("rejects").stdout.strip() == "no rejected rows are stored"


def test_hours_and_compstat_default_to_the_newest_data(run):
    out = run("stats", "hours", "--totals")
    assert out.exit_code == 0, out.stderr
    assert out.output.splitlines()[0].startswith("period: 2021-04-07 to 2021-05-04 (the newest 28 days")
    assert "weekdays occur Mon 4x, Tue 4x" in out.output
    comp = run("stats", "compstat", "--source", "calls", "--format", "csv")
    assert comp.exit_code == 0, comp.stderr
    assert "as of 2021-05-05" in comp.stderr
    rows = {r["window"]: r for r in csv.DictReader(io.StringIO(comp.stdout))}
    assert rows["week"]["current_period"] == "2021-04-26..2021-05-02"
    # 5 April - 2 May: 26 traffic days, the violent call of 12 April and the property call of 13 April.
    assert int(rows["28 days"]["current"]) == 28


def test_analyses_default_to_the_newest_complete_period_and_refuse_zero_rows(run):
    # The planted calls have no NPA: the month's map of expected violent calls holds nothing.
    out = run("hotspots", "--permutations", "0")
    assert out.exit_code == 1
    assert out.stdout.startswith("period: 2021-04-01 to 2021-04-30 (the newest complete month of the stored calls "
                                 "and incidents")
    assert "no violent rows (expected) in any NPA from 2021-04-01 to 2021-04-30" in out.stderr
    plan = run("allocate")
    assert plan.exit_code == 0, plan.output
    assert plan.stdout.startswith("period: 2021-04-07 to 2021-05-04 (the newest 28 days of the stored calls")
    emerging = run("emerging")
    assert emerging.stdout.startswith("period: 2021-03-01 to 2021-04-30 (all the stored calls and incidents up to "
                                      "2021-04-30, less than 12 months;")
    assert emerging.exit_code == 1 and "need at least 10 complete months" in emerging.stderr
    accuracy = run("accuracy")
    assert accuracy.exit_code == 1 and "less than two halves" in accuracy.stderr
    partial = run("accuracy", "--train-from", "2021-03-01")
    assert partial.exit_code == 2 and "give all four dates" in partial.stderr


def test_plan_and_rejects_as_json(run, data_dir, tmp_path):
    plan = run("allocate", "--from", "2021-04-01", "--to", "2021-04-28", "--format", "json")
    assert plan.exit_code == 0, plan.stderr
    rows = json.loads(plan.stdout)
    central = [r for r in rows if r["division"] == "01"]
    assert {r["name"] for r in central} == {"Central"} and {r["shift"] for r in central} == {"day", "evening", "night"}
    assert sum(r["calls_per_hour"] for r in central) > 0
    assert "total officers:" in plan.stderr

    from tests.factories import read_rows, write_rows

    rows = read_rows(data_dir / "real" / "incidents_streets_QVXYZ.csv")[:3]
    rows[2]["DATE_REPORTED"] = "not a date"
    assert run("load", "incidents", str(write_rows(tmp_path / "bad.csv", rows))).exit_code == 0
    rejects = run("rejects", "--format", "json")
    assert rejects.exit_code == 0, rejects.stderr
    got = json.loads(rejects.stdout)
    assert [(r["source_file"].endswith("bad.csv"), r["line"], r["reason"]) for r in got] == [(True, 4, "bad_date")]
    assert "not a date" in got[0]["raw"]
